//! What a test node changes on the host, and how the harness puts it back: the bridge, the
//! iptables chains of the kubelet, kube-proxy and CNI, mounts, the `kubepods` cgroups, the host
//! paths containerd and the kubelet create, and the processes that outlive their parent.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;

use super::{NODE_IP, NODE_PREFIX_LEN, POD_CIDR};
use crate::{SERVICE_CIDR, run};

/// Chains that the kubelet, kube-proxy and the CNI portmap plugin create.
const CHAIN_PREFIXES: [&str; 2] = ["KUBE-", "CNI-"];
const IPTABLES_TABLES: [&str; 3] = ["filter", "nat", "mangle"];
const IPTABLES: [&str; 2] = ["iptables", "ip6tables"];

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("ip").args(args))
}

pub(super) fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// The node's bridge with its address, and the Service network routed onto it.
pub(super) fn create_bridge(name: &str) -> anyhow::Result<()> {
    let taken = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    // 10.244.0.0 in /proc/net/route's little-endian hex.
    if taken
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("0000F40A"))
    {
        bail!(
            "{POD_CIDR} is already routed on this machine: is another kube-scim node cluster \
             running (`ip -br link | grep kscim`)?"
        );
    }
    ip(&["link", "add", name, "type", "bridge"])?;
    let result = (|| {
        ip(&[
            "addr",
            "add",
            &format!("{NODE_IP}/{NODE_PREFIX_LEN}"),
            "dev",
            name,
        ])?;
        ip(&["link", "set", name, "up"])?;
        ip(&["route", "add", SERVICE_CIDR, "dev", name])
    })();
    if result.is_err() {
        remove_bridge(name);
    }
    result
}

/// Deleting the bridge also removes its address and the Service route; the veths of pods went
/// with their network namespaces.
pub(super) fn remove_bridge(name: &str) {
    if link_exists(name) {
        let _ = ip(&["link", "del", name]);
    }
}

/// What of the host the node may change, captured before it starts.
pub(super) struct HostState {
    /// `iptables-save` lines (rules and non-builtin chains) of every table, both families.
    pub(super) iptables: BTreeSet<String>,
    /// Host paths that containerd and the kubelet create when they are absent.
    pub(super) paths: BTreeSet<String>,
}

/// Paths outside the node's directory that containerd, CNI or the kubelet may create.
const HOST_PATHS: [&str; 6] = [
    "/run/containerd",
    "/var/lib/cni",
    "/var/run/netns",
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/kubelet",
];

impl HostState {
    pub(super) fn capture() -> HostState {
        let mut iptables = BTreeSet::new();
        for bin in IPTABLES {
            for table in IPTABLES_TABLES {
                for line in iptables_save(bin, table).lines() {
                    if line.starts_with("-A ") || (line.starts_with(':') && !is_builtin_chain(line))
                    {
                        iptables.insert(format!("{bin} -t {table} {line}"));
                    }
                }
            }
        }
        let paths = HOST_PATHS
            .iter()
            .filter(|p| Path::new(p).exists())
            .map(|p| p.to_string())
            .collect();
        HostState { iptables, paths }
    }

    /// Removes the host paths that did not exist before the node started.
    pub(super) fn remove_new_host_paths(&self) {
        for path in HOST_PATHS {
            if !self.paths.contains(path) && Path::new(path).exists() {
                unmount_below(Path::new(path));
                let _ = std::fs::remove_dir_all(path);
            }
        }
    }
}

fn is_builtin_chain(line: &str) -> bool {
    let name = line[1..].split_whitespace().next().unwrap_or_default();
    matches!(
        name,
        "INPUT" | "OUTPUT" | "FORWARD" | "PREROUTING" | "POSTROUTING"
    )
}

fn iptables_save(bin: &str, table: &str) -> String {
    Command::new(format!("{bin}-save"))
        .args(["-t", table])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Removes every chain named `KUBE-*`/`CNI-*` and every rule that mentions one, table by table,
/// with one atomic `iptables-restore` of the table as it was less those lines.
pub(super) fn remove_chains() {
    let ours = |line: &str| CHAIN_PREFIXES.iter().any(|p| line.contains(p));
    for bin in IPTABLES {
        for table in IPTABLES_TABLES {
            let saved = iptables_save(bin, table);
            if !saved.lines().any(ours) {
                continue;
            }
            let kept: String = saved
                .lines()
                .filter(|l| !ours(l))
                .map(|l| format!("{l}\n"))
                .collect();
            let restore = Command::new(format!("{bin}-restore"))
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if let Ok(mut child) = restore {
                use std::io::Write;
                if let Some(mut stdin) = child.stdin.take() {
                    let _ = stdin.write_all(kept.as_bytes());
                }
                let _ = child.wait();
            }
        }
    }
}

/// PIDs of the processes whose command line contains `needle` (this process excluded).
pub(super) fn processes_whose_command_line_contains(needle: &[u8]) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

/// Mount points at or below `dir`, deepest first.
pub(super) fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mount_path(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    mounts.dedup();
    mounts
}

fn unescape_mount_path(p: &str) -> String {
    p.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Unmounts (lazily, so a busy one goes too) everything mounted below `dir`.
pub(super) fn unmount_below(dir: &Path) {
    for _ in 0..3 {
        let mounts = mounts_below(dir);
        if mounts.is_empty() {
            return;
        }
        for mount in mounts {
            if let Ok(path) = std::ffi::CString::new(mount.as_os_str().as_encoded_bytes()) {
                // SAFETY: umount2 with a NUL-terminated path we own.
                unsafe {
                    libc::umount2(path.as_ptr(), libc::MNT_DETACH);
                }
            }
        }
    }
}

/// The `kubepods` cgroups the kubelet created, in every cgroup v1 hierarchy (and v2, if any).
pub(super) fn pod_cgroups() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    for hierarchy in hierarchies.flatten() {
        let candidate = hierarchy.path().join("kubepods");
        if candidate.is_dir() {
            found.push(candidate);
        }
    }
    found
}

pub(super) fn pids_in_pod_cgroups() -> Vec<i32> {
    let mut pids = BTreeSet::new();
    for root in pod_cgroups() {
        for procs in find_files(&root, "cgroup.procs") {
            for pid in std::fs::read_to_string(procs).unwrap_or_default().lines() {
                if let Ok(pid) = pid.trim().parse() {
                    pids.insert(pid);
                }
            }
        }
    }
    pids.into_iter().collect()
}

/// PIDs in the cgroups of the pod with `uid` (cgroupfs names them `pod<uid>`), without the
/// sandbox's `pause` process.
pub(super) fn pids_of_pod(uid: &str) -> Vec<i32> {
    let mut pids = BTreeSet::new();
    let name = format!("pod{uid}");
    for root in pod_cgroups() {
        for dir in find_dirs(&root) {
            if !dir.components().any(|c| c.as_os_str() == name.as_str()) {
                continue;
            }
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() != "pause" {
                    pids.insert(pid);
                }
            }
        }
    }
    pids.into_iter().collect()
}

/// Removes the `kubepods` cgroup trees, deepest first (a cgroup is removed with rmdir once it
/// holds no process and no child).
pub(super) fn remove_cgroups() {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        for root in pod_cgroups() {
            let mut dirs = find_dirs(&root);
            dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            for dir in dirs {
                let _ = std::fs::remove_dir(dir);
            }
        }
        if pod_cgroups().is_empty() || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The kubelet links each container's log into /var/log/containers whatever podLogsDir says.
pub(super) fn remove_container_log_links(pod_logs: &Path) {
    let Ok(entries) = std::fs::read_dir("/var/log/containers") else {
        return;
    };
    for entry in entries.flatten() {
        if std::fs::read_link(entry.path()).is_ok_and(|t| t.starts_with(pod_logs)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn find_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = std::fs::read_dir(&out[i]) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

fn find_files(root: &Path, name: &str) -> Vec<PathBuf> {
    find_dirs(root)
        .into_iter()
        .map(|d| d.join(name))
        .filter(|p| p.is_file())
        .collect()
}
