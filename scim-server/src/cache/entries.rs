//! One directory's users and groups: compact entries and the indexes filters use.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scim_protocol::{IndexHint, Resource, ResourceKind};
use serde_json::Value;

use super::rv_num;
use crate::guard::{Counters, Guard};

/// One member of a group's rollout: its id and the `display` kept for it.
pub type RolloutEntry = (String, Option<Box<str>>);

/// One cached user or group.
#[derive(Debug)]
pub struct Entry {
    /// SCIM id (= object name).
    pub id: String,
    /// resourceVersion as a number (etcd revision) for ordering.
    pub rv: u64,
    /// resourceVersion as sent by the apiserver.
    pub rv_str: String,
    /// User or Group.
    pub kind: ResourceKind,
    /// The normalized resource (with `id`, without `meta`/`groups`/`members`) as compact JSON
    /// text: a parsed map costs several times more memory; see [`Entry::resource`].
    json: Box<str>,
    /// displayName, else userName (for member/group `display`).
    pub display: Option<Box<str>>,
    /// `meta.created`.
    pub created: String,
    /// `meta.lastModified`.
    pub last_modified: String,
    /// Ids of the groups this object is a direct member of (membership labels).
    pub member_of: Vec<String>,
    /// `(group id, display)`: the `display` the client sent for this member of that group,
    /// where one is kept (Okta directories); empty for almost every entry.
    pub member_display: Vec<(String, Box<str>)>,
    /// A group's member list being rolled out to the labels (`spec.memberRollout`): member id
    /// and kept `display`. While set, it is the group's member list.
    pub rollout: Option<Vec<RolloutEntry>>,
    /// A user's `active` (groups: true).
    pub active: bool,
    /// The operation the deletion guard holds on this object (`kubescim.io/held`), if any.
    pub held: Option<Box<str>>,
}

impl Entry {
    /// Builds an entry from a normalized resource.
    pub fn new(
        id: String,
        rv_str: String,
        resource: &Resource,
        created: String,
        last_modified: String,
        member_of: Vec<String>,
    ) -> Entry {
        let display = resource
            .display_name()
            .or(resource.user_name())
            .map(Box::from);
        Entry {
            id,
            rv: rv_num(&rv_str),
            rv_str,
            kind: resource.kind(),
            json: serde_json::to_string(resource.attributes())
                .unwrap_or_default()
                .into_boxed_str(),
            display,
            created,
            last_modified,
            member_of,
            member_display: Vec::new(),
            rollout: None,
            active: resource.active().unwrap_or(true),
            held: None,
        }
    }

    /// The `display` kept for this member of `group`, if any.
    pub fn display_in(&self, group: &str) -> Option<&str> {
        self.member_display
            .iter()
            .find(|(g, _)| g == group)
            .map(|(_, d)| &**d)
    }

    /// The resource (parsed from the stored text).
    pub fn resource(&self) -> Result<Resource, scim_protocol::ScimError> {
        let v: Value = serde_json::from_str(&self.json)
            .map_err(|e| scim_protocol::ScimError::Internal(format!("cached resource: {e}")))?;
        Resource::from_stored(self.kind, &v)
    }
}

/// Index key -> ids. Almost every key has exactly one id, so a small exact-capacity Vec
/// (not a set, whose nodes are several hundred bytes) keeps memory per user low.
pub type Multi = HashMap<Box<str>, Vec<Box<str>>>;

fn multi_add(m: &mut Multi, k: String, id: &str) {
    let v = m.entry(k.into_boxed_str()).or_default();
    if !v.iter().any(|x| &**x == id) {
        v.push(id.into());
        v.shrink_to_fit();
    }
}
fn multi_del(m: &mut Multi, k: &str, id: &str) {
    if let Some(v) = m.get_mut(k) {
        v.retain(|x| &**x != id);
        if v.is_empty() {
            m.remove(k);
        }
    }
}

/// Users and groups of one directory with their indexes.
#[derive(Default)]
pub struct DirData {
    /// Users by id.
    users: HashMap<String, Arc<Entry>>,
    /// Groups by id.
    groups: HashMap<String, Arc<Entry>>,
    /// lower-cased userName -> ids.
    user_name: Multi,
    /// externalId -> user ids.
    user_ext: Multi,
    /// lower-cased email (any) -> user ids.
    user_email: Multi,
    /// lower-cased group displayName -> ids.
    group_name: Multi,
    /// externalId -> group ids.
    group_ext: Multi,
    /// group id -> member ids (users and groups), from the membership labels.
    members: HashMap<String, HashSet<String>>,
    /// group id -> its member list being rolled out (member id -> kept display), which
    /// overrides `members` for that group until the labels are written.
    rollout: HashMap<String, HashMap<String, Option<Box<str>>>>,
    /// member id -> groups whose rollout lists it.
    rollout_of: HashMap<String, HashSet<String>>,
    /// Deleted objects: events at or below this resourceVersion are ignored (for ten minutes).
    tombstones: HashMap<(ResourceKind, String), (u64, Instant)>,
    /// What the deletion guard decides on: removals, held and pending operations.
    guard: Counters,
}

/// How long a deletion is remembered against late events.
const TOMBSTONE_TTL: Duration = Duration::from_secs(600);

impl DirData {
    fn map(&self, kind: ResourceKind) -> &HashMap<String, Arc<Entry>> {
        match kind {
            ResourceKind::User => &self.users,
            ResourceKind::Group => &self.groups,
        }
    }

    /// An entry by kind and id.
    pub fn get(&self, kind: ResourceKind, id: &str) -> Option<&Arc<Entry>> {
        self.map(kind).get(id)
    }

    /// Every entry of a kind, in no particular order.
    pub fn all(&self, kind: ResourceKind) -> impl Iterator<Item = &Arc<Entry>> {
        self.map(kind).values()
    }

    /// The entries an index holds for a filter hint; `None` when no index answers this hint
    /// for this kind (the caller then scans).
    pub fn lookup(&self, kind: ResourceKind, hint: &IndexHint) -> Option<Vec<&Arc<Entry>>> {
        let ids = |idx: &Multi, key: &str| -> Vec<&Arc<Entry>> {
            idx.get(key)
                .map(|s| s.iter().filter_map(|id| self.get(kind, id)).collect())
                .unwrap_or_default()
        };
        Some(match (kind, hint) {
            (_, IndexHint::Id(x)) => self.get(kind, x).into_iter().collect(),
            (ResourceKind::User, IndexHint::UserName(x)) => ids(&self.user_name, &x.to_lowercase()),
            (ResourceKind::User, IndexHint::ExternalId(x)) => ids(&self.user_ext, x),
            (ResourceKind::Group, IndexHint::ExternalId(x)) => ids(&self.group_ext, x),
            (ResourceKind::Group, IndexHint::DisplayName(x)) => {
                ids(&self.group_name, &x.to_lowercase())
            }
            (ResourceKind::User, IndexHint::WorkEmail(x) | IndexHint::Email(x)) => {
                ids(&self.user_email, &x.to_lowercase())
            }
            (ResourceKind::Group, IndexHint::MemberValue(x)) => self
                .kind_of(x)
                .and_then(|k| self.get(k, x))
                .map(|e| {
                    self.groups_of(e)
                        .iter()
                        .filter_map(|g| self.groups.get(g))
                        .collect()
                })
                .unwrap_or_default(),
            _ => return None,
        })
    }

    /// The id of a resource other than `except` whose unique key (see
    /// [`Resource::unique_key`]) is `key`.
    pub fn unique_holder(
        &self,
        kind: ResourceKind,
        key: &str,
        except: Option<&str>,
    ) -> Option<String> {
        let idx = match kind {
            ResourceKind::User => &self.user_name,
            ResourceKind::Group => &self.group_name,
        };
        idx.get(key)?
            .iter()
            .find(|id| Some(&***id) != except)
            .map(|id| id.to_string())
    }

    /// Whether any object carries a membership label of group `id` (a deleted group whose
    /// members were not released yet: its id must not be reused).
    pub fn has_members(&self, id: &str) -> bool {
        self.members.contains_key(id) || self.rollout.contains_key(id)
    }

    /// The groups `e` is a direct member of as SCIM serves them: its labels, except for
    /// groups whose member list is being rolled out, where the rollout decides.
    pub fn groups_of(&self, e: &Entry) -> Vec<String> {
        let mut groups: Vec<String> = e
            .member_of
            .iter()
            .filter(|g| !self.rollout.contains_key(*g))
            .cloned()
            .collect();
        if let Some(rolling) = self.rollout_of.get(&e.id) {
            groups.extend(rolling.iter().cloned());
            groups.sort();
        }
        groups
    }

    /// The `display` a group's rollout keeps for a member, if any.
    pub fn rollout_display(&self, group: &str, member: &str) -> Option<&str> {
        self.rollout.get(group)?.get(member)?.as_deref()
    }

    /// Ids whose membership label names `group` (what is written, whatever SCIM serves).
    pub fn labelled_ids(&self, group: &str) -> Vec<String> {
        self.members
            .get(group)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Kind of the object with this id, if any.
    pub fn kind_of(&self, id: &str) -> Option<ResourceKind> {
        if self.users.contains_key(id) {
            Some(ResourceKind::User)
        } else if self.groups.contains_key(id) {
            Some(ResourceKind::Group)
        } else {
            None
        }
    }

    fn unindex(&mut self, kind: ResourceKind, e: &Entry) {
        let id = e.id.as_str();
        if let Ok(r) = e.resource() {
            self.unindex_attrs(kind, id, &r);
        }
        for g in &e.member_of {
            if let Some(s) = self.members.get_mut(g) {
                s.remove(id);
                if s.is_empty() {
                    self.members.remove(g);
                }
            }
        }
        if let Some(list) = self.rollout.remove(id) {
            for m in list.keys() {
                if let Some(s) = self.rollout_of.get_mut(m) {
                    s.remove(id);
                    if s.is_empty() {
                        self.rollout_of.remove(m);
                    }
                }
            }
        }
    }

    fn unindex_attrs(&mut self, kind: ResourceKind, id: &str, r: &Resource) {
        match kind {
            ResourceKind::User => {
                if let Some(n) = r.user_name() {
                    multi_del(&mut self.user_name, &n.to_lowercase(), id);
                }
                if let Some(x) = r.external_id() {
                    multi_del(&mut self.user_ext, x, id);
                }
                for m in r.emails() {
                    multi_del(&mut self.user_email, &m.to_lowercase(), id);
                }
            }
            ResourceKind::Group => {
                if let Some(n) = r.display_name() {
                    multi_del(&mut self.group_name, &n.to_lowercase(), id);
                }
                if let Some(x) = r.external_id() {
                    multi_del(&mut self.group_ext, x, id);
                }
            }
        }
    }

    fn index(&mut self, kind: ResourceKind, e: &Entry, r: &Resource) {
        let id = e.id.as_str();
        match kind {
            ResourceKind::User => {
                if let Some(n) = r.user_name() {
                    multi_add(&mut self.user_name, n.to_lowercase(), id);
                }
                if let Some(x) = r.external_id() {
                    multi_add(&mut self.user_ext, x.to_string(), id);
                }
                for m in r.emails() {
                    multi_add(&mut self.user_email, m.to_lowercase(), id);
                }
            }
            ResourceKind::Group => {
                if let Some(n) = r.display_name() {
                    multi_add(&mut self.group_name, n.to_lowercase(), id);
                }
                if let Some(x) = r.external_id() {
                    multi_add(&mut self.group_ext, x.to_string(), id);
                }
            }
        }
        for g in &e.member_of {
            self.members
                .entry(g.clone())
                .or_default()
                .insert(id.to_string());
        }
        if let Some(list) = &e.rollout {
            for (m, _) in list {
                self.rollout_of
                    .entry(m.clone())
                    .or_default()
                    .insert(id.to_string());
            }
            self.rollout
                .insert(id.to_string(), list.iter().cloned().collect());
        }
    }

    fn put(&mut self, kind: ResourceKind, e: Arc<Entry>, r: &Resource) {
        if let Some(old) = self.remove(kind, &e.id)
            && old.active
            && !e.active
        {
            self.removed();
        }
        if e.held.is_some() {
            self.guard.count_held(true);
        }
        self.index(kind, &e, r);
        match kind {
            ResourceKind::User => self.users.insert(e.id.clone(), e),
            ResourceKind::Group => self.groups.insert(e.id.clone(), e),
        };
    }

    pub(super) fn remove(&mut self, kind: ResourceKind, id: &str) -> Option<Arc<Entry>> {
        let old = match kind {
            ResourceKind::User => self.users.remove(id),
            ResourceKind::Group => self.groups.remove(id),
        }?;
        self.unindex(kind, &old);
        if old.held.is_some() {
            self.guard.count_held(false);
        }
        Some(old)
    }

    /// Remembers a deletion or deactivation now.
    fn removed(&mut self) {
        self.guard.removed(Instant::now());
    }

    /// Whether the deletion guard holds the next deletion or deactivation; if it does not,
    /// that operation counts as pending until [`DirData::end_pending_removal`].
    pub fn decide_removal(&mut self, guard: &Guard) -> bool {
        let population = self.population();
        self.guard.decide(guard, population, Instant::now())
    }

    /// A pending deletion or deactivation was written (the cache now counts it) or failed.
    pub fn end_pending_removal(&mut self) {
        self.guard.end_pending();
    }

    /// `(users, active users, groups, held operations)`.
    pub fn stats(&self) -> (usize, usize, usize, usize) {
        let active = self.users.values().filter(|e| e.active).count();
        (
            self.users.len(),
            active,
            self.groups.len(),
            self.guard.held(),
        )
    }

    /// Entries carrying a held operation.
    pub fn held(&self) -> usize {
        self.guard.held()
    }

    /// Users and groups.
    pub fn population(&self) -> usize {
        self.users.len() + self.groups.len()
    }

    /// What is known of version `rv` of object `id` without converting it: `Some(None)` if a
    /// deletion at or after it is remembered, `Some(held)` if the entry held is as new, `None`
    /// if it is news. Version 0 (unknown) is always news.
    pub(super) fn known(
        &self,
        kind: ResourceKind,
        id: &str,
        rv: u64,
    ) -> Option<Option<Arc<Entry>>> {
        if rv == 0 {
            return None;
        }
        if self
            .tombstones
            .get(&(kind, id.to_string()))
            .is_some_and(|(t, _)| rv <= *t)
        {
            return Some(None);
        }
        self.get(kind, id)
            .filter(|held| held.rv != 0 && rv <= held.rv)
            .map(|held| Some(held.clone()))
    }

    /// Applies `e` unless what is held (or a deletion remembered) is as new; returns the entry
    /// held afterwards.
    pub(super) fn apply(
        &mut self,
        kind: ResourceKind,
        e: Entry,
        r: &Resource,
    ) -> Option<Arc<Entry>> {
        if let Some(known) = self.known(kind, &e.id, e.rv) {
            return known;
        }
        self.tombstones.remove(&(kind, e.id.clone()));
        let e = Arc::new(e);
        self.put(kind, e.clone(), r);
        Some(e)
    }

    /// The keys of the userName index (tests check that it follows updates).
    #[cfg(test)]
    pub(super) fn user_name_keys(&self) -> Vec<String> {
        let mut v: Vec<String> = self.user_name.keys().map(|k| k.to_string()).collect();
        v.sort();
        v
    }

    /// `(users, groups, membership records)`.
    pub(super) fn sizes(&self) -> (usize, usize, usize) {
        let memberships = self.members.values().map(HashSet::len).sum();
        (self.users.len(), self.groups.len(), memberships)
    }

    /// Removes an object deleted at `rv` and remembers the deletion.
    pub(super) fn delete(&mut self, kind: ResourceKind, id: &str, rv: u64) {
        if let Some(held) = self.get(kind, id) {
            if rv != 0 && held.rv > rv {
                return; // a newer incarnation is already held
            }
            self.remove(kind, id);
            self.removed();
        }
        let now = Instant::now();
        self.tombstones
            .retain(|_, (_, t)| now.duration_since(*t) < TOMBSTONE_TTL);
        let key = (kind, id.to_string());
        let prev = self.tombstones.get(&key).map(|(r, _)| *r).unwrap_or(0);
        self.tombstones.insert(key, (rv.max(prev), now));
    }

    /// Ids that membership labels name but that are no cached group.
    pub fn labelled_groups_without_object(&self) -> Vec<String> {
        self.members
            .keys()
            .filter(|g| !self.groups.contains_key(*g))
            .cloned()
            .collect()
    }

    /// Up to `limit` members (kind and id) of group `group` that are cached objects.
    pub fn members_up_to(&self, group: &str, limit: usize) -> Vec<(ResourceKind, String)> {
        self.members
            .get(group)
            .map(|s| {
                s.iter()
                    .filter_map(|id| self.kind_of(id).map(|k| (k, id.clone())))
                    .take(limit)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ids of the members of a group.
    pub fn member_ids(&self, group: &str) -> Vec<String> {
        if let Some(list) = self.rollout.get(group) {
            return list.keys().cloned().collect();
        }
        self.labelled_ids(group)
    }

    /// How many members SCIM serves for a group (an upper bound: ids of deleted members are
    /// counted until their labels or the rollout go).
    pub fn member_count(&self, group: &str) -> usize {
        match self.rollout.get(group) {
            Some(list) => list.len(),
            None => self.members.get(group).map_or(0, HashSet::len),
        }
    }
}
