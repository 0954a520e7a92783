//! A real node beside the test control plane: kube-scheduler, kubelet, kube-proxy, containerd
//! with runc and the CNI reference plugins, built by `tests/node/build.sh`.
//!
//! The node's network lives only on a bridge that [`NodeCluster::start`] creates: the node's
//! address, the apiserver's address and the pod network are on it, and the Service network is
//! routed to it. No rule masquerades or forwards anything towards another interface, and
//! forwarding is left as the machine has it, so pods reach the host and each other, nothing else.
//!
//! Teardown stops every process by PID (pods through the CRI first) and then removes what the
//! kubelet, containerd, kube-proxy and CNI leave on the host: mounts under the node's directory,
//! the `kubepods` cgroups, iptables chains, the bridge. [`NodeCluster::leftovers`] lists whatever
//! would still remain, and tests assert that it is empty.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub mod chart;
mod host;
mod traefik;
pub use traefik::{TRAEFIK_IMAGE, Traefik};

use host::{
    HostState, create_bridge, link_exists, mounts_below, pids_in_pod_cgroups, pids_of_pod,
    pod_cgroups, processes_whose_command_line_contains, remove_bridge, remove_cgroups,
    remove_chains, remove_container_log_links, unmount_below,
};

use serde_json::{Value, json};

use crate::procs::{self, ManagedProcess, wait_until};
use crate::{ControlPlane, PlaneOptions, SERVICE_CIDR, free_port, must_succeed, run};

/// Name of the node in the cluster.
pub const NODE_NAME: &str = "kube-scim-node";
/// The sandbox image containerd is configured with (built from `tests/node/pause`).
pub const SANDBOX_IMAGE: &str = "registry.k8s.io/pause:3.10";
/// An image holding the plane's own (static) kubectl, for checks from inside a pod with the
/// pod's own token ([`NodeCluster::import_kubectl_image`]).
pub const KUBECTL_IMAGE: &str = "docker.io/kube-scim/test-kubectl:latest";
/// The pod network (one node, one /24).
pub const POD_CIDR: &str = "10.244.0.0/24";
/// The bridge's own address: the node's InternalIP and the apiserver's address.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
const NODE_PREFIX_LEN: u8 = 24;

/// A control plane and one node that runs pods.
pub struct NodeCluster {
    plane: ControlPlane,
    dir: PathBuf,
    bin_dir: PathBuf,
    bridge: String,
    containerd_socket: PathBuf,
    processes: Mutex<Vec<ManagedProcess>>,
    host_before: HostState,
    stopped: Mutex<bool>,
    /// Held until the node is dropped: the node takes the host's [`NODE_IP`], kubepods cgroups
    /// and iptables chains, so a second one (another test binary, a benchmark) waits for it.
    _host_lock: std::fs::File,
}

/// The lock file that serialises nodes on this host.
const HOST_LOCK: &str = "/tmp/kube-scim-node.lock";

impl NodeCluster {
    /// Builds (or takes from the cache) every binary, creates the bridge, starts a control plane
    /// on it and a node, and waits until the node is Ready. The CRDs are not installed (the
    /// chart does that).
    pub fn start() -> anyhow::Result<NodeCluster> {
        let bin_dir = node_binaries()?;
        let host_lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(HOST_LOCK)?;
        if host_lock.try_lock().is_err() {
            eprintln!("waiting for the node of another process on this host ({HOST_LOCK})");
            host_lock.lock()?;
        }
        let host_before = HostState::capture();
        let bridge = format!("kscim{}", std::process::id() % 1_000_000_000);
        create_bridge(&bridge)?;
        let plane = match ControlPlane::start_with(PlaneOptions {
            install_crds: false,
            address: NODE_IP,
            for_node: true,
        }) {
            Ok(plane) => plane,
            Err(e) => {
                remove_bridge(&bridge);
                return Err(e);
            }
        };
        let dir = plane.dir().join("node");
        let cluster = NodeCluster {
            containerd_socket: dir.join("containerd/containerd.sock"),
            dir,
            bin_dir,
            bridge,
            plane,
            processes: Mutex::new(Vec::new()),
            host_before,
            stopped: Mutex::new(false),
            _host_lock: host_lock,
        };
        if let Err(e) = cluster.boot() {
            let logs = cluster.log_tails();
            cluster.stop();
            return Err(e.context(format!("starting the node{logs}")));
        }
        Ok(cluster)
    }

    fn boot(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        for sub in ["containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs"] {
            std::fs::create_dir_all(self.dir.join(sub))?;
        }
        self.start_scheduler()?;
        self.start_containerd()?;
        self.import_image(&self.sandbox_image()?)?;
        self.start_kubelet()?;
        self.start_kube_proxy()?;
        wait_until(
            &self.processes,
            Duration::from_secs(180),
            &format!("node {NODE_NAME} to be Ready"),
            || {
                self.plane
                    .kubectl()
                    .args(["get", "node", NODE_NAME, "-o"])
                    .arg("jsonpath={.status.conditions[?(@.type==\"Ready\")].status}")
                    .output()
                    .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "True")
            },
        )
    }

    fn start_scheduler(&self) -> anyhow::Result<()> {
        let kubeconfig =
            self.plane
                .component_kubeconfig("kube-scheduler", "system:kube-scheduler", None)?;
        let kubeconfig = kubeconfig.display().to_string();
        let mut cmd = Command::new(self.bin_dir.join("kube-scheduler"));
        cmd.args([
            format!("--kubeconfig={kubeconfig}"),
            format!("--authentication-kubeconfig={kubeconfig}"),
            format!("--authorization-kubeconfig={kubeconfig}"),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", free_port()?),
            "--v=1".into(),
        ]);
        self.spawn("kube-scheduler", cmd)
    }

    fn start_containerd(&self) -> anyhow::Result<()> {
        let root = self.dir.join("containerd");
        let config = root.join("config.toml");
        std::fs::write(
            self.dir.join("cni/net.d/10-kube-scim.conflist"),
            serde_json::to_string_pretty(&serde_json::json!({
                "cniVersion": "1.0.0",
                "name": self.bridge,
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": self.bridge,
                        "isGateway": true,
                        // Pods talk to the host and each other only: no NAT towards anything else.
                        "ipMasq": false,
                        "hairpinMode": true,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP.to_string()}]],
                            // No default route: pods reach the pod network (on the bridge) and
                            // Services (through the host), and no other address.
                            "routes": [{"dst": SERVICE_CIDR}],
                            "dataDir": self.dir.join("cni/ipam"),
                        },
                    },
                    {"type": "portmap", "capabilities": {"portMappings": true}},
                ],
            }))?,
        )?;
        std::fs::write(
            &config,
            format!(
                r#"version = 3
root = "{root}/root"
state = "{root}/state"

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{sandbox}"

[plugins.'io.containerd.cri.v1.runtime']
  # This machine denies negative oom_score_adj even to root (no CAP_SYS_RESOURCE).
  restrict_oom_score_adj = true
  # Network namespaces are mounted under the node's own directory, not /var/run/netns.
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{bin}/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{bin}/cni"]
    conf_dir = "{cni_conf}"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"#,
                root = root.display(),
                socket = self.containerd_socket.display(),
                sandbox = SANDBOX_IMAGE,
                bin = self.bin_dir.display(),
                cni_conf = self.dir.join("cni/net.d").display(),
            ),
        )?;
        let mut cmd = Command::new(self.bin_dir.join("containerd"));
        cmd.arg("--config").arg(&config);
        // containerd finds its shim on the PATH.
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", self.bin_dir.display()));
        self.spawn("containerd", cmd)?;
        wait_until(
            &self.processes,
            Duration::from_secs(30),
            "containerd to answer on its socket",
            || {
                self.ctr()
                    .arg("version")
                    .output()
                    .is_ok_and(|out| out.status.success())
            },
        )
    }

    fn start_kubelet(&self) -> anyhow::Result<()> {
        let kubeconfig = self.plane.component_kubeconfig(
            "kubelet",
            &format!("system:node:{NODE_NAME}"),
            Some("system:nodes"),
        )?;
        let config = self.dir.join("kubelet/config.yaml");
        std::fs::write(
            &config,
            format!(
                r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine's cgroup hierarchy is v1; Kubernetes 1.36 runs there only when told to.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://{socket}
address: {node_ip}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: Webhook}}
podLogsDir: {pod_logs}
# Pods get no resolver: nothing of ours resolves names, and none may reach the host's.
resolvConf: ""
failSwapOn: false
# No CAP_SYS_RESOURCE here, so no negative oom_score_adj.
oomScoreAdj: 0
# Test images are imported, never pulled: never collect them, never evict for disk pressure.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}}
"#,
                socket = self.containerd_socket.display(),
                node_ip = NODE_IP,
                port = crate::free_port_on(NODE_IP)?,
                healthz = free_port()?,
                ca = self.plane.ca_file().display(),
                pod_logs = self.dir.join("pod-logs").display(),
            ),
        )?;
        let mut cmd = Command::new(self.bin_dir.join("kubelet"));
        cmd.args([
            format!("--config={}", config.display()),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--root-dir={}", self.dir.join("kubelet/root").display()),
            format!("--cert-dir={}", self.dir.join("kubelet/pki").display()),
            format!("--hostname-override={NODE_NAME}"),
            format!("--node-ip={NODE_IP}"),
            "--v=1".into(),
        ]);
        self.spawn("kubelet", cmd)
    }

    fn start_kube_proxy(&self) -> anyhow::Result<()> {
        let kubeconfig =
            self.plane
                .component_kubeconfig("kube-proxy", "system:kube-proxy", None)?;
        let config = self.dir.join("kube-proxy.yaml");
        std::fs::write(
            &config,
            format!(
                r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {kubeconfig}}}
hostnameOverride: {node}
mode: iptables
clusterCIDR: {pod_cidr}
bindAddress: {node_ip}
healthzBindAddress: 127.0.0.1:{healthz}
metricsBindAddress: 127.0.0.1:{metrics}
# NodePorts, if any, only on the bridge (never on loopback, which would need route_localnet).
nodePortAddresses: ["{node_ip}/32"]
oomScoreAdj: 0
# 0: leave the host's conntrack settings as they are.
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
"#,
                kubeconfig = kubeconfig.display(),
                node = NODE_NAME,
                pod_cidr = POD_CIDR,
                node_ip = NODE_IP,
                healthz = free_port()?,
                metrics = free_port()?,
            ),
        )?;
        let mut cmd = Command::new(self.bin_dir.join("kube-proxy"));
        cmd.arg(format!("--config={}", config.display()))
            .arg("--v=1");
        self.spawn("kube-proxy", cmd)
    }

    /// The control plane of this cluster.
    pub fn plane(&self) -> &ControlPlane {
        &self.plane
    }

    /// `ctr` against this node's containerd, in the CRI's `k8s.io` namespace.
    pub fn ctr(&self) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("ctr"));
        cmd.arg("--address")
            .arg(&self.containerd_socket)
            .args(["--namespace", "k8s.io"]);
        cmd
    }

    /// Imports an OCI archive (as `images/build.sh` writes them) into the node's containerd.
    pub fn import_image(&self, archive: &Path) -> anyhow::Result<()> {
        run(self
            .ctr()
            .args(["images", "import", "--platform", "linux/amd64"])
            .arg(archive))
    }

    /// Builds [`KUBECTL_IMAGE`] from the plane's kubectl and imports it.
    pub fn import_kubectl_image(&self) -> anyhow::Result<()> {
        let archive = self.dir.join("kubectl.oci.tar");
        build_static_image(
            &self.plane.bin_dir().join("kubectl"),
            KUBECTL_IMAGE,
            &archive,
        )?;
        self.import_image(&archive)
    }

    /// Runs a pod (`spec`, restartPolicy Never) to completion and returns its phase and log.
    /// For tests: panics when a kubectl call fails or the pod has not ended within 120 s.
    pub fn run_pod(&self, namespace: &str, name: &str, mut spec: Value) -> (String, String) {
        spec["restartPolicy"] = json!("Never");
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        });
        let manifest = self.dir.join(format!("pod-{namespace}-{name}.json"));
        std::fs::write(&manifest, pod.to_string()).expect("write the pod manifest");
        let kubectl = || self.plane.kubectl();
        must_succeed(kubectl().args(["apply", "-f"]).arg(&manifest));
        let deadline = Instant::now() + Duration::from_secs(120);
        let phase = loop {
            let out = must_succeed(
                kubectl()
                    .args(["get", "pod", name, "-n", namespace, "-o"])
                    .arg("jsonpath={.status.phase}"),
            );
            let phase = String::from_utf8_lossy(&out.stdout).to_string();
            if phase == "Succeeded" || phase == "Failed" {
                break phase;
            }
            if Instant::now() > deadline {
                let describe = kubectl()
                    .args(["describe", "pod", name, "-n", namespace])
                    .output();
                panic!(
                    "pod {namespace}/{name} still {phase:?} after 120 s: {}{}",
                    describe
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default(),
                    self.log_tails()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let log = must_succeed(kubectl().args(["logs", name, "-n", namespace]));
        (phase, String::from_utf8_lossy(&log.stdout).into_owned())
    }

    /// The sandbox image, built from `tests/node/pause` by `images/build.sh`.
    fn sandbox_image(&self) -> anyhow::Result<PathBuf> {
        let out = self.dir.join("pause.oci.tar");
        build_static_image(&self.bin_dir.join("pause"), SANDBOX_IMAGE, &out)?;
        Ok(out)
    }

    fn spawn(&self, name: &str, cmd: Command) -> anyhow::Result<()> {
        let log = self.dir.join(format!("{name}.log"));
        let process = ManagedProcess::spawn_command(name, cmd, &log)?;
        self.processes.lock().unwrap().push(process);
        Ok(())
    }

    /// Last lines of every node process's log, for failure messages.
    pub fn log_tails(&self) -> String {
        procs::log_tails(&self.processes)
    }

    /// Stops the node and the plane and removes everything they left on the host. Idempotent.
    pub fn stop(&self) {
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        if *stopped {
            return;
        }
        *stopped = true;
        let stop = |name: &str| {
            let mut processes = self.processes.lock().unwrap_or_else(|e| e.into_inner());
            for p in processes.iter_mut().filter(|p| p.name() == name) {
                p.stop();
            }
        };
        // The kubelet first, so nothing restarts what the CRI removes next.
        stop("kubelet");
        self.remove_pods();
        stop("containerd");
        let mut processes = self.processes.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(mut p) = processes.pop() {
            p.stop();
        }
        drop(processes);
        // kube-proxy removes its own rules; the sweep below takes what any component left.
        let _ = Command::new(self.bin_dir.join("kube-proxy"))
            .arg("--cleanup")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.kill_pod_processes();
        unmount_below(&self.dir);
        remove_cgroups();
        remove_chains();
        self.plane.stop();
        remove_bridge(&self.bridge);
        self.host_before.remove_new_host_paths();
        remove_container_log_links(&self.dir.join("pod-logs"));
    }

    /// Stops and removes every pod sandbox through containerd (CNI DEL included), then kills
    /// the shims that are still there: those whose command line names this node's containerd.
    fn remove_pods(&self) {
        let log = std::fs::File::create(self.dir.join("crictl.log"));
        let mut crictl = Command::new(self.bin_dir.join("crictl"));
        crictl
            .arg("--runtime-endpoint")
            .arg(format!("unix://{}", self.containerd_socket.display()))
            .args(["--timeout", "30s", "rmp", "--force", "--all"]);
        if let Ok(log) = log {
            if let Ok(err) = log.try_clone() {
                crictl.stderr(err);
            }
            crictl.stdout(log);
        }
        let _ = crictl.status();
        for pid in self.shims() {
            // SAFETY: kill(2) on a PID whose command line names this node's containerd socket.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    /// PIDs of the containerd shims of this node (each names the node's socket in its command line).
    fn shims(&self) -> Vec<i32> {
        let socket = self.containerd_socket.as_os_str().as_encoded_bytes();
        processes_whose_command_line_contains(socket)
    }

    /// Crashes the containers of the pod with `uid` as a power cut or the OOM killer would:
    /// SIGKILL to each of their processes, no SIGTERM, so nothing is released or flushed (the
    /// sandbox stays; the kubelet restarts the containers). Returns how many were killed.
    pub fn crash_pod(&self, uid: &str) -> usize {
        let pids = pids_of_pod(uid);
        for pid in &pids {
            // SAFETY: kill(2) on a PID listed in a cgroup our kubelet created for the pod.
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
        pids.len()
    }

    /// Kills what still runs in the node's pod cgroups (a container whose sandbox was gone).
    fn kill_pod_processes(&self) {
        for pid in pids_in_pod_cgroups() {
            // SAFETY: kill(2) on a PID listed in the cgroups our kubelet created for its pods.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    /// What this cluster would leave behind on the host if it stopped now (after [`stop`],
    /// an empty list): processes, mounts, cgroups, iptables chains and rules, the bridge.
    ///
    /// [`stop`]: NodeCluster::stop
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for p in self.processes.lock().unwrap().iter_mut() {
            if p.is_running() {
                left.push(format!("process {} (pid {:?})", p.name(), p.pid()));
            }
        }
        for pid in processes_whose_command_line_contains(self.dir.as_os_str().as_encoded_bytes()) {
            left.push(format!(
                "process {pid} (its command line names {})",
                self.dir.display()
            ));
        }
        for mount in mounts_below(&self.dir) {
            left.push(format!("mount {}", mount.display()));
        }
        if !pids_in_pod_cgroups().is_empty() || !pod_cgroups().is_empty() {
            left.push("kubepods cgroups".into());
        }
        if link_exists(&self.bridge) {
            left.push(format!("bridge {}", self.bridge));
        }
        let after = HostState::capture();
        for rule in after.iptables.difference(&self.host_before.iptables) {
            left.push(format!("iptables: {rule}"));
        }
        for path in after.paths.difference(&self.host_before.paths) {
            left.push(format!("path {path}"));
        }
        left
    }
}

impl Drop for NodeCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `test` against a new node cluster on a multi-threaded runtime, then stops the cluster
/// and asserts that it left nothing behind on the host (processes, mounts, cgroups, iptables
/// rules, the bridge). For tests: panics when the cluster cannot start or left something.
pub fn run_on_node(test: impl AsyncFnOnce(&NodeCluster)) {
    let cluster = NodeCluster::start().expect("the node cluster starts");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(test(&cluster));
    drop(runtime);

    cluster.stop();
    let left = cluster.leftovers();
    assert!(
        left.is_empty(),
        "the node left this behind on the host: {left:#?}"
    );
}

/// Directory with every node binary: `$KUBE_SCIM_NODE_BIN` if set, else what
/// `tests/node/build.sh` prints (it builds them on a cold cache).
pub fn node_binaries() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("KUBE_SCIM_NODE_BIN") {
        return Ok(PathBuf::from(dir));
    }
    crate::build_script_output("tests/node/build.sh", &[])
}

/// Packages a static binary as an image with `images/build.sh --static` (the recipe of the
/// product images), written as an OCI archive to `out`.
pub fn build_static_image(binary: &Path, reference: &str, out: &Path) -> anyhow::Result<()> {
    let (binary, out) = (binary.display().to_string(), out.display().to_string());
    crate::build_script_output(
        "images/build.sh",
        &["--static", &binary, "--name", reference, "--out", &out],
    )?;
    Ok(())
}

/// A container security context the `restricted` Pod Security Standard admits. No user is
/// given, so the kubelet checks that the image's own user is not root.
pub fn restricted_container() -> Value {
    json!({
        "runAsNonRoot": true,
        "readOnlyRootFilesystem": true,
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}
