//! Who may use a directory: the bearer token against the keyed verifiers the operator
//! publishes. New authentication methods go here, beside [`check`].

use kube_scim_runtime::verifier::{Binding, KeyRing};
use subtle::ConstantTimeEq;

use crate::cache::DirInfo;
use crate::error::Error;

/// Whether `token` opens `info` as its bearer token, readiness aside.
pub fn check(
    info: &DirInfo,
    token: Option<&str>,
    keys: &KeyRing,
    now: jiff::Timestamp,
) -> Result<(), Error> {
    let Some(token) = token else {
        return Err(Error::NoToken);
    };
    if !info.no_bearer && token_matches(info, token, keys, now) {
        Ok(())
    } else {
        Err(Error::Unauthorized(
            "the bearer token is not valid for this directory",
        ))
    }
}

/// Whether `token` matches one of the directory's unexpired verifiers under a key of `keys`:
/// the HMAC of the directory's identity (uid, namespace, name) and the token under each key held
/// (computed once per key) is compared in constant time with every verifier of that key, so a
/// verifier computed for another directory (or planted from one) never matches here. Verifiers
/// of keys not held open nothing.
pub fn token_matches(info: &DirInfo, token: &str, keys: &KeyRing, now: jiff::Timestamp) -> bool {
    let binding = Binding {
        uid: &info.uid,
        namespace: &info.namespace,
        name: &info.name,
    };
    let digests: Vec<(&str, [u8; 32])> = keys
        .keys()
        .iter()
        .filter(|k| info.verifiers.iter().any(|v| v.key_id == k.id()))
        .filter_map(|k| Some((k.id(), keys.digest(k.id(), &binding, token)?)))
        .collect();
    let mut ok = subtle::Choice::from(0u8);
    for v in &info.verifiers {
        let Some((_, digest)) = digests.iter().find(|(id, _)| *id == v.key_id) else {
            continue;
        };
        let live = v.expires_at.is_none_or(|e| e > now);
        ok |= v.digest.ct_eq(digest) & subtle::Choice::from(live as u8);
    }
    ok.into()
}

#[cfg(test)]
mod tests {
    use kube_scim_runtime::verifier;

    use super::*;
    use crate::cache::Verifier;

    fn ring(keys: &[(&str, &str)]) -> KeyRing {
        KeyRing::from_keys(keys.iter().map(|(id, k)| (*id, k.as_bytes().to_vec()))).unwrap()
    }

    const K1: &str = "server-test-key-one-0123456789abcdef";
    const K2: &str = "server-test-key-two-0123456789abcdef";

    /// The directory of most tests.
    fn dir_a() -> DirInfo {
        DirInfo {
            uid: "uid-a".into(),
            namespace: "ns".into(),
            name: "a".into(),
            ready: true,
            ..DirInfo::default()
        }
    }

    fn binding(info: &DirInfo) -> Binding<'_> {
        Binding {
            uid: &info.uid,
            namespace: &info.namespace,
            name: &info.name,
        }
    }

    fn published(
        keys: &KeyRing,
        token: &str,
        expires_at: Option<jiff::Timestamp>,
    ) -> Vec<Verifier> {
        published_at(&dir_a(), keys, token, expires_at)
    }

    fn published_at(
        at: &DirInfo,
        keys: &KeyRing,
        token: &str,
        expires_at: Option<jiff::Timestamp>,
    ) -> Vec<Verifier> {
        keys.hashes(&binding(at), token)
            .iter()
            .map(|h| {
                let (_, id, digest) = verifier::parse(h).unwrap();
                Verifier {
                    key_id: id.into(),
                    digest,
                    expires_at,
                }
            })
            .collect()
    }

    #[test]
    fn tokens_match_only_their_unexpired_verifier() {
        let keys = ring(&[("k1", K1)]);
        let now = jiff::Timestamp::now();
        let info = DirInfo {
            verifiers: published(&keys, "secret", None),
            ..dir_a()
        };
        assert!(token_matches(&info, "secret", &keys, now));
        assert!(!token_matches(&info, "other", &keys, now));
        let expired = DirInfo {
            verifiers: published(
                &keys,
                "secret",
                Some(now - jiff::SignedDuration::from_secs(1)),
            ),
            ..info
        };
        assert!(!token_matches(&expired, "secret", &keys, now));
    }

    /// Key rotation: the operator publishes under every key it holds, the server accepts any key
    /// it holds; at every step of add-new-then-remove-old the token works.
    #[test]
    fn a_verifier_under_any_held_key_opens_and_others_do_not() {
        let now = jiff::Timestamp::now();
        let old = ring(&[("k1", K1)]);
        let both = ring(&[("k1", K1), ("k2", K2)]);
        let new = ring(&[("k2", K2)]);
        let info = |keys: &KeyRing| DirInfo {
            verifiers: published(keys, "secret", None),
            ..dir_a()
        };
        // (operator's keys, server's keys) in the order a rotation goes through them.
        for (operator, server) in [
            (&old, &old),
            (&both, &old),
            (&both, &both),
            (&new, &both),
            (&new, &new),
        ] {
            assert!(token_matches(&info(operator), "secret", server, now));
        }
        // Skipping a step (the server dropped the old key before the operator published the
        // new one) is what the procedure avoids.
        assert!(!token_matches(&info(&old), "secret", &new, now));
        // The same key id with another secret opens nothing.
        let impostor = ring(&[("k1", K2)]);
        assert!(!token_matches(&info(&old), "secret", &impostor, now));
    }

    /// Issue 27, defect 3: the verifier of directory B's token, published (or planted) in the
    /// status of directory A, does not open A with B's token: the server binds the MAC to the
    /// directory the request names.
    #[test]
    fn a_verifier_computed_for_another_directory_opens_nothing() {
        let keys = ring(&[("k1", K1)]);
        let now = jiff::Timestamp::now();
        let b = DirInfo {
            uid: "uid-b".into(),
            namespace: "other".into(),
            name: "b".into(),
            ..dir_a()
        };
        let mut planted = published(&keys, "token-of-a", None);
        planted.extend(published_at(&b, &keys, "token-of-b", None));
        let a = DirInfo {
            verifiers: planted.clone(),
            ..dir_a()
        };
        assert!(token_matches(&a, "token-of-a", &keys, now));
        assert!(!token_matches(&a, "token-of-b", &keys, now));
        // The same name re-created (another uid) is another directory.
        let recreated = DirInfo {
            uid: "uid-a2".into(),
            verifiers: published(&keys, "token-of-a", None),
            ..dir_a()
        };
        assert!(!token_matches(&recreated, "token-of-a", &keys, now));
        // The unbound verifier of the token (earlier builds: the HMAC of the token alone)
        // opens nothing, even as the current token.
        let digest = keys.unbound_digest("k1", "token-of-a").unwrap();
        let unbound = DirInfo {
            verifiers: vec![Verifier {
                key_id: "k1".into(),
                digest,
                expires_at: None,
            }],
            ..dir_a()
        };
        assert!(!token_matches(&unbound, "token-of-a", &keys, now));
    }

    #[test]
    fn missing_and_wrong_tokens_are_told_apart() {
        let now = jiff::Timestamp::now();
        let keys = ring(&[("k1", K1)]);
        let ready = DirInfo {
            ready: true,
            ..DirInfo::default()
        };
        assert!(matches!(
            check(&ready, None, &keys, now),
            Err(Error::NoToken)
        ));
        assert!(matches!(
            check(&ready, Some("t"), &keys, now),
            Err(Error::Unauthorized(_))
        ));
    }
}
