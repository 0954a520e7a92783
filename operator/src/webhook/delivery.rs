//! The delivery loop of one ScimWebhook: the I/O around its [`Machine`]. It watches the
//! directory's users and groups and feeds their events to the machine, stores the outbox the
//! machine checkpoints, reads the signing keys, makes the requests the machine asks for, and
//! writes status, Events and metrics. Every decision (what is derived, what may be sent, when,
//! what is dropped) is the machine's, unit-tested in `machine_tests.rs`.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::EventType;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use kube_scim_crds::{ScimDirectory, ScimGroup, ScimUser, ScimWebhook, ScimWebhookStatus, labels};
use tokio::time::Instant;

use super::Shared;
use super::machine::{Action, Blocker, Checkpoint, Machine, Now, ready};
use super::outbox;
use super::sender::{self, Outcome};
use super::settings::Settings;
use super::signing::{self, SigningKey};
use crate::metrics::WebhookLabels;
use crate::reconcile::{self, manager};

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
            not_started(&hooks, &hook, Blocker::InvalidSpec(why)).await;
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
                not_started(&hooks, &hook, Blocker::OutboxNotOwned(why)).await;
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
    let machine = Machine::new(
        settings,
        format!("{ns}/{directory}"),
        &hook,
        outbox,
        Instant::now(),
    );
    let mut state = Loop {
        shared,
        hook,
        http,
        secrets,
        hooks,
        labels,
        machine,
        keys: None,
        last_status: None,
    };
    state.run(directories, users, groups).await;
}

/// A webhook that cannot start says why in its Ready condition (logged, and written once: the
/// manager starts it again when its spec changes).
async fn not_started(hooks: &Api<ScimWebhook>, hook: &ScimWebhook, blocker: Blocker) {
    let (ns, name) = (hook.namespace().unwrap_or_default(), hook.name_any());
    let why = match &blocker {
        Blocker::InvalidSpec(why) | Blocker::OutboxNotOwned(why) => why.as_str(),
        _ => "",
    };
    tracing::warn!(namespace = %ns, webhook = %name, %why, "webhook not started");
    let status = ScimWebhookStatus {
        observed_generation: hook.metadata.generation,
        conditions: vec![ready(hook, None, Some(&blocker), jiff::Timestamp::now())],
        ..hook.status.clone().unwrap_or_default()
    };
    write_status(hooks, &name, &status).await;
}

struct Loop {
    shared: Arc<Shared>,
    hook: ScimWebhook,
    http: reqwest::Client,
    secrets: Api<Secret>,
    hooks: Api<ScimWebhook>,
    labels: WebhookLabels,
    machine: Machine,
    keys: Option<(Instant, Vec<SigningKey>)>,
    last_status: Option<ScimWebhookStatus>,
}

type Sending = BoxFuture<'static, Outcome>;

/// A watch event, or why the watch failed (it retries by itself).
fn watched<K>(
    labels: &WebhookLabels,
    what: &str,
    event: Result<watcher::Event<K>, watcher::Error>,
) -> Option<watcher::Event<K>> {
    match event {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!(namespace = %labels.namespace, webhook = %labels.webhook, error = %e, "watch of {what} failed; retrying");
            None
        }
    }
}

impl Loop {
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
            let can_read = self.machine.can_read();
            let active = self.machine.active();
            let wake = self.machine.wake_at(Now::current());
            tokio::select! {
                biased;
                outcome = async { sending.as_mut().expect("guarded").await }, if sending.is_some() => {
                    sending = None;
                    let jitter = getrandom::u32().map(|r| r as f64 / (u32::MAX as f64 + 1.0));
                    self.machine.settle(outcome, Now::current(), jitter.unwrap_or(0.5));
                    self.perform().await;
                }
                _ = tick.tick() => {
                    self.machine.release_awaiting(Now::current());
                    self.checkpoint().await;
                    self.report().await;
                }
                Some(event) = directories.next(), if can_read => {
                    if let Some(event) = watched(&self.labels, "the directory", event) {
                        self.machine.on_directory(event, Now::current());
                    }
                }
                Some(event) = groups.next(), if active => {
                    if let Some(event) = watched(&self.labels, "groups", event) {
                        self.machine.on_group(event, Now::current());
                    }
                }
                Some(event) = users.next(), if active => {
                    if let Some(event) = watched(&self.labels, "users", event) {
                        self.machine.on_user(event, Now::current());
                    }
                }
                _ = tokio::time::sleep_until(wake), if sending.is_none() => {}
            }
        }
    }

    /// The next request, when the machine says one is due and the signing keys can be read.
    async fn next_request(&mut self) -> Option<Sending> {
        let due = self.machine.due(Now::current());
        self.perform().await;
        if !due {
            return None;
        }
        let keys = match self.signing_keys().await {
            Ok(keys) => keys,
            Err(why) => {
                self.machine.keys_unavailable(why, Now::current());
                return None;
            }
        };
        let batch = self.machine.start()?;
        let (http, url) = (self.http.clone(), self.machine.settings().url.clone());
        Some(
            async move { sender::send(&http, &url, &keys, &batch.events, batch.batched).await }
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

    /// Does what the machine asked for besides sending and storing.
    async fn perform(&mut self) {
        for action in self.machine.take_actions() {
            let (ns, hook) = (&self.labels.namespace, &self.labels.webhook);
            match action {
                Action::Delivered(count) => {
                    self.shared
                        .metrics
                        .webhook_delivered
                        .get_or_create(&self.labels)
                        .inc_by(count);
                }
                Action::Dropped { count, note } => {
                    self.shared
                        .metrics
                        .webhook_dropped
                        .get_or_create(&self.labels)
                        .inc_by(count);
                    tracing::warn!(namespace = %ns, webhook = %hook, dropped = count, "webhook events dropped");
                    let (recorder, reference) =
                        (self.shared.recorder.clone(), self.hook.object_ref(&()));
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
                Action::Failed {
                    error,
                    failures,
                    retry_in,
                } => {
                    tracing::info!(namespace = %ns, webhook = %hook, %error, failures, ?retry_in, "webhook request failed");
                    self.shared
                        .metrics
                        .webhook_failures
                        .get_or_create(&self.labels)
                        .inc();
                }
                Action::ReceiverFailing { note } => {
                    self.warn("ReceiverFailing", "Deliver", note).await;
                }
            }
        }
    }

    /// A Warning Event on the webhook.
    async fn warn(&self, reason: &str, action: &str, note: String) {
        crate::events::publish(
            &self.shared.recorder,
            &self.hook.object_ref(&()),
            EventType::Warning,
            reason,
            action,
            note,
        )
        .await;
    }

    /// Writes the outbox when it changed; afterwards every pending event may be sent.
    async fn checkpoint(&mut self) {
        match self.machine.checkpoint() {
            Checkpoint::Unchanged => {}
            Checkpoint::Full {
                bytes,
                pending,
                first,
            } => {
                self.shared
                    .metrics
                    .webhook_outbox_bytes
                    .get_or_create(&self.labels)
                    .set(bytes as i64);
                if first {
                    tracing::warn!(namespace = %self.labels.namespace, webhook = %self.labels.webhook, bytes, "webhook outbox too large; pausing until the receiver catches up");
                    self.warn(
                        "OutboxFull",
                        "Checkpoint",
                        format!(
                            "the outbox ({bytes} bytes compressed, {pending} events waiting) does not fit its Secret ({} bytes): no changes are read until the receiver accepts the backlog",
                            outbox::MAX_COMPRESSED_BYTES
                        ),
                    )
                    .await;
                }
            }
            Checkpoint::Write { encoded, pending } => {
                self.shared
                    .metrics
                    .webhook_outbox_bytes
                    .get_or_create(&self.labels)
                    .set(encoded.len() as i64);
                let owner = self
                    .hook
                    .controller_owner_ref(&())
                    .expect("a webhook from the apiserver has a name and uid");
                match outbox::store(&self.secrets, &self.labels.webhook, owner, encoded).await {
                    Ok(()) => {
                        self.machine.stored(pending);
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
        }
    }

    /// Writes status when it changed.
    async fn report(&mut self) {
        self.shared
            .metrics
            .webhook_backlog
            .get_or_create(&self.labels)
            .set(self.machine.outbox().pending.len() as i64);
        let previous = self.last_status.as_ref().or(self.hook.status.as_ref());
        let status = self.machine.status(&self.hook, previous, Now::current());
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        if write_status(&self.hooks, &self.labels.webhook, &status).await {
            self.last_status = Some(status);
        }
    }
}

pub(super) async fn write_status(
    hooks: &Api<ScimWebhook>,
    name: &str,
    status: &ScimWebhookStatus,
) -> bool {
    // Applied, so a field no longer set (`lastError` after a success) is removed.
    match reconcile::status::apply(hooks, name, manager::WEBHOOK, status).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(webhook = %name, error = %e, "cannot write webhook status");
            false
        }
    }
}
