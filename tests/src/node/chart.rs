//! The Helm chart on the node, as users install it: the product images built by
//! `images/build.sh` and imported into containerd, `helm install` into a namespace under the
//! `restricted` Pod Security Standard, and what to look at when its pods do not become Ready.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::NodeCluster;
use crate::{ControlPlane, eventually, must_succeed, repo_root};

/// Release name and namespace of the chart in node tests.
pub const RELEASE: &str = "kube-scim";
pub const NAMESPACE: &str = "kube-scim";
pub const SERVER: &str = "kube-scim-server";
pub const OPERATOR: &str = "kube-scim-operator";

/// Builds the product images with `images/build.sh` (the recipe of a release) and the test
/// kubectl image, imports them into the node's containerd, and returns each product image's
/// reference and archive.
pub fn build_and_import_images(cluster: &NodeCluster) -> Vec<(String, PathBuf)> {
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(repo_root().join("images/build.sh"))
        .env("CONTAINERD_ADDRESS", "")
        .output()
        .expect("images/build.sh starts");
    assert!(
        out.status.success(),
        "images/build.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    eprintln!("images built in {:?}", started.elapsed());
    // `make test` builds the images before the tests; rebuilding them here would mean the
    // build depends on something besides the sources (this process's environment, say).
    if std::env::var_os("KUBE_SCIM_IMAGES_BUILT").is_some() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("Compiling "),
            "images/build.sh recompiled images that `make images` had just built:\n{stderr}"
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    let mut images = Vec::new();
    for name in [OPERATOR, SERVER] {
        let archive = dir.join(format!("{name}.oci.tar"));
        cluster.import_image(&archive).unwrap();
        images.push((format!("ghcr.io/kube-scim/{name}:{version}"), archive));
    }
    cluster.import_kubectl_image().unwrap();
    images
}

/// `kubectl apply` of one manifest (any JSON object or List).
pub fn apply(plane: &ControlPlane, manifest: &Value) {
    use std::hash::BuildHasher;
    let suffix = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    let path = plane.dir().join(format!("manifest-{suffix}.json"));
    std::fs::write(&path, manifest.to_string()).unwrap();
    must_succeed(plane.kubectl().args(["apply", "-f"]).arg(&path));
}

/// A namespace under the `restricted` Pod Security Standard.
pub fn restricted_namespace(plane: &ControlPlane, name: &str) {
    apply(
        plane,
        &json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            },
        }),
    );
}

/// What a person would look at when pods do not become Ready: pods, events, and the logs of the
/// release's containers (also of their previous run, for a crash loop).
pub fn diagnostics(plane: &ControlPlane) -> String {
    let mut text = String::new();
    let mut run = |args: &[&str]| {
        if let Ok(out) = plane.kubectl().args(args).output() {
            text.push_str(&format!(
                "\n$ kubectl {}\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    };
    let mut problems_text = String::new();
    run(&["get", "pods", "-A", "-o", "wide"]);
    run(&["get", "events", "-n", NAMESPACE, "--sort-by=.lastTimestamp"]);
    for component in ["operator", "server"] {
        let selector = format!("app.kubernetes.io/component={component}");
        for run_of_container in ["", "--previous"] {
            let mut args = vec![
                "logs",
                "-n",
                NAMESPACE,
                "-l",
                &selector,
                "--tail=20",
                "--prefix",
            ];
            args.extend([run_of_container].into_iter().filter(|a| !a.is_empty()));
            run(&args);
        }
        // What went wrong is logged at warn or error level, and may have scrolled out of the
        // tail behind request lines.
        let args = [
            "logs",
            "-n",
            NAMESPACE,
            "-l",
            &selector,
            "--tail=5000",
            "--prefix",
            "--max-log-requests=10",
        ];
        if let Ok(out) = plane.kubectl().args(args).output() {
            let out = String::from_utf8_lossy(&out.stdout);
            let problems: Vec<&str> = out
                .lines()
                .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
                .collect();
            problems_text.push_str(&format!(
                "\n$ kubectl {} | warnings and errors (last 40)\n{}\n",
                args.join(" "),
                problems[problems.len().saturating_sub(40)..].join("\n")
            ));
        }
    }
    text + &problems_text
}

/// `helm install` of the chart into [`NAMESPACE`] (restricted) with `sets` (`key=value`), and
/// waits until every pod of the release is Ready.
pub fn install(plane: &ControlPlane, sets: &[&str]) {
    restricted_namespace(plane, NAMESPACE);
    let mut helm = plane.helm().unwrap();
    helm.args(["install", RELEASE])
        .arg(repo_root().join("charts/kube-scim"))
        .args(["--namespace", NAMESPACE, "--wait", "--timeout", "4m"]);
    for set in sets {
        helm.args(["--set", set]);
    }
    let out = helm.output().unwrap();
    assert!(
        out.status.success(),
        "helm install failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        diagnostics(plane)
    );
    must_succeed(plane.kubectl().args([
        "wait",
        "pods",
        "--all",
        "-n",
        NAMESPACE,
        "--for=condition=Ready",
        "--timeout=120s",
    ]));
}

/// Names of the release's pods of `component` (`server` or `operator`) in [`NAMESPACE`].
pub fn pods(plane: &ControlPlane, component: &str) -> Vec<String> {
    let out = must_succeed(plane.kubectl().args([
        "get",
        "pods",
        "-n",
        NAMESPACE,
        "-l",
        &format!("app.kubernetes.io/component={component}"),
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// `helm upgrade --reuse-values` of the release with `args` (e.g. `--set`), then waits until the
/// server's rollout is done and every server pod from before the upgrade is gone: old pods drain
/// for `server.drainSeconds` after `rollout status` reports done, so a rolling upgrade is only
/// over when they have exited. Returns how long that took.
pub async fn upgrade_and_roll_the_server(plane: &ControlPlane, args: &[&str]) -> Duration {
    let before = pods(plane, "server");
    let started = Instant::now();
    must_succeed(
        plane
            .helm()
            .unwrap()
            .args(["upgrade", RELEASE])
            .arg(repo_root().join("charts/kube-scim"))
            .args(["--namespace", NAMESPACE, "--reuse-values"])
            .args(args),
    );
    must_succeed(plane.kubectl().args([
        "rollout",
        "status",
        "deployment",
        SERVER,
        "-n",
        NAMESPACE,
        "--timeout=180s",
    ]));
    eventually(
        "the old server pods are gone",
        Duration::from_secs(90),
        || async {
            let now = pods(plane, "server");
            before.iter().all(|p| !now.contains(p)).then_some(())
        },
    )
    .await;
    started.elapsed()
}
