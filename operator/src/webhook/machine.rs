//! The state of one webhook's delivery, without I/O: it is fed watch events, checkpoint results,
//! request outcomes and the time, and answers what to send, what to store and what to report.
//! `delivery.rs` does the I/O around it (watches, the outbox Secret, signing keys, HTTP, status,
//! Events, metrics). Kept apart so its invariants are unit-tested with synthetic events
//! (`machine_tests.rs`):
//!
//! - only checkpointed events are sent: `outbox.pending[..checkpointed]` is in the stored
//!   outbox, and a batch is taken from it alone;
//! - events are sent in the order they were derived, one request at a time;
//! - an event leaves `pending` only when the receiver acknowledged it, and the next checkpoint
//!   stores that;
//! - a user whose change names a group not seen yet waits for it (or [`GROUP_WAIT`]);
//! - no change is read while `pending` is at `maxBacklog` or the outbox does not fit its Secret.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube_scim_crds::{CONDITION_READY, ScimWebhook, ScimWebhookStatus};
use serde_json::Value;
use tokio::time::Instant;

use super::awaiting_groups::AwaitingGroups;
use super::events::{Event, Kind};
use super::outbox::{self, Outbox};
use super::sender::{self, Outcome};
use super::settings::{Settings, batch_wait_left};
use crate::reconcile::{Check, condition};

mod watch;

/// How long a user's change waits for a group it names to arrive on the group watch; past it,
/// `user_added` names the group by id only (a group deleted before it was seen).
pub const GROUP_WAIT: Duration = Duration::from_secs(10);

/// The time, both clocks: the monotonic one for waits, the wall clock for event times.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    pub wall: jiff::Timestamp,
}

impl Now {
    pub fn current() -> Now {
        Now {
            instant: Instant::now(),
            wall: jiff::Timestamp::now(),
        }
    }
}

/// Why the loop cannot deliver right now, for the Ready condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Blocker {
    InvalidSpec(String),
    SigningKey(String),
    Receiver(String),
    /// The directory was never seen Ready (or was deleted): nothing is sent until it is.
    Directory(String),
    /// The outbox does not fit its Secret: changes are not read.
    OutboxFull(String),
    /// A Secret of the outbox's name exists that the operator did not create: not used.
    OutboxNotOwned(String),
}

/// What the I/O loop does for the machine besides sending and storing.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Events acknowledged by the receiver (a metric).
    Delivered(u64),
    /// Events dropped after `retryFor` (a metric, a log line, a Warning Event).
    Dropped { count: u64, note: String },
    /// A request failed (a metric, a log line).
    Failed {
        error: String,
        failures: u32,
        retry_in: Duration,
    },
    /// The receiver has failed for `warnAfter` (a Warning Event, once per episode).
    ReceiverFailing { note: String },
}

/// What a checkpoint asks of the I/O loop.
#[derive(Debug, Clone, PartialEq)]
pub enum Checkpoint {
    /// Nothing changed since the last stored outbox.
    Unchanged,
    /// The outbox does not fit its Secret: nothing is written; `first` when this began now
    /// (a Warning Event, once per episode).
    Full {
        bytes: usize,
        pending: usize,
        first: bool,
    },
    /// Write `encoded`, then call [`Machine::stored`] with `pending`.
    Write { encoded: Vec<u8>, pending: usize },
}

/// A request to make: the first `events` of the checkpointed ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub events: Vec<Event>,
    pub batched: bool,
}

#[derive(Debug)]
pub struct Machine {
    settings: Settings,
    directory_id: String,
    webhook_uid: String,
    outbox: Outbox,
    /// `outbox.pending[..checkpointed]` is in the stored outbox: only those may be sent.
    checkpointed: usize,
    /// Events of the request under way (None: no request).
    in_flight: Option<usize>,
    dirty: bool,
    compressed_too_big: bool,
    /// The last checkpoint did not fit the Secret (Warning published once per episode).
    outbox_full: bool,
    /// `derived` holds the directory (kept, not searched for: `derived` has every user).
    announced: bool,
    /// Uids seen during a re-list, per kind (None: not listing).
    listing: HashMap<&'static str, HashSet<String>>,
    /// directory_group data by SCIM id, for membership events (kept after a group is deleted).
    groups_by_id: HashMap<String, Value>,
    /// Users whose change names a group not in `groups_by_id` yet.
    awaiting: AwaitingGroups,
    failures: u32,
    failing_since: Option<jiff::Timestamp>,
    warned: bool,
    next_attempt: Instant,
    blocker: Option<Blocker>,
    last_delivered_time: Option<String>,
    actions: Vec<Action>,
}

impl Machine {
    /// A machine resuming from the stored `outbox`: everything in it was checkpointed.
    pub fn new(
        settings: Settings,
        directory_id: String,
        hook: &ScimWebhook,
        outbox: Outbox,
        now: Instant,
    ) -> Machine {
        let groups_by_id = outbox
            .derived
            .values()
            .filter(|d| d.snapshot.kind == Kind::Group)
            .map(|d| (d.snapshot.id.clone(), d.snapshot.data.clone()))
            .collect();
        let announced = outbox
            .derived
            .values()
            .any(|d| d.snapshot.kind == Kind::Directory);
        Machine {
            settings,
            directory_id,
            webhook_uid: hook.uid().unwrap_or_default(),
            announced,
            checkpointed: outbox.pending.len(),
            in_flight: None,
            outbox,
            dirty: false,
            compressed_too_big: false,
            outbox_full: false,
            listing: HashMap::new(),
            groups_by_id,
            awaiting: AwaitingGroups::default(),
            failures: 0,
            failing_since: None,
            warned: false,
            next_attempt: now,
            blocker: None,
            last_delivered_time: hook
                .status
                .as_ref()
                .and_then(|s| s.last_delivered_time.clone()),
            actions: Vec::new(),
        }
    }

    /// The actions gathered since the last call, in order.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn checkpointed(&self) -> usize {
        self.checkpointed
    }

    /// Whether the directory watch may be read: the outbox has room.
    pub fn can_read(&self) -> bool {
        self.outbox.pending.len() < self.settings.max_backlog && !self.compressed_too_big
    }

    /// Whether the user and group watches may be read: `dsync.activated` comes before any
    /// event about its users, and nothing follows `dsync.deleted`.
    pub fn active(&self) -> bool {
        self.can_read() && self.announced
    }

    /// When the next request could start.
    pub fn wake_at(&self, now: Now) -> Instant {
        let idle = now.instant + Duration::from_secs(3600);
        if self.checkpointed == 0 {
            return idle;
        }
        let mut at = self.next_attempt;
        if self.settings.max_events > 1 && self.checkpointed < self.settings.max_events {
            at = at.max(now.instant + self.batch_wait_left(now));
        }
        at
    }

    /// How much longer the oldest pending event may wait for its batch to fill (zero: send).
    fn batch_wait_left(&self, now: Now) -> Duration {
        match self.outbox.pending.front() {
            None => Duration::ZERO,
            Some(first) => batch_wait_left(&first.created_at, self.settings.max_wait, now.wall),
        }
    }

    /// Whether a request is due (checkpointed events, a full batch or a batch whose oldest
    /// event waited long enough, after the backoff); drops checkpointed events older than
    /// `retryFor` first. The loop then reads the signing keys and calls [`Machine::start`] or
    /// [`Machine::keys_unavailable`].
    pub fn due(&mut self, now: Now) -> bool {
        if self.in_flight.is_some() || self.checkpointed == 0 || now.instant < self.next_attempt {
            return false;
        }
        if self.settings.max_events > 1
            && self.checkpointed < self.settings.max_events
            && !self.batch_wait_left(now).is_zero()
        {
            return false;
        }
        self.drop_expired(now);
        self.checkpointed > 0
    }

    /// The signing keys cannot be read: no request for a while.
    pub fn keys_unavailable(&mut self, why: String, now: Now) {
        self.blocker = Some(Blocker::SigningKey(why));
        self.next_attempt = now.instant + Duration::from_secs(5);
    }

    /// The request to make now (None when one is under way or nothing is checkpointed).
    pub fn start(&mut self) -> Option<Batch> {
        if self.in_flight.is_some() || self.checkpointed == 0 {
            return None;
        }
        if matches!(self.blocker, Some(Blocker::SigningKey(_))) {
            self.blocker = None;
        }
        let count = self.checkpointed.min(self.settings.max_events);
        self.in_flight = Some(count);
        Some(Batch {
            events: self.outbox.pending.iter().take(count).cloned().collect(),
            batched: self.settings.max_events > 1,
        })
    }

    fn drop_expired(&mut self, now: Now) {
        let mut dropped = 0;
        while self.checkpointed > 0 {
            let Some(first) = self.outbox.pending.front() else {
                break;
            };
            let expired = first
                .created_at
                .parse::<jiff::Timestamp>()
                .ok()
                .and_then(|t| Duration::try_from(now.wall.duration_since(t)).ok())
                .is_some_and(|age| age > self.settings.retry_for);
            if !expired {
                break;
            }
            self.outbox.pending.pop_front();
            self.checkpointed -= 1;
            dropped += 1;
        }
        if dropped > 0 {
            self.outbox.dropped += dropped;
            self.dirty = true;
            let note = format!(
                "dropped {dropped} event(s) the receiver did not accept within retryFor ({:?})",
                self.settings.retry_for
            );
            self.actions.push(Action::Dropped {
                count: dropped,
                note,
            });
        }
    }

    /// The request under way ended. `jitter` in [0, 1) spreads the retries.
    pub fn settle(&mut self, outcome: Outcome, now: Now, jitter: f64) {
        let Some(count) = self.in_flight.take() else {
            return;
        };
        match outcome {
            Outcome::Delivered => {
                let mut last = None;
                for _ in 0..count {
                    last = self.outbox.pending.pop_front().map(|e| e.id);
                }
                self.checkpointed -= count;
                self.outbox.last_delivered = last;
                self.last_delivered_time = Some(now.wall.to_string());
                self.dirty = true;
                self.failures = 0;
                self.failing_since = None;
                self.warned = false;
                if matches!(self.blocker, Some(Blocker::Receiver(_))) {
                    self.blocker = None;
                }
                self.next_attempt = now.instant;
                self.actions.push(Action::Delivered(count as u64));
            }
            Outcome::Failed { error, retry_after } => {
                self.failures += 1;
                let since = *self.failing_since.get_or_insert(now.wall);
                let wait = sender::backoff(self.failures, retry_after, jitter);
                self.next_attempt = now.instant + wait;
                self.blocker = Some(Blocker::Receiver(error.clone()));
                self.actions.push(Action::Failed {
                    error: error.clone(),
                    failures: self.failures,
                    retry_in: wait,
                });
                let failing_for =
                    Duration::try_from(now.wall.duration_since(since)).unwrap_or_default();
                if !self.warned && failing_for >= self.settings.warn_after {
                    self.warned = true;
                    self.actions.push(Action::ReceiverFailing {
                        note: format!(
                            "the receiver has failed since {since} ({} attempts); last error: {error}",
                            self.failures
                        ),
                    });
                }
            }
        }
    }

    /// What to store: the outbox when it changed, unless it does not fit its Secret.
    pub fn checkpoint(&mut self) -> Checkpoint {
        if !self.dirty {
            return Checkpoint::Unchanged;
        }
        let encoded = outbox::encode(&self.outbox);
        let room = outbox::room(encoded.len());
        if room == outbox::Room::Full {
            // Keep sending what is stored; stop reading changes until the receiver drains it.
            self.compressed_too_big = true;
            let first = !self.outbox_full;
            self.outbox_full = true;
            return Checkpoint::Full {
                bytes: encoded.len(),
                pending: self.outbox.pending.len(),
                first,
            };
        }
        self.outbox_full = false;
        self.compressed_too_big = room == outbox::Room::Tight;
        Checkpoint::Write {
            encoded,
            pending: self.outbox.pending.len(),
        }
    }

    /// The outbox of [`Checkpoint::Write`] is stored: its `pending` first events may be sent.
    /// Acknowledgements since only shortened `pending` from the front, so the stored events
    /// still head it (`settle` subtracted them from `checkpointed` already).
    pub fn stored(&mut self, pending: usize) {
        self.checkpointed = pending.min(self.outbox.pending.len());
        self.dirty = false;
    }

    /// The status to report.
    pub fn status(
        &self,
        hook: &ScimWebhook,
        previous: Option<&ScimWebhookStatus>,
        now: Now,
    ) -> ScimWebhookStatus {
        let blocker = self.blocker.clone().or_else(|| {
            if self.outbox_full {
                return Some(Blocker::OutboxFull(
                    "the outbox does not fit its Secret: no changes are read until the receiver accepts the backlog".into(),
                ));
            }
            (!self.announced).then(|| {
                Blocker::Directory(format!(
                    "directory {} is not Ready (or was deleted); events are sent once it is",
                    self.directory_id
                ))
            })
        });
        ScimWebhookStatus {
            observed_generation: hook.metadata.generation,
            conditions: vec![ready(hook, previous, blocker.as_ref(), now.wall)],
            last_delivered_event_id: self.outbox.last_delivered.clone(),
            last_delivered_time: self.last_delivered_time.clone(),
            backlog: Some(self.outbox.pending.len() as i64),
            consecutive_failures: Some(self.failures as i64),
            failing_since: self.failing_since.map(|t| t.to_string()),
            last_error: match &self.blocker {
                Some(
                    Blocker::Receiver(e)
                    | Blocker::SigningKey(e)
                    | Blocker::InvalidSpec(e)
                    | Blocker::Directory(e)
                    | Blocker::OutboxFull(e)
                    | Blocker::OutboxNotOwned(e),
                ) => Some(e.clone()),
                None => None,
            },
            dropped_events: Some(self.outbox.dropped as i64),
        }
    }
}

/// The Ready condition; its transition time moves only when its status does.
pub fn ready(
    hook: &ScimWebhook,
    previous: Option<&ScimWebhookStatus>,
    blocker: Option<&Blocker>,
    now: jiff::Timestamp,
) -> Condition {
    let check = match blocker {
        None => Check::ok("Delivering", "events are delivered"),
        Some(Blocker::InvalidSpec(m)) => Check::failed("InvalidSpec", m.clone()),
        Some(Blocker::SigningKey(m)) => Check::failed("SigningKeyUnavailable", m.clone()),
        Some(Blocker::Directory(m)) => Check::failed("DirectoryNotReady", m.clone()),
        Some(Blocker::OutboxFull(m)) => Check::failed("OutboxFull", m.clone()),
        Some(Blocker::OutboxNotOwned(m)) => Check::failed("OutboxNotOwned", m.clone()),
        Some(Blocker::Receiver(m)) => Check::failed(
            "ReceiverFailing",
            format!("the receiver did not accept the last request: {m}"),
        ),
    };
    let previous = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    condition(
        CONDITION_READY,
        &check,
        hook.metadata.generation,
        previous,
        now,
    )
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
