//! The token step's plans: generated and bring-your-own tokens, rotation, grace periods, and
//! previous verifiers read back from the status only.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use sha2::Digest;

use super::*;

const GRACE: Duration = Duration::from_secs(3600);

/// The directory of the tests; its uid owns the generated Secrets of [`secret`].
const DIR: Binding<'static> = Binding {
    uid: "uid",
    namespace: "ns",
    name: "d",
};

/// Strong enough for the rule of [`strength`] (these are test values, not secrets).
const OLD: &str = "old-token-3f7a9c2e5b8d1f4a6c0e9b3d7f2a5c8e";
const NEW: &str = "new-token-b4d6f9a2c5e8b0d3f6a9c1e4b7d0f2a1";

fn keys() -> KeyRing {
    KeyRing::from_keys([
        ("k1", b"test-verifier-key-one-0123456789abcdef".to_vec()),
        ("k2", b"test-verifier-key-two-0123456789abcdef".to_vec()),
    ])
    .unwrap()
}

fn hashes(vs: &[TokenVerifier]) -> Vec<&str> {
    vs.iter().map(|v| v.hash.as_str()).collect()
}

fn secret(owner: &str, token: Option<&str>, rotation: Option<&str>) -> Secret {
    let mut annotations = BTreeMap::new();
    if let Some(r) = rotation {
        annotations.insert(ANNOTATION_ROTATION.to_string(), r.to_string());
    }
    Secret {
        metadata: ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                uid: owner.into(),
                ..Default::default()
            }]),
            annotations: Some(annotations),
            ..Default::default()
        },
        data: token
            .map(|t| BTreeMap::from([(TOKEN_KEY.to_string(), ByteString(t.as_bytes().to_vec()))])),
        ..Default::default()
    }
}

fn byo(secret: Option<&Secret>, previous: &ScimDirectoryStatus) -> (TokenState, Option<String>) {
    bring_your_own(
        "ns",
        "s",
        TOKEN_KEY,
        secret,
        previous,
        Timestamp::now(),
        GRACE,
        &keys(),
        &DIR,
    )
}

#[test]
fn generated_token_plans() {
    let now = Timestamp::now();
    let ring = keys();
    let status = ScimDirectoryStatus {
        token_verifiers: tokens::verifiers(&ring, &DIR, "t", None),
        ..Default::default()
    };
    let plan = |s: Option<&Secret>, rotation: &str| {
        plan_generated(&DIR, s, rotation, &status, now, GRACE, &ring)
    };
    assert_eq!(plan(None, ""), GeneratedPlan::Create);
    assert_eq!(
        plan(Some(&secret("other", Some("t"), None)), ""),
        GeneratedPlan::Foreign
    );
    assert_eq!(
        plan(Some(&secret("uid", None, None)), ""),
        GeneratedPlan::Recreate
    );
    assert_eq!(
        plan(Some(&secret("uid", Some(""), None)), "r1"),
        GeneratedPlan::Recreate
    );
    let GeneratedPlan::Rotate { previous } = plan(Some(&secret("uid", Some("t"), None)), "r1")
    else {
        panic!("a new rotationRequest rotates");
    };
    assert_eq!(hashes(&previous), ring.hashes(&DIR, "t"));
    assert!(previous.iter().all(|v| v.expires_at.is_some()));
    assert!(matches!(
        plan(Some(&secret("uid", Some("t"), Some("r1"))), "r1"),
        GeneratedPlan::Keep { current, .. } if hashes(&current) == ring.hashes(&DIR, "t")
    ));
}

#[test]
fn a_changed_bring_your_own_token_keeps_the_old_one_for_the_grace_period() {
    let ring = keys();
    let previous = ScimDirectoryStatus {
        token_verifiers: tokens::verifiers(&ring, &DIR, OLD, None),
        ..Default::default()
    };
    let s = secret("x", Some(NEW), None);
    let (state, event) = byo(Some(&s), &previous);
    assert!(state.check.ok, "{:?}", state.check);
    assert!(event.is_some_and(|n| n.contains("stays valid for 1h")));
    let mut expected = ring.hashes(&DIR, NEW);
    expected.extend(ring.hashes(&DIR, OLD));
    assert_eq!(hashes(&state.verifiers), expected);
    let (missing, event) = byo(None, &previous);
    assert_eq!(missing.check.reason, "SecretNotFound");
    assert!(event.is_none());
}

#[test]
fn an_unchanged_bring_your_own_token_raises_no_event_even_across_keys_and_upgrades() {
    let ring = keys();
    let s = secret("x", Some(NEW), None);
    // Published by an older release as an unkeyed hash: the same token, now keyed.
    let hex: String = sha2::Sha256::digest(NEW.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let legacy = ScimDirectoryStatus {
        token_verifiers: vec![tokens::verifier_from_hash(format!("sha256:{hex}"), None)],
        token_created: Some("2025-01-01T00:00:00Z".into()),
        ..Default::default()
    };
    let (state, event) = byo(Some(&s), &legacy);
    assert!(state.check.ok);
    assert!(event.is_none(), "{event:?}");
    assert_eq!(state.created.as_deref(), Some("2025-01-01T00:00:00Z"));
    assert_eq!(
        hashes(&state.verifiers),
        ring.hashes(&DIR, NEW),
        "no sha256: left"
    );
    // Under a key that was rotated out: still the same token; the old key's verifier goes.
    let retired =
        KeyRing::from_keys([("k0", b"test-verifier-key-zero-0123456789abcdef".to_vec())]).unwrap();
    let mut verifiers = tokens::verifiers(&ring, &DIR, NEW, None);
    verifiers.extend(tokens::verifiers(&retired, &DIR, NEW, None));
    let status = ScimDirectoryStatus {
        token_verifiers: verifiers,
        ..Default::default()
    };
    let (state, event) = byo(Some(&s), &status);
    assert!(event.is_none());
    assert_eq!(hashes(&state.verifiers), ring.hashes(&DIR, NEW));
}

#[test]
fn a_weak_bring_your_own_token_is_refused_and_the_previous_one_keeps_its_grace_period() {
    let ring = keys();
    let previous = ScimDirectoryStatus {
        token_verifiers: tokens::verifiers(&ring, &DIR, OLD, None),
        token_created: Some("2025-01-01T00:00:00Z".into()),
        ..Default::default()
    };
    let weak = secret("x", Some("Welcome2026!"), None);
    let (state, event) = byo(Some(&weak), &previous);
    assert!(!state.check.ok);
    assert_eq!(state.check.reason, "TokenTooWeak");
    assert!(
        state.check.message.contains("openssl rand -base64 32")
            && state.check.message.contains("at least 32")
            && state.check.message.contains("shorter than 32")
            && !state.check.message.contains("it has 12")
            && state
                .check
                .message
                .contains("previous token keeps working until"),
        "{}",
        state.check.message
    );
    assert!(!state.check.message.contains("Welcome"), "never the token");
    assert!(event.is_none(), "the Warning comes from the condition");
    assert_eq!(state.created, None);
    assert_eq!(
        hashes(&state.verifiers),
        ring.hashes(&DIR, OLD),
        "only the previous token's verifiers"
    );
    assert!(state.verifiers.iter().all(|v| v.expires_at.is_some()));
    assert!(
        !state
            .verifiers
            .iter()
            .any(|v| tokens::is_of(&ring, &DIR, "Welcome2026!", v))
    );

    // The next reconcile keeps the previous token's expiry, not a new one.
    let again = ScimDirectoryStatus {
        token_verifiers: state.verifiers.clone(),
        ..Default::default()
    };
    let (state2, _) = byo(Some(&weak), &again);
    assert_eq!(state2.verifiers, state.verifiers);

    // A weak token that was current (published by an older release) opens nothing at once.
    let was_current = ScimDirectoryStatus {
        token_verifiers: tokens::verifiers(&ring, &DIR, "Welcome2026!", None),
        ..Default::default()
    };
    let (state, _) = byo(Some(&weak), &was_current);
    assert_eq!(state.check.reason, "TokenTooWeak");
    assert!(state.verifiers.is_empty());
    assert!(!state.check.message.contains("previous token"));

    // A strong token after a weak one works at once.
    let strong = secret("x", Some(NEW), None);
    let (state, event) = byo(Some(&strong), &again);
    assert!(state.check.ok);
    assert_eq!(&hashes(&state.verifiers)[..2], ring.hashes(&DIR, NEW));
    assert_eq!(&hashes(&state.verifiers)[2..], ring.hashes(&DIR, OLD));
    assert!(event.is_some_and(|n| !n.contains("stays valid")));
}

/// Issue 27, defect 3: the Secret's annotation (writable by the namespace's editors) is never
/// read; previous verifiers come from the status, bound to this directory, their expiry
/// clamped to the grace period.
#[test]
fn a_planted_annotation_is_ignored_and_previous_verifiers_come_from_status() {
    let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let ring = keys();
    // The verifier of another directory's token, planted with an expiry far away.
    let other = Binding {
        uid: "other-uid",
        namespace: "elsewhere",
        name: "x",
    };
    let planted = tokens::verifiers(
        &ring,
        &other,
        "theirs",
        Some("2099-01-01T00:00:00Z".parse().unwrap()),
    );
    let mut s = secret("uid", Some(NEW), Some("r1"));
    s.metadata.annotations.get_or_insert_default().insert(
        ANNOTATION_PREVIOUS.into(),
        serde_json::to_string(&planted).unwrap(),
    );
    let status = ScimDirectoryStatus {
        token_verifiers: tokens::verifiers(&ring, &DIR, NEW, None),
        ..Default::default()
    };
    for rotation in ["r1", "r2"] {
        let all: Vec<TokenVerifier> =
            match plan_generated(&DIR, Some(&s), rotation, &status, now, GRACE, &ring) {
                GeneratedPlan::Keep {
                    current, previous, ..
                } => [current, previous].concat(),
                GeneratedPlan::Rotate { previous } => previous,
                other => panic!("{other:?}"),
            };
        assert!(!all.is_empty());
        assert!(
            all.iter()
                .all(|v| !planted.iter().any(|p| p.hash == v.hash)),
            "{rotation}: {all:?}"
        );
        assert!(all.iter().all(|v| tokens::is_of(&ring, &DIR, NEW, v)));
        assert!(
            !all.iter()
                .any(|v| tokens::is_of(&ring, &other, "theirs", v))
        );
    }
    // The rotation was written to the Secret but the status write was lost: the status still
    // names the old token as current, which keeps its grace period from now.
    let lost = ScimDirectoryStatus {
        token_verifiers: tokens::verifiers(&ring, &DIR, OLD, None),
        ..Default::default()
    };
    let GeneratedPlan::Keep { previous, .. } =
        plan_generated(&DIR, Some(&s), "r1", &lost, now, GRACE, &ring)
    else {
        panic!("the Secret answers r1");
    };
    assert_eq!(hashes(&previous), ring.hashes(&DIR, OLD));
    assert!(
        previous
            .iter()
            .all(|v| v.expires_at.as_deref() == Some("2026-01-01T01:00:00Z"))
    );
    // Even in status, an expiry beyond the grace period is clamped.
    let long = ScimDirectoryStatus {
        token_verifiers: [
            tokens::verifiers(&ring, &DIR, NEW, None),
            tokens::verifiers(
                &ring,
                &DIR,
                OLD,
                Some("2099-01-01T00:00:00Z".parse().unwrap()),
            ),
        ]
        .concat(),
        ..Default::default()
    };
    let GeneratedPlan::Keep { previous, .. } =
        plan_generated(&DIR, Some(&s), "r1", &long, now, GRACE, &ring)
    else {
        panic!("the Secret answers r1");
    };
    assert!(
        previous
            .iter()
            .all(|v| v.expires_at.as_deref() == Some("2026-01-01T01:00:00Z"))
    );
}
