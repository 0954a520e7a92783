//! OAuth 2.0 client credentials (RFC 6749 §4.4) for directories with method
//! `OAuthClientCredentials`: the token endpoint's request and answers, and the access tokens it
//! issues. No Kubernetes, no I/O. The same endpoint and access tokens serve method
//! `WorkloadIdentityFederation`, whose client assertions `super::federation` checks.
//!
//! The client id is the directory's uid; the client secret is the directory's token, checked
//! against the keyed verifiers in its status like a bearer token ([`super::bearer::token_matches`]),
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

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kube_scim_runtime::verifier::KeyRing;
use serde::{Deserialize, Serialize};

mod wire;
pub use wire::*;

/// The token endpoint, under a directory's SCIM path.
pub const TOKEN_PATH: &str = "/oauth2/token";

/// `iss` of every access token.
pub const ISSUER: &str = "kube-scim";

/// `typ` of every access token (RFC 9068's JWT access tokens).
pub const TYP: &str = "at+jwt";

/// The only grant this endpoint serves.
pub const GRANT_TYPE: &str = "client_credentials";

/// Largest token request body read.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// HKDF `info` prefix of the signing keys; the directory's uid follows. Versioned so that a
/// change of token format never verifies old tokens under new rules.
const KEY_LABEL: &str = "kube-scim oauth2 access-token signing key v1 directory=";

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
    let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret)?)?;
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
    let key = DecodingKey::from_secret(&secret).map_err(|e| Rejection::Invalid(describe(&e)))?;
    let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
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
mod tests;
