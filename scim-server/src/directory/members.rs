//! Group membership: a membership is a label on the member (`member.kubescim.io/<group>`),
//! so a group change fans out into one small write per member it names.
//!
//! The writes are decided from the request, not from the cache: a label merge patch is
//! idempotent, so naming a member that already has (or lacks) the label costs a call that
//! stores nothing, while a plan made on a cache that has not yet seen another replica's write
//! would skip a write that is needed (add, remove, add through alternating replicas). Removing
//! every member (PUT, `replace` of `members`, DELETE) lists the members in storage for the
//! same reason.

use std::collections::HashMap;

use futures::StreamExt;
use kube_scim_crds::labels;
use scim_protocol::{MembershipDelta, ResourceKind, ScimError};

use super::{DirRef, DirectoryService, objects};
use crate::cache::directory_of;
use crate::dialect;
use crate::error::Error;
use crate::storage::{Storage, StoreError};

/// Whether `id` can be an object name at all; anything else is not looked up (the ids come
/// from the client).
fn plausible_name(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 253
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

impl<S: Storage> DirectoryService<S> {
    /// Looks ids unknown to the cache up in storage (objects another replica just wrote, whose
    /// watch events have not arrived); returns ids that are not a user or group of `dir`.
    /// Lookups run as many at a time as membership writes do (a change naming N new members
    /// costs N writes anyway) and stop at the first id that is missing: the change is refused
    /// then, and ids invented by a client cost at most that many lookups. An object of another
    /// directory is missing as far as `dir` is concerned, and takes the same lookups as an id
    /// that exists nowhere (both kinds are read, at once), so the answer tells nothing about
    /// other directories.
    async fn resolve_unknown(
        &self,
        dir: DirRef<'_>,
        ids: Vec<String>,
    ) -> Result<Vec<String>, Error> {
        let (plausible, mut missing): (Vec<String>, Vec<String>) =
            ids.into_iter().partition(|id| plausible_name(id));
        if !missing.is_empty() {
            return Ok(missing);
        }
        let mut lookups = futures::stream::iter(plausible)
            .map(|id| async move {
                let (u, g) = futures::join!(
                    self.store.get(ResourceKind::User, dir.ns, &id),
                    self.store.get(ResourceKind::Group, dir.ns, &id)
                );
                let mut found = false;
                for (kind, o) in [(ResourceKind::User, u?), (ResourceKind::Group, g?)] {
                    if let Some(o) = o {
                        self.cache.apply_object(kind, &o);
                        found |= directory_of(&o).as_deref() == Some(dir.name);
                    }
                }
                Ok::<_, StoreError>((!found).then_some(id))
            })
            .buffered(self.limits.member_write_concurrency.max(1));
        while let Some(found) = lookups.next().await {
            if let Some(id) = found? {
                missing.push(id);
                break;
            }
        }
        Ok(missing)
    }

    /// Fails with 400 `invalidValue` (before anything is written) if a member id is neither a
    /// user nor a group of this directory.
    pub(super) async fn members_exist(
        &self,
        dir: DirRef<'_>,
        ids: impl Iterator<Item = &String>,
    ) -> Result<(), Error> {
        let ids: Vec<String> = ids.cloned().collect();
        let unknown: Vec<String> = self.cache.read(dir.ns, dir.name, |d| {
            ids.iter()
                .filter(|id| d.kind_of(id).is_none())
                .cloned()
                .collect()
        });
        if unknown.is_empty() {
            return Ok(());
        }
        let missing = self.resolve_unknown(dir, unknown).await?;
        if missing.is_empty() {
            return Ok(());
        }
        Err(ScimError::InvalidValue(format!(
            "members do not exist in this directory (nothing was changed): {}",
            missing.join(", ")
        ))
        .into())
    }

    /// Every check a membership change of `group` needs, made before anything is written.
    pub(super) async fn check_membership(
        &self,
        dir: DirRef<'_>,
        group: &str,
        delta: &MembershipDelta,
    ) -> Result<(), Error> {
        if delta.added.contains_key(group) {
            return Err(ScimError::InvalidValue(
                "a group cannot be a member of itself (nothing was changed)".into(),
            )
            .into());
        }
        self.members_exist(dir, delta.added.keys()).await
    }

    /// The kind of each id a change removes, from the cache or, for ids it does not know
    /// (objects another replica wrote), from storage; ids that are no object of `dir` are left
    /// out (nothing to remove).
    async fn kinds_of(
        &self,
        dir: DirRef<'_>,
        ids: impl Iterator<Item = &String>,
    ) -> Result<Vec<(ResourceKind, String)>, Error> {
        let mut out = Vec::new();
        let mut unknown = Vec::new();
        self.cache.read(dir.ns, dir.name, |d| {
            for id in ids {
                match d.kind_of(id) {
                    Some(k) => out.push((k, id.clone())),
                    None if plausible_name(id) => unknown.push(id.clone()),
                    None => {}
                }
            }
        });
        for id in unknown {
            for kind in [ResourceKind::User, ResourceKind::Group] {
                if let Some(o) = self.store.get(kind, dir.ns, &id).await?
                    && directory_of(&o).as_deref() == Some(dir.name)
                {
                    self.cache.apply_object(kind, &o);
                    out.push((kind, id.clone()));
                }
            }
        }
        Ok(out)
    }

    /// Writes the membership labels of `delta` for group `group`, checked beforehand by
    /// [`Self::check_membership`]. Idempotent: re-running after a partial failure converges.
    pub(super) async fn apply_membership(
        &self,
        dir: DirRef<'_>,
        group: &str,
        delta: &MembershipDelta,
    ) -> Result<(), Error> {
        if delta.is_empty() {
            return Ok(());
        }
        // (kind, id) -> label on?
        let mut plan: HashMap<(ResourceKind, String), bool> = HashMap::new();
        if delta.replace_all {
            let key = labels::member_of(group);
            for kind in [ResourceKind::User, ResourceKind::Group] {
                for o in self.store.list_labelled(kind, dir.ns, &key).await? {
                    if let Some(name) = o.metadata.name.clone()
                        && directory_of(&o).as_deref() == Some(dir.name)
                    {
                        self.cache.apply_object(kind, &o);
                        plan.insert((kind, name), false);
                    }
                }
            }
        }
        for (kind, id) in self.kinds_of(dir, delta.removed.iter()).await? {
            plan.insert((kind, id), false);
        }
        let added: Vec<(ResourceKind, String)> = self.cache.read(dir.ns, dir.name, |d| {
            delta
                .added
                .keys()
                .filter_map(|id| d.kind_of(id).map(|k| (k, id.clone())))
                .collect()
        });
        if added.len() != delta.added.len() {
            // Checked before; gone since (deleted concurrently).
            return Err(ScimError::InvalidValue("a member no longer exists".into()).into());
        }
        for (kind, id) in added {
            plan.insert((kind, id), true);
        }
        let keep_display = self
            .cache
            .directory(dir.ns, dir.name)
            .is_some_and(|i| dialect::keeps_member_display(i.provider));
        let results: Vec<Result<(), Error>> = futures::stream::iter(plan)
            .map(|((kind, id), on)| async move {
                // A kept `display` travels with its label; any other write drops a kept one.
                let display = delta
                    .added
                    .get(&id)
                    .and_then(|m| m.display.as_deref())
                    .filter(|d| on && keep_display && d.len() <= dialect::MAX_KEPT_DISPLAY);
                let body = objects::membership_patch(group, on, display);
                match self.store.patch(kind, dir.ns, &id, &body).await {
                    Ok(o) => {
                        self.cache.apply_object(kind, &o);
                        Ok(())
                    }
                    Err(StoreError::NotFound) => {
                        self.cache.delete_object(kind, dir.ns, dir.name, &id, 0);
                        if on {
                            Err(
                                ScimError::InvalidValue(format!("member {id} no longer exists"))
                                    .into(),
                            )
                        } else {
                            Ok(())
                        }
                    }
                    Err(e) => Err(e.into()),
                }
            })
            .buffer_unordered(self.limits.member_write_concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect()
    }
}
