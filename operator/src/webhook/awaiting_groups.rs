//! Users whose membership names a group the delivery loop has not seen yet.
//!
//! Users and groups arrive on separate watches, with no order between them: a member's label,
//! written just after its group was created, can arrive before the group itself. Its
//! `dsync.group.user_added` would then name the group by id only. So such a user's changes wait
//! here, in order, until every group they name is known, or until `max_wait` has passed (a
//! group deleted before it was ever seen would otherwise hold the user forever). Every state is
//! kept, so a membership added and removed while waiting still gives both events.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::events::{Kind, Snapshot};

/// The users held, by uid: their states in arrival order and since when they wait.
#[derive(Default, Debug)]
pub struct AwaitingGroups {
    users: HashMap<String, (Vec<Snapshot>, Instant)>,
}

impl AwaitingGroups {
    /// The states of `uid` to derive now, in order: none while it waits for a group `known`
    /// does not have (the new state is queued behind the held ones), else every held state
    /// and then `snapshot`.
    pub fn hold_or_pass(
        &mut self,
        uid: &str,
        snapshot: Snapshot,
        known: impl Fn(&str) -> bool,
        now: Instant,
    ) -> Vec<Snapshot> {
        let names_unknown =
            |s: &Snapshot| s.kind == Kind::User && s.groups.iter().any(|g| !known(g));
        let (mut queue, since) = self.users.remove(uid).unwrap_or((Vec::new(), now));
        queue.push(snapshot);
        if queue.iter().any(names_unknown) {
            self.users.insert(uid.to_string(), (queue, since));
            return Vec::new();
        }
        queue
    }

    /// Takes the held users whose groups are all known now, or who waited `max_wait`, each with
    /// its states in order.
    pub fn release(
        &mut self,
        known: impl Fn(&str) -> bool,
        now: Instant,
        max_wait: Duration,
    ) -> Vec<(String, Vec<Snapshot>)> {
        let due: Vec<String> = self
            .users
            .iter()
            .filter(|(_, (queue, since))| {
                now.duration_since(*since) >= max_wait
                    || queue.iter().all(|s| s.groups.iter().all(|g| known(g)))
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        due.into_iter()
            .filter_map(|uid| self.users.remove(&uid).map(|(queue, _)| (uid, queue)))
            .collect()
    }

    /// Takes the states held for `uid` (to derive before its deletion).
    pub fn take(&mut self, uid: &str) -> Vec<Snapshot> {
        self.users
            .remove(uid)
            .map(|(queue, _)| queue)
            .unwrap_or_default()
    }

    /// Forgets the users whose uid `keep` refuses (a re-list did not show them).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.users.retain(|uid, _| keep(uid));
    }

    /// The uids held.
    #[cfg(test)]
    pub fn held(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    /// Forgets everyone (the directory is gone).
    pub fn clear(&mut self) {
        self.users.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(id: &str, groups: &[&str]) -> Snapshot {
        Snapshot {
            kind: Kind::User,
            id: id.into(),
            data: json!({"id": id}),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn groups_of(states: &[Snapshot]) -> Vec<usize> {
        states.iter().map(|s| s.groups.len()).collect()
    }

    #[test]
    fn a_user_naming_an_unknown_group_waits_for_it_with_every_state() {
        let mut a = AwaitingGroups::default();
        let t0 = Instant::now();
        let none = |_: &str| false;
        assert!(
            a.hold_or_pass("u1", user("u1", &["g1"]), none, t0)
                .is_empty()
        );
        // Added and removed again while waiting: both states stay, in order.
        let later = t0 + Duration::from_secs(1);
        assert!(
            a.hold_or_pass("u1", user("u1", &[]), none, later)
                .is_empty()
        );
        assert!(a.release(none, later, Duration::from_secs(5)).is_empty());
        let g1 = |g: &str| g == "g1";
        let released = a.release(g1, later, Duration::from_secs(5));
        assert_eq!(released.len(), 1);
        assert_eq!(released[0].0, "u1");
        assert_eq!(groups_of(&released[0].1), [1, 0]);
        assert!(a.release(g1, later, Duration::from_secs(5)).is_empty());
    }

    #[test]
    fn a_new_state_naming_known_groups_releases_the_held_ones_first() {
        let mut a = AwaitingGroups::default();
        let t0 = Instant::now();
        assert!(
            a.hold_or_pass("u1", user("u1", &["g1"]), |_| false, t0)
                .is_empty()
        );
        let g1 = |g: &str| g == "g1";
        let now = a.hold_or_pass("u1", user("u1", &["g1"]), g1, t0);
        assert_eq!(groups_of(&now), [1, 1]);
        assert!(a.held().is_empty());
    }

    #[test]
    fn a_group_never_seen_holds_a_user_only_for_max_wait() {
        let mut a = AwaitingGroups::default();
        let t0 = Instant::now();
        let never = |_: &str| false;
        assert!(
            a.hold_or_pass("u1", user("u1", &["gone"]), never, t0)
                .is_empty()
        );
        let max = Duration::from_secs(5);
        assert!(
            a.release(never, t0 + Duration::from_secs(4), max)
                .is_empty()
        );
        assert_eq!(a.release(never, t0 + max, max).len(), 1);
    }

    #[test]
    fn known_groups_and_groups_pass_and_a_deletion_takes_the_held_states() {
        let mut a = AwaitingGroups::default();
        let t0 = Instant::now();
        let known = |g: &str| g == "g1";
        assert_eq!(
            a.hold_or_pass("u1", user("u1", &["g1"]), known, t0).len(),
            1
        );
        let group = Snapshot {
            kind: Kind::Group,
            ..user("g2", &[])
        };
        assert_eq!(a.hold_or_pass("g2", group, known, t0).len(), 1);
        assert!(
            a.hold_or_pass("u3", user("u3", &["g9"]), known, t0)
                .is_empty()
        );
        assert_eq!(a.held(), ["u3"]);
        assert_eq!(groups_of(&a.take("u3")), [1]);
        assert!(a.held().is_empty());
    }

    #[test]
    fn a_relist_forgets_the_held_users_it_did_not_show() {
        let mut a = AwaitingGroups::default();
        let t0 = Instant::now();
        assert!(
            a.hold_or_pass("u1", user("u1", &["g9"]), |_| false, t0)
                .is_empty()
        );
        assert!(
            a.hold_or_pass("u2", user("u2", &["g9"]), |_| false, t0)
                .is_empty()
        );
        a.retain(|uid| uid == "u2");
        assert_eq!(a.held(), ["u2"]);
    }
}
