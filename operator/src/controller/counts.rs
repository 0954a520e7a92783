//! Users and groups of a directory, counted from the metadata-only stores the controller
//! keeps (labels and managedFields times; no user attributes are cached).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube_scim_crds::{ScimDirectory, labels};

use super::Context;

/// Users and groups of one directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub users: i64,
    pub active_users: i64,
    pub inactive_users: i64,
    pub groups: i64,
    /// Newest write (managedFields time or creationTimestamp) among them.
    pub last_write: Option<Timestamp>,
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
        counts.last_write = counts.last_write.max(last_write(meta));
    }
    for meta in groups
        .into_iter()
        .filter(|m| belongs_to(m, namespace, directory))
    {
        counts.groups += 1;
        counts.last_write = counts.last_write.max(last_write(meta));
    }
    counts
}

/// The counts of `dir` from the context's stores.
pub fn of(dir: &ScimDirectory, ctx: &Context) -> Counts {
    count(
        ctx.users.state().iter().map(|u| &u.metadata),
        ctx.groups.state().iter().map(|g| &g.metadata),
        &dir.namespace().unwrap_or_default(),
        &dir.name_any(),
    )
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
            }
        );
        assert_eq!(count(&[], &[], "ns", "dir"), Counts::default());
    }
}
