//! A real Kubernetes control plane for kube-scim's integration tests and `make dev`: etcd,
//! kube-apiserver (TLS, RBAC) and kube-controller-manager (garbage collector and namespace
//! controllers), built from upstream's Go modules by `tests/controlplane/build.sh`, bound to
//! 127.0.0.1 on free ports, with kube-scim's CRDs installed.
//!
//! Tests share one plane per test binary ([`ControlPlane::shared`]) and take a fresh namespace
//! each ([`ControlPlane::namespace`]). Every process is stopped by PID when the plane is dropped
//! or, for the shared plane, when the test binary exits (also after a panic); the kernel kills
//! them too if the test binary itself is killed.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

pub mod chart_defaults;
pub mod entra;
pub mod entra_suite;
pub mod jwt_issuer;
pub mod keys;
pub mod node;
pub mod okta;
pub mod okta_suite;
pub mod pki;
pub mod procs;
pub mod stack;

use pki::{CA_FILE, Pki};
use procs::ManagedProcess;

/// A builder for the tests' HTTP clients (plain HTTP to 127.0.0.1). In a workspace build
/// reqwest has the binaries' rustls (`rustls-no-provider`), and a client is only built once a
/// process crypto provider is installed: ring, as in the binaries.
pub fn http_builder() -> reqwest::ClientBuilder {
    // Err only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// A default HTTP client for the tests (see [`http_builder`]).
pub fn http_client() -> reqwest::Client {
    http_builder().build().expect("HTTP client")
}

/// Kubernetes version of the control plane (the version pinned in `tests/controlplane/go.mod`).
pub const KUBERNETES_VERSION: &str = "v1.36.4";

/// Name of the admin user in the kubeconfig (member of `system:masters`).
pub const ADMIN_USER: &str = "kube-scim-admin";

/// Service network of every plane. A node cluster routes it to its own bridge, so a packet to
/// a Service address never leaves the machine, whether or not kube-proxy has rules for it yet.
pub const SERVICE_CIDR: &str = "10.96.0.0/24";

/// How a plane is started.
#[derive(Clone, Debug)]
pub struct PlaneOptions {
    /// Install kube-scim's CRDs once the apiserver is ready.
    pub install_crds: bool,
    /// Address the apiserver binds to and advertises: 127.0.0.1, or for a plane with a node an
    /// address on the node's bridge, so pods reach it through the `kubernetes` Service.
    pub address: Ipv4Addr,
    /// Serve a node: Node authorization, ServiceAccount tokens in pods, every default controller.
    pub for_node: bool,
}

impl Default for PlaneOptions {
    fn default() -> Self {
        Self {
            install_crds: true,
            address: Ipv4Addr::LOCALHOST,
            for_node: false,
        }
    }
}

/// A running etcd + kube-apiserver + kube-controller-manager.
pub struct ControlPlane {
    dir: PathBuf,
    bin_dir: PathBuf,
    kubeconfig: PathBuf,
    server_url: String,
    processes: Mutex<Vec<ManagedProcess>>,
    keep_dir: bool,
    pki: Option<Pki>,
}

impl ControlPlane {
    /// The plane shared by every test of this test binary, started on first use, with
    /// kube-scim's CRDs installed.
    pub fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<Result<&'static ControlPlane, String>> = OnceLock::new();
        Self::shared_in(&SHARED, true)
    }

    /// Like [`ControlPlane::shared`] but without kube-scim's CRDs, for tests of installers
    /// (the Helm chart) that must create them.
    pub fn shared_without_crds() -> &'static ControlPlane {
        static SHARED: OnceLock<Result<&'static ControlPlane, String>> = OnceLock::new();
        Self::shared_in(&SHARED, false)
    }

    fn shared_in(
        cell: &'static OnceLock<Result<&'static ControlPlane, String>>,
        install_crds: bool,
    ) -> &'static ControlPlane {
        // A failed start is kept too, so the other tests of the binary fail at once with the
        // same message instead of each waiting for another start to time out.
        let shared = cell.get_or_init(|| {
            let options = PlaneOptions {
                install_crds,
                ..PlaneOptions::default()
            };
            let plane = ControlPlane::start_with(options).map_err(|e| format!("{e:#}"))?;
            let plane: &'static ControlPlane = Box::leak(Box::new(plane));
            procs::stop_at_exit(plane);
            Ok(plane)
        });
        match shared {
            Ok(plane) => plane,
            Err(e) => panic!("control plane did not start: {e}"),
        }
    }

    /// Builds (or takes from the cache) the binaries and starts a new plane in a temporary
    /// directory. Dropping it stops every process and removes the directory.
    pub fn start() -> anyhow::Result<ControlPlane> {
        Self::start_with(PlaneOptions::default())
    }

    /// [`ControlPlane::start`] with other options.
    pub fn start_with(options: PlaneOptions) -> anyhow::Result<ControlPlane> {
        let bin_dir = binaries()?;
        let dir = std::env::temp_dir().join(format!(
            "kube-scim-plane-{}-{:x}",
            std::process::id(),
            unique_suffix()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut plane = ControlPlane {
            kubeconfig: dir.join("kubeconfig"),
            dir,
            bin_dir,
            server_url: String::new(),
            processes: Mutex::new(Vec::new()),
            keep_dir: std::env::var_os("KUBE_SCIM_KEEP_PLANE_DIR").is_some(),
            pki: None,
        };
        if let Err(e) = plane.boot(&options) {
            let logs = procs::log_tails(&plane.processes);
            return Err(e.context(format!("starting the control plane{logs}")));
        }
        Ok(plane)
    }

    fn boot(&mut self, options: &PlaneOptions) -> anyhow::Result<()> {
        let pki = Pki::write(&self.dir, IpAddr::V4(options.address))?;

        let etcd_client = free_port()?;
        let etcd_peer = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");
        self.spawn(
            "etcd",
            &[
                "--name=default",
                &format!("--data-dir={}", self.dir.join("etcd").display()),
                &format!("--listen-client-urls={etcd_url}"),
                &format!("--advertise-client-urls={etcd_url}"),
                &format!("--listen-peer-urls={peer_url}"),
                &format!("--initial-advertise-peer-urls={peer_url}"),
                &format!("--initial-cluster=default={peer_url}"),
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )?;
        self.wait_until(Duration::from_secs(60), "etcd /health", || {
            http_get_ok(etcd_client, "/health")
        })?;

        let api_port = free_port_on(options.address)?;
        let address = options.address;
        self.server_url = format!("https://{address}:{api_port}");
        let d = |name: &str| self.dir.join(name).display().to_string();
        let node_args = if options.for_node {
            vec![
                "--authorization-mode=Node,RBAC".to_string(),
                "--enable-admission-plugins=NodeRestriction".to_string(),
                format!("--kubelet-client-certificate={}", d("admin.crt")),
                format!("--kubelet-client-key={}", d("admin.key")),
                // The node's name resolves nowhere: reach the kubelet at its address on the bridge.
                "--kubelet-preferred-address-types=InternalIP".to_string(),
            ]
        } else {
            vec![
                "--authorization-mode=RBAC".into(),
                // Nothing here runs pods, so nothing needs ServiceAccount token injection.
                "--disable-admission-plugins=ServiceAccount".into(),
            ]
        };
        let mut apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--bind-address={address}"),
            format!("--advertise-address={address}"),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", self.dir.display()),
            format!("--tls-cert-file={}", d("apiserver.crt")),
            format!("--tls-private-key-file={}", d("apiserver.key")),
            format!("--client-ca-file={}", d("ca.crt")),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", d("sa.pub")),
            format!("--service-account-signing-key-file={}", d("sa.key")),
            "--allow-privileged=true".into(),
            "--v=1".into(),
        ];
        apiserver_args.extend(node_args);
        let apiserver_args: Vec<&str> = apiserver_args.iter().map(String::as_str).collect();
        self.spawn("kube-apiserver", &apiserver_args)?;
        self.write_kubeconfig(
            &self.kubeconfig,
            ADMIN_USER,
            &pki.admin_cert,
            &pki.admin_key,
        )?;
        let kcm_kubeconfig = self.dir.join("kube-controller-manager.kubeconfig");
        self.write_kubeconfig(
            &kcm_kubeconfig,
            "system:kube-controller-manager",
            &pki.controller_manager_cert,
            &pki.controller_manager_key,
        )?;
        self.wait_until(Duration::from_secs(120), "kube-apiserver /readyz", || {
            self.kubectl()
                .args(["get", "--raw", "/readyz"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })?;

        let kcm_port = free_port()?;
        let kubeconfig = kcm_kubeconfig.display().to_string();
        // A node needs the workload controllers too (Deployments, ReplicaSets, EndpointSlices,
        // the kube-root-ca.crt ConfigMap that projected tokens mount, ...). The aggregation
        // controller fills the default `view`/`edit`/`admin` ClusterRoles, which RBAC tests bind.
        let controllers = if options.for_node {
            "--controllers=*"
        } else {
            "--controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller,clusterrole-aggregation-controller"
        };
        self.spawn(
            "kube-controller-manager",
            &[
                &format!("--kubeconfig={kubeconfig}"),
                "--use-service-account-credentials=true",
                &format!("--authentication-kubeconfig={kubeconfig}"),
                &format!("--authorization-kubeconfig={kubeconfig}"),
                controllers,
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                &format!("--secure-port={kcm_port}"),
                &format!("--service-account-private-key-file={}", d("sa.key")),
                &format!("--root-ca-file={}", d("ca.crt")),
                "--concurrent-gc-syncs=5",
                "--v=1",
            ],
        )?;

        self.pki = Some(pki);
        if options.install_crds {
            self.install_crds()?;
        }
        Ok(())
    }

    /// Writes a kubeconfig for a component of this plane that authenticates as `user` in
    /// `group` (if any) with a client certificate signed by the plane's CA.
    pub fn component_kubeconfig(
        &self,
        name: &str,
        user: &str,
        group: Option<&str>,
    ) -> anyhow::Result<PathBuf> {
        let pki = self.pki.as_ref().context("the plane has not booted")?;
        let (cert, key) = pki.client_certificate(&self.dir, name, user, group)?;
        let path = self.dir.join(format!("{name}.kubeconfig"));
        self.write_kubeconfig(&path, user, &cert, &key)?;
        Ok(path)
    }

    /// Path of the plane's CA certificate (trusted by the apiserver for client certificates).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(CA_FILE)
    }

    /// Polls `ready` until it holds; gives up early when a process of the plane has exited.
    fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        ready: impl FnMut() -> bool,
    ) -> anyhow::Result<()> {
        procs::wait_until(&self.processes, timeout, what, ready)
    }

    fn spawn(&self, name: &str, args: &[&str]) -> anyhow::Result<()> {
        let log = self.dir.join(format!("{name}.log"));
        let process = ManagedProcess::spawn(name, &self.bin_dir.join(name), args, &log)?;
        self.processes.lock().unwrap().push(process);
        Ok(())
    }

    fn write_kubeconfig(
        &self,
        path: &Path,
        user: &str,
        cert: &Path,
        key: &Path,
    ) -> anyhow::Result<()> {
        let kubeconfig = format!(
            r#"apiVersion: v1
kind: Config
clusters:
- name: kube-scim-test
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {user}
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: kube-scim-test
  context:
    cluster: kube-scim-test
    user: {user}
    namespace: default
current-context: kube-scim-test
"#,
            server = self.server_url,
            ca = self.dir.join(CA_FILE).display(),
            cert = cert.display(),
            key = key.display(),
        );
        std::fs::write(path, kubeconfig)?;
        Ok(())
    }

    fn install_crds(&self) -> anyhow::Result<()> {
        let yaml = kube_scim_crdgen::checked_in_path();
        run(self
            .kubectl()
            .args([
                "apply",
                "--server-side",
                "--field-manager=kube-scim-tests",
                "-f",
            ])
            .arg(&yaml))?;
        let names: Vec<String> = kube_scim_crds::crds()
            .iter()
            .map(|crd| format!("crd/{}", crd.metadata.name.as_deref().unwrap_or_default()))
            .collect();
        run(self
            .kubectl()
            .args(["wait", "--for=condition=Established", "--timeout=60s"])
            .args(&names))
    }

    /// Path of a kubeconfig for the admin user (`system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:<port>` of the kube-apiserver.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// Directory holding the plane's certificates, logs and etcd data.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Directory holding etcd, kube-apiserver, kube-controller-manager and kubectl.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The pinned kubectl, pointed at this plane as admin.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("kubectl"));
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// The pinned helm, pointed at this plane as admin, with its cache and configuration in
    /// the plane's directory (nothing of the user's own helm setup is read or written).
    pub fn helm(&self) -> anyhow::Result<Command> {
        let mut cmd = Command::new(helm()?);
        let home = self.dir.join("helm");
        cmd.env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig);
        Ok(cmd)
    }

    /// Client configuration for the admin user.
    pub async fn admin_config(&self) -> anyhow::Result<Config> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        Ok(Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?)
    }

    /// A client for the admin user. Make one per test: a client belongs to the tokio runtime
    /// it was made in.
    pub async fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::try_from(self.admin_config().await?)?)
    }

    /// A client that impersonates `user` with `groups` (RBAC applies as to that user).
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> anyhow::Result<Client> {
        Ok(Client::try_from(
            self.impersonating_config(user, groups).await?,
        )?)
    }

    /// Client configuration that impersonates `user` with `groups`.
    pub async fn impersonating_config(
        &self,
        user: &str,
        groups: &[&str],
    ) -> anyhow::Result<Config> {
        let mut config = self.admin_config().await?;
        config.auth_info.impersonate = Some(user.to_string());
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
        Ok(config)
    }

    /// A client that acts exactly as the ServiceAccount `namespace/name` would in a pod.
    pub async fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<Client> {
        let (user, groups) = service_account_identity(namespace, name);
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        self.client_as(&user, &groups).await
    }

    /// Creates a namespace with a unique name starting with `prefix` and returns its name.
    pub async fn namespace(&self, prefix: &str) -> anyhow::Result<String> {
        let client = self.client().await?;
        let api: Api<Namespace> = Api::all(client);
        let ns = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("{prefix}-")),
                ..Default::default()
            },
            ..Default::default()
        };
        let created = api.create(&PostParams::default(), &ns).await?;
        Ok(created.metadata.name.expect("apiserver assigns a name"))
    }

    /// Kills the kube-apiserver (as a crash would) and starts it again with the same flags,
    /// port and certificates; returns once it is ready. Every watch on it breaks, and one
    /// resumed from a resourceVersion older than the new watch cache is answered 410 Gone. Only
    /// for a plane of one's own ([`ControlPlane::start`]): the shared plane serves other tests.
    pub fn restart_apiserver(&self) -> anyhow::Result<()> {
        self.processes
            .lock()
            .unwrap()
            .iter_mut()
            .find(|p| p.name() == "kube-apiserver")
            .context("the plane runs no kube-apiserver")?
            .restart()?;
        self.wait_until(Duration::from_secs(120), "kube-apiserver /readyz", || {
            self.kubectl()
                .args(["get", "--raw", "/readyz"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    }

    /// Stops every process (reverse start order) by PID. Idempotent.
    pub fn stop(&self) {
        let mut processes = self.processes.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(mut p) = processes.pop() {
            p.stop();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Polls `check` every 250 ms until it returns `Some`, for at most `timeout`; panics naming
/// `what` after that. Bounded by time, for tests waiting on controllers.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{what} did not happen within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// User name and groups the apiserver gives the ServiceAccount `namespace/name`.
pub fn service_account_identity(namespace: &str, name: &str) -> (String, Vec<String>) {
    (
        format!("system:serviceaccount:{namespace}:{name}"),
        vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".into(),
        ],
    )
}

/// Path of the pinned helm binary, built from its Go module by `tests/tools/build-helm.sh`
/// (or `$KUBE_SCIM_HELM` if set).
pub fn helm() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("KUBE_SCIM_HELM") {
        return Ok(PathBuf::from(path));
    }
    Ok(build_script_output("tests/tools/build-helm.sh", &[])?.join("helm"))
}

/// Path of the pinned actionlint binary, built from its Go module by
/// `tests/tools/build-actionlint.sh` (or `$KUBE_SCIM_ACTIONLINT` if set).
pub fn actionlint() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("KUBE_SCIM_ACTIONLINT") {
        return Ok(PathBuf::from(path));
    }
    Ok(build_script_output("tests/tools/build-actionlint.sh", &[])?.join("actionlint"))
}

/// Path of promtool, taken from Debian's package by `tests/tools/install-promtool.sh` (or
/// `$KUBE_SCIM_PROMTOOL` if set).
pub fn promtool() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("KUBE_SCIM_PROMTOOL") {
        return Ok(PathBuf::from(path));
    }
    Ok(build_script_output("tests/tools/install-promtool.sh", &[])?.join("promtool"))
}

/// The `bin` directory of the pinned Python tools' venv (the webhook receiver, the SCIM
/// checkers), built by `tests/tools/build-python-tools.sh` on a cold cache.
pub fn python_tools() -> anyhow::Result<PathBuf> {
    // Once per test binary: two tests running the script at once on a cold cache would remove
    // each other's half-built virtualenv.
    static TOOLS: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    TOOLS
        .get_or_init(|| {
            build_script_output("tests/tools/build-python-tools.sh", &[])
                .map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The directory holding the Go examples of the docs (`go-informer`, `webhook-receiver-go`),
/// built from their pinned modules by `tests/tools/build-go-examples.sh` on a cold cache.
pub fn go_examples() -> anyhow::Result<PathBuf> {
    // Once per test binary, as python_tools: concurrent cold builds would share one output.
    static EXAMPLES: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    EXAMPLES
        .get_or_init(|| {
            build_script_output("tests/tools/build-go-examples.sh", &[])
                .map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Directory with the control-plane binaries: `$KUBE_SCIM_CONTROLPLANE_BIN` if set, else what
/// `tests/controlplane/build.sh` prints (it builds them on a cold cache).
pub fn binaries() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("KUBE_SCIM_CONTROLPLANE_BIN") {
        return Ok(PathBuf::from(dir));
    }
    build_script_output("tests/controlplane/build.sh", &[])
}

/// Runs a build script of the repository that prints a path, and returns that path.
pub(crate) fn build_script_output(script: &str, args: &[&str]) -> anyhow::Result<PathBuf> {
    let script = repo_root().join(script);
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", script.display(), out.status);
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// Root of the kube-scim repository.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of a binary of this workspace (`kube-scim-operator`, `kube-scim-server`), built by
/// `cargo build --workspace --bins` (which `make test` runs before the tests).
pub fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let path = target.join("debug").join(name);
    if !path.is_file() {
        bail!(
            "{} not found: run `cargo build --workspace --bins` first (make test does)",
            path.display()
        );
    }
    Ok(path)
}

/// A free TCP port on 127.0.0.1 (the kernel picks it; it stays free until someone binds it).
pub fn free_port() -> anyhow::Result<u16> {
    free_port_on(Ipv4Addr::LOCALHOST)
}

/// A free TCP port on `address`, an address of this machine.
pub fn free_port_on(address: Ipv4Addr) -> anyhow::Result<u16> {
    Ok(TcpListener::bind((address, 0))?.local_addr()?.port())
}

fn http_get_ok(port: u16, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
}

/// Runs `cmd` to its end and returns its output; panics, naming the command and showing its
/// output, if it cannot start or fails. For tests, whose failures are panics.
pub fn must_succeed(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} did not start: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Differs between planes of one process and between processes (RandomState is seeded randomly).
fn unique_suffix() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::process::id())
}
