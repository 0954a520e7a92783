//! The cleanup worker's queue: groups whose members' labels are to be brought in line. Fed by
//! the cache (a watched group being deleted, gone, or with a member list to roll out) and by
//! the directory service's writes; drained by the worker in `directory/cleanup/`. Its own
//! module, not the cache's: it holds work to do, not a copy of the apiserver's objects.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// A group whose membership labels are to be removed from its members: one the apiserver is
/// deleting (`deletionTimestamp` set) or one that is gone while labels still name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CleanupJob {
    /// Namespace.
    pub ns: String,
    /// Directory the group belonged to.
    pub dir: String,
    /// The group's SCIM id (object name).
    pub group: String,
}

/// The cleanup worker's jobs.
#[derive(Default)]
struct Jobs {
    /// Queued and not yet taken by the worker (deduplicated).
    queued: BTreeSet<CleanupJob>,
    /// Queued, being worked on, or failed and waiting for a retry: every job not yet settled.
    /// What `kube_scim_group_cleanup_pending` counts.
    pending: BTreeSet<CleanupJob>,
}

/// The queue, shared by its feeders and the worker.
#[derive(Default)]
pub struct CleanupQueue {
    jobs: Mutex<Jobs>,
    /// Wakes the worker when a job is queued.
    queued: tokio::sync::Notify,
}

impl CleanupQueue {
    fn jobs(&self) -> std::sync::MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a cleanup job and wakes the worker.
    pub fn queue(&self, job: CleanupJob) {
        let new = {
            let mut q = self.jobs();
            q.pending.insert(job.clone());
            q.queued.insert(job)
        };
        if new {
            self.queued.notify_one();
        }
    }

    /// Takes every queued cleanup job (each stays pending until [`CleanupQueue::settled`]).
    pub fn take(&self) -> Vec<CleanupJob> {
        std::mem::take(&mut self.jobs().queued)
            .into_iter()
            .collect()
    }

    /// The worker settled `job`: it is no longer pending, unless it was queued again meanwhile
    /// (a change since the worker looked, which it has yet to see).
    pub fn settled(&self, job: &CleanupJob) {
        let mut q = self.jobs();
        if !q.queued.contains(job) {
            q.pending.remove(job);
        }
    }

    /// Pending cleanup jobs of directory `name` in `ns`.
    pub fn pending(&self, ns: &str, name: &str) -> usize {
        self.jobs()
            .pending
            .iter()
            .filter(|j| j.ns == ns && j.dir == name)
            .count()
    }

    /// Waits until a cleanup job is queued (returns at once if one was queued since the last
    /// wait).
    pub async fn wait(&self) {
        self.queued.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cleanup_job_is_pending_until_settled_after_its_last_queueing() {
        let queue = CleanupQueue::default();
        let job = CleanupJob {
            ns: "ns".into(),
            dir: "d".into(),
            group: "g".into(),
        };
        queue.queue(job.clone());
        queue.queue(job.clone());
        assert_eq!(queue.pending("ns", "d"), 1, "deduplicated");
        assert_eq!(queue.take(), vec![job.clone()]);
        // Taken by the worker (being worked on, or failed and waiting): still pending.
        assert_eq!(queue.pending("ns", "d"), 1);
        // Queued again while the worker ran: the group changed since it looked.
        queue.queue(job.clone());
        queue.settled(&job);
        assert_eq!(queue.pending("ns", "d"), 1);
        assert_eq!(queue.take(), vec![job.clone()]);
        queue.settled(&job);
        assert_eq!(queue.pending("ns", "d"), 0);
        assert!(queue.take().is_empty());
    }
}
