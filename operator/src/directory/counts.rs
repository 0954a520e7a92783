//! Users and groups of a directory, counted from the metadata of the process's shared user and
//! group stores (labels and managedFields times), and the refresher
//! that keeps them fresh in status while provisioning runs, at a bounded cost (see
//! [`super::throttle`]).

use std::sync::Arc;

use futures::Stream;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use kube_scim_crds::{ScimDirectory, ScimDirectoryStatus, labels};
use serde_json::{Value, json};

use super::context::{Context, MANAGER};
use super::throttle::{self, Throttle};
use crate::reconcile::{Error, is_not_found};
use crate::token as tokens;

/// Users and groups of one directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub users: i64,
    pub active_users: i64,
    pub inactive_users: i64,
    pub groups: i64,
    /// Newest write (managedFields time or creationTimestamp) among them.
    pub last_write: Option<Timestamp>,
    /// Users and groups whose deletion the deletion guard holds.
    pub held_deletions: i64,
    /// Users whose deactivation the deletion guard holds.
    pub held_deactivations: i64,
}

fn held(meta: &ObjectMeta) -> Option<&str> {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(kube_scim_crds::HELD_LABEL))
        .map(String::as_str)
}

fn count_held(counts: &mut Counts, meta: &ObjectMeta) {
    match held(meta) {
        Some(kube_scim_crds::HELD_DELETE) => counts.held_deletions += 1,
        Some(kube_scim_crds::HELD_DEACTIVATE) => counts.held_deactivations += 1,
        _ => {}
    }
}

fn belongs_to(meta: &ObjectMeta, namespace: &str, directory: &str) -> bool {
    meta.namespace.as_deref() == Some(namespace)
        && meta
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::DIRECTORY))
            .is_some_and(|d| d == directory)
}

fn last_write(meta: &ObjectMeta) -> Option<Timestamp> {
    let managed = meta
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.time.as_ref().map(|t| t.0));
    managed
        .chain(meta.creation_timestamp.as_ref().map(|t| t.0))
        .max()
}

/// Counts users (by the `kubescim.io/active` label; a user without it counts as active) and
/// groups of `namespace/directory` from object metadata.
pub fn count<'a>(
    users: impl IntoIterator<Item = &'a ObjectMeta>,
    groups: impl IntoIterator<Item = &'a ObjectMeta>,
    namespace: &str,
    directory: &str,
) -> Counts {
    let mut counts = Counts::default();
    for meta in users
        .into_iter()
        .filter(|m| belongs_to(m, namespace, directory))
    {
        counts.users += 1;
        let inactive = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::ACTIVE))
            .is_some_and(|a| a == "false");
        if inactive {
            counts.inactive_users += 1;
        } else {
            counts.active_users += 1;
        }
        count_held(&mut counts, meta);
        counts.last_write = counts.last_write.max(last_write(meta));
    }
    for meta in groups
        .into_iter()
        .filter(|m| belongs_to(m, namespace, directory))
    {
        counts.groups += 1;
        count_held(&mut counts, meta);
        counts.last_write = counts.last_write.max(last_write(meta));
    }
    counts
}

/// The counts of `dir` from the context's stores; `None` until both stores hold their first
/// complete list (before that they are empty, and every directory would count zero).
pub fn of(dir: &ScimDirectory, ctx: &Context) -> Option<Counts> {
    if !ctx.users_ready.is_ready() || !ctx.groups_ready.is_ready() {
        return None;
    }
    Some(count(
        ctx.users.state().iter().map(|u| &u.metadata),
        ctx.groups.state().iter().map(|g| &g.metadata),
        &dir.namespace().unwrap_or_default(),
        &dir.name_any(),
    ))
}

/// What a refresh did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refreshed {
    /// The counts changed and were written.
    Written,
    /// The status already had them: no write.
    Unchanged,
    /// The directory is gone or being deleted: nothing to count.
    Gone,
}

impl Refreshed {
    /// Label of the refresh metric.
    pub fn label(self) -> &'static str {
        match self {
            Refreshed::Written => "written",
            Refreshed::Unchanged => "unchanged",
            Refreshed::Gone => "gone",
        }
    }
}

/// Writes the current counts of the directory `key` (as `directories` holds it) into its
/// status, unless they are there already: one merge patch of the count fields on the status
/// subresource, compare-and-swap on the resourceVersion the counts were compared with.
pub async fn refresh(
    ctx: &Context,
    directories: &Store<ScimDirectory>,
    key: &ObjectRef<ScimDirectory>,
) -> Result<Refreshed, Error> {
    let _status = ctx.status_lock(key).await;
    let Some(dir) = directories.get(key) else {
        return Ok(Refreshed::Gone);
    };
    if dir.metadata.deletion_timestamp.is_some() {
        return Ok(Refreshed::Gone);
    }
    let Some(counts) = of(&dir, ctx) else {
        return Ok(Refreshed::Unchanged);
    };
    let previous = dir.status.clone().unwrap_or_default();
    let mut current = previous.clone();
    set_counts(&mut current, &counts);
    if current == previous {
        return Ok(Refreshed::Unchanged);
    }
    let ns = dir.namespace().ok_or(Error::Unnamed)?;
    let api: Api<ScimDirectory> = ctx.api(&ns);
    let patch = counts_patch(&current, dir.metadata.resource_version.as_deref());
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    match api
        .patch_status(&dir.name_any(), &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(Refreshed::Written),
        Err(e) if is_not_found(&e) => Ok(Refreshed::Gone),
        Err(e) => Err(Error::conflict_or(e, || "status".into())),
    }
}

/// Keeps the counts of every directory in `directories` fresh until `touched` ends (it does
/// not: the caller drops this future). `touched` yields the directory of every changed
/// ScimUser and ScimGroup; it must be the stream that fills `ctx.users` and `ctx.groups`, which
/// this polls continuously. Once those stores (and `directories`) are complete, every directory
/// is checked once; after that a directory is refreshed when [`Throttle`] says so
/// (`--counts-min-interval`, `--counts-max-delay`). A failed refresh is retried like a new change.
pub async fn keep_fresh(
    ctx: Arc<Context>,
    directories: crate::watch::Cache<ScimDirectory>,
    touched: impl Stream<Item = ObjectRef<ScimDirectory>>,
) {
    let crate::watch::Cache {
        store: directories,
        ready: directories_ready,
    } = directories;
    let throttle = Throttle::new(
        ctx.settings.counts_min_interval,
        ctx.settings.counts_max_delay,
    );
    let ready = {
        let ctx = ctx.clone();
        let directories = directories.clone();
        async move {
            ctx.users_ready.wait().await;
            ctx.groups_ready.wait().await;
            // The shared store's readiness, not the store's own future: the group-binding
            // controller awaits the same store (see [`crate::watch::Readiness`]).
            directories_ready.wait().await;
            directories
                .state()
                .iter()
                .map(|d| ObjectRef::from_obj(d.as_ref()))
                .collect()
        }
    };
    throttle::drive(throttle, touched, ready, |key| {
        let ctx = ctx.clone();
        let directories = directories.clone();
        async move {
            match refresh(&ctx, &directories, &key).await {
                Ok(refreshed) => {
                    ctx.metrics.counts_refresh(refreshed.label());
                    tracing::debug!(directory = %key, result = refreshed.label(), "counts refreshed");
                    true
                }
                // The store had not yet seen a status write that happened meanwhile.
                Err(e @ Error::Conflict(_)) => {
                    ctx.metrics.counts_refresh("conflict");
                    tracing::debug!(directory = %key, error = %e, "counts refresh retried");
                    false
                }
                Err(e) => {
                    ctx.metrics.counts_refresh("failed");
                    tracing::info!(directory = %key, error = %e, "counts refresh failed; retrying");
                    false
                }
            }
        }
    })
    .await
}

/// Sets the count fields of `status` (`users`, `activeUsers`, `inactiveUsers`, `groups`,
/// `lastProvisioningTime`) from `counts`; `lastProvisioningTime` never moves backwards (a
/// deletion leaves no write time behind).
pub fn set_counts(status: &mut ScimDirectoryStatus, counts: &Counts) {
    status.users = Some(counts.users);
    status.active_users = Some(counts.active_users);
    status.inactive_users = Some(counts.inactive_users);
    status.groups = Some(counts.groups);
    status.held_deletions = (counts.held_deletions > 0).then_some(counts.held_deletions);
    status.held_deactivations =
        (counts.held_deactivations > 0).then_some(counts.held_deactivations);
    status.last_provisioning_time = counts
        .last_write
        .map(tokens::format_time)
        .into_iter()
        .chain(status.last_provisioning_time.take())
        .max_by_key(|t| t.parse::<Timestamp>().ok());
}

/// Removes the count fields of `status` (see [`set_counts`]) but the held operations: a change
/// of those calls for a reconcile (condition `DeletionsHeld` and its event).
pub fn clear_counts(status: &mut ScimDirectoryStatus) {
    status.users = None;
    status.active_users = None;
    status.inactive_users = None;
    status.groups = None;
    status.last_provisioning_time = None;
}

/// The merge patch of the status subresource that writes the count fields of `status` only,
/// if the directory is still at `resource_version` (a compare-and-swap).
pub fn counts_patch(status: &ScimDirectoryStatus, resource_version: Option<&str>) -> Value {
    json!({
        "metadata": {"resourceVersion": resource_version},
        "status": {
            "users": status.users,
            "activeUsers": status.active_users,
            "inactiveUsers": status.inactive_users,
            "groups": status.groups,
            "lastProvisioningTime": status.last_provisioning_time,
            "heldDeletions": status.held_deletions,
            "heldDeactivations": status.held_deactivations,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};

    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn meta(
        ns: &str,
        dir: &str,
        active: Option<&str>,
        created: &str,
        managed: Option<&str>,
    ) -> ObjectMeta {
        let mut labels = BTreeMap::from([(labels::DIRECTORY.to_string(), dir.to_string())]);
        if let Some(a) = active {
            labels.insert(labels::ACTIVE.to_string(), a.to_string());
        }
        ObjectMeta {
            namespace: Some(ns.into()),
            labels: Some(labels),
            creation_timestamp: Some(Time(at(created))),
            managed_fields: managed.map(|m| {
                vec![ManagedFieldsEntry {
                    time: Some(Time(at(m))),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn counts_by_labels_in_the_directory_only() {
        let users = [
            meta(
                "ns",
                "dir",
                Some("true"),
                "2026-01-01T00:00:00Z",
                Some("2026-01-03T00:00:00Z"),
            ),
            meta("ns", "dir", Some("false"), "2026-01-02T00:00:00Z", None),
            meta("ns", "dir", None, "2026-01-01T00:00:00Z", None),
            meta("ns", "other", Some("true"), "2026-02-01T00:00:00Z", None),
            meta(
                "other-ns",
                "dir",
                Some("true"),
                "2026-02-01T00:00:00Z",
                None,
            ),
        ];
        let groups = [meta("ns", "dir", None, "2026-01-04T00:00:00Z", None)];
        let counts = count(&users, &groups, "ns", "dir");
        assert_eq!(
            counts,
            Counts {
                users: 3,
                active_users: 2,
                inactive_users: 1,
                groups: 1,
                last_write: Some(at("2026-01-04T00:00:00Z")),
                ..Counts::default()
            }
        );
        assert_eq!(count(&[], &[], "ns", "dir"), Counts::default());
    }
}
