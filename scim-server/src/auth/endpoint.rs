//! The token endpoint's federation branch: an Entra-signed client assertion (checked by
//! [`crate::federation`]) exchanged for the directory's access token.

use super::{DirRef, DirectoryService};
use crate::oauth::{self, TokenAnswer, TokenError};
use crate::storage::Storage;

impl<S: Storage> DirectoryService<S> {
    /// Answers a token request that authenticates with a client assertion: the directory must
    /// have method `WorkloadIdentityFederation`, a `client_id` (optional) must be its uid, and
    /// the assertion must pass every check, once.
    pub(super) async fn exchange_assertion(
        &self,
        dir: DirRef<'_>,
        request: &oauth::TokenRequest,
    ) -> Result<TokenAnswer, TokenError> {
        let invalid = |detail: &str| TokenError::InvalidClient {
            detail: detail.into(),
            basic: false,
        };
        // Until the assertion has passed, every refusal is the same `invalid_client`, whether
        // the directory is missing, lacks the method or the assertion is wrong: an
        // unauthenticated client must not learn which directories exist or how they
        // authenticate. The log keeps the reason for the administrator.
        let refused = |reason: &str| {
            tracing::info!(
                namespace = dir.ns,
                directory = dir.name,
                reason,
                "client assertion refused"
            );
            invalid("the client assertion is not valid for this directory")
        };
        // Before anything else: a refused grant must not use up the assertion's id, and its
        // answer does not depend on the directory.
        if request.grant_type != oauth::GRANT_TYPE {
            return Err(TokenError::UnsupportedGrantType(format!(
                "grant_type {:?} is not supported; this endpoint serves {}",
                request.grant_type,
                oauth::GRANT_TYPE
            )));
        }
        let Some(info) = self.cache.directory(dir.ns, dir.name) else {
            return Err(refused("there is no such SCIM directory"));
        };
        let Some(auth) = &info.federation else {
            return Err(refused(
                "WorkloadIdentityFederation is not among spec.auth.methods",
            ));
        };
        let Some(verifier) = &self.federation else {
            return Err(refused("this server does not verify client assertions"));
        };
        if !request.client_id.is_empty() && request.client_id != info.uid {
            return Err(refused("the client id is not this directory's"));
        }
        let assertion = request.client_assertion.as_deref().unwrap_or_default();
        let now = jiff::Timestamp::now();
        if let Err(reason) = verifier.verify(auth, assertion, now).await {
            tracing::info!(
                namespace = dir.ns,
                directory = dir.name,
                %reason,
                "client assertion refused"
            );
            return Err(if reason.retryable() {
                TokenError::Unavailable("the assertion cannot be checked now; retry".into())
            } else {
                invalid("the client assertion is not valid for this directory")
            });
        }
        if !info.ready {
            return Err(TokenError::Unavailable(format!(
                "the SCIM directory {} is not ready yet",
                dir.label()
            )));
        }
        let keys = self.keys.current();
        oauth::issue(&keys, &info.uid, auth.lifetime, now).map_err(|e| {
            tracing::error!(error = %e, "cannot sign an access token");
            TokenError::Unavailable("the access token could not be signed".into())
        })
    }
}
