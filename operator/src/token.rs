//! Bearer tokens and their verifiers.
//!
//! A verifier is `sha256:` + the lowercase hex SHA-256 of the token's UTF-8 bytes; its
//! fingerprint is the first 8 hex digits of that digest. The SCIM server hashes the presented
//! `Authorization: Bearer <token>` the same way and compares it in constant time with every
//! verifier of the directory whose `expiresAt` has not passed. Tokens themselves never leave the
//! Secret.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use kube_scim_crds::TokenVerifier;
use sha2::{Digest, Sha256};

/// Data key of the token in a generated Secret (and the default key of `spec.token.secretRef`).
pub const TOKEN_KEY: &str = "token";

/// Random bytes in a generated token: 256 bits.
pub const TOKEN_BYTES: usize = 32;

/// Length of a fingerprint in hex digits.
pub const FINGERPRINT_LEN: usize = 8;

/// At most this many verifiers are published (the CRD allows 8): the current one and the
/// newest previous ones.
pub const MAX_VERIFIERS: usize = 8;

/// A new token: 32 bytes from the operating system's CSPRNG, base64url without padding
/// (43 characters, safe in headers, URLs and YAML).
pub fn generate() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// `sha256:<64 lowercase hex digits>` of the token's UTF-8 bytes.
pub fn hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The first 8 hex digits of a verifier hash (`sha256:` stripped).
pub fn fingerprint_of_hash(hash: &str) -> String {
    let hex = hash.strip_prefix("sha256:").unwrap_or(hash);
    hex.chars().take(FINGERPRINT_LEN).collect()
}

/// The verifier of `token`, valid until `expires_at` (`None`: the current token).
pub fn verifier(token: &str, expires_at: Option<Timestamp>) -> TokenVerifier {
    verifier_from_hash(hash(token), expires_at)
}

/// A verifier for an already computed hash.
pub fn verifier_from_hash(hash: String, expires_at: Option<Timestamp>) -> TokenVerifier {
    TokenVerifier {
        fingerprint: Some(fingerprint_of_hash(&hash)),
        hash,
        expires_at: expires_at.map(format_time),
    }
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

/// The verifiers to publish: the current token's first, then still-valid previous ones
/// (newest expiry first, the current hash and duplicates removed), at most [`MAX_VERIFIERS`].
pub fn publishable(
    current_hash: &str,
    previous: &[TokenVerifier],
    now: Timestamp,
) -> Vec<TokenVerifier> {
    let mut out = vec![verifier_from_hash(current_hash.to_string(), None)];
    let mut previous: Vec<&TokenVerifier> = previous
        .iter()
        .filter(|v| v.expires_at.is_some() && v.hash != current_hash && still_valid(v, now))
        .collect();
    previous.sort_by_key(|v| std::cmp::Reverse(expiry(v)));
    for v in previous {
        if out.len() >= MAX_VERIFIERS {
            break;
        }
        if !out.iter().any(|o| o.hash == v.hash) {
            out.push(v.clone());
        }
    }
    out
}

/// Previous verifiers after the current token `old_hash` is replaced: it gets `expires_at`
/// (`now + grace`), earlier ones keep theirs; expired ones are dropped.
pub fn retire(
    old_hash: &str,
    earlier: &[TokenVerifier],
    now: Timestamp,
    grace: Duration,
) -> Vec<TokenVerifier> {
    let mut out: Vec<TokenVerifier> = Vec::new();
    if !grace.is_zero() {
        out.push(verifier_from_hash(
            old_hash.to_string(),
            Some(expires_after(now, grace)),
        ));
    }
    out.extend(
        earlier
            .iter()
            .filter(|v| v.hash != old_hash && v.expires_at.is_some() && still_valid(v, now))
            .cloned(),
    );
    out.sort_by_key(|v| std::cmp::Reverse(expiry(v)));
    out.truncate(MAX_VERIFIERS - 1);
    out
}

/// For a bring-your-own token (the operator cannot write that Secret): previous verifiers are
/// carried in status. A verifier of status that is not the current token keeps its expiry, or
/// gets `now + grace` if it was the current one until now.
pub fn carry_over(
    status_verifiers: &[TokenVerifier],
    current_hash: &str,
    now: Timestamp,
    grace: Duration,
) -> Vec<TokenVerifier> {
    let mut out = Vec::new();
    for v in status_verifiers.iter().filter(|v| v.hash != current_hash) {
        match v.expires_at {
            Some(_) => out.push(v.clone()),
            None if !grace.is_zero() => out.push(verifier_from_hash(
                v.hash.clone(),
                Some(expires_after(now, grace)),
            )),
            None => {}
        }
    }
    out.retain(|v| still_valid(v, now));
    out
}

/// The earliest time a published verifier expires: when the next reconcile must remove it.
pub fn next_expiry(verifiers: &[TokenVerifier]) -> Option<Timestamp> {
    verifiers.iter().filter_map(expiry).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn hash_is_sha256_hex_of_the_utf8_bytes() {
        // sha256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            hash("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(fingerprint_of_hash(&hash("abc")), "ba7816bf");
        let v = verifier("abc", None);
        assert_eq!(v.fingerprint.as_deref(), Some("ba7816bf"));
        assert_eq!(v.expires_at, None);
        // Non-ASCII tokens hash their UTF-8 bytes.
        assert_eq!(
            hash("é"),
            "sha256:4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c"
        );
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
    }

    #[test]
    fn rotation_keeps_the_old_verifier_for_the_grace_period() {
        let now = at("2026-01-01T00:00:00Z");
        let previous = retire(&hash("old"), &[], now, Duration::from_secs(5));
        assert_eq!(previous.len(), 1);
        assert_eq!(
            previous[0].expires_at.as_deref(),
            Some("2026-01-01T00:00:05Z")
        );
        let published = publishable(&hash("new"), &previous, now);
        assert_eq!(published.len(), 2);
        assert_eq!(published[0].hash, hash("new"));
        assert_eq!(published[0].expires_at, None);
        assert_eq!(published[1].hash, hash("old"));
        assert_eq!(next_expiry(&published), Some(at("2026-01-01T00:00:05Z")));

        let later = at("2026-01-01T00:00:06Z");
        let published = publishable(&hash("new"), &previous, later);
        assert_eq!(published.len(), 1, "expired verifiers disappear");
        assert_eq!(next_expiry(&published), None);
    }

    #[test]
    fn zero_grace_revokes_at_once_and_the_list_is_bounded() {
        let now = at("2026-01-01T00:00:00Z");
        assert!(retire(&hash("old"), &[], now, Duration::ZERO).is_empty());
        let mut earlier = Vec::new();
        for i in 0..20 {
            earlier = retire(
                &hash(&format!("t{i}")),
                &earlier,
                now,
                Duration::from_secs(60 + i),
            );
        }
        assert_eq!(earlier.len(), MAX_VERIFIERS - 1);
        assert_eq!(earlier[0].hash, hash("t19"), "newest expiry first");
        assert_eq!(
            publishable(&hash("current"), &earlier, now).len(),
            MAX_VERIFIERS
        );
    }

    #[test]
    fn bring_your_own_changes_carry_the_old_verifier_over() {
        let now = at("2026-01-01T00:00:00Z");
        let status = vec![
            verifier("old", None),
            verifier("older", Some(at("2025-12-31T00:00:00Z"))),
        ];
        let carried = carry_over(&status, &hash("new"), now, Duration::from_secs(3600));
        assert_eq!(carried.len(), 1, "already expired verifiers are dropped");
        assert_eq!(carried[0].hash, hash("old"));
        assert_eq!(
            carried[0].expires_at.as_deref(),
            Some("2026-01-01T01:00:00Z")
        );
        // Unchanged token: nothing to carry.
        assert!(
            carry_over(
                &[verifier("same", None)],
                &hash("same"),
                now,
                Duration::from_secs(60)
            )
            .is_empty()
        );
    }

    #[test]
    fn unparsable_expiry_counts_as_expired() {
        let now = at("2026-01-01T00:00:00Z");
        let mut v = verifier("x", None);
        v.expires_at = Some("soon".into());
        assert!(!still_valid(&v, now));
    }
}
