//! Who may use a directory. Everything that decides whether a credential opens a directory
//! lives here, and nothing else does:
//!
//! - this file: [`Authenticator`], the one entry — a request's credential checked against the
//!   directory's methods (called by the admission middleware before the request takes a slot);
//! - `bearer`: the bearer token against the keyed verifiers the operator publishes;
//! - `oauth`: the token endpoint's wire format, and the access tokens it issues and checks;
//! - `endpoint`: the token endpoint's decisions (client secret, or client assertion);
//! - `federation`: Entra-signed client assertions (workload identity federation);
//! - `entra`: Entra-issued tokens, and the tenant key cache federation shares.
//!
//! The per-directory settings these read (`DirInfo`) are parsed in `cache`; a new method adds
//! its settings there and its check here.

pub mod bearer;
mod endpoint;
pub mod entra;
pub mod federation;
pub mod oauth;

use std::sync::Arc;

use kube_scim_runtime::verifier::{Binding, KeyRing, SharedKeyRing};

use crate::cache::{Cache, DirInfo, DirRef};
use crate::error::Error;
use entra::EntraVerifier;
use federation::FederationVerifier;

/// Checks credentials against the directories in the cache.
pub struct Authenticator {
    cache: Arc<Cache>,
    keys: SharedKeyRing,
    entra: Option<Arc<EntraVerifier>>,
    federation: Option<Arc<FederationVerifier>>,
}

/// The 401 of a request whose credential opens nothing.
fn unauthenticated(token: Option<&str>) -> Error {
    match token {
        None => Error::NoToken,
        Some(_) => Error::Unauthorized("the bearer token is not valid for this directory"),
    }
}

/// About the work of checking `secrets` against a directory that exists, for one that does not:
/// the time of a refusal must not tell which directories exist.
fn pretend_to_check<'a>(
    keys: &KeyRing,
    dir: DirRef<'_>,
    secrets: impl IntoIterator<Item = &'a str>,
) {
    if let Some(key) = keys.keys().first() {
        let binding = Binding {
            uid: "",
            namespace: dir.ns,
            name: dir.name,
        };
        for s in secrets {
            std::hint::black_box(keys.digest(key.id(), &binding, s));
        }
    }
}

impl Authenticator {
    /// Checks credentials against the directories in `cache` with the verifier keys in force
    /// in `keys`.
    pub fn new(cache: Arc<Cache>, keys: SharedKeyRing) -> Self {
        Authenticator {
            cache,
            keys,
            entra: None,
            federation: None,
        }
    }

    /// Also accepts Entra-issued tokens, checked by `entra`.
    pub fn set_entra(&mut self, entra: Arc<EntraVerifier>) {
        self.entra = Some(entra);
    }

    /// Also exchanges Entra-signed client assertions, checked by `federation`.
    pub fn set_federation(&mut self, federation: Arc<FederationVerifier>) {
        self.federation = Some(federation);
    }

    /// The directory, if it exists, is ready and `token` opens it: as its bearer token, as an
    /// access token from its OAuth token endpoint, or as an Entra-issued token, as far as the
    /// directory's methods allow each.
    ///
    /// The credential is checked first: without a valid one the answer is the same 401 whether
    /// the directory exists, is not ready yet, or does not exist, so that a client without a
    /// token cannot learn which directories exist.
    pub async fn authorize(
        &self,
        dir: DirRef<'_>,
        token: Option<&str>,
    ) -> Result<Arc<DirInfo>, Error> {
        let keys = self.keys.current();
        let Some(info) = self.cache.directory(dir.ns, dir.name) else {
            pretend_to_check(&keys, dir, token);
            return Err(unauthenticated(token));
        };
        let ready = info.ready;
        let info = self.authenticate(dir, info, token, &keys).await?;
        if !ready {
            return Err(Error::unavailable(
                format!("the SCIM directory {} is not ready yet", dir.label()),
                10,
            ));
        }
        Ok(info)
    }

    /// Whether `token` opens `info` (readiness aside).
    async fn authenticate(
        &self,
        dir: DirRef<'_>,
        info: Arc<DirInfo>,
        token: Option<&str>,
        keys: &KeyRing,
    ) -> Result<Arc<DirInfo>, Error> {
        let now = jiff::Timestamp::now();
        let bearer = bearer::check(&info, token, keys, now).map(|()| info.clone());
        let (Err(Error::Unauthorized(_)), Some(token)) = (&bearer, token) else {
            return bearer;
        };
        // The reasons below help the administrator; the client learns only that it failed.
        if oauth::is_access_token(token) {
            // Both methods issue the same access tokens from the token endpoint.
            let verdict = if info.oauth.is_some() || info.federation.is_some() {
                oauth::verify(keys, &info.uid, token, now).map_err(|r| r.to_string())
            } else {
                Err("an OAuth access token, but OAuthClientCredentials and \
                     WorkloadIdentityFederation are not among spec.auth.methods"
                    .to_string())
            };
            return match verdict {
                Ok(()) => Ok(info),
                Err(reason) => {
                    tracing::info!(namespace = dir.ns, directory = dir.name, %reason, "token rejected");
                    bearer
                }
            };
        }
        let (Some(entra), Some(verifier)) = (&info.entra, &self.entra) else {
            return bearer;
        };
        match verifier.verify(entra, token).await {
            Ok(()) => Ok(info),
            Err(reason) => {
                tracing::info!(namespace = dir.ns, directory = dir.name, %reason, "token rejected");
                bearer
            }
        }
    }
}
