//! The token endpoint's wire format and its access tokens.

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::*;

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const K1: &str = "oauth-test-key-one-0123456789abcdef";
const K2: &str = "oauth-test-key-two-0123456789abcdef";

fn ring(keys: &[(&str, &str)]) -> KeyRing {
    KeyRing::from_keys(keys.iter().map(|(id, k)| (*id, k.as_bytes().to_vec()))).unwrap()
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

#[test]
fn basic_and_body_credentials_are_read() {
    let r = parse_request(
        Some(&basic("uid-a", "s%2Bcret")),
        FORM,
        b"grant_type=client_credentials",
    )
    .unwrap();
    assert_eq!(r.auth, ClientAuth::Basic);
    assert_eq!(r.client_id, "uid-a");
    assert_eq!(r.client_secrets, vec!["s+cret", "s%2Bcret"]);
    assert_eq!(r.grant_type, "client_credentials");
    let r = parse_request(
        None,
        Some("application/x-www-form-urlencoded; charset=UTF-8"),
        b"grant_type=client_credentials&client_id=uid-a&client_secret=a%2Bb+c&scope=",
    )
    .unwrap();
    assert_eq!(r.auth, ClientAuth::Body);
    assert_eq!(r.client_secrets, vec!["a+b c"]);
    // A client id repeated in the body with Basic is fine if it is the same.
    assert!(
        parse_request(
            Some(&basic("uid-a", "s")),
            FORM,
            b"grant_type=client_credentials&client_id=uid-a"
        )
        .is_ok()
    );
}

#[test]
fn malformed_requests_get_the_rfc_6749_error() {
    let code = |auth: Option<&str>, ct: Option<&str>, body: &[u8]| {
        parse_request(auth, ct, body).unwrap_err().code()
    };
    let b = basic("uid-a", "s");
    assert_eq!(
        code(None, FORM, b"client_id=a&client_secret=s"),
        "invalid_request"
    );
    assert_eq!(
        code(
            None,
            Some("application/json"),
            b"{\"grant_type\":\"client_credentials\"}"
        ),
        "invalid_request"
    );
    assert_eq!(
        code(
            None,
            FORM,
            b"grant_type=client_credentials&grant_type=client_credentials&client_id=a&client_secret=s"
        ),
        "invalid_request"
    );
    assert_eq!(
        code(
            Some(&b),
            FORM,
            b"grant_type=client_credentials&client_secret=s"
        ),
        "invalid_request",
        "two authentication methods"
    );
    assert_eq!(
        code(Some(&b), FORM, b"grant_type=client_credentials&client_id=b"),
        "invalid_request"
    );
    assert_eq!(
        code(None, FORM, b"grant_type=client_credentials"),
        "invalid_client"
    );
    assert_eq!(
        code(None, FORM, b"grant_type=client_credentials&client_id=a"),
        "invalid_client"
    );
    assert_eq!(
        code(Some("Bearer x"), FORM, b"grant_type=client_credentials"),
        "invalid_client"
    );
    let err = parse_request(Some("Basic !!!"), FORM, b"grant_type=client_credentials").unwrap_err();
    assert!(matches!(err, TokenError::InvalidClient { basic: true, .. }));
}

#[test]
fn client_assertions_are_read_and_never_mixed_with_a_secret() {
    const TYPE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";
    // What Microsoft's validation sends (an unknown baseAddress parameter included).
    let body = format!(
        "grant_type=client_credentials&client_id=uid-a&client_assertion=h.p.s\
         &client_assertion_type={TYPE}&baseAddress=https%3A%2F%2Fscim.example"
    );
    let r = parse_request(None, FORM, body.as_bytes()).unwrap();
    assert_eq!(r.auth, ClientAuth::Assertion);
    assert_eq!(r.client_id, "uid-a");
    assert_eq!(r.client_assertion.as_deref(), Some("h.p.s"));
    assert!(r.client_secrets.is_empty());
    // client_id is optional with an assertion.
    let body = format!(
        "grant_type=client_credentials&client_assertion=h.p.s&client_assertion_type={TYPE}"
    );
    assert_eq!(
        parse_request(None, FORM, body.as_bytes())
            .unwrap()
            .client_id,
        ""
    );
    let code = |auth: Option<&str>, body: &str| {
        parse_request(auth, FORM, body.as_bytes())
            .unwrap_err()
            .code()
    };
    let with_secret = format!(
        "grant_type=client_credentials&client_id=a&client_secret=s&client_assertion=h.p.s&client_assertion_type={TYPE}"
    );
    assert_eq!(code(None, &with_secret), "invalid_request");
    let with_basic = format!(
        "grant_type=client_credentials&client_assertion=h.p.s&client_assertion_type={TYPE}"
    );
    assert_eq!(code(Some(&basic("a", "s")), &with_basic), "invalid_request");
    assert_eq!(
        code(None, "grant_type=client_credentials&client_assertion=h.p.s"),
        "invalid_request"
    );
    assert_eq!(
        code(
            None,
            &format!("grant_type=client_credentials&client_assertion_type={TYPE}")
        ),
        "invalid_request"
    );
    assert_eq!(
        code(
            None,
            "grant_type=client_credentials&client_assertion=h.p.s&client_assertion_type=urn%3Aother"
        ),
        "invalid_client"
    );
}

#[test]
fn error_answers_carry_the_code_no_store_and_the_basic_challenge() {
    let r = TokenError::InvalidClient {
        detail: "wrong".into(),
        basic: true,
    }
    .into_response();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(
        r.headers()[header::WWW_AUTHENTICATE],
        "Basic realm=\"kube-scim\""
    );
    let r = TokenError::InvalidClient {
        detail: "wrong".into(),
        basic: false,
    }
    .into_response();
    assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
    let r = TokenError::UnsupportedGrantType("password".into()).into_response();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn access_tokens_open_only_their_directory_until_they_expire() {
    let keys = ring(&[("k1", K1)]);
    let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    let answer = issue(&keys, "uid-a", Duration::from_secs(60), now).unwrap();
    assert_eq!(answer.token_type, "Bearer");
    assert_eq!(answer.expires_in, 60);
    let t = &answer.access_token;
    assert!(is_access_token(t));
    assert_eq!(verify(&keys, "uid-a", t, now), Ok(()));
    let later = |s: i64| now + jiff::SignedDuration::from_secs(s);
    assert_eq!(verify(&keys, "uid-a", t, later(59)), Ok(()));
    assert!(matches!(
        verify(&keys, "uid-a", t, later(60)),
        Err(Rejection::Invalid(m)) if m.contains("expired")
    ));
    // Another directory: another signing key.
    assert!(matches!(
        verify(&keys, "uid-b", t, now),
        Err(Rejection::Invalid(m)) if m.contains("bad signature")
    ));
    // The same key id with other material (another installation) verifies nothing.
    assert!(verify(&ring(&[("k1", K2)]), "uid-a", t, now).is_err());
    // A verifier key rotation: tokens of the old key verify while the server holds it.
    let both = ring(&[("k1", K1), ("k2", K2)]);
    assert_eq!(verify(&both, "uid-a", t, now), Ok(()));
    assert_eq!(
        verify(&ring(&[("k2", K2)]), "uid-a", t, now),
        Err(Rejection::UnknownKey("k1".into()))
    );
    let newer = issue(&both, "uid-a", Duration::from_secs(60), now).unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&newer.access_token)
            .unwrap()
            .kid
            .as_deref(),
        Some("k2"),
        "signed under the primary key"
    );
}

#[test]
fn foreign_and_forged_tokens_are_not_ours() {
    let keys = ring(&[("k1", K1)]);
    let now = jiff::Timestamp::now();
    assert_eq!(verify(&keys, "u", "a.b.c", now), Err(Rejection::NotOurs));
    assert_eq!(verify(&keys, "u", "opaque", now), Err(Rejection::NotOurs));
    // HS256 under a key anyone could guess (the directory uid) is refused.
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some(TYP.into());
    header.kid = Some("k1".into());
    let claims = Claims {
        iss: ISSUER.into(),
        aud: "u".into(),
        sub: "u".into(),
        iat: now.as_second(),
        exp: now.as_second() + 60,
        jti: "x".into(),
    };
    let forged =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(b"u").unwrap()).unwrap();
    assert!(matches!(
        verify(&keys, "u", &forged, now),
        Err(Rejection::Invalid(_))
    ));
    // alg none with our typ.
    let none = format!(
        "{}.{}.",
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#),
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_string(&claims).unwrap())
    );
    assert_eq!(verify(&keys, "u", &none, now), Err(Rejection::NotOurs));
}
