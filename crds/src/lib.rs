//! kube-scim's Kubernetes API (group `kubescim.io`, version `v1alpha1`).
//!
//! - [`ScimDirectory`]: one SCIM endpoint for one identity-provider tenant, reconciled by the
//!   operator into a bearer token, an Ingress route and a Tenant URL.
//! - [`ScimUser`] / [`ScimGroup`]: one object per SCIM resource, written by the SCIM server. Their
//!   SCIM data lives under `.status` and is written in the same request as the object itself, so
//!   these two CRDs deliberately have **no** status subresource (see [`crds`]).
//!
//! - [`ScimWebhook`], [`ScimGroupBinding`]: a directory's changes to a receiver, a group's members
//!   to RBAC bindings.
//!
//! One file per kind, each with the structs of its features (a feature of a kind large enough
//! for a file of its own gets one in the kind's folder: `directory/{auth,route,safety}.rs`);
//! `common.rs` holds what several kinds use. Every type is re-exported here, the crate's public
//! paths. Doc comments on the types become the `kubectl explain` text of the generated CRDs.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

mod common;
mod directory;
mod group;
pub mod group_binding;
pub mod labels;
mod user;
mod webhook;

pub use common::{DirectoryRef, ResourceMeta, SecretKeyRef};
pub use directory::auth::*;
pub use directory::route::*;
pub use directory::safety::*;
pub use directory::*;
pub use group::*;
pub use group_binding::{ScimGroupBinding, ScimGroupBindingSpec, ScimGroupBindingStatus};
pub use user::*;
pub use webhook::*;

/// API group of every kube-scim resource.
pub const GROUP: &str = "kubescim.io";
/// API version of every kube-scim resource.
pub const VERSION: &str = "v1alpha1";

/// Every CRD of kube-scim, exactly as it is installed into a cluster and written to `crds/yaml`.
pub fn crds() -> Vec<CustomResourceDefinition> {
    [
        ScimDirectory::crd(),
        without_status_subresource(ScimUser::crd()),
        without_status_subresource(ScimGroup::crd()),
        ScimWebhook::crd(),
        ScimGroupBinding::crd(),
    ]
    .into_iter()
    .map(unwrap_descriptions)
    .collect()
}

/// Doc comments are wrapped at 100 columns in the source; `kubectl explain` wraps text itself,
/// so single line breaks become spaces (blank lines still separate paragraphs).
fn unwrap_descriptions(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    match v {
                        serde_json::Value::String(text) if key == "description" => {
                            *text = text
                                .split("\n\n")
                                .map(|paragraph| paragraph.replace('\n', " "))
                                .collect::<Vec<_>>()
                                .join("\n\n");
                        }
                        _ => walk(v),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(&crd).expect("a CRD serializes to JSON");
    walk(&mut value);
    serde_json::from_value(value).expect("only descriptions changed")
}

/// The SCIM server writes a user's or group's attributes under `.status` in the same request that
/// creates or updates the object; a status subresource would split that into two writes and let
/// watchers see an object without its attributes.
fn without_status_subresource(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        version.subresources = None;
    }
    crd
}

// ---------------------------------------------------------------------------------------------
// ScimDirectory
// ---------------------------------------------------------------------------------------------
