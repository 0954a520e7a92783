//! kube-scim itself on a test control plane: the operator and the SCIM server from this
//! workspace as processes bound to 127.0.0.1, and the way to a directory's Tenant URL and token.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use kube_scim_crds::ScimDirectory;

use crate::keys::VerifierKeys;
use crate::procs::ManagedProcess;
use crate::{ControlPlane, free_port, workspace_binary};

/// Who the components act as, and where they find the SCIM server Service.
pub struct StackOptions {
    /// Kubeconfig of the operator (default: the plane's admin).
    pub operator_kubeconfig: Option<PathBuf>,
    /// Kubeconfig of the SCIM server (default: the plane's admin).
    pub server_kubeconfig: Option<PathBuf>,
    /// Namespace of the operator's Lease and of the server's Service.
    pub namespace: String,
    /// Namespaces both components serve, comma separated; empty: all. Several stacks on one
    /// plane must not serve the same namespace.
    pub watch_namespaces: String,
    /// Extra operator flags.
    pub operator_args: Vec<String>,
    /// Extra server flags.
    pub server_args: Vec<String>,
    /// Verifier key directory of the operator; `None`: one with a random key, shared with the
    /// server (as the chart's one Secret mounted into both).
    pub operator_keys: Option<VerifierKeys>,
    /// Verifier key directory of the server; `None`: the operator's.
    pub server_keys: Option<VerifierKeys>,
}

impl StackOptions {
    /// Admin identity for both, serving only `namespace` (which also holds the Lease and the
    /// Service), with a default ingress host so directories become Ready without one.
    pub fn new(namespace: &str) -> Self {
        Self {
            operator_kubeconfig: None,
            server_kubeconfig: None,
            namespace: namespace.to_string(),
            watch_namespaces: namespace.to_string(),
            operator_args: vec!["--default-ingress-host=scim.kube-scim.test".into()],
            server_args: Vec::new(),
            operator_keys: None,
            server_keys: None,
        }
    }
}

/// A running operator and SCIM server; both are stopped by PID when dropped.
pub struct Stack {
    /// The operator process.
    pub operator: ManagedProcess,
    /// The SCIM server process.
    pub server: ManagedProcess,
    /// Port of the SCIM endpoint on 127.0.0.1.
    pub scim_port: u16,
    /// Port of the server's /metrics, /healthz, /readyz on 127.0.0.1.
    pub server_metrics_port: u16,
    /// The operator's verifier keys (re-read every second).
    pub operator_keys: VerifierKeys,
    /// The server's verifier keys (re-read every second; often the operator's directory).
    pub server_keys: VerifierKeys,
}

impl Stack {
    /// Starts both components and waits until the server is ready (caches synced).
    pub async fn start(plane: &ControlPlane, options: StackOptions) -> anyhow::Result<Stack> {
        let logs = plane.dir().join(format!("stack-{}", options.namespace));
        std::fs::create_dir_all(&logs)?;
        let admin = plane.kubeconfig().to_path_buf();
        let operator_keys = match options.operator_keys {
            Some(keys) => keys,
            None => VerifierKeys::create(&logs.join("verifier-keys"))?,
        };
        let server_keys = options.server_keys.unwrap_or_else(|| operator_keys.clone());

        let operator_port = free_port()?;
        let mut operator = Command::new(workspace_binary("kube-scim-operator")?);
        operator
            .env(
                "KUBECONFIG",
                options.operator_kubeconfig.as_ref().unwrap_or(&admin),
            )
            .env("KUBE_SCIM_LOG_FORMAT", "text")
            .arg(format!("--metrics-bind-address=127.0.0.1:{operator_port}"))
            .arg(format!("--lease-namespace={}", options.namespace))
            .arg(format!("--server-service-namespace={}", options.namespace))
            .arg(format!("--watch-namespaces={}", options.watch_namespaces))
            .arg("--verifier-key-dir")
            .arg(operator_keys.path())
            .arg("--verifier-key-reload-interval=1s")
            .args(&options.operator_args);
        let operator =
            ManagedProcess::spawn_command("operator", operator, &logs.join("operator.log"))?;

        let scim_port = free_port()?;
        let server_metrics_port = free_port()?;
        let mut server = Command::new(workspace_binary("kube-scim-server")?);
        server
            .env(
                "KUBECONFIG",
                options.server_kubeconfig.as_ref().unwrap_or(&admin),
            )
            .arg(format!("--listen=127.0.0.1:{scim_port}"))
            .arg(format!(
                "--metrics-bind-address=127.0.0.1:{server_metrics_port}"
            ))
            .arg(format!("--watch-namespaces={}", options.watch_namespaces))
            .arg("--verifier-key-dir")
            .arg(server_keys.path())
            .arg("--verifier-key-reload-interval=1s")
            .args(&options.server_args);
        let server = ManagedProcess::spawn_command("server", server, &logs.join("server.log"))?;

        let mut stack = Stack {
            operator,
            server,
            scim_port,
            server_metrics_port,
            operator_keys,
            server_keys,
        };
        stack.wait_server_ready().await?;
        Ok(stack)
    }

    async fn wait_server_ready(&mut self) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{}/readyz", self.server_metrics_port);
        for _ in 0..600 {
            if http_status(&url).await == Some(200) {
                return Ok(());
            }
            if !self.server.is_running() {
                bail!("SCIM server exited:\n{}", self.server.log_tail(40));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "SCIM server not ready within 60 s:\n{}",
            self.server.log_tail(40)
        )
    }

    /// `http://127.0.0.1:<port>/scim/v2/<namespace>/<directory>`: what the Ingress routes the
    /// Tenant URL to.
    pub fn base_url(&self, namespace: &str, directory: &str) -> String {
        format!(
            "http://127.0.0.1:{}/scim/v2/{namespace}/{directory}",
            self.scim_port
        )
    }

    /// [`ready_directory`], then [`server_accepts`] on this stack's server: the Tenant URL and
    /// a token that this server takes. Panics with the components' logs after 60 s.
    pub async fn ready_directory(
        &self,
        client: &Client,
        namespace: &str,
        directory: &str,
    ) -> (String, String) {
        let timeout = Duration::from_secs(60);
        let (endpoint, token) = ready_directory(client, namespace, directory, timeout)
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.logs()));
        let http = crate::http_client();
        server_accepts(&http, &self.base_url(namespace, directory), &token, timeout)
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.logs()));
        (endpoint, token)
    }

    /// Log files of both components, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- operator ---\n{}\n--- server ---\n{}",
            self.operator.log_tail(30),
            self.server.log_tail(30)
        )
    }
}

/// Waits until the operator reports `namespace/directory` Ready and returns its Tenant URL and
/// bearer token (read from the token Secret with `client`, which must be allowed to).
pub async fn ready_directory(
    client: &Client,
    namespace: &str,
    directory: &str,
    timeout: Duration,
) -> anyhow::Result<(String, String)> {
    let directories: Api<ScimDirectory> = Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + timeout;
    let status = loop {
        let current = directories.get_opt(directory).await?.and_then(|d| d.status);
        if let Some(status) = current
            && status
                .conditions
                .iter()
                .any(|c| c.type_ == kube_scim_crds::CONDITION_READY && c.status == "True")
        {
            break status;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{namespace}/{directory} not Ready within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let secret_name = status
        .token_secret_name
        .context("no tokenSecretName in status")?;
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(&secret_name)
        .await?;
    let token = secret
        .data
        .and_then(|d| d.get("token").map(|t| t.0.clone()))
        .context("token Secret has no `token` key")?;
    Ok((
        status.endpoint.unwrap_or_default(),
        String::from_utf8(token).context("token is not UTF-8")?,
    ))
}

/// Waits until the SCIM server at `base_url` accepts `token` (`GET /Users?count=0` answers 200).
/// The server learns a directory, its readiness and its verifiers from its own watch, which
/// can lag the apiserver read by [`ready_directory`]: a client that used the token at once could
/// get the 401 of an unknown directory or the 503 of one not ready yet.
pub async fn server_accepts(
    http: &reqwest::Client,
    base_url: &str,
    token: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let url = format!("{}/Users?count=0", base_url.trim_end_matches('/'));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match http.get(&url).bearer_auth(token).send().await {
            Ok(r) if r.status() == 200 => return Ok(()),
            Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => format!("{e:#}"),
        };
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{base_url} did not accept the directory's token within {timeout:?}; last answer {last}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls (once a second, for at most `timeout`) until the operator reports the Tenant URL of
/// `namespace/directory`, and returns it with the name of its token Secret, read with kubectl
/// (for the `make dev` and `make cluster` runners, which have no async client at hand).
pub fn reported_tenant_url(
    plane: &ControlPlane,
    namespace: &str,
    directory: &str,
    timeout: Duration,
) -> Option<(String, String)> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let out = plane
            .kubectl()
            .args(["get", "scimdirectory", directory, "-n", namespace, "-o"])
            .arg("jsonpath={.status.endpoint} {.status.tokenSecretName}")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut parts = text.split_whitespace();
        if let (Some(endpoint), Some(secret)) = (parts.next(), parts.next()) {
            return Some((endpoint.to_string(), secret.to_string()));
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A kubeconfig (written into the plane's directory) whose user is the admin impersonating
/// the ServiceAccount `namespace/name`, so a process acts exactly as that ServiceAccount.
pub fn service_account_kubeconfig(
    plane: &ControlPlane,
    namespace: &str,
    name: &str,
) -> anyhow::Result<PathBuf> {
    let (user, groups) = crate::service_account_identity(namespace, name);
    let mut config =
        serde_json::to_value(kube::config::Kubeconfig::read_from(plane.kubeconfig())?)?;
    let auth = &mut config["users"][0]["user"];
    auth["as"] = user.into();
    auth["as-groups"] = groups.into();
    let path: PathBuf = plane.dir().join(format!("kubeconfig-{namespace}-{name}"));
    std::fs::write(&path, serde_json::to_string(&config)?)?;
    Ok(path)
}

async fn http_status(url: &str) -> Option<u16> {
    // The health endpoint is plain HTTP on loopback; a raw request keeps the harness free of an
    // HTTP client dependency.
    let url = url.strip_prefix("http://")?;
    let (authority, path) = url.split_once('/').unwrap_or((url, ""));
    let mut stream = tokio::net::TcpStream::connect(authority).await.ok()?;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET /{path} HTTP/1.0\r\nHost: {authority}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

impl crate::entra_suite::ScimTarget for Stack {
    fn base_url(&self, namespace: &str, directory: &str) -> String {
        Stack::base_url(self, namespace, directory)
    }

    fn logs(&self) -> String {
        Stack::logs(self)
    }
}
