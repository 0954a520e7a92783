//! Which failed apiserver calls are worth another attempt, and when: the policy of the store's
//! retries (`kube_store.rs`), free of I/O.
//!
//! Why not kube-rs's own `RetryPolicy` (the `RetryLayer` every `Client` built from a `Config`
//! has by default): it retries 429, 503 and 504 up to 15 times with up to 1000 s between
//! attempts, knows nothing of the SCIM request's deadline (a request would end in the
//! middleware's timeout with the cause never logged), retries a create (POST) after a 504 that
//! may have stored it (the retry then answers AlreadyExists, a SCIM 409 for the client's own
//! user), does not retry a 500 "etcdserver: request timed out" or a lost connection, and
//! neither logs nor counts what it retries. The store therefore turns it off on its own client
//! and retries here, per verb, within the request's deadline.

use std::time::Duration;

/// What a failed call says about trying it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The answer stands (not found, conflict, invalid, forbidden, any other 4xx, a 500 that is
    /// not a storage timeout, a response that cannot be parsed).
    Final,
    /// Refused before anything was done (429 from API Priority and Fairness or the in-flight
    /// limit; no connection could be made): safe to send again, whatever the verb.
    NotApplied {
        /// The server's Retry-After, when it gave one.
        hint: Option<Duration>,
    },
    /// Failed in a way that may have taken effect (503, 504, an etcd timeout, a connection lost
    /// after the request was sent): sent again, a create may find its own object and a delete
    /// may find nothing; the store reconciles both.
    MaybeApplied {
        /// The server's Retry-After, when it gave one.
        hint: Option<Duration>,
    },
}

impl Failure {
    /// Whether another attempt may help.
    pub fn retryable(self) -> bool {
        !matches!(self, Failure::Final)
    }

    fn hint(self) -> Option<Duration> {
        match self {
            Failure::Final => None,
            Failure::NotApplied { hint } | Failure::MaybeApplied { hint } => hint,
        }
    }

    /// A bounded label value for the retry metric.
    pub fn cause(e: &kube::Error) -> &'static str {
        match e {
            kube::Error::Api(s) => match s.code {
                429 => "429",
                500 => "500",
                503 => "503",
                504 => "504",
                _ => "timeout",
            },
            _ => "transport",
        }
    }
}

/// Messages of a 500 that mean etcd did not answer in time (the write may still be applied);
/// the apiserver passes them through as an InternalError.
const ETCD_TIMEOUTS: &[&str] = &[
    "etcdserver: request timed out",
    "etcdserver: leader changed",
    "etcdserver: too many requests",
    "context deadline exceeded",
];

/// Classifies a failed call.
pub fn classify(e: &kube::Error) -> Failure {
    match e {
        kube::Error::Api(s) => {
            let hint = s
                .details
                .as_ref()
                .map(|d| d.retry_after_seconds)
                .filter(|s| *s > 0)
                .map(|s| Duration::from_secs(u64::from(s)));
            match (s.code, s.reason.as_str()) {
                (429, _) | (_, "TooManyRequests") => Failure::NotApplied { hint },
                (503 | 504, _) | (_, "ServerTimeout" | "Timeout" | "ServiceUnavailable") => {
                    Failure::MaybeApplied { hint }
                }
                (500, _) if ETCD_TIMEOUTS.iter().any(|m| s.message.contains(m)) => {
                    Failure::MaybeApplied { hint }
                }
                _ => Failure::Final,
            }
        }
        kube::Error::HyperError(_) => Failure::MaybeApplied { hint: None },
        kube::Error::Service(e) => transport(e.as_ref()),
        _ => Failure::Final,
    }
}

/// A failure of the client's service stack: a connection that could not be made was never
/// sent; one lost later (reset, closed before the answer) may have been applied; anything that
/// is not a transport failure (e.g. credentials that cannot be loaded) is final.
fn transport(e: &(dyn std::error::Error + 'static)) -> Failure {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut seen_transport = false;
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper_util::client::legacy::Error>() {
            if h.is_connect() {
                return Failure::NotApplied { hint: None };
            }
            seen_transport = true;
        } else if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match io.kind() {
                ConnectionRefused | NotConnected | AddrNotAvailable => {
                    return Failure::NotApplied { hint: None };
                }
                _ => seen_transport = true,
            }
        } else if err.is::<hyper::Error>() {
            seen_transport = true;
        }
        cur = err.source();
    }
    if seen_transport {
        Failure::MaybeApplied { hint: None }
    } else {
        Failure::Final
    }
}

/// How long to wait between attempts, and for how long to keep trying.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay before the second attempt (before jitter).
    pub first: Duration,
    /// Longest delay of our own between attempts (before jitter).
    pub cap: Duration,
    /// Longest Retry-After honoured: a longer one ends the retries (the request cannot wait).
    pub max_hint: Duration,
    /// Attempts at most, whatever the time left.
    pub max_attempts: u32,
    /// Time an attempt and the rest of the request need after it: no attempt starts later
    /// than this before the deadline, so the request answers with the apiserver's failure
    /// rather than running into its own timeout.
    pub reserve: Duration,
    /// Time to keep trying for work outside a request (no deadline given).
    pub background_budget: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(50),
            cap: Duration::from_secs(2),
            max_hint: Duration::from_secs(5),
            max_attempts: 10,
            reserve: Duration::from_millis(500),
            background_budget: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The wait after failed attempt number `attempt` (1 for the first), or `None` when no
    /// further attempt should be made: the failure is final, the attempts are used up, or the
    /// next attempt would start too close to `remaining` (time to the deadline). `jitter` in
    /// `[0, 1)` spreads the waits of concurrent callers ("equal jitter": half the exponential
    /// delay fixed, half random), so a fan-out that failed together does not retry together.
    pub fn next_delay(
        &self,
        failure: Failure,
        attempt: u32,
        remaining: Duration,
        jitter: f64,
    ) -> Option<Duration> {
        if !failure.retryable() || attempt >= self.max_attempts {
            return None;
        }
        let exp = self
            .first
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.cap);
        let own = exp / 2 + exp.mul_f64(jitter.clamp(0.0, 1.0) / 2.0);
        let delay = match failure.hint() {
            Some(h) if h > self.max_hint => return None,
            Some(h) => h.max(own),
            None => own,
        };
        (delay + self.reserve <= remaining).then_some(delay)
    }
}

/// A number in `[0, 1)` that differs between calls: jitter needs no cryptographic randomness,
/// and std's randomly keyed hasher saves a dependency (tower's `HasherRng` does the same).
pub fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(Status {
            code,
            reason: reason.into(),
            message: message.into(),
            ..Status::default()
        }))
    }

    #[test]
    fn throttling_timeouts_and_unavailability_are_retried_the_rest_is_final() {
        assert_eq!(
            classify(&api(429, "TooManyRequests", "too many requests")),
            Failure::NotApplied { hint: None }
        );
        // APF answers 429 in plain text; kube-rs keeps only the code.
        assert_eq!(
            classify(&api(
                429,
                "Failed to parse error data",
                "Too many requests, please try again later."
            )),
            Failure::NotApplied { hint: None }
        );
        for e in [
            api(500, "InternalError", "etcdserver: request timed out"),
            api(
                500,
                "InternalError",
                "rpc error: code = Unavailable desc = etcdserver: leader changed",
            ),
            api(503, "ServiceUnavailable", "apiserver is shutting down"),
            api(
                504,
                "Timeout",
                "request did not complete within requested timeout",
            ),
            api(
                500,
                "ServerTimeout",
                "the server cannot complete the requested operation",
            ),
        ] {
            assert_eq!(classify(&e), Failure::MaybeApplied { hint: None }, "{e}");
        }
        for e in [
            api(500, "InternalError", "admission webhook panicked"),
            api(404, "NotFound", "not found"),
            api(409, "Conflict", "the object has been modified"),
            api(409, "AlreadyExists", "already exists"),
            api(422, "Invalid", "spec: invalid"),
            api(403, "Forbidden", "forbidden"),
            api(400, "BadRequest", "bad"),
        ] {
            assert_eq!(classify(&e), Failure::Final, "{e}");
        }
    }

    #[test]
    fn the_retry_after_of_a_status_is_the_hint() {
        let s: Status = serde_json::from_value(serde_json::json!({
            "code": 429, "reason": "TooManyRequests", "details": {"retryAfterSeconds": 2}
        }))
        .unwrap();
        assert_eq!(
            classify(&kube::Error::Api(Box::new(s))),
            Failure::NotApplied {
                hint: Some(Duration::from_secs(2))
            }
        );
    }

    #[test]
    fn a_refused_connection_was_never_sent_a_reset_one_may_have_been() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            classify(&kube::Error::Service(Box::new(refused))),
            Failure::NotApplied { hint: None }
        );
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(
            classify(&kube::Error::Service(Box::new(reset))),
            Failure::MaybeApplied { hint: None }
        );
        // Not a transport failure (e.g. a token file that cannot be read): final.
        assert_eq!(
            classify(&kube::Error::Service("no credentials".into())),
            Failure::Final
        );
        let parse = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        assert_eq!(classify(&kube::Error::SerdeError(parse)), Failure::Final);
    }

    #[test]
    fn delays_grow_with_jitter_honour_retry_after_and_stop_before_the_deadline() {
        let b = Backoff::default();
        let retry = Failure::MaybeApplied { hint: None };
        let long = Duration::from_secs(30);
        assert_eq!(
            b.next_delay(retry, 1, long, 0.0),
            Some(Duration::from_millis(25))
        );
        let most = b.next_delay(retry, 1, long, 0.999_999).unwrap();
        assert!(most > Duration::from_millis(49) && most <= Duration::from_millis(50));
        assert_eq!(
            b.next_delay(retry, 3, long, 0.0),
            Some(Duration::from_millis(100))
        );
        // Capped.
        assert_eq!(
            b.next_delay(retry, 9, long, 0.0),
            Some(Duration::from_secs(1))
        );
        // Attempts are bounded in count.
        assert_eq!(b.next_delay(retry, b.max_attempts, long, 0.0), None);
        // Final answers are not retried.
        assert_eq!(b.next_delay(Failure::Final, 1, long, 0.0), None);
        // A Retry-After is honoured, a too long one ends the retries.
        let hinted = |s| Failure::NotApplied {
            hint: Some(Duration::from_secs(s)),
        };
        assert_eq!(
            b.next_delay(hinted(1), 1, long, 0.0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(b.next_delay(hinted(60), 1, long, 0.0), None);
        // No attempt starts within `reserve` of the deadline.
        assert_eq!(
            b.next_delay(retry, 1, Duration::from_millis(520), 0.0),
            None
        );
        assert_eq!(
            b.next_delay(hinted(1), 1, Duration::from_secs(1), 0.0),
            None
        );
    }

    #[test]
    fn jitter_is_in_range_and_varies() {
        let v: Vec<f64> = (0..64).map(|_| jitter()).collect();
        assert!(v.iter().all(|j| (0.0..1.0).contains(j)));
        assert!(v.windows(2).any(|w| w[0] != w[1]));
    }
}
