//! Carries out a [`plan::Plan`]: server-side apply of the bindings that differ, deletion of
//! those no longer wanted (after the new ones are in place, so a re-split never drops access),
//! within the write budget, then the status (`status.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use kube_scim_crds::{ScimGroupBinding, labels as scim_labels};

use super::additions::{adds_subjects, without_additions};
use super::plan::{self, Desired, Scope, Write};
use super::read::{existing, known, remember};
use super::status::{record_accepted, warn_refused, write_status};
use super::trust;
use super::{Context, Error, labels};
use crate::reconcile::{is_invalid, is_not_found, manager};

fn metadata(binding: &ScimGroupBinding, desired: &Desired) -> ObjectMeta {
    let ns = binding.namespace().unwrap_or_default();
    let same_namespace = desired.scope.as_deref() == Some(ns.as_str());
    ObjectMeta {
        name: Some(desired.name.clone()),
        namespace: desired.scope.clone(),
        labels: Some(BTreeMap::from([
            (
                scim_labels::MANAGED_BY.to_string(),
                scim_labels::MANAGED_BY_OPERATOR.to_string(),
            ),
            (
                labels::BINDING_UID.to_string(),
                binding.uid().unwrap_or_default(),
            ),
        ])),
        annotations: Some(BTreeMap::from([(
            labels::BINDING.to_string(),
            format!("{ns}/{}", binding.name_any()),
        )])),
        // Only where it can point: a namespaced owner must be in the dependent's namespace.
        owner_references: same_namespace
            .then(|| binding.controller_owner_ref(&()))
            .flatten()
            .map(|o| vec![o]),
        ..Default::default()
    }
}

/// Size of the object written for `desired` (the JSON sent; etcd stores about as much).
fn object_bytes(binding: &ScimGroupBinding, desired: &Desired) -> u64 {
    let object = RoleBinding {
        metadata: metadata(binding, desired),
        role_ref: desired.role_ref.clone(),
        subjects: Some(desired.subjects.clone()),
    };
    serde_json::to_vec(&object).map_or(0, |v| v.len() as u64)
}

async fn write(
    ctx: &Context,
    binding: &ScimGroupBinding,
    desired: &Desired,
) -> Result<(), kube::Error> {
    let params = PatchParams::apply(manager::GROUP_BINDING).force();
    match &desired.scope {
        Some(ns) => {
            let object = RoleBinding {
                metadata: metadata(binding, desired),
                role_ref: desired.role_ref.clone(),
                subjects: Some(desired.subjects.clone()),
            };
            Api::<RoleBinding>::namespaced(ctx.client.clone(), ns)
                .patch(&desired.name, &params, &Patch::Apply(&object))
                .await?;
        }
        None => {
            let object = ClusterRoleBinding {
                metadata: metadata(binding, desired),
                role_ref: desired.role_ref.clone(),
                subjects: Some(desired.subjects.clone()),
            };
            Api::<ClusterRoleBinding>::all(ctx.client.clone())
                .patch(&desired.name, &params, &Patch::Apply(&object))
                .await?;
        }
    }
    ctx.metrics
        .group_binding_bytes_written
        .inc_by(object_bytes(binding, desired));
    Ok(())
}

async fn delete(ctx: &Context, scope: &Scope, name: &str) -> Result<(), kube::Error> {
    let result = match scope {
        Some(ns) => Api::<RoleBinding>::namespaced(ctx.client.clone(), ns)
            .delete(name, &DeleteParams::default())
            .await
            .map(|_| ()),
        None => Api::<ClusterRoleBinding>::all(ctx.client.clone())
            .delete(name, &DeleteParams::default())
            .await
            .map(|_| ()),
    };
    match result {
        Err(e) if is_not_found(&e) => Ok(()),
        other => other,
    }
}

fn describe(scope: &Scope) -> String {
    match scope {
        Some(ns) => format!("namespace {ns}"),
        None => "the cluster".into(),
    }
}

/// Brings the bindings of a live ScimGroupBinding in line with its group.
pub async fn apply(binding: Arc<ScimGroupBinding>, ctx: &Context) -> Result<Action, Error> {
    let users = ctx.users.state();
    let groups = ctx.groups.state();
    let existing = existing(&binding, ctx);
    let directory = ctx.directories.get(
        &ObjectRef::new(&binding.spec.directory_ref.name)
            .within(&binding.namespace().unwrap_or_default()),
    );
    let trust = trust::check(&binding, directory.as_deref());
    let recorded = binding.status.as_ref().and_then(|s| s.directory.as_ref());
    if trust.refusal.is_none() && trust.accepted.as_ref() != recorded {
        // The pin is stored before anything is granted under it: a status write that failed
        // after the grant would let the next reconcile pin whatever the directory is by then.
        record_accepted(&binding, ctx, trust.accepted.as_ref()).await?;
    }
    let plan = match trust.refusal {
        Some(outcome) => trust::refused_plan(outcome, &existing),
        None => plan::plan(
            &binding,
            groups.iter().map(|g| g.as_ref()),
            users.iter().map(|u| u.as_ref()),
            &ctx.policy,
            &existing,
        ),
    };
    drop(users);

    // Writes that grant someone new wait for the write budget; all the others (removals) are
    // done at once and only charged.
    let budget = ctx.policy.write_budget;
    let uid = binding.uid().unwrap_or_default();
    let known = known(&existing, ctx);
    let additions: Vec<bool> = plan
        .desired
        .iter()
        .map(|(d, how)| *how != Write::Keep && adds_subjects(d, &known))
        .collect();
    let cost: u64 = plan
        .desired
        .iter()
        .zip(&additions)
        .filter(|(_, adds)| **adds)
        .map(|((d, _), _)| object_bytes(&binding, d))
        .sum();
    let deferred = if cost > 0 {
        let mut buckets = ctx.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets
            .get(&uid, &budget, Instant::now())
            .take(&budget, Instant::now(), cost)
            .err()
    } else {
        None
    };
    if let Some(wait) = deferred {
        ctx.metrics.group_binding_writes_deferred.inc();
        tracing::info!(
            group_binding = %binding.name_any(), namespace = binding.namespace().unwrap_or_default(),
            bytes = cost, wait_seconds = wait.as_secs(),
            "adding subjects waits for the write budget; removals are applied now"
        );
    }

    let mut failures: Vec<String> = Vec::new();
    let mut wrote = false;
    for ((desired, how), adds) in plan.desired.iter().zip(&additions) {
        if *how == Write::Keep {
            continue;
        }
        let narrowed;
        let desired = match (deferred, *adds) {
            (Some(_), true) => match without_additions(desired, &known) {
                Some(d) => {
                    narrowed = d;
                    &narrowed
                }
                None => continue,
            },
            _ => desired,
        };
        if deferred.is_some() || !*adds {
            let mut buckets = ctx.buckets.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            buckets
                .get(&uid, &budget, now)
                .charge(&budget, now, object_bytes(&binding, desired));
        }
        wrote = true;
        if *how == Write::Replace
            && let Err(e) = delete(ctx, &desired.scope, &desired.name).await
        {
            failures.push(format!("{}: {e}", describe(&desired.scope)));
            continue;
        }
        let mut result = write(ctx, &binding, desired).await;
        // An uncached binding whose roleRef changed: roleRef is immutable, so replace it.
        if matches!(&result, Err(e) if is_invalid(e)) {
            result = match delete(ctx, &desired.scope, &desired.name).await {
                Ok(()) => write(ctx, &binding, desired).await,
                Err(e) => Err(e),
            };
        }
        match result {
            Ok(()) => remember(ctx, &desired.scope, &desired.name, Some(desired)),
            Err(e) => {
                // Unknown now: the next write is never held back.
                remember(ctx, &desired.scope, &desired.name, None);
                failures.push(format!(
                    "{}: {}",
                    describe(&desired.scope),
                    super::status::explain(&e)
                ));
            }
        }
    }
    for (scope, name) in &plan.stale {
        wrote = true;
        remember(ctx, scope, name, None);
        if let Err(e) = delete(ctx, scope, name).await {
            failures.push(format!("removing {name} from {}: {e}", describe(scope)));
        }
    }
    warn_refused(&binding, ctx, &plan).await;
    write_status(
        &binding,
        ctx,
        &plan,
        &failures,
        deferred.is_some(),
        wrote,
        trust.accepted,
    )
    .await?;
    if !failures.is_empty() {
        Ok(Action::requeue(Duration::from_secs(15)))
    } else if let Some(wait) = deferred {
        Ok(Action::requeue(wait))
    } else {
        Ok(Action::requeue(ctx.resync))
    }
}

/// Removes every binding of a ScimGroupBinding that is being deleted.
pub async fn cleanup(binding: Arc<ScimGroupBinding>, ctx: &Context) -> Result<Action, Error> {
    for found in existing(&binding, ctx) {
        remember(ctx, &found.scope, &found.name, None);
        delete(ctx, &found.scope, &found.name).await?;
    }
    Ok(Action::await_change())
}
