//! What a ScimGroupBinding's bindings are now: the watch caches, the bindings its status
//! records outside their reach, and what this process last wrote to those.

use k8s_openapi::api::rbac::v1::Subject;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube_scim_crds::ScimGroupBinding;

use super::plan::{Desired, Existing, Scope};
use super::{Context, labels};

/// The bindings this ScimGroupBinding wrote, as the watch caches see them.
pub(super) fn existing(binding: &ScimGroupBinding, ctx: &Context) -> Vec<Existing> {
    let uid = binding.uid().unwrap_or_default();
    let ours = |meta: &ObjectMeta| {
        meta.labels
            .as_ref()
            .and_then(|l| l.get(labels::BINDING_UID))
            .is_some_and(|u| *u == uid)
    };
    let mut found: Vec<Existing> = ctx
        .role_bindings
        .state()
        .iter()
        .filter(|rb| ours(&rb.metadata))
        .map(|rb| Existing {
            scope: rb.namespace(),
            name: rb.name_any(),
            role_ref: rb.role_ref.clone(),
            subjects: rb.subjects.clone().unwrap_or_default(),
            cached: true,
        })
        .collect();
    if let Some(store) = &ctx.cluster_role_bindings {
        found.extend(
            store
                .state()
                .iter()
                .filter(|c| ours(&c.metadata))
                .map(|c| Existing {
                    scope: None,
                    name: c.name_any(),
                    role_ref: c.role_ref.clone(),
                    subjects: c.subjects.clone().unwrap_or_default(),
                    cached: true,
                }),
        );
    }
    // Bindings recorded in status but outside the caches' reach (another namespace than the
    // operator watches) are still known and removed when no longer wanted.
    for target in binding.status.iter().flat_map(|s| &s.targets) {
        let scope = Some(target.namespace.clone()).filter(|n| !n.is_empty());
        for name in &target.bindings {
            if !found.iter().any(|e| e.scope == scope && &e.name == name) {
                found.push(Existing {
                    scope: scope.clone(),
                    name: name.clone(),
                    role_ref: Default::default(),
                    subjects: Vec::new(),
                    cached: false,
                });
            }
        }
    }
    found
}

/// The role and subjects last written to each binding, by scope and name.
pub type Written =
    std::collections::HashMap<(Scope, String), (k8s_openapi::api::rbac::v1::RoleRef, Vec<Subject>)>;

/// `existing`, with the subjects this process wrote where the caches do not show them.
pub(super) fn known(existing: &[Existing], ctx: &Context) -> Vec<Existing> {
    let written = ctx.written.lock().unwrap_or_else(|e| e.into_inner());
    existing
        .iter()
        .map(|e| match written.get(&(e.scope.clone(), e.name.clone())) {
            Some((role_ref, subjects)) if !e.cached => Existing {
                role_ref: role_ref.clone(),
                subjects: subjects.clone(),
                cached: true,
                ..e.clone()
            },
            _ => e.clone(),
        })
        .collect()
}

pub(super) fn remember(ctx: &Context, scope: &Scope, name: &str, written: Option<&Desired>) {
    let mut memory = ctx.written.lock().unwrap_or_else(|e| e.into_inner());
    let key = (scope.clone(), name.to_string());
    match written {
        Some(d) => {
            memory.insert(key, (d.role_ref.clone(), d.subjects.clone()));
        }
        None => {
            memory.remove(&key);
        }
    }
}
