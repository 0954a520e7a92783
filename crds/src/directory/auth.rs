//! How clients authenticate to a directory (`spec.auth`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Authentication methods of a directory.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!('EntraToken' in self.methods) || has(self.entraToken)",
    "message": "auth.methods contains EntraToken: set auth.entraToken.tenantId"
}, {
    "rule": "!('WorkloadIdentityFederation' in self.methods) || has(self.workloadIdentityFederation)",
    "message": "auth.methods contains WorkloadIdentityFederation: set auth.workloadIdentityFederation.tenantId and .subject"
}]))]
pub struct AuthSpec {
    /// Methods that open the directory; a request is accepted if any of them accepts it.
    /// `BearerToken` (default): the token from `status.tokenSecretName`. `EntraToken`: a JWT that
    /// Microsoft Entra ID issues for the directory's tenant (leave Entra's Secret Token empty).
    /// `OAuthClientCredentials`: an access token from the directory's OAuth 2.0 token endpoint
    /// (`status.oauthTokenEndpoint`), obtained with client id `status.oauthClientId` and the
    /// token from `status.tokenSecretName` as client secret (Entra gallery applications).
    /// `WorkloadIdentityFederation`: an access token from the same endpoint, obtained with a JWT
    /// assertion that Entra signs (RFC 7523; no shared secret exists).
    #[serde(default = "default_auth_methods")]
    #[schemars(length(min = 1, max = 4), extend("x-kubernetes-list-type" = "set"))]
    pub methods: Vec<AuthMethod>,

    /// The Entra tenant whose tokens open the directory, with method `EntraToken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entra_token: Option<EntraTokenSpec>,

    /// Settings of method `OAuthClientCredentials` (all optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_client_credentials: Option<OAuthClientCredentialsSpec>,

    /// The Entra application whose assertions open the directory, with method
    /// `WorkloadIdentityFederation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity_federation: Option<WorkloadIdentityFederationSpec>,
}

impl Default for AuthSpec {
    fn default() -> Self {
        Self {
            methods: default_auth_methods(),
            entra_token: None,
            oauth_client_credentials: None,
            workload_identity_federation: None,
        }
    }
}

impl AuthSpec {
    /// Whether `method` is one of the directory's methods.
    pub fn allows(&self, method: AuthMethod) -> bool {
        self.methods.contains(&method)
    }
}

fn default_auth_methods() -> Vec<AuthMethod> {
    vec![AuthMethod::BearerToken]
}

/// One way to authenticate to a directory.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AuthMethod {
    /// The long-lived bearer token the operator generates (or takes from `token.secretRef`).
    BearerToken,
    /// A JWT issued by Microsoft Entra ID for the tenant in `auth.entraToken.tenantId`.
    EntraToken,
    /// OAuth 2.0 client credentials (RFC 6749 section 4.4): the identity provider exchanges the
    /// client id and secret at the directory's token endpoint for a short-lived access token.
    OAuthClientCredentials,
    /// Workload identity federation (RFC 7523 client assertions): the identity provider presents
    /// a JWT that Entra signed for the application in `auth.workloadIdentityFederation` at the
    /// directory's token endpoint, for a short-lived access token. No shared secret exists.
    WorkloadIdentityFederation,
}

/// Default lifetime of an OAuth access token (`auth.oauthClientCredentials.accessTokenLifetime`).
pub const DEFAULT_ACCESS_TOKEN_LIFETIME: &str = "1h";

/// OAuth 2.0 client credentials: the client id is the directory's uid
/// (`status.oauthClientId`), the client secret is the directory's token (generated or
/// `token.secretRef`, rotated with `token.rotationRequest` and `token.gracePeriod`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientCredentialsSpec {
    /// How long an access token from the token endpoint opens the directory, as a duration such
    /// as `1h` or `90m` (default `1h`; between `1s` and `6h`). Microsoft's gallery validation
    /// (`Validate_Credentials_Test`) requires 60 minutes to 6 hours; shorter is allowed for other
    /// clients, as a shorter-lived token is the safer one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), extend("x-kubernetes-validations" = [{
        "rule": "duration(self) >= duration('1s') && duration(self) <= duration('6h')",
        "message": "auth.oauthClientCredentials.accessTokenLifetime must be a duration between 1s and 6h, e.g. 1h"
    }]))]
    pub access_token_lifetime: Option<String>,
}

/// Workload identity federation: which Entra-signed assertions the token endpoint exchanges
/// for access tokens. The assertion is an Entra v2.0 access token for the application
/// (`api://<application id>/.default`), signed with one of the tenant's published keys; its
/// issuer is `https://login.microsoftonline.com/<tenantId>/v2.0`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentityFederationSpec {
    /// Directory (tenant) id of the Entra tenant that signs the assertions, a GUID (Entra:
    /// *App registrations* > the application > *Directory (tenant) ID*).
    #[schemars(regex(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ))]
    pub tenant_id: String,

    /// The assertion's required `sub`: the object id of the application's service principal
    /// (Entra: *Enterprise applications* > the application > *Object ID*, reached from the app
    /// registration's *Managed application in local directory*). It tells this application's
    /// assertions from those of every other application of the tenant.
    #[schemars(length(min = 1, max = 256))]
    pub subject: String,

    /// The assertion's required `aud`. With Entra, the application (client) id, which is the
    /// audience of the access tokens Entra issues for it. Unset: the token endpoint URL
    /// (`status.oauthTokenEndpoint`), as RFC 7523 client assertions name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub audience: Option<String>,

    /// How long an access token from the token endpoint opens the directory, as a duration such
    /// as `1h` (default `1h`; between `1s` and `6h`, the longest Microsoft's gallery validation
    /// accepts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), extend("x-kubernetes-validations" = [{
        "rule": "duration(self) >= duration('1s') && duration(self) <= duration('6h')",
        "message": "auth.workloadIdentityFederation.accessTokenLifetime must be a duration between 1s and 6h, e.g. 1h"
    }]))]
    pub access_token_lifetime: Option<String>,
}

/// Entra-issued tokens: which tenant, and which enterprise application.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntraTokenSpec {
    /// Directory (tenant) id of the Entra tenant, a GUID. Only tokens whose issuer is this
    /// tenant's (`https://sts.windows.net/<tenantId>/`) and whose signature verifies against its
    /// published keys are accepted.
    #[schemars(regex(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ))]
    pub tenant_id: String,

    /// Application (client) ids of the enterprise application(s) whose Entra-issued tokens open
    /// the directory: the token's `appid` claim (`azp` in a v2 token) must be one of them (Entra
    /// admin center > Enterprise applications > the application > Overview > Application ID).
    /// Required with method `EntraToken`: the token's audience is the same for every non-gallery
    /// application of the tenant, so without it any of them would open the directory; a
    /// directory without it is refused (`Ready` False, reason `EntraAppNotBound`). One
    /// application opens one directory: a directory naming an application of the tenant that an
    /// older directory already names is refused (`EntraAppConflict`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub allowed_app_ids: Vec<String>,
}
