//! Deleting a group, and removing the membership labels of groups that are gone, in bounded
//! time per request.
//!
//! A SCIM DELETE of a group puts the finalizer [`labels::GROUP_MEMBER_CLEANUP_FINALIZER`] on
//! the ScimGroup and deletes it: the apiserver marks it (`deletionTimestamp`), the cache hides
//! it from every SCIM read at once, and the request is answered after three apiserver calls
//! whatever the group's size. The cleanup worker ([`DirectoryService::run_cleanup`]) then
//! removes the group's label from its members in batches and, once the apiserver lists no
//! member with the label, removes the finalizer, which lets the apiserver delete the group.
//!
//! All state is in the apiserver (the finalizer, the deletion mark and the labels), so a
//! restarted server, or another replica, resumes where the last one stopped: every replica runs
//! the worker, the work is idempotent (removing a label that is gone stores nothing) and the
//! finalizer is released with a resourceVersion precondition only after an authoritative list
//! found no label left. The same worker removes labels of groups that are gone without the
//! finalizer (deleted with kubectl, or while no server ran): the cache queues a job when a
//! group with labelled members disappears, and a periodic sweep queues every group id that a
//! label names but no group object stands for.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use kube_scim_crds::{RolloutMember, labels};
use scim_protocol::{MembershipDelta, ResourceKind, ScimError, check_if_match};
use serde_json::json;

use super::{DirRef, DirectoryService, objects};
use crate::cache::{Entry, RolloutEntry, directory_of, rv_num};
use crate::cleanup_queue::CleanupJob;
use crate::dialect;
use crate::error::Error;
use crate::metrics::LabelWriteLabels;
use crate::storage::{Storage, StoreError};

mod plan;
pub use plan::*;

/// Rounds (batches and looks) a job may take before it is given up and retried later.
const MAX_ROUNDS: usize = 100_000;

/// How the cleanup worker runs.
#[derive(Debug, Clone, Copy)]
pub struct CleanupSettings {
    /// Label removals per batch (written `member_write_concurrency` at a time).
    pub batch: usize,
    /// How often every cached directory is swept for labels naming no group.
    pub sweep_interval: Duration,
    /// Wait before a failed job is tried again.
    pub retry_after: Duration,
}

/// Largest member rollout recorded on a group, in bytes of JSON: well within the apiserver's
/// object size limit (etcd's 1.5 MiB), and more than a 1 MiB request body of members needs.
pub const MAX_ROLLOUT_BYTES: usize = 1_300_000;

impl<S: Storage> DirectoryService<S> {
    /// The member list a group's change records for the background (`None`: the change is
    /// written inline): an update of the rollout in progress, or a replacement larger than
    /// the inline limit.
    pub(super) fn rollout_after(
        &self,
        dir: DirRef<'_>,
        group: &Entry,
        delta: &MembershipDelta,
    ) -> Result<Option<Vec<RolloutMember>>, Error> {
        if delta.is_empty() {
            return Ok(None);
        }
        if group.rollout.is_none() {
            let writes = self
                .cache
                .read(dir.ns, dir.name, |d| d.member_count(&group.id))
                + delta.added.len();
            if !delta.replace_all || writes <= self.limits.inline_member_writes {
                return Ok(None);
            }
        }
        self.rollout_list(dir, delta, group.rollout.as_deref())
            .map(Some)
    }

    /// `current` (a rollout in progress, if any) changed by `delta`, with the `display`s the
    /// directory keeps.
    pub(super) fn rollout_list(
        &self,
        dir: DirRef<'_>,
        delta: &MembershipDelta,
        current: Option<&[RolloutEntry]>,
    ) -> Result<Vec<RolloutMember>, Error> {
        let keep_display = self
            .cache
            .directory(dir.ns, dir.name)
            .is_some_and(|i| dialect::keeps_member_display(i.provider));
        let mut list: BTreeMap<String, Option<String>> = match current {
            Some(c) if !delta.replace_all => c
                .iter()
                .map(|(id, d)| (id.clone(), d.as_deref().map(str::to_string)))
                .collect(),
            _ => BTreeMap::new(),
        };
        for id in &delta.removed {
            list.remove(id);
        }
        for (id, m) in &delta.added {
            let display = m
                .display
                .clone()
                .filter(|d| keep_display && d.len() <= dialect::MAX_KEPT_DISPLAY);
            list.insert(id.clone(), display);
        }
        let members: Vec<RolloutMember> = list
            .into_iter()
            .map(|(value, display)| RolloutMember { value, display })
            .collect();
        let bytes = serde_json::to_vec(&members).map_or(usize::MAX, |v| v.len());
        if bytes > MAX_ROLLOUT_BYTES {
            return Err(if current.is_some() {
                Error::unavailable(
                    "the group's last member list replacement is still being written; retry",
                    5,
                )
            } else {
                ScimError::InvalidValue(format!(
                    "the member list is too large to replace at once ({bytes} bytes of member \
                     ids, at most {MAX_ROLLOUT_BYTES}); add members in several PATCH requests"
                ))
                .into()
            });
        }
        Ok(members)
    }

    /// DELETE of a group: marks it with the cleanup finalizer and deletes it. Answers after a
    /// read, a patch and a delete, whatever the group's size; the members' labels are the
    /// cleanup worker's.
    pub(super) async fn delete_group(
        &self,
        dir: DirRef<'_>,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), Error> {
        let kind = ResourceKind::Group;
        let gone = || ScimError::NotFound(format!("no Group with id {id}"));
        for _attempt in 0..=self.limits.conflict_retries {
            let obj = match self.store.get(kind, dir.ns, id).await? {
                Some(o) if directory_of(&o).as_deref() == Some(dir.name) => o,
                _ => {
                    if let Some(held) = self.entry(dir, kind, id) {
                        self.cache
                            .delete_object(kind, dir.ns, dir.name, id, held.rv);
                    }
                    return Err(gone().into());
                }
            };
            if obj.metadata.deletion_timestamp.is_some() {
                // Deleted through another replica a moment ago.
                self.cache.apply_object(kind, &obj);
                return Err(gone().into());
            }
            let rv = obj.metadata.resource_version.clone().unwrap_or_default();
            check_if_match(if_match, Some(&rv))?;
            let current = obj.metadata.finalizers.clone().unwrap_or_default();
            let mark = json!({"metadata": {
                "resourceVersion": rv,
                "finalizers": with_cleanup_finalizer(&current),
            }});
            match self.store.patch(kind, dir.ns, id, &mark).await {
                Ok(o) => {
                    self.cache.apply_object(kind, &o);
                }
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound) => {
                    self.cache
                        .delete_object(kind, dir.ns, dir.name, id, rv_num(&rv));
                    return Err(gone().into());
                }
                Err(e) => return Err(e.into()),
            }
            let deleted_at = match self.store.delete(kind, dir.ns, id).await {
                Ok(rv) => rv.map(|r| rv_num(&r)).unwrap_or(0),
                Err(StoreError::NotFound) => 0,
                Err(e) => return Err(e.into()),
            };
            self.cache
                .delete_object(kind, dir.ns, dir.name, id, deleted_at);
            self.cache.cleanups().queue(CleanupJob {
                ns: dir.ns.to_string(),
                dir: dir.name.to_string(),
                group: id.to_string(),
            });
            return Ok(());
        }
        Err(Error::unavailable(
            "the group is being changed concurrently; retry",
            1,
        ))
    }

    /// What is to change for `job`'s group in `state`: labelled members that are not to be
    /// (`extra`) and rollout members without the label (`missing`). From the cache unless
    /// `from_store` (authoritative: also members the cache hides or has not heard of yet).
    async fn observe(
        &self,
        job: &CleanupJob,
        state: &GroupState,
        batch: usize,
        from_store: bool,
    ) -> Result<(Vec<(ResourceKind, String)>, Vec<Wanted>), StoreError> {
        let rollout = match state {
            GroupState::Live { rollout: None, .. } => return Ok((Vec::new(), Vec::new())),
            GroupState::Live {
                rollout: Some(r), ..
            } => Some(r),
            _ => None,
        };
        // For a rollout every labelled member is needed to tell the extra ones; otherwise one
        // batch of them is enough.
        let limit = if rollout.is_some() { usize::MAX } else { batch };
        let labelled: Vec<(ResourceKind, String)> = if from_store {
            let key = labels::member_of(&job.group);
            let mut out = Vec::new();
            for kind in [ResourceKind::User, ResourceKind::Group] {
                for name in self
                    .store
                    .names_labelled(kind, &job.ns, &key, limit)
                    .await?
                {
                    out.push((kind, name));
                }
            }
            out
        } else {
            self.cache
                .read(&job.ns, &job.dir, |d| d.members_up_to(&job.group, limit))
        };
        let Some(rollout) = rollout else {
            return Ok((labelled, Vec::new()));
        };
        let extra: Vec<(ResourceKind, String)> = labelled
            .iter()
            .filter(|(_, id)| !rollout.contains_key(id))
            .take(batch)
            .cloned()
            .collect();
        let has: BTreeSet<&str> = labelled.iter().map(|(_, id)| id.as_str()).collect();
        let missing: Vec<Wanted> = self.cache.read(&job.ns, &job.dir, |d| {
            rollout
                .iter()
                .filter(|(id, _)| !has.contains(id.as_str()))
                // A member the cache does not know was deleted since: nothing to label.
                .filter_map(|(id, display)| d.kind_of(id).map(|k| (k, id.clone(), display.clone())))
                .take(batch)
                .collect()
        });
        Ok((extra, missing))
    }

    /// Writes one batch of membership labels of `job`'s group (`on`: set, else removed).
    async fn write_labels(
        &self,
        job: &CleanupJob,
        batch: Vec<Wanted>,
        on: bool,
    ) -> Result<usize, StoreError> {
        // Each write: whether a member was patched (`false`: it was deleted meanwhile).
        let results: Vec<Result<bool, StoreError>> = futures::stream::iter(batch)
            .map(|(kind, id, display)| async move {
                let body = objects::membership_patch(&job.group, on, display.as_deref());
                match self.store.patch(kind, &job.ns, &id, &body).await {
                    Ok(o) => {
                        self.cache.apply_object(kind, &o);
                        Ok(true)
                    }
                    // Deleted meanwhile: nothing to label or unlabel.
                    Err(StoreError::NotFound) => {
                        self.cache.delete_object(kind, &job.ns, &job.dir, &id, 0);
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(self.limits.member_write_concurrency.max(1))
            .collect()
            .await;
        // Writes that succeeded before another failed are counted too: they are stored.
        let patched = results.iter().filter(|r| matches!(r, Ok(true))).count();
        self.label_writes
            .get_or_create(&LabelWriteLabels {
                directory: format!("{}/{}", job.ns, job.dir),
                change: if on { "add" } else { "remove" }.to_string(),
            })
            .inc_by(patched as u64);
        let mut written = 0;
        for r in results {
            r?;
            written += 1;
        }
        Ok(written)
    }

    /// Brings the labels naming `job`'s group to what the group says, in batches: a deleted
    /// group's go (then its cleanup finalizer), a rollout's are written (then the rollout
    /// ends), leftovers of a vanished group go. Returns the number of labels written.
    pub async fn settle_group(&self, job: &CleanupJob, batch: usize) -> Result<usize, Error> {
        let kind = ResourceKind::Group;
        let mut written = 0;
        let mut last_step = None;
        for _round in 0..MAX_ROUNDS {
            let obj = self.store.get(kind, &job.ns, &job.group).await?;
            let state = GroupState::of(obj.as_ref());
            let (extra, missing) = self.observe(job, &state, batch, false).await?;
            let mut step = plan(&state, &extra, &missing, batch);
            if matches!(
                step,
                Step::EndRollout { .. } | Step::ReleaseFinalizer { .. } | Step::Done
            ) || last_step.as_ref() == Some(&step)
            {
                // Before the last word, or when the cache still shows what was just written
                // (it has not caught up): ask storage, which cannot be behind its own writes.
                let (extra, missing) = self.observe(job, &state, batch, true).await?;
                step = plan(&state, &extra, &missing, batch);
            }
            last_step = Some(step.clone());
            match step {
                Step::LeaveAlone | Step::Done => return Ok(written),
                Step::RemoveLabels(members) => {
                    let batch = members.into_iter().map(|(k, id)| (k, id, None)).collect();
                    written += self.write_labels(job, batch, false).await?;
                }
                Step::AddLabels(members) => {
                    written += self.write_labels(job, members, true).await?;
                }
                Step::EndRollout { rv } => {
                    let body = json!({"metadata": {"resourceVersion": rv},
                        "spec": {"memberRollout": null}});
                    match self.store.patch(kind, &job.ns, &job.group, &body).await {
                        Ok(o) => {
                            self.cache.apply_object(kind, &o);
                            return Ok(written);
                        }
                        Err(StoreError::NotFound) => return Ok(written),
                        // Changed since it was read (a membership change updated the rollout,
                        // or the group was deleted): look again.
                        Err(StoreError::Conflict) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Step::ReleaseFinalizer { rv, keep } => {
                    let finalizers = if keep.is_empty() {
                        serde_json::Value::Null
                    } else {
                        json!(keep)
                    };
                    let body =
                        json!({"metadata": {"resourceVersion": rv, "finalizers": finalizers}});
                    match self.store.patch(kind, &job.ns, &job.group, &body).await {
                        Ok(_) | Err(StoreError::NotFound) => return Ok(written),
                        Err(StoreError::Conflict) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Err(Error::unavailable(
            "membership labels did not settle; retrying",
            5,
        ))
    }

    /// The cleanup worker: runs queued jobs, sweeps for leftover labels once the cache is
    /// synced and then every `settings.sweep_interval`, retries failed jobs. Never returns.
    pub async fn run_cleanup(&self, settings: CleanupSettings) {
        let mut next_sweep = tokio::time::Instant::now();
        loop {
            if self.cache.is_synced() && tokio::time::Instant::now() >= next_sweep {
                for job in self.cache.orphaned_groups() {
                    self.cache.cleanups().queue(job);
                }
                next_sweep = tokio::time::Instant::now() + settings.sweep_interval;
            }
            let mut failed = Vec::new();
            for job in self.cache.cleanups().take() {
                match self.settle_group(&job, settings.batch).await {
                    Ok(written) => {
                        self.cache.cleanups().settled(&job);
                        if written > 0 {
                            tracing::info!(
                                namespace = %job.ns, directory = %job.dir, group = %job.group,
                                written, "membership labels settled"
                            );
                        }
                    }
                    Err(error) => {
                        tracing::warn!(
                            namespace = %job.ns, group = %job.group, %error,
                            "membership cleanup failed (retrying)"
                        );
                        failed.push(job);
                    }
                }
            }
            let wait = if failed.is_empty() {
                // Before the first sweep, look again soon: the cache may just have synced.
                if self.cache.is_synced() {
                    next_sweep.saturating_duration_since(tokio::time::Instant::now())
                } else {
                    Duration::from_millis(200)
                }
            } else {
                settings.retry_after
            };
            tokio::select! {
                () = self.cache.cleanups().wait() => {}
                () = tokio::time::sleep(wait) => {}
            }
            for job in failed {
                self.cache.cleanups().queue(job);
            }
        }
    }

    /// Runs every queued cleanup job once (unit tests: what the worker does in the
    /// background).
    #[cfg(test)]
    pub async fn run_queued_cleanups(&self) -> usize {
        let mut removed = 0;
        for job in self.cache.cleanups().take() {
            removed += self.settle_group(&job, 2).await.expect("cleanup");
            self.cache.cleanups().settled(&job);
        }
        removed
    }
}
