//! The token endpoint's decisions: a client secret (OAuth client credentials) or an
//! Entra-signed client assertion (checked by [`super::federation`]) exchanged for the
//! directory's access token.

use super::oauth::{self, TokenAnswer, TokenError};
use super::{Authenticator, pretend_to_check};
use crate::cache::DirRef;

impl Authenticator {
    /// Answers a token request to the directory's OAuth 2.0 token endpoint (RFC 6749 §4.4):
    /// the client id must be the directory's uid and the client secret one of its tokens (the
    /// keyed verifiers, as for a bearer token); the directory must have method
    /// `OAuthClientCredentials`. A client assertion instead of a secret is workload identity
    /// federation (see `federation.rs`).
    pub async fn issue_access_token(
        &self,
        dir: DirRef<'_>,
        request: &oauth::TokenRequest,
    ) -> Result<oauth::TokenAnswer, oauth::TokenError> {
        if request.auth == oauth::ClientAuth::Assertion {
            return self.exchange_assertion(dir, request).await;
        }
        let basic = request.auth == oauth::ClientAuth::Basic;
        let info = self.cache.directory(dir.ns, dir.name);
        let keys = self.keys.current();
        let now = jiff::Timestamp::now();
        // The credentials first, and every candidate secret checked (constant time each)
        // whether or not the id matched: a client without them gets the same answer whether the
        // directory exists, is not ready, or lacks the method.
        let secret_ok = match &info {
            Some(info) => request.client_secrets.iter().fold(false, |ok, s| {
                super::bearer::token_matches(info, s, &keys, now) | ok
            }),
            None => {
                pretend_to_check(
                    &keys,
                    dir,
                    request.client_secrets.iter().map(String::as_str),
                );
                false
            }
        };
        let Some(info) = info.filter(|i| secret_ok && request.client_id == i.uid) else {
            tracing::info!(
                namespace = dir.ns,
                directory = dir.name,
                "token request refused: wrong client id or secret, or no such directory"
            );
            return Err(oauth::TokenError::InvalidClient {
                detail: "the client id or secret is not valid for this directory".into(),
                basic,
            });
        };
        if !info.ready {
            return Err(oauth::TokenError::Unavailable(format!(
                "the SCIM directory {} is not ready yet",
                dir.label()
            )));
        }
        let Some(settings) = info.oauth else {
            return Err(oauth::TokenError::UnauthorizedClient(format!(
                "OAuth client credentials are not among spec.auth.methods of the SCIM directory {}",
                dir.label()
            )));
        };
        if request.grant_type != oauth::GRANT_TYPE {
            return Err(oauth::TokenError::UnsupportedGrantType(format!(
                "grant_type {:?} is not supported; this endpoint serves {}",
                request.grant_type,
                oauth::GRANT_TYPE
            )));
        }
        oauth::issue(&keys, &info.uid, settings.lifetime, now).map_err(|e| {
            tracing::error!(error = %e, "cannot sign an access token");
            oauth::TokenError::Unavailable("the access token could not be signed".into())
        })
    }

    /// Answers a token request that authenticates with a client assertion: the directory must
    /// have method `WorkloadIdentityFederation`, a `client_id` (optional) must be its uid, and
    /// the assertion must pass every check, once.
    async fn exchange_assertion(
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
        let refused_because = |reason: super::federation::Rejection| {
            tracing::info!(
                namespace = dir.ns,
                directory = dir.name,
                %reason,
                "client assertion refused"
            );
            if reason.retryable() {
                TokenError::Unavailable("the assertion cannot be checked now; retry".into())
            } else {
                invalid("the client assertion is not valid for this directory")
            }
        };
        let checked = verifier
            .verify(auth, assertion, now)
            .await
            .map_err(refused_because)?;
        if !info.ready {
            return Err(TokenError::Unavailable(format!(
                "the SCIM directory {} is not ready yet",
                dir.label()
            )));
        }
        // Signed before the id is claimed, and handed out only once the claim is confirmed:
        // only an assertion that gets its token uses up its id.
        let keys = self.keys.current();
        let answer = oauth::issue(&keys, &info.uid, auth.lifetime, now).map_err(|e| {
            tracing::error!(error = %e, "cannot sign an access token");
            TokenError::Unavailable("the access token could not be signed".into())
        })?;
        verifier
            .use_once(dir, &checked, now)
            .await
            .map_err(refused_because)?;
        Ok(answer)
    }
}
