//! Fixtures of the ScimDirectory controller's unit tests (settings, context, objects), over the
//! kit's fake apiserver and test stores ([`crate::reconcile::fake_apiserver`],
//! [`crate::reconcile::test_stores`]), which they re-export.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::runtime::reflector;
use kube_scim_crds::{ScimDirectory, ScimDirectorySpec, ScimGroup, ScimUser, labels};

use super::{Context, Settings};
use crate::metrics::Metrics;
use crate::route::{RouteDefaults, ServerService};

pub use crate::reconcile::fake_apiserver::{Calls, Failure, Fault, client, client_failing};
pub use crate::reconcile::test_stores::filled_store;

/// Operator settings for namespace `ns`, where the SCIM server runs too (unless moved).
pub fn settings(host: Option<&str>) -> Settings {
    Settings {
        defaults: RouteDefaults {
            host: host.map(str::to_string),
            server: ServerService {
                namespace: "ns".into(),
                ..Default::default()
            },
            ..Default::default()
        },
        concurrency: 1,
        resync: std::time::Duration::from_secs(600),
        identity: "test".into(),
        counts_min_interval: std::time::Duration::from_secs(5),
        counts_max_delay: std::time::Duration::from_secs(30),
        keys: kube_scim_runtime::verifier::SharedKeyRing::new(keys()),
    }
}

/// The verifier keys of the scenarios: `k1` and `k2` (primary).
pub fn keys() -> kube_scim_runtime::verifier::KeyRing {
    kube_scim_runtime::verifier::KeyRing::from_keys([
        ("k1", b"test-verifier-key-one-0123456789abcdef".to_vec()),
        ("k2", b"test-verifier-key-two-0123456789abcdef".to_vec()),
    ])
    .unwrap()
}

/// A context over `client` with complete, empty user and group stores.
pub fn context(client: Client, settings: Settings) -> Arc<Context> {
    context_with(
        client,
        settings,
        filled_store(Vec::new()),
        filled_store(Vec::new()),
    )
}

/// A context over `client` with these user and group stores.
pub fn context_with(
    client: Client,
    settings: Settings,
    users: reflector::Store<ScimUser>,
    groups: reflector::Store<ScimGroup>,
) -> Arc<Context> {
    Arc::new(Context::new(
        client,
        settings,
        Arc::new(Metrics::default()),
        crate::watch::Cache::of(users),
        crate::watch::Cache::of(groups),
        reflector::store().0,
    ))
}

/// Metadata of a ScimUser or ScimGroup `name` of directory `ns/d`, last written at `written`;
/// `active`: the `kubescim.io/active` label, if any.
pub fn member_meta<K>(name: &str, active: Option<bool>, written: &str) -> K
where
    K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
{
    let mut labels = BTreeMap::from([(labels::DIRECTORY.to_string(), "d".to_string())]);
    if let Some(active) = active {
        labels.insert(labels::ACTIVE.to_string(), active.to_string());
    }
    let metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some("ns".into()),
        labels: Some(labels),
        creation_timestamp: Some(Time(written.parse().unwrap())),
        ..Default::default()
    };
    // Spec fields the counts never read.
    serde_json::from_value(serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": metadata,
        "spec": {"directoryRef": {"name": "d"}},
    }))
    .unwrap()
}

/// What verifiers of [`directory`] are bound to.
pub const BINDING: kube_scim_runtime::verifier::Binding<'static> =
    kube_scim_runtime::verifier::Binding {
        uid: "uid-d",
        namespace: "ns",
        name: "d",
    };

/// Directory `ns/d` with uid `uid-d`.
pub fn directory(spec: ScimDirectorySpec) -> ScimDirectory {
    let mut d = ScimDirectory::new("d", spec);
    d.metadata.namespace = Some("ns".into());
    d.metadata.uid = Some("uid-d".into());
    d.metadata.resource_version = Some("1".into());
    d.metadata.generation = Some(1);
    d
}

/// Request paths of the objects a reconcile of `ns/d` touches.
pub mod paths {
    pub const DIRECTORY: &str = "/apis/kubescim.io/v1alpha1/namespaces/ns/scimdirectories/d";
    pub const DIRECTORY_STATUS: &str =
        "/apis/kubescim.io/v1alpha1/namespaces/ns/scimdirectories/d/status";
    pub const SECRETS: &str = "/api/v1/namespaces/ns/secrets";
    pub const TOKEN_SECRET: &str = "/api/v1/namespaces/ns/secrets/d-scim-token";
    pub const INGRESS: &str = "/apis/networking.k8s.io/v1/namespaces/ns/ingresses/d-scim";
    pub const SERVICE: &str = "/api/v1/namespaces/ns/services/scim-d";
    pub const USERS: &str = "/apis/kubescim.io/v1alpha1/namespaces/ns/scimusers";
    pub const GROUPS: &str = "/apis/kubescim.io/v1alpha1/namespaces/ns/scimgroups";
}
