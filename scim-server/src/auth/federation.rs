//! Workload identity federation (auth method `WorkloadIdentityFederation`): the token endpoint
//! exchanges a JWT client assertion that Microsoft Entra ID signed (RFC 7523 §2.2,
//! `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`) for the same
//! short-lived access token that client credentials get ([`crate::oauth::issue`]). No shared
//! secret exists: an in-cluster reader of every Secret and status learns nothing that opens the
//! directory.
//!
//! What Entra presents (Microsoft's gallery validation, `Federated_Identity_Test`): an Entra v2.0
//! access token that the admin's application obtained for itself (`scope=api://<application
//! id>/.default`). Its issuer is the tenant's v2.0 issuer, `sub` the object id of the
//! application's service principal, `aud` the application id, and its unique id is in `uti`
//! (Entra's name for `jti`). Entra's access tokens live 60 to 90 minutes by default, a day at
//! most: far longer than the few minutes RFC 7523 clients usually give an assertion, so the
//! lifetime bound here is Entra's maximum.
//!
//! Checks, in order: RS256 only (decided before any key is looked at, as for Entra tokens), the
//! key by `kid` from the tenant's published keys (the per-tenant cache of
//! [`crate::entra::EntraVerifier`], refetched on an unknown `kid`), the signature
//! (jsonwebtoken), then the claims ([`check_claims`], pure): `iss`, `tid`, `sub`, `aud`,
//! `exp`/`nbf`/`iat` with [`MAX_SKEW`] and [`MAX_LIFETIME`], and last single use of the
//! assertion's id ([`ReplayCache`]), so that a refused assertion never uses up its id.
//!
//! The replay cache is in memory, per replica: with several replicas an assertion can be
//! exchanged at most once per replica within its lifetime. Each exchange yields only an access
//! token of the same directory, for whoever already holds the assertion.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::entra::{self, EntraVerifier};

/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The issuer of a tenant's Entra v2.0 tokens, `{tenant}` standing for the tenant id.
pub const DEFAULT_ISSUER: &str = "https://login.microsoftonline.com/{tenant}/v2.0";

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const MAX_SKEW: i64 = 60;

/// Longest lifetime (`exp` minus `iat`) of an accepted assertion: Entra's longest access token
/// (a token lifetime policy allows up to a day). Also bounds how long an id is remembered.
pub const MAX_LIFETIME: i64 = 24 * 3600;

/// Assertion ids remembered at most (each until its assertion expires).
pub const REPLAY_CAPACITY: usize = 100_000;

/// A directory's federation settings, as the server needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationAuth {
    /// Tenant id (lowercase GUID).
    pub tenant_id: String,
    /// Required `sub`.
    pub subject: String,
    /// Required `aud`: the configured audience, else the token endpoint the operator published
    /// (`None` until it has).
    pub audience: Option<String>,
    /// Lifetime of the access tokens issued.
    pub lifetime: Duration,
}

/// Server-wide settings (flags): which issuer a tenant's assertions carry. Never set by a
/// directory, like the key URLs (see [`crate::entra::EntraConfig`]).
#[derive(Debug, Clone)]
pub struct FederationConfig {
    /// Issuer template, `{tenant}` standing for the tenant id.
    pub issuer: String,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            issuer: DEFAULT_ISSUER.into(),
        }
    }
}

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
}

impl Rejection {
    /// Worth retrying later (the fault is not the assertion's): the tenant's keys could not be
    /// fetched, or the replay cache is full.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Rejection::Key(entra::Rejection::Fetch(_)) | Rejection::ReplayCacheFull
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

/// Assertion ids seen, each until its assertion expires. Bounded: when full, expired ids are
/// dropped; if none has expired, new assertions are refused (retryable) rather than forgetting
/// an unexpired id, which would allow its replay.
pub struct ReplayCache {
    seen: Mutex<HashMap<String, i64>>,
    capacity: usize,
}

impl ReplayCache {
    /// An empty cache for at most `capacity` ids.
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            seen: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// Records `key` as used until Unix second `until`; refused if it is already recorded and
    /// not yet past.
    pub fn use_once(&self, key: &str, until: i64, now: i64) -> Result<(), Rejection> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&held) = seen.get(key)
            && held >= now
        {
            return Err(Rejection::Replayed);
        }
        if seen.len() >= self.capacity && !seen.contains_key(key) {
            seen.retain(|_, held| *held >= now);
            if seen.len() >= self.capacity {
                return Err(Rejection::ReplayCacheFull);
            }
        }
        seen.insert(key.to_string(), until);
        Ok(())
    }

    /// Ids remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no id is remembered.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The verifier of federation assertions. One per server; shares the Entra key cache.
pub struct FederationVerifier {
    config: FederationConfig,
    keys: Arc<EntraVerifier>,
    replay: ReplayCache,
}

impl FederationVerifier {
    /// A verifier taking keys from `keys`' per-tenant cache.
    pub fn new(config: FederationConfig, keys: Arc<EntraVerifier>) -> FederationVerifier {
        FederationVerifier {
            config,
            keys,
            replay: ReplayCache::new(REPLAY_CAPACITY),
        }
    }

    /// Accepts `assertion` once if Entra signed it for `auth`'s tenant, subject and audience and
    /// it is valid at `now`.
    pub async fn verify(
        &self,
        auth: &FederationAuth,
        assertion: &str,
        now: jiff::Timestamp,
    ) -> Result<(), Rejection> {
        let audience = auth.audience.as_deref().ok_or(Rejection::NoAudience)?;
        let header = jsonwebtoken::decode_header(assertion)
            .map_err(|e| Rejection::Malformed(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(Rejection::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.ok_or(Rejection::NoKeyId)?;
        let key = self
            .keys
            .signing_key(&auth.tenant_id, &kid)
            .await
            .map_err(Rejection::Key)?;
        // jsonwebtoken checks the signature only; the claims are checked below against the
        // caller's clock, so the rules are unit-testable.
        let mut validation = Validation::new(Algorithm::RS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data =
            jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::Json(_) => Rejection::Malformed(e.to_string()),
                    _ => Rejection::Signature(format!("{:?}", e.kind())),
                }
            })?;
        let issuer = self.config.issuer.replace("{tenant}", &auth.tenant_id);
        let expected = Expected {
            issuer: &issuer,
            tenant: &auth.tenant_id,
            subject: &auth.subject,
            audience,
        };
        let now = now.as_second();
        let checked = check_claims(&data.claims, &expected, now)?;
        self.replay
            .use_once(&checked.replay_key, checked.until, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "3f1e4b7a-5c2d-4e8f-9a0b-1c2d3e4f5a6b";
    const ISSUER: &str =
        "https://login.microsoftonline.com/3f1e4b7a-5c2d-4e8f-9a0b-1c2d3e4f5a6b/v2.0";
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
                    iss: Some(
                        "https://sts.windows.net/3f1e4b7a-5c2d-4e8f-9a0b-1c2d3e4f5a6b/".into(),
                    ),
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
}
