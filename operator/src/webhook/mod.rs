//! Signed webhooks (ScimWebhook): one delivery loop per webhook, run by the leader. Design and
//! guarantees: docs/webhooks.md.
//!
//! - [`awaiting_groups`]: users whose change waits for a group the group watch has not shown;
//! - [`events`]: pure derivation of WorkOS Directory Sync events from object changes;
//! - [`outbox`]: the durable delivery state (one Secret per webhook);
//! - [`signing`]: Standard Webhooks signatures;
//! - [`target`]: which addresses may be reached (SSRF protection);
//! - [`sender`]: one request and the retry policy;
//! - [`settings`]: a webhook's spec, checked, with defaults;
//! - [`machine`]: the delivery state of one webhook, without I/O (what is derived, stored, sent);
//! - [`delivery`]: the loop of one webhook, the I/O around its machine.

pub mod awaiting_groups;
pub mod delivery;
pub mod events;
pub mod machine;
pub mod outbox;
pub mod sender;
pub mod settings;
pub mod signing;
pub mod target;

#[cfg(test)]
mod failure_tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Future, StreamExt};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use kube_scim_crds::ScimWebhook;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// What every delivery loop shares.
pub struct Shared {
    pub client: Client,
    pub policy: Arc<target::Policy>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub checkpoint_interval: Duration,
    /// How long signing keys read from a Secret are used before it is read again.
    pub key_refresh_interval: Duration,
}

impl Shared {
    pub fn new(
        client: Client,
        policy: target::Policy,
        metrics: Arc<Metrics>,
        identity: &str,
        checkpoint_interval: Duration,
        key_refresh_interval: Duration,
    ) -> Shared {
        let reporter = Reporter {
            controller: crate::directory::MANAGER.into(),
            instance: Some(identity.to_string()),
        };
        Shared {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            policy: Arc::new(policy),
            metrics,
            checkpoint_interval,
            key_refresh_interval,
        }
    }
}

/// Runs one delivery loop per ScimWebhook in `namespace` (None: all) until `stop`; a loop is
/// restarted when its webhook's generation changes and stopped when the webhook is deleted.
pub async fn run(shared: Arc<Shared>, namespace: Option<String>, stop: impl Future<Output = ()>) {
    let api: Api<ScimWebhook> = match &namespace {
        Some(ns) => Api::namespaced(shared.client.clone(), ns),
        None => Api::all(shared.client.clone()),
    };
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut loops: HashMap<String, (Option<i64>, JoinHandle<()>)> = HashMap::new();
    let mut listed: Option<Vec<String>> = None;
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            _ = &mut stop => break,
            event = stream.next() => event,
        };
        let Some(event) = event else { break };
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "watch of ScimWebhooks failed; retrying");
                continue;
            }
        };
        match event {
            watcher::Event::Init => listed = Some(Vec::new()),
            watcher::Event::InitApply(hook) | watcher::Event::Apply(hook) => {
                let Some(uid) = hook.uid() else { continue };
                if let Some(seen) = listed.as_mut() {
                    seen.push(uid.clone());
                }
                let generation = hook.metadata.generation;
                if hook.metadata.deletion_timestamp.is_some() {
                    if let Some((_, task)) = loops.remove(&uid) {
                        task.abort();
                    }
                    continue;
                }
                if loops.get(&uid).is_some_and(|(g, _)| *g == generation) {
                    continue;
                }
                if let Some((_, task)) = loops.remove(&uid) {
                    task.abort();
                }
                let task = tokio::spawn(delivery::run(shared.clone(), hook));
                loops.insert(uid, (generation, task));
            }
            watcher::Event::Delete(hook) => {
                if let Some((_, task)) = hook.uid().and_then(|uid| loops.remove(&uid)) {
                    task.abort();
                }
            }
            watcher::Event::InitDone => {
                if let Some(seen) = listed.take() {
                    loops.retain(|uid, (_, task)| {
                        let keep = seen.contains(uid);
                        if !keep {
                            task.abort();
                        }
                        keep
                    });
                }
            }
        }
    }
    for (_, (_, task)) in loops {
        task.abort();
    }
}
