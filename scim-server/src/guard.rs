//! The deletion guard (`spec.deletionGuard`): whether a deletion or deactivation is applied or
//! held. Pure: [`Counters`] counts (each directory's cache data holds one, told the time),
//! [`Guard`] decides.
//!
//! Deletions and deactivations are counted from what the cache sees happen (its own writes and
//! the watch), so every replica counts those of the others too, a moment later.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use kube_scim_crds::DeletionGuardSpec;

/// A directory's guard settings, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard {
    /// Most deletions and deactivations applied within `window`; 0: no count limit.
    pub max_operations: u32,
    /// Most deletions and deactivations within `window`, in percent of the directory's users
    /// and groups.
    pub max_percent: Option<u32>,
    /// The counting window.
    pub window: Duration,
}

/// The longest window a directory may set (the CRD refuses longer ones); also how long the
/// cache remembers deletions and deactivations.
pub const MAX_WINDOW: Duration = Duration::from_secs(168 * 3600);

impl Default for Guard {
    fn default() -> Self {
        Guard::from_spec(&DeletionGuardSpec::default())
    }
}

impl Guard {
    /// From the directory's spec; an unreadable window counts as the default hour.
    pub fn from_spec(spec: &DeletionGuardSpec) -> Guard {
        let window = kube_scim_runtime::duration::parse(&spec.window)
            .unwrap_or(Duration::from_secs(3600))
            .min(MAX_WINDOW);
        Guard {
            max_operations: u32::try_from(spec.max_operations).unwrap_or(0),
            max_percent: spec
                .max_percent
                .and_then(|p| u32::try_from(p).ok())
                .filter(|p| (1..=100).contains(p)),
            window,
        }
    }

    /// Whether the next deletion or deactivation is held. `recent`: deletions and
    /// deactivations seen within the window; `held`: operations already held (while any is,
    /// every later one is held too, so that a release or discard decides them all);
    /// `population`: the directory's users and groups now.
    pub fn holds(&self, recent: usize, held: usize, population: usize) -> bool {
        if held > 0 {
            return true;
        }
        let next = recent as u64 + 1;
        if self.max_operations > 0 && next > u64::from(self.max_operations) {
            return true;
        }
        if let Some(percent) = self.max_percent {
            // The share of what the directory held before the window's removals.
            let base = (population + recent) as u64;
            if next * 100 > u64::from(percent) * base {
                return true;
            }
        }
        false
    }
}

/// Removals remembered per directory: beyond this many, every guard limit is long exceeded.
const MAX_REMOVALS: usize = 1_000_000;

/// One directory's figures the guard decides on.
#[derive(Debug, Default)]
pub struct Counters {
    /// When users and groups were deleted and users deactivated, oldest first (at most
    /// [`MAX_REMOVALS`], none older than [`MAX_WINDOW`]).
    removals: VecDeque<Instant>,
    /// Entries carrying a held operation.
    held: usize,
    /// Deletions and deactivations the guard let through that are being written.
    pending: usize,
}

impl Counters {
    /// Remembers a deletion or deactivation at `now`.
    pub fn removed(&mut self, now: Instant) {
        if self.removals.len() >= MAX_REMOVALS {
            self.removals.pop_front();
        }
        self.removals.push_back(now);
    }

    /// An entry carrying a held operation came (`true`) or went (`false`).
    pub fn count_held(&mut self, came: bool) {
        if came {
            self.held += 1;
        } else {
            self.held = self.held.saturating_sub(1);
        }
    }

    /// Entries carrying a held operation.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Deletions and deactivations within `window` before `now` (forgetting those older than
    /// any window).
    pub fn recent(&mut self, window: Duration, now: Instant) -> usize {
        while self
            .removals
            .front()
            .is_some_and(|t| now.duration_since(*t) > MAX_WINDOW)
        {
            self.removals.pop_front();
        }
        self.removals
            .iter()
            .rev()
            .take_while(|t| now.duration_since(**t) <= window)
            .count()
    }

    /// Whether `guard` holds the next deletion or deactivation in a directory of `population`
    /// users and groups; if it does not, that operation counts as pending until
    /// [`Counters::end_pending`].
    pub fn decide(&mut self, guard: &Guard, population: usize, now: Instant) -> bool {
        let recent = self.recent(guard.window, now) + self.pending;
        let holds = guard.holds(recent, self.held, population);
        if !holds {
            self.pending += 1;
        }
        holds
    }

    /// A pending deletion or deactivation was written (the cache now counts it) or failed.
    pub fn end_pending(&mut self) {
        self.pending = self.pending.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(max_operations: u32, max_percent: Option<u32>) -> Guard {
        Guard {
            max_operations,
            max_percent,
            window: Duration::from_secs(3600),
        }
    }

    #[test]
    fn the_operation_past_the_limit_is_held() {
        let g = guard(3, None);
        assert!(!g.holds(0, 0, 100));
        assert!(!g.holds(2, 0, 100));
        assert!(g.holds(3, 0, 100));
    }

    #[test]
    fn once_something_is_held_everything_is() {
        assert!(guard(500, None).holds(0, 1, 100));
    }

    #[test]
    fn zero_and_no_percentage_turn_the_guard_off() {
        assert!(!guard(0, None).holds(1_000_000, 0, 10));
    }

    #[test]
    fn the_percentage_counts_against_the_directory_before_the_window() {
        let g = guard(0, Some(10));
        // 100 objects before the window: the 10th removal is 10 %, the 11th is held.
        assert!(!g.holds(9, 0, 91));
        assert!(g.holds(10, 0, 90));
        // An empty directory holds nothing it could lose, but its first removal is 100 %.
        assert!(g.holds(0, 0, 0));
    }

    #[test]
    fn the_window_comes_from_the_spec() {
        let spec = DeletionGuardSpec {
            window: "90m".into(),
            ..Default::default()
        };
        assert_eq!(Guard::from_spec(&spec).window, Duration::from_secs(5400));
        assert_eq!(Guard::default().max_operations, 500);
    }

    #[test]
    fn counters_count_the_window_pending_and_held_operations() {
        let start = Instant::now();
        let hour = Duration::from_secs(3600);
        let mut c = Counters::default();
        c.removed(start);
        c.removed(start + Duration::from_secs(10));
        assert_eq!(c.recent(hour, start + Duration::from_secs(20)), 2);
        // Outside the window, and beyond the longest window forgotten.
        assert_eq!(c.recent(hour, start + hour + Duration::from_secs(5)), 1);
        assert_eq!(
            c.recent(hour, start + MAX_WINDOW + Duration::from_secs(11)),
            0
        );
        // Let through: pending until written, and counted meanwhile.
        let g = guard(2, None);
        let now = start + MAX_WINDOW + Duration::from_secs(12);
        assert!(!c.decide(&g, 100, now));
        assert!(!c.decide(&g, 100, now));
        assert!(c.decide(&g, 100, now), "two pending reach the limit");
        c.end_pending();
        assert!(!c.decide(&g, 100, now));
        // Something held holds everything after it.
        c.end_pending();
        c.end_pending();
        c.count_held(true);
        assert_eq!(c.held(), 1);
        assert!(c.decide(&g, 100, now));
        c.count_held(false);
        assert!(!c.decide(&g, 100, now));
    }
}
