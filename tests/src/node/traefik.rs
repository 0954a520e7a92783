//! A real route controller on the node: Traefik (built by `tests/tools/build-traefik.sh` from its
//! Go module) serving both Ingress and the Gateway API, installed as users install it: the
//! Gateway API CRDs (standard channel), its RBAC, an IngressClass and a GatewayClass, and a
//! Deployment running the image built here. Its pod uses the host's network and listens on
//! 127.0.0.1 only, on two ports chosen per run (plain and TLS); a Gateway's listeners use the
//! same port numbers, which is how Traefik maps listeners to its entry points.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::{NodeCluster, build_static_image};
use crate::{free_port_on, must_succeed, repo_root};

/// The image built from the pinned Traefik binary.
pub const TRAEFIK_IMAGE: &str = "docker.io/kube-scim/test-traefik:v3.6.12";
/// Namespace of the controller.
pub const NAMESPACE: &str = "traefik";
/// IngressClass and GatewayClass served by the controller.
pub const CLASS: &str = "traefik";

/// The installed controller.
pub struct Traefik {
    /// Plain HTTP entry point on 127.0.0.1.
    pub http_port: u16,
    /// TLS entry point on 127.0.0.1.
    pub https_port: u16,
}

/// Directory holding `traefik` and `gateway-api-crds.yaml` (built on a cold cache).
pub fn traefik_dir() -> anyhow::Result<PathBuf> {
    crate::build_script_output("tests/tools/build-traefik.sh", &[])
}

impl NodeCluster {
    /// Installs the Gateway API CRDs and Traefik, and waits until its pod is Ready.
    pub fn install_traefik(&self) -> anyhow::Result<Traefik> {
        let plane = self.plane();
        let dir = traefik_dir()?;
        must_succeed(
            plane
                .kubectl()
                .args(["apply", "--server-side", "-f"])
                .arg(dir.join("gateway-api-crds.yaml")),
        );
        must_succeed(plane.kubectl().args([
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/httproutes.gateway.networking.k8s.io",
            "crd/gateways.gateway.networking.k8s.io",
            "crd/referencegrants.gateway.networking.k8s.io",
        ]));

        let archive = self.dir.join("traefik.oci.tar");
        build_static_image(&dir.join("traefik"), TRAEFIK_IMAGE, &archive)?;
        self.import_image(&archive)?;

        let traefik = Traefik {
            http_port: free_port_on(std::net::Ipv4Addr::LOCALHOST)?,
            https_port: free_port_on(std::net::Ipv4Addr::LOCALHOST)?,
        };
        let manifest = manifest(&traefik);
        let path = self.dir.join("traefik.json");
        std::fs::write(&path, manifest.to_string())?;
        must_succeed(plane.kubectl().args(["apply", "-f"]).arg(&path));
        let started = Instant::now();
        loop {
            let out = plane
                .kubectl()
                .args(["rollout", "status", "deployment/traefik", "-n", NAMESPACE])
                .arg("--timeout=5s")
                .output()?;
            if out.status.success() {
                break;
            }
            if started.elapsed() > Duration::from_secs(120) {
                let logs = plane
                    .kubectl()
                    .args(["logs", "-n", NAMESPACE, "deployment/traefik", "--tail=40"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                bail!(
                    "Traefik not Ready after 120 s: {}\n{logs}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    self.log_tails()
                );
            }
        }
        Ok(traefik)
    }

    /// Traefik's recent log, for failure messages.
    pub fn traefik_logs(&self) -> String {
        self.plane()
            .kubectl()
            .args(["logs", "-n", NAMESPACE, "deployment/traefik", "--tail=60"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

/// Everything Traefik needs, as one List. `tests/route-controller/rbac.json` holds its RBAC
/// (what Traefik's documentation lists for the Ingress and Gateway API providers).
fn manifest(traefik: &Traefik) -> Value {
    let rbac: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("tests/route-controller/rbac.json"))
            .context("tests/route-controller/rbac.json")
            .unwrap(),
    )
    .expect("rbac.json is JSON");
    let mut items = vec![json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        // Host networking (to listen on the host's 127.0.0.1) needs the privileged level.
        "metadata": {"name": NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "privileged"}},
    })];
    items.extend(rbac.as_array().cloned().unwrap_or_default());
    items.push(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": CLASS},
        "spec": {"controller": "traefik.io/ingress-controller"},
    }));
    items.push(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": CLASS},
        "spec": {"controllerName": "traefik.io/gateway-controller"},
    }));
    items.push(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "traefik", "namespace": NAMESPACE},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "traefik"}},
            "template": {
                "metadata": {"labels": {"app": "traefik"}},
                "spec": {
                    "serviceAccountName": "traefik",
                    "hostNetwork": true,
                    "containers": [{
                        "name": "traefik",
                        "image": TRAEFIK_IMAGE,
                        "imagePullPolicy": "Never",
                        "args": [
                            format!("--entrypoints.web.address=127.0.0.1:{}", traefik.http_port),
                            format!("--entrypoints.websecure.address=127.0.0.1:{}", traefik.https_port),
                            "--entrypoints.websecure.http.tls=true",
                            "--providers.kubernetesingress",
                            "--providers.kubernetesingress.ingressendpoint.ip=127.0.0.1",
                            "--providers.kubernetesgateway",
                            "--providers.kubernetesgateway.statusaddress.ip=127.0.0.1",
                            "--ping",
                            "--ping.entrypoint=web",
                            "--log.level=INFO",
                            // Tests never send traffic beyond 127.0.0.1 and the node's bridge.
                            "--global.checknewversion=false",
                            "--global.sendanonymoususage=false",
                        ],
                        "readinessProbe": {
                            "httpGet": {"host": "127.0.0.1", "path": "/ping", "port": traefik.http_port},
                            "periodSeconds": 1,
                        },
                        "securityContext": {
                            "runAsNonRoot": true,
                            "readOnlyRootFilesystem": true,
                            "allowPrivilegeEscalation": false,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }],
                },
            },
        },
    }));
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}
