//! Tokens that Microsoft Entra ID issues itself (the enterprise application's Secret Token left
//! empty): a JWT signed with one of the tenant's published keys, issuer
//! `https://sts.windows.net/<tenant id>/`, audience [`SCIM_AUDIENCE`]. No shared secret exists.
//!
//! The audience is the same for every non-gallery application of the tenant, so the token is
//! bound to the directory's enterprise application by its `appid` (`azp` in a v2 token): a
//! directory must name its application(s) in `allowedAppIds` (a token for a directory that names
//! none is refused, and the operator refuses such a directory), and the operator lets one
//! application open one directory only (`operator/src/directory/entra.rs`).
//!
//! Keys come from the tenant's OpenID metadata (`jwks_uri`) and are cached per tenant. A token
//! signed with a key not in the cache makes one refetch (at most one attempt per [`MIN_REFRESH`]
//! per tenant, so a flood of made-up `kid`s cannot turn the server into a load generator against
//! Entra), which is how a key rollover is picked up without a restart. The fetch runs outside
//! the cache's lock: a request whose key is cached never waits for a fetch (one fetch per tenant
//! at a time; requests that need it wait for that one).
//!
//! Only RS256 is accepted, decided before any key is looked at: `alg: none` and HS256 signed
//! with the public key as the HMAC secret (the classic algorithm confusion) never reach the
//! signature check. Key sets are read as jsonwebtoken's `JwkSet`; signature and claim checks are
//! jsonwebtoken's (its RustCrypto backend).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cache::EntraAuth;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

/// Audience of every token Entra issues to a SCIM provisioning client: the application id of
/// Entra's provisioning service.
pub const SCIM_AUDIENCE: &str = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621";

/// Where a tenant's OpenID metadata is, `{tenant}` standing for the tenant id (Entra's v1
/// endpoint, the one whose tokens have the `sts.windows.net` issuer).
pub const DEFAULT_METADATA_URL: &str =
    "https://login.microsoftonline.com/{tenant}/.well-known/openid-configuration";

/// The issuer a tenant's tokens carry, `{tenant}` standing for the tenant id.
pub const DEFAULT_ISSUER: &str = "https://sts.windows.net/{tenant}/";

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 60;

/// Shortest time between two fetches of one tenant's keys.
pub const MIN_REFRESH: Duration = Duration::from_secs(5);

/// Cached keys older than this are refetched on the next token (Entra rolls keys over every
/// few weeks and publishes the next one in advance).
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Metadata and key sets larger than this are refused.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Why a token was refused. Goes to the log (never the token); the client is told only that the
/// token is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejection {
    /// Not a JWT, or a header that names no supported algorithm (`alg: none` ends here).
    #[error("not a well-formed JWT: {0}")]
    Malformed(String),
    /// A JWT signed with another algorithm than RS256.
    #[error("algorithm {0} is not accepted (Entra signs with RS256)")]
    Algorithm(String),
    /// The header has no `kid`.
    #[error("the token names no signing key (kid)")]
    NoKeyId,
    /// No key of the tenant has this `kid`, even after refetching them.
    #[error("unknown signing key {0:?}: not among the tenant's published keys")]
    UnknownKey(String),
    /// The tenant's keys could not be fetched.
    #[error("the tenant's signing keys could not be fetched: {0}")]
    Fetch(String),
    /// Signature, issuer, audience, expiry or not-before failed.
    #[error("{0}")]
    Invalid(String),
    /// The token's `tid` is another tenant's.
    #[error("the token was issued for tenant {0}, not this directory's")]
    OtherTenant(String),
    /// The calling application is not one of `allowedAppIds`.
    #[error("the calling application {0:?} is not in auth.entraToken.allowedAppIds")]
    App(String),
    /// The directory names no application: no Entra token opens it.
    #[error("auth.entraToken.allowedAppIds is empty: no Entra-issued token opens this directory")]
    NotBound,
}

/// Where to find keys and which issuer to expect; `{tenant}` in either is replaced by the
/// tenant id. Set by whoever runs the server (flags), never by a directory: a directory's
/// author must not make the server fetch arbitrary URLs.
#[derive(Debug, Clone)]
pub struct EntraConfig {
    /// OpenID metadata URL template.
    pub metadata_url: String,
    /// Issuer template.
    pub issuer: String,
    /// Shortest time between two fetches of one tenant's keys.
    pub min_refresh: Duration,
}

impl Default for EntraConfig {
    fn default() -> Self {
        EntraConfig {
            metadata_url: DEFAULT_METADATA_URL.into(),
            issuer: DEFAULT_ISSUER.into(),
            min_refresh: MIN_REFRESH,
        }
    }
}

#[derive(Default)]
struct TenantKeys {
    keys: HashMap<String, DecodingKey>,
    /// Last successful fetch.
    fetched: Option<Instant>,
    /// Last fetch attempt, successful or not: what [`EntraConfig::min_refresh`] spaces.
    attempted: Option<Instant>,
}

/// One tenant's keys, behind a lock never held across a network call, and the lock that makes
/// one fetch at a time.
#[derive(Default)]
struct Tenant {
    keys: Mutex<TenantKeys>,
    fetching: tokio::sync::Mutex<()>,
}

impl Tenant {
    fn keys(&self) -> std::sync::MutexGuard<'_, TenantKeys> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key `kid` if cached, and whether the cache is fresh.
    fn cached(&self, kid: &str) -> (Option<DecodingKey>, bool) {
        let keys = self.keys();
        let fresh = keys.fetched.is_some_and(|t| t.elapsed() < MAX_AGE);
        (keys.keys.get(kid).cloned(), fresh)
    }
}

/// The verifier of Entra-issued tokens, with its per-tenant key cache. One per server.
pub struct EntraVerifier {
    config: EntraConfig,
    http: reqwest::Client,
    tenants: Mutex<HashMap<String, Arc<Tenant>>>,
}

#[derive(serde::Deserialize)]
struct Claims {
    #[serde(default)]
    tid: Option<String>,
    #[serde(default)]
    appid: Option<String>,
    #[serde(default)]
    azp: Option<String>,
}

/// Whether `s` is a GUID: tenant ids are put into URLs.
fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl EntraVerifier {
    /// A verifier with an empty cache.
    pub fn new(config: EntraConfig) -> anyhow::Result<EntraVerifier> {
        kube_scim_runtime::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            // The metadata URL is the cluster operator's; a proxy in the environment is not.
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(EntraVerifier {
            config,
            http,
            tenants: Mutex::new(HashMap::new()),
        })
    }

    /// Accepts `token` if it is a valid Entra-issued token for `auth`'s tenant and application.
    pub async fn verify(&self, auth: &EntraAuth, token: &str) -> Result<(), Rejection> {
        let tenant = auth.tenant_id.to_ascii_lowercase();
        if !is_guid(&tenant) {
            return Err(Rejection::Invalid(format!(
                "tenant id {tenant:?} is not a GUID"
            )));
        }
        // Before any key is fetched: the audience alone binds the token to no application.
        if auth.allowed_app_ids.iter().all(|a| a.trim().is_empty()) {
            return Err(Rejection::NotBound);
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| Rejection::Malformed(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(Rejection::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.ok_or(Rejection::NoKeyId)?;
        let key = self.key(&tenant, &kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[self.config.issuer.replace("{tenant}", &tenant)]);
        validation.set_audience(&[SCIM_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| Rejection::Invalid(describe(&e)))?;
        let claims = data.claims;
        if let Some(tid) = claims.tid
            && !tid.eq_ignore_ascii_case(&tenant)
        {
            return Err(Rejection::OtherTenant(tid));
        }
        let app = claims.appid.or(claims.azp).unwrap_or_default();
        let allowed = !app.is_empty()
            && auth
                .allowed_app_ids
                .iter()
                .any(|a| a.trim().eq_ignore_ascii_case(&app));
        if !allowed {
            return Err(Rejection::App(app));
        }
        Ok(())
    }

    /// The RS256 signing key `kid` of `tenant` (a GUID), from the same per-tenant cache and
    /// refetch rules as Entra-issued bearer tokens: workload identity federation
    /// ([`crate::federation`]) verifies Entra's assertions with it.
    pub async fn signing_key(&self, tenant: &str, kid: &str) -> Result<DecodingKey, Rejection> {
        let tenant = tenant.to_ascii_lowercase();
        if !is_guid(&tenant) {
            return Err(Rejection::Invalid(format!(
                "tenant id {tenant:?} is not a GUID"
            )));
        }
        self.key(&tenant, kid).await
    }

    /// The tenant's key `kid`, from the cache or (if unknown or stale) freshly fetched.
    async fn key(&self, tenant: &str, kid: &str) -> Result<DecodingKey, Rejection> {
        let entry = {
            let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
            tenants.entry(tenant.to_string()).or_default().clone()
        };
        let (cached, fresh) = entry.cached(kid);
        if let (Some(k), true) = (&cached, fresh) {
            return Ok(k.clone());
        }
        // One fetch per tenant at a time. A stale key is served while another request refetches;
        // an unknown one waits for that fetch.
        let _flight = match (entry.fetching.try_lock(), cached) {
            (Ok(guard), _) => guard,
            (Err(_), Some(stale)) => return Ok(stale),
            (Err(_), None) => entry.fetching.lock().await,
        };
        // A fetch that finished while this request waited may have brought the key.
        let may_fetch = {
            let mut keys = entry.keys();
            let fresh = keys.fetched.is_some_and(|t| t.elapsed() < MAX_AGE);
            if fresh && let Some(k) = keys.keys.get(kid) {
                return Ok(k.clone());
            }
            let may = keys
                .attempted
                .is_none_or(|t| t.elapsed() >= self.config.min_refresh);
            if may {
                keys.attempted = Some(Instant::now());
            }
            may
        };
        if may_fetch {
            // The keys' lock is not held here: requests for cached keys go on meanwhile.
            match self.fetch(tenant).await {
                Ok(fetched) => {
                    tracing::info!(
                        tenant,
                        keys = fetched.len(),
                        "fetched the Entra tenant's signing keys"
                    );
                    let mut keys = entry.keys();
                    keys.keys = fetched;
                    keys.fetched = Some(Instant::now());
                }
                // Stale keys beat none while Entra is unreachable.
                Err(e) if entry.keys().keys.is_empty() => return Err(e),
                Err(e) => {
                    tracing::warn!(tenant, error = %e, "refetching the Entra tenant's signing keys failed; using the cached ones")
                }
            }
        }
        entry
            .keys()
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| Rejection::UnknownKey(kid.to_string()))
    }

    async fn fetch(&self, tenant: &str) -> Result<HashMap<String, DecodingKey>, Rejection> {
        let url = self.config.metadata_url.replace("{tenant}", tenant);
        let metadata = self.get_json(&url).await?;
        let jwks_uri = metadata
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| Rejection::Fetch(format!("{url}: no jwks_uri")))?
            .to_string();
        let jwks = self.get_json(&jwks_uri).await?;
        Ok(rsa_keys(&jwks))
    }

    async fn get_json(&self, url: &str) -> Result<Value, Rejection> {
        let fail = |e: String| Rejection::Fetch(format!("{url}: {e}"));
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(fail("document too large".into()));
        }
        let body = resp.bytes().await.map_err(|e| fail(e.to_string()))?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(fail("document too large".into()));
        }
        serde_json::from_slice(&body).map_err(|e| fail(e.to_string()))
    }
}

/// The RSA signing keys of a JWK set (jsonwebtoken's [`JwkSet`]), by `kid`. Skipped: other key
/// types, keys for encryption (`use` other than `sig`, or `key_ops` without `verify`), keys
/// published for another algorithm than RS256, and keys without a `kid` (a token is matched to
/// its key by `kid` only). A document that is not a JWK set gives no keys.
fn rsa_keys(jwks: &Value) -> HashMap<String, DecodingKey> {
    let Ok(set) = JwkSet::deserialize(jwks) else {
        return HashMap::new();
    };
    set.keys
        .iter()
        .filter(|k| matches!(k.algorithm, AlgorithmParameters::RSA(_)))
        .filter(|k| {
            let c = &k.common;
            c.public_key_use
                .as_ref()
                .is_none_or(|u| *u == PublicKeyUse::Signature)
                && c.key_operations
                    .as_ref()
                    .is_none_or(|ops| ops.contains(&KeyOperations::Verify))
                && c.key_algorithm.is_none_or(|a| a == KeyAlgorithm::RS256)
        })
        .filter_map(|k| {
            let kid = k.common.key_id.clone()?;
            let key = DecodingKey::from_jwk(k).ok()?;
            Some((kid, key))
        })
        .collect()
}

/// A log reason for a failed check, in the words an administrator searches for.
fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => "bad signature".into(),
        K::ExpiredSignature => "expired (exp is in the past)".into(),
        K::ImmatureSignature => "not yet valid (nbf is in the future)".into(),
        K::InvalidIssuer => "wrong issuer (not this directory's tenant)".into(),
        K::InvalidAudience => format!("wrong audience (expected {SCIM_AUDIENCE})"),
        K::MissingRequiredClaim(c) => format!("missing claim {c}"),
        K::InvalidAlgorithm => "algorithm does not match the key".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: serde_json::Value) -> String {
        use base64::Engine;
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let claims = serde_json::json!({"aud": SCIM_AUDIENCE, "exp": 4_000_000_000u64});
        format!("{}.{}.c2ln", b64(header), b64(claims))
    }

    /// Refused before any key is fetched: the metadata URL points nowhere, so reaching a fetch
    /// would show up as a `Fetch` rejection.
    #[tokio::test]
    async fn forgeries_are_refused_before_any_key_is_fetched() {
        let verifier = EntraVerifier::new(EntraConfig {
            metadata_url: "http://127.0.0.1:9/{tenant}".into(),
            ..EntraConfig::default()
        })
        .unwrap();
        let auth = EntraAuth {
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            allowed_app_ids: vec!["11111111-2222-3333-4444-555555555555".into()],
        };
        let none = token(serde_json::json!({"alg": "none", "kid": "k"}));
        assert!(matches!(
            verifier.verify(&auth, &none).await,
            Err(Rejection::Malformed(_))
        ));
        let hs = token(serde_json::json!({"alg": "HS256", "kid": "k"}));
        assert_eq!(
            verifier.verify(&auth, &hs).await,
            Err(Rejection::Algorithm("HS256".into()))
        );
        let no_kid = token(serde_json::json!({"alg": "RS256"}));
        assert_eq!(
            verifier.verify(&auth, &no_kid).await,
            Err(Rejection::NoKeyId)
        );
        assert!(matches!(
            verifier.verify(&auth, "not-a-jwt").await,
            Err(Rejection::Malformed(_))
        ));
        let bad_tenant = EntraAuth {
            tenant_id: "common".into(),
            ..auth.clone()
        };
        let rs = token(serde_json::json!({"alg": "RS256", "kid": "k"}));
        assert!(matches!(
            verifier.verify(&bad_tenant, &rs).await,
            Err(Rejection::Invalid(_))
        ));
        // A directory bound to no application: refused before any fetch.
        let unbound = EntraAuth {
            allowed_app_ids: vec![],
            ..auth.clone()
        };
        assert_eq!(
            verifier.verify(&unbound, &rs).await,
            Err(Rejection::NotBound)
        );
        // A well-formed RS256 token does reach the fetch (which fails here).
        assert!(matches!(
            verifier.verify(&auth, &rs).await,
            Err(Rejection::Fetch(_))
        ));
    }

    /// Issue 27, defect 7: a request whose key is cached never waits for another request's
    /// fetch (here one that hangs: the "issuer" accepts connections and never answers).
    #[tokio::test]
    async fn a_cached_key_is_served_while_a_fetch_hangs() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            for _ in 0..8 {
                let Ok((socket, _)) = listener.accept().await else {
                    break;
                };
                held.push(socket);
            }
        });
        let verifier = EntraVerifier::new(EntraConfig {
            metadata_url: format!("http://127.0.0.1:{port}/{{tenant}}"),
            min_refresh: Duration::ZERO,
            ..EntraConfig::default()
        })
        .unwrap();
        let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        {
            let mut tenants = verifier.tenants.lock().unwrap();
            let entry = tenants.entry(tenant.to_string()).or_default();
            let mut keys = entry.keys();
            keys.keys = rsa_keys(
                &serde_json::json!({"keys": [{"kty": "RSA", "kid": "a", "n": RSA_N, "e": "AQAB"}]}),
            );
            keys.fetched = Some(Instant::now());
        }
        let verifier = Arc::new(verifier);
        let hanging = {
            let verifier = verifier.clone();
            tokio::spawn(async move { verifier.key(tenant, "unknown").await.is_ok() })
        };
        // Let the unknown kid's fetch start and hang.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!hanging.is_finished(), "the fetch hangs");
        let cached = tokio::time::timeout(Duration::from_secs(1), verifier.key(tenant, "a")).await;
        assert!(
            matches!(cached, Ok(Ok(_))),
            "a cached key waited for another request's fetch"
        );
        hanging.abort();
        hold.abort();
    }

    const RSA_N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    #[test]
    fn tenant_ids_are_guids() {
        assert!(is_guid("72f988bf-86f1-41af-91ab-2d7cd011db47"));
        assert!(!is_guid("72f988bf-86f1-41af-91ab-2d7cd011db4"));
        assert!(!is_guid("../evil/x-86f1-41af-91ab-2d7cd011db47"));
        assert!(!is_guid("common"));
    }

    #[test]
    fn only_rsa_signing_keys_are_kept() {
        let jwks = serde_json::json!({"keys": [
            {"kty": "RSA", "use": "sig", "kid": "a", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "RSA", "use": "enc", "kid": "b", "n": "AQAB", "e": "AQAB"},
            {"kty": "oct", "kid": "c", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "d", "crv": "P-256", "x": "", "y": ""}
        ]});
        let keys = rsa_keys(&jwks);
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["a"]);
    }

    /// What jsonwebtoken's JWK types let the set say about a key, and older parsing ignored: a
    /// key published for another algorithm or for other operations is not a key for RS256
    /// signatures. A set jsonwebtoken cannot read gives no keys.
    #[test]
    fn keys_for_other_algorithms_or_operations_are_skipped() {
        let key = |extra: serde_json::Value| {
            let mut k = serde_json::json!({"kty": "RSA", "n": RSA_N, "e": "AQAB"});
            k.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            k
        };
        let jwks = serde_json::json!({"keys": [
            key(serde_json::json!({"kid": "rs256", "alg": "RS256", "use": "sig"})),
            key(serde_json::json!({"kid": "verify", "key_ops": ["verify"]})),
            key(serde_json::json!({"kid": "rs384", "alg": "RS384"})),
            key(serde_json::json!({"kid": "oaep", "alg": "RSA-OAEP-256"})),
            key(serde_json::json!({"kid": "made-up", "alg": "XS999"})),
            key(serde_json::json!({"kid": "encrypt", "key_ops": ["encrypt"]})),
            key(serde_json::json!({"alg": "RS256"})),
            {"kty": "RSA", "kid": "no-modulus", "e": "AQAB"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]});
        let mut kids: Vec<_> = rsa_keys(&jwks).into_keys().collect();
        kids.sort();
        assert_eq!(kids, vec!["rs256", "verify"]);
        assert!(rsa_keys(&serde_json::json!({"keys": "none"})).is_empty());
        assert!(rsa_keys(&serde_json::json!({"keys": [{"kid": 7}]})).is_empty());
    }
}
