//! Kubernetes Events on a ScimDirectory about what its identity provider runs into, so that
//! `kubectl describe scimdirectory` explains it: bursts of authentication failures (a rotated
//! token not yet pasted into the identity provider) and rejected requests (4xx answers).
//!
//! Requests only add to per-directory tallies; a task publishes at most one event per kind and
//! directory per interval (`--event-interval`), so a flood of bad requests costs the apiserver
//! nothing more than a quiet minute does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube_scim_crds::ScimDirectory;

/// Authentication failures within one interval that make a burst worth an event (a single
/// stray request, e.g. a scanner, is only counted in the metrics).
pub const AUTH_FAILURE_BURST: u64 = 3;

/// Rejections listed in one event, most frequent first.
const LISTED_REJECTIONS: usize = 5;

/// What happened to one directory since the last publication.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// The directory's uid (events reference the object itself).
    pub uid: String,
    /// Requests that failed authentication (answered 401, or 429 past the failure limits).
    pub auth_failures: u64,
    /// Of those, the ones past the failure limits (answered 429 after a delay).
    pub auth_throttled: u64,
    /// Other 4xx answers by (status, operation).
    pub rejected: BTreeMap<(u16, String), u64>,
}

/// The events a tally calls for: `(type, reason, note)`.
pub fn notes(tally: &Tally) -> Vec<(EventType, &'static str, String)> {
    let mut out = Vec::new();
    if tally.auth_failures >= AUTH_FAILURE_BURST {
        out.push((
            EventType::Warning,
            "AuthenticationFailed",
            format!(
                "{} requests with a missing or invalid bearer token (answered 401{}). If the token was rotated, paste the new one (see status.tokenSecretName) into the identity provider's Secret Token field",
                tally.auth_failures,
                if tally.auth_throttled > 0 {
                    format!(
                        "; {} past the failed-authentication limits were answered 429 after a delay: a client may be guessing tokens",
                        tally.auth_throttled
                    )
                } else {
                    String::new()
                }
            ),
        ));
    }
    if !tally.rejected.is_empty() {
        let total: u64 = tally.rejected.values().sum();
        let mut by_count: Vec<_> = tally.rejected.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let listed: Vec<String> = by_count
            .iter()
            .take(LISTED_REJECTIONS)
            .map(|((status, op), n)| format!("{n}x {status} {op}"))
            .collect();
        out.push((
            EventType::Warning,
            "RequestsRejected",
            format!(
                "{total} requests rejected: {}. The server's log has one line per request with its request id (x-request-id), which the identity provider's provisioning log shows too",
                listed.join(", ")
            ),
        ));
    }
    out
}

/// The tallies of every directory, and the recorder that publishes them.
pub struct DirectoryEvents {
    recorder: Option<Recorder>,
    tallies: Mutex<HashMap<(String, String), Tally>>,
}

impl DirectoryEvents {
    /// Publishes through `client` (none: only tallies, as in unit tests).
    pub fn new(client: Option<kube::Client>, instance: String) -> Self {
        let recorder = client.map(|c| {
            Recorder::new(
                c,
                Reporter {
                    controller: "kube-scim-server".into(),
                    instance: Some(instance),
                },
            )
        });
        DirectoryEvents {
            recorder,
            tallies: Mutex::new(HashMap::new()),
        }
    }

    /// Counts the answer `status` to `operation` on directory `ns/name` (uid `uid`).
    pub fn note(&self, ns: &str, name: &str, uid: &str, status: u16, operation: &str) {
        if !(400..500).contains(&status) {
            return;
        }
        let mut tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        let tally = tallies
            .entry((ns.to_string(), name.to_string()))
            .or_default();
        tally.uid = uid.to_string();
        if status == 401 {
            tally.auth_failures += 1;
        } else {
            *tally
                .rejected
                .entry((status, operation.to_string()))
                .or_default() += 1;
        }
    }

    /// Counts a failed authentication on directory `ns/name` (`throttled`: past the limits).
    pub fn note_auth_failure(&self, ns: &str, name: &str, uid: &str, throttled: bool) {
        let mut tallies = self.tallies.lock().unwrap_or_else(|e| e.into_inner());
        let tally = tallies
            .entry((ns.to_string(), name.to_string()))
            .or_default();
        tally.uid = uid.to_string();
        tally.auth_failures += 1;
        tally.auth_throttled += u64::from(throttled);
    }

    /// Takes every tally.
    pub fn drain(&self) -> HashMap<(String, String), Tally> {
        std::mem::take(&mut *self.tallies.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Publishes the events of the tallies gathered since the last call.
    pub async fn publish(&self) {
        let Some(recorder) = &self.recorder else {
            self.drain();
            return;
        };
        for ((ns, name), tally) in self.drain() {
            let reference = ObjectReference {
                api_version: Some(ScimDirectory::api_version(&()).into_owned()),
                kind: Some(ScimDirectory::kind(&()).into_owned()),
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                uid: Some(tally.uid.clone()),
                ..ObjectReference::default()
            };
            for (type_, reason, note) in notes(&tally) {
                let event = Event {
                    type_,
                    reason: reason.into(),
                    note: Some(note.chars().take(1000).collect()),
                    action: "Serve".into(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&event, &reference).await {
                    tracing::warn!(namespace = %ns, directory = %name, error = %e, reason, "could not publish an event");
                }
            }
        }
    }

    /// Publishes every `interval`, forever.
    pub async fn publish_every(self: std::sync::Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.publish().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_401s_and_rejections_make_one_event_each() {
        let events = DirectoryEvents::new(None, "test".into());
        for _ in 0..AUTH_FAILURE_BURST {
            events.note("ns", "d", "uid", 401, "GET /Users");
        }
        events.note("ns", "d", "uid", 409, "POST /Users");
        events.note("ns", "d", "uid", 409, "POST /Users");
        events.note("ns", "d", "uid", 400, "PATCH /Users/{id}");
        events.note("ns", "d", "uid", 200, "GET /Users");
        events.note("ns", "d", "uid", 503, "POST /Users");
        let tallies = events.drain();
        let notes = notes(&tallies[&("ns".to_string(), "d".to_string())]);
        assert_eq!(notes.len(), 2);
        assert_eq!(notes[0].1, "AuthenticationFailed");
        assert!(notes[0].2.starts_with("3 requests"), "{}", notes[0].2);
        assert_eq!(notes[1].1, "RequestsRejected");
        assert!(
            notes[1]
                .2
                .starts_with("3 requests rejected: 2x 409 POST /Users, 1x 400 PATCH /Users/{id}"),
            "{}",
            notes[1].2
        );
        assert!(events.drain().is_empty(), "a tally is published once");
    }

    #[test]
    fn throttled_failures_are_told_in_the_auth_event() {
        let events = DirectoryEvents::new(None, "test".into());
        for i in 0..5 {
            events.note_auth_failure("ns", "d", "uid", i >= 3);
        }
        let tallies = events.drain();
        let notes = notes(&tallies[&("ns".to_string(), "d".to_string())]);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].2.starts_with("5 requests"), "{}", notes[0].2);
        assert!(
            notes[0]
                .2
                .contains("2 past the failed-authentication limits"),
            "{}",
            notes[0].2
        );
    }

    #[test]
    fn a_single_401_is_no_burst() {
        let tally = Tally {
            auth_failures: 1,
            ..Tally::default()
        };
        assert!(notes(&tally).is_empty());
    }
}
