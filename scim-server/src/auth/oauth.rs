//! OAuth 2.0 client credentials (RFC 6749 §4.4) for directories with method
//! `OAuthClientCredentials`: the token endpoint's request and answers, and the access tokens it
//! issues. No Kubernetes, no I/O. The same endpoint and access tokens serve method
//! `WorkloadIdentityFederation`, whose client assertions `crate::federation` checks.
//!
//! The client id is the directory's uid; the client secret is the directory's token, checked
//! against the keyed verifiers in its status like a bearer token ([`crate::auth::token_matches`]),
//! so the server still needs no permission on Secrets and the secret rotates with
//! `spec.token.rotationRequest` / `gracePeriod` like the token.
//!
//! An access token is a JWT (`typ: at+jwt`, HS256) whose signing key is derived with HKDF from a
//! verifier key (its id is the JWT's `kid`) and the directory's uid: every replica holding the
//! verifier keys verifies it without shared state, and a token of one directory cannot verify for
//! another (another key, and `aud` is the directory's uid). Removing a verifier key from the
//! servers revokes the access tokens signed under it; rotating the client secret does not revoke
//! access tokens already issued, which end at their `exp` (at most the configured lifetime).

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kube_scim_runtime::verifier::KeyRing;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The token endpoint, under a directory's SCIM path.
pub const TOKEN_PATH: &str = "/oauth2/token";

/// `iss` of every access token.
pub const ISSUER: &str = "kube-scim";

/// `typ` of every access token (RFC 9068's JWT access tokens).
pub const TYP: &str = "at+jwt";

/// The only grant this endpoint serves.
pub const GRANT_TYPE: &str = "client_credentials";

/// Default lifetime of an access token.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// Shortest and longest lifetime accepted from a directory's spec (the CRD enforces the same;
/// a longer value admitted by an older CRD is shortened). Microsoft's gallery validation wants
/// `expires_in` of 60 to 360 minutes: the default and the longest pass.
const LIFETIME_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(6 * 3600));

/// Largest token request body read.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// HKDF `info` prefix of the signing keys; the directory's uid follows. Versioned so that a
/// change of token format never verifies old tokens under new rules.
const KEY_LABEL: &str = "kube-scim oauth2 access-token signing key v1 directory=";

/// A directory's client-credentials settings, as the server needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OAuthSettings {
    /// Lifetime of the access tokens issued.
    pub lifetime: Duration,
}

impl OAuthSettings {
    /// Settings from `spec.auth.oauthClientCredentials.accessTokenLifetime` (already validated
    /// by the CRD; a value it should have refused falls back to the default, and is clamped).
    pub fn from_lifetime(lifetime: Option<&str>) -> OAuthSettings {
        let lifetime = match lifetime.map(kube_scim_runtime::duration::parse) {
            None => DEFAULT_LIFETIME,
            Some(Ok(d)) => d.clamp(LIFETIME_RANGE.0, LIFETIME_RANGE.1),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "accessTokenLifetime is not a duration; using 1h");
                DEFAULT_LIFETIME
            }
        };
        OAuthSettings { lifetime }
    }
}

/// How the client authenticated: RFC 6749 §2.3.1's two ways, or a JWT assertion (RFC 7523
/// §2.2, workload identity federation: see [`crate::federation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `Authorization: Basic` (`client_secret_basic`).
    Basic,
    /// `client_id` and `client_secret` in the body (`client_secret_post`).
    Body,
    /// `client_assertion_type` jwt-bearer and `client_assertion` in the body.
    Assertion,
}

/// A token request, read and checked for shape (not yet for its credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// How the client authenticated.
    pub auth: ClientAuth,
    /// The client id.
    pub client_id: String,
    /// The client secret as it could have been meant: the form-decoded value, then the raw one
    /// when it differs (clients that do not form-encode before Base64 in Basic).
    pub client_secrets: Vec<String>,
    /// `grant_type`.
    pub grant_type: String,
    /// With [`ClientAuth::Assertion`]: the JWT (and `client_id` may be empty: RFC 7523 makes
    /// it optional).
    pub client_assertion: Option<String>,
}

/// A token endpoint error (RFC 6749 §5.2). The description goes to the client; it never holds a
/// credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Missing, repeated or malformed parameters; two authentication methods at once.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// Unknown client, wrong secret, no authentication. `basic`: the client used HTTP Basic, so
    /// the answer carries a Basic challenge.
    #[error("invalid_client: {detail}")]
    InvalidClient {
        /// What failed, as far as the client may know.
        detail: String,
        /// The client authenticated with HTTP Basic.
        basic: bool,
    },
    /// The directory does not allow client credentials.
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    /// A grant type other than `client_credentials`.
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    /// Worth retrying soon (the directory is not ready yet).
    #[error("temporarily_unavailable: {0}")]
    Unavailable(String),
}

impl TokenError {
    fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::InvalidClient { .. } => "invalid_client",
            TokenError::UnauthorizedClient(_) => "unauthorized_client",
            TokenError::UnsupportedGrantType(_) => "unsupported_grant_type",
            TokenError::Unavailable(_) => "temporarily_unavailable",
        }
    }

    fn description(&self) -> &str {
        match self {
            TokenError::InvalidRequest(d)
            | TokenError::InvalidClient { detail: d, .. }
            | TokenError::UnauthorizedClient(d)
            | TokenError::UnsupportedGrantType(d)
            | TokenError::Unavailable(d) => d,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            // §5.2 allows 401 for invalid_client whichever way the client authenticated, and
            // requires it (with a challenge) for HTTP Basic.
            TokenError::InvalidClient { .. } => StatusCode::UNAUTHORIZED,
            TokenError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Answers of the token endpoint are never cached (RFC 6749 §5.1).
fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.code(), "error_description": self.description()});
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        no_store(headers);
        match &self {
            TokenError::InvalidClient { basic: true, .. } => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"kube-scim\""),
                );
            }
            TokenError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            }
            _ => {}
        }
        response
    }
}

/// A successful token answer (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenAnswer {
    /// The access token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl IntoResponse for TokenAnswer {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::OK, Json(self)).into_response();
        no_store(response.headers_mut());
        response
    }
}

/// One `application/x-www-form-urlencoded` component, decoded (`+` is a space).
fn form_decode(s: &str) -> Option<String> {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// The client id and secret(s) of an `Authorization: Basic` value (RFC 6749 §2.3.1: each
/// form-encoded, then joined with `:` and Base64-encoded).
fn basic_credentials(value: &str) -> Result<(String, Vec<String>), TokenError> {
    let bad = |why: &str| TokenError::InvalidClient {
        detail: format!("the Basic credentials are malformed: {why}"),
        basic: true,
    };
    let decoded = STANDARD
        .decode(value.trim())
        .map_err(|_| bad("not Base64"))?;
    let text = String::from_utf8(decoded).map_err(|_| bad("not UTF-8"))?;
    let (id, secret) = text
        .split_once(':')
        .ok_or_else(|| bad("no ':' between client id and secret"))?;
    let id = form_decode(id).ok_or_else(|| bad("the client id is not form-encoded UTF-8"))?;
    let mut secrets = Vec::new();
    if let Some(s) = form_decode(secret) {
        secrets.push(s);
    }
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_string());
    }
    Ok((id, secrets))
}

/// Reads a token request: the `Authorization` header (if any), the `Content-Type` and the body.
/// Checks its shape only; the credentials are checked by the caller.
pub fn parse_request(
    authorization: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<TokenRequest, TokenError> {
    let basic = authorization
        .map(str::trim)
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, rest)| rest);
    if authorization.is_some() && basic.is_none() {
        return Err(TokenError::InvalidClient {
            detail: "the token endpoint takes client credentials by HTTP Basic or in the body, \
                     not another Authorization scheme"
                .into(),
            basic: false,
        });
    }
    let form = content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|c| {
            c.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err(TokenError::InvalidRequest(
            "send the parameters as application/x-www-form-urlencoded".into(),
        ));
    }
    let mut params: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(body) {
        // §3.2: parameters without a value are treated as omitted; none may repeat.
        if v.is_empty() {
            continue;
        }
        if params.iter().any(|(seen, _)| *seen == k) {
            return Err(TokenError::InvalidRequest(format!(
                "parameter {k} is given more than once"
            )));
        }
        params.push((k.into_owned(), v.into_owned()));
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let grant_type = param("grant_type")
        .ok_or_else(|| TokenError::InvalidRequest("grant_type is missing".into()))?;
    let (body_id, body_secret) = (param("client_id"), param("client_secret"));
    let (assertion_type, assertion) = (param("client_assertion_type"), param("client_assertion"));
    if assertion_type.is_some() || assertion.is_some() {
        if basic.is_some() || body_secret.is_some() {
            return Err(TokenError::InvalidRequest(
                "the client authenticated both with a client assertion and with a client \
                 secret; use one"
                    .into(),
            ));
        }
        let (Some(assertion_type), Some(assertion)) = (assertion_type, assertion) else {
            return Err(TokenError::InvalidRequest(
                "client_assertion_type and client_assertion go together".into(),
            ));
        };
        if assertion_type != super::federation::ASSERTION_TYPE {
            return Err(TokenError::InvalidClient {
                detail: format!(
                    "client_assertion_type must be {}",
                    super::federation::ASSERTION_TYPE
                ),
                basic: false,
            });
        }
        return Ok(TokenRequest {
            auth: ClientAuth::Assertion,
            client_id: body_id.unwrap_or_default(),
            client_secrets: Vec::new(),
            grant_type,
            client_assertion: Some(assertion),
        });
    }
    let (auth, client_id, client_secrets) = match basic {
        Some(value) => {
            if body_secret.is_some() {
                return Err(TokenError::InvalidRequest(
                    "the client authenticated both by HTTP Basic and with client_secret in the \
                     body; use one"
                        .into(),
                ));
            }
            let (id, secrets) = basic_credentials(value)?;
            if body_id.as_ref().is_some_and(|b| *b != id) {
                return Err(TokenError::InvalidRequest(
                    "client_id in the body differs from the one in HTTP Basic".into(),
                ));
            }
            (ClientAuth::Basic, id, secrets)
        }
        None => match (body_id, body_secret) {
            (Some(id), Some(secret)) => (ClientAuth::Body, id, vec![secret]),
            (None, None) => {
                return Err(TokenError::InvalidClient {
                    detail: "no client credentials: send client_id and client_secret by HTTP \
                             Basic or in the body"
                        .into(),
                    basic: false,
                });
            }
            (Some(_), None) => {
                return Err(TokenError::InvalidClient {
                    detail: "client_secret is missing".into(),
                    basic: false,
                });
            }
            (None, Some(_)) => {
                return Err(TokenError::InvalidRequest("client_id is missing".into()));
            }
        },
    };
    Ok(TokenRequest {
        auth,
        client_id,
        client_secrets,
        grant_type,
        client_assertion: None,
    })
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    iat: i64,
    exp: i64,
    jti: String,
}

fn key_label(directory_uid: &str) -> Vec<u8> {
    format!("{KEY_LABEL}{directory_uid}").into_bytes()
}

/// A signed access token for the directory with uid `directory_uid`, under the primary verifier
/// key of `keys`, valid from `now` for `lifetime`.
pub fn issue(
    keys: &KeyRing,
    directory_uid: &str,
    lifetime: Duration,
    now: jiff::Timestamp,
) -> Result<TokenAnswer, jsonwebtoken::errors::Error> {
    let kid = keys.primary_id();
    let secret = keys
        .derive(kid, &key_label(directory_uid))
        .expect("the primary key is in the ring");
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some(TYP.into());
    header.kid = Some(kid.to_string());
    let iat = now.as_second();
    let expires_in = lifetime.as_secs().max(1);
    let claims = Claims {
        iss: ISSUER.into(),
        aud: directory_uid.into(),
        sub: directory_uid.into(),
        iat,
        exp: iat.saturating_add(expires_in as i64),
        jti: uuid::Uuid::new_v4().to_string(),
    };
    let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret))?;
    Ok(TokenAnswer {
        access_token: token,
        token_type: "Bearer".into(),
        expires_in,
    })
}

/// Why an access token was refused; for the log (never the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The token is not one of ours (no `at+jwt` HS256 header).
    #[error("not a kube-scim access token")]
    NotOurs,
    /// Its signing key's verifier key is not held (rotated out, or another installation's).
    #[error("access token signed under verifier key {0:?}, which this server does not hold")]
    UnknownKey(String),
    /// Signature (e.g. another directory's token), issuer, audience or expiry.
    #[error("access token refused: {0}")]
    Invalid(String),
}

/// Whether `token` has the header of one of our access tokens (`typ: at+jwt`, HS256), so that
/// other JWTs (Entra's) are left to their own verifier.
pub fn is_access_token(token: &str) -> bool {
    jsonwebtoken::decode_header(token).is_ok_and(|h| {
        h.alg == Algorithm::HS256
            && h.typ
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(TYP))
    })
}

/// Accepts `token` if it is an unexpired access token issued for the directory with uid
/// `directory_uid` under a verifier key of `keys`.
pub fn verify(
    keys: &KeyRing,
    directory_uid: &str,
    token: &str,
    now: jiff::Timestamp,
) -> Result<(), Rejection> {
    if !is_access_token(token) {
        return Err(Rejection::NotOurs);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::NotOurs)?;
    let kid = header.kid.unwrap_or_default();
    let secret = keys
        .derive(&kid, &key_label(directory_uid))
        .ok_or(Rejection::UnknownKey(kid))?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[directory_uid]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    // The servers' clocks are the issuer's: no skew to allow for, and a short lifetime is exact.
    validation.leeway = 0;
    validation.validate_exp = false;
    let data =
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&secret), &validation)
            .map_err(|e| Rejection::Invalid(describe(&e)))?;
    // jsonwebtoken reads its own clock; the caller's `now` decides expiry.
    if data.claims.exp <= now.as_second() {
        return Err(Rejection::Invalid(format!(
            "expired at {}",
            jiff::Timestamp::from_second(data.claims.exp)
                .map(|t| t.to_string())
                .unwrap_or_default()
        )));
    }
    Ok(())
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => {
            "bad signature (not issued for this directory, or under another key)".into()
        }
        ErrorKind::InvalidAudience => "issued for another directory (aud)".into(),
        ErrorKind::InvalidIssuer => "wrong issuer".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("claim {c} is missing"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
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
        let err =
            parse_request(Some("Basic !!!"), FORM, b"grant_type=client_credentials").unwrap_err();
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
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(b"u")).unwrap();
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

    #[test]
    fn lifetimes_default_to_an_hour_and_are_clamped() {
        assert_eq!(
            OAuthSettings::from_lifetime(None).lifetime,
            DEFAULT_LIFETIME
        );
        assert_eq!(
            OAuthSettings::from_lifetime(Some("90m")).lifetime,
            Duration::from_secs(5400)
        );
        assert_eq!(
            OAuthSettings::from_lifetime(Some("48h")).lifetime,
            Duration::from_secs(6 * 3600)
        );
        // What Microsoft's Validate_Credentials_Test checks: expires_in / 60 in 60..=360.
        for lifetime in [None, Some("60m"), Some("6h"), Some("24h")] {
            let minutes = OAuthSettings::from_lifetime(lifetime).lifetime.as_secs() / 60;
            assert!((60..=360).contains(&minutes), "{lifetime:?}: {minutes}");
        }
        assert_eq!(
            OAuthSettings::from_lifetime(Some("nonsense")).lifetime,
            DEFAULT_LIFETIME
        );
    }
}
