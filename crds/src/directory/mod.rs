//! [`ScimDirectory`]: one SCIM endpoint for one identity-provider tenant, with the features
//! of its spec in files of their own (`auth`, `route`, `safety`).

pub(crate) mod auth;
pub(crate) mod route;
pub(crate) mod safety;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::SecretKeyRef;
use auth::{AuthMethod, AuthSpec};
use route::{GatewayRouteSpec, IngressSpec, RouteKind};
use safety::DeletionGuardSpec;

/// Condition type: the directory accepts provisioning requests (token and route are in place).
pub const CONDITION_READY: &str = "Ready";
/// Condition type: a bearer token exists and its verifier is published in status.
pub const CONDITION_TOKEN_READY: &str = "TokenReady";
/// Condition type: the Ingress route exists (or routing is disabled on purpose).
pub const CONDITION_ROUTE_READY: &str = "RouteReady";

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
