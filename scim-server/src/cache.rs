//! In-memory copy of every watched ScimDirectory, ScimUser and ScimGroup, with the indexes
//! the SCIM filters need. Fed by watchers *and* by the server's own write responses
//! (read-your-writes); an object with an older resourceVersion than the one held is ignored.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use kube::api::DynamicObject;
use kube_scim_crds::{CONDITION_READY, ScimDirectory, labels};
use scim_protocol::{IndexHint, Resource, ResourceKind};
use serde_json::Value;

use crate::convert::resource_from_status;

/// Namespace and name of a directory.
pub type DirKey = (String, String);

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
        }
    }

    /// The resource (parsed from the stored text).
    pub fn resource(&self) -> Result<Resource, scim_protocol::ScimError> {
        let v: Value = serde_json::from_str(&self.json)
            .map_err(|e| scim_protocol::ScimError::Internal(format!("cached resource: {e}")))?;
        Resource::from_stored(self.kind, &v)
    }
}

/// A directory as the server needs it.
#[derive(Debug, Clone, Default)]
pub struct DirInfo {
    /// Object uid (for ownerReferences).
    pub uid: String,
    /// Ready condition is True.
    pub ready: bool,
    /// SHA-256 digests of valid tokens and their expiry.
    pub verifiers: Vec<([u8; 32], Option<jiff::Timestamp>)>,
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
    /// group id -> member ids (users and groups).
    members: HashMap<String, HashSet<String>>,
    /// Deleted objects: events at or below this resourceVersion are ignored (for ten minutes).
    tombstones: HashMap<(ResourceKind, String), (u64, Instant)>,
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
                    e.member_of
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
        self.members.contains_key(id)
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
    }

    fn put(&mut self, kind: ResourceKind, e: Arc<Entry>, r: &Resource) {
        if let Some(old) = self.remove(kind, &e.id) {
            drop(old);
        }
        self.index(kind, &e, r);
        match kind {
            ResourceKind::User => self.users.insert(e.id.clone(), e),
            ResourceKind::Group => self.groups.insert(e.id.clone(), e),
        };
    }

    fn remove(&mut self, kind: ResourceKind, id: &str) -> Option<Arc<Entry>> {
        let old = match kind {
            ResourceKind::User => self.users.remove(id),
            ResourceKind::Group => self.groups.remove(id),
        }?;
        self.unindex(kind, &old);
        Some(old)
    }

    /// Applies `e` unless what is held (or a deletion remembered) is as new; returns the entry
    /// held afterwards.
    fn apply(&mut self, kind: ResourceKind, e: Entry, r: &Resource) -> Option<Arc<Entry>> {
        if e.rv != 0 {
            if self
                .tombstones
                .get(&(kind, e.id.clone()))
                .is_some_and(|(t, _)| e.rv <= *t)
            {
                return None;
            }
            if let Some(held) = self.get(kind, &e.id)
                && held.rv != 0
                && e.rv <= held.rv
            {
                return Some(held.clone());
            }
        }
        self.tombstones.remove(&(kind, e.id.clone()));
        let e = Arc::new(e);
        self.put(kind, e.clone(), r);
        Some(e)
    }

    /// Removes an object deleted at `rv` and remembers the deletion.
    fn delete(&mut self, kind: ResourceKind, id: &str, rv: u64) {
        if let Some(held) = self.get(kind, id) {
            if rv != 0 && held.rv > rv {
                return; // a newer incarnation is already held
            }
            self.remove(kind, id);
        }
        let now = Instant::now();
        self.tombstones
            .retain(|_, (_, t)| now.duration_since(*t) < TOMBSTONE_TTL);
        let key = (kind, id.to_string());
        let prev = self.tombstones.get(&key).map(|(r, _)| *r).unwrap_or(0);
        self.tombstones.insert(key, (rv.max(prev), now));
    }

    /// Ids of the members of a group.
    pub fn member_ids(&self, group: &str) -> Vec<String> {
        self.members
            .get(group)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// One directory's data behind its own lock.
type Shard = Arc<RwLock<DirData>>;

/// The shared cache. Each directory's users and groups sit behind their own lock, so a slow
/// query in one directory never stalls writes or watch updates of another; the map of
/// directories is write-locked only to add one.
#[derive(Default)]
pub struct Cache {
    dirs: RwLock<HashMap<DirKey, DirInfo>>,
    data: RwLock<HashMap<DirKey, Shard>>,
    watchers_total: AtomicUsize,
    watchers_synced: AtomicUsize,
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// Parses a resourceVersion for ordering (etcd revisions are integers).
pub fn rv_num(rv: &str) -> u64 {
    rv.parse().unwrap_or(0)
}

/// The directory an object belongs to (`spec.directoryRef.name`, immutable).
pub fn directory_of(obj: &DynamicObject) -> Option<String> {
    let name = obj.data.get("spec")?.get("directoryRef")?.get("name")?;
    name.as_str().map(str::to_string)
}

/// Converts an object (ScimUser / ScimGroup) into (namespace, directory, entry).
pub fn entry_from_object(
    kind: ResourceKind,
    obj: &DynamicObject,
) -> Option<(String, String, Entry, Resource)> {
    let ns = obj.metadata.namespace.clone()?;
    let name = obj.metadata.name.clone()?;
    let dir = directory_of(obj)?;
    let rv_str = obj.metadata.resource_version.clone().unwrap_or_default();
    let status = obj.data.get("status").cloned().unwrap_or(Value::Null);
    let (mut resource, created, last_modified) = match resource_from_status(kind, &status) {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(namespace = %ns, name = %name, error = %e, "ignoring object with unreadable status");
            return None;
        }
    };
    resource.set_id(name.clone());
    let member_of = obj
        .metadata
        .labels
        .as_ref()
        .map(|l| {
            l.iter()
                .filter(|(k, v)| v.as_str() == "true" && k.starts_with(labels::MEMBER_OF_PREFIX))
                .map(|(k, _)| k[labels::MEMBER_OF_PREFIX.len()..].to_string())
                .collect()
        })
        .unwrap_or_default();
    let entry = Entry::new(name, rv_str, &resource, created, last_modified, member_of);
    Some((ns, dir, entry, resource))
}

fn dir_info(d: &ScimDirectory) -> DirInfo {
    let st = d.status.as_ref();
    let ready = st.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == CONDITION_READY && c.status == "True")
    });
    let verifiers = st
        .map(|s| {
            s.token_verifiers
                .iter()
                .filter_map(|v| {
                    let hex = v.hash.strip_prefix("sha256:")?;
                    let digest = decode_hex32(hex)?;
                    let exp = match v.expires_at.as_deref() {
                        None | Some("") => None,
                        Some(t) => match t.parse::<jiff::Timestamp>() {
                            Ok(ts) => Some(ts),
                            // An unreadable expiry must not make a token valid forever.
                            Err(_) => Some(jiff::Timestamp::UNIX_EPOCH),
                        },
                    };
                    Some((digest, exp))
                })
                .collect()
        })
        .unwrap_or_default();
    DirInfo {
        uid: d.metadata.uid.clone().unwrap_or_default(),
        ready,
        verifiers,
    }
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Counts for metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sizes {
    /// Directories.
    pub directories: usize,
    /// Users.
    pub users: usize,
    /// Groups.
    pub groups: usize,
    /// Membership records.
    pub memberships: usize,
}

impl Cache {
    /// Registers a watcher that must sync before the server is ready.
    pub fn register_watcher(&self) {
        self.watchers_total.fetch_add(1, Ordering::SeqCst);
    }

    /// A watcher finished its first list.
    pub fn watcher_synced(&self) {
        self.watchers_synced.fetch_add(1, Ordering::SeqCst);
    }

    /// Every watcher has listed once.
    pub fn is_synced(&self) -> bool {
        let t = self.watchers_total.load(Ordering::SeqCst);
        t > 0 && self.watchers_synced.load(Ordering::SeqCst) >= t
    }

    /// Directory info.
    pub fn directory(&self, ns: &str, name: &str) -> Option<DirInfo> {
        read_lock(&self.dirs)
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Applies a directory.
    pub fn apply_directory(&self, d: &ScimDirectory) {
        let (Some(ns), Some(name)) = (d.metadata.namespace.clone(), d.metadata.name.clone()) else {
            return;
        };
        let info = dir_info(d);
        write_lock(&self.dirs).insert((ns, name), info);
    }

    /// Forgets a directory (its users and groups go when their own deletions arrive).
    pub fn delete_directory(&self, ns: &str, name: &str) {
        write_lock(&self.dirs).remove(&(ns.to_string(), name.to_string()));
    }

    /// Replaces the directory set after a re-list (only within `namespace` if given).
    pub fn retain_directories(&self, namespace: Option<&str>, seen: &HashSet<DirKey>) {
        write_lock(&self.dirs)
            .retain(|k, _| namespace.is_some_and(|n| n != k.0) || seen.contains(k));
    }

    fn shard(&self, ns: &str, dir: &str) -> Option<Shard> {
        read_lock(&self.data)
            .get(&(ns.to_string(), dir.to_string()))
            .cloned()
    }

    fn shard_or_new(&self, ns: &str, dir: &str) -> Shard {
        if let Some(s) = self.shard(ns, dir) {
            return s;
        }
        write_lock(&self.data)
            .entry((ns.to_string(), dir.to_string()))
            .or_default()
            .clone()
    }

    /// Runs `f` on a directory's data under its read lock; a directory without users or
    /// groups (or an unknown one) reads as empty.
    pub fn read<R>(&self, ns: &str, dir: &str, f: impl FnOnce(&DirData) -> R) -> R {
        static EMPTY: std::sync::OnceLock<DirData> = std::sync::OnceLock::new();
        match self.shard(ns, dir) {
            Some(shard) => f(&read_lock(&shard)),
            None => f(EMPTY.get_or_init(DirData::default)),
        }
    }

    /// Applies an object from a watch event or a write response, unless what is held is newer.
    /// Returns the entry now held for that object (which may be newer than `obj`).
    pub fn apply_object(&self, kind: ResourceKind, obj: &DynamicObject) -> Option<Arc<Entry>> {
        let ns = obj.metadata.namespace.as_deref()?;
        let name = obj.metadata.name.as_deref()?;
        let shard = self.shard_or_new(ns, &directory_of(obj)?);
        // Fast path: the watch echo of our own write (or anything older) needs no conversion.
        let rv = rv_num(obj.metadata.resource_version.as_deref().unwrap_or(""));
        if rv != 0 {
            let d = read_lock(&shard);
            if d.tombstones
                .get(&(kind, name.to_string()))
                .is_some_and(|(t, _)| rv <= *t)
            {
                return None;
            }
            if let Some(held) = d.get(kind, name)
                && held.rv != 0
                && rv <= held.rv
            {
                return Some(held.clone());
            }
        }
        let (_, _, entry, resource) = entry_from_object(kind, obj)?;
        write_lock(&shard).apply(kind, entry, &resource)
    }

    /// Removes an object (watch deletion or our own DELETE) and remembers its version.
    pub fn delete_object(&self, kind: ResourceKind, ns: &str, dir: &str, name: &str, rv: u64) {
        write_lock(&self.shard_or_new(ns, dir)).delete(kind, name, rv);
    }

    /// After a re-list of `kind` (within `namespace` if given): drops objects that were not
    /// listed and are not newer than the newest listed one.
    pub fn retain_objects(
        &self,
        kind: ResourceKind,
        namespace: Option<&str>,
        seen: &HashSet<(String, String)>,
        max_rv: u64,
    ) {
        let shards: Vec<(String, Shard)> = read_lock(&self.data)
            .iter()
            .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
            .map(|((ns, _), s)| (ns.clone(), s.clone()))
            .collect();
        for (ns, shard) in shards {
            let mut d = write_lock(&shard);
            let gone: Vec<String> = d
                .all(kind)
                .filter(|e| e.rv <= max_rv && !seen.contains(&(ns.clone(), e.id.clone())))
                .map(|e| e.id.clone())
                .collect();
            for id in gone {
                d.remove(kind, &id);
            }
        }
    }

    /// Sizes for metrics.
    pub fn sizes(&self) -> Sizes {
        let mut s = Sizes {
            directories: read_lock(&self.dirs).len(),
            ..Sizes::default()
        };
        let shards: Vec<Shard> = read_lock(&self.data).values().cloned().collect();
        for shard in shards {
            let d = read_lock(&shard);
            s.users += d.users.len();
            s.groups += d.groups.len();
            s.memberships += d.members.values().map(HashSet::len).sum::<usize>();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str, rv: &str, user_name: &str, groups: &[&str]) -> DynamicObject {
        let mut labels = serde_json::Map::new();
        for g in groups {
            labels.insert(labels::member_of(g), "true".into());
        }
        serde_json::from_value(json!({
            "apiVersion": "kubescim.io/v1alpha1", "kind": "ScimUser",
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv, "labels": labels},
            "spec": {"directoryRef": {"name": "d"}},
            "status": {"id": name, "userName": user_name, "active": true, "meta": {"created": "c", "lastModified": "l"}}
        }))
        .unwrap()
    }

    fn names(c: &Cache) -> Vec<String> {
        c.read("ns", "d", |d| {
            let mut v: Vec<String> = d.user_name.keys().map(|k| k.to_string()).collect();
            v.sort();
            v
        })
    }

    #[test]
    fn older_versions_are_ignored_and_indexes_follow_updates() {
        let c = Cache::default();
        c.apply_object(ResourceKind::User, &user("u1", "10", "Alice", &["g1"]));
        c.apply_object(ResourceKind::User, &user("u1", "12", "Bob", &[]));
        // The watch event of an older write arrives late: ignored.
        c.apply_object(ResourceKind::User, &user("u1", "11", "Carol", &["g1"]));
        assert_eq!(names(&c), vec!["bob"]);
        assert!(c.read("ns", "d", |d| d.member_ids("g1")).is_empty());
    }

    #[test]
    fn deleted_objects_do_not_come_back_from_late_events() {
        let c = Cache::default();
        c.apply_object(ResourceKind::User, &user("u1", "10", "Alice", &["g1"]));
        c.delete_object(ResourceKind::User, "ns", "d", "u1", 10);
        c.apply_object(ResourceKind::User, &user("u1", "10", "Alice", &["g1"]));
        assert!(names(&c).is_empty());
        assert!(c.read("ns", "d", |d| d.member_ids("g1")).is_empty());
        // A new incarnation (newer resourceVersion) is accepted.
        c.apply_object(ResourceKind::User, &user("u1", "20", "Alice", &[]));
        assert_eq!(names(&c), vec!["alice"]);
    }

    #[test]
    fn relist_drops_only_unlisted_older_objects() {
        let c = Cache::default();
        c.apply_object(ResourceKind::User, &user("u1", "10", "A", &[]));
        c.apply_object(ResourceKind::User, &user("u2", "11", "B", &[]));
        c.apply_object(ResourceKind::User, &user("u3", "30", "C", &[]));
        let seen: HashSet<(String, String)> = [("ns".to_string(), "u1".to_string())].into();
        c.retain_objects(ResourceKind::User, None, &seen, 20);
        assert_eq!(names(&c), vec!["a", "c"]);
    }

    #[test]
    fn a_long_read_of_one_directory_does_not_block_writes_to_another() {
        let c = Arc::new(Cache::default());
        c.apply_object(ResourceKind::User, &user("u1", "10", "A", &[]));
        let (entered, wait_entered) = std::sync::mpsc::channel();
        let (release, wait_release) = std::sync::mpsc::channel::<()>();
        let reader = {
            let c = c.clone();
            std::thread::spawn(move || {
                c.read("ns", "d", |_| {
                    entered.send(()).unwrap();
                    wait_release.recv().unwrap();
                })
            })
        };
        wait_entered.recv().unwrap();
        let mut other = user("u2", "11", "B", &[]);
        other.data["spec"]["directoryRef"]["name"] = "other".into();
        // Would deadlock (the reader waits for us) if directories shared one lock.
        assert!(c.apply_object(ResourceKind::User, &other).is_some());
        c.delete_object(ResourceKind::User, "ns", "other", "u2", 12);
        release.send(()).unwrap();
        reader.join().unwrap();
    }

    #[test]
    fn verifier_hex_decodes() {
        assert!(decode_hex32(&"ab".repeat(32)).is_some());
        assert!(decode_hex32("zz").is_none());
        assert!(decode_hex32(&"zz".repeat(32)).is_none());
    }
}
