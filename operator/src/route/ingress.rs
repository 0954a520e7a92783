//! Ingress routes: the Ingress of a directory, the `ExternalName` Service an Ingress needs to
//! reach the SCIM server in another namespace, and the address an Ingress controller published.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec as K8sIngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::{Route, ServerService, child_labels};

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
    use crate::route::{RouteDefaults, resolve};
    use kube_scim_crds::ScimDirectorySpec;

    fn spec() -> ScimDirectorySpec {
        ScimDirectorySpec::default()
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
}
