//! The delivery loop of one ScimWebhook: watch the directory's users and groups, derive events
//! into the outbox, checkpoint it, send checkpointed events in order, retry, report status.
//!
//! One file over 600 lines on purpose: the loop's state (outbox, listing, backoff, status) is one
//! struct whose handlers must keep one invariant (only checkpointed events are sent); the pure
//! parts already live in `events.rs`, `outbox.rs`, `sender.rs` and `signing.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::EventType;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use kube_scim_crds::{
    CONDITION_READY, ScimDirectory, ScimGroup, ScimUser, ScimWebhook, ScimWebhookStatus, labels,
};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::Shared;
use super::awaiting_groups::AwaitingGroups;
use super::events::{self, Derived, DirectoryState, Event, Kind, Snapshot};
use super::outbox::{self, Outbox};
use super::sender::{self, Outcome};
use super::signing::{self, SigningKey};
use crate::metrics::WebhookLabels;
use crate::reconcile::{self, Check, condition, manager};

/// How long a user's change waits for a group it names to arrive on the group watch; past it,
/// `user_added` names the group by id only (a group deleted before it was seen).
const GROUP_WAIT: Duration = Duration::from_secs(10);

/// The spec, checked and with defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: reqwest::Url,
    pub events: HashSet<String>,
    pub max_events: usize,
    pub max_wait: Duration,
    pub retry_for: Duration,
    pub max_backlog: usize,
    pub timeout: Duration,
    pub warn_after: Duration,
}

fn duration_or(text: &Option<String>, default: Duration, field: &str) -> Result<Duration, String> {
    match text {
        None => Ok(default),
        Some(t) => kube_scim_runtime::duration::parse(t).map_err(|e| format!("spec.{field}: {e}")),
    }
}

impl Settings {
    pub fn from_spec(
        hook: &ScimWebhook,
        policy: &super::target::Policy,
    ) -> Result<Settings, String> {
        let spec = &hook.spec;
        let url = policy.check_url(&spec.url).map_err(|e| e.to_string())?;
        let events = if spec.events.is_empty() {
            kube_scim_crds::EVENT_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            spec.events.iter().cloned().collect()
        };
        let batching = spec.batching.as_ref();
        Ok(Settings {
            url,
            events,
            max_events: batching
                .map(|b| b.max_events.clamp(1, 1000) as usize)
                .unwrap_or(1),
            max_wait: duration_or(
                &batching.and_then(|b| b.max_wait.clone()),
                Duration::from_secs(1),
                "batching.maxWait",
            )?,
            retry_for: duration_or(&spec.retry_for, Duration::from_secs(72 * 3600), "retryFor")?,
            max_backlog: spec.max_backlog.unwrap_or(20_000).clamp(1, 100_000) as usize,
            timeout: duration_or(&spec.timeout, Duration::from_secs(10), "timeout")?,
            warn_after: duration_or(&spec.warn_after, Duration::from_secs(900), "warnAfter")?,
        })
    }
}

/// How much longer an event derived at `created_at` may wait for its batch to fill. A duration,
/// not an instant: comparing `Instant::now()` with a deadline computed from a later
/// `Instant::now()` never came due, which stranded the last event of a burst.
pub fn batch_wait_left(created_at: &str, max_wait: Duration, now: jiff::Timestamp) -> Duration {
    let age = created_at
        .parse::<jiff::Timestamp>()
        .ok()
        .and_then(|t| Duration::try_from(now.duration_since(t)).ok())
        // Unreadable or in the future: do not hold the event back.
        .unwrap_or(max_wait);
    max_wait.saturating_sub(age)
}

/// Why the loop cannot deliver right now, for the Ready condition.
#[derive(Debug, Clone, PartialEq)]
enum Blocker {
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

/// Runs until aborted (the manager aborts it when the spec changes, the webhook is deleted or
/// leadership ends; everything it had not checkpointed is derived again by the next run).
pub async fn run(shared: Arc<Shared>, hook: ScimWebhook) {
    let (Some(ns), name) = (hook.namespace(), hook.name_any()) else {
        return;
    };
    let hooks: Api<ScimWebhook> = Api::namespaced(shared.client.clone(), &ns);
    let settings = match Settings::from_spec(&hook, &shared.policy) {
        Ok(s) => s,
        Err(why) => {
            tracing::warn!(namespace = %ns, webhook = %name, %why, "webhook not started");
            let status = ScimWebhookStatus {
                observed_generation: hook.metadata.generation,
                conditions: vec![ready(&hook, None, Some(&Blocker::InvalidSpec(why)))],
                ..hook.status.clone().unwrap_or_default()
            };
            write_status(&hooks, &name, &status).await;
            return;
        }
    };
    let secrets: Api<Secret> = Api::namespaced(shared.client.clone(), &ns);
    let mut delay = Duration::from_secs(1);
    let outbox = loop {
        match outbox::load(&secrets, &name, hook.metadata.uid.as_deref()).await {
            Ok(o) => break o,
            Err(outbox::OutboxError::NotOwned(secret)) => {
                let why = format!(
                    "Secret {secret} exists and is not this webhook's outbox (no ownerReference to it, or another type): delete or rename it, or rename the ScimWebhook; the operator never reads or overwrites a Secret it did not create"
                );
                tracing::warn!(namespace = %ns, webhook = %name, %why, "webhook not started");
                let status = ScimWebhookStatus {
                    observed_generation: hook.metadata.generation,
                    conditions: vec![ready(&hook, None, Some(&Blocker::OutboxNotOwned(why)))],
                    ..hook.status.clone().unwrap_or_default()
                };
                write_status(&hooks, &name, &status).await;
                return;
            }
            Err(e) => {
                tracing::warn!(namespace = %ns, webhook = %name, error = %e, "cannot load the webhook outbox; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        }
    };
    let http = match sender::client(shared.policy.clone(), settings.timeout) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook HTTP client");
            return;
        }
    };
    let directory = hook.spec.directory_ref.name.clone();
    let selector = format!("{}={}", labels::DIRECTORY, directory);
    let users = watcher(
        Api::<ScimUser>::namespaced(shared.client.clone(), &ns),
        watcher::Config::default().labels(&selector),
    )
    .default_backoff()
    .boxed();
    let groups = watcher(
        Api::<ScimGroup>::namespaced(shared.client.clone(), &ns),
        watcher::Config::default().labels(&selector),
    )
    .default_backoff()
    .boxed();
    let directories = watcher(
        Api::<ScimDirectory>::namespaced(shared.client.clone(), &ns),
        watcher::Config::default().fields(&format!("metadata.name={directory}")),
    )
    .default_backoff()
    .boxed();
    let labels = WebhookLabels {
        namespace: ns.clone(),
        webhook: name.clone(),
    };
    tracing::info!(namespace = %ns, webhook = %name, pending = outbox.pending.len(), known = outbox.derived.len(), "webhook delivery started");
    let mut state = Loop::new(shared, hook, settings, http, secrets, hooks, outbox, labels);
    state.directory_id = format!("{ns}/{directory}");
    state.run(directories, users, groups).await;
}

struct Loop {
    shared: Arc<Shared>,
    hook: ScimWebhook,
    settings: Settings,
    http: reqwest::Client,
    secrets: Api<Secret>,
    hooks: Api<ScimWebhook>,
    labels: WebhookLabels,
    directory_id: String,
    outbox: Outbox,
    /// `outbox.pending[..checkpointed]` is in the stored outbox: only those may be sent.
    checkpointed: usize,
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
    keys: Option<(Instant, Vec<SigningKey>)>,
    failures: u32,
    failing_since: Option<jiff::Timestamp>,
    warned: bool,
    next_attempt: Instant,
    blocker: Option<Blocker>,
    last_status: Option<ScimWebhookStatus>,
    last_delivered_time: Option<String>,
}

type Sending = BoxFuture<'static, (usize, Outcome)>;

impl Loop {
    #[allow(clippy::too_many_arguments)]
    fn new(
        shared: Arc<Shared>,
        hook: ScimWebhook,
        settings: Settings,
        http: reqwest::Client,
        secrets: Api<Secret>,
        hooks: Api<ScimWebhook>,
        outbox: Outbox,
        labels: WebhookLabels,
    ) -> Loop {
        let groups_by_id = outbox
            .derived
            .values()
            .filter(|d| d.snapshot.kind == Kind::Group)
            .map(|d| (d.snapshot.id.clone(), d.snapshot.data.clone()))
            .collect();
        let last_delivered_time = hook
            .status
            .as_ref()
            .and_then(|s| s.last_delivered_time.clone());
        let announced = outbox
            .derived
            .values()
            .any(|d| d.snapshot.kind == Kind::Directory);
        Loop {
            announced,
            checkpointed: outbox.pending.len(),
            shared,
            hook,
            settings,
            http,
            secrets,
            hooks,
            labels,
            directory_id: String::new(),
            outbox,
            dirty: false,
            compressed_too_big: false,
            outbox_full: false,
            listing: HashMap::new(),
            groups_by_id,
            awaiting: AwaitingGroups::default(),
            keys: None,
            failures: 0,
            failing_since: None,
            warned: false,
            next_attempt: Instant::now(),
            blocker: None,
            last_status: None,
            last_delivered_time,
        }
    }

    async fn run(
        &mut self,
        mut directories: impl Stream<Item = Result<watcher::Event<ScimDirectory>, watcher::Error>>
        + Unpin,
        mut users: impl Stream<Item = Result<watcher::Event<ScimUser>, watcher::Error>> + Unpin,
        mut groups: impl Stream<Item = Result<watcher::Event<ScimGroup>, watcher::Error>> + Unpin,
    ) {
        let mut tick = tokio::time::interval(self.shared.checkpoint_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sending: Option<Sending> = None;
        loop {
            if sending.is_none() {
                sending = self.next_request().await;
            }
            let can_read =
                self.outbox.pending.len() < self.settings.max_backlog && !self.compressed_too_big;
            // Users and groups only once the directory is announced: `dsync.activated` comes
            // before any event about its users, and nothing follows `dsync.deleted`.
            let active = can_read && self.directory_announced();
            let wake = self.wake_at();
            tokio::select! {
                biased;
                (count, outcome) = async { sending.as_mut().expect("guarded").await }, if sending.is_some() => {
                    sending = None;
                    self.settle(count, outcome).await;
                }
                _ = tick.tick() => {
                    self.release_awaiting();
                    self.checkpoint().await;
                    self.report().await;
                }
                Some(event) = directories.next(), if can_read => self.on_directory(event),
                Some(event) = groups.next(), if active => self.on_group(event),
                Some(event) = users.next(), if active => self.on_user(event),
                _ = tokio::time::sleep_until(wake), if sending.is_none() => {}
            }
        }
    }

    /// When the next request could start.
    fn wake_at(&self) -> Instant {
        let idle = Instant::now() + Duration::from_secs(3600);
        if self.checkpointed == 0 {
            return idle;
        }
        let mut at = self.next_attempt;
        if self.settings.max_events > 1 && self.checkpointed < self.settings.max_events {
            at = at.max(Instant::now() + self.batch_wait_left());
        }
        at
    }

    /// How much longer the oldest pending event may wait for its batch to fill (zero: send).
    fn batch_wait_left(&self) -> Duration {
        match self.outbox.pending.front() {
            None => Duration::ZERO,
            Some(first) => batch_wait_left(
                &first.created_at,
                self.settings.max_wait,
                jiff::Timestamp::now(),
            ),
        }
    }

    /// The next request, when one is due: checkpointed events, a full batch or a batch whose
    /// oldest event waited long enough, after the backoff.
    async fn next_request(&mut self) -> Option<Sending> {
        if self.checkpointed == 0 || Instant::now() < self.next_attempt {
            return None;
        }
        if self.settings.max_events > 1
            && self.checkpointed < self.settings.max_events
            && !self.batch_wait_left().is_zero()
        {
            return None;
        }
        self.drop_expired();
        if self.checkpointed == 0 {
            return None;
        }
        let keys = match self.signing_keys().await {
            Ok(keys) => keys,
            Err(why) => {
                self.blocker = Some(Blocker::SigningKey(why));
                self.next_attempt = Instant::now() + Duration::from_secs(5);
                return None;
            }
        };
        if matches!(self.blocker, Some(Blocker::SigningKey(_))) {
            self.blocker = None;
        }
        let count = self.checkpointed.min(self.settings.max_events);
        let batch: Vec<Event> = self.outbox.pending.iter().take(count).cloned().collect();
        let (http, url, batched) = (
            self.http.clone(),
            self.settings.url.clone(),
            self.settings.max_events > 1,
        );
        Some(
            async move {
                let outcome = sender::send(&http, &url, &keys, &batch, batched).await;
                (count, outcome)
            }
            .boxed(),
        )
    }

    /// The signing keys, re-read from the Secret at most every `--webhook-key-refresh-interval`
    /// (default 30 s; a rotation takes effect then).
    async fn signing_keys(&mut self) -> Result<Vec<SigningKey>, String> {
        if let Some((at, keys)) = &self.keys
            && at.elapsed() < self.shared.key_refresh_interval
        {
            return Ok(keys.clone());
        }
        let reference = &self.hook.spec.signing_key_secret_ref;
        let secret = self
            .secrets
            .get_opt(&reference.name)
            .await
            .map_err(|e| format!("cannot read Secret {}: {e}", reference.name))?
            .ok_or_else(|| format!("Secret {} not found", reference.name))?;
        if !signing::may_sign_with(&secret.metadata, self.hook.metadata.uid.as_deref()) {
            return Err(format!(
                "Secret {name} is not marked as a webhook signing key: label it {label}=true (`kubectl label secret {name} {label}=true`; this needs the right to write it), or let it be owned by this ScimWebhook",
                name = reference.name,
                label = signing::SIGNING_KEY_LABEL,
            ));
        }
        let data = secret.data.unwrap_or_default();
        let current_key = reference.key.as_deref().unwrap_or("key");
        let current = data
            .get(current_key)
            .ok_or_else(|| format!("Secret {} has no key {current_key}", reference.name))?;
        let text = String::from_utf8_lossy(&current.0).to_string();
        let mut keys = vec![
            SigningKey::parse(&text)
                .map_err(|e| format!("Secret {} key {current_key}: {e}", reference.name))?,
        ];
        let previous_key = reference.previous_key.as_deref().unwrap_or("previous");
        if let Some(previous) = data.get(previous_key).filter(|v| !v.0.is_empty()) {
            let text = String::from_utf8_lossy(&previous.0).to_string();
            keys.push(
                SigningKey::parse(&text)
                    .map_err(|e| format!("Secret {} key {previous_key}: {e}", reference.name))?,
            );
        }
        self.keys = Some((Instant::now(), keys.clone()));
        Ok(keys)
    }

    /// Drops checkpointed events older than `spec.retryFor`.
    fn drop_expired(&mut self) {
        let now = jiff::Timestamp::now();
        let mut dropped = 0;
        while self.checkpointed > 0 {
            let Some(first) = self.outbox.pending.front() else {
                break;
            };
            let expired = first
                .created_at
                .parse::<jiff::Timestamp>()
                .ok()
                .and_then(|t| Duration::try_from(now.duration_since(t)).ok())
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
            self.shared
                .metrics
                .webhook_dropped
                .get_or_create(&self.labels)
                .inc_by(dropped);
            let note = format!(
                "dropped {dropped} event(s) the receiver did not accept within retryFor ({:?})",
                self.settings.retry_for
            );
            tracing::warn!(namespace = %self.labels.namespace, webhook = %self.labels.webhook, dropped, "webhook events dropped");
            let (recorder, reference) = (self.shared.recorder.clone(), self.hook.object_ref(&()));
            tokio::spawn(async move {
                crate::events::publish(
                    &recorder,
                    &reference,
                    EventType::Warning,
                    "EventsDropped",
                    "Deliver",
                    note,
                )
                .await;
            });
        }
    }

    async fn settle(&mut self, count: usize, outcome: Outcome) {
        match outcome {
            Outcome::Delivered => {
                let mut last = None;
                for _ in 0..count {
                    last = self.outbox.pending.pop_front().map(|e| e.id);
                }
                self.checkpointed -= count;
                self.outbox.last_delivered = last;
                self.last_delivered_time = Some(jiff::Timestamp::now().to_string());
                self.dirty = true;
                self.failures = 0;
                self.failing_since = None;
                self.warned = false;
                if matches!(self.blocker, Some(Blocker::Receiver(_))) {
                    self.blocker = None;
                }
                self.next_attempt = Instant::now();
                self.shared
                    .metrics
                    .webhook_delivered
                    .get_or_create(&self.labels)
                    .inc_by(count as u64);
            }
            Outcome::Failed { error, retry_after } => {
                self.failures += 1;
                let since = *self.failing_since.get_or_insert_with(jiff::Timestamp::now);
                let jitter = getrandom::u32().map(|r| r as f64 / (u32::MAX as f64 + 1.0));
                let wait = sender::backoff(self.failures, retry_after, jitter.unwrap_or(0.5));
                self.next_attempt = Instant::now() + wait;
                tracing::info!(namespace = %self.labels.namespace, webhook = %self.labels.webhook, %error, failures = self.failures, retry_in = ?wait, "webhook request failed");
                self.blocker = Some(Blocker::Receiver(error.clone()));
                self.shared
                    .metrics
                    .webhook_failures
                    .get_or_create(&self.labels)
                    .inc();
                let failing_for = Duration::try_from(jiff::Timestamp::now().duration_since(since))
                    .unwrap_or_default();
                if !self.warned && failing_for >= self.settings.warn_after {
                    self.warned = true;
                    crate::events::publish(
                        &self.shared.recorder,
                        &self.hook.object_ref(&()),
                        EventType::Warning,
                        "ReceiverFailing",
                        "Deliver",
                        format!(
                            "the receiver has failed since {since} ({} attempts); last error: {error}",
                            self.failures
                        ),
                    )
                    .await;
                }
            }
        }
    }

    /// Whether `dsync.activated` was derived for the directory (and no `dsync.deleted` since).
    fn directory_announced(&self) -> bool {
        self.announced
    }

    fn group_data(&self, id: &str) -> Value {
        self.groups_by_id.get(id).cloned().unwrap_or_else(
            || json!({"object": "directory_group", "id": id, "directory_id": self.directory_id}),
        )
    }

    /// Derives the changes of the users that waited for their groups: every group they name is
    /// known now, or they waited [`GROUP_WAIT`].
    fn release_awaiting(&mut self) {
        let groups = &self.groups_by_id;
        let known = |g: &str| groups.contains_key(g);
        for (uid, states) in self.awaiting.release(known, Instant::now(), GROUP_WAIT) {
            for state in states {
                self.derive(&uid, Some(state));
            }
        }
    }

    /// Derives the events from the last derived state of `uid` to `new`.
    fn derive(&mut self, uid: &str, new: Option<Snapshot>) {
        let old = self.outbox.derived.get(uid);
        if old.map(|d| &d.snapshot) == new.as_ref() {
            return;
        }
        let changes = events::diff(
            old.map(|d| &d.snapshot),
            new.as_ref(),
            &self.directory_id,
            &|id| self.group_data(id),
        );
        let mut seq = old.map(|d| d.seq).unwrap_or(0);
        let now = jiff::Timestamp::now().to_string();
        let webhook_uid = self.hook.uid().unwrap_or_default();
        for change in changes {
            seq += 1;
            if !self.settings.events.contains(&change.event) {
                continue;
            }
            self.outbox.pending.push_back(Event {
                id: events::event_id(&webhook_uid, uid, seq),
                event: change.event,
                data: change.data,
                created_at: now.clone(),
                transition: change.transition,
                resource: uid.to_string(),
            });
        }
        match new {
            Some(snapshot) => {
                if snapshot.kind == Kind::Directory {
                    self.announced = true;
                }
                if snapshot.kind == Kind::Group {
                    self.groups_by_id
                        .insert(snapshot.id.clone(), snapshot.data.clone());
                }
                self.outbox
                    .derived
                    .insert(uid.to_string(), Derived { snapshot, seq });
            }
            None => {
                let gone = self.outbox.derived.remove(uid);
                if gone.is_some_and(|d| d.snapshot.kind == Kind::Directory) {
                    // `dsync.deleted` stands for its users and groups (the receiver drops
                    // them): forget them without events. A directory of the same name that
                    // becomes Ready later is announced again, its users and groups `created`.
                    self.outbox
                        .derived
                        .retain(|_, d| d.snapshot.kind == Kind::Directory);
                    self.groups_by_id.clear();
                    self.awaiting.clear();
                    self.announced = self
                        .outbox
                        .derived
                        .values()
                        .any(|d| d.snapshot.kind == Kind::Directory);
                }
            }
        }
        self.dirty = true;
    }

    fn on_directory(&mut self, event: Result<watcher::Event<ScimDirectory>, watcher::Error>) {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(namespace = %self.labels.namespace, webhook = %self.labels.webhook, error = %e, "watch of the directory failed; retrying");
                return;
            }
        };
        match event {
            watcher::Event::Init => {
                self.listing.insert("directory", HashSet::new());
            }
            watcher::Event::InitApply(dir) | watcher::Event::Apply(dir) => {
                let Some(uid) = dir.uid() else { return };
                if let Some(seen) = self.listing.get_mut("directory") {
                    seen.insert(uid.clone());
                }
                match events::directory_state(&dir, &self.directory_id) {
                    DirectoryState::Pending => {}
                    DirectoryState::Active(snapshot) => {
                        // Another uid of the same name was announced: that directory was
                        // deleted and this one created while no watch event said so (the
                        // deliverer was down). The old connection ends before the new begins.
                        let replaced: Vec<String> = self
                            .outbox
                            .derived
                            .iter()
                            .filter(|(u, d)| d.snapshot.kind == Kind::Directory && **u != uid)
                            .map(|(u, _)| u.clone())
                            .collect();
                        for old in replaced {
                            self.derive(&old, None);
                        }
                        self.derive(&uid, Some(snapshot));
                    }
                    DirectoryState::Deleting => self.derive(&uid, None),
                }
            }
            watcher::Event::Delete(dir) => {
                if let Some(uid) = dir.uid() {
                    self.derive(&uid, None);
                }
            }
            watcher::Event::InitDone => self.forget_unlisted("directory", Kind::Directory),
        }
    }

    fn on_user(&mut self, event: Result<watcher::Event<ScimUser>, watcher::Error>) {
        let directory_id = self.directory_id.clone();
        self.on_event("user", Kind::User, event, |u| {
            events::user_snapshot(u, &directory_id)
        });
    }

    fn on_group(&mut self, event: Result<watcher::Event<ScimGroup>, watcher::Error>) {
        let directory_id = self.directory_id.clone();
        self.on_event("group", Kind::Group, event, |g| {
            events::group_snapshot(g, &directory_id)
        });
    }

    fn on_event<K: Resource>(
        &mut self,
        kind_name: &'static str,
        kind: Kind,
        event: Result<watcher::Event<K>, watcher::Error>,
        snapshot: impl Fn(&K) -> Option<Snapshot>,
    ) {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(namespace = %self.labels.namespace, webhook = %self.labels.webhook, error = %e, "watch of {kind_name}s failed; retrying");
                return;
            }
        };
        match event {
            watcher::Event::Init => {
                self.listing.insert(kind_name, HashSet::new());
            }
            watcher::Event::InitApply(object) | watcher::Event::Apply(object) => {
                let Some(uid) = object.meta().uid.clone() else {
                    return;
                };
                if let Some(seen) = self.listing.get_mut(kind_name) {
                    seen.insert(uid.clone());
                }
                // An object without status yet has no attributes to announce.
                let Some(s) = snapshot(&object) else { return };
                let groups = &self.groups_by_id;
                let known = |g: &str| groups.contains_key(g);
                for state in self.awaiting.hold_or_pass(&uid, s, known, Instant::now()) {
                    self.derive(&uid, Some(state));
                }
                if kind == Kind::Group {
                    self.release_awaiting();
                }
            }
            watcher::Event::Delete(object) => {
                if let Some(uid) = object.meta().uid.clone() {
                    // What it went through first (a membership added and removed meanwhile).
                    for state in self.awaiting.take(&uid) {
                        self.derive(&uid, Some(state));
                    }
                    self.derive(&uid, None);
                }
            }
            watcher::Event::InitDone => self.forget_unlisted(kind_name, kind),
        }
    }

    /// At the end of a (re-)list: every derived object of `kind` the list did not show was
    /// deleted while no watch event said so.
    fn forget_unlisted(&mut self, listing: &'static str, kind: Kind) {
        let Some(seen) = self.listing.remove(listing) else {
            return;
        };
        if kind == Kind::User {
            self.awaiting.retain(|uid| seen.contains(uid));
        }
        let gone: Vec<String> = self
            .outbox
            .derived
            .iter()
            .filter(|(uid, d)| d.snapshot.kind == kind && !seen.contains(*uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in gone {
            self.derive(&uid, None);
        }
    }

    /// Writes the outbox when it changed; afterwards every pending event may be sent.
    async fn checkpoint(&mut self) {
        if !self.dirty {
            return;
        }
        let encoded = outbox::encode(&self.outbox);
        self.shared
            .metrics
            .webhook_outbox_bytes
            .get_or_create(&self.labels)
            .set(encoded.len() as i64);
        let room = outbox::room(encoded.len());
        if room == outbox::Room::Full {
            // Keep sending what is stored; stop reading changes until the receiver drains it.
            self.compressed_too_big = true;
            if !self.outbox_full {
                self.outbox_full = true;
                tracing::warn!(namespace = %self.labels.namespace, webhook = %self.labels.webhook, bytes = encoded.len(), "webhook outbox too large; pausing until the receiver catches up");
                crate::events::publish(
                    &self.shared.recorder,
                    &self.hook.object_ref(&()),
                    EventType::Warning,
                    "OutboxFull",
                    "Checkpoint",
                    format!(
                        "the outbox ({} bytes compressed, {} events waiting) does not fit its Secret ({} bytes): no changes are read until the receiver accepts the backlog",
                        encoded.len(),
                        self.outbox.pending.len(),
                        outbox::MAX_COMPRESSED_BYTES
                    ),
                )
                .await;
            }
            return;
        }
        self.outbox_full = false;
        self.compressed_too_big = room == outbox::Room::Tight;
        let owner = self
            .hook
            .controller_owner_ref(&())
            .expect("a webhook from the apiserver has a name and uid");
        let pending = self.outbox.pending.len();
        match outbox::store(&self.secrets, &self.labels.webhook, owner, encoded).await {
            Ok(()) => {
                self.checkpointed = pending;
                self.dirty = false;
                self.shared
                    .metrics
                    .webhook_checkpoints
                    .get_or_create(&self.labels)
                    .inc();
            }
            Err(e) => {
                tracing::warn!(namespace = %self.labels.namespace, webhook = %self.labels.webhook, error = %e, "cannot write the webhook outbox; retrying")
            }
        }
    }

    /// Writes status when it changed.
    async fn report(&mut self) {
        self.shared
            .metrics
            .webhook_backlog
            .get_or_create(&self.labels)
            .set(self.outbox.pending.len() as i64);
        let previous = self.last_status.as_ref().or(self.hook.status.as_ref());
        let blocker = self.blocker.clone().or_else(|| {
            if self.outbox_full {
                return Some(Blocker::OutboxFull(
                    "the outbox does not fit its Secret: no changes are read until the receiver accepts the backlog".into(),
                ));
            }
            (!self.directory_announced()).then(|| {
                Blocker::Directory(format!(
                    "directory {} is not Ready (or was deleted); events are sent once it is",
                    self.directory_id
                ))
            })
        });
        let status = ScimWebhookStatus {
            observed_generation: self.hook.metadata.generation,
            conditions: vec![ready(&self.hook, previous, blocker.as_ref())],
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
        };
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        if write_status(&self.hooks, &self.labels.webhook, &status).await {
            self.last_status = Some(status);
        }
    }
}

/// The Ready condition; its transition time moves only when its status does.
fn ready(
    hook: &ScimWebhook,
    previous: Option<&ScimWebhookStatus>,
    blocker: Option<&Blocker>,
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
        jiff::Timestamp::now(),
    )
}

async fn write_status(hooks: &Api<ScimWebhook>, name: &str, status: &ScimWebhookStatus) -> bool {
    // Applied, so a field no longer set (`lastError` after a success) is removed.
    match reconcile::status::apply(hooks, name, manager::WEBHOOK, status).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(webhook = %name, error = %e, "cannot write webhook status");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_comes_due_once_its_oldest_event_waited_max_wait() {
        let now: jiff::Timestamp = "2026-12-03T21:00:01Z".parse().unwrap();
        let wait = Duration::from_secs(1);
        assert_eq!(
            batch_wait_left("2026-12-03T21:00:00.5Z", wait, now),
            Duration::from_millis(500)
        );
        assert!(batch_wait_left("2026-12-03T21:00:00Z", wait, now).is_zero());
        assert!(batch_wait_left("2026-12-03T20:00:00Z", wait, now).is_zero());
        assert!(batch_wait_left("garbage", wait, now).is_zero());
        assert!(batch_wait_left("2026-12-03T22:00:00Z", wait, now).is_zero());
    }
}
