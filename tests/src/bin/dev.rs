//! `make dev`: a local kube-scim on a real control plane. Starts etcd, kube-apiserver and
//! kube-controller-manager on 127.0.0.1, installs the CRDs, runs the operator and the SCIM server
//! from this workspace, applies `examples/`, prints how to reach everything, and stays in the
//! foreground until Ctrl-C, then stops every process it started. Both components share a
//! verifier key written to `.dev/verifier-keys/` (a fresh random key each run, as the chart
//! creates one per install). Both start with the configuration the chart gives them by default
//! ([`kube_scim_tests::chart_defaults`]), so every feature works as after `helm install`; a
//! `KUBE_SCIM_*` variable set in the caller's environment wins (e.g.
//! `KUBE_SCIM_WEBHOOK_ALLOWED_CIDRS=127.0.0.0/8` for a webhook receiver on this machine).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use kube_scim_tests::chart_defaults;
use kube_scim_tests::keys::VerifierKeys;
use kube_scim_tests::procs::ManagedProcess;
use kube_scim_tests::stack::reported_tenant_url;
use kube_scim_tests::{ControlPlane, repo_root, workspace_binary};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dev_dir = repo_root().join(".dev");
    std::fs::create_dir_all(&dev_dir)?;
    eprintln!("starting the control plane (the first run builds Kubernetes, ~10-20 min)...");
    let plane = tokio::task::spawn_blocking(ControlPlane::start).await??;
    let kubeconfig = dev_dir.join("kubeconfig");
    std::fs::copy(plane.kubeconfig(), &kubeconfig)?;
    let kubectl = plane.bin_dir().join("kubectl");
    let keys = VerifierKeys::create(&dev_dir.join("verifier-keys"))?;

    let mut components = Vec::new();
    for name in ["kube-scim-operator", "kube-scim-server"] {
        match start_component(name, &kubeconfig, &dev_dir, keys.path()) {
            Ok(process) => components.push(process),
            Err(e) => eprintln!("not running {name}: {e:#}"),
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for process in &mut components {
        if !process.is_running() {
            eprintln!(
                "{} exited at start:\n{}",
                process.log().display(),
                process.log_tail(20)
            );
        }
    }

    let status = plane
        .kubectl()
        .args(["apply", "-f"])
        .arg(repo_root().join("examples/scimdirectory.yaml"))
        .status()?;
    anyhow::ensure!(status.success(), "kubectl apply of examples/ failed");

    println!();
    println!(
        "kube-scim is running on a local Kubernetes {} control plane.",
        kube_scim_tests::KUBERNETES_VERSION
    );
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl of the same version: {}", kubectl.display());
    println!(
        "  try: {} --kubeconfig {} get crd",
        kubectl.display(),
        kubeconfig.display()
    );
    println!(
        "  logs: {} and {}",
        plane.dir().display(),
        dev_dir.display()
    );
    print_tenant_url(&plane);
    println!("Press Ctrl-C to stop everything.");

    tokio::signal::ctrl_c().await?;
    eprintln!("stopping...");
    for mut process in components.into_iter().rev() {
        process.stop();
    }
    drop(plane);
    let _ = std::fs::remove_file(&kubeconfig);
    let _ = std::fs::remove_dir_all(keys.path());
    Ok(())
}

fn start_component(
    name: &str,
    kubeconfig: &Path,
    dev_dir: &Path,
    keys: &Path,
) -> anyhow::Result<ManagedProcess> {
    let mut cmd = Command::new(workspace_binary(name)?);
    cmd.env("KUBECONFIG", kubeconfig);
    let defaults = match name {
        "kube-scim-operator" => chart_defaults::OPERATOR_ENV,
        _ => chart_defaults::SERVER_ENV,
    };
    for (variable, value) in defaults {
        if std::env::var_os(variable).is_none() {
            cmd.env(variable, value);
        }
    }
    cmd.arg("--verifier-key-dir").arg(keys);
    if name == "kube-scim-operator" {
        // Probes and metrics on 127.0.0.1 only; Ingresses route to a `kube-scim-server`
        // Service in `default` (the namespace of examples/); the Lease lives there too.
        let port = kube_scim_tests::free_port()?;
        cmd.args([
            format!("--metrics-bind-address=127.0.0.1:{port}"),
            "--server-service-namespace=default".to_string(),
            "--lease-namespace=default".to_string(),
            "--log-format=text".to_string(),
        ]);
        eprintln!("kube-scim-operator: health and metrics on http://127.0.0.1:{port}/metrics");
    }
    if name == "kube-scim-server" {
        let (port, metrics) = (kube_scim_tests::free_port()?, kube_scim_tests::free_port()?);
        cmd.args([
            format!("--listen=127.0.0.1:{port}"),
            format!("--metrics-bind-address=127.0.0.1:{metrics}"),
            "--log-format=text".to_string(),
        ]);
        eprintln!(
            "kube-scim-server: SCIM at http://127.0.0.1:{port}/scim/v2/<namespace>/<directory>, metrics on http://127.0.0.1:{metrics}/metrics"
        );
    }
    let log = dev_dir.join(format!("{name}.log"));
    let _ = std::fs::remove_file(&log);
    ManagedProcess::spawn_command(name, cmd, &log).with_context(|| format!("starting {name}"))
}

/// Waits a little for the operator to report the sample directory's Tenant URL and token.
fn print_tenant_url(plane: &ControlPlane) {
    match reported_tenant_url(plane, "default", "contoso", Duration::from_secs(30)) {
        Some((endpoint, secret)) => {
            println!("  Tenant URL:   {endpoint}");
            println!(
                "  Secret Token: kubectl get secret {secret} -n default -o jsonpath='{{.data.token}}' | base64 -d"
            );
        }
        None => println!(
            "  (no Tenant URL yet: the operator has not reported status.endpoint of default/contoso)"
        ),
    }
}
