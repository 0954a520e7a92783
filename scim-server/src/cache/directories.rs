//! A ScimDirectory as the server needs it ([`DirInfo`]): readiness, the token verifiers and
//! the settings of each authentication method, suspension and the deletion guard, read from
//! the watched object. The methods' settings are here, not in `crate::auth` (which checks
//! credentials against them), so that the cache depends on no authentication code.

use std::time::Duration;

use kube_scim_crds::{AuthMethod, CONDITION_READY, Provider, ScimDirectory};
use kube_scim_runtime::verifier;

use crate::guard::Guard;

/// A directory as the server needs it.
#[derive(Debug, Clone, Default)]
pub struct DirInfo {
    /// Object uid (for ownerReferences, and bound into every token verifier).
    pub uid: String,
    /// Namespace and name, bound into every token verifier.
    pub namespace: String,
    pub name: String,
    /// Ready condition is True.
    pub ready: bool,
    /// Verifiers of valid tokens, bound to this directory: key id, HMAC-SHA256 digest, expiry.
    pub verifiers: Vec<Verifier>,
    /// `spec.provider`: which client's expectations the answers follow (see `dialect`).
    pub provider: Provider,
    /// `BearerToken` is not among `spec.auth.methods`: the bearer token opens nothing.
    pub no_bearer: bool,
    /// With method `EntraToken`: the tenant (and applications) whose Entra-issued tokens open it.
    pub entra: Option<EntraAuth>,
    /// With method `OAuthClientCredentials`: the token endpoint's settings (its access tokens
    /// open the directory).
    pub oauth: Option<OAuthSettings>,
    /// With method `WorkloadIdentityFederation`: which Entra-signed assertions the token
    /// endpoint exchanges for access tokens (which open the directory).
    pub federation: Option<FederationAuth>,
    /// `spec.suspend`: writes are refused, reads served.
    pub suspended: bool,
    /// `spec.deletionGuard`.
    pub guard: Guard,
}

/// One published verifier, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    /// Id of the verifier key.
    pub key_id: String,
    /// HMAC-SHA256 of the token under that key.
    pub digest: [u8; 32],
    /// After this the verifier opens nothing; `None` for the current token.
    pub expires_at: Option<jiff::Timestamp>,
}

/// A directory's Entra settings, as the server needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntraAuth {
    /// Tenant id (lowercase).
    pub tenant_id: String,
    /// Calling applications allowed (`appid` / `azp`); empty allows none.
    pub allowed_app_ids: Vec<String>,
}

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

/// Default lifetime of an access token.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// Shortest and longest lifetime accepted from a directory's spec (the CRD enforces the same;
/// a longer value admitted by an older CRD is shortened). Microsoft's gallery validation wants
/// `expires_in` of 60 to 360 minutes: the default and the longest pass.
const LIFETIME_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(6 * 3600));

/// A directory's client-credentials settings, as the server needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OAuthSettings {
    /// Lifetime of the access tokens issued.
    pub lifetime: Duration,
}

impl OAuthSettings {
    /// Settings from `spec.auth.oauthClientCredentials.accessTokenLifetime` (already validated
    /// by the CRD; a value it should have refused falls back to the default, and is clamped).
    pub fn from_lifetime(lifetime: Option<&str>) -> OAuthSettings {
        let lifetime = match lifetime.map(kube_scim_runtime::duration::parse) {
            None => DEFAULT_LIFETIME,
            Some(Ok(d)) => d.clamp(LIFETIME_RANGE.0, LIFETIME_RANGE.1),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "accessTokenLifetime is not a duration; using 1h");
                DEFAULT_LIFETIME
            }
        };
        OAuthSettings { lifetime }
    }
}

pub(super) fn dir_info(d: &ScimDirectory) -> DirInfo {
    let st = d.status.as_ref();
    let ready = st.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == CONDITION_READY && c.status == "True")
    });
    let mut unkeyed = 0;
    let verifiers = st
        .map(|s| {
            s.token_verifiers
                .iter()
                .filter_map(|v| {
                    // Only verifiers bound to a directory count: kube-scim 0.1.0's unkeyed
                    // `sha256:` hashes and the unbound `hmac-sha256:` ones of earlier builds
                    // name no directory, so a planted one could not be told from a real one
                    // (issue 27). They open nothing; the operator replaces them at its first
                    // reconcile.
                    let Some((verifier::Kind::Bound, key_id, digest)) = verifier::parse(&v.hash)
                    else {
                        unkeyed += 1;
                        return None;
                    };
                    let expires_at = match v.expires_at.as_deref() {
                        None | Some("") => None,
                        Some(t) => match t.parse::<jiff::Timestamp>() {
                            Ok(ts) => Some(ts),
                            // An unreadable expiry must not make a token valid forever.
                            Err(_) => Some(jiff::Timestamp::UNIX_EPOCH),
                        },
                    };
                    Some(Verifier {
                        key_id: key_id.to_string(),
                        digest,
                        expires_at,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    if unkeyed > 0 {
        tracing::warn!(
            namespace = d.metadata.namespace.as_deref().unwrap_or_default(),
            directory = d.metadata.name.as_deref().unwrap_or_default(),
            unkeyed,
            "ignoring token verifiers not bound to the directory (written by an older operator; the current operator replaces them)"
        );
    }
    DirInfo {
        uid: d.metadata.uid.clone().unwrap_or_default(),
        namespace: d.metadata.namespace.clone().unwrap_or_default(),
        name: d.metadata.name.clone().unwrap_or_default(),
        ready,
        verifiers,
        provider: d.spec.provider,
        no_bearer: !d.spec.auth.allows(AuthMethod::BearerToken),
        entra: d
            .spec
            .auth
            .entra_token
            .as_ref()
            .filter(|_| d.spec.auth.allows(AuthMethod::EntraToken))
            .map(|e| EntraAuth {
                tenant_id: e.tenant_id.to_ascii_lowercase(),
                allowed_app_ids: e.allowed_app_ids.clone(),
            }),
        oauth: d
            .spec
            .auth
            .allows(AuthMethod::OAuthClientCredentials)
            .then(|| {
                OAuthSettings::from_lifetime(
                    d.spec
                        .auth
                        .oauth_client_credentials
                        .as_ref()
                        .and_then(|o| o.access_token_lifetime.as_deref()),
                )
            }),
        federation: d
            .spec
            .auth
            .workload_identity_federation
            .as_ref()
            .filter(|_| d.spec.auth.allows(AuthMethod::WorkloadIdentityFederation))
            .map(|f| FederationAuth {
                tenant_id: f.tenant_id.to_ascii_lowercase(),
                subject: f.subject.clone(),
                // Unset: the token endpoint as the operator published it (not as a request's
                // Host header says it is).
                audience: f
                    .audience
                    .clone()
                    .or_else(|| st.and_then(|s| s.oauth_token_endpoint.clone())),
                lifetime: OAuthSettings::from_lifetime(f.access_token_lifetime.as_deref()).lifetime,
            }),
        suspended: d.spec.suspend,
        guard: Guard::from_spec(&d.spec.deletion_guard),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bound_verifiers_are_kept_and_a_bad_expiry_has_passed() {
        let bound = format!("hmac-sha256-dir:k1:{}", "ab".repeat(32));
        let verifier = |hash: &str, expires_at: Option<&str>| kube_scim_crds::TokenVerifier {
            hash: hash.to_string(),
            fingerprint: None,
            expires_at: expires_at.map(str::to_string),
        };
        let mut d = ScimDirectory::new("d", Default::default());
        d.status = Some(kube_scim_crds::ScimDirectoryStatus {
            token_verifiers: vec![
                verifier(&bound, None),
                verifier(&format!("sha256:{}", "ab".repeat(32)), None),
                verifier(&format!("hmac-sha256-dir:k1:{}", "zz".repeat(32)), None),
                verifier(&bound, Some("soon")),
                // Unbound (earlier builds): names no directory, so never accepted.
                verifier(&format!("hmac-sha256:k1:{}", "cd".repeat(32)), None),
            ],
            ..Default::default()
        });
        let info = dir_info(&d);
        assert_eq!(
            info.verifiers,
            vec![
                Verifier {
                    key_id: "k1".into(),
                    digest: [0xab; 32],
                    expires_at: None,
                },
                Verifier {
                    key_id: "k1".into(),
                    digest: [0xab; 32],
                    expires_at: Some(jiff::Timestamp::UNIX_EPOCH),
                },
            ]
        );
    }

    #[test]
    fn federation_expects_the_configured_audience_else_the_published_token_endpoint() {
        let mut spec = kube_scim_crds::ScimDirectorySpec::default();
        spec.auth.methods = vec![AuthMethod::WorkloadIdentityFederation];
        spec.auth.workload_identity_federation =
            Some(kube_scim_crds::WorkloadIdentityFederationSpec {
                tenant_id: "3F1E4B7A-5C2D-4E8F-9A0B-1C2D3E4F5A6B".into(),
                subject: "sp".into(),
                audience: None,
                access_token_lifetime: Some("2h".into()),
            });
        let mut d = ScimDirectory::new("d", spec);
        let endpoint = "https://scim.example/scim/v2/ns/d/oauth2/token";
        d.status = Some(kube_scim_crds::ScimDirectoryStatus {
            oauth_token_endpoint: Some(endpoint.into()),
            ..Default::default()
        });
        let fed = dir_info(&d).federation.unwrap();
        assert_eq!(fed.tenant_id, "3f1e4b7a-5c2d-4e8f-9a0b-1c2d3e4f5a6b");
        assert_eq!(fed.audience.as_deref(), Some(endpoint));
        assert_eq!(fed.lifetime, std::time::Duration::from_secs(7200));
        // Federation alone does not make the client secret work.
        assert!(dir_info(&d).oauth.is_none());
        d.spec
            .auth
            .workload_identity_federation
            .as_mut()
            .unwrap()
            .audience = Some("app-id".into());
        assert_eq!(
            dir_info(&d).federation.unwrap().audience.as_deref(),
            Some("app-id")
        );
        // The settings without the method open nothing.
        d.spec.auth.methods = vec![AuthMethod::BearerToken];
        assert!(dir_info(&d).federation.is_none());
    }

    #[test]
    fn lifetimes_default_to_an_hour_and_are_clamped() {
        assert_eq!(
            OAuthSettings::from_lifetime(None).lifetime,
            DEFAULT_LIFETIME
        );
        assert_eq!(
            OAuthSettings::from_lifetime(Some("90m")).lifetime,
            Duration::from_secs(5400)
        );
        assert_eq!(
            OAuthSettings::from_lifetime(Some("48h")).lifetime,
            Duration::from_secs(6 * 3600)
        );
        // What Microsoft's Validate_Credentials_Test checks: expires_in / 60 in 60..=360.
        for lifetime in [None, Some("60m"), Some("6h"), Some("24h")] {
            let minutes = OAuthSettings::from_lifetime(lifetime).lifetime.as_secs() / 60;
            assert!((60..=360).contains(&minutes), "{lifetime:?}: {minutes}");
        }
        assert_eq!(
            OAuthSettings::from_lifetime(Some("nonsense")).lifetime,
            DEFAULT_LIFETIME
        );
    }
}
