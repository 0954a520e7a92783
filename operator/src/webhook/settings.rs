//! A ScimWebhook's spec, checked and with its defaults, and the batching rule.

use std::collections::HashSet;
use std::time::Duration;

use kube_scim_crds::ScimWebhook;

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
