//! The directory's route: Ingress (and, across namespaces, an `ExternalName` Service) and the
//! Tenant URL reported in `status.endpoint`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec as K8sIngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube_scim_crds::{IngressSpec, Provider};
use sha2::{Digest, Sha256};

/// Query flag that selects Microsoft Entra ID's RFC 7644 compliant PATCH behaviour.
pub const ENTRA_COMPLIANCE_FLAG: &str = "aadOptscim062020";

/// Where the SCIM server runs and the operator-wide Ingress defaults (from flags).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteDefaults {
    /// Ingress host when `spec.ingress.host` is empty.
    pub host: Option<String>,
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

/// The route of one directory with spec and defaults merged.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub host: Option<String>,
    /// Full Ingress path: pathPrefix + `/scim/v2/<namespace>/<name>`.
    pub path: String,
    pub ingress_class: Option<String>,
    pub tls_secret: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// `/scim/v2/<namespace>/<name>`: the SCIM base path of a directory on the server.
pub fn scim_path(namespace: &str, name: &str) -> String {
    format!("/scim/v2/{namespace}/{name}")
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_ref().filter(|s| !s.is_empty()).cloned()
}

/// Merges `spec.ingress` with the operator defaults, field by field.
pub fn resolve(namespace: &str, name: &str, spec: &IngressSpec, defaults: &RouteDefaults) -> Route {
    let prefix = non_empty(&spec.path_prefix).unwrap_or_default();
    let mut annotations = defaults.annotations.clone();
    annotations.extend(spec.annotations.clone());
    Route {
        host: non_empty(&spec.host).or_else(|| non_empty(&defaults.host)),
        path: format!(
            "{}{}",
            prefix.trim_end_matches('/'),
            scim_path(namespace, name)
        ),
        ingress_class: non_empty(&spec.ingress_class_name)
            .or_else(|| non_empty(&defaults.ingress_class)),
        tls_secret: non_empty(&spec.tls_secret_name).or_else(|| non_empty(&defaults.tls_secret)),
        annotations,
    }
}

/// The Tenant URL: scheme (https with TLS), host, path, and for Entra `?aadOptscim062020`.
pub fn endpoint(route: &Route, provider: Provider) -> Option<String> {
    let host = route.host.as_ref()?;
    let scheme = if route.tls_secret.is_some() {
        "https"
    } else {
        "http"
    };
    Some(with_provider_flag(
        format!("{scheme}://{host}{}", route.path),
        provider,
    ))
}

/// Tenant URL when the operator creates no Ingress (`spec.ingress.enabled: false`): the
/// public host if one is known, else the SCIM server Service inside the cluster.
pub fn endpoint_without_ingress(
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
        Provider::Generic => url,
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

    fn spec() -> IngressSpec {
        IngressSpec::default()
    }

    #[test]
    fn endpoint_for_entra_with_tls_and_prefix() {
        let mut s = spec();
        s.host = Some("scim.example.com".into());
        s.tls_secret_name = Some("scim-tls".into());
        s.path_prefix = Some("/identity".into());
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
    }

    #[test]
    fn endpoint_without_tls_is_http_and_without_host_is_none() {
        let mut s = spec();
        s.host = Some("scim.example.com".into());
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
        };
        let mut s = spec();
        s.ingress_class_name = Some("traefik".into());
        s.annotations = BTreeMap::from([("b".to_string(), "spec".to_string())]);
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
            endpoint_without_ingress(&route, "ns", "dir", Provider::Generic, &server),
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
        s.host = Some("scim.example.com".into());
        s.tls_secret_name = Some("tls".into());
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
}
