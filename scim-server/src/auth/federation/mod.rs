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
//! `exp`/`nbf`/`iat` with [`MAX_SKEW`] and [`MAX_LIFETIME`] ([`FederationVerifier::verify`]).
//! Last, once the token endpoint has nothing else to refuse, single use of the assertion's id
//! ([`FederationVerifier::use_once`]), so that a refused assertion never uses up its id.
//!
//! Single use holds across replicas: the id is claimed in the apiserver, the only state the
//! replicas share, by creating a `coordination.k8s.io/v1` Lease named after a hash of the
//! issuer and id ([`claim_name`]) in the directory's namespace ([`ClaimStore`], on the
//! apiserver in `kube_store.rs`). The create is atomic: the replica whose create succeeds issues
//! the token, any other gets `409 AlreadyExists` and refuses the assertion as replayed; any
//! other failure refuses it as retryable (503) and forgets it locally, since a token is issued
//! only on a confirmed claim. The in-memory [`ReplayCache`] stays in front as the cheap check of
//! a replay at the same replica. Each Lease records its expiry (annotation
//! `kubescim.io/expires`); after each exchange a bounded sweep deletes the namespace's expired
//! ones (at most [`SWEEP_LIMIT`] looked at per pass, one pass at a time per replica), and every
//! minute each replica sweeps the namespaces where it claimed ids until their last claim has
//! expired ([`FederationVerifier::run_sweeps`]), so a quiet namespace's claims go too.
//!
//! Who else can create Leases in that namespace (a namespace editor, other controllers) can
//! pre-create a claim's name and so make an assertion be refused as replayed: a denial of
//! that one assertion, never a grant, and by someone who can already disturb the directory.
//! Names are a hash, so nobody learns an id from a Lease.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, Validation};
use sha2::{Digest, Sha256};

use super::entra::EntraVerifier;
use crate::cache::{DirRef, FederationAuth};
use crate::storage::{ClaimStore, OnceClaim, StoreError};

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

/// Claim Leases looked at per sweep pass.
pub const SWEEP_LIMIT: usize = 100;

/// Prefix of a claim Lease's name.
pub const CLAIM_PREFIX: &str = "kube-scim-assertion-";

/// The name of the Lease that claims `replay_key` (issuer and id): the prefix and as much of
/// the SHA-256 of the key, in hex, as fits a 63-character name (172 bits: no collision to fear,
/// and the name reveals nothing of the id).
pub fn claim_name(replay_key: &str) -> String {
    let digest = Sha256::digest(replay_key.as_bytes());
    let mut name = String::with_capacity(63);
    name.push_str(CLAIM_PREFIX);
    for b in digest {
        name.push_str(&format!("{b:02x}"));
    }
    name.truncate(63);
    name
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

    /// Forgets `key`: its use was not confirmed, so it must not count as used.
    pub fn forget(&self, key: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
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
    /// Where ids are claimed for every replica; `None` (unit tests only) leaves the per-replica
    /// cache alone.
    claims: Option<Arc<dyn ClaimStore>>,
    /// A sweep is running (one at a time per replica).
    sweeping: Arc<AtomicBool>,
    /// Namespaces where this replica claimed ids, with the latest expiry: swept periodically
    /// ([`FederationVerifier::run_sweeps`]) until that has passed, so the last claims of a
    /// namespace go even when no further exchange there would sweep them.
    pending: Mutex<HashMap<String, i64>>,
}

impl FederationVerifier {
    /// A verifier taking keys from `keys`' per-tenant cache.
    pub fn new(config: FederationConfig, keys: Arc<EntraVerifier>) -> FederationVerifier {
        FederationVerifier {
            config,
            keys,
            replay: ReplayCache::new(REPLAY_CAPACITY),
            claims: None,
            sweeping: Arc::new(AtomicBool::new(false)),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Claims ids in `claims`, shared by every replica.
    pub fn with_claims(mut self, claims: Arc<dyn ClaimStore>) -> FederationVerifier {
        self.claims = Some(claims);
        self
    }

    /// Accepts `assertion` if Entra signed it for `auth`'s tenant, subject and audience and it
    /// is valid at `now`. Its single use is left to [`FederationVerifier::use_once`].
    pub async fn verify(
        &self,
        auth: &FederationAuth,
        assertion: &str,
        now: jiff::Timestamp,
    ) -> Result<Checked, Rejection> {
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
        check_claims(&data.claims, &expected, now.as_second())
    }

    /// Uses the id of an assertion that passed [`FederationVerifier::verify`] for directory
    /// `dir`: refused as replayed if it was used before, at this replica or any other.
    pub async fn use_once(
        &self,
        dir: DirRef<'_>,
        checked: &Checked,
        now: jiff::Timestamp,
    ) -> Result<(), Rejection> {
        let now = now.as_second();
        self.replay
            .use_once(&checked.replay_key, checked.until, now)?;
        let Some(store) = &self.claims else {
            return Ok(());
        };
        let claim = OnceClaim {
            name: claim_name(&checked.replay_key),
            directory: dir.name.to_string(),
            expires: checked.until,
        };
        match store.claim(dir.ns, &claim).await {
            Ok(()) => {}
            Err(StoreError::AlreadyExists) => return Err(Rejection::Replayed),
            Err(e) => {
                self.replay.forget(&checked.replay_key);
                return Err(Rejection::ClaimUnavailable(e.to_string()));
            }
        }
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let last = pending.entry(dir.ns.to_string()).or_insert(claim.expires);
            *last = (*last).max(claim.expires);
        }
        self.sweep(store.clone(), dir.ns.to_string(), now);
        Ok(())
    }

    /// Every `interval`, sweeps the namespaces where this replica claimed ids
    /// ([`FederationVerifier::sweep_pending`]). Runs for the life of the server.
    pub async fn run_sweeps(self: Arc<Self>, interval: std::time::Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sweep_pending(jiff::Timestamp::now().as_second()).await;
        }
    }

    /// One pass over the namespaces where this replica claimed ids: deletes expired claims in
    /// each, and forgets a namespace once its latest claim has expired and a pass found no
    /// more than it could delete.
    pub async fn sweep_pending(&self, now: i64) {
        let Some(store) = &self.claims else {
            return;
        };
        let namespaces: Vec<(String, i64)> = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(ns, last)| (ns.clone(), *last))
            .collect();
        for (ns, last) in namespaces {
            match store.sweep(&ns, now, SWEEP_LIMIT).await {
                Ok(n) if n < SWEEP_LIMIT && last < now => {
                    let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                    // Unless a claim was made there meanwhile.
                    if pending.get(&ns) == Some(&last) {
                        pending.remove(&ns);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(namespace = %ns, error = %e, "sweep of expired assertion claims failed")
                }
            }
        }
    }

    /// Deletes expired claims in `ns` in the background, unless a sweep is running already.
    fn sweep(&self, store: Arc<dyn ClaimStore>, ns: String, now: i64) {
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let sweeping = self.sweeping.clone();
        tokio::spawn(async move {
            match store.sweep(&ns, now, SWEEP_LIMIT).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(namespace = %ns, deleted = n, "expired assertion claims deleted")
                }
                Err(e) => {
                    tracing::warn!(namespace = %ns, error = %e, "sweep of expired assertion claims failed")
                }
            }
            sweeping.store(false, Ordering::Release);
        });
    }
}

#[cfg(test)]
mod tests;
