//! The one condition rule of every controller: an outcome ([`Check`]) becomes a
//! `metav1.Condition` whose `lastTransitionTime` moves only when its status does.

use jiff::{Timestamp, Unit};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Longest condition message, in characters. Messages carry apiserver errors, receiver
/// answers and lists of namespaces, so without a cap a status grows with its inputs. 2000 is
/// the largest cap any controller had (the ScimWebhook's was 1000, the ScimDirectory's none,
/// and its messages stay far below): no message that was shown whole is cut now.
pub const MESSAGE_CAP: usize = 2000;

/// Outcome of one part of a reconcile, as a condition: `True` when ok, `Unknown` while pending
/// (waiting for another controller, e.g. an Ingress address), else `False`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    pub pending: bool,
    pub reason: String,
    pub message: String,
}

impl Check {
    pub fn ok(reason: &str, message: impl Into<String>) -> Self {
        Self {
            ok: true,
            pending: false,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn failed(reason: &str, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            pending: false,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// Our part is done and another controller has yet to act on it.
    pub fn pending(reason: &str, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            pending: true,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// The condition status: `True`, `Unknown` or `False`.
    pub fn status(&self) -> &'static str {
        match (self.ok, self.pending) {
            (true, _) => "True",
            (false, true) => "Unknown",
            (false, false) => "False",
        }
    }
}

/// `now` to the second: a condition written twice within a second compares equal, and the
/// times match what the apiserver keeps (RFC 3339 seconds).
pub fn round(now: Timestamp) -> Timestamp {
    now.round(Unit::Second).unwrap_or(now)
}

/// `message` cut to [`MESSAGE_CAP`] characters (so never inside a UTF-8 sequence).
pub fn cap(message: &str) -> String {
    message.chars().take(MESSAGE_CAP).collect()
}

/// The condition of `type_` for `check`. `lastTransitionTime` stays that of the previous
/// condition of the same type when its status did not change (a new reason or message alone is
/// no transition), so an unchanged object gets an identical status, and no write.
pub fn condition(
    type_: &str,
    check: &Check,
    generation: Option<i64>,
    previous: &[Condition],
    now: Timestamp,
) -> Condition {
    let status = check.status();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(round(now)));
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: check.reason.clone(),
        message: cap(&check.message),
        observed_generation: generation,
        last_transition_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn an_unchanged_status_keeps_its_transition_time_and_a_changed_one_moves_it() {
        let t0 = at("2026-01-01T00:00:00Z");
        let t1 = at("2026-01-01T01:00:00Z");
        let first = condition("Ready", &Check::ok("Ready", "ok"), Some(1), &[], t0);
        assert_eq!(
            (first.status.as_str(), first.observed_generation),
            ("True", Some(1))
        );
        assert_eq!(first.last_transition_time.0, t0);

        // Same status, another reason and message: no transition.
        let same = condition(
            "Ready",
            &Check::ok("PreviousTokenValid", "other words"),
            Some(2),
            std::slice::from_ref(&first),
            t1,
        );
        assert_eq!(same.last_transition_time.0, t0);
        assert_eq!(
            (same.reason.as_str(), same.message.as_str()),
            ("PreviousTokenValid", "other words")
        );
        assert_eq!(same.observed_generation, Some(2));

        // True -> Unknown -> False: each a transition.
        let pending = condition(
            "Ready",
            &Check::pending("Waiting", "x"),
            Some(2),
            std::slice::from_ref(&same),
            t1,
        );
        assert_eq!(
            (pending.status.as_str(), pending.last_transition_time.0),
            ("Unknown", t1)
        );
        let failed = condition(
            "Ready",
            &Check::failed("Broken", "x"),
            Some(2),
            &[pending],
            at("2026-01-01T02:00:00Z"),
        );
        assert_eq!(failed.status, "False");
        assert_eq!(failed.last_transition_time.0, at("2026-01-01T02:00:00Z"));
    }

    #[test]
    fn only_a_previous_condition_of_the_same_type_counts() {
        let t0 = at("2026-01-01T00:00:00Z");
        let t1 = at("2026-01-01T01:00:00Z");
        let other = condition("TokenReady", &Check::ok("X", "x"), None, &[], t0);
        let ready = condition("Ready", &Check::ok("X", "x"), None, &[other], t1);
        assert_eq!(ready.last_transition_time.0, t1);
    }

    #[test]
    fn a_new_transition_time_is_rounded_to_the_second() {
        let now = at("2026-01-01T00:00:00.7Z");
        let c = condition("Ready", &Check::ok("X", "x"), None, &[], now);
        assert_eq!(c.last_transition_time.0, at("2026-01-01T00:00:01Z"));
        assert_eq!(
            round(at("2026-01-01T00:00:00.2Z")),
            at("2026-01-01T00:00:00Z")
        );
    }

    #[test]
    fn a_long_message_is_capped_at_a_character_boundary() {
        // Two-byte characters: a byte cap of an odd length would split one.
        let long = "é".repeat(MESSAGE_CAP + 10);
        let c = condition(
            "Ready",
            &Check::failed("X", long.clone()),
            None,
            &[],
            at("2026-01-01T00:00:00Z"),
        );
        assert_eq!(c.message.chars().count(), MESSAGE_CAP);
        assert!(long.starts_with(&c.message));
        assert_eq!(cap("short"), "short");
        let exact = "a".repeat(MESSAGE_CAP);
        assert_eq!(cap(&exact), exact);
    }
}
