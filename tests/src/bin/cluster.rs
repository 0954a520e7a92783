//! `make cluster`: kube-scim deployed as a user deploys it, on this machine. A control plane and
//! a real node (kubelet, containerd, kube-proxy) on a bridge of their own, the images built by
//! `images/build.sh` imported into the node, `helm install` of `charts/kube-scim`, and
//! `examples/scimdirectory.yaml`. The SCIM server's Service is forwarded to 127.0.0.1 with
//! `kubectl port-forward`. Stays in the foreground until Ctrl-C, then removes everything
//! (processes, mounts, cgroups, iptables rules, the bridge).
//!
//! Needs root (bridges, iptables, containerd), like the node tests of `make test`.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use kube_scim_tests::node::NodeCluster;
use kube_scim_tests::procs::ManagedProcess;
use kube_scim_tests::stack::reported_tenant_url;
use kube_scim_tests::{free_port, repo_root};

const NAMESPACE: &str = "kube-scim";

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    eprintln!(
        "building the images and starting a control plane and a node (a first run builds Kubernetes and containerd, ~15-25 min)..."
    );
    let images = tokio::task::spawn_blocking(|| {
        run(Command::new("bash")
            .arg(repo_root().join("images/build.sh"))
            .stderr(Stdio::inherit()))
    });
    let cluster = tokio::task::spawn_blocking(NodeCluster::start);
    let images = images.await??;
    let cluster = cluster.await??;
    let result = deploy_and_wait(&cluster, images.trim()).await;
    eprintln!("stopping and removing everything...");
    cluster.stop();
    let left = cluster.leftovers();
    if !left.is_empty() {
        eprintln!("left behind (remove by hand): {left:#?}");
    }
    result
}

async fn deploy_and_wait(cluster: &NodeCluster, images: &str) -> anyhow::Result<()> {
    let plane = cluster.plane();
    for name in ["kube-scim-operator", "kube-scim-server"] {
        cluster.import_image(&std::path::Path::new(images).join(format!("{name}.oci.tar")))?;
    }
    run(plane.kubectl().args(["create", "namespace", NAMESPACE]))?;
    run(plane.kubectl().args([
        "label",
        "namespace",
        NAMESPACE,
        "pod-security.kubernetes.io/enforce=restricted",
    ]))?;
    eprintln!("helm install kube-scim charts/kube-scim --namespace {NAMESPACE} --wait ...");
    run(plane
        .helm()?
        .args(["install", "kube-scim"])
        .arg(repo_root().join("charts/kube-scim"))
        .args(["--namespace", NAMESPACE, "--wait", "--timeout", "5m"]))?;
    run(plane
        .kubectl()
        .args(["apply", "-f"])
        .arg(repo_root().join("examples/scimdirectory.yaml")))?;

    let port = free_port()?;
    let forward_log = plane.dir().join("port-forward.log");
    let mut forward = plane.kubectl();
    forward.args([
        "port-forward",
        "-n",
        NAMESPACE,
        "--address=127.0.0.1",
        "service/kube-scim-server",
        &format!("{port}:80"),
    ]);
    let mut forward = ManagedProcess::spawn_command("port-forward", forward, &forward_log)?;

    let (endpoint, secret) =
        reported_tenant_url(plane, "default", "contoso", Duration::from_secs(60))
            .context("the operator reported no Tenant URL for default/contoso in 60 s")?;
    let path = endpoint
        .find("/scim/v2/")
        .map(|i| &endpoint[i..])
        .unwrap_or("/scim/v2/default/contoso?aadOptscim062020");
    let kubectl = plane.bin_dir().join("kubectl");
    println!();
    println!(
        "kube-scim runs as pods on a local Kubernetes {} node.",
        kube_scim_tests::KUBERNETES_VERSION
    );
    println!("  export KUBECONFIG={}", plane.kubeconfig().display());
    println!("  kubectl of the same version: {}", kubectl.display());
    println!("  {} get pods -n {NAMESPACE}", kubectl.display());
    println!("  Tenant URL (behind the Ingress): {endpoint}");
    println!("  Tenant URL on this machine:      http://127.0.0.1:{port}{path}");
    println!(
        "  Secret Token: {} get secret {secret} -n default -o jsonpath='{{.data.token}}' | base64 -d",
        kubectl.display()
    );
    println!("Press Ctrl-C to remove everything.");
    tokio::signal::ctrl_c().await?;
    forward.stop();
    Ok(())
}
