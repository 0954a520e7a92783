//! The pure part of the cleanup: how a stored group stands ([`GroupState`]) and the next step
//! for its members' labels ([`plan`]), decided without I/O so every case is a unit test.

use std::collections::BTreeMap;

use kube::api::DynamicObject;
use kube_scim_crds::{MemberRollout, labels};
use scim_protocol::ResourceKind;

/// A member to label, with the `display` kept for it (Okta directories).
pub type Wanted = (ResourceKind, String, Option<String>);

/// How a group stands in storage, as far as its labels are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupState {
    /// No such object: whatever labels name it are leftovers.
    Gone,
    /// A live group (possibly one created since the job was queued).
    Live {
        /// resourceVersion (the precondition of ending a rollout).
        rv: String,
        /// Its member list being rolled out (`spec.memberRollout`): id -> kept display.
        rollout: Option<BTreeMap<String, Option<String>>>,
    },
    /// Marked for deletion: its labels go, then the cleanup finalizer (if it is there).
    Deleting {
        /// resourceVersion of the marked object (the precondition of the finalizer's removal).
        rv: String,
        /// Its finalizers.
        finalizers: Vec<String>,
    },
}

impl GroupState {
    /// The state of a stored group object (`None`: there is none).
    pub fn of(obj: Option<&DynamicObject>) -> GroupState {
        let Some(o) = obj else {
            return GroupState::Gone;
        };
        let rv = o.metadata.resource_version.clone().unwrap_or_default();
        if o.metadata.deletion_timestamp.is_some() {
            return GroupState::Deleting {
                rv,
                finalizers: o.metadata.finalizers.clone().unwrap_or_default(),
            };
        }
        let rollout = o
            .data
            .get("spec")
            .and_then(|s| s.get("memberRollout"))
            .and_then(|r| serde_json::from_value::<MemberRollout>(r.clone()).ok())
            .map(|r| {
                r.members
                    .into_iter()
                    .map(|m| (m.value, m.display))
                    .collect()
            });
        GroupState::Live { rv, rollout }
    }

    /// Whether the labels naming this group are to change at all.
    fn settled(&self) -> bool {
        matches!(self, GroupState::Live { rollout: None, .. })
    }
}

/// The next step of a group's label work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The group lives and its labels are its members: nothing to do.
    LeaveAlone,
    /// Remove the group's label from these members (one bounded batch).
    RemoveLabels(Vec<(ResourceKind, String)>),
    /// Label these members of a rollout (one bounded batch).
    AddLabels(Vec<Wanted>),
    /// The labels are the rolled-out list: remove `spec.memberRollout` if the group is still
    /// at `rv`.
    EndRollout {
        /// Precondition.
        rv: String,
    },
    /// No member is left: remove the cleanup finalizer, keeping the others, if the group is
    /// still at `rv`.
    ReleaseFinalizer {
        /// Precondition.
        rv: String,
        /// The finalizers that stay.
        keep: Vec<String>,
    },
    /// Nothing left to do.
    Done,
}

/// Decides the next step from the group's state, the members that carry its label but are not
/// to (`extra`) and the rollout's members that lack it (`missing`); both as many as one batch
/// needs, and empty only when storage agrees. Labels are removed before any is added: during a
/// rollout a watcher sees the old members leave, then the new ones arrive, and members on both
/// lists keep their label throughout.
pub fn plan(
    state: &GroupState,
    extra: &[(ResourceKind, String)],
    missing: &[Wanted],
    batch: usize,
) -> Step {
    if state.settled() {
        return Step::LeaveAlone;
    }
    let batch = batch.max(1);
    if !extra.is_empty() {
        return Step::RemoveLabels(extra.iter().take(batch).cloned().collect());
    }
    if !missing.is_empty() && matches!(state, GroupState::Live { .. }) {
        return Step::AddLabels(missing.iter().take(batch).cloned().collect());
    }
    match state {
        GroupState::Live { rv, .. } => Step::EndRollout { rv: rv.clone() },
        GroupState::Deleting { rv, finalizers }
            if finalizers
                .iter()
                .any(|f| f == labels::GROUP_MEMBER_CLEANUP_FINALIZER) =>
        {
            Step::ReleaseFinalizer {
                rv: rv.clone(),
                keep: finalizers
                    .iter()
                    .filter(|f| *f != labels::GROUP_MEMBER_CLEANUP_FINALIZER)
                    .cloned()
                    .collect(),
            }
        }
        _ => Step::Done,
    }
}

/// The finalizers of a group about to be deleted: its own and the cleanup finalizer.
pub fn with_cleanup_finalizer(current: &[String]) -> Vec<String> {
    let mut f = current.to_vec();
    if !f
        .iter()
        .any(|x| x == labels::GROUP_MEMBER_CLEANUP_FINALIZER)
    {
        f.push(labels::GROUP_MEMBER_CLEANUP_FINALIZER.to_string());
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deleting(finalizers: &[&str]) -> GroupState {
        GroupState::Deleting {
            rv: "7".into(),
            finalizers: finalizers.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn rolling(ids: &[&str]) -> GroupState {
        GroupState::Live {
            rv: "9".into(),
            rollout: Some(ids.iter().map(|i| (i.to_string(), None)).collect()),
        }
    }

    fn members(n: usize) -> Vec<(ResourceKind, String)> {
        (0..n)
            .map(|i| (ResourceKind::User, format!("u{i}")))
            .collect()
    }

    fn wanted(n: usize) -> Vec<Wanted> {
        (0..n)
            .map(|i| (ResourceKind::User, format!("n{i}"), None))
            .collect()
    }

    #[test]
    fn a_live_group_keeps_its_labels() {
        let live = GroupState::Live {
            rv: "1".into(),
            rollout: None,
        };
        assert_eq!(plan(&live, &members(3), &[], 2), Step::LeaveAlone);
    }

    #[test]
    fn labels_go_in_bounded_batches_before_the_finalizer() {
        let state = deleting(&[labels::GROUP_MEMBER_CLEANUP_FINALIZER]);
        assert_eq!(
            plan(&state, &members(5), &[], 2),
            Step::RemoveLabels(members(2))
        );
        assert_eq!(
            plan(&state, &[], &[], 2),
            Step::ReleaseFinalizer {
                rv: "7".into(),
                keep: vec![]
            }
        );
    }

    #[test]
    fn a_deleted_group_never_gains_labels() {
        let state = deleting(&[labels::GROUP_MEMBER_CLEANUP_FINALIZER]);
        assert!(matches!(
            plan(&state, &[], &wanted(3), 2),
            Step::ReleaseFinalizer { .. }
        ));
    }

    #[test]
    fn other_finalizers_are_kept_and_a_group_without_ours_needs_nothing_more() {
        let state = deleting(&["example.com/audit", labels::GROUP_MEMBER_CLEANUP_FINALIZER]);
        assert_eq!(
            plan(&state, &[], &[], 10),
            Step::ReleaseFinalizer {
                rv: "7".into(),
                keep: vec!["example.com/audit".into()]
            }
        );
        assert_eq!(
            plan(&deleting(&["example.com/audit"]), &[], &[], 10),
            Step::Done
        );
    }

    #[test]
    fn leftover_labels_of_a_vanished_group_are_removed() {
        assert_eq!(
            plan(&GroupState::Gone, &members(1), &[], 10),
            Step::RemoveLabels(members(1))
        );
        assert_eq!(plan(&GroupState::Gone, &[], &[], 10), Step::Done);
    }

    #[test]
    fn a_rollout_removes_old_members_first_then_adds_then_ends() {
        let state = rolling(&["n0", "n1", "n2"]);
        assert_eq!(
            plan(&state, &members(3), &wanted(3), 2),
            Step::RemoveLabels(members(2))
        );
        assert_eq!(plan(&state, &[], &wanted(3), 2), Step::AddLabels(wanted(2)));
        assert_eq!(
            plan(&state, &[], &[], 2),
            Step::EndRollout { rv: "9".into() }
        );
    }

    #[test]
    fn the_state_of_a_stored_group_is_read_from_its_object() {
        let obj = |extra: serde_json::Value| -> DynamicObject {
            let mut v = json!({"apiVersion": "kubescim.io/v1alpha1", "kind": "ScimGroup",
                "metadata": {"name": "g", "namespace": "ns", "resourceVersion": "5"},
                "spec": {"directoryRef": {"name": "d"}}});
            crate::memory_store::merge_patch(&mut v, &extra);
            serde_json::from_value(v).unwrap()
        };
        assert_eq!(GroupState::of(None), GroupState::Gone);
        assert_eq!(
            GroupState::of(Some(&obj(json!({})))),
            GroupState::Live {
                rv: "5".into(),
                rollout: None
            }
        );
        let rolling = obj(json!({"spec": {"memberRollout": {"members": [
            {"value": "a", "display": "A"}, {"value": "b"}]}}}));
        assert_eq!(
            GroupState::of(Some(&rolling)),
            GroupState::Live {
                rv: "5".into(),
                rollout: Some(BTreeMap::from([
                    ("a".to_string(), Some("A".to_string())),
                    ("b".to_string(), None)
                ]))
            }
        );
        let marked = obj(
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z",
            "finalizers": [labels::GROUP_MEMBER_CLEANUP_FINALIZER]}}),
        );
        assert_eq!(
            GroupState::of(Some(&marked)),
            GroupState::Deleting {
                rv: "5".into(),
                finalizers: vec![labels::GROUP_MEMBER_CLEANUP_FINALIZER.into()]
            }
        );
    }

    #[test]
    fn the_cleanup_finalizer_is_added_once() {
        let once = with_cleanup_finalizer(&["x".into()]);
        assert_eq!(
            once,
            vec![
                "x".to_string(),
                labels::GROUP_MEMBER_CLEANUP_FINALIZER.into()
            ]
        );
        assert_eq!(with_cleanup_finalizer(&once), once);
    }
}
