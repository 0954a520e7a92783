//! An assertion's claims against what the directory expects: pure, no keys, no clock of its
//! own.

use serde::Deserialize;

use super::{MAX_LIFETIME, MAX_SKEW};
use crate::auth::entra;

/// Why an assertion was refused. Goes to the log (never the assertion); the client learns only
/// `invalid_client` (or `temporarily_unavailable` when [`Rejection::retryable`]).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not a JWT, or claims of the wrong type.
    #[error("the assertion is not a well-formed JWT: {0}")]
    Malformed(String),
    /// Signed with another algorithm than RS256.
    #[error("assertion algorithm {0} is not accepted (Entra signs with RS256)")]
    Algorithm(String),
    /// No `kid` in the header.
    #[error("the assertion names no signing key (kid)")]
    NoKeyId,
    /// The key could not be had: unknown `kid` after a refetch, or the keys are unreachable.
    #[error("{0}")]
    Key(entra::Rejection),
    /// The signature does not verify.
    #[error("bad signature on the assertion: {0}")]
    Signature(String),
    /// `iss` is not the tenant's issuer.
    #[error("wrong issuer {found:?} (expected {expected})")]
    Issuer {
        /// What the assertion says.
        found: String,
        /// The tenant's issuer.
        expected: String,
    },
    /// `tid` names another tenant.
    #[error("the assertion was issued for tenant {0}, not this directory's")]
    OtherTenant(String),
    /// `sub` is not the configured subject.
    #[error("wrong subject {0:?} (not auth.workloadIdentityFederation.subject)")]
    Subject(String),
    /// `aud` does not name the expected audience.
    #[error("wrong audience {found:?} (expected {expected})")]
    Audience {
        /// What the assertion says.
        found: String,
        /// The configured audience or the token endpoint.
        expected: String,
    },
    /// No audience to expect yet: none configured and no token endpoint published.
    #[error(
        "no audience to check: set auth.workloadIdentityFederation.audience, or wait for status.oauthTokenEndpoint"
    )]
    NoAudience,
    /// A required claim is missing.
    #[error("missing claim {0}")]
    Missing(&'static str),
    /// `exp` has passed.
    #[error("expired (exp is in the past)")]
    Expired,
    /// `nbf` is in the future.
    #[error("not yet valid (nbf is in the future)")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("issued in the future (iat)")]
    IssuedInFuture,
    /// `exp` is too far after `iat` (or after now).
    #[error("lifetime longer than {MAX_LIFETIME} s")]
    TooLong,
    /// Neither `jti` nor `uti`: single use cannot be enforced.
    #[error("the assertion has no id (jti or uti), so its single use cannot be enforced")]
    NoId,
    /// The assertion's id was used already.
    #[error("the assertion was already used (its jti/uti was seen before it expired)")]
    Replayed,
    /// The replay cache is full of unexpired ids.
    #[error("too many unexpired assertions remembered; retry later")]
    ReplayCacheFull,
    /// The assertion's id could not be claimed in the apiserver (nor found claimed): whether
    /// it was used is unknown, so no token.
    #[error("the assertion's single use could not be recorded in the apiserver: {0}")]
    ClaimUnavailable(String),
}

impl Rejection {
    /// Worth retrying later (the fault is not the assertion's): the tenant's keys could not be
    /// fetched, the replay cache is full, or the apiserver did not confirm the claim.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Rejection::Key(entra::Rejection::Fetch(_))
                | Rejection::ReplayCacheFull
                | Rejection::ClaimUnavailable(_)
        )
    }
}

/// `aud`: one audience or several (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, expected: &str) -> bool {
        match self {
            Audience::One(a) => a == expected,
            Audience::Many(list) => list.iter().any(|a| a == expected),
        }
    }

    fn describe(&self) -> String {
        match self {
            Audience::One(a) => a.clone(),
            Audience::Many(list) => list.join(","),
        }
    }
}

/// The claims an assertion is checked on.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct AssertionClaims {
    /// Issuer.
    #[serde(default)]
    pub iss: Option<String>,
    /// Subject.
    #[serde(default)]
    pub sub: Option<String>,
    /// Audience.
    #[serde(default)]
    pub aud: Option<Audience>,
    /// Expiry (Unix seconds).
    #[serde(default)]
    pub exp: Option<i64>,
    /// Not before (Unix seconds).
    #[serde(default)]
    pub nbf: Option<i64>,
    /// Issued at (Unix seconds).
    #[serde(default)]
    pub iat: Option<i64>,
    /// JWT id.
    #[serde(default)]
    pub jti: Option<String>,
    /// Entra's unique token id (its `jti`).
    #[serde(default)]
    pub uti: Option<String>,
    /// Entra's tenant id.
    #[serde(default)]
    pub tid: Option<String>,
}

/// What the claims must say.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// `iss`.
    pub issuer: &'a str,
    /// The tenant (`tid`, when present).
    pub tenant: &'a str,
    /// `sub`.
    pub subject: &'a str,
    /// One of `aud`.
    pub audience: &'a str,
}

/// Claims that passed: the replay key of the assertion and until when it must be remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Issuer and id: ids are unique per issuer (RFC 7519 §4.1.7).
    pub replay_key: String,
    /// Unix second after which the assertion is refused anyway (`exp` plus the skew).
    pub until: i64,
}

/// Checks `claims` against `expected` at Unix second `now`. Pure: no clock, no I/O.
pub fn check_claims(
    claims: &AssertionClaims,
    expected: &Expected<'_>,
    now: i64,
) -> Result<Checked, Rejection> {
    let iss = claims.iss.as_deref().ok_or(Rejection::Missing("iss"))?;
    if iss != expected.issuer {
        return Err(Rejection::Issuer {
            found: iss.to_string(),
            expected: expected.issuer.to_string(),
        });
    }
    if let Some(tid) = &claims.tid
        && !tid.eq_ignore_ascii_case(expected.tenant)
    {
        return Err(Rejection::OtherTenant(tid.clone()));
    }
    let sub = claims.sub.as_deref().ok_or(Rejection::Missing("sub"))?;
    if sub != expected.subject {
        return Err(Rejection::Subject(sub.to_string()));
    }
    let aud = claims.aud.as_ref().ok_or(Rejection::Missing("aud"))?;
    if !aud.contains(expected.audience) {
        return Err(Rejection::Audience {
            found: aud.describe(),
            expected: expected.audience.to_string(),
        });
    }
    let exp = claims.exp.ok_or(Rejection::Missing("exp"))?;
    if exp.saturating_add(MAX_SKEW) <= now {
        return Err(Rejection::Expired);
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf > now.saturating_add(MAX_SKEW))
    {
        return Err(Rejection::NotYetValid);
    }
    if claims
        .iat
        .is_some_and(|iat| iat > now.saturating_add(MAX_SKEW))
    {
        return Err(Rejection::IssuedInFuture);
    }
    // Measured from the earliest claim of its start (a missing iat must not lengthen it), and
    // never longer than the bound from now.
    let start = claims.iat.or(claims.nbf).unwrap_or(now).min(now);
    if exp.saturating_sub(start) > MAX_LIFETIME {
        return Err(Rejection::TooLong);
    }
    let id = claims
        .jti
        .as_deref()
        .or(claims.uti.as_deref())
        .filter(|id| !id.is_empty())
        .ok_or(Rejection::NoId)?;
    Ok(Checked {
        replay_key: format!("{iss}\n{id}"),
        until: exp.saturating_add(MAX_SKEW),
    })
}
