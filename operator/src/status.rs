//! Conditions and the user/group counts of a directory's status.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use kube_scim_crds::labels;

/// Outcome of one part of the reconcile (token or route), as a condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

impl Check {
    pub fn ok(reason: &str, message: impl Into<String>) -> Self {
        Self {
            ok: true,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn failed(reason: &str, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// A condition of `type_` for `check`. `lastTransitionTime` stays that of the previous
/// condition of the same type when its status did not change, so an unchanged directory gets
/// an identical status (and no write).
pub fn condition(
    type_: &str,
    check: &Check,
    generation: Option<i64>,
    previous: &[Condition],
    now: Timestamp,
) -> Condition {
    let status = if check.ok { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now.round(jiff::Unit::Second).unwrap_or(now)));
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: check.reason.clone(),
        message: check.message.clone(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// `Ready`: true only when the token and the route are.
pub fn ready(token: &Check, route: &Check) -> Check {
    match (token.ok, route.ok) {
        (true, true) => Check::ok(
            "Ready",
            "The token and the route are in place; the directory accepts provisioning requests",
        ),
        (false, true) => Check::failed("TokenNotReady", token.message.clone()),
        (true, false) => Check::failed("RouteNotReady", route.message.clone()),
        (false, false) => Check::failed(
            "TokenNotReady",
            format!("{} Also: {}", token.message, route.message),
        ),
    }
}

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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn transition_time_only_moves_when_the_status_changes() {
        let t0 = at("2026-01-01T00:00:00Z");
        let t1 = at("2026-01-01T01:00:00Z");
        let first = condition(
            "TokenReady",
            &Check::ok("TokenCreated", "ok"),
            Some(1),
            &[],
            t0,
        );
        assert_eq!(first.status, "True");
        assert_eq!(first.observed_generation, Some(1));
        assert_eq!(first.last_transition_time.0, t0);
        let same = condition(
            "TokenReady",
            &Check::ok("TokenPresent", "still ok"),
            Some(2),
            std::slice::from_ref(&first),
            t1,
        );
        assert_eq!(
            same.last_transition_time.0, t0,
            "True -> True keeps the time"
        );
        assert_eq!(same.reason, "TokenPresent");
        let flipped = condition(
            "TokenReady",
            &Check::failed("SecretNotFound", "gone"),
            Some(2),
            &[same],
            t1,
        );
        assert_eq!(flipped.status, "False");
        assert_eq!(flipped.last_transition_time.0, t1);
    }

    #[test]
    fn ready_needs_token_and_route() {
        let ok = Check::ok("X", "fine");
        let bad = Check::failed("NoHost", "set spec.ingress.host");
        assert!(ready(&ok, &ok).ok);
        let r = ready(&ok, &bad);
        assert!(!r.ok);
        assert_eq!(r.reason, "RouteNotReady");
        assert_eq!(r.message, "set spec.ingress.host");
        assert_eq!(ready(&bad, &ok).reason, "TokenNotReady");
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
