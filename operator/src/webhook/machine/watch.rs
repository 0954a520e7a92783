//! What the watches say becomes events: the directory, user and group watch events derived
//! into the outbox, in order, users held while their groups are unknown, and re-lists that
//! tell what was deleted unseen.

use std::collections::HashSet;

use kube::ResourceExt;
use kube::runtime::watcher;
use kube_scim_crds::{ScimDirectory, ScimGroup, ScimUser};
use serde_json::{Value, json};

use super::{GROUP_WAIT, Machine, Now};
use crate::webhook::events::{self, Derived, DirectoryState, Event, Kind, Snapshot};

impl Machine {
    fn group_data(&self, id: &str) -> Value {
        self.groups_by_id.get(id).cloned().unwrap_or_else(
            || json!({"object": "directory_group", "id": id, "directory_id": self.directory_id}),
        )
    }

    /// Derives the changes of the users that waited for their groups: every group they name is
    /// known now, or they waited [`GROUP_WAIT`].
    pub fn release_awaiting(&mut self, now: Now) {
        let groups = &self.groups_by_id;
        let known = |g: &str| groups.contains_key(g);
        for (uid, states) in self.awaiting.release(known, now.instant, GROUP_WAIT) {
            for state in states {
                self.derive(&uid, Some(state), now);
            }
        }
    }

    /// Derives the events from the last derived state of `uid` to `new`.
    pub(super) fn derive(&mut self, uid: &str, new: Option<Snapshot>, now: Now) {
        let old = self.outbox.derived.get(uid);
        if old.map(|d| &d.snapshot) == new.as_ref() {
            return;
        }
        let changes = events::diff(
            old.map(|d| &d.snapshot),
            new.as_ref(),
            &self.directory_id,
            &|id| self.group_data(id),
        );
        let mut seq = old.map(|d| d.seq).unwrap_or(0);
        let created_at = now.wall.to_string();
        for change in changes {
            seq += 1;
            if !self.settings.events.contains(&change.event) {
                continue;
            }
            self.outbox.pending.push_back(Event {
                id: events::event_id(&self.webhook_uid, uid, seq),
                event: change.event,
                data: change.data,
                created_at: created_at.clone(),
                transition: change.transition,
                resource: uid.to_string(),
            });
        }
        match new {
            Some(snapshot) => {
                if snapshot.kind == Kind::Directory {
                    self.announced = true;
                }
                if snapshot.kind == Kind::Group {
                    self.groups_by_id
                        .insert(snapshot.id.clone(), snapshot.data.clone());
                }
                self.outbox
                    .derived
                    .insert(uid.to_string(), Derived { snapshot, seq });
            }
            None => {
                let gone = self.outbox.derived.remove(uid);
                if gone.is_some_and(|d| d.snapshot.kind == Kind::Directory) {
                    // `dsync.deleted` stands for its users and groups (the receiver drops
                    // them): forget them without events. A directory of the same name that
                    // becomes Ready later is announced again, its users and groups `created`.
                    self.outbox
                        .derived
                        .retain(|_, d| d.snapshot.kind == Kind::Directory);
                    self.groups_by_id.clear();
                    self.awaiting.clear();
                    self.announced = self
                        .outbox
                        .derived
                        .values()
                        .any(|d| d.snapshot.kind == Kind::Directory);
                }
            }
        }
        self.dirty = true;
    }

    pub fn on_directory(&mut self, event: watcher::Event<ScimDirectory>, now: Now) {
        match event {
            watcher::Event::Init => {
                self.listing.insert("directory", HashSet::new());
            }
            watcher::Event::InitApply(dir) | watcher::Event::Apply(dir) => {
                let Some(uid) = dir.uid() else { return };
                if let Some(seen) = self.listing.get_mut("directory") {
                    seen.insert(uid.clone());
                }
                match events::directory_state(&dir, &self.directory_id) {
                    DirectoryState::Pending => {}
                    DirectoryState::Active(snapshot) => {
                        // Another uid of the same name was announced: that directory was
                        // deleted and this one created while no watch event said so (the
                        // deliverer was down). The old connection ends before the new begins.
                        let replaced: Vec<String> = self
                            .outbox
                            .derived
                            .iter()
                            .filter(|(u, d)| d.snapshot.kind == Kind::Directory && **u != uid)
                            .map(|(u, _)| u.clone())
                            .collect();
                        for old in replaced {
                            self.derive(&old, None, now);
                        }
                        self.derive(&uid, Some(snapshot), now);
                    }
                    DirectoryState::Deleting => self.derive(&uid, None, now),
                }
            }
            watcher::Event::Delete(dir) => {
                if let Some(uid) = dir.uid() {
                    self.derive(&uid, None, now);
                }
            }
            watcher::Event::InitDone => self.forget_unlisted("directory", Kind::Directory, now),
        }
    }

    pub fn on_user(&mut self, event: watcher::Event<ScimUser>, now: Now) {
        let directory_id = self.directory_id.clone();
        self.on_event("user", Kind::User, event, now, |u| {
            events::user_snapshot(u, &directory_id)
        });
    }

    pub fn on_group(&mut self, event: watcher::Event<ScimGroup>, now: Now) {
        let directory_id = self.directory_id.clone();
        self.on_event("group", Kind::Group, event, now, |g| {
            events::group_snapshot(g, &directory_id)
        });
    }

    fn on_event<K: kube::Resource>(
        &mut self,
        kind_name: &'static str,
        kind: Kind,
        event: watcher::Event<K>,
        now: Now,
        snapshot: impl Fn(&K) -> Option<Snapshot>,
    ) {
        match event {
            watcher::Event::Init => {
                self.listing.insert(kind_name, HashSet::new());
            }
            watcher::Event::InitApply(object) | watcher::Event::Apply(object) => {
                let Some(uid) = object.meta().uid.clone() else {
                    return;
                };
                if let Some(seen) = self.listing.get_mut(kind_name) {
                    seen.insert(uid.clone());
                }
                // An object without status yet has no attributes to announce.
                let Some(s) = snapshot(&object) else { return };
                let groups = &self.groups_by_id;
                let known = |g: &str| groups.contains_key(g);
                for state in self.awaiting.hold_or_pass(&uid, s, known, now.instant) {
                    self.derive(&uid, Some(state), now);
                }
                if kind == Kind::Group {
                    self.release_awaiting(now);
                }
            }
            watcher::Event::Delete(object) => {
                if let Some(uid) = object.meta().uid.clone() {
                    // What it went through first (a membership added and removed meanwhile).
                    for state in self.awaiting.take(&uid) {
                        self.derive(&uid, Some(state), now);
                    }
                    self.derive(&uid, None, now);
                }
            }
            watcher::Event::InitDone => self.forget_unlisted(kind_name, kind, now),
        }
    }

    /// At the end of a (re-)list: every derived object of `kind` the list did not show was
    /// deleted while no watch event said so.
    fn forget_unlisted(&mut self, listing: &'static str, kind: Kind, now: Now) {
        let Some(seen) = self.listing.remove(listing) else {
            return;
        };
        if kind == Kind::User {
            self.awaiting.retain(|uid| seen.contains(uid));
        }
        let gone: Vec<String> = self
            .outbox
            .derived
            .iter()
            .filter(|(uid, d)| d.snapshot.kind == kind && !seen.contains(*uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in gone {
            self.derive(&uid, None, now);
        }
    }
}
