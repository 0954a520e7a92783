//! Claims, replay and the whole check of workload identity federation assertions.

use std::time::Duration;

use super::*;
use crate::auth::entra;

const TENANT: &str = "3f1e4b7a-5c2d-4e8f-9a0b-1c2d3e4f5a6b";
const ISSUER: &str = "https://login.microsoftonline.com/3f1e4b7a-5c2d-4e8f-9a0b-1c2d3e4f5a6b/v2.0";
const SUBJECT: &str = "66a5e40d-4a46-4e0f-a0f4-1e5d8a1f4d1b";
const APP: &str = "1b730954-1685-4b74-9bfd-dac224a7b894";
const NOW: i64 = 1_800_000_000;

fn expected() -> Expected<'static> {
    Expected {
        issuer: ISSUER,
        tenant: TENANT,
        subject: SUBJECT,
        audience: APP,
    }
}

/// The claims of an Entra v2.0 access token for the application itself.
fn entra_claims() -> AssertionClaims {
    AssertionClaims {
        iss: Some(ISSUER.into()),
        sub: Some(SUBJECT.into()),
        aud: Some(Audience::One(APP.into())),
        exp: Some(NOW + 3900),
        nbf: Some(NOW - 300),
        iat: Some(NOW - 300),
        jti: None,
        uti: Some("AbCdEf0123456789".into()),
        tid: Some(TENANT.into()),
    }
}

fn check(c: &AssertionClaims) -> Result<Checked, Rejection> {
    check_claims(c, &expected(), NOW)
}

#[test]
fn an_entra_access_token_for_the_application_passes_keyed_by_its_uti() {
    let checked = check(&entra_claims()).unwrap();
    assert_eq!(checked.replay_key, format!("{ISSUER}\nAbCdEf0123456789"));
    assert_eq!(checked.until, NOW + 3900 + MAX_SKEW);
    // A jti wins over uti; several audiences, one of them ours; no tid.
    let c = AssertionClaims {
        jti: Some("j-1".into()),
        aud: Some(Audience::Many(vec!["other".into(), APP.into()])),
        tid: None,
        ..entra_claims()
    };
    assert_eq!(check(&c).unwrap().replay_key, format!("{ISSUER}\nj-1"));
}

#[test]
fn issuer_tenant_subject_and_audience_must_be_the_configured_ones() {
    let cases = [
        (
            AssertionClaims {
                iss: Some("https://sts.windows.net/3f1e4b7a-5c2d-4e8f-9a0b-1c2d3e4f5a6b/".into()),
                ..entra_claims()
            },
            "wrong issuer",
        ),
        (
            AssertionClaims {
                iss: None,
                ..entra_claims()
            },
            "missing claim iss",
        ),
        (
            AssertionClaims {
                tid: Some("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d".into()),
                ..entra_claims()
            },
            "issued for tenant",
        ),
        (
            AssertionClaims {
                sub: Some("another-service-principal".into()),
                ..entra_claims()
            },
            "wrong subject",
        ),
        (
            AssertionClaims {
                sub: None,
                ..entra_claims()
            },
            "missing claim sub",
        ),
        (
            AssertionClaims {
                aud: Some(Audience::One(format!("api://{APP}"))),
                ..entra_claims()
            },
            "wrong audience",
        ),
        (
            AssertionClaims {
                aud: Some(Audience::Many(vec![])),
                ..entra_claims()
            },
            "wrong audience",
        ),
        (
            AssertionClaims {
                aud: None,
                ..entra_claims()
            },
            "missing claim aud",
        ),
    ];
    for (claims, reason) in cases {
        let err = check(&claims).unwrap_err();
        assert!(err.to_string().contains(reason), "{reason}: {err}");
    }
    // Subjects are compared exactly (object ids are lowercase GUIDs; a differently cased
    // subject is another string to Entra too).
    let upper = AssertionClaims {
        sub: Some(SUBJECT.to_uppercase()),
        ..entra_claims()
    };
    assert!(matches!(check(&upper), Err(Rejection::Subject(_))));
}

#[test]
fn times_are_checked_with_a_bounded_skew_and_lifetime() {
    let at = |exp: i64, nbf: Option<i64>, iat: Option<i64>| AssertionClaims {
        exp: Some(exp),
        nbf,
        iat,
        ..entra_claims()
    };
    // exp: the skew is tolerated, not more.
    assert!(check(&at(NOW - MAX_SKEW + 1, None, Some(NOW - 600))).is_ok());
    assert_eq!(
        check(&at(NOW - MAX_SKEW, None, Some(NOW - 600))),
        Err(Rejection::Expired)
    );
    assert_eq!(
        check(&AssertionClaims {
            exp: None,
            ..entra_claims()
        }),
        Err(Rejection::Missing("exp"))
    );
    // nbf and iat in the future, beyond the skew.
    assert!(check(&at(NOW + 600, Some(NOW + MAX_SKEW), Some(NOW))).is_ok());
    assert_eq!(
        check(&at(NOW + 600, Some(NOW + MAX_SKEW + 1), Some(NOW))),
        Err(Rejection::NotYetValid)
    );
    assert_eq!(
        check(&at(NOW + 600, None, Some(NOW + MAX_SKEW + 1))),
        Err(Rejection::IssuedInFuture)
    );
    // Lifetime: a day at most, from iat (else nbf, else now).
    assert!(check(&at(NOW + MAX_LIFETIME - 10, None, Some(NOW - 10))).is_ok());
    assert_eq!(
        check(&at(NOW + MAX_LIFETIME, None, Some(NOW - 10))),
        Err(Rejection::TooLong)
    );
    assert_eq!(
        check(&at(NOW + MAX_LIFETIME + 1, None, None)),
        Err(Rejection::TooLong)
    );
    assert_eq!(
        check(&at(NOW + MAX_LIFETIME, Some(NOW - 10), None)),
        Err(Rejection::TooLong)
    );
    // A future iat within the skew does not buy a longer remaining life.
    assert_eq!(
        check(&at(NOW + MAX_LIFETIME + 30, None, Some(NOW + 30))),
        Err(Rejection::TooLong)
    );
}

#[test]
fn an_assertion_without_an_id_is_refused() {
    let c = AssertionClaims {
        jti: None,
        uti: None,
        ..entra_claims()
    };
    assert_eq!(check(&c), Err(Rejection::NoId));
    let empty = AssertionClaims {
        jti: Some(String::new()),
        uti: None,
        ..entra_claims()
    };
    assert_eq!(check(&empty), Err(Rejection::NoId));
}

#[test]
fn an_id_is_used_once_until_its_assertion_expires() {
    let cache = ReplayCache::new(2);
    assert_eq!(cache.use_once("i\na", NOW + 10, NOW), Ok(()));
    assert_eq!(
        cache.use_once("i\na", NOW + 10, NOW + 5),
        Err(Rejection::Replayed)
    );
    assert_eq!(
        cache.use_once("i\na", NOW + 10, NOW + 10),
        Err(Rejection::Replayed)
    );
    // Another issuer's id of the same value is another id.
    assert_eq!(cache.use_once("j\na", NOW + 10, NOW), Ok(()));
    // Full of unexpired ids: refused (retryable), nothing forgotten.
    let full = cache.use_once("i\nb", NOW + 10, NOW + 1).unwrap_err();
    assert_eq!(full, Rejection::ReplayCacheFull);
    assert!(full.retryable());
    assert_eq!(cache.len(), 2);
    // Once they expire they make room (the assertion itself is refused by then anyway).
    assert_eq!(cache.use_once("i\nb", NOW + 100, NOW + 11), Ok(()));
    assert_eq!(cache.len(), 1);
    assert!(!Rejection::Replayed.retryable());
}

/// Forgeries are refused before any key is fetched: the metadata URL points nowhere, so a
/// fetch would show up as a `Key(Fetch)` rejection.
#[tokio::test]
async fn forgeries_are_refused_before_any_key_is_fetched() {
    use base64::Engine;
    let keys = EntraVerifier::new(entra::EntraConfig {
        metadata_url: "http://127.0.0.1:9/{tenant}".into(),
        ..entra::EntraConfig::default()
    })
    .unwrap();
    let verifier = FederationVerifier::new(FederationConfig::default(), Arc::new(keys));
    let auth = FederationAuth {
        tenant_id: TENANT.into(),
        subject: SUBJECT.into(),
        audience: Some(APP.into()),
        lifetime: Duration::from_secs(3600),
    };
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let token = |header: serde_json::Value| {
        format!(
            "{}.{}.c2ln",
            b64(header),
            b64(serde_json::json!({"iss": ISSUER, "sub": SUBJECT, "aud": APP}))
        )
    };
    let now = jiff::Timestamp::from_second(NOW).unwrap();
    let verify = |t: String| {
        let (verifier, auth) = (&verifier, &auth);
        async move { verifier.verify(auth, &t, now).await }
    };
    assert!(matches!(
        verify(token(serde_json::json!({"alg": "none", "kid": "k"}))).await,
        Err(Rejection::Malformed(_))
    ));
    assert_eq!(
        verify(token(serde_json::json!({"alg": "HS256", "kid": "k"}))).await,
        Err(Rejection::Algorithm("HS256".into()))
    );
    assert_eq!(
        verify(token(serde_json::json!({"alg": "RS256"}))).await,
        Err(Rejection::NoKeyId)
    );
    let no_audience = FederationAuth {
        audience: None,
        ..auth.clone()
    };
    assert_eq!(
        verifier
            .verify(
                &no_audience,
                &token(serde_json::json!({"alg": "RS256", "kid": "k"})),
                now
            )
            .await,
        Err(Rejection::NoAudience)
    );
    // A well-formed RS256 assertion reaches the key fetch (which fails here: retryable).
    let err = verify(token(serde_json::json!({"alg": "RS256", "kid": "k"})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Rejection::Key(entra::Rejection::Fetch(_))),
        "{err}"
    );
    assert!(err.retryable());
    assert!(verifier.replay.is_empty(), "a refused assertion uses no id");
}

#[test]
fn claim_names_are_a_fixed_length_hash_of_issuer_and_id() {
    let a = claim_name("https://issuer\nid-1");
    assert_eq!(a.len(), 63, "{a}");
    assert!(a.starts_with(CLAIM_PREFIX));
    assert!(
        a[CLAIM_PREFIX.len()..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(a, claim_name("https://issuer\nid-1"), "deterministic");
    assert_ne!(a, claim_name("https://issuer\nid-2"));
    assert_ne!(a, claim_name("https://other\nid-1"));
    // The first 43 hex digits of SHA-256("i\na"): nothing of the id shows in the name.
    assert_eq!(
        claim_name("i\na"),
        "kube-scim-assertion-34fce47f4d819da30777e224b84c4500a54ad78c578"
    );
}

fn verifier() -> FederationVerifier {
    let keys = EntraVerifier::new(entra::EntraConfig {
        metadata_url: "http://127.0.0.1:9/{tenant}".into(),
        ..entra::EntraConfig::default()
    })
    .unwrap();
    FederationVerifier::new(FederationConfig::default(), Arc::new(keys))
}

fn checked(id: &str, until: i64) -> Checked {
    Checked {
        replay_key: format!("{ISSUER}\n{id}"),
        until,
    }
}

const DIR: crate::cache::DirRef<'static> = crate::cache::DirRef {
    ns: "team-a",
    name: "entra",
};

#[tokio::test]
async fn an_assertion_is_used_once_across_replicas_sharing_the_claims() {
    let store = Arc::new(crate::memory_store::MemoryStore::default());
    let one = verifier().with_claims(store.clone());
    let two = verifier().with_claims(store.clone());
    let now = jiff::Timestamp::from_second(NOW).unwrap();
    let c = checked("AbC", NOW + 100);
    assert_eq!(one.use_once(DIR, &c, now).await, Ok(()));
    assert_eq!(one.use_once(DIR, &c, now).await, Err(Rejection::Replayed));
    // The other replica has never seen it in memory: the shared claim refuses it.
    assert_eq!(two.use_once(DIR, &c, now).await, Err(Rejection::Replayed));
    assert_eq!(store.claim_count(), 1);
    // Another id, and the same id in another namespace (another directory's claims).
    assert_eq!(
        two.use_once(DIR, &checked("DeF", NOW + 100), now).await,
        Ok(())
    );
    // Claims are per namespace (where the directory's Leases live): a directory elsewhere
    // that trusts the same issuer, subject and audience claims separately.
    let other = crate::cache::DirRef {
        ns: "team-b",
        name: "entra",
    };
    let three = verifier().with_claims(store.clone());
    assert_eq!(three.use_once(other, &c, now).await, Ok(()));
}

#[tokio::test]
async fn expired_claims_are_swept_after_an_exchange() {
    let store = Arc::new(crate::memory_store::MemoryStore::default());
    let v = verifier().with_claims(store.clone());
    let at = |s| jiff::Timestamp::from_second(s).unwrap();
    assert_eq!(
        v.use_once(DIR, &checked("a", NOW + 10), at(NOW)).await,
        Ok(())
    );
    assert_eq!(
        v.use_once(DIR, &checked("b", NOW + 100), at(NOW)).await,
        Ok(())
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while v.sweeping.load(Ordering::Acquire) {
        assert!(
            std::time::Instant::now() < deadline,
            "the first sweep never ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // After a's expiry, the next exchange sweeps it (in the background), not b.
    assert_eq!(
        v.use_once(DIR, &checked("c", NOW + 100), at(NOW + 11))
            .await,
        Ok(())
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.claim_count() != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            store.claim_count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A claim store whose backend is down.
struct Down;

impl ClaimStore for Down {
    fn claim<'a>(
        &'a self,
        _: &'a str,
        _: &'a OnceClaim,
    ) -> futures::future::BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(Err(StoreError::Unavailable(
            "503".into(),
        ))))
    }

    fn sweep<'a>(
        &'a self,
        _: &'a str,
        _: i64,
        _: usize,
    ) -> futures::future::BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(std::future::ready(Err(StoreError::Unavailable(
            "503".into(),
        ))))
    }
}

#[tokio::test]
async fn an_unconfirmed_claim_is_retryable_and_does_not_use_the_id() {
    let v = verifier().with_claims(Arc::new(Down));
    let now = jiff::Timestamp::from_second(NOW).unwrap();
    let c = checked("AbC", NOW + 100);
    for _ in 0..2 {
        let err = v.use_once(DIR, &c, now).await.unwrap_err();
        assert!(matches!(err, Rejection::ClaimUnavailable(_)), "{err}");
        assert!(err.retryable());
    }
    assert!(v.replay.is_empty(), "an unconfirmed claim uses no id");
}

#[test]
fn only_claims_with_a_past_expiry_are_swept() {
    use crate::kube_store::{CLAIM_EXPIRES, claim_expired};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    let meta = |v: Option<&str>| ObjectMeta {
        annotations: v.map(|v| [(CLAIM_EXPIRES.to_string(), v.to_string())].into()),
        ..ObjectMeta::default()
    };
    assert!(claim_expired(&meta(Some("99")), 100));
    assert!(!claim_expired(&meta(Some("100")), 100));
    assert!(!claim_expired(&meta(Some("soon")), 100));
    assert!(!claim_expired(&meta(None), 100));
}

#[tokio::test]
async fn the_periodic_sweep_removes_a_quiet_namespaces_last_claims_then_forgets_it() {
    let store = Arc::new(crate::memory_store::MemoryStore::default());
    let v = verifier().with_claims(store.clone());
    let at = |s| jiff::Timestamp::from_second(s).unwrap();
    assert_eq!(
        v.use_once(DIR, &checked("a", NOW + 10), at(NOW)).await,
        Ok(())
    );
    assert_eq!(
        v.use_once(DIR, &checked("b", NOW + 20), at(NOW)).await,
        Ok(())
    );
    // No further exchange: the periodic pass sweeps what has expired, and keeps the namespace
    // until its latest claim has.
    v.sweep_pending(NOW + 11).await;
    assert_eq!(store.claim_count(), 1);
    assert_eq!(v.pending.lock().unwrap().len(), 1);
    v.sweep_pending(NOW + 21).await;
    assert_eq!(store.claim_count(), 0);
    assert!(v.pending.lock().unwrap().is_empty());
}
