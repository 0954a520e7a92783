//! Carries out a [`Plan`]: server-side apply of the bindings that differ, deletion of those no
//! longer wanted (after the new ones are in place, so a re-split never drops access), and the
//! status with its Ready condition.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use kube_scim_crds::group_binding::{
    AcceptedDirectory, EVENT_SUBJECTS_REFUSED, REASON_APPLY_FAILED, REASON_WRITE_DEFERRED,
    ScimGroupBindingStatus, TargetStatus,
};
use kube_scim_crds::{CONDITION_READY, ScimGroupBinding, labels as scim_labels};

use super::plan::{self, Desired, Existing, Plan, Scope, Write};
use super::trust;
use super::{Context, Error, labels};
use crate::events::publish;
use crate::reconcile::{self, Check, condition, is_forbidden, is_invalid, is_not_found, manager};

/// The bindings this ScimGroupBinding wrote, as the watch caches see them.
fn existing(binding: &ScimGroupBinding, ctx: &Context) -> Vec<Existing> {
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

/// The role and subjects last written to each binding, by scope and name.
pub type Written =
    std::collections::HashMap<(Scope, String), (k8s_openapi::api::rbac::v1::RoleRef, Vec<Subject>)>;

/// `existing`, with the subjects this process wrote where the caches do not show them.
fn known(existing: &[Existing], ctx: &Context) -> Vec<Existing> {
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

fn remember(ctx: &Context, scope: &Scope, name: &str, written: Option<&Desired>) {
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

type SubjectKey<'a> = (&'a str, &'a str, Option<&'a str>);

fn key(s: &Subject) -> SubjectKey<'_> {
    (&s.kind, &s.name, s.namespace.as_deref())
}

/// The subjects already bound with `desired`'s role in its scope (in any of its parts), or
/// None when a binding of `desired`'s name is not cached (its subjects are unknown).
fn present<'a>(desired: &Desired, existing: &'a [Existing]) -> Option<HashSet<SubjectKey<'a>>> {
    if existing
        .iter()
        .any(|e| e.scope == desired.scope && e.name == desired.name && !e.cached)
    {
        return None;
    }
    Some(
        existing
            .iter()
            .filter(|e| e.scope == desired.scope && e.role_ref == desired.role_ref)
            .flat_map(|e| e.subjects.iter().map(key))
            .collect(),
    )
}

/// Whether writing `desired` grants a subject not bound before (a member moved between parts
/// of the same scope is not one). A binding whose subjects are unknown is never held back: it
/// may hold a subject to remove.
pub fn adds_subjects(desired: &Desired, existing: &[Existing]) -> bool {
    present(desired, existing)
        .is_some_and(|p| desired.subjects.iter().any(|s| !p.contains(&key(s))))
}

/// `desired` without the subjects it would add: what may be written while additions wait, so
/// that removals are never held back. None: nothing to write.
pub fn without_additions(desired: &Desired, existing: &[Existing]) -> Option<Desired> {
    let present = present(desired, existing)?;
    let subjects: Vec<Subject> = desired
        .subjects
        .iter()
        .filter(|s| present.contains(&key(s)))
        .cloned()
        .collect();
    let current = existing
        .iter()
        .find(|e| e.scope == desired.scope && e.name == desired.name);
    match current {
        Some(e) if e.role_ref == desired.role_ref && e.subjects == subjects => None,
        None if subjects.is_empty() => None,
        _ => Some(Desired {
            subjects,
            ..desired.clone()
        }),
    }
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
                failures.push(format!("{}: {}", describe(&desired.scope), explain(&e)));
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

/// A Warning event naming the refused subject names, when their number changes (status
/// carries the number, so a steady state publishes nothing).
async fn warn_refused(binding: &ScimGroupBinding, ctx: &Context, plan: &Plan) {
    let before = binding.status.as_ref().and_then(|s| s.refused_subjects);
    let now = plan.refused.len() as i64;
    if now == 0 || before == Some(now) {
        return;
    }
    let shown: Vec<String> = plan
        .refused
        .iter()
        .take(10)
        .map(|n| format!("{n:?}"))
        .collect();
    publish(
        &ctx.recorder,
        &binding.object_ref(&()),
        EventType::Warning,
        EVENT_SUBJECTS_REFUSED,
        "Bind",
        format!(
            "{now} subject name(s) never bound: a built-in system: identity, or not a plain name (who named a user or group so in the identity provider, or wrote it with the directory's SCIM credential?): {}{}",
            shown.join(", "),
            if plan.refused.len() > shown.len() { ", ..." } else { "" }
        ),
    )
    .await;
}

/// An API error, with what to do about the usual ones.
fn explain(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if is_not_found(e) => {
            format!("{} (does the namespace exist?)", s.message)
        }
        kube::Error::Api(s) if is_forbidden(e) => format!(
            "{} (the operator needs `bind` on the role: the Helm chart grants it for the allow-listed roles)",
            s.message
        ),
        other => other.to_string(),
    }
}

fn ready_condition(
    binding: &ScimGroupBinding,
    plan: &Plan,
    failures: &[String],
    deferred: bool,
    now: jiff::Timestamp,
) -> Condition {
    let check = if !failures.is_empty() {
        Check::failed(
            REASON_APPLY_FAILED,
            format!("could not write every binding: {}", failures.join("; ")),
        )
    } else if deferred && plan.outcome.ready {
        // No wait time in the message: it would change, and so rewrite status, on every retry.
        Check::failed(
            REASON_WRITE_DEFERRED,
            "subjects to add wait for this binding's write budget (--group-binding-write-budget); removals are applied at once; retried when the budget allows".to_string(),
        )
    } else if plan.outcome.ready {
        Check::ok(plan.outcome.reason, plan.outcome.message.clone())
    } else {
        Check::failed(plan.outcome.reason, plan.outcome.message.clone())
    };
    let previous = binding
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    condition(
        CONDITION_READY,
        &check,
        binding.metadata.generation,
        previous,
        now,
    )
}

/// The status for `plan`; `lastSyncTime` is kept from `previous` unless `wrote`.
pub fn desired_status(
    binding: &ScimGroupBinding,
    plan: &Plan,
    failures: &[String],
    deferred: bool,
    wrote: bool,
    now: jiff::Timestamp,
) -> ScimGroupBindingStatus {
    let previous = binding.status.clone().unwrap_or_default();
    let mut targets: Vec<TargetStatus> = Vec::new();
    for (desired, _) in &plan.desired {
        let namespace = desired.scope.clone().unwrap_or_default();
        match targets.iter_mut().find(|t| t.namespace == namespace) {
            Some(t) => {
                t.subjects += desired.subjects.len() as i64;
                t.bindings.push(desired.name.clone());
            }
            None => targets.push(TargetStatus {
                namespace,
                subjects: desired.subjects.len() as i64,
                bindings: vec![desired.name.clone()],
            }),
        }
    }
    let synced = failures.is_empty() && !deferred;
    ScimGroupBindingStatus {
        observed_generation: binding.metadata.generation,
        conditions: vec![ready_condition(binding, plan, failures, deferred, now)],
        group_id: plan.group_id.clone(),
        members: Some(plan.members as i64),
        skipped_members: Some(plan.skipped as i64),
        refused_subjects: Some(plan.refused.len() as i64),
        held_members: Some(plan.held as i64),
        targets,
        // The caller sets what `trust` decided; until then the recorded pin stands.
        directory: previous.directory.clone(),
        last_sync_time: if (wrote && synced) || previous.last_sync_time.is_none() {
            Some(reconcile::condition::round(now).to_string())
        } else {
            previous.last_sync_time
        },
    }
}

async fn write_status(
    binding: &ScimGroupBinding,
    ctx: &Context,
    plan: &Plan,
    failures: &[String],
    deferred: bool,
    wrote: bool,
    accepted: Option<AcceptedDirectory>,
) -> Result<(), Error> {
    let now = jiff::Timestamp::now();
    let mut status = desired_status(binding, plan, failures, deferred, wrote, now);
    status.directory = accepted;
    if binding.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let previous_reason = binding
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == CONDITION_READY))
        .map(|c| c.reason.clone());
    let ready = &status.conditions[0];
    if previous_reason.as_deref() != Some(ready.reason.as_str()) {
        let type_ = if ready.status == "True" {
            EventType::Normal
        } else {
            EventType::Warning
        };
        publish(
            &ctx.recorder,
            &binding.object_ref(&()),
            type_,
            &ready.reason,
            "Bind",
            ready.message.clone(),
        )
        .await;
    }
    let ns = binding.namespace().ok_or(Error::Unnamed)?;
    // Apply, not merge: a field this manager no longer sets (targets of a group that is gone)
    // is removed.
    let api = Api::<ScimGroupBinding>::namespaced(ctx.client.clone(), &ns);
    reconcile::status::apply(&api, &binding.name_any(), manager::GROUP_BINDING, &status).await?;
    Ok(())
}

/// Writes only `status.directory` (a merge patch: the other status fields stay as they are).
async fn record_accepted(
    binding: &ScimGroupBinding,
    ctx: &Context,
    accepted: Option<&AcceptedDirectory>,
) -> Result<(), Error> {
    let ns = binding.namespace().ok_or(Error::Unnamed)?;
    Api::<ScimGroupBinding>::namespaced(ctx.client.clone(), &ns)
        .patch_status(
            &binding.name_any(),
            &PatchParams {
                field_manager: Some(manager::GROUP_BINDING.into()),
                ..Default::default()
            },
            &Patch::Merge(serde_json::json!({"status": {"directory": accepted}})),
        )
        .await?;
    Ok(())
}

/// Removes every binding of a ScimGroupBinding that is being deleted.
pub async fn cleanup(binding: Arc<ScimGroupBinding>, ctx: &Context) -> Result<Action, Error> {
    for found in existing(&binding, ctx) {
        remember(ctx, &found.scope, &found.name, None);
        delete(ctx, &found.scope, &found.name).await?;
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::RoleRef;

    fn user(name: &str) -> Subject {
        Subject {
            kind: "User".into(),
            name: name.into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            namespace: None,
        }
    }

    fn role(name: &str) -> RoleRef {
        RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: name.into(),
        }
    }

    fn desired(name: &str, role_name: &str, subjects: &[&str]) -> Desired {
        Desired {
            scope: Some("team-a".into()),
            name: name.into(),
            role_ref: role(role_name),
            subjects: subjects.iter().map(|s| user(s)).collect(),
        }
    }

    fn existing(name: &str, role_name: &str, subjects: &[&str]) -> Existing {
        Existing {
            scope: Some("team-a".into()),
            name: name.into(),
            role_ref: role(role_name),
            subjects: subjects.iter().map(|s| user(s)).collect(),
            cached: true,
        }
    }

    #[test]
    fn a_removal_is_no_addition_and_a_new_member_is() {
        let now = [existing("p-0", "view", &["a", "b"])];
        assert!(!adds_subjects(&desired("p-0", "view", &["a"]), &now));
        assert!(adds_subjects(
            &desired("p-0", "view", &["a", "b", "c"]),
            &now
        ));
        assert!(adds_subjects(&desired("p-1", "view", &["c"]), &now));
    }

    #[test]
    fn a_member_moved_between_parts_is_no_addition() {
        let now = [
            existing("p-0", "view", &["a", "b"]),
            existing("p-1", "view", &["c"]),
        ];
        assert!(!adds_subjects(&desired("p-1", "view", &["b", "c"]), &now));
    }

    #[test]
    fn another_role_is_an_addition() {
        let now = [existing("p-0", "view", &["a"])];
        assert!(adds_subjects(&desired("p-0", "edit", &["a"]), &now));
        let narrowed = without_additions(&desired("p-0", "edit", &["a"]), &now).unwrap();
        assert!(narrowed.subjects.is_empty(), "nobody gets the new role yet");
    }

    #[test]
    fn while_additions_wait_the_removals_of_the_same_write_are_done() {
        // b leaves and c joins in one write: b must go now, c waits.
        let now = [existing("p-0", "view", &["a", "b"])];
        let narrowed = without_additions(&desired("p-0", "view", &["a", "c"]), &now).unwrap();
        assert_eq!(narrowed.subjects, vec![user("a")]);
        // Nothing removed: nothing to write.
        assert_eq!(
            without_additions(&desired("p-0", "view", &["a", "b", "c"]), &now),
            None
        );
        // A new part of only new members: nothing to write.
        assert_eq!(
            without_additions(&desired("p-1", "view", &["c"]), &now),
            None
        );
    }

    #[test]
    fn a_binding_whose_subjects_are_unknown_is_never_held_back() {
        let now = [Existing {
            cached: false,
            subjects: Vec::new(),
            ..existing("p-0", "view", &[])
        }];
        assert!(!adds_subjects(&desired("p-0", "view", &["a"]), &now));
    }
}
