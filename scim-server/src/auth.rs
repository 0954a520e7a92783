//! Who may use a directory: the bearer token against the verifiers the operator publishes.
//! New authentication methods go here, beside [`authorize`].

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::cache::DirInfo;
use crate::error::Error;

/// Decides a request to directory `name` (known as `info`, if known) with `token`.
pub fn authorize(
    name: &str,
    info: Option<DirInfo>,
    token: Option<&str>,
    now: jiff::Timestamp,
) -> Result<DirInfo, Error> {
    let Some(info) = info else {
        return Err(Error::NoDirectory(name.to_string()));
    };
    if !info.ready {
        return Err(Error::unavailable(
            format!("the SCIM directory {name} is not ready yet"),
            10,
        ));
    }
    let Some(token) = token else {
        return Err(Error::Unauthorized("a bearer token is required"));
    };
    if token_matches(&info, token, now) {
        Ok(info)
    } else {
        Err(Error::Unauthorized(
            "the bearer token is not valid for this directory",
        ))
    }
}

/// Whether `token` hashes to one of the directory's unexpired verifiers (constant time per
/// verifier; every verifier is compared).
pub fn token_matches(info: &DirInfo, token: &str, now: jiff::Timestamp) -> bool {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let mut ok = subtle::Choice::from(0u8);
    for (v, exp) in &info.verifiers {
        let live = exp.is_none_or(|e| e > now);
        ok |= v.ct_eq(&digest) & subtle::Choice::from(live as u8);
    }
    ok.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_their_unexpired_verifier() {
        let d: [u8; 32] = Sha256::digest(b"secret").into();
        let now = jiff::Timestamp::now();
        let info = DirInfo {
            uid: String::new(),
            ready: true,
            verifiers: vec![(d, None)],
            ..DirInfo::default()
        };
        assert!(token_matches(&info, "secret", now));
        assert!(!token_matches(&info, "other", now));
        let expired = DirInfo {
            verifiers: vec![(d, Some(now - jiff::SignedDuration::from_secs(1)))],
            ..info
        };
        assert!(!token_matches(&expired, "secret", now));
    }

    #[test]
    fn unknown_unready_and_unauthenticated_requests_are_told_apart() {
        let now = jiff::Timestamp::now();
        assert!(matches!(
            authorize("ns/d", None, Some("t"), now),
            Err(Error::NoDirectory(_))
        ));
        let unready = DirInfo::default();
        assert!(matches!(
            authorize("ns/d", Some(unready), Some("t"), now),
            Err(Error::Unavailable { .. })
        ));
        let ready = DirInfo {
            ready: true,
            ..DirInfo::default()
        };
        assert!(matches!(
            authorize("ns/d", Some(ready.clone()), None, now),
            Err(Error::Unauthorized(_))
        ));
        assert!(matches!(
            authorize("ns/d", Some(ready), Some("t"), now),
            Err(Error::Unauthorized(_))
        ));
    }
}
