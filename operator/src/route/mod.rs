//! The directory's route, as pure builders: the route of a directory with spec and defaults
//! merged, child object names, and the Tenant URL reported in `status.endpoint`. The objects of
//! each route kind are built in [`ingress`] (an Ingress and, across namespaces, an
//! `ExternalName` Service) and [`gateway`] (an HTTPRoute and, across namespaces, a
//! ReferenceGrant).

mod gateway;
mod ingress;

pub use gateway::*;
pub use ingress::*;

use std::collections::BTreeMap;

use kube_scim_crds::{Provider, RouteKind, ScimDirectorySpec};
use sha2::{Digest, Sha256};

/// Query flag that selects Microsoft Entra ID's RFC 7644 compliant PATCH behaviour.
pub const ENTRA_COMPLIANCE_FLAG: &str = "aadOptscim062020";

/// Where the SCIM server runs and the operator-wide route defaults (from flags).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteDefaults {
    /// Route kind of directories that set no `spec.routeKind`.
    pub kind: RouteKind,
    /// Ingress host when `spec.ingress.host` is empty.
    pub host: Option<String>,
    /// HTTPRoute host when `spec.gateway.host` is empty (else `host`).
    pub gateway_host: Option<String>,
    /// Gateways of HTTPRoutes when `spec.gateway.parentRefs` is empty.
    pub gateway_parents: Vec<ParentRef>,
    /// IngressClass when `spec.ingress.ingressClassName` is empty.
    pub ingress_class: Option<String>,
    /// TLS Secret (in the directory's namespace) when `spec.ingress.tlsSecretName` is empty.
    pub tls_secret: Option<String>,
    /// Annotations on every Ingress; `spec.ingress.annotations` override them key by key.
    pub annotations: BTreeMap<String, String>,
    /// The SCIM server's Service.
    pub server: ServerService,
}

/// The SCIM server's Service.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerService {
    pub name: String,
    pub namespace: String,
    pub port: u16,
    pub cluster_domain: String,
}

impl Default for ServerService {
    fn default() -> Self {
        Self {
            name: "kube-scim-server".into(),
            namespace: "kube-scim".into(),
            port: 80,
            cluster_domain: "cluster.local".into(),
        }
    }
}

impl ServerService {
    /// `<name>.<namespace>.svc.<cluster-domain>`.
    pub fn fqdn(&self) -> String {
        format!(
            "{}.{}.svc.{}",
            self.name, self.namespace, self.cluster_domain
        )
    }
}

/// A Gateway an HTTPRoute attaches to; `namespace` empty means the route's own namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParentRef {
    pub name: String,
    pub namespace: Option<String>,
    pub section: Option<String>,
}

impl ParentRef {
    /// Parses `name`, `namespace/name` or either followed by `:listener`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (gateway, section) = match s.split_once(':') {
            Some((g, l)) => (g, Some(l.to_string())),
            None => (s, None),
        };
        let (namespace, name) = match gateway.split_once('/') {
            Some((ns, n)) => (Some(ns.to_string()), n.to_string()),
            None => (None, gateway.to_string()),
        };
        let valid = |v: &str| {
            !v.is_empty()
                && v.len() <= 253
                && v.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        };
        if !valid(&name)
            || !namespace.as_deref().is_none_or(valid)
            || !section.as_deref().is_none_or(valid)
        {
            return Err(format!(
                "{s:?} is not a Gateway reference: write name, namespace/name, or either followed by :listener"
            ));
        }
        Ok(ParentRef {
            name,
            namespace,
            section,
        })
    }

    /// `namespace/name` (with `:listener`), for messages.
    pub fn display(&self, route_namespace: &str) -> String {
        let ns = self.namespace.as_deref().unwrap_or(route_namespace);
        match &self.section {
            Some(l) => format!("{ns}/{}:{l}", self.name),
            None => format!("{ns}/{}", self.name),
        }
    }
}

/// The route of one directory with spec and defaults merged.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub kind: RouteKind,
    pub host: Option<String>,
    /// Full public path: pathPrefix + `/scim/v2/<namespace>/<name>`.
    pub path: String,
    /// The path on the SCIM server: `/scim/v2/<namespace>/<name>`.
    pub scim_path: String,
    pub ingress_class: Option<String>,
    pub tls_secret: Option<String>,
    /// Whether the public side speaks https: an Ingress with a TLS Secret, or an HTTPRoute
    /// attached to an HTTPS listener (known only once the Gateway is read).
    pub tls: bool,
    pub annotations: BTreeMap<String, String>,
    pub parents: Vec<ParentRef>,
}

/// `/scim/v2/<namespace>/<name>`: the SCIM base path of a directory on the server.
pub fn scim_path(namespace: &str, name: &str) -> String {
    format!("/scim/v2/{namespace}/{name}")
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_ref().filter(|s| !s.is_empty()).cloned()
}

/// The route kind of a directory: `spec.routeKind`, else `None` when `spec.ingress.enabled` is
/// false, else the operator's default.
pub fn kind(spec: &ScimDirectorySpec, defaults: &RouteDefaults) -> RouteKind {
    match spec.route_kind {
        Some(kind) => kind,
        None if !spec.ingress.enabled => RouteKind::None,
        None => defaults.kind,
    }
}

/// Merges the spec's route settings of the directory's route kind with the operator defaults,
/// field by field.
pub fn resolve(
    namespace: &str,
    name: &str,
    spec: &ScimDirectorySpec,
    defaults: &RouteDefaults,
) -> Route {
    let kind = kind(spec, defaults);
    let scim_path = scim_path(namespace, name);
    let with_prefix = |prefix: &Option<String>| {
        let prefix = non_empty(prefix).unwrap_or_default();
        format!("{}{scim_path}", prefix.trim_end_matches('/'))
    };
    if kind == RouteKind::Gateway {
        let gateway = &spec.gateway;
        let parents = if gateway.parent_refs.is_empty() {
            defaults.gateway_parents.clone()
        } else {
            gateway
                .parent_refs
                .iter()
                .map(|p| ParentRef {
                    name: p.name.clone(),
                    namespace: non_empty(&p.namespace),
                    section: non_empty(&p.section_name),
                })
                .collect()
        };
        return Route {
            kind,
            host: non_empty(&gateway.host)
                .or_else(|| non_empty(&defaults.gateway_host))
                .or_else(|| non_empty(&defaults.host)),
            path: with_prefix(&gateway.path_prefix),
            scim_path,
            ingress_class: None,
            tls_secret: None,
            tls: false,
            annotations: BTreeMap::new(),
            parents,
        };
    }
    let ingress = &spec.ingress;
    let mut annotations = defaults.annotations.clone();
    annotations.extend(ingress.annotations.clone());
    let tls_secret =
        non_empty(&ingress.tls_secret_name).or_else(|| non_empty(&defaults.tls_secret));
    Route {
        kind,
        host: non_empty(&ingress.host).or_else(|| non_empty(&defaults.host)),
        path: with_prefix(&ingress.path_prefix),
        scim_path,
        ingress_class: non_empty(&ingress.ingress_class_name)
            .or_else(|| non_empty(&defaults.ingress_class)),
        tls: tls_secret.is_some(),
        tls_secret,
        annotations,
        parents: Vec::new(),
    }
}

/// The Tenant URL: scheme (https with TLS), host, path, and for Entra `?aadOptscim062020`.
pub fn endpoint(route: &Route, provider: Provider) -> Option<String> {
    let host = route.host.as_ref()?;
    let scheme = if route.tls { "https" } else { "http" };
    Some(with_provider_flag(
        format!("{scheme}://{host}{}", route.path),
        provider,
    ))
}

/// Tenant URL when the operator creates no route (kind `None`): the public host if one is known,
/// else the SCIM server Service inside the cluster.
pub fn endpoint_without_route(
    route: &Route,
    namespace: &str,
    name: &str,
    provider: Provider,
    server: &ServerService,
) -> String {
    if let Some(url) = endpoint(route, provider) {
        return url;
    }
    let port = if server.port == 80 {
        String::new()
    } else {
        format!(":{}", server.port)
    };
    with_provider_flag(
        format!(
            "http://{}{port}{}",
            server.fqdn(),
            scim_path(namespace, name)
        ),
        provider,
    )
}

fn with_provider_flag(url: String, provider: Provider) -> String {
    match provider {
        Provider::Entra => format!("{url}?{ENTRA_COMPLIANCE_FLAG}"),
        // Okta appends `/Users` and `/Groups` to the connector base URL as typed: a query
        // string would end up in the middle of every request path.
        Provider::Okta | Provider::Generic => url,
    }
}

/// A child object name `<base><suffix>` that fits `max` characters: a long base is cut and
/// a hash of the full name keeps it unique.
pub fn child_name(base: &str, suffix: &str, max: usize) -> String {
    let full = format!("{base}{suffix}");
    if full.len() <= max {
        return full;
    }
    let digest = Sha256::digest(full.as_bytes());
    let tag: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let keep = max.saturating_sub(suffix.len() + 9);
    let cut: String = base.chars().take(keep).collect();
    format!("{}-{tag}{suffix}", cut.trim_end_matches(['-', '.']))
}

/// Name of the generated token Secret: `<directory>-scim-token`.
pub fn token_secret_name(directory: &str) -> String {
    child_name(directory, "-scim-token", 253)
}

/// Name of the Ingress: `<directory>-scim`.
pub fn ingress_name(directory: &str) -> String {
    child_name(directory, "-scim", 253)
}

/// Name of the `ExternalName` Service (a DNS-1035 label): `scim-<directory>` with dots replaced.
pub fn external_service_name(directory: &str) -> String {
    let base = format!("scim-{}", directory.replace('.', "-"));
    child_name(&base, "", 63)
}

/// Labels of every object the operator creates for a directory.
pub fn child_labels(directory: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            kube_scim_crds::labels::DIRECTORY.to_string(),
            directory.to_string(),
        ),
        (
            kube_scim_crds::labels::MANAGED_BY.to_string(),
            kube_scim_crds::labels::MANAGED_BY_OPERATOR.to_string(),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ScimDirectorySpec {
        ScimDirectorySpec::default()
    }

    #[test]
    fn endpoint_for_entra_with_tls_and_prefix() {
        let mut s = spec();
        s.ingress.host = Some("scim.example.com".into());
        s.ingress.tls_secret_name = Some("scim-tls".into());
        s.ingress.path_prefix = Some("/identity".into());
        let route = resolve("team-a", "contoso", &s, &RouteDefaults::default());
        assert_eq!(route.path, "/identity/scim/v2/team-a/contoso");
        assert_eq!(
            endpoint(&route, Provider::Entra).unwrap(),
            "https://scim.example.com/identity/scim/v2/team-a/contoso?aadOptscim062020"
        );
        assert_eq!(
            endpoint(&route, Provider::Generic).unwrap(),
            "https://scim.example.com/identity/scim/v2/team-a/contoso"
        );
        assert_eq!(
            endpoint(&route, Provider::Okta).unwrap(),
            "https://scim.example.com/identity/scim/v2/team-a/contoso",
            "Okta's connector base URL takes no query string"
        );
    }

    #[test]
    fn endpoint_without_tls_is_http_and_without_host_is_none() {
        let mut s = spec();
        s.ingress.host = Some("scim.example.com".into());
        let route = resolve("default", "contoso", &s, &RouteDefaults::default());
        assert_eq!(
            endpoint(&route, Provider::Generic).unwrap(),
            "http://scim.example.com/scim/v2/default/contoso"
        );
        let route = resolve("default", "contoso", &spec(), &RouteDefaults::default());
        assert_eq!(endpoint(&route, Provider::Entra), None);
    }

    #[test]
    fn spec_fields_override_defaults_one_by_one() {
        let defaults = RouteDefaults {
            host: Some("scim.default.example".into()),
            ingress_class: Some("nginx".into()),
            tls_secret: Some("wildcard-tls".into()),
            annotations: BTreeMap::from([
                ("a".to_string(), "default".to_string()),
                ("b".to_string(), "default".to_string()),
            ]),
            server: ServerService::default(),
            ..Default::default()
        };
        let mut s = spec();
        s.ingress.ingress_class_name = Some("traefik".into());
        s.ingress.annotations = BTreeMap::from([("b".to_string(), "spec".to_string())]);
        let route = resolve("ns", "dir", &s, &defaults);
        assert_eq!(route.host.as_deref(), Some("scim.default.example"));
        assert_eq!(route.ingress_class.as_deref(), Some("traefik"));
        assert_eq!(route.tls_secret.as_deref(), Some("wildcard-tls"));
        assert_eq!(route.annotations["a"], "default");
        assert_eq!(route.annotations["b"], "spec");
        assert_eq!(
            endpoint(&route, Provider::Entra).unwrap(),
            "https://scim.default.example/scim/v2/ns/dir?aadOptscim062020"
        );
    }

    #[test]
    fn without_ingress_the_endpoint_falls_back_to_the_service() {
        let server = ServerService {
            port: 8080,
            ..Default::default()
        };
        let route = resolve("ns", "dir", &spec(), &RouteDefaults::default());
        assert_eq!(
            endpoint_without_route(&route, "ns", "dir", Provider::Generic, &server),
            "http://kube-scim-server.kube-scim.svc.cluster.local:8080/scim/v2/ns/dir"
        );
    }

    #[test]
    fn child_names_fit_kubernetes_limits() {
        assert_eq!(token_secret_name("contoso"), "contoso-scim-token");
        assert_eq!(ingress_name("contoso"), "contoso-scim");
        assert_eq!(external_service_name("contoso.prod"), "scim-contoso-prod");
        let long = "a".repeat(80);
        let svc = external_service_name(&long);
        assert!(svc.len() <= 63, "{svc}");
        assert_ne!(
            svc,
            external_service_name(&"a".repeat(81)),
            "hash keeps long names apart"
        );
        let long = "b".repeat(250);
        let secret = token_secret_name(&long);
        assert!(
            secret.len() <= 253 && secret.ends_with("-scim-token"),
            "{secret}"
        );
    }

    #[test]
    fn the_route_kind_comes_from_spec_then_the_legacy_switch_then_defaults() {
        let defaults = RouteDefaults {
            kind: RouteKind::Gateway,
            ..Default::default()
        };
        let mut s = spec();
        assert_eq!(kind(&s, &defaults), RouteKind::Gateway);
        s.ingress.enabled = false;
        assert_eq!(kind(&s, &defaults), RouteKind::None);
        s.route_kind = Some(RouteKind::Ingress);
        assert_eq!(kind(&s, &defaults), RouteKind::Ingress);
    }
}
