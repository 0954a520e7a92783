//! Where a directory is reached: its Ingress or Gateway API HTTPRoute.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::default_true;

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
