//! Both binaries, started with their default listen addresses (`[::]`), answer `/healthz` and
//! `/readyz` over IPv4 (127.0.0.1) and IPv6 (::1), as kubelet probes a pod's address of either
//! family in a single-stack IPv4, IPv6-only or dual-stack cluster.
//!
//! The wildcard address is bound only inside a network namespace this test creates: its one
//! interface is its own loopback, so nothing outside the namespace can reach the processes (the
//! project's rule that a test listens on loopback only). No apiserver is reachable from there,
//! so `/readyz` answers 503 (not ready): the point is that it answers on both families.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kube_scim_tests::keys::VerifierKeys;
use kube_scim_tests::procs::ManagedProcess;
use kube_scim_tests::workspace_binary;

/// A network namespace of its own, deleted on drop with what `ip netns add` left on the host.
struct Netns {
    name: String,
    /// `/run/netns` was not a mount point before: the first `ip netns add` bind-mounts it onto
    /// itself, and that mount outlives the namespace unless this test removes it.
    unmount_dir: bool,
}

/// `/run/netns` is a mount point now.
fn netns_dir_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|line| line.split(' ').nth(4) == Some("/run/netns"))
}

impl Netns {
    fn create() -> Netns {
        let name = format!("kube-scim-dual-{}", std::process::id());
        let run = |args: &[&str]| {
            let status = Command::new("ip").args(args).status().unwrap();
            assert!(status.success(), "ip {args:?} failed");
        };
        let unmount_dir = !netns_dir_mounted();
        run(&["netns", "add", &name]);
        let netns = Netns { name, unmount_dir };
        run(&["-n", &netns.name, "link", "set", "lo", "up"]);
        netns
    }

    /// `program` started inside the namespace (`ip netns exec` execs it: same PID).
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    fn has_ipv6_loopback(&self) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-6", "addr", "show", "lo"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("::1/128")
    }

    /// Runs `f` on a thread that has entered the namespace (a network namespace belongs to a
    /// thread, so the test's other threads stay where they are).
    fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let file = std::fs::File::open(&path).unwrap();
            // SAFETY: setns with a valid namespace descriptor; it changes only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let empty = std::fs::read_dir("/run/netns").is_ok_and(|mut d| d.next().is_none());
        if self.unmount_dir && empty {
            let _ = Command::new("umount").arg("/run/netns").status();
        }
    }
}

/// The status code of `GET path` at `addr`, or `None` if nothing answers.
fn get(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: probe\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split(' ').nth(1)?.parse().ok()
}

/// Waits (at most 30 s) until `/healthz` answers on `port` over 127.0.0.1 and ::1, then returns
/// the status of `/healthz` and `/readyz` per address.
fn probe_both_families(port: u16) -> Vec<(IpAddr, Option<u16>, Option<u16>)> {
    let addrs = [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    for _ in 0..150 {
        if addrs
            .iter()
            .all(|ip| get(SocketAddr::new(*ip, port), "/healthz").is_some())
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    addrs
        .iter()
        .map(|ip| {
            let addr = SocketAddr::new(*ip, port);
            (*ip, get(addr, "/healthz"), get(addr, "/readyz"))
        })
        .collect()
}

fn kubeconfig(dir: &Path) -> PathBuf {
    // Nothing listens on this port in the namespace: the binaries start, keep retrying the
    // apiserver and stay not ready.
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
         clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\n\
         users: [{name: u, user: {token: unreachable}}]\n\
         contexts: [{name: c, context: {cluster: c, user: u}}]\n",
    )
    .unwrap();
    path
}

#[test]
fn both_binaries_answer_probes_over_ipv4_and_ipv6_with_default_addresses() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: creating a network namespace needs root");
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dual-stack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = VerifierKeys::create(&dir.join("verifier-keys")).unwrap();
    let kubeconfig = kubeconfig(&dir);
    let netns = Netns::create();
    if !netns.has_ipv6_loopback() {
        eprintln!("SKIPPED: this kernel gives a network namespace's loopback no ::1 (IPv6 off)");
        return;
    }

    // One at a time: both default to port 8080.
    for (binary, ports) in [
        ("kube-scim-operator", &[8080][..]),
        ("kube-scim-server", &[9090, 8080][..]),
    ] {
        let mut cmd = netns.command(&workspace_binary(binary).unwrap());
        cmd.env("KUBECONFIG", &kubeconfig)
            .env("KUBE_SCIM_LOG_FORMAT", "text")
            .arg("--verifier-key-dir")
            .arg(keys.path());
        let mut process =
            ManagedProcess::spawn_command(binary, cmd, &dir.join(format!("{binary}.log"))).unwrap();
        // The probe port answers both probes on both families; the server's API port (8080)
        // accepts on both too (its /healthz is on the probe port only, so any answer counts).
        let probes = netns.within({
            let port = ports[0];
            move || probe_both_families(port)
        });
        for (ip, healthz, readyz) in &probes {
            assert_eq!(
                *healthz,
                Some(200),
                "{binary} /healthz over {ip}: {probes:?}\n{}",
                process.log_tail(30)
            );
            assert!(
                matches!(readyz, Some(200 | 503)),
                "{binary} /readyz over {ip}: {probes:?}\n{}",
                process.log_tail(30)
            );
        }
        if let Some(&api) = ports.get(1) {
            let answers = netns.within(move || {
                [
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(Ipv6Addr::LOCALHOST),
                ]
                .map(|ip| get(SocketAddr::new(ip, api), "/scim/v2/x/y/Users"))
            });
            assert!(
                answers.iter().all(Option::is_some),
                "{binary} API port over 127.0.0.1 and ::1: {answers:?}\n{}",
                process.log_tail(30)
            );
        }
        assert!(process.is_running(), "{}", process.log_tail(30));
        process.stop();
    }
    let leaves_a_mount = netns.unmount_dir;
    drop(netns);
    assert!(
        !(leaves_a_mount && netns_dir_mounted()),
        "the namespace's /run/netns mount is left on the host"
    );
}
