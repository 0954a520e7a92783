//! In-memory copy of every watched ScimDirectory, ScimUser and ScimGroup, with the indexes
//! the SCIM filters need. Fed by watchers *and* by the server's own write responses
//! (read-your-writes); an object with an older resourceVersion than the one held is ignored.
//! `entries.rs` holds one directory's data and its indexes, `directories.rs` what the server
//! knows of each ScimDirectory; this file the directories, their locks and the conversion of
//! watched users and groups. The cleanup queue it feeds is `crate::cleanup_queue`.

mod directories;
mod entries;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use kube::api::DynamicObject;
use kube_scim_crds::{ScimDirectory, labels};
use scim_protocol::{Resource, ResourceKind};
use serde_json::Value;

use crate::cleanup_queue::{CleanupJob, CleanupQueue};
use crate::convert::resource_from_status;

#[cfg(test)]
pub use directories::Verifier;
use directories::dir_info;
pub use directories::{DirInfo, EntraAuth, FederationAuth};
pub use entries::{DirData, Entry, RolloutEntry};

/// A directory named by a request.
#[derive(Debug, Clone, Copy)]
pub struct DirRef<'a> {
    /// Namespace.
    pub ns: &'a str,
    /// ScimDirectory name.
    pub name: &'a str,
}

impl DirRef<'_> {
    /// `namespace/name`.
    pub fn label(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }
}

/// Namespace and name of a directory.
pub type DirKey = (String, String);

/// One directory's data behind its own lock.
type Shard = Arc<RwLock<DirData>>;

/// The shared cache. Each directory's users and groups sit behind their own lock, so a slow
/// query in one directory never stalls writes or watch updates of another; the map of
/// directories is write-locked only to add one.
#[derive(Default)]
pub struct Cache {
    /// Shared, so that a request's checks and handlers hold the directory without copying it.
    dirs: RwLock<HashMap<DirKey, Arc<DirInfo>>>,
    data: RwLock<HashMap<DirKey, Shard>>,
    watchers_total: AtomicUsize,
    watchers_synced: AtomicUsize,
    /// Groups whose members' labels the cleanup worker is to bring in line.
    cleanups: CleanupQueue,
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
    let member_of: Vec<String> = obj
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
    let member_display = obj
        .metadata
        .annotations
        .as_ref()
        .map(|a| {
            a.iter()
                .filter_map(|(k, v)| {
                    let g = k.strip_prefix(labels::MEMBER_DISPLAY_PREFIX)?;
                    member_of
                        .contains(&g.to_string())
                        .then(|| (g.to_string(), Box::from(v.as_str())))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut entry = Entry::new(name, rv_str, &resource, created, last_modified, member_of);
    entry.member_display = member_display;
    if kind == ResourceKind::Group {
        entry.rollout = rollout_of_object(obj);
    }
    entry.held = obj
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(kube_scim_crds::HELD_LABEL))
        .map(|v| Box::from(v.as_str()));
    Some((ns, dir, entry, resource))
}

/// A group's `spec.memberRollout.members`, if set.
fn rollout_of_object(obj: &DynamicObject) -> Option<Vec<RolloutEntry>> {
    let members = obj.data.get("spec")?.get("memberRollout")?.get("members")?;
    let list: Vec<kube_scim_crds::RolloutMember> = serde_json::from_value(members.clone()).ok()?;
    Some(
        list.into_iter()
            .map(|m| (m.value, m.display.map(Box::from)))
            .collect(),
    )
}

/// One directory's figures for metrics.
#[derive(Debug, Default, Clone)]
pub struct DirStats {
    /// `namespace/name`.
    pub directory: String,
    /// Ready condition True.
    pub ready: bool,
    /// `spec.suspend`.
    pub suspended: bool,
    /// Users.
    pub users: usize,
    /// Active users.
    pub active_users: usize,
    /// Groups.
    pub groups: usize,
    /// Held deletions and deactivations.
    pub held: usize,
    /// Groups whose membership labels the cleanup worker has yet to settle.
    pub cleanup_pending: usize,
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
    pub fn directory(&self, ns: &str, name: &str) -> Option<Arc<DirInfo>> {
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
        write_lock(&self.dirs).insert((ns, name), Arc::new(info));
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

    /// Runs `f` on a directory's data under its write lock (an unknown directory's data is
    /// made).
    pub fn update<R>(&self, ns: &str, dir: &str, f: impl FnOnce(&mut DirData) -> R) -> R {
        f(&mut write_lock(&self.shard_or_new(ns, dir)))
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
        if let Some(known) = read_lock(&shard).known(kind, name, rv) {
            return known;
        }
        if obj.metadata.deletion_timestamp.is_some() {
            // Being deleted (a finalizer holds it): gone for SCIM at once; its members'
            // labels are the cleanup worker's to remove.
            write_lock(&shard).delete(kind, name, rv);
            if kind == ResourceKind::Group {
                self.cleanups.queue(CleanupJob {
                    ns: ns.to_string(),
                    dir: directory_of(obj)?,
                    group: name.to_string(),
                });
            }
            return None;
        }
        let (_, dir, entry, resource) = entry_from_object(kind, obj)?;
        let held = write_lock(&shard).apply(kind, entry, &resource);
        if let Some(e) = &held
            && e.rollout.is_some()
        {
            // A member list to roll out (also one a stopped server left unfinished).
            self.cleanups.queue(CleanupJob {
                ns: ns.to_string(),
                dir,
                group: name.to_string(),
            });
        }
        held
    }

    /// Removes an object (watch deletion or our own DELETE) and remembers its version. A group
    /// whose members still carry its label (deleted with kubectl, say) becomes a cleanup job.
    pub fn delete_object(&self, kind: ResourceKind, ns: &str, dir: &str, name: &str, rv: u64) {
        let shard = self.shard_or_new(ns, dir);
        let labelled = {
            let mut d = write_lock(&shard);
            d.delete(kind, name, rv);
            kind == ResourceKind::Group && d.has_members(name)
        };
        if labelled {
            self.cleanups.queue(CleanupJob {
                ns: ns.to_string(),
                dir: dir.to_string(),
                group: name.to_string(),
            });
        }
    }

    /// The cleanup worker's queue, which watch events and writes feed.
    pub fn cleanups(&self) -> &CleanupQueue {
        &self.cleanups
    }

    /// Groups that no cached group object stands for but whose id a membership label still
    /// names (a group deleted while no server ran, or with kubectl): the sweep's jobs.
    pub fn orphaned_groups(&self) -> Vec<CleanupJob> {
        let shards: Vec<(DirKey, Shard)> = read_lock(&self.data)
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        let mut jobs = Vec::new();
        for ((ns, dir), shard) in shards {
            for group in read_lock(&shard).labelled_groups_without_object() {
                jobs.push(CleanupJob {
                    ns: ns.clone(),
                    dir: dir.clone(),
                    group,
                });
            }
        }
        jobs
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

    /// Every known directory's figures, for metrics.
    pub fn directory_stats(&self) -> Vec<DirStats> {
        let dirs: Vec<(DirKey, Arc<DirInfo>)> = read_lock(&self.dirs)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        dirs.into_iter()
            .map(|((ns, name), info)| {
                let (users, active_users, groups, held) = self.read(&ns, &name, DirData::stats);
                let cleanup_pending = self.cleanups.pending(&ns, &name);
                DirStats {
                    directory: format!("{ns}/{name}"),
                    ready: info.ready,
                    suspended: info.suspended,
                    users,
                    active_users,
                    groups,
                    held,
                    cleanup_pending,
                }
            })
            .collect()
    }

    /// Sizes for metrics.
    pub fn sizes(&self) -> Sizes {
        let mut s = Sizes {
            directories: read_lock(&self.dirs).len(),
            ..Sizes::default()
        };
        let shards: Vec<Shard> = read_lock(&self.data).values().cloned().collect();
        for shard in shards {
            let (users, groups, memberships) = read_lock(&shard).sizes();
            s.users += users;
            s.groups += groups;
            s.memberships += memberships;
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
        c.read("ns", "d", DirData::user_name_keys)
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
}
