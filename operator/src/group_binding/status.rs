//! The status of a ScimGroupBinding: its Ready condition (with what to do about API errors),
//! the status write, the trust pin, and the Events that go with them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use kube_scim_crds::group_binding::{
    AcceptedDirectory, EVENT_SUBJECTS_REFUSED, REASON_APPLY_FAILED, REASON_WRITE_DEFERRED,
    ScimGroupBindingStatus, TargetStatus,
};
use kube_scim_crds::{CONDITION_READY, ScimGroupBinding};

use super::plan::Plan;
use super::{Context, Error};
use crate::events::publish;
use crate::reconcile::{self, Check, condition, is_forbidden, is_not_found, manager};

/// A Warning event naming the refused subject names, when their number changes (status
/// carries the number, so a steady state publishes nothing).
pub(super) async fn warn_refused(binding: &ScimGroupBinding, ctx: &Context, plan: &Plan) {
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
pub(super) fn explain(e: &kube::Error) -> String {
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

pub(super) fn ready_condition(
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

pub(super) async fn write_status(
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
pub(super) async fn record_accepted(
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
