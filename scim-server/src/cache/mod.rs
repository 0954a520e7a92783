//! In-memory copy of every watched ScimDirectory, ScimUser and ScimGroup, with the indexes
//! the SCIM filters need. Fed by watchers *and* by the server's own write responses
//! (read-your-writes); an object with an older resourceVersion than the one held is ignored.
//! `entries.rs` holds one directory's data and its indexes; this file the directories, their
//! locks and the conversion of watched objects.

mod entries;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use kube::api::DynamicObject;
use kube_scim_crds::{AuthMethod, CONDITION_READY, Provider, ScimDirectory, labels};
use kube_scim_runtime::verifier;
use scim_protocol::{Resource, ResourceKind};
use serde_json::Value;

use crate::auth::entra::EntraAuth;
use crate::auth::federation::FederationAuth;
use crate::auth::oauth::OAuthSettings;
use crate::cleanup_queue::{CleanupJob, CleanupQueue};
use crate::convert::resource_from_status;
use crate::guard::Guard;

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

/// A directory as the server needs it.
#[derive(Debug, Clone, Default)]
pub struct DirInfo {
    /// Object uid (for ownerReferences, and bound into every token verifier).
    pub uid: String,
    /// Namespace and name, bound into every token verifier.
    pub namespace: String,
    pub name: String,
    /// Ready condition is True.
    pub ready: bool,
    /// Verifiers of valid tokens, bound to this directory: key id, HMAC-SHA256 digest, expiry.
    pub verifiers: Vec<Verifier>,
    /// `spec.provider`: which client's expectations the answers follow (see `dialect`).
    pub provider: Provider,
    /// `BearerToken` is not among `spec.auth.methods`: the bearer token opens nothing.
    pub no_bearer: bool,
    /// With method `EntraToken`: the tenant (and applications) whose Entra-issued tokens open it.
    pub entra: Option<EntraAuth>,
    /// With method `OAuthClientCredentials`: the token endpoint's settings (its access tokens
    /// open the directory).
    pub oauth: Option<OAuthSettings>,
    /// With method `WorkloadIdentityFederation`: which Entra-signed assertions the token
    /// endpoint exchanges for access tokens (which open the directory).
    pub federation: Option<FederationAuth>,
    /// `spec.suspend`: writes are refused, reads served.
    pub suspended: bool,
    /// `spec.deletionGuard`.
    pub guard: Guard,
}

/// One published verifier, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    /// Id of the verifier key.
    pub key_id: String,
    /// HMAC-SHA256 of the token under that key.
    pub digest: [u8; 32],
    /// After this the verifier opens nothing; `None` for the current token.
    pub expires_at: Option<jiff::Timestamp>,
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

fn dir_info(d: &ScimDirectory) -> DirInfo {
    let st = d.status.as_ref();
    let ready = st.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == CONDITION_READY && c.status == "True")
    });
    let mut unkeyed = 0;
    let verifiers = st
        .map(|s| {
            s.token_verifiers
                .iter()
                .filter_map(|v| {
                    // Only verifiers bound to a directory count: kube-scim 0.1.0's unkeyed
                    // `sha256:` hashes and the unbound `hmac-sha256:` ones of earlier builds
                    // name no directory, so a planted one could not be told from a real one
                    // (issue 27). They open nothing; the operator replaces them at its first
                    // reconcile.
                    let Some((verifier::Kind::Bound, key_id, digest)) = verifier::parse(&v.hash)
                    else {
                        unkeyed += 1;
                        return None;
                    };
                    let expires_at = match v.expires_at.as_deref() {
                        None | Some("") => None,
                        Some(t) => match t.parse::<jiff::Timestamp>() {
                            Ok(ts) => Some(ts),
                            // An unreadable expiry must not make a token valid forever.
                            Err(_) => Some(jiff::Timestamp::UNIX_EPOCH),
                        },
                    };
                    Some(Verifier {
                        key_id: key_id.to_string(),
                        digest,
                        expires_at,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    if unkeyed > 0 {
        tracing::warn!(
            namespace = d.metadata.namespace.as_deref().unwrap_or_default(),
            directory = d.metadata.name.as_deref().unwrap_or_default(),
            unkeyed,
            "ignoring token verifiers not bound to the directory (written by an older operator; the current operator replaces them)"
        );
    }
    DirInfo {
        uid: d.metadata.uid.clone().unwrap_or_default(),
        namespace: d.metadata.namespace.clone().unwrap_or_default(),
        name: d.metadata.name.clone().unwrap_or_default(),
        ready,
        verifiers,
        provider: d.spec.provider,
        no_bearer: !d.spec.auth.allows(AuthMethod::BearerToken),
        entra: d
            .spec
            .auth
            .entra_token
            .as_ref()
            .filter(|_| d.spec.auth.allows(AuthMethod::EntraToken))
            .map(|e| EntraAuth {
                tenant_id: e.tenant_id.to_ascii_lowercase(),
                allowed_app_ids: e.allowed_app_ids.clone(),
            }),
        oauth: d
            .spec
            .auth
            .allows(AuthMethod::OAuthClientCredentials)
            .then(|| {
                OAuthSettings::from_lifetime(
                    d.spec
                        .auth
                        .oauth_client_credentials
                        .as_ref()
                        .and_then(|o| o.access_token_lifetime.as_deref()),
                )
            }),
        federation: d
            .spec
            .auth
            .workload_identity_federation
            .as_ref()
            .filter(|_| d.spec.auth.allows(AuthMethod::WorkloadIdentityFederation))
            .map(|f| FederationAuth {
                tenant_id: f.tenant_id.to_ascii_lowercase(),
                subject: f.subject.clone(),
                // Unset: the token endpoint as the operator published it (not as a request's
                // Host header says it is).
                audience: f
                    .audience
                    .clone()
                    .or_else(|| st.and_then(|s| s.oauth_token_endpoint.clone())),
                lifetime: OAuthSettings::from_lifetime(f.access_token_lifetime.as_deref()).lifetime,
            }),
        suspended: d.spec.suspend,
        guard: Guard::from_spec(&d.spec.deletion_guard),
    }
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
        let dirs: Vec<(DirKey, DirInfo)> = read_lock(&self.dirs)
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

    #[test]
    fn only_bound_verifiers_are_kept_and_a_bad_expiry_has_passed() {
        let bound = format!("hmac-sha256-dir:k1:{}", "ab".repeat(32));
        let verifier = |hash: &str, expires_at: Option<&str>| kube_scim_crds::TokenVerifier {
            hash: hash.to_string(),
            fingerprint: None,
            expires_at: expires_at.map(str::to_string),
        };
        let mut d = ScimDirectory::new("d", Default::default());
        d.status = Some(kube_scim_crds::ScimDirectoryStatus {
            token_verifiers: vec![
                verifier(&bound, None),
                verifier(&format!("sha256:{}", "ab".repeat(32)), None),
                verifier(&format!("hmac-sha256-dir:k1:{}", "zz".repeat(32)), None),
                verifier(&bound, Some("soon")),
                // Unbound (earlier builds): names no directory, so never accepted.
                verifier(&format!("hmac-sha256:k1:{}", "cd".repeat(32)), None),
            ],
            ..Default::default()
        });
        let info = dir_info(&d);
        assert_eq!(
            info.verifiers,
            vec![
                Verifier {
                    key_id: "k1".into(),
                    digest: [0xab; 32],
                    expires_at: None,
                },
                Verifier {
                    key_id: "k1".into(),
                    digest: [0xab; 32],
                    expires_at: Some(jiff::Timestamp::UNIX_EPOCH),
                },
            ]
        );
    }

    #[test]
    fn federation_expects_the_configured_audience_else_the_published_token_endpoint() {
        let mut spec = kube_scim_crds::ScimDirectorySpec::default();
        spec.auth.methods = vec![AuthMethod::WorkloadIdentityFederation];
        spec.auth.workload_identity_federation =
            Some(kube_scim_crds::WorkloadIdentityFederationSpec {
                tenant_id: "3F1E4B7A-5C2D-4E8F-9A0B-1C2D3E4F5A6B".into(),
                subject: "sp".into(),
                audience: None,
                access_token_lifetime: Some("2h".into()),
            });
        let mut d = ScimDirectory::new("d", spec);
        let endpoint = "https://scim.example/scim/v2/ns/d/oauth2/token";
        d.status = Some(kube_scim_crds::ScimDirectoryStatus {
            oauth_token_endpoint: Some(endpoint.into()),
            ..Default::default()
        });
        let fed = dir_info(&d).federation.unwrap();
        assert_eq!(fed.tenant_id, "3f1e4b7a-5c2d-4e8f-9a0b-1c2d3e4f5a6b");
        assert_eq!(fed.audience.as_deref(), Some(endpoint));
        assert_eq!(fed.lifetime, std::time::Duration::from_secs(7200));
        // Federation alone does not make the client secret work.
        assert!(dir_info(&d).oauth.is_none());
        d.spec
            .auth
            .workload_identity_federation
            .as_mut()
            .unwrap()
            .audience = Some("app-id".into());
        assert_eq!(
            dir_info(&d).federation.unwrap().audience.as_deref(),
            Some("app-id")
        );
        // The settings without the method open nothing.
        d.spec.auth.methods = vec![AuthMethod::BearerToken];
        assert!(dir_info(&d).federation.is_none());
    }
}
