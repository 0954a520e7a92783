//! The directory's route: an Ingress (and, across namespaces, an `ExternalName` Service) or a
//! Gateway API HTTPRoute (and, across namespaces, a ReferenceGrant), and the Tenant URL reported
//! in `status.endpoint`. Gateway API objects are built as JSON: they are CRDs that k8s-openapi
//! does not type, and a cluster may not have them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec as K8sIngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube_scim_crds::{Provider, RouteKind, ScimDirectorySpec};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// API group of the Gateway API.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

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

/// Name of the ReferenceGrant in the SCIM server's namespace that lets the HTTPRoute of
/// directory `namespace/directory` name the server's Service (`.` cannot occur in a namespace,
/// so the name is unique per directory).
pub fn reference_grant_name(namespace: &str, directory: &str) -> String {
    child_name(&format!("scim-route-{namespace}.{directory}"), "", 253)
}

/// The HTTPRoute of a directory: `route.path` (PathPrefix) on `route.host`, attached to
/// `route.parents`, to the SCIM server Service. A path prefix is rewritten away, so the server
/// sees its own `/scim/v2/<namespace>/<name>` path.
pub fn build_httproute(
    name: &str,
    namespace: &str,
    directory: &str,
    owner: OwnerReference,
    route: &Route,
    server: &ServerService,
) -> Value {
    let parents: Vec<Value> = route
        .parents
        .iter()
        .map(|p| {
            let mut parent = json!({"group": GATEWAY_GROUP, "kind": "Gateway", "name": p.name});
            if let Some(ns) = &p.namespace {
                parent["namespace"] = json!(ns);
            }
            if let Some(section) = &p.section {
                parent["sectionName"] = json!(section);
            }
            parent
        })
        .collect();
    let mut backend =
        json!({"group": "", "kind": "Service", "name": server.name, "port": server.port});
    if namespace != server.namespace {
        backend["namespace"] = json!(server.namespace);
    }
    let mut rule = json!({
        "matches": [{"path": {"type": "PathPrefix", "value": route.path}}],
        "backendRefs": [backend],
    });
    if route.path != route.scim_path {
        rule["filters"] = json!([{
            "type": "URLRewrite",
            "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": route.scim_path}},
        }]);
    }
    json!({
        "apiVersion": format!("{GATEWAY_GROUP}/v1"),
        "kind": "HTTPRoute",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": child_labels(directory),
            "ownerReferences": [owner],
        },
        "spec": {
            "parentRefs": parents,
            "hostnames": route.host.iter().collect::<Vec<_>>(),
            "rules": [rule],
        },
    })
}

/// The ReferenceGrant in the server's namespace that admits HTTPRoutes of `namespace` to the
/// server's Service (Gateway API forbids cross-namespace backends without one). It cannot be
/// owned across namespaces; its labels name the directory and the finalizer removes it.
pub fn build_reference_grant(
    name: &str,
    namespace: &str,
    directory: &str,
    server: &ServerService,
) -> Value {
    let mut labels = child_labels(directory);
    labels.insert(
        kube_scim_crds::labels::DIRECTORY_NAMESPACE.to_string(),
        namespace.to_string(),
    );
    json!({
        "apiVersion": format!("{GATEWAY_GROUP}/v1beta1"),
        "kind": "ReferenceGrant",
        "metadata": {"name": name, "namespace": server.namespace, "labels": labels},
        "spec": {
            "from": [{"group": GATEWAY_GROUP, "kind": "HTTPRoute", "namespace": namespace}],
            "to": [{"group": "", "kind": "Service", "name": server.name}],
        },
    })
}

/// Whether `host` is accepted by a listener `hostname` (exact, or `*.` covering one or more
/// leading labels as the Gateway API defines); a listener without hostname accepts every host.
pub fn listener_accepts(listener_hostname: Option<&str>, host: &str) -> bool {
    match listener_hostname {
        None | Some("") => true,
        Some(pattern) => match pattern.strip_prefix("*.") {
            Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
            None => pattern.eq_ignore_ascii_case(host),
        },
    }
}

/// Why a Gateway cannot carry the route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerProblem {
    /// No listener of that name.
    NoSuchListener(String),
    /// No listener accepts the host.
    NoListenerForHost,
}

/// Whether the listeners of `gateway` (a Gateway object as JSON) that the route attaches to
/// speak https: with `section`, that listener; else every listener whose hostname accepts
/// `host`. https wins when both kinds are attached, as Entra requires https.
pub fn gateway_serves_https(
    gateway: &Value,
    section: Option<&str>,
    host: &str,
) -> Result<bool, ListenerProblem> {
    let listeners = gateway["spec"]["listeners"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let attached: Vec<&Value> = listeners
        .iter()
        .filter(|l| match section {
            Some(name) => l["name"].as_str() == Some(name),
            None => listener_accepts(l["hostname"].as_str(), host),
        })
        .filter(|l| matches!(l["protocol"].as_str(), Some("HTTP" | "HTTPS")))
        .collect();
    if attached.is_empty() {
        return Err(match section {
            Some(name) => ListenerProblem::NoSuchListener(name.to_string()),
            None => ListenerProblem::NoListenerForHost,
        });
    }
    Ok(attached
        .iter()
        .any(|l| l["protocol"].as_str() == Some("HTTPS")))
}

/// What the Gateway controller reports on an HTTPRoute for one parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentVerdict {
    /// No controller has written status for this parent (for this generation) yet.
    Awaiting,
    /// `Accepted` and `ResolvedRefs` are both True.
    Accepted,
    /// `Accepted` is False: the condition's reason and message.
    NotAccepted(String, String),
    /// `ResolvedRefs` is False: the condition's reason and message.
    Unresolved(String, String),
}

/// The verdict of `httproute` (as JSON) for `parent`, from `status.parents`.
pub fn parent_verdict(
    httproute: &Value,
    parent: &ParentRef,
    route_namespace: &str,
) -> ParentVerdict {
    let generation = httproute["metadata"]["generation"].as_i64();
    let wanted_ns = parent.namespace.as_deref().unwrap_or(route_namespace);
    let Some(entry) = httproute["status"]["parents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            let r = &p["parentRef"];
            r["name"].as_str() == Some(parent.name.as_str())
                && r["namespace"].as_str().unwrap_or(route_namespace) == wanted_ns
                && r["sectionName"].as_str() == parent.section.as_deref()
        })
    else {
        return ParentVerdict::Awaiting;
    };
    let condition = |type_: &str| {
        entry["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"].as_str() == Some(type_))
            .filter(|c| {
                // A condition about an older spec says nothing about this one.
                match (c["observedGeneration"].as_i64(), generation) {
                    (Some(seen), Some(current)) => seen >= current,
                    _ => true,
                }
            })
            .map(|c| {
                (
                    c["status"].as_str().unwrap_or_default().to_string(),
                    c["reason"].as_str().unwrap_or_default().to_string(),
                    c["message"].as_str().unwrap_or_default().to_string(),
                )
            })
    };
    match (condition("Accepted"), condition("ResolvedRefs")) {
        (Some((s, reason, message)), _) if s == "False" => {
            ParentVerdict::NotAccepted(reason, message)
        }
        (_, Some((s, reason, message))) if s == "False" => {
            ParentVerdict::Unresolved(reason, message)
        }
        (Some((a, _, _)), Some((r, _, _))) if a == "True" && r == "True" => ParentVerdict::Accepted,
        _ => ParentVerdict::Awaiting,
    }
}

/// The address an Ingress controller published for an Ingress (`status.loadBalancer`), if any.
pub fn ingress_address(ingress: &Ingress) -> Option<String> {
    let entries = ingress
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?;
    entries
        .iter()
        .find_map(|e| e.hostname.clone().or_else(|| e.ip.clone()))
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

/// The Ingress of a directory, routing `route.path` (Prefix) on `route.host` to `backend`.
pub fn build_ingress(
    name: &str,
    namespace: &str,
    directory: &str,
    owner: OwnerReference,
    route: &Route,
    backend_service: &str,
    backend_port: u16,
) -> Ingress {
    Ingress {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(child_labels(directory)),
            annotations: (!route.annotations.is_empty()).then(|| route.annotations.clone()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(K8sIngressSpec {
            ingress_class_name: route.ingress_class.clone(),
            tls: route.tls_secret.as_ref().map(|secret| {
                vec![IngressTLS {
                    hosts: route.host.clone().map(|h| vec![h]),
                    secret_name: Some(secret.clone()),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: route.host.clone(),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(route.path.clone()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: backend_service.to_string(),
                                port: Some(ServiceBackendPort {
                                    number: Some(i32::from(backend_port)),
                                    ..Default::default()
                                }),
                            }),
                            ..Default::default()
                        },
                    }],
                }),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An `ExternalName` Service in the directory's namespace that resolves to the SCIM server
/// Service in another namespace (an Ingress can only name Services of its own namespace).
pub fn build_external_service(
    name: &str,
    namespace: &str,
    directory: &str,
    owner: OwnerReference,
    server: &ServerService,
) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(child_labels(directory)),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some(server.fqdn()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: i32::from(server.port),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
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
    fn ingress_routes_exactly_the_directory_path() {
        let mut s = spec();
        s.ingress.host = Some("scim.example.com".into());
        s.ingress.tls_secret_name = Some("tls".into());
        let route = resolve("ns", "dir", &s, &RouteDefaults::default());
        let ingress = build_ingress(
            "dir-scim",
            "ns",
            "dir",
            OwnerReference::default(),
            &route,
            "svc",
            80,
        );
        let spec = ingress.spec.unwrap();
        let rule = &spec.rules.unwrap()[0];
        assert_eq!(rule.host.as_deref(), Some("scim.example.com"));
        let path = &rule.http.as_ref().unwrap().paths[0];
        assert_eq!(path.path.as_deref(), Some("/scim/v2/ns/dir"));
        assert_eq!(path.path_type, "Prefix");
        assert_eq!(path.backend.service.as_ref().unwrap().name, "svc");
        assert_eq!(spec.tls.unwrap()[0].secret_name.as_deref(), Some("tls"));
    }

    #[test]
    fn gateway_routes_take_their_own_settings_and_defaults() {
        let defaults = RouteDefaults {
            kind: RouteKind::Gateway,
            host: Some("scim.example.com".into()),
            gateway_parents: vec![ParentRef::parse("infra/edge").unwrap()],
            ..Default::default()
        };
        let mut s = spec();
        s.ingress.tls_secret_name = Some("ignored-for-gateways".into());
        let route = resolve("ns", "dir", &s, &defaults);
        assert_eq!(route.kind, RouteKind::Gateway);
        assert_eq!(route.host.as_deref(), Some("scim.example.com"));
        assert_eq!(route.parents[0].namespace.as_deref(), Some("infra"));
        assert!(!route.tls && route.tls_secret.is_none());

        s.gateway.host = Some("id.example.org".into());
        s.gateway.path_prefix = Some("/identity".into());
        s.gateway.parent_refs = vec![kube_scim_crds::GatewayParentRef {
            name: "local".into(),
            namespace: None,
            section_name: Some("https".into()),
        }];
        let route = resolve("ns", "dir", &s, &defaults);
        assert_eq!(route.host.as_deref(), Some("id.example.org"));
        assert_eq!(route.path, "/identity/scim/v2/ns/dir");
        assert_eq!(route.parents[0].display("ns"), "ns/local:https");

        let server = ServerService::default();
        let httproute = build_httproute(
            "dir-scim",
            "ns",
            "dir",
            OwnerReference::default(),
            &route,
            &server,
        );
        let rule = &httproute["spec"]["rules"][0];
        assert_eq!(
            rule["matches"][0]["path"]["value"],
            "/identity/scim/v2/ns/dir"
        );
        assert_eq!(
            rule["filters"][0]["urlRewrite"]["path"]["replacePrefixMatch"], "/scim/v2/ns/dir",
            "the prefix is stripped before the server"
        );
        assert_eq!(rule["backendRefs"][0]["namespace"], "kube-scim");
        assert_eq!(httproute["spec"]["hostnames"][0], "id.example.org");
        assert_eq!(httproute["spec"]["parentRefs"][0]["sectionName"], "https");

        let grant = build_reference_grant(&reference_grant_name("ns", "dir"), "ns", "dir", &server);
        assert_eq!(grant["metadata"]["namespace"], "kube-scim");
        assert_eq!(grant["spec"]["from"][0]["namespace"], "ns");
        assert_eq!(grant["spec"]["to"][0]["name"], "kube-scim-server");
        assert_ne!(
            reference_grant_name("a-b", "c"),
            reference_grant_name("a", "b-c")
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

    #[test]
    fn listeners_decide_the_scheme() {
        let gateway = json!({"spec": {"listeners": [
            {"name": "web", "protocol": "HTTP", "port": 80},
            {"name": "websecure", "protocol": "HTTPS", "port": 443, "hostname": "*.example.com"},
            {"name": "tcp", "protocol": "TCP", "port": 5432},
        ]}});
        assert_eq!(
            gateway_serves_https(&gateway, Some("web"), "a.example.com"),
            Ok(false)
        );
        assert_eq!(
            gateway_serves_https(&gateway, None, "a.example.com"),
            Ok(true)
        );
        assert_eq!(
            gateway_serves_https(&gateway, None, "a.example.org"),
            Ok(false)
        );
        assert_eq!(
            gateway_serves_https(&gateway, Some("tcp"), "a.example.com"),
            Err(ListenerProblem::NoSuchListener("tcp".into()))
        );
        let only_tls = json!({"spec": {"listeners": [
            {"name": "websecure", "protocol": "HTTPS", "hostname": "scim.example.com"},
        ]}});
        assert_eq!(
            gateway_serves_https(&only_tls, None, "other.example.com"),
            Err(ListenerProblem::NoListenerForHost)
        );
        assert!(listener_accepts(Some("*.example.com"), "a.b.example.com"));
        assert!(!listener_accepts(Some("*.example.com"), "example.com"));
        assert!(listener_accepts(
            Some("SCIM.example.com"),
            "scim.example.com"
        ));
    }

    #[test]
    fn httproute_status_gives_a_verdict_per_parent() {
        let parent = ParentRef::parse("edge").unwrap();
        let with = |conditions: Value, generation: i64| {
            json!({
                "metadata": {"generation": generation},
                "status": {"parents": [{
                    "parentRef": {"name": "edge", "namespace": "ns"},
                    "conditions": conditions,
                }]},
            })
        };
        let ok = json!([
            {"type": "Accepted", "status": "True", "observedGeneration": 2},
            {"type": "ResolvedRefs", "status": "True", "observedGeneration": 2},
        ]);
        assert_eq!(
            parent_verdict(&with(ok.clone(), 2), &parent, "ns"),
            ParentVerdict::Accepted
        );
        assert_eq!(
            parent_verdict(&with(ok, 3), &parent, "ns"),
            ParentVerdict::Awaiting,
            "conditions about an older generation"
        );
        let refused = json!([
            {"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners", "message": "no"},
        ]);
        assert_eq!(
            parent_verdict(&with(refused, 1), &parent, "ns"),
            ParentVerdict::NotAccepted("NotAllowedByListeners".into(), "no".into())
        );
        let unresolved = json!([
            {"type": "Accepted", "status": "True"},
            {"type": "ResolvedRefs", "status": "False", "reason": "RefNotPermitted", "message": "grant"},
        ]);
        assert_eq!(
            parent_verdict(&with(unresolved, 1), &parent, "ns"),
            ParentVerdict::Unresolved("RefNotPermitted".into(), "grant".into())
        );
        assert_eq!(
            parent_verdict(&json!({}), &parent, "ns"),
            ParentVerdict::Awaiting
        );
        let other = ParentRef::parse("infra/edge").unwrap();
        assert_eq!(
            parent_verdict(&with(json!([]), 1), &other, "ns"),
            ParentVerdict::Awaiting,
            "a Gateway of the same name in another namespace"
        );
    }
}
