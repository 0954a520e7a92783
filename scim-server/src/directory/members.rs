//! Group membership: a membership is a label on the member (`kubescim.io/member-of.<group>`),
//! so a group change fans out into one small write per member that changes.

use std::collections::HashSet;

use futures::StreamExt;
use scim_protocol::{MembershipDelta, ResourceKind, ScimError};

use super::{DirRef, DirectoryService, objects};
use crate::dialect;
use crate::error::Error;
use crate::storage::{Storage, StoreError};

/// One membership write: `(kind, member id, add?, display to keep)`.
type LabelWrite = (ResourceKind, String, bool, Option<String>);

/// The label writes a membership change needs, decided from what the cache holds: only
/// members whose label (or kept `display`, see `dialect::keeps_member_display`) differs.
fn label_writes(
    d: &crate::cache::DirData,
    group: &str,
    delta: &MembershipDelta,
    keep_display: bool,
) -> Vec<LabelWrite> {
    let labelled = |k: ResourceKind, id: &str| {
        d.get(k, id)
            .is_some_and(|e| e.member_of.iter().any(|g| g == group))
    };
    let mut plan = Vec::new();
    for (id, member) in &delta.added {
        let display = member
            .display
            .clone()
            .filter(|s| keep_display && s.len() <= dialect::MAX_KEPT_DISPLAY);
        if let Some(k) = d.kind_of(id)
            && (!labelled(k, id)
                || d.get(k, id).and_then(|e| e.display_in(group)) != display.as_deref())
        {
            plan.push((k, id.clone(), true, display));
        }
    }
    let mut removing: Vec<String> = delta.removed.iter().cloned().collect();
    if delta.replace_all {
        removing.extend(
            d.member_ids(group)
                .into_iter()
                .filter(|m| !delta.added.contains_key(m)),
        );
    }
    let mut done = HashSet::new();
    for id in removing {
        if let Some(k) = d.kind_of(&id)
            && labelled(k, &id)
            && done.insert(id.clone())
        {
            plan.push((k, id, false, None));
        }
    }
    plan
}

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
    /// watch events have not arrived); returns ids that exist nowhere. Lookups run as many at a
    /// time as membership writes do (a change naming N new members costs N writes anyway) and
    /// stop at the first id that exists nowhere: the change is refused then, and ids invented
    /// by a client cost at most that many lookups.
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
                for kind in [ResourceKind::User, ResourceKind::Group] {
                    if let Some(o) = self.store.get(kind, dir.ns, &id).await? {
                        self.cache.apply_object(kind, &o);
                        return Ok(None);
                    }
                }
                Ok::<_, StoreError>(Some(id))
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

    /// Writes the membership labels of `delta` for group `group`. Idempotent: re-running after
    /// a partial failure converges.
    pub(super) async fn apply_membership(
        &self,
        dir: DirRef<'_>,
        group: &str,
        delta: &MembershipDelta,
    ) -> Result<(), Error> {
        if delta.is_empty() {
            return Ok(());
        }
        if delta.added.contains_key(group) {
            return Err(
                ScimError::InvalidValue("a group cannot be a member of itself".into()).into(),
            );
        }
        self.members_exist(dir, delta.added.keys()).await?;
        let keep_display = self
            .cache
            .directory(dir.ns, dir.name)
            .is_some_and(|i| dialect::keeps_member_display(i.provider));
        let plan = self.cache.read(dir.ns, dir.name, |d| {
            label_writes(d, group, delta, keep_display)
        });
        let results: Vec<Result<(), Error>> = futures::stream::iter(plan)
            .map(|(kind, id, on, display)| async move {
                let body = objects::membership_patch(group, on, display.as_deref());
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
