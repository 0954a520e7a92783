//! Bearer tokens and their verifiers.
//!
//! A verifier is `hmac-sha256-dir:<key id>:<hex>`, an HMAC-SHA256 of the directory's identity
//! (uid, namespace, name) and the token under a key derived from one of the verifier keys that
//! only the operator and the SCIM server hold (`kube_scim_runtime::verifier`); a token has one
//! verifier per key. Its fingerprint is the first 8 hex digits of that digest. The SCIM server
//! computes the same HMAC of the presented `Authorization: Bearer <token>` for the directory the
//! request names and compares it in constant time with every verifier of the directory whose
//! `expiresAt` has not passed, so a verifier copied from another directory opens nothing.
//! Tokens themselves never leave the Secret, and no unkeyed hash of a token is published.
//!
//! Verifiers of earlier releases (`sha256:<hex>`, unkeyed; `hmac-sha256:<key id>:<hex>`, keyed
//! but bound to no directory) are only recognised as the same token, never carried over or
//! written: after an upgrade, previous tokens still in their grace period stop working at once
//! (their verifiers cannot be re-bound without the token, and one could have been planted).
//!
//! Previous tokens' verifiers are read back only from the directory's status, which only the
//! operator writes, and their expiry is clamped to `now + gracePeriod` at every reconcile: an
//! expiry only ever moves earlier.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use kube_scim_crds::TokenVerifier;
use kube_scim_runtime::verifier::{self, Binding, KeyRing};
use sha2::{Digest, Sha256};

/// Data key of the token in a generated Secret (and the default key of `spec.token.secretRef`).
pub const TOKEN_KEY: &str = "token";

/// Random bytes in a generated token: 256 bits.
pub const TOKEN_BYTES: usize = 32;

/// Length of a fingerprint in hex digits.
pub const FINGERPRINT_LEN: usize = 8;

/// At most this many verifiers are published (the CRD allows 32): the current token's (one per
/// key, at most [`verifier::MAX_KEYS`]) and the newest previous ones.
pub const MAX_VERIFIERS: usize = 32;

/// Prefix of the unkeyed verifiers of releases before keyed verifiers.
pub const LEGACY_PREFIX: &str = "sha256:";

/// A new token: 32 bytes from the operating system's CSPRNG, base64url without padding
/// (43 characters, safe in headers, URLs and YAML).
pub fn generate() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The first 8 hex digits of a verifier's digest.
pub fn fingerprint_of_hash(hash: &str) -> String {
    verifier::digest_hex(hash)
        .chars()
        .take(FINGERPRINT_LEN)
        .collect()
}

/// The verifiers of `token` at the directory `binding`, one per key (the primary key's first),
/// valid until `expires_at` (`None`: the current token).
pub fn verifiers(
    keys: &KeyRing,
    binding: &Binding<'_>,
    token: &str,
    expires_at: Option<Timestamp>,
) -> Vec<TokenVerifier> {
    keys.hashes(binding, token)
        .into_iter()
        .map(|hash| verifier_from_hash(hash, expires_at))
        .collect()
}

/// A verifier for an already computed hash.
pub fn verifier_from_hash(hash: String, expires_at: Option<Timestamp>) -> TokenVerifier {
    TokenVerifier {
        fingerprint: Some(fingerprint_of_hash(&hash)),
        hash,
        expires_at: expires_at.map(format_time),
    }
}

/// Whether `v` is keyed and bound to a directory (the only kind published or carried over).
pub fn is_bound(v: &TokenVerifier) -> bool {
    matches!(
        verifier::parse(&v.hash),
        Some((verifier::Kind::Bound, _, _))
    )
}

/// Whether `v` is a verifier of `token` at the directory `binding`: bound under a key of `keys`,
/// or an unbound `hmac-sha256:` or unkeyed `sha256:` verifier of an older release (so that an
/// upgrade is not taken for a changed token; such verifiers are replaced, never kept).
pub fn is_of(keys: &KeyRing, binding: &Binding<'_>, token: &str, v: &TokenVerifier) -> bool {
    if keys.verifies(binding, token, &v.hash) || keys.verifies_unbound(token, &v.hash) {
        return true;
    }
    v.hash.strip_prefix(LEGACY_PREFIX).is_some_and(|hex| {
        let digest = Sha256::digest(token.as_bytes());
        let ours: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        hex == ours
    })
}

/// RFC 3339 in UTC with whole seconds, as Kubernetes prints times.
pub fn format_time(t: Timestamp) -> String {
    t.round(jiff::Unit::Second)
        .unwrap_or(t)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// When a verifier stops working; `None` for a current (non-expiring) verifier or an
/// unparsable time (treated as already expired by [`still_valid`]).
pub fn expiry(v: &TokenVerifier) -> Option<Timestamp> {
    v.expires_at.as_deref().and_then(|t| t.parse().ok())
}

/// Whether a previous-token verifier still opens the directory at `now`.
pub fn still_valid(v: &TokenVerifier, now: Timestamp) -> bool {
    match &v.expires_at {
        None => true,
        Some(_) => expiry(v).is_some_and(|e| e > now),
    }
}

/// `now + grace`, saturating at the largest timestamp.
pub fn expires_after(now: Timestamp, grace: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(grace)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// Previous-token verifiers worth keeping: bound, expiring, still valid, not among `current`,
/// no duplicates, newest expiry first; an expiry after `latest` is brought back to it (a grace
/// period that was shortened shortens the grace of tokens already retired, and no expiry ever
/// grows).
fn previous_kept<'a>(
    previous: impl IntoIterator<Item = &'a TokenVerifier>,
    current: &[TokenVerifier],
    now: Timestamp,
    latest: Timestamp,
) -> Vec<TokenVerifier> {
    let mut out: Vec<TokenVerifier> = Vec::new();
    for v in previous {
        let keep = is_bound(v)
            && v.expires_at.is_some()
            && still_valid(v, now)
            && !current.iter().any(|c| c.hash == v.hash)
            && !out.iter().any(|o| o.hash == v.hash);
        if keep {
            let clamped = expiry(v).is_some_and(|e| e > latest);
            out.push(if clamped {
                verifier_from_hash(v.hash.clone(), Some(latest))
            } else {
                v.clone()
            });
        }
    }
    out.sort_by_key(|v| std::cmp::Reverse(expiry(v)));
    out
}

/// The verifiers to publish: the current token's first (none when the current token is
/// refused), then still-valid bound previous ones (newest expiry first, none after
/// `now + grace`), at most [`MAX_VERIFIERS`].
pub fn publishable(
    current: &[TokenVerifier],
    previous: &[TokenVerifier],
    now: Timestamp,
    grace: Duration,
) -> Vec<TokenVerifier> {
    let mut out = current.to_vec();
    out.extend(previous_kept(
        previous,
        current,
        now,
        expires_after(now, grace),
    ));
    out.truncate(MAX_VERIFIERS);
    out
}

/// Previous verifiers after the current token (its verifiers `old`) is replaced: they get
/// `expires_at` (`now + grace`; with no grace they go at once), earlier ones keep theirs;
/// expired and unbound ones are dropped, none lasts beyond `now + grace`; room is left for the
/// new token's verifiers.
pub fn retire(
    old: &[TokenVerifier],
    earlier: &[TokenVerifier],
    now: Timestamp,
    grace: Duration,
) -> Vec<TokenVerifier> {
    let retired: Vec<TokenVerifier> = if grace.is_zero() {
        Vec::new()
    } else {
        let until = Some(expires_after(now, grace));
        old.iter()
            .map(|v| verifier_from_hash(v.hash.clone(), until))
            .collect()
    };
    let earlier = earlier
        .iter()
        .filter(|v| !old.iter().any(|o| o.hash == v.hash));
    let latest = expires_after(now, grace);
    let mut out = previous_kept(retired.iter().chain(earlier), &[], now, latest);
    out.truncate(MAX_VERIFIERS - verifier::MAX_KEYS);
    out
}

/// Previous verifiers are carried in status (only the operator writes it; the token Secret is
/// writable by the namespace's editors, so nothing is read back from it). Of the verifiers in
/// status that are not of the token in the Secret (`is_current` says which are): an expiring one
/// keeps its expiry, clamped to `now + grace`; a current (non-expiring) one belonged to the token
/// used until now and gets `now + grace`, unless `unchanged` (the token in the Secret is still
/// the current one, so such a verifier is the same token under a key no longer held, and goes).
/// Unbound, unkeyed and expired verifiers are dropped.
pub fn carry_over(
    status_verifiers: &[TokenVerifier],
    is_current: impl Fn(&TokenVerifier) -> bool,
    unchanged: bool,
    now: Timestamp,
    grace: Duration,
) -> Vec<TokenVerifier> {
    let mut out = Vec::new();
    for v in status_verifiers
        .iter()
        .filter(|v| is_bound(v) && !is_current(v))
    {
        match v.expires_at {
            Some(_) => out.push(v.clone()),
            None if !unchanged && !grace.is_zero() => out.push(verifier_from_hash(
                v.hash.clone(),
                Some(expires_after(now, grace)),
            )),
            None => {}
        }
    }
    previous_kept(&out, &[], now, expires_after(now, grace))
}

/// The earliest time a published verifier expires: when the next reconcile must remove it.
pub fn next_expiry(verifiers: &[TokenVerifier]) -> Option<Timestamp> {
    verifiers.iter().filter_map(expiry).min()
}

/// The latest time a published verifier expires.
pub fn last_expiry(verifiers: &[TokenVerifier]) -> Option<Timestamp> {
    verifiers.iter().filter_map(expiry).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// Two keys, `k2` primary.
    pub(crate) fn keys() -> KeyRing {
        KeyRing::from_keys([
            ("k1", b"test-verifier-key-one-0123456789abcdef".to_vec()),
            ("k2", b"test-verifier-key-two-0123456789abcdef".to_vec()),
        ])
        .unwrap()
    }

    /// The directory the tests' verifiers are bound to.
    pub(crate) const DIR: Binding<'static> = Binding {
        uid: "0b5c6d7e-0000-4000-8000-000000000001",
        namespace: "identity",
        name: "contoso",
    };

    const HOUR: Duration = Duration::from_secs(3600);

    fn current(token: &str) -> Vec<TokenVerifier> {
        verifiers(&keys(), &DIR, token, None)
    }

    fn hashes(vs: &[TokenVerifier]) -> Vec<&str> {
        vs.iter().map(|v| v.hash.as_str()).collect()
    }

    fn legacy(token: &str) -> TokenVerifier {
        let hex: String = Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        verifier_from_hash(format!("{LEGACY_PREFIX}{hex}"), None)
    }

    #[test]
    fn a_token_has_one_keyed_verifier_per_key_and_no_unkeyed_hash() {
        let vs = current("abc");
        assert_eq!(vs.len(), 2);
        assert!(
            vs[0].hash.starts_with("hmac-sha256-dir:k2:"),
            "primary first"
        );
        assert!(vs[1].hash.starts_with("hmac-sha256-dir:k1:"));
        for v in &vs {
            assert_eq!(v.expires_at, None);
            assert_eq!(
                v.fingerprint.as_deref(),
                Some(&verifier::digest_hex(&v.hash)[..8])
            );
            assert!(is_bound(v));
            assert!(is_of(&keys(), &DIR, "abc", v));
            assert!(!is_of(&keys(), &DIR, "abd", v));
        }
        // sha256("abc") (FIPS 180-2) appears nowhere, not even as a fingerprint.
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let json = serde_json::to_string(&vs).unwrap();
        assert!(!json.contains(sha) && !json.contains(&sha[..8]), "{json}");
        // An older release's verifier is recognised as the same token, and is not keyed.
        assert!(is_of(&keys(), &DIR, "abc", &legacy("abc")));
        assert!(!is_of(&keys(), &DIR, "abd", &legacy("abc")));
        assert!(!is_bound(&legacy("abc")));
        assert_eq!(legacy("abc").hash, format!("sha256:{sha}"));
    }

    #[test]
    fn generated_tokens_are_256_bit_url_safe_and_distinct() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43, "32 bytes in unpadded base64");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{a}"
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), TOKEN_BYTES);
        assert_eq!(crate::strength::weakness(&a), None);
    }

    #[test]
    fn rotation_keeps_the_old_verifiers_for_the_grace_period() {
        let now = at("2026-01-01T00:00:00Z");
        let previous = retire(&current("old"), &[], now, Duration::from_secs(5));
        assert_eq!(hashes(&previous), hashes(&current("old")));
        assert!(
            previous
                .iter()
                .all(|v| v.expires_at.as_deref() == Some("2026-01-01T00:00:05Z"))
        );
        let published = publishable(&current("new"), &previous, now, Duration::from_secs(5));
        assert_eq!(published.len(), 4);
        assert_eq!(hashes(&published[..2]), hashes(&current("new")));
        assert_eq!(published[0].expires_at, None);
        assert_eq!(hashes(&published[2..]), hashes(&current("old")));
        assert_eq!(next_expiry(&published), Some(at("2026-01-01T00:00:05Z")));

        let later = at("2026-01-01T00:00:06Z");
        let published = publishable(&current("new"), &previous, later, Duration::from_secs(5));
        assert_eq!(published.len(), 2, "expired verifiers disappear");
        assert_eq!(next_expiry(&published), None);
    }

    #[test]
    fn zero_grace_revokes_at_once_and_the_list_is_bounded() {
        let now = at("2026-01-01T00:00:00Z");
        assert!(retire(&current("old"), &[], now, Duration::ZERO).is_empty());
        let mut earlier = Vec::new();
        for i in 0..40 {
            earlier = retire(
                &current(&format!("t{i}")),
                &earlier,
                now,
                Duration::from_secs(60 + i),
            );
        }
        assert_eq!(earlier.len(), MAX_VERIFIERS - verifier::MAX_KEYS);
        assert!(
            is_of(&keys(), &DIR, "t39", &earlier[0]),
            "newest expiry first"
        );
        // Two keys here; with the most keys the list is exactly full.
        assert_eq!(
            publishable(&current("current"), &earlier, now, HOUR).len(),
            MAX_VERIFIERS - verifier::MAX_KEYS + 2
        );
    }

    #[test]
    fn unkeyed_verifiers_of_older_releases_are_never_carried() {
        let now = at("2026-01-01T00:00:00Z");
        let mut old = legacy("old");
        old.expires_at = Some("2026-01-02T00:00:00Z".into());
        assert!(publishable(&current("new"), std::slice::from_ref(&old), now, HOUR).len() == 2);
        assert!(
            retire(
                &[legacy("old")],
                &[old.clone()],
                now,
                Duration::from_secs(60)
            )
            .is_empty()
        );
        assert!(
            carry_over(
                &[legacy("old"), old],
                |_| false,
                false,
                now,
                Duration::from_secs(60)
            )
            .is_empty()
        );
    }

    #[test]
    fn bring_your_own_changes_carry_the_old_verifiers_over() {
        let now = at("2026-01-01T00:00:00Z");
        let ring = keys();
        let mut status = current("old");
        status.extend(verifiers(
            &ring,
            &DIR,
            "older",
            Some(at("2025-12-31T00:00:00Z")),
        ));
        let is_new = |v: &TokenVerifier| is_of(&ring, &DIR, "new", v);
        let carried = carry_over(&status, is_new, false, now, Duration::from_secs(3600));
        assert_eq!(
            hashes(&carried),
            hashes(&current("old")),
            "already expired verifiers are dropped"
        );
        assert!(
            carried
                .iter()
                .all(|v| v.expires_at.as_deref() == Some("2026-01-01T01:00:00Z"))
        );
        // Unchanged token: nothing to carry, and its verifier under a key no longer held goes.
        let is_same = |v: &TokenVerifier| is_of(&ring, &DIR, "same", v);
        assert!(
            carry_over(
                &current("same"),
                is_same,
                true,
                now,
                Duration::from_secs(60)
            )
            .is_empty()
        );
        let retired_key =
            KeyRing::from_keys([("k0", b"test-verifier-key-zero-0123456789abcdef".to_vec())])
                .unwrap();
        let mut status = current("same");
        status.extend(verifiers(&retired_key, &DIR, "same", None));
        assert!(carry_over(&status, is_same, true, now, Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn unparsable_expiry_counts_as_expired() {
        let now = at("2026-01-01T00:00:00Z");
        let mut v = current("x").remove(0);
        v.expires_at = Some("soon".into());
        assert!(!still_valid(&v, now));
    }

    /// Issue 27, defect 3: an expiry far in the future (planted, or from a longer grace period)
    /// is brought back to `now + grace`; it never grows, and unbound verifiers of older releases
    /// (which could have been planted: they name no directory) are never carried.
    #[test]
    fn carried_expiries_are_clamped_to_the_grace_period() {
        let now = at("2026-01-01T00:00:00Z");
        let grace = Duration::from_secs(3600);
        let far = verifiers(&keys(), &DIR, "planted", Some(at("2099-01-01T00:00:00Z")));
        let soon = verifiers(&keys(), &DIR, "older", Some(at("2026-01-01T00:10:00Z")));
        let mut status = far.clone();
        status.extend(soon.clone());
        let carried = carry_over(&status, |_| false, true, now, grace);
        assert_eq!(carried.len(), 4);
        for v in &carried {
            let e = expiry(v).unwrap();
            assert!(e <= at("2026-01-01T01:00:00Z"), "{v:?}");
        }
        assert!(
            carried.iter().any(|v| v.hash == soon[0].hash
                && v.expires_at.as_deref() == Some("2026-01-01T00:10:00Z"))
        );
        // Published or retired, the same bound applies; a shorter grace shortens it.
        let published = publishable(&current("new"), &far, now, Duration::from_secs(60));
        assert!(
            published[2..]
                .iter()
                .all(|v| v.expires_at.as_deref() == Some("2026-01-01T00:01:00Z"))
        );
        let retired = retire(&current("old"), &far, now, Duration::from_secs(60));
        assert!(
            retired
                .iter()
                .all(|v| expiry(v) <= Some(at("2026-01-01T00:01:00Z")))
        );
        // Unbound keyed verifiers (earlier builds) are recognised but never carried.
        let unbound = TokenVerifier {
            hash: verifier::format_unbound("k2", &keys().unbound_digest("k2", "old").unwrap()),
            fingerprint: None,
            expires_at: Some("2026-01-01T00:30:00Z".into()),
        };
        assert!(is_of(&keys(), &DIR, "old", &unbound));
        assert!(
            carry_over(std::slice::from_ref(&unbound), |_| false, false, now, grace).is_empty()
        );
        assert!(publishable(&[], std::slice::from_ref(&unbound), now, grace).is_empty());
    }
}
