//! When a directory's counts are refreshed: a throttle per directory that cannot starve.
//!
//! Every ScimUser / ScimGroup change marks its directory *pending*. A pending directory is
//! refreshed
//!
//! - at once if its counts were not refreshed within the last `min_interval` (the first change
//!   after a quiet spell shows immediately, e.g. one user provisioned on demand);
//! - otherwise once changes have paused for `min_interval`, or `max_delay` after its first
//!   pending change, whichever comes first;
//! - and never sooner than `min_interval` after its previous refresh.
//!
//! So a directory under steady provisioning is refreshed every `max_delay`, the end of a burst
//! shows `min_interval` after its last change, and no directory costs more than one status
//! write per `min_interval`, whatever the rate of user writes. Unlike a renewing debounce, the
//! deadline `first pending change + max_delay` never moves, so a busy directory is never starved.
//!
//! [`Throttle`] is the pure bookkeeping; [`drive`] runs it over a stream of changes.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use futures::{Future, Stream, StreamExt};
use tokio::time::Instant;

/// The moment a pending directory is due.
///
/// `last_refresh`: its previous refresh, if recent enough to matter; `first` and `last`: its
/// first and latest change since then.
pub fn due_at(
    last_refresh: Option<Instant>,
    first: Instant,
    last: Instant,
    min_interval: Duration,
    max_delay: Duration,
) -> Instant {
    match last_refresh {
        Some(refreshed) if first < refreshed + min_interval => {
            let settled = last + min_interval;
            let latest = first + max_delay.max(min_interval);
            (refreshed + min_interval).max(settled.min(latest))
        }
        // Quiet before this change: at once.
        _ => first,
    }
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    first: Instant,
    last: Instant,
}

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    last_refresh: Option<Instant>,
    pending: Option<Pending>,
}

/// Pending changes and last refreshes, per key (a directory).
#[derive(Debug)]
pub struct Throttle<K> {
    min_interval: Duration,
    max_delay: Duration,
    entries: HashMap<K, Entry>,
}

impl<K: Eq + Hash + Clone> Throttle<K> {
    /// A throttle refreshing each key at most once per `min_interval` and at the latest
    /// `max_delay` (raised to `min_interval` if lower) after its first pending change.
    pub fn new(min_interval: Duration, max_delay: Duration) -> Self {
        Self {
            min_interval,
            max_delay: max_delay.max(min_interval),
            entries: HashMap::new(),
        }
    }

    /// `key` changed at `now`.
    pub fn change(&mut self, key: K, now: Instant) {
        let entry = self.entries.entry(key).or_default();
        match &mut entry.pending {
            Some(pending) => pending.last = pending.last.max(now),
            None => {
                entry.pending = Some(Pending {
                    first: now,
                    last: now,
                })
            }
        }
    }

    /// When `key` is due, if it has pending changes.
    pub fn due(&self, key: &K) -> Option<Instant> {
        let entry = self.entries.get(key)?;
        let pending = entry.pending?;
        Some(due_at(
            entry.last_refresh,
            pending.first,
            pending.last,
            self.min_interval,
            self.max_delay,
        ))
    }

    /// The earliest moment any key is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries.keys().filter_map(|k| self.due(k)).min()
    }

    /// Whether any change waits.
    pub fn is_pending(&self) -> bool {
        self.entries.values().any(|e| e.pending.is_some())
    }

    /// The keys due at `now`, recorded as refreshed at `now`. Keys refreshed too long ago to
    /// matter and with nothing pending are forgotten.
    pub fn take_due(&mut self, now: Instant) -> Vec<K> {
        let due: Vec<K> = self
            .entries
            .keys()
            .filter(|k| self.due(k).is_some_and(|at| at <= now))
            .cloned()
            .collect();
        for key in &due {
            if let Some(entry) = self.entries.get_mut(key) {
                entry.pending = None;
                entry.last_refresh = Some(now);
            }
        }
        let min_interval = self.min_interval;
        self.entries.retain(|_, e| {
            e.pending.is_some() || e.last_refresh.is_some_and(|r| r + min_interval > now)
        });
        due
    }

    /// Number of keys remembered (pending, or refreshed within `min_interval`).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Runs `throttle` until `changes` ends: every item of `changes` marks its key pending, and each
/// key is refreshed by `refresh` when due. Nothing is refreshed before `ready` resolves (the
/// caches to count from are complete); the keys it resolves to are then marked pending too.
/// A refresh that returns `false` (it failed) is retried like a new change.
///
/// Changes keep being consumed between refreshes; a refresh itself is awaited in line, so the
/// refreshes of one scope never overlap.
pub async fn drive<K, S, R, F, Fut>(mut throttle: Throttle<K>, changes: S, ready: R, mut refresh: F)
where
    K: Eq + Hash + Clone,
    S: Stream<Item = K>,
    R: Future<Output = Vec<K>>,
    F: FnMut(K) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut changes = std::pin::pin!(changes);
    let mut ready = std::pin::pin!(futures::FutureExt::fuse(ready));
    let mut is_ready = false;
    loop {
        let next = throttle.next_due().filter(|_| is_ready);
        tokio::select! {
            change = changes.next() => match change {
                Some(key) => throttle.change(key, Instant::now()),
                None => return,
            },
            keys = &mut ready, if !is_ready => {
                is_ready = true;
                let now = Instant::now();
                for key in keys {
                    throttle.change(key, now);
                }
            }
            () = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                for key in throttle.take_due(now) {
                    if !refresh(key.clone()).await {
                        throttle.change(key, Instant::now());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    const N: Duration = Duration::from_secs(5);
    const M: Duration = Duration::from_secs(30);

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn the_decision() {
        let t0 = Instant::now();
        // Never refreshed, or not within N: at once.
        assert_eq!(due_at(None, t0 + s(1.0), t0 + s(3.0), N, M), t0 + s(1.0));
        assert_eq!(due_at(Some(t0), t0 + N, t0 + N, N, M), t0 + N);
        // Refreshed recently: when changes pause for N ...
        assert_eq!(
            due_at(Some(t0), t0 + s(1.0), t0 + s(2.0), N, M),
            t0 + s(7.0)
        );
        // ... but never sooner than N after the refresh ...
        assert_eq!(
            due_at(Some(t0), t0 + s(0.1), t0 + s(0.1), N, M),
            t0 + s(5.1)
        );
        assert_eq!(
            due_at(Some(t0), t0, t0, N, M),
            t0 + N,
            "a change at the refresh itself"
        );
        // ... and at the latest M after the first pending change, however recent the last.
        assert_eq!(
            due_at(Some(t0), t0 + s(1.0), t0 + s(40.0), N, M),
            t0 + s(31.0)
        );
        // M below N acts as N.
        assert_eq!(
            due_at(Some(t0), t0 + s(1.0), t0 + s(40.0), N, s(1.0)),
            t0 + s(6.0)
        );
    }

    #[test]
    fn keys_are_independent_and_forgotten_when_idle() {
        let t0 = Instant::now();
        let mut throttle = Throttle::new(N, M);
        assert_eq!(throttle.next_due(), None);
        throttle.change("a", t0);
        throttle.change("b", t0 + s(1.0));
        assert_eq!(throttle.next_due(), Some(t0));
        assert_eq!(throttle.take_due(t0), vec!["a"]);
        assert_eq!(throttle.due(&"b"), Some(t0 + s(1.0)));
        throttle.change("a", t0 + s(2.0));
        assert_eq!(throttle.due(&"a"), Some(t0 + s(7.0)));
        let mut due = throttle.take_due(t0 + s(7.0));
        due.sort();
        assert_eq!(due, vec!["a", "b"]);
        assert!(!throttle.is_pending());
        assert_eq!(throttle.len(), 2);
        assert!(throttle.take_due(t0 + s(12.0)).is_empty());
        assert!(throttle.is_empty(), "nothing kept once it cannot matter");
    }

    /// What [`drive`] refreshed, and when (seconds since the start).
    type Log = Arc<Mutex<Vec<(&'static str, f64)>>>;

    /// Runs [`drive`] over `schedule` (key, seconds since the start) on paused time until
    /// `until` seconds, refreshing in `refresh_takes`; returns the refreshes.
    async fn simulate(
        schedule: Vec<(&'static str, f64)>,
        ready_after: f64,
        refresh_takes: f64,
        fail_first: Option<&'static str>,
        until: f64,
    ) -> Vec<(&'static str, f64)> {
        let start = Instant::now();
        let (tx, rx) = futures::channel::mpsc::unbounded();
        tokio::spawn(async move {
            for (key, at) in schedule {
                tokio::time::sleep_until(start + s(at)).await;
                let _ = tx.unbounded_send(key);
            }
            // Keep the stream open: in the operator it never ends.
            tokio::time::sleep_until(start + s(until + 1.0)).await;
            drop(tx);
        });
        let log: Log = Arc::default();
        let recorded = log.clone();
        let failed = Arc::new(Mutex::new(false));
        let ready = async move {
            tokio::time::sleep_until(start + s(ready_after)).await;
            vec!["swept"]
        };
        let run = drive(Throttle::new(N, M), rx, ready, move |key| {
            let log = recorded.clone();
            let failed = failed.clone();
            async move {
                tokio::time::sleep(s(refresh_takes)).await;
                let mut failed = failed.lock().unwrap();
                if fail_first == Some(key) && !*failed {
                    *failed = true;
                    return false;
                }
                log.lock()
                    .unwrap()
                    .push((key, (Instant::now() - start).as_secs_f64()));
                true
            }
        });
        let _ = tokio::time::timeout(s(until), run).await;
        Arc::try_unwrap(log).unwrap().into_inner().unwrap()
    }

    fn times(log: &[(&str, f64)], key: &str) -> Vec<f64> {
        log.iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, t)| *t)
            .collect()
    }

    fn about(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() < 0.1
    }

    #[tokio::test(start_paused = true)]
    async fn steady_provisioning_is_refreshed_every_max_delay_and_settles_after_min_interval() {
        // "busy": 25 changes/s for 100 s (2,500 changes); "quiet": one change at 10 s and one
        // at 50 s; the refresh itself takes 20 ms.
        let mut schedule: Vec<(&str, f64)> = (0..2500).map(|i| ("busy", i as f64 * 0.04)).collect();
        schedule.push(("quiet", 10.0));
        schedule.push(("quiet", 50.0));
        schedule.sort_by(|a, b| a.1.total_cmp(&b.1));
        let log = simulate(schedule, 0.0, 0.02, Some("swept"), 130.0).await;

        // The first change shows at once, then every M while changes keep arriving, then N
        // after the last one (99.96 s): 5 status writes instead of 2,500.
        let busy = times(&log, "busy");
        assert_eq!(busy.len(), 5, "{log:?}");
        assert!(about(busy[0], 0.0), "{log:?}");
        for pair in busy[..4].windows(2) {
            assert!(about(pair[1] - pair[0], 30.0), "{log:?}");
        }
        assert!(about(busy[4], 99.96 + 5.0), "{log:?}");
        // A lone change never waits: refreshed as it arrives.
        let quiet = times(&log, "quiet");
        assert!(
            quiet.len() == 2 && about(quiet[0], 10.0) && about(quiet[1], 50.0),
            "{log:?}"
        );
        // The key swept at readiness, whose first refresh failed, is retried N later.
        let swept = times(&log, "swept");
        assert!(swept.len() == 1 && about(swept[0], 5.0), "{log:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn bursts_show_min_interval_after_they_end_and_nothing_runs_before_ready() {
        // Bursts of 10 changes in 1 s, every 3 s, from 0 to 11 s; the caches are ready at 2 s.
        let schedule: Vec<(&str, f64)> = (0..4)
            .flat_map(|b| (0..10).map(move |i| ("dir", b as f64 * 3.0 + i as f64 * 0.1)))
            .collect();
        let log = simulate(schedule, 2.0, 0.0, None, 60.0).await;
        let refreshed = times(&log, "dir");
        // At 2 s (ready; changes pending since 0 s), then when the changes pause for N:
        // the last one is at 9.9 s, so 14.9 s. Gaps between bursts (2 s) are shorter than N.
        assert!(
            refreshed.len() == 2 && about(refreshed[0], 2.0) && about(refreshed[1], 14.9),
            "{log:?}"
        );
        let swept = times(&log, "swept");
        assert!(swept.len() == 1 && about(swept[0], 2.0), "{log:?}");
    }
}
