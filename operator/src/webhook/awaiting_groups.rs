//! Users whose membership names a group the delivery loop has not seen yet.
//!
//! Users and groups arrive on separate watches, with no order between them: a member's label,
//! written just after its group was created, can arrive before the group itself. Its
//! `dsync.group.user_added` would then name the group by id only. So such a user's change waits
//! here until every group it names is known, or until `max_wait` has passed (a group deleted
//! before it was ever seen would otherwise hold the user forever). Only the newest state of a
//! user is kept: deriving from the last derived state to it gives the same events in the same
//! order per resource.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::events::{Kind, Snapshot};

/// The users held, by uid, with their newest snapshot and since when they wait.
#[derive(Default, Debug)]
pub struct AwaitingGroups {
    users: HashMap<String, (Snapshot, Instant)>,
}

impl AwaitingGroups {
    /// Holds a user's `snapshot` that names a group `known` does not have (and forgets an
    /// older one held for `uid`); gives back every other snapshot, to be derived now.
    pub fn hold_or_pass(
        &mut self,
        uid: &str,
        snapshot: Snapshot,
        known: impl Fn(&str) -> bool,
        now: Instant,
    ) -> Option<Snapshot> {
        let waits = snapshot.kind == Kind::User && snapshot.groups.iter().any(|g| !known(g));
        if !waits {
            self.users.remove(uid);
            return Some(snapshot);
        }
        let since = self.users.get(uid).map_or(now, |(_, since)| *since);
        self.users.insert(uid.to_string(), (snapshot, since));
        None
    }

    /// Takes the held users whose groups are all known now, or who waited `max_wait`.
    pub fn release(
        &mut self,
        known: impl Fn(&str) -> bool,
        now: Instant,
        max_wait: Duration,
    ) -> Vec<(String, Snapshot)> {
        let due: Vec<String> = self
            .users
            .iter()
            .filter(|(_, (s, since))| {
                s.groups.iter().all(|g| known(g)) || now.duration_since(*since) >= max_wait
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        due.into_iter()
            .filter_map(|uid| self.users.remove(&uid).map(|(s, _)| (uid, s)))
            .collect()
    }

    /// Forgets `uid` (deleted, or no longer listed).
    pub fn forget(&mut self, uid: &str) {
        self.users.remove(uid);
    }

    /// Forgets every user whose uid `keep` refuses.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.users.retain(|uid, _| keep(uid));
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

    #[test]
    fn a_user_naming_an_unknown_group_waits_for_it() {
        let mut a = AwaitingGroups::default();
        let t0 = Instant::now();
        let known_none = |_: &str| false;
        assert!(
            a.hold_or_pass("u1", user("u1", &["g1"]), known_none, t0)
                .is_none()
        );
        // A newer state replaces the held one; the wait keeps its start.
        let later = t0 + Duration::from_secs(1);
        assert!(
            a.hold_or_pass("u1", user("u1", &["g1", "g2"]), known_none, later)
                .is_none()
        );
        let only_g1 = |g: &str| g == "g1";
        assert!(a.release(only_g1, later, Duration::from_secs(5)).is_empty());
        let both = |g: &str| g == "g1" || g == "g2";
        let released = a.release(both, later, Duration::from_secs(5));
        assert_eq!(released.len(), 1);
        assert_eq!(released[0].0, "u1");
        assert_eq!(released[0].1.groups.len(), 2);
        assert!(a.release(both, later, Duration::from_secs(5)).is_empty());
    }

    #[test]
    fn a_group_never_seen_holds_a_user_only_for_max_wait() {
        let mut a = AwaitingGroups::default();
        let t0 = Instant::now();
        let never = |_: &str| false;
        assert!(
            a.hold_or_pass("u1", user("u1", &["gone"]), never, t0)
                .is_none()
        );
        let max = Duration::from_secs(5);
        assert!(
            a.release(never, t0 + Duration::from_secs(4), max)
                .is_empty()
        );
        assert_eq!(a.release(never, t0 + max, max).len(), 1);
    }

    #[test]
    fn known_groups_groups_and_deletions_pass_and_forget() {
        let mut a = AwaitingGroups::default();
        let t0 = Instant::now();
        let known = |g: &str| g == "g1";
        assert!(
            a.hold_or_pass("u1", user("u1", &["g1"]), known, t0)
                .is_some()
        );
        let group = Snapshot {
            kind: Kind::Group,
            ..user("g2", &[])
        };
        assert!(a.hold_or_pass("g2", group, known, t0).is_some());
        // A held user whose next state names only known groups passes and is no longer held.
        assert!(
            a.hold_or_pass("u2", user("u2", &["g9"]), known, t0)
                .is_none()
        );
        assert!(
            a.hold_or_pass("u2", user("u2", &["g1"]), known, t0)
                .is_some()
        );
        assert!(a.release(|_| true, t0, Duration::ZERO).is_empty());
        assert!(
            a.hold_or_pass("u3", user("u3", &["g9"]), known, t0)
                .is_none()
        );
        a.forget("u3");
        assert!(a.release(|_| true, t0, Duration::ZERO).is_empty());
    }
}
