//! How many bytes of bindings a ScimGroupBinding may write: a token bucket per
//! ScimGroupBinding (issue 27, defect 6). One member change rewrites the part holding that
//! member in every target namespace, up to 64 × 256 KiB; without a bound, whoever holds a SCIM
//! credential could toggle a member in and out and fill etcd's history toward its quota.
//!
//! Only writes that add a subject wait for the budget. A write that only removes subjects, or a
//! deletion, is never held back (access removal fails closed), but it is charged all the same
//! (the bucket may go into debt), so toggling in and out is bounded as a whole. While a write is
//! deferred the reconcile requeues; the next write carries the latest state, so toggles
//! coalesce into one write.
//!
//! Pure: the caller passes `now`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The budget of every ScimGroupBinding (flags `--group-binding-write-budget` and
/// `--group-binding-write-burst`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteBudget {
    /// Bytes per minute a ScimGroupBinding's bucket refills by; 0 turns the budget off.
    pub bytes_per_minute: u64,
    /// Bytes the bucket holds when full: what one change may write at once.
    pub burst: u64,
}

impl Default for WriteBudget {
    fn default() -> Self {
        Self {
            bytes_per_minute: 4 * 1024 * 1024,
            burst: 16 * 1024 * 1024,
        }
    }
}

impl WriteBudget {
    pub fn enabled(&self) -> bool {
        self.bytes_per_minute > 0
    }
}

/// One ScimGroupBinding's bucket.
#[derive(Clone, Debug)]
pub struct Bucket {
    /// Bytes available; negative after a removal or an oversized write (debt).
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn full(budget: &WriteBudget, now: Instant) -> Self {
        Self {
            tokens: budget.burst as f64,
            at: now,
        }
    }

    fn refill(&mut self, budget: &WriteBudget, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let rate = budget.bytes_per_minute as f64 / 60.0;
        self.tokens = (self.tokens + elapsed * rate).min(budget.burst as f64);
        self.at = now;
    }

    /// Takes `bytes` for a write that adds subjects, if the budget allows it; else how long
    /// until it does. A write larger than the burst goes through when the bucket is full (else
    /// it could never be done) and leaves the bucket in debt.
    pub fn take(&mut self, budget: &WriteBudget, now: Instant, bytes: u64) -> Result<(), Duration> {
        if !budget.enabled() {
            return Ok(());
        }
        self.refill(budget, now);
        let needed = bytes.min(budget.burst) as f64;
        if self.tokens >= needed {
            self.tokens -= bytes as f64;
            return Ok(());
        }
        let rate = budget.bytes_per_minute as f64 / 60.0;
        // At least a second: a wait rounded down to zero would spin.
        let wait = ((needed - self.tokens) / rate).ceil().max(1.0);
        Err(Duration::from_secs_f64(wait))
    }

    /// Charges `bytes` a write that only removes subjects has written: it is never refused.
    pub fn charge(&mut self, budget: &WriteBudget, now: Instant, bytes: u64) {
        if !budget.enabled() {
            return;
        }
        self.refill(budget, now);
        self.tokens -= bytes as f64;
    }

    /// Whether the bucket is full again (it can then be forgotten: a new one starts full).
    fn is_full(&self, budget: &WriteBudget, now: Instant) -> bool {
        let mut probe = self.clone();
        probe.refill(budget, now);
        probe.tokens >= budget.burst as f64
    }
}

/// The buckets of every ScimGroupBinding, by uid. Kept in memory: a restarted operator starts
/// with full buckets, which costs at most one burst per binding per restart.
#[derive(Debug, Default)]
pub struct Buckets {
    buckets: HashMap<String, Bucket>,
}

impl Buckets {
    pub fn get(&mut self, uid: &str, budget: &WriteBudget, now: Instant) -> &mut Bucket {
        // Full buckets are dropped, so deleted ScimGroupBindings leave nothing behind.
        self.buckets.retain(|_, b| !b.is_full(budget, now));
        self.buckets
            .entry(uid.to_string())
            .or_insert_with(|| Bucket::full(budget, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: WriteBudget = WriteBudget {
        bytes_per_minute: 60_000,
        burst: 10_000,
    };

    #[test]
    fn a_full_bucket_allows_the_burst_then_waits_for_the_refill() {
        let t0 = Instant::now();
        let mut b = Bucket::full(&BUDGET, t0);
        assert_eq!(b.take(&BUDGET, t0, 6_000), Ok(()));
        // 4,000 left; 6,000 more need 2,000 bytes at 1,000 bytes/s: 2 s.
        assert_eq!(b.take(&BUDGET, t0, 6_000), Err(Duration::from_secs(2)));
        assert!(b.take(&BUDGET, t0 + Duration::from_secs(1), 6_000).is_err());
        assert_eq!(b.take(&BUDGET, t0 + Duration::from_secs(2), 6_000), Ok(()));
    }

    #[test]
    fn removals_are_never_refused_but_delay_the_next_addition() {
        let t0 = Instant::now();
        let mut b = Bucket::full(&BUDGET, t0);
        assert_eq!(b.take(&BUDGET, t0, 10_000), Ok(()));
        b.charge(&BUDGET, t0, 10_000);
        b.charge(&BUDGET, t0, 10_000);
        // 20,000 in debt: an addition of 1,000 waits 21 s.
        assert_eq!(b.take(&BUDGET, t0, 1_000), Err(Duration::from_secs(21)));
    }

    #[test]
    fn a_write_larger_than_the_burst_goes_through_from_a_full_bucket() {
        let t0 = Instant::now();
        let mut b = Bucket::full(&BUDGET, t0);
        assert_eq!(b.take(&BUDGET, t0, 50_000), Ok(()));
        // 40,000 in debt, then up to the burst: 50 s.
        assert_eq!(b.take(&BUDGET, t0, 50_000), Err(Duration::from_secs(50)));
        assert_eq!(
            b.take(&BUDGET, t0 + Duration::from_secs(50), 50_000),
            Ok(())
        );
    }

    #[test]
    fn toggling_writes_at_most_the_burst_plus_the_rate() {
        // One change of 3,000 bytes toggled in and out every 100 ms for a minute.
        let t0 = Instant::now();
        let mut b = Bucket::full(&BUDGET, t0);
        let (mut written, mut last_removal) = (0u64, 0u64);
        let mut member = false;
        for step in 0..600u64 {
            let now = t0 + Duration::from_millis(100 * step);
            if member {
                b.charge(&BUDGET, now, 3_000);
                written += 3_000;
                last_removal = 3_000;
                member = false;
            } else if b.take(&BUDGET, now, 3_000).is_ok() {
                written += 3_000;
                member = true;
            }
        }
        assert!(written <= BUDGET.burst + BUDGET.bytes_per_minute + last_removal);
        assert!(written >= BUDGET.bytes_per_minute / 2, "{written}");
    }

    #[test]
    fn a_budget_of_zero_allows_everything() {
        let off = WriteBudget {
            bytes_per_minute: 0,
            burst: 0,
        };
        let t0 = Instant::now();
        let mut b = Bucket::full(&off, t0);
        for _ in 0..100 {
            assert_eq!(b.take(&off, t0, u64::MAX / 2), Ok(()));
        }
    }

    #[test]
    fn full_buckets_are_forgotten() {
        let t0 = Instant::now();
        let mut buckets = Buckets::default();
        buckets.get("a", &BUDGET, t0).charge(&BUDGET, t0, 5_000);
        buckets.get("b", &BUDGET, t0);
        assert_eq!(buckets.buckets.len(), 2);
        buckets.get("c", &BUDGET, t0 + Duration::from_secs(10));
        assert_eq!(buckets.buckets.len(), 1, "only the new one");
    }
}
