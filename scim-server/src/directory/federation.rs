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
        let Some(info) = self.cache.directory(dir.ns, dir.name) else {
            return Err(invalid(&format!(
                "there is no SCIM directory {}",
                dir.label()
            )));
        };
        if !info.ready {
            return Err(TokenError::Unavailable(format!(
                "the SCIM directory {} is not ready yet",
                dir.label()
            )));
        }
        let Some(auth) = &info.federation else {
            return Err(TokenError::UnauthorizedClient(format!(
                "workload identity federation is not among spec.auth.methods of the SCIM \
                 directory {}",
                dir.label()
            )));
        };
        let Some(verifier) = &self.federation else {
            return Err(TokenError::UnauthorizedClient(
                "this server does not verify client assertions".into(),
            ));
        };
        if !request.client_id.is_empty() && request.client_id != info.uid {
            tracing::info!(
                namespace = dir.ns,
                directory = dir.name,
                "token request refused: the client id is not this directory's"
            );
            return Err(invalid("the client id is not valid for this directory"));
        }
        // Before the assertion is checked: a refused grant must not use up its id.
        if request.grant_type != oauth::GRANT_TYPE {
            return Err(TokenError::UnsupportedGrantType(format!(
                "grant_type {:?} is not supported; this endpoint serves {}",
                request.grant_type,
                oauth::GRANT_TYPE
            )));
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
        let keys = self.keys.current();
        oauth::issue(&keys, &info.uid, auth.lifetime, now).map_err(|e| {
            tracing::error!(error = %e, "cannot sign an access token");
            TokenError::Unavailable("the access token could not be signed".into())
        })
    }
}
