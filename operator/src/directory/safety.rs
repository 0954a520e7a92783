//! The safety switches: condition `Suspended` (`spec.suspend`, which the SCIM server enforces),
//! and the deletion guard's condition `DeletionsHeld`, its event, and the end of a hold: the
//! annotation `kubescim.io/held-operations=release|discard` applies or drops every held
//! operation, then is removed.
//!
//! The SCIM server holds an operation by labelling the object (`kubescim.io/held`) and
//! changing nothing else; releasing applies it here: a held deactivation becomes
//! `active: false`, a held deletion deletes the object (a group through the SCIM server's
//! member-cleanup worker, as its own DELETE does: the members' labels are not written here). The admission policy lets the operator delete only held objects.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use kube_scim_crds::{
    CONDITION_DELETIONS_HELD, DISCARD, HELD_DEACTIVATE, HELD_DELETE, HELD_LABEL,
    HELD_OPERATIONS_ANNOTATION, HELD_SINCE_ANNOTATION, RELEASE, ScimDirectory, ScimDirectoryStatus,
    ScimGroup, ScimUser, labels,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::context::Context;
use crate::reconcile::{Check, Error, is_not_found};
use crate::token as tokens;

/// Condition `Suspended`.
pub fn suspended(dir: &ScimDirectory) -> Check {
    if dir.spec.suspend {
        Check::ok(
            "Suspended",
            "spec.suspend is true: the SCIM server refuses provisioning writes with 503 (the identity provider retries them later) and serves reads. Set it to false to resume.",
        )
    } else {
        Check::failed("NotSuspended", "Provisioning writes are accepted")
    }
}

/// Condition `DeletionsHeld`, from the held operations counted.
pub fn held(dir: &ScimDirectory, deletions: i64, deactivations: i64) -> Check {
    let guard = &dir.spec.deletion_guard;
    if deletions + deactivations == 0 {
        return Check::failed(
            "NothingHeld",
            format!(
                "The deletion guard holds nothing (limit: {} deletions and deactivations{} within {})",
                guard.max_operations,
                guard
                    .max_percent
                    .map(|p| format!(" or {p} %"))
                    .unwrap_or_default(),
                guard.window
            ),
        );
    }
    let name = dir.name_any();
    let ns = dir.namespace().unwrap_or_default();
    Check::ok(
        "OperationsHeld",
        format!(
            "The deletion guard holds {deletions} deletions and {deactivations} deactivations (label {HELD_LABEL}); they and every later one wait. Review them (kubectl get scimusers,scimgroups -n {ns} -l {HELD_LABEL}), then apply them with `kubectl annotate scimdirectory {name} -n {ns} {HELD_OPERATIONS_ANNOTATION}={RELEASE}` or drop them with `{HELD_OPERATIONS_ANNOTATION}={DISCARD}`"
        ),
    )
}

/// The note of the event when operations start being held, if `new_status` is that moment.
pub fn newly_held(dir: &ScimDirectory, new_status: &ScimDirectoryStatus) -> Option<String> {
    let is_held = |s: Option<&ScimDirectoryStatus>| {
        s.into_iter()
            .flat_map(|s| &s.conditions)
            .any(|c| c.type_ == CONDITION_DELETIONS_HELD && c.status == "True")
    };
    if is_held(dir.status.as_ref()) || !is_held(Some(new_status)) {
        return None;
    }
    new_status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_DELETIONS_HELD)
        .map(|c| c.message.clone())
}

/// What the directory's annotation asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// No annotation.
    Nothing,
    /// Apply every held operation.
    Release,
    /// Drop every held operation.
    Discard,
    /// An annotation value that means neither.
    Unknown(String),
}

/// The plan for `dir`.
pub fn plan(dir: &ScimDirectory) -> Plan {
    match dir.annotations().get(HELD_OPERATIONS_ANNOTATION) {
        None => Plan::Nothing,
        Some(v) if v == RELEASE => Plan::Release,
        Some(v) if v == DISCARD => Plan::Discard,
        Some(v) => Plan::Unknown(v.clone()),
    }
}

/// The merge patch that removes the mark of a held operation from an object (and, for a
/// released deactivation, makes the user inactive), compare-and-swap on its version.
pub fn unmark_patch(meta: &ObjectMeta, deactivate: bool, now: Timestamp) -> Value {
    let mut patch = json!({"metadata": {
        "resourceVersion": meta.resource_version,
        "labels": {HELD_LABEL: null},
        "annotations": {HELD_SINCE_ANNOTATION: null},
    }});
    if deactivate {
        patch["metadata"]["labels"][labels::ACTIVE] = json!("false");
        patch["status"] =
            json!({"active": false, "meta": {"lastModified": tokens::format_time(now)}});
    }
    patch
}

/// Carries out the plan for the directory's annotation, if any, then removes the annotation.
pub async fn apply(dir: &ScimDirectory, ctx: &Context, plan: Plan) -> Result<(), Error> {
    let release = match plan {
        Plan::Nothing => return Ok(()),
        Plan::Release => true,
        Plan::Discard => false,
        Plan::Unknown(value) => {
            ctx.publish(
                dir,
                EventType::Warning,
                "UnknownHeldOperationsAction",
                "DeletionGuard",
                format!("{HELD_OPERATIONS_ANNOTATION}={value:?} is neither {RELEASE} nor {DISCARD}; nothing was done"),
            )
            .await;
            return Ok(());
        }
    };
    let ns = dir.namespace().ok_or(Error::Unnamed)?;
    let selector = format!("{}={},{HELD_LABEL}", labels::DIRECTORY, dir.name_any());
    let users = end_holds::<ScimUser>(ctx, &ns, &selector, release).await?;
    let groups = end_holds::<ScimGroup>(ctx, &ns, &selector, release).await?;
    let api: Api<ScimDirectory> = ctx.api(&ns);
    api.patch(
        &dir.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"annotations": {HELD_OPERATIONS_ANNOTATION: null}}})),
    )
    .await?;
    let (reason, verb) = if release {
        ("HeldOperationsReleased", "applied")
    } else {
        ("HeldOperationsDiscarded", "dropped")
    };
    ctx.publish(
        dir,
        EventType::Normal,
        reason,
        "DeletionGuard",
        format!("{verb} the held operations of {users} ScimUsers and {groups} ScimGroups"),
    )
    .await;
    Ok(())
}

/// Ends the hold of every object of kind `K` matching `selector`; returns how many.
async fn end_holds<K>(
    ctx: &Context,
    ns: &str,
    selector: &str,
    release: bool,
) -> Result<usize, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = ctx.api(ns);
    let mut ended = 0;
    for item in api
        .list_metadata(&ListParams::default().labels(selector))
        .await?
    {
        let name = item.name_any();
        let op = item.labels().get(HELD_LABEL).cloned().unwrap_or_default();
        let result = if release && op == HELD_DELETE {
            delete_held::<K>(ctx, ns, &item.metadata).await
        } else {
            let deactivate = release && op == HELD_DEACTIVATE;
            let patch = unmark_patch(&item.metadata, deactivate, Timestamp::now());
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
        };
        match result {
            Ok(()) => ended += 1,
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(Error::conflict_or(e, || format!("{} {name}", K::kind(&())))),
        }
    }
    Ok(ended)
}

/// Deletes a held object if it is still the version that was held. A group is handed to the
/// SCIM server's member-cleanup worker as a SCIM DELETE is (docs/ARCHITECTURE.md, "Work that
/// touches every member of a group"): its finalizer `kubescim.io/member-cleanup` first, so the
/// group stays until the worker has removed every member's label, in batches, outside any
/// reconcile; one write per member here would not end for a large group.
async fn delete_held<K>(ctx: &Context, ns: &str, meta: &ObjectMeta) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let name = meta.name.clone().unwrap_or_default();
    let mut resource_version = meta.resource_version.clone();
    if K::kind(&()) == ScimGroup::kind(&())
        && let Some(patch) = member_cleanup_patch(meta)
    {
        let groups: Api<ScimGroup> = ctx.api(ns);
        let patched = groups
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        resource_version = patched.metadata.resource_version;
    }
    let api: Api<K> = ctx.api(ns);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: meta.uid.clone(),
            resource_version,
        }),
        ..DeleteParams::default()
    };
    api.delete(&name, &params).await.map(|_| ())
}

/// The merge patch that adds the member-cleanup finalizer to a held group, None when it has it.
/// It names the held version: a group changed since (its hold ended, say) is not touched (409).
pub fn member_cleanup_patch(meta: &ObjectMeta) -> Option<Value> {
    let mut finalizers = meta.finalizers.clone().unwrap_or_default();
    if finalizers
        .iter()
        .any(|f| f == labels::GROUP_MEMBER_CLEANUP_FINALIZER)
    {
        return None;
    }
    finalizers.push(labels::GROUP_MEMBER_CLEANUP_FINALIZER.to_string());
    Some(json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": meta.resource_version,
    }}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_scim_crds::ScimDirectorySpec;

    fn dir(annotation: Option<&str>) -> ScimDirectory {
        let mut d = ScimDirectory::new("d", ScimDirectorySpec::default());
        d.metadata.namespace = Some("ns".into());
        if let Some(a) = annotation {
            d.metadata.annotations =
                Some([(HELD_OPERATIONS_ANNOTATION.to_string(), a.to_string())].into());
        }
        d
    }

    #[test]
    fn the_annotation_says_what_to_do() {
        assert_eq!(plan(&dir(None)), Plan::Nothing);
        assert_eq!(plan(&dir(Some("release"))), Plan::Release);
        assert_eq!(plan(&dir(Some("discard"))), Plan::Discard);
        assert_eq!(plan(&dir(Some("yes"))), Plan::Unknown("yes".into()));
    }

    #[test]
    fn held_operations_make_the_condition_true_with_the_commands() {
        let d = dir(None);
        assert!(!held(&d, 0, 0).ok);
        let c = held(&d, 2, 1);
        assert!(c.ok);
        assert!(
            c.message.contains("2 deletions and 1 deactivations"),
            "{}",
            c.message
        );
        assert!(c.message.contains("kubescim.io/held-operations=release"));
    }

    #[test]
    fn a_released_deactivation_makes_the_user_inactive_and_unmarked() {
        let meta = ObjectMeta {
            resource_version: Some("5".into()),
            ..Default::default()
        };
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let p = unmark_patch(&meta, true, now);
        assert_eq!(p["metadata"]["resourceVersion"], "5");
        assert_eq!(p["metadata"]["labels"][HELD_LABEL], Value::Null);
        assert_eq!(p["metadata"]["labels"][labels::ACTIVE], "false");
        assert_eq!(p["status"]["active"], false);
        let discarded = unmark_patch(&meta, false, now);
        assert!(discarded.get("status").is_none());
        assert!(
            discarded["metadata"]["labels"]
                .get(labels::ACTIVE)
                .is_none()
        );
    }

    #[test]
    fn a_held_group_is_handed_to_the_member_cleanup_worker_at_its_held_version() {
        let meta = ObjectMeta {
            name: Some("g".into()),
            resource_version: Some("7".into()),
            finalizers: Some(vec!["example.com/other".into()]),
            ..Default::default()
        };
        let patch = member_cleanup_patch(&meta).unwrap();
        assert_eq!(
            patch,
            json!({"metadata": {
                "finalizers": ["example.com/other", labels::GROUP_MEMBER_CLEANUP_FINALIZER],
                "resourceVersion": "7",
            }})
        );
        let done = ObjectMeta {
            finalizers: Some(vec![labels::GROUP_MEMBER_CLEANUP_FINALIZER.into()]),
            ..meta
        };
        assert_eq!(member_cleanup_patch(&done), None);
    }
}
