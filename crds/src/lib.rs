//! kube-scim's Kubernetes API (group `kubescim.io`, version `v1alpha1`).
//!
//! - [`ScimDirectory`]: one SCIM endpoint for one identity-provider tenant, reconciled by the
//!   operator into a bearer token, an Ingress route and a Tenant URL.
//! - [`ScimUser`] / [`ScimGroup`]: one object per SCIM resource, written by the SCIM server. Their
//!   SCIM data lives under `.status` and is written in the same request as the object itself, so
//!   these two CRDs deliberately have **no** status subresource (see [`crds`]).
//!
//! Doc comments on the types below become the `kubectl explain` text of the generated CRDs.
//!
//! Over 600 lines on purpose: the API types with their doc comments, which are the CRDs'
//! `kubectl explain` text; one file is one API version.
//!
//! One file over 600 lines on purpose: the types of the three core kinds and their doc comments
//! (which become `kubectl explain`) read best together; newer kinds have files of their own.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod group_binding;
pub mod labels;
mod webhook;
pub use webhook::*;
mod rollout;
pub use rollout::{MemberRollout, RolloutMember};

pub use group_binding::{ScimGroupBinding, ScimGroupBindingSpec, ScimGroupBindingStatus};
mod safety;

pub use safety::*;

/// API group of every kube-scim resource.
pub const GROUP: &str = "kubescim.io";
/// API version of every kube-scim resource.
pub const VERSION: &str = "v1alpha1";

/// Condition type: the directory accepts provisioning requests (token and route are in place).
pub const CONDITION_READY: &str = "Ready";
/// Condition type: a bearer token exists and its verifier is published in status.
pub const CONDITION_TOKEN_READY: &str = "TokenReady";
/// Condition type: the Ingress route exists (or routing is disabled on purpose).
pub const CONDITION_ROUTE_READY: &str = "RouteReady";

/// Every CRD of kube-scim, exactly as it is installed into a cluster and written to `crds/yaml`.
pub fn crds() -> Vec<CustomResourceDefinition> {
    [
        ScimDirectory::crd(),
        without_status_subresource(ScimUser::crd()),
        without_status_subresource(ScimGroup::crd()),
        ScimWebhook::crd(),
        ScimGroupBinding::crd(),
    ]
    .into_iter()
    .map(unwrap_descriptions)
    .collect()
}

/// Doc comments are wrapped at 100 columns in the source; `kubectl explain` wraps text itself,
/// so single line breaks become spaces (blank lines still separate paragraphs).
fn unwrap_descriptions(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    match v {
                        serde_json::Value::String(text) if key == "description" => {
                            *text = text
                                .split("\n\n")
                                .map(|paragraph| paragraph.replace('\n', " "))
                                .collect::<Vec<_>>()
                                .join("\n\n");
                        }
                        _ => walk(v),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(&crd).expect("a CRD serializes to JSON");
    walk(&mut value);
    serde_json::from_value(value).expect("only descriptions changed")
}

/// The SCIM server writes a user's or group's attributes under `.status` in the same request that
/// creates or updates the object; a status subresource would split that into two writes and let
/// watchers see an object without its attributes.
fn without_status_subresource(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        version.subresources = None;
    }
    crd
}

// ---------------------------------------------------------------------------------------------
// ScimDirectory
// ---------------------------------------------------------------------------------------------

/// A SCIM 2.0 endpoint for one identity-provider tenant (for example one Microsoft Entra ID
/// enterprise application). The operator creates its bearer-token Secret and Ingress route and
/// reports the Tenant URL to paste into the identity provider in `status.endpoint`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubescim.io",
    version = "v1alpha1",
    kind = "ScimDirectory",
    doc = "A SCIM 2.0 endpoint for one identity-provider tenant. Apply it, then paste status.endpoint (the Tenant URL) and the token from status.tokenSecretName into the identity provider.",
    namespaced,
    status = "ScimDirectoryStatus",
    shortname = "scimdir",
    shortname = "scimdirs",
    category = "scim",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.endpoint"}"#,
    printcolumn = r#"{"name":"Users","type":"integer","jsonPath":".status.users"}"#,
    printcolumn = r#"{"name":"Groups","type":"integer","jsonPath":".status.groups"}"#,
    printcolumn = r#"{"name":"Suspended","type":"boolean","jsonPath":".spec.suspend"}"#,
    printcolumn = r#"{"name":"Held Deletions","type":"integer","priority":1,"jsonPath":".status.heldDeletions"}"#,
    printcolumn = r#"{"name":"Last Provisioning","type":"date","priority":1,"jsonPath":".status.lastProvisioningTime"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ScimDirectorySpec {
    /// Human-readable name of the tenant or application, shown in events and logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,

    /// Identity provider that provisions this directory. `entra` (default) enables every
    /// Microsoft Entra ID dialect and quirk; `okta` answers as Okta's SCIM 2.0 client expects
    /// (PATCH answers carry the resource); `generic` expects a strictly RFC 7643/7644 client.
    /// It can be changed at any time: users and groups belong to the directory, not to the
    /// provider.
    #[serde(default)]
    pub provider: Provider,

    /// Which route the operator creates for the directory: `Ingress`, `Gateway` (a Gateway API
    /// HTTPRoute) or `None` (route to the SCIM server Service yourself). Empty: the operator's
    /// default (Helm value `routeDefaults.kind`, default `Ingress`); `ingress.enabled: false`
    /// with no kind also means `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_kind: Option<RouteKind>,

    /// The Ingress, when the route kind is `Ingress`.
    #[serde(default)]
    pub ingress: IngressSpec,

    /// The HTTPRoute, when the route kind is `Gateway`.
    #[serde(default)]
    pub gateway: GatewayRouteSpec,

    /// The bearer token the identity provider sends.
    #[serde(default)]
    pub token: TokenSpec,

    /// How the identity provider may authenticate: the bearer token (default), a token
    /// Microsoft Entra ID issues itself, and/or OAuth 2.0 client credentials.
    #[serde(default)]
    pub auth: AuthSpec,

    /// What happens to this directory's ScimUsers and ScimGroups when the directory is deleted:
    /// `Retain` (default) releases and keeps them; `Delete` removes them with it. (Directories
    /// created before `Retain` became the default keep the `Delete` stored at their creation.)
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Pauses provisioning: the SCIM server answers every write (POST, PUT, PATCH, DELETE)
    /// with 503 and `Retry-After`, which the identity provider retries later; reads keep
    /// working, so its lookups and Test Connection succeed. Condition `Suspended` shows it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,

    /// Holds mass deletions and deactivations instead of applying them (see
    /// `kubescim.io/held-operations`).
    #[serde(default)]
    pub deletion_guard: DeletionGuardSpec,
}

/// Identity provider dialect.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Microsoft Entra ID (Azure AD) provisioning service, both PATCH dialects.
    #[default]
    Entra,
    /// Okta's SCIM 2.0 provisioning (app integration wizard or OIN app): PUT profile updates,
    /// PATCH `active`, group push; every PATCH is answered 200 with the resource.
    Okta,
    /// Any RFC 7643/7644 compliant SCIM client.
    Generic,
}

/// Fate of a directory's users and groups when the directory is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Users and groups are garbage-collected with the directory.
    Delete,
    /// Users and groups are released from the directory (ownerReference removed) and kept:
    /// deleting or pruning a directory by mistake does not deprovision everyone.
    #[default]
    Retain,
}

/// A public DNS name, optionally a wildcard (`*.example.com`): the hosts of both route kinds.
const HOST_PATTERN: &str =
    r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A path prefix of both route kinds: starts with `/`, does not end with `/`.
const PATH_PREFIX_PATTERN: &str = r"^(/[A-Za-z0-9._~-]+)+$";

/// Ingress route for the directory's SCIM path. Fields left empty take the operator's defaults
/// (set through the Helm chart's values).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.tlsSecretName) || has(self.host)",
    "message": "ingress.tlsSecretName requires ingress.host: a TLS certificate is issued for a host name"
}]))]
pub struct IngressSpec {
    /// Create an Ingress for this directory. Set to false when you route to the SCIM server
    /// Service with your own gateway; the Tenant URL then uses `host` (if set) or the Service.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Public DNS name the identity provider reaches, e.g. `scim.example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        regex(
            pattern = HOST_PATTERN
        )
    )]
    pub host: Option<String>,

    /// Path in front of `/scim/v2/<namespace>/<name>` on the public host, for gateways that strip
    /// a prefix before forwarding (e.g. `/identity`). Must start with `/` and not end with `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128), regex(pattern = PATH_PREFIX_PATTERN))]
    pub path_prefix: Option<String>,

    /// IngressClass of the Ingress (e.g. `nginx`). Empty uses the operator's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub ingress_class_name: Option<String>,

    /// Name of a `kubernetes.io/tls` Secret in this namespace for `host`. When set, the Tenant
    /// URL uses https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub tls_secret_name: Option<String>,

    /// Extra annotations for the Ingress (e.g. cert-manager issuer, rate limits).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub annotations: BTreeMap<String, String>,
}

impl Default for IngressSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            host: None,
            path_prefix: None,
            ingress_class_name: None,
            tls_secret_name: None,
            annotations: BTreeMap::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

/// Kind of route the operator creates for a directory.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RouteKind {
    /// A `networking.k8s.io/v1` Ingress.
    #[default]
    Ingress,
    /// A Gateway API `HTTPRoute` attached to an existing Gateway.
    Gateway,
    /// No route object; the Tenant URL uses the public host if one is known, else the SCIM
    /// server's in-cluster Service.
    None,
}

/// Gateway API HTTPRoute for the directory's SCIM path. Fields left empty take the operator's
/// defaults (set through the Helm chart's values). TLS is configured on the Gateway's listener:
/// the Tenant URL is https when the listener the route attaches to is HTTPS.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRouteSpec {
    /// Gateways (and optionally their listeners) the HTTPRoute attaches to. Empty uses the
    /// operator's default Gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub parent_refs: Vec<GatewayParentRef>,

    /// Public DNS name the identity provider reaches (the HTTPRoute's hostname), e.g.
    /// `scim.example.com`. Empty uses the operator's default host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        regex(
            pattern = HOST_PATTERN
        )
    )]
    pub host: Option<String>,

    /// Path in front of `/scim/v2/<namespace>/<name>` on the public host. Must start with `/` and
    /// not end with `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128), regex(pattern = PATH_PREFIX_PATTERN))]
    pub path_prefix: Option<String>,
}

/// A Gateway the directory's HTTPRoute attaches to.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayParentRef {
    /// Name of the Gateway.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Gateway (default: the directory's namespace). The Gateway's listener must
    /// allow routes from the directory's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Name of one listener of the Gateway (default: every listener that accepts the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub section_name: Option<String>,
}

/// Bearer token settings.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.secretRef) && has(self.rotationRequest))",
    "message": "token.rotationRequest cannot be used with token.secretRef: rotate a bring-your-own token by changing the referenced Secret"
}]))]
pub struct TokenSpec {
    /// Use the token in this existing Secret (sealed-secrets, external-secrets, GitOps) instead
    /// of one the operator generates. The operator only reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,

    /// Any value; changing it rotates the generated token. The previous token stays valid for
    /// `gracePeriod` so the identity provider's admin can paste the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub rotation_request: Option<String>,

    /// How long a rotated-out token keeps working, as a duration such as `24h` or `90m`
    /// (default `24h`, at most `2160h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), extend("x-kubernetes-validations" = [{
        "rule": "duration(self) >= duration('0s') && duration(self) <= duration('2160h')",
        "message": "token.gracePeriod must be a duration between 0s and 2160h, e.g. 24h"
    }]))]
    pub grace_period: Option<String>,
}

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

/// A key of a Secret in the directory's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret's data that holds the token (default `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// Observed state of a ScimDirectory, written by the operator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimDirectoryStatus {
    /// `metadata.generation` the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `TokenReady`, `RouteReady`, `Suspended` and `DeletionsHeld`, each with reason,
    /// message and observedGeneration; one per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"])
    )]
    pub conditions: Vec<Condition>,

    /// The Tenant URL to paste into the identity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// Name of the Secret holding the current bearer token (key `token` unless `spec.token.secretRef.key` says otherwise).
    /// With method `OAuthClientCredentials` that token is also the OAuth client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_name: Option<String>,

    /// When the current token was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_created: Option<String>,

    /// Short, non-secret fingerprint of the current token (that of its first verifier), to tell
    /// tokens apart. Keyed like the verifiers, so it changes when the primary verifier key does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_fingerprint: Option<String>,

    /// Keyed hashes of every token that currently opens this directory, one per token and
    /// verifier key; never the tokens themselves, and useless without a key that only the
    /// operator and the SCIM server hold. The SCIM server authenticates against these and needs
    /// no access to Secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub token_verifiers: Vec<TokenVerifier>,

    /// The authentication methods in force (`spec.auth.methods`, as last acted on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub auth_methods: Vec<AuthMethod>,

    /// With method `EntraToken`: the Entra tenant whose tokens open the directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entra_tenant_id: Option<String>,

    /// With method `OAuthClientCredentials` or `WorkloadIdentityFederation`: the token endpoint
    /// to give the identity provider (Entra: *Token endpoint*): the Tenant URL's path (without
    /// Entra's `?aadOptscim062020`) followed by `/oauth2/token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_token_endpoint: Option<String>,

    /// With method `OAuthClientCredentials` or `WorkloadIdentityFederation`: the client id
    /// (Entra: *Client ID*), the directory's uid. With `OAuthClientCredentials` the client secret
    /// is the token in the Secret `tokenSecretName`; federation needs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_client_id: Option<String>,

    /// Number of ScimUsers in the directory (active and inactive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<i64>,

    /// Number of active ScimUsers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_users: Option<i64>,

    /// Number of inactive (deprovisioned but not deleted) ScimUsers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactive_users: Option<i64>,

    /// Number of ScimGroups in the directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<i64>,

    /// Time of the most recent provisioning write to a user or group of this directory (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_provisioning_time: Option<String>,

    /// Deletions the deletion guard holds (objects labelled `kubescim.io/held=delete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_deletions: Option<i64>,

    /// Deactivations the deletion guard holds (objects labelled `kubescim.io/held=deactivate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_deactivations: Option<i64>,
}

/// Verifier of one valid bearer token under one verifier key.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenVerifier {
    /// `hmac-sha256-dir:<key id>:` followed by the lowercase hex HMAC-SHA256 of the directory's
    /// uid, namespace and name and the token, under a key derived from that verifier key: a
    /// verifier opens only the directory it was computed for. (`hmac-sha256:<key id>:<hex>`, the
    /// HMAC of the token alone, written by earlier builds, and `sha256:<hex>`, an unkeyed hash
    /// written by kube-scim 0.1.0, name no directory and open nothing; they are accepted here
    /// only so that such a status can still be read, and the operator replaces them.)
    #[schemars(regex(
        pattern = r"^(hmac-sha256(-dir)?:[A-Za-z0-9][-._A-Za-z0-9]{0,62}:[0-9a-f]{64}|sha256:[0-9a-f]{64})$"
    ))]
    pub hash: String,
    /// Short fingerprint of the token (the first hex digits of the digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub fingerprint: Option<String>,
    /// After this time (RFC 3339) the token no longer opens the directory; empty for the current token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// ScimUser and ScimGroup
// ---------------------------------------------------------------------------------------------

/// The directory a ScimUser or ScimGroup belongs to; it cannot be changed after creation.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self == oldSelf",
    "message": "directoryRef is immutable: a user or group cannot move to another directory"
}]))]
pub struct DirectoryRef {
    /// Name of the ScimDirectory in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A user provisioned by an identity provider through SCIM. Written only by the SCIM server;
/// watch these objects (select by the `kubescim.io/directory` and `kubescim.io/active` labels) to
/// provision, update or deprovision accounts in your application.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubescim.io",
    version = "v1alpha1",
    kind = "ScimUser",
    doc = "A user provisioned through SCIM. Written only by the SCIM server; its SCIM attributes are under status.",
    namespaced,
    status = "ScimUserStatus",
    shortname = "scimuser",
    shortname = "scu",
    category = "scim",
    printcolumn = r#"{"name":"UserName","type":"string","jsonPath":".status.userName"}"#,
    printcolumn = r#"{"name":"Active","type":"boolean","jsonPath":".status.active"}"#,
    printcolumn = r#"{"name":"Directory","type":"string","jsonPath":".spec.directoryRef.name"}"#,
    printcolumn = r#"{"name":"Display Name","type":"string","priority":1,"jsonPath":".status.displayName"}"#,
    printcolumn = r#"{"name":"Email","type":"string","priority":1,"jsonPath":".status.emails[0].value"}"#,
    printcolumn = r#"{"name":"External ID","type":"string","priority":1,"jsonPath":".status.externalId"}"#,
    printcolumn = r#"{"name":"Held","type":"string","priority":1,"jsonPath":".metadata.labels.kubescim\\.io/held"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ScimUserSpec {
    /// The ScimDirectory this user was provisioned through.
    pub directory_ref: DirectoryRef,
}

/// A group provisioned by an identity provider through SCIM. Its members are the ScimUsers and
/// ScimGroups that carry the group's membership label (see the `kubescim.io` labels).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubescim.io",
    version = "v1alpha1",
    kind = "ScimGroup",
    doc = "A group provisioned through SCIM. Written only by the SCIM server; members carry its member.kubescim.io/<id> label.",
    namespaced,
    status = "ScimGroupStatus",
    shortname = "scimgroup",
    shortname = "scg",
    category = "scim",
    printcolumn = r#"{"name":"DisplayName","type":"string","jsonPath":".status.displayName"}"#,
    printcolumn = r#"{"name":"Directory","type":"string","jsonPath":".spec.directoryRef.name"}"#,
    printcolumn = r#"{"name":"External ID","type":"string","priority":1,"jsonPath":".status.externalId"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ScimGroupSpec {
    /// The ScimDirectory this group was provisioned through.
    pub directory_ref: DirectoryRef,
    /// Set only while a replaced member list is being written to the members' labels: the
    /// group's new member list (see `docs/consumers.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_rollout: Option<MemberRollout>,
}

/// The SCIM User resource (RFC 7643 §4.1 and the enterprise extension §4.3), as last written by
/// the identity provider. Attribute names follow SCIM.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimUserStatus {
    /// SCIM `id`, assigned by the server; equals the object's name.
    #[schemars(length(max = 64))]
    pub id: String,
    /// The identity provider's own identifier (Entra: the user's objectId when mapped so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub external_id: Option<String>,
    /// Unique (case-insensitively, per directory) sign-in name, e.g. the Entra UPN.
    #[schemars(length(max = 1024))]
    pub user_name: String,
    /// False once the identity provider deprovisioned (disabled or unassigned) the user.
    #[serde(default = "default_true")]
    pub active: bool,
    /// The user's components of name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    /// Name suitable for display to end users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub display_name: Option<String>,
    /// Casual name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub nick_name: Option<String>,
    /// URL of the user's online profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub profile_url: Option<String>,
    /// Job title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub title: Option<String>,
    /// Relationship to the organisation, e.g. `Employee`, `Contractor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub user_type: Option<String>,
    /// Preferred written or spoken language, e.g. `en-US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub preferred_language: Option<String>,
    /// Default location for localisation, e.g. `en-US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub locale: Option<String>,
    /// Time zone in IANA format, e.g. `Europe/Berlin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub timezone: Option<String>,
    /// Email addresses; Entra sends the work address as `type: work`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub emails: Vec<MultiValuedAttribute>,
    /// Phone numbers (`work`, `mobile`, `fax`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub phone_numbers: Vec<MultiValuedAttribute>,
    /// Instant messaging addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub ims: Vec<MultiValuedAttribute>,
    /// URLs of photos of the user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub photos: Vec<MultiValuedAttribute>,
    /// Physical mailing addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub addresses: Vec<Address>,
    /// Entitlements granted to the user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub entitlements: Vec<MultiValuedAttribute>,
    /// Roles (Entra app roles; a value may itself be a JSON document, kept verbatim).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub roles: Vec<MultiValuedAttribute>,
    /// DER-encoded (base64) X.509 certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub x509_certificates: Vec<MultiValuedAttribute>,
    /// Enterprise User extension (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprise: Option<EnterpriseUser>,
    /// Custom extension attributes, keyed by extension schema URN
    /// (e.g. `urn:ietf:params:scim:schemas:extension:Contoso:2.0:User`), kept as sent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "preserved_object_map")]
    pub extensions: BTreeMap<String, serde_json::Value>,
    /// SCIM resource metadata.
    #[serde(default)]
    pub meta: ResourceMeta,
}

/// The SCIM Group resource (RFC 7643 §4.2). Members are not stored here: each member carries the
/// group's membership label, so no object grows with the size of a group.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimGroupStatus {
    /// SCIM `id`, assigned by the server.
    #[schemars(length(max = 64))]
    pub id: String,
    /// The identity provider's own identifier (Entra: the group's objectId).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub external_id: Option<String>,
    /// Unique (per directory) name of the group.
    #[schemars(length(max = 1024))]
    pub display_name: String,
    /// Custom extension attributes, keyed by extension schema URN, kept as sent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "preserved_object_map")]
    pub extensions: BTreeMap<String, serde_json::Value>,
    /// SCIM resource metadata.
    #[serde(default)]
    pub meta: ResourceMeta,
}

/// Components of a user's name (RFC 7643 §4.1.1).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Name {
    /// Full name, formatted for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub formatted: Option<String>,
    /// Family (last) name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub family_name: Option<String>,
    /// Given (first) name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub given_name: Option<String>,
    /// Middle name(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub middle_name: Option<String>,
    /// Honorific prefix, e.g. `Ms.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub honorific_prefix: Option<String>,
    /// Honorific suffix, e.g. `III`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub honorific_suffix: Option<String>,
}

/// One value of a multi-valued attribute such as emails or phoneNumbers.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultiValuedAttribute {
    /// The value, e.g. an email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8192))]
    pub value: Option<String>,
    /// Human-readable label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub display: Option<String>,
    /// Kind of value, e.g. `work`, `home`, `mobile`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub kind: Option<String>,
    /// Whether this is the preferred value of the attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
}

/// A physical mailing address (RFC 7643 §4.1.2).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// Full address, formatted for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub formatted: Option<String>,
    /// Street address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub street_address: Option<String>,
    /// City or locality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub locality: Option<String>,
    /// State or region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub region: Option<String>,
    /// Postal code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub postal_code: Option<String>,
    /// Country (ISO 3166-1 alpha-2 per RFC 7643).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub country: Option<String>,
    /// Kind of address, e.g. `work`, `home`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub kind: Option<String>,
    /// Whether this is the preferred address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
}

/// Enterprise User extension attributes (RFC 7643 §4.3).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnterpriseUser {
    /// Organisation-assigned employee number (Entra: employeeId).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub employee_number: Option<String>,
    /// Cost center.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub cost_center: Option<String>,
    /// Organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub organization: Option<String>,
    /// Division.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub division: Option<String>,
    /// Department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub department: Option<String>,
    /// The user's manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<Manager>,
}

/// Reference to a user's manager.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Manager {
    /// SCIM `id` of the manager's ScimUser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub value: Option<String>,
    /// URI of the manager's SCIM resource.
    #[serde(default, rename = "$ref", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub reference: Option<String>,
    /// Display name of the manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub display_name: Option<String>,
}

/// SCIM resource metadata (RFC 7643 §3.1). `version` is not stored: it is the object's
/// resourceVersion.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceMeta {
    /// `User` or `Group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub resource_type: Option<String>,
    /// When the resource was created through SCIM (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub created: Option<String>,
    /// When the resource was last changed through SCIM (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub last_modified: Option<String>,
}

/// An object whose values are kept exactly as sent: custom SCIM extensions have schemas the
/// cluster cannot know in advance.
fn preserved_object_map(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}
