//! The write verbs (POST, PATCH/PUT, DELETE) of the directory service, with the deletion
//! guard's hold around deletions and deactivations.

use std::sync::Arc;

use scim_protocol::patch::replace_with_delta;
use scim_protocol::{
    MembershipDelta, Resource, ResourceKind, ScimError, check_if_match, validate_create,
};
use serde_json::Value;

use kube_scim_crds::{HELD_DEACTIVATE, HELD_DELETE};

use super::unique::{normalize_unique, uniqueness};
use super::{Change, DirRef, DirectoryService, Reply, candidate_id, not_found, now, objects};
use crate::cache::{Cache, DirInfo, Entry, rv_num};
use crate::cleanup_queue::CleanupJob;
use crate::convert::status_json;
use crate::error::Error;
use crate::render::{self, Locations};
use crate::storage::{Storage, StoreError};

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

impl<S: Storage> DirectoryService<S> {
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
            // The candidate id replaces the last attempt's: no copy of the resource per attempt
            // (a megabyte for a body at the size limit).
            res.set_id(id.clone());
            let status = status_json(&res, &ts, &ts)?;
            let mut obj = objects::new_object(kind, dir, &owner.uid, &id, &res, status)?;
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
            // only marks the group; the cleanup worker removes the labels (see `cleanup/`).
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
}
