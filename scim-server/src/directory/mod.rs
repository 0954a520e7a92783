//! The directory service: what SCIM means for one directory's users and groups, with no HTTP.
//!
//! It keeps the server-unique attribute unique, picks deterministic ids (so a POST re-sent
//! after a late answer finds its own object), retries on write conflicts, fans group
//! membership out to the members' labels, and applies its own write results to the cache so a
//! client reads its writes at once. Storage is reached through [`Storage`]; the unit tests
//! below run it on the in-memory store.

mod cleanup;
mod list;
mod members;
mod objects;

use std::sync::Arc;

use kube_scim_runtime::verifier::SharedKeyRing;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use scim_protocol::patch::replace_with_delta;
use scim_protocol::{
    ListQuery, MembershipDelta, PatchRequest, Resource, ResourceKind, ScimError, check_if_match,
    validate_create,
};
use serde_json::Value;

use kube_scim_crds::{HELD_DEACTIVATE, HELD_DELETE};

use crate::auth::entra::EntraVerifier;
use crate::auth::federation::FederationVerifier;
use crate::auth::{Authenticator, oauth};
pub use crate::cache::DirRef;
use crate::cache::{Cache, DirInfo, Entry, directory_of, rv_num};
use crate::cleanup_queue::CleanupJob;
use crate::convert::status_json;
use crate::error::Error;
use crate::metrics::LabelWriteLabels;
use crate::render::{self, Locations};
use crate::storage::{Storage, StoreError};

pub use cleanup::CleanupSettings;
pub use objects::candidate_id;

/// Limits the service works within.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest page of a list.
    pub max_results: usize,
    /// Membership label writes in flight per group change.
    pub member_write_concurrency: usize,
    /// Retries of an update after a resourceVersion conflict.
    pub conflict_retries: usize,
    /// A member-list replacement (or a new group) that would write more membership labels than
    /// this is recorded on the group and written in the background (see `cleanup.rs`).
    pub inline_member_writes: usize,
}

/// A change to an existing resource.
pub enum Change {
    /// PATCH operations.
    Patch(PatchRequest),
    /// PUT: the new resource.
    Replace(Value),
}

/// What the caller wants back after a write.
pub enum Reply<'a> {
    /// Nothing (the caller answers 204).
    Nothing,
    /// The resource, rendered at these locations, with a group's members if asked.
    Resource {
        /// Where resources live.
        at: &'a Locations,
        /// Compute a group's `members`.
        with_members: bool,
    },
}

/// What the client believes a cached resource to be: a user whose deactivation is held is
/// inactive to it.
fn believed(entry: &Entry) -> Result<Resource, Error> {
    let mut r = entry.resource()?;
    if entry.held.as_deref() == Some(HELD_DEACTIVATE) {
        r.set_attribute("active", Value::Bool(false))?;
    }
    Ok(r)
}

/// A deletion or deactivation the guard let through and that is being written: counted
/// against the guard's limit until it is (then the cache counts it).
struct PendingRemoval {
    cache: Arc<Cache>,
    ns: String,
    dir: String,
}

impl Drop for PendingRemoval {
    fn drop(&mut self) {
        self.cache
            .update(&self.ns, &self.dir, |d| d.end_pending_removal());
    }
}

/// The directory service over storage `S`.
pub struct DirectoryService<S> {
    cache: Arc<Cache>,
    store: S,
    limits: Limits,
    /// Who may use which directory.
    auth: Authenticator,
    /// Labels the cleanup worker writes, counted (unregistered unless `with_label_writes`).
    label_writes: Family<LabelWriteLabels, Counter>,
}

fn not_found(kind: ResourceKind, id: &str) -> Error {
    ScimError::NotFound(format!("no {} with id {id}", kind.name())).into()
}

fn uniqueness(kind: ResourceKind) -> Error {
    let attr = kind.unique_attr().map_or("name", |a| a.name);
    ScimError::Uniqueness(format!(
        "a {} with this {attr} already exists in this directory",
        kind.name().to_lowercase()
    ))
    .into()
}

/// Characters that do not show: controls, zero-width and other format characters, fillers.
/// Two names that differ only by them look the same to a person.
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
            | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}' | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}')
}

/// Makes the unique attribute (`userName`, a group's `displayName`) one identity per visible
/// name: refuses a blank value and invisible characters, and stores the NFC form, so names
/// that differ only in Unicode normalization are the same name (and collide as such).
fn normalize_unique(res: &mut Resource) -> Result<(), Error> {
    let Some(kind) = res.kind().unique_attr() else {
        return Ok(());
    };
    let attr = kind.name;
    let Some(v) = res.unique_value() else {
        return Err(ScimError::InvalidValue(format!("{attr} is required")).into());
    };
    if v.trim().is_empty() {
        return Err(ScimError::InvalidValue(format!("{attr} must not be empty or blank")).into());
    }
    if v.chars().any(invisible) {
        return Err(ScimError::InvalidValue(format!(
            "{attr} must not contain control, zero-width or other invisible characters"
        ))
        .into());
    }
    let nfc = icu_normalizer::ComposingNormalizerBorrowed::new_nfc().normalize(v);
    if let std::borrow::Cow::Owned(n) = nfc {
        res.set_unique_value(n);
    }
    Ok(())
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Millisecond)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

impl<S: Storage> DirectoryService<S> {
    /// A service over `cache` (fed by watchers and by this service's writes) and `store`,
    /// checking bearer tokens with the verifier keys in force in `keys`.
    pub fn new(cache: Arc<Cache>, store: S, limits: Limits, keys: SharedKeyRing) -> Self {
        DirectoryService {
            auth: Authenticator::new(cache.clone(), keys),
            cache,
            store,
            limits,
            label_writes: Family::default(),
        }
    }

    /// Counts the membership labels the cleanup worker writes in `family` (a metric).
    pub fn with_label_writes(mut self, family: Family<LabelWriteLabels, Counter>) -> Self {
        self.label_writes = family;
        self
    }

    /// Also accepts Entra-issued tokens (for directories with method `EntraToken`), checked by
    /// `entra`.
    pub fn with_entra(mut self, entra: Arc<EntraVerifier>) -> Self {
        self.auth.set_entra(entra);
        self
    }

    /// Also exchanges Entra-signed client assertions for access tokens (for directories with
    /// method `WorkloadIdentityFederation`), checked by `federation`.
    pub fn with_federation(mut self, federation: Arc<FederationVerifier>) -> Self {
        self.auth.set_federation(federation);
        self
    }

    /// The cache the service reads.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// The directory, if it exists, is ready and `token` opens it (see
    /// [`Authenticator::authorize`]).
    pub async fn authorize(&self, dir: DirRef<'_>, token: Option<&str>) -> Result<DirInfo, Error> {
        self.auth.authorize(dir, token).await
    }

    /// Answers a token request to the directory's OAuth 2.0 token endpoint (see
    /// `auth/endpoint.rs`).
    pub async fn issue_access_token(
        &self,
        dir: DirRef<'_>,
        request: &oauth::TokenRequest,
    ) -> Result<oauth::TokenAnswer, oauth::TokenError> {
        self.auth.issue_access_token(dir, request).await
    }

    /// Like [`Self::authorize`], for a write: a suspended directory (`spec.suspend`) refuses it
    /// with 503, which the identity provider retries later (see docs/operations.md).
    pub async fn authorize_write(
        &self,
        dir: DirRef<'_>,
        token: Option<&str>,
    ) -> Result<DirInfo, Error> {
        let info = self.authorize(dir, token).await?;
        if info.suspended {
            return Err(Error::Suspended(dir.label()));
        }
        Ok(info)
    }

    /// Whether the deletion guard holds the next deletion or deactivation in `dir`; when it
    /// does not, the operation counts as pending until the returned value is dropped (after
    /// its write), so requests running at once cannot all slip under the limit.
    fn guard_decision(&self, dir: DirRef<'_>) -> (bool, Option<PendingRemoval>) {
        let guard = self
            .cache
            .directory(dir.ns, dir.name)
            .map(|i| i.guard)
            .unwrap_or_default();
        let holds = self
            .cache
            .update(dir.ns, dir.name, |d| d.decide_removal(&guard));
        if holds {
            return (true, None);
        }
        let pending = PendingRemoval {
            cache: self.cache.clone(),
            ns: dir.ns.to_string(),
            dir: dir.name.to_string(),
        };
        (false, Some(pending))
    }

    /// One resource, read from the store first: another replica may have written or deleted it
    /// a moment ago, before this replica's watch heard (a client that deleted a user through
    /// one replica must not read it back through another).
    pub async fn get(
        &self,
        dir: DirRef<'_>,
        kind: ResourceKind,
        id: &str,
        at: &Locations,
        with_members: bool,
    ) -> Result<Resource, Error> {
        self.refresh(dir, kind, id).await?;
        self.cached(dir, kind, id, at, with_members)
    }

    /// One resource as this replica's cache holds it.
    fn cached(
        &self,
        dir: DirRef<'_>,
        kind: ResourceKind,
        id: &str,
        at: &Locations,
        with_members: bool,
    ) -> Result<Resource, Error> {
        self.cache
            .read(dir.ns, dir.name, |d| {
                d.get(kind, id)
                    .map(|e| render::resource(d, e, at, with_members))
            })
            .ok_or_else(|| not_found(kind, id))?
            .map_err(Error::from)
    }

    /// Brings the cache's copy of one object up to the store's current version (a newer copy
    /// the watch has not delivered yet, or its deletion).
    async fn refresh(&self, dir: DirRef<'_>, kind: ResourceKind, id: &str) -> Result<(), Error> {
        match self.store.get(kind, dir.ns, id).await? {
            Some(obj) if directory_of(&obj).as_deref() == Some(dir.name) => {
                self.cache.apply_object(kind, &obj);
            }
            // Another directory's object: this directory's reads answer 404, as for none.
            Some(_) => {}
            None => {
                if let Some(held) = self.entry(dir, kind, id) {
                    self.cache
                        .delete_object(kind, dir.ns, dir.name, id, held.rv);
                }
            }
        }
        Ok(())
    }

    /// The cached entry, or, when the cache does not hold it, the store's (another replica may
    /// have created it a moment ago).
    async fn entry_or_fresh(
        &self,
        dir: DirRef<'_>,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<Arc<Entry>>, Error> {
        if let Some(entry) = self.entry(dir, kind, id) {
            return Ok(Some(entry));
        }
        self.refresh(dir, kind, id).await?;
        Ok(self.entry(dir, kind, id))
    }

    fn entry(&self, dir: DirRef<'_>, kind: ResourceKind, id: &str) -> Option<Arc<Entry>> {
        self.cache
            .read(dir.ns, dir.name, |d| d.get(kind, id).cloned())
    }

    /// Whether another resource than `except` holds unique `key`.
    fn key_taken(
        &self,
        dir: DirRef<'_>,
        kind: ResourceKind,
        key: &str,
        except: Option<&str>,
    ) -> bool {
        self.cache
            .read(dir.ns, dir.name, |d| d.unique_holder(kind, key, except))
            .is_some()
    }

    /// POST: creates a resource from a client's body; returns it as served.
    pub async fn create(
        &self,
        dir: DirRef<'_>,
        owner: &DirInfo,
        kind: ResourceKind,
        body: &Value,
        at: &Locations,
    ) -> Result<Resource, Error> {
        let mut res = validate_create(kind, body)?;
        drop(res.take_password());
        let members = if kind == ResourceKind::Group {
            let sent = scim_protocol::sent_member_displays(body);
            res.members()
                .into_iter()
                .map(|mut m| {
                    m.display = sent.get(&m.value).cloned().or(m.display);
                    m
                })
                .collect()
        } else {
            Vec::new()
        };
        res.strip_server_attributes();
        normalize_unique(&mut res)?;
        let Some(key) = res.unique_key() else {
            return Err(
                ScimError::InvalidValue("the unique name attribute is missing".into()).into(),
            );
        };
        if self.key_taken(dir, kind, &key, None) {
            return Err(uniqueness(kind));
        }
        self.members_exist(dir, members.iter().map(|m| &m.value))
            .await?;
        let ts = now();
        for attempt in 0..objects::ID_CANDIDATES {
            let id = candidate_id(kind, dir.ns, dir.name, &owner.uid, &key, attempt);
            let taken = self.cache.read(dir.ns, dir.name, |d| {
                d.get(kind, &id).is_some() || (kind == ResourceKind::Group && d.has_members(&id))
            });
            if taken {
                continue;
            }
            let mut r = res.clone();
            r.set_id(id.clone());
            let status = status_json(&r, &ts, &ts)?;
            let mut obj = objects::new_object(kind, dir, &owner.uid, &id, &r, status)?;
            let rollout = members.len() > self.limits.inline_member_writes;
            if rollout {
                let delta = MembershipDelta {
                    replace_all: true,
                    added: members
                        .iter()
                        .map(|m| (m.value.clone(), m.clone()))
                        .collect(),
                    ..MembershipDelta::default()
                };
                obj.data["spec"]["memberRollout"] =
                    serde_json::json!({"members": self.rollout_list(dir, &delta, None)?});
            }
            match self.store.create(kind, dir.ns, obj).await {
                Ok(created) => {
                    let entry = self.cache.apply_object(kind, &created);
                    if rollout {
                        self.cache.cleanups().queue(CleanupJob {
                            ns: dir.ns.to_string(),
                            dir: dir.name.to_string(),
                            group: id.clone(),
                        });
                    } else if !members.is_empty() {
                        let mut delta = MembershipDelta::default();
                        for m in members {
                            delta.added.insert(m.value.clone(), m);
                        }
                        self.apply_membership(dir, &id, &delta).await?;
                    }
                    let r = self.cache.read(dir.ns, dir.name, |d| {
                        d.get(kind, &id)
                            .or(entry.as_ref())
                            .map(|e| render::resource(d, e, at, true))
                    });
                    let Some(r) = r else {
                        return Err(ScimError::Internal(
                            "the created resource could not be read".into(),
                        )
                        .into());
                    };
                    return Ok(r?);
                }
                Err(StoreError::AlreadyExists) => {
                    // Same key created concurrently (here or on another replica), or the id is
                    // held by a resource that was renamed since: find out which.
                    let holder = match self
                        .entry(dir, kind, &id)
                        .map(|e| e.resource().ok().and_then(|r| r.unique_key()))
                    {
                        Some(k) => k,
                        None => match self.store.get(kind, dir.ns, &id).await? {
                            Some(o) => self
                                .cache
                                .apply_object(kind, &o)
                                .and_then(|e| e.resource().ok().and_then(|r| r.unique_key())),
                            None => continue,
                        },
                    };
                    if holder.as_deref() == Some(key.as_str()) {
                        return Err(uniqueness(kind));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::unavailable("no free id for this resource; retry", 1))
    }

    /// PATCH or PUT, guarded by `if_match`; retried on conflicts.
    pub async fn modify(
        &self,
        dir: DirRef<'_>,
        kind: ResourceKind,
        id: &str,
        change: &Change,
        if_match: Option<&str>,
        reply: Reply<'_>,
    ) -> Result<Option<Resource>, Error> {
        for _attempt in 0..=self.limits.conflict_retries {
            let Some(entry) = self.entry_or_fresh(dir, kind, id).await? else {
                return Err(not_found(kind, id));
            };
            check_if_match(if_match, Some(&entry.rv_str))?;
            // A held deactivation: the client believes the user inactive; its change applies to
            // that belief.
            let believed = believed(&entry)?;
            let outcome = match change {
                Change::Patch(p) => p.apply(&believed)?,
                Change::Replace(v) => replace_with_delta(&believed, v)?,
            };
            let mut newr = outcome.resource;
            drop(newr.take_password());
            newr.strip_server_attributes();
            newr.set_id(id.to_string());
            let mut oldr = entry.resource()?;
            oldr.strip_server_attributes();
            oldr.set_id(id.to_string());
            if newr.unique_value() != oldr.unique_value() {
                normalize_unique(&mut newr)?;
            }
            let new_key = newr.unique_key();
            if new_key != oldr.unique_key()
                && let Some(k) = &new_key
                && self.key_taken(dir, kind, k, Some(id))
            {
                return Err(uniqueness(kind));
            }
            if kind == ResourceKind::Group {
                // Every check before the first write: a refused request leaves no trace.
                self.check_membership(dir, id, &outcome.membership).await?;
            }
            let rollout = if kind == ResourceKind::Group {
                self.rollout_after(dir, &entry, &outcome.membership)?
            } else {
                None
            };
            let deactivates = entry.active && newr.active() == Some(false);
            let mut removal = None;
            let hold = match entry.held.as_deref() {
                // The client wrote to an object whose deletion is held: it exists again for it.
                Some(HELD_DELETE) => Some(None),
                Some(_) if deactivates => Some(Some(HELD_DEACTIVATE)),
                Some(_) => Some(None),
                None if deactivates => {
                    let (holds, pending) = self.guard_decision(dir);
                    removal = pending;
                    holds.then_some(Some(HELD_DEACTIVATE))
                }
                None => None,
            };
            if hold == Some(Some(HELD_DEACTIVATE)) {
                newr.set_attribute("active", Value::Bool(true))?;
            }
            // An unchanged hold needs no write.
            let hold = hold.filter(|h| *h != entry.held.as_deref());
            let changed = newr.attributes() != oldr.attributes();
            // The outcome was computed on the cached copy, which may not have seen another
            // replica's last write: a change carries the cached resourceVersion, and a no-op is
            // proven one against it (a patch that stores nothing unless the copy is stale, when
            // it conflicts and the change is run again on the current version). A membership
            // change is proven against it too: the copy may miss a member list that another
            // replica is rolling out, which the change must go into.
            let mut body = if changed {
                Some(objects::attribute_patch(dir, &entry, &oldr, &newr, &now())?)
            } else if outcome.touches_attributes || !outcome.membership.is_empty() || hold.is_some()
            {
                Some(objects::precondition_patch(&entry))
            } else {
                None
            };
            if let (Some(list), Some(b)) = (&rollout, body.as_mut()) {
                b["spec"] = serde_json::json!({"memberRollout": {"members": list}});
            }
            if let (Some(patch), Some(hold)) = (body.as_mut(), hold) {
                objects::set_hold(patch, hold, &now());
            }
            if let Some(patch) = body {
                match self.store.patch(kind, dir.ns, id, &patch).await {
                    Ok(o) => {
                        self.cache.apply_object(kind, &o);
                    }
                    Err(StoreError::Conflict) => {
                        // Someone else wrote first: read their version and run the change again.
                        match self.store.get(kind, dir.ns, id).await? {
                            Some(o) => {
                                self.cache.apply_object(kind, &o);
                            }
                            None => self
                                .cache
                                .delete_object(kind, dir.ns, dir.name, id, entry.rv),
                        }
                        continue;
                    }
                    Err(StoreError::NotFound) => {
                        self.cache
                            .delete_object(kind, dir.ns, dir.name, id, entry.rv);
                        return Err(not_found(kind, id));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            // Written and in the cache, which counts it from now on.
            drop(removal);
            if rollout.is_some() {
                // Recorded on the group, which SCIM now serves; the labels follow in the
                // background.
                self.cache.cleanups().queue(CleanupJob {
                    ns: dir.ns.to_string(),
                    dir: dir.name.to_string(),
                    group: id.to_string(),
                });
            } else if kind == ResourceKind::Group {
                self.apply_membership(dir, id, &outcome.membership).await?;
            }
            let Reply::Resource { at, with_members } = reply else {
                return Ok(None);
            };
            // The write's answer is already in the cache.
            return self.cached(dir, kind, id, at, with_members).map(Some);
        }
        Err(Error::unavailable(
            "the resource is being changed concurrently; retry",
            1,
        ))
    }

    /// DELETE, guarded by `if_match`.
    pub async fn delete(
        &self,
        dir: DirRef<'_>,
        kind: ResourceKind,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), Error> {
        let Some(entry) = self.entry_or_fresh(dir, kind, id).await? else {
            return Err(not_found(kind, id));
        };
        check_if_match(if_match, Some(&entry.rv_str))?;
        if entry.held.as_deref() == Some(HELD_DELETE) {
            return Ok(());
        }
        // An object already held (a held deactivation) is held for deletion too, without a
        // guard decision: that would reserve a pending removal that never happens.
        let (holds, _removal) = if entry.held.is_some() {
            (true, None)
        } else {
            self.guard_decision(dir)
        };
        if holds {
            // Held: the object stays as it is, marked; the client is told it is gone.
            let mut patch = objects::precondition_patch(&entry);
            objects::set_hold(&mut patch, Some(HELD_DELETE), &now());
            return match self.store.patch(kind, dir.ns, id, &patch).await {
                Ok(o) => {
                    self.cache.apply_object(kind, &o);
                    tracing::warn!(
                        namespace = dir.ns,
                        directory = dir.name,
                        kind = kind.name(),
                        id,
                        "deletion held by the deletion guard"
                    );
                    Ok(())
                }
                Err(StoreError::NotFound) => {
                    self.cache
                        .delete_object(kind, dir.ns, dir.name, id, entry.rv);
                    Err(not_found(kind, id))
                }
                Err(StoreError::Conflict) => Err(Error::unavailable(
                    "the resource is being changed concurrently; retry",
                    1,
                )),
                Err(e) => Err(e.into()),
            };
        }
        if kind == ResourceKind::Group {
            // Membership records live on the members, as many as the group has: the request
            // only marks the group; the cleanup worker removes the labels (see `cleanup.rs`).
            return self.delete_group(dir, id, if_match).await;
        }
        match self.store.delete(kind, dir.ns, id).await {
            Ok(rv) => {
                let rv = rv.map(|r| rv_num(&r)).unwrap_or(0).max(entry.rv);
                self.cache.delete_object(kind, dir.ns, dir.name, id, rv);
                Ok(())
            }
            Err(StoreError::NotFound) => {
                self.cache
                    .delete_object(kind, dir.ns, dir.name, id, entry.rv);
                Err(not_found(kind, id))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// GET/POST .search: the ListResponse of `kinds` for `q`.
    pub fn list(
        &self,
        dir: DirRef<'_>,
        kinds: &[ResourceKind],
        q: &ListQuery,
        at: &Locations,
    ) -> Result<Value, Error> {
        let max = self.limits.max_results;
        Ok(self
            .cache
            .read(dir.ns, dir.name, |d| list::run(d, kinds, q, at, max))?)
    }
}

#[cfg(test)]
mod tests;
