//! Routes that really route: the chart on a real node with a real route controller (Traefik,
//! serving both Ingress and the Gateway API), and Entra's requests sent to the controller's
//! address on 127.0.0.1 with each directory's host name, as Entra would reach them from outside.
//!
//! 1. Gateway API CRDs (standard channel) and Traefik are installed, then the chart;
//! 2. `routeKind: Ingress`: Test Connection and the user cycle through the Ingress; RouteReady
//!    carries the address Traefik published;
//! 3. `routeKind: Gateway` from another namespace: the same through an HTTPRoute and a
//!    ReferenceGrant; RouteReady says the Gateway accepted the route;
//! 4. TLS: an Ingress with `tlsSecretName`, and an HTTPRoute on the Gateway's HTTPS listener, each
//!    served over https with a certificate the test issued; the Tenant URLs are https;
//! 5. a directory's host and path never reach another directory;
//! 6. changing a directory's route kind, and deleting it, removes its old route objects;
//! 7. stopping the node leaves nothing behind.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use kube_scim_crds::{GatewayParentRef, RouteKind, ScimDirectory, ScimDirectorySpec, ScimUser};
use kube_scim_tests::entra::{Dialect, EntraClient};
use kube_scim_tests::entra_suite::{self, ScimTarget};
use kube_scim_tests::node::chart::{self, NAMESPACE, apply, diagnostics};
use kube_scim_tests::node::{NodeCluster, Traefik, run_on_node};
use kube_scim_tests::pki::WebCa;
use kube_scim_tests::stack::ready_directory;
use kube_scim_tests::{ControlPlane, eventually};
use serde_json::json;

/// Default host of Ingresses (chart value), and of HTTPRoutes.
const INGRESS_HOST: &str = "scim.kube-scim.test";
const GATEWAY_HOST: &str = "gw.kube-scim.test";
/// Hosts of the TLS directories.
const SECURE_GATEWAY_HOST: &str = "secure.kube-scim.test";
const SECURE_INGRESS_HOST: &str = "tls.kube-scim.test";
/// The Gateway the test runs, as a platform team would.
const GATEWAY_NAMESPACE: &str = "infra";
const GATEWAY: &str = "edge";
const ENTRYPOINTS: &str = "traefik.ingress.kubernetes.io/router.entrypoints";

#[test]
fn directories_are_reached_through_a_real_route_controller() {
    run_on_node(route_through_traefik);
}

async fn route_through_traefik(cluster: &NodeCluster) {
    let plane = cluster.plane();
    let kube = plane.client().await.unwrap();
    chart::build_and_import_images(cluster);
    // Before the operator starts, so that it watches HTTPRoutes.
    let started = Instant::now();
    let traefik = cluster.install_traefik().expect("Traefik is installed");
    eprintln!("Traefik Ready in {:?}", started.elapsed());
    let ca = WebCa::new().unwrap();
    the_platform_teams_gateway(plane, &ca, &traefik);
    chart::install(
        plane,
        &[
            &format!("ingressDefaults.host={INGRESS_HOST}"),
            "ingressDefaults.className=traefik",
            &format!("routeDefaults.gateway.parentRef={GATEWAY_NAMESPACE}/{GATEWAY}:web"),
            &format!("routeDefaults.gateway.host={GATEWAY_HOST}"),
        ],
    );

    let ingress = Route {
        cluster,
        scheme: "http",
        host: INGRESS_HOST,
        port: traefik.http_port,
        ca: None,
        spec: ingress_spec("web"),
    };
    the_entra_suite_passes_through(&kube, &ingress, NAMESPACE).await;
    route_ready_says(&kube, NAMESPACE, "contoso", "IngressReady", "127.0.0.1").await;

    let gateway = Route {
        cluster,
        scheme: "http",
        host: GATEWAY_HOST,
        port: traefik.http_port,
        ca: None,
        spec: ScimDirectorySpec {
            route_kind: Some(RouteKind::Gateway),
            ..Default::default()
        },
    };
    let gateway_ns = plane.namespace("through-gateway").await.unwrap();
    the_entra_suite_passes_through(&kube, &gateway, &gateway_ns).await;
    route_ready_says(&kube, &gateway_ns, "contoso", "RouteAccepted", GATEWAY).await;

    tls_routes_serve_https(plane, &kube, &ca, cluster, &traefik).await;
    hosts_and_paths_stay_apart(&kube, &ingress, &gateway, &gateway_ns).await;
    changing_and_deleting_routes_cleans_up(&kube, &gateway_ns).await;
}

/// The Gateway a platform team runs: a plain listener for every host, and an HTTPS listener for
/// [`SECURE_GATEWAY_HOST`] with a certificate from the test's CA; routes from every namespace.
fn the_platform_teams_gateway(plane: &ControlPlane, ca: &WebCa, traefik: &Traefik) {
    let (cert, key) = ca.serving(&[SECURE_GATEWAY_HOST]).unwrap();
    apply(
        plane,
        &json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": GATEWAY_NAMESPACE}},
            tls_secret(GATEWAY_NAMESPACE, "secure-cert", &cert, &key),
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": {"name": GATEWAY, "namespace": GATEWAY_NAMESPACE},
                "spec": {
                    "gatewayClassName": "traefik",
                    "listeners": [
                        {"name": "web", "protocol": "HTTP", "port": traefik.http_port,
                         "allowedRoutes": {"namespaces": {"from": "All"}}},
                        {"name": "websecure", "protocol": "HTTPS", "port": traefik.https_port,
                         "hostname": SECURE_GATEWAY_HOST,
                         "tls": {"mode": "Terminate", "certificateRefs": [{"name": "secure-cert"}]},
                         "allowedRoutes": {"namespaces": {"from": "All"}}},
                    ],
                },
            },
        ]}),
    );
}

fn tls_secret(namespace: &str, name: &str, cert: &str, key: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"tls.crt": cert, "tls.key": key},
    })
}

/// An Ingress on Traefik's `entrypoint`. (Ingress directories live in the server's namespace
/// here: across namespaces an Ingress reaches the server through an ExternalName Service, which
/// needs cluster DNS that this node does not run.)
fn ingress_spec(entrypoint: &str) -> ScimDirectorySpec {
    let mut spec = ScimDirectorySpec {
        route_kind: Some(RouteKind::Ingress),
        ..Default::default()
    };
    spec.ingress
        .annotations
        .insert(ENTRYPOINTS.into(), entrypoint.into());
    spec
}

/// Entra's view of a directory behind the route controller: the Tenant URL's host resolved to
/// the controller on 127.0.0.1, as public DNS would point at a load balancer.
struct Route<'a> {
    cluster: &'a NodeCluster,
    scheme: &'static str,
    host: &'static str,
    port: u16,
    ca: Option<String>,
    spec: ScimDirectorySpec,
}

impl ScimTarget for Route<'_> {
    fn base_url(&self, namespace: &str, directory: &str) -> String {
        format!(
            "{}://{}:{}/scim/v2/{namespace}/{directory}",
            self.scheme, self.host, self.port
        )
    }

    fn logs(&self) -> String {
        let plane = self.cluster.plane();
        let get = |args: &[&str]| {
            plane
                .kubectl()
                .args(args)
                .output()
                .map(|o| {
                    format!(
                        "\n$ kubectl {}\n{}{}",
                        args.join(" "),
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )
                })
                .unwrap_or_default()
        };
        format!(
            "{}{}{}{}\n--- traefik\n{}",
            diagnostics(plane),
            get(&[
                "get",
                "scimdirectories",
                "-A",
                "-o",
                "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {.status.endpoint} {.status.conditions}{\"\\n\"}{end}"
            ]),
            get(&["get", "httproutes,referencegrants", "-A", "-o", "yaml"]),
            get(&["get", "gateways", "-A", "-o", "yaml"]),
            self.cluster.traefik_logs()
        )
    }

    fn http(&self) -> reqwest::Client {
        let mut builder = kube_scim_tests::http_builder()
            .timeout(Duration::from_secs(60))
            .resolve(
                self.host,
                SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            );
        if let Some(ca) = &self.ca {
            builder = builder
                .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
        }
        builder.build().unwrap()
    }

    fn directory_spec(&self) -> ScimDirectorySpec {
        self.spec.clone()
    }

    fn through_route(&self) -> bool {
        true
    }
}

/// Entra's Test Connection and the user cycle (create, filter, PATCH, DELETE in both dialects)
/// through `route`, each checked on the stored ScimUsers by the suite.
async fn the_entra_suite_passes_through(kube: &Client, route: &Route<'_>, namespace: &str) {
    let started = Instant::now();
    entra_suite::test_connection_answers_an_empty_list_and_refuses_wrong_tokens(
        kube, namespace, route,
    )
    .await;
    entra_suite::user_cycle_in_both_dialects(kube, namespace, route).await;
    eprintln!(
        "Entra suite through {}://{}: {:?}",
        route.scheme,
        route.host,
        started.elapsed()
    );
    let (endpoint, _) = ready_directory(kube, namespace, "contoso", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        endpoint,
        format!(
            "{}://{}/scim/v2/{namespace}/contoso?aadOptscim062020",
            route.scheme, route.host
        ),
        "the Tenant URL is the route that was programmed"
    );
}

/// Waits until `RouteReady` of the directory is True with `reason`, its message naming `needle`.
async fn route_ready_says(kube: &Client, ns: &str, name: &str, reason: &str, needle: &str) {
    let directories: Api<ScimDirectory> = Api::namespaced(kube.clone(), ns);
    eventually(
        &format!("{ns}/{name} RouteReady {reason}"),
        Duration::from_secs(60),
        || async {
            let dir = directories.get(name).await.ok()?;
            let condition = dir
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "RouteReady")?;
            (condition.status == "True"
                && condition.reason == reason
                && condition.message.contains(needle))
            .then_some(())
        },
    )
    .await;
}

async fn create_directory(kube: &Client, ns: &str, name: &str, spec: ScimDirectorySpec) {
    Api::<ScimDirectory>::namespaced(kube.clone(), ns)
        .create(&PostParams::default(), &ScimDirectory::new(name, spec))
        .await
        .unwrap();
}

/// A directory behind TLS answers Test Connection over https with the test CA's certificate
/// and stores a user; its Tenant URL is https.
async fn cycle_over_https(kube: &Client, route: &Route<'_>, ns: &str, name: &str) {
    let (endpoint, token) = ready_directory(kube, ns, name, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e:#}{}", route.logs()));
    assert_eq!(
        endpoint,
        format!(
            "https://{}/scim/v2/{ns}/{name}?aadOptscim062020",
            route.host
        )
    );
    let entra = EntraClient::with_http(
        &route.base_url(ns, name),
        &token,
        Dialect::Compliant,
        route.http(),
    );
    let answer = eventually(
        &format!("Test Connection over https to {}", route.host),
        Duration::from_secs(30),
        || async {
            let answer = entra.test_connection().await.ok()?;
            (answer.status == 200).then_some(answer)
        },
    )
    .await;
    assert_eq!(answer.body["totalResults"], 0);
    let created = entra
        .send(
            reqwest::Method::POST,
            "/Users",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": format!("alice@{name}.example"),
                "externalId": "00000000-0000-4000-8000-00000000a11c",
                "active": true,
            })),
        )
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();
    let stored = Api::<ScimUser>::namespaced(kube.clone(), ns)
        .get(&id)
        .await
        .unwrap();
    assert_eq!(
        stored.status.unwrap().user_name,
        format!("alice@{name}.example")
    );
}

async fn tls_routes_serve_https(
    plane: &ControlPlane,
    kube: &Client,
    ca: &WebCa,
    cluster: &NodeCluster,
    traefik: &Traefik,
) {
    // An Ingress with tlsSecretName, in the server's namespace.
    let (cert, key) = ca.serving(&[SECURE_INGRESS_HOST]).unwrap();
    apply(
        plane,
        &tls_secret(NAMESPACE, "tls-ingress-cert", &cert, &key),
    );
    let mut spec = ingress_spec("websecure");
    spec.ingress.host = Some(SECURE_INGRESS_HOST.into());
    spec.ingress.tls_secret_name = Some("tls-ingress-cert".into());
    create_directory(kube, NAMESPACE, "tls-ingress", spec.clone()).await;
    let route = Route {
        cluster,
        scheme: "https",
        host: SECURE_INGRESS_HOST,
        port: traefik.https_port,
        ca: Some(ca.certificate.clone()),
        spec,
    };
    cycle_over_https(kube, &route, NAMESPACE, "tls-ingress").await;

    // An HTTPRoute on the Gateway's HTTPS listener: https because the listener is.
    let ns = plane.namespace("tls-gateway").await.unwrap();
    let mut spec = ScimDirectorySpec {
        route_kind: Some(RouteKind::Gateway),
        ..Default::default()
    };
    spec.gateway.host = Some(SECURE_GATEWAY_HOST.into());
    spec.gateway.parent_refs = vec![GatewayParentRef {
        name: GATEWAY.into(),
        namespace: Some(GATEWAY_NAMESPACE.into()),
        section_name: Some("websecure".into()),
    }];
    create_directory(kube, &ns, "tls-gateway", spec.clone()).await;
    let route = Route {
        cluster,
        scheme: "https",
        host: SECURE_GATEWAY_HOST,
        port: traefik.https_port,
        ca: Some(ca.certificate.clone()),
        spec,
    };
    cycle_over_https(kube, &route, &ns, "tls-gateway").await;
}

/// A request for one directory's path on another route's host, or for a path no directory
/// routes, never reaches a directory; another directory's token never opens one.
async fn hosts_and_paths_stay_apart(
    kube: &Client,
    ingress: &Route<'_>,
    gateway: &Route<'_>,
    gateway_ns: &str,
) {
    let (_, ingress_token) = ready_directory(kube, NAMESPACE, "contoso", Duration::from_secs(5))
        .await
        .unwrap();
    let (_, gateway_token) = ready_directory(kube, gateway_ns, "contoso", Duration::from_secs(5))
        .await
        .unwrap();
    let get = |route: &Route<'_>, url: String, token: String| {
        let http = route.http();
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Each route answers for its own directory...
    assert_eq!(
        get(
            gateway,
            format!("{}/Users", gateway.base_url(gateway_ns, "contoso")),
            gateway_token.clone()
        )
        .await,
        200
    );
    // ...not for the other route's directory on its host: Traefik has no route for it.
    assert_eq!(
        get(
            gateway,
            format!("{}/Users", gateway.base_url(NAMESPACE, "contoso")),
            ingress_token.clone()
        )
        .await,
        404,
        "the Ingress directory's path on the Gateway's host"
    );
    assert_eq!(
        get(
            ingress,
            format!("{}/Users", ingress.base_url(gateway_ns, "contoso")),
            gateway_token.clone()
        )
        .await,
        404,
        "the Gateway directory's path on the Ingress host"
    );
    // A path outside every directory is not routed to the server at all.
    assert_eq!(
        get(
            gateway,
            format!("http://{GATEWAY_HOST}:{}/metrics", gateway.port),
            gateway_token.clone()
        )
        .await,
        404
    );
    // Same host, another directory's path: routed, but that directory's token is required.
    assert_eq!(
        get(
            gateway,
            format!("{}/Users", gateway.base_url(gateway_ns, "fabrikam")),
            gateway_token
        )
        .await,
        401
    );
}

fn gateway_api(kind: &str, version: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        version,
        kind,
    ))
}

/// Switching a Gateway directory to an Ingress removes its HTTPRoute and ReferenceGrant;
/// deleting a Gateway directory removes both too (the grant, in the server's namespace, through
/// the finalizer).
async fn changing_and_deleting_routes_cleans_up(kube: &Client, gateway_ns: &str) {
    let routes: Api<DynamicObject> =
        Api::namespaced_with(kube.clone(), gateway_ns, &gateway_api("HTTPRoute", "v1"));
    let grants: Api<DynamicObject> = Api::namespaced_with(
        kube.clone(),
        NAMESPACE,
        &gateway_api("ReferenceGrant", "v1beta1"),
    );
    let grant_of = |dir: &str| format!("scim-route-{gateway_ns}.{dir}");
    assert!(routes.get_opt("fabrikam-scim").await.unwrap().is_some());
    assert!(
        grants
            .get_opt(&grant_of("fabrikam"))
            .await
            .unwrap()
            .is_some()
    );

    let directories: Api<ScimDirectory> = Api::namespaced(kube.clone(), gateway_ns);
    directories
        .patch(
            "fabrikam",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"routeKind": "Ingress"}})),
        )
        .await
        .unwrap();
    let ingresses: Api<Ingress> = Api::namespaced(kube.clone(), gateway_ns);
    eventually(
        "the HTTPRoute and ReferenceGrant give way to an Ingress",
        Duration::from_secs(30),
        || async {
            let gone = routes.get_opt("fabrikam-scim").await.ok()?.is_none()
                && grants.get_opt(&grant_of("fabrikam")).await.ok()?.is_none();
            let ingress = ingresses.get_opt("fabrikam-scim").await.ok()?.is_some();
            (gone && ingress).then_some(())
        },
    )
    .await;

    directories
        .delete("contoso", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "a deleted directory's HTTPRoute and ReferenceGrant are gone",
        Duration::from_secs(60),
        || async {
            let gone = directories.get_opt("contoso").await.ok()?.is_none()
                && routes.get_opt("contoso-scim").await.ok()?.is_none()
                && grants.get_opt(&grant_of("contoso")).await.ok()?.is_none();
            gone.then_some(())
        },
    )
    .await;
}
