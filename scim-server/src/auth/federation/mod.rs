//! Workload identity federation (auth method `WorkloadIdentityFederation`): the token endpoint
//! exchanges a JWT client assertion that Microsoft Entra ID signed (RFC 7523 §2.2,
//! `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`) for the same
//! short-lived access token that client credentials get ([`crate::auth::oauth::issue`]). No shared
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
//! [`crate::auth::entra::EntraVerifier`], refetched on an unknown `kid`), the signature
//! (jsonwebtoken), then the claims ([`check_claims`], pure): `iss`, `tid`, `sub`, `aud`,
//! `exp`/`nbf`/`iat` with [`MAX_SKEW`] and [`MAX_LIFETIME`], and last single use of the
//! assertion's id ([`ReplayCache`]), so that a refused assertion never uses up its id.
//!
//! The replay cache is in memory, per replica: with several replicas an assertion can be
//! exchanged at most once per replica within its lifetime. Each exchange yields only an access
//! token of the same directory, for whoever already holds the assertion.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, Validation};

use super::entra::EntraVerifier;
use crate::cache::FederationAuth;

mod claims;
pub use claims::*;

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
mod tests;
