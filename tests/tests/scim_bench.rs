//! Benchmark of the SCIM server against the real control plane. Prints figures; asserts
//! nothing about timing. Run with
//! `cargo build -p kube-scim-server --bins && cargo test -p kube-scim-tests --test scim_bench -- --ignored --nocapture`.
//! `BENCH_USERS_LARGE` (default 10000) sets the large user count for the filter/memory figures
//! (the goal is stated at 100000; that takes a long time on a small machine).
//! `KUBE_SCIM_SERVER_BIN` selects the server binary (default: the debug build); figures are only
//! meaningful with `cargo build --release -p kube-scim-server`.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_scim_crds::{
    DirectoryRef, ScimDirectory, ScimDirectorySpec, ScimUser, ScimUserSpec, ScimUserStatus,
};
use kube_scim_tests::keys::VerifierKeys;
use kube_scim_tests::procs::ManagedProcess;
use kube_scim_tests::{ControlPlane, free_port, workspace_binary};
use serde_json::{Value, json};

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn directory(client: &Client, ns: &str, name: &str, token: &str, keys: &VerifierKeys) {
    let api: Api<ScimDirectory> = Api::namespaced(client.clone(), ns);
    api.create(
        &PostParams::default(),
        &ScimDirectory::new(name, ScimDirectorySpec::default()),
    )
    .await
    .unwrap();
    let hash = keys.verifiers(token.as_bytes()).remove(0);
    let st = json!({"status": {"tokenVerifiers": [{"hash": hash}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "bench", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap();
}

struct Bench {
    http: reqwest::Client,
    base: String,
    token: String,
    metrics: String,
}

impl Bench {
    async fn post_user(&self, name: &str) -> (u16, f64) {
        let t = Instant::now();
        let r = self
            .http
            .post(format!("{}/Users", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/scim+json")
            .body(json!({"userName": name, "externalId": name, "displayName": format!("Display {name}"), "title": "Engineer",
                "name": {"givenName": "Given", "familyName": "Family"}, "emails": [{"type": "work", "value": name, "primary": true}],
                "phoneNumbers": [{"type": "work", "value": "+1 555 0100"}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Engineering", "employeeNumber": "12345"}}).to_string())
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        let _ = r.bytes().await;
        (s, t.elapsed().as_secs_f64() * 1000.0)
    }
    async fn filter(&self, name: &str) -> f64 {
        let t = Instant::now();
        let r = self
            .http
            .get(format!("{}/Users", self.base))
            .query(&[("filter", format!("userName eq \"{name}\""))])
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["totalResults"], 1, "{name}");
        t.elapsed().as_secs_f64() * 1000.0
    }
    async fn api_calls(&self) -> f64 {
        let m = reqwest::get(&self.metrics)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        m.lines()
            .filter(|l| l.starts_with("kube_scim_apiserver_calls_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn direct_user(ns: &str, dir: &str, name: &str) -> ScimUser {
    let mut u = ScimUser::new(
        &uuid::Uuid::new_v4().to_string(),
        ScimUserSpec {
            directory_ref: DirectoryRef { name: dir.into() },
        },
    );
    u.metadata.namespace = Some(ns.into());
    // A typical Entra user: the default attribute mapping.
    let status = json!({
        "id": u.metadata.name.clone().unwrap(),
        "userName": name,
        "externalId": format!("{}", uuid::Uuid::new_v4()),
        "active": true,
        "displayName": format!("Display {name}"),
        "title": "Engineer",
        "name": {"givenName": "Given", "familyName": format!("Family {name}")},
        "emails": [{"type": "work", "value": name, "primary": true}],
        "phoneNumbers": [{"type": "work", "value": "+1 555 0100"}],
        "enterprise": {"department": "Engineering", "employeeNumber": "12345"},
        "meta": {"resourceType": "User", "created": "2026-01-01T00:00:00Z", "lastModified": "2026-01-01T00:00:00Z"}
    });
    u.status = Some(serde_json::from_value::<ScimUserStatus>(status).unwrap());
    u
}

#[tokio::test]
#[ignore = "benchmark: run explicitly with --ignored --nocapture"]
async fn scim_server_benchmark() {
    let large: usize = std::env::var("BENCH_USERS_LARGE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let plane = ControlPlane::shared();
    let client = plane.client().await.unwrap();
    let ns = plane.namespace("scim-bench").await.unwrap();
    let token = format!("bench-{}", uuid::Uuid::new_v4());
    let keys = VerifierKeys::create(&plane.dir().join(format!("verifier-keys-{ns}"))).unwrap();
    directory(&client, &ns, "bench", &token, &keys).await;
    directory(&client, &ns, "direct", &token, &keys).await;
    let port = free_port().unwrap();
    let mport = free_port().unwrap();
    // KUBE_SCIM_SERVER_BIN points at another build (e.g. target/release/kube-scim-server).
    let bin = std::env::var_os("KUBE_SCIM_SERVER_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_binary("kube-scim-server").unwrap());
    println!("server binary: {}", bin.display());
    let mut cmd = Command::new(bin);
    cmd.env("KUBECONFIG", plane.kubeconfig()).args([
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--metrics-bind-address",
        &format!("127.0.0.1:{mport}"),
        "--watch-namespaces",
        &ns,
        "--log-level",
        "warn",
        "--max-concurrent-requests",
        "128",
    ]);
    cmd.arg("--verifier-key-dir").arg(keys.path());
    let log = plane.dir().join(format!("scim-bench-{port}.log"));
    let mut proc = ManagedProcess::spawn_command("kube-scim-server", cmd, &log).unwrap();
    let b = Arc::new(Bench {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .unwrap(),
        base: format!("http://127.0.0.1:{port}/scim/v2/{ns}/bench"),
        token,
        metrics: format!("http://127.0.0.1:{mport}/metrics"),
    });
    for _ in 0..300 {
        if b.http
            .get(format!("{}/Users?count=1", b.base))
            .bearer_auth(&b.token)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = proc.pid().unwrap();
    println!("== kube-scim-server benchmark (namespace {ns}) ==");
    let base_rss = rss_kb(pid);
    println!("server RSS at start (synced, empty): {base_rss} KiB");

    // apiserver calls per SCIM operation.
    let c0 = b.api_calls().await;
    let (s, _) = b.post_user("calls@bench").await;
    assert_eq!(s, 201);
    let c1 = b.api_calls().await;
    b.filter("calls@bench").await;
    let c2 = b.api_calls().await;
    println!(
        "apiserver calls: POST /Users = {}, filter GET = {}",
        c1 - c0,
        c2 - c1
    );

    // Throughput: SCIM creates vs direct creates, same concurrency.
    let users_api: Api<ScimUser> = Api::namespaced(client.clone(), &ns);
    let n = 1000usize;
    for conc in [16usize, 64] {
        let t = Instant::now();
        let bb = b.clone();
        let codes: Vec<u16> = futures::stream::iter(0..n)
            .map(|i| {
                let bb = bb.clone();
                async move { bb.post_user(&format!("tp{conc}-{i}@bench")).await.0 }
            })
            .buffer_unordered(conc)
            .collect()
            .await;
        let scim_rate = n as f64 / t.elapsed().as_secs_f64();
        assert!(codes.iter().all(|c| *c == 201));
        let t = Instant::now();
        let ns2 = ns.clone();
        let _: Vec<()> = futures::stream::iter(0..n)
            .map(|i| {
                let api = users_api.clone();
                let ns2 = ns2.clone();
                async move {
                    api.create(
                        &PostParams::default(),
                        &direct_user(&ns2, "direct", &format!("d{conc}-{i}@bench")),
                    )
                    .await
                    .unwrap();
                }
            })
            .buffer_unordered(conc)
            .collect()
            .await;
        let direct_rate = n as f64 / t.elapsed().as_secs_f64();
        println!(
            "creates/s at concurrency {conc}: SCIM {scim_rate:.0}/s, direct kube client {direct_rate:.0}/s, ratio {:.2}",
            scim_rate / direct_rate
        );
    }

    // Open-loop latency.
    for rate in [25u64, 100] {
        let secs = 10u64;
        let interval = Duration::from_micros(1_000_000 / rate);
        let mut ticker = tokio::time::interval(interval);
        let mut handles = Vec::new();
        for i in 0..(rate * secs) {
            ticker.tick().await;
            let bb = b.clone();
            handles.push(tokio::spawn(async move {
                bb.post_user(&format!("ol{rate}-{i}@bench")).await
            }));
        }
        let mut lat = Vec::new();
        for h in handles {
            let (s, ms) = h.await.unwrap();
            assert_eq!(s, 201);
            lat.push(ms);
        }
        let p50 = pct(&mut lat, 0.5);
        let p99 = pct(&mut lat, 0.99);
        println!("open loop POST /Users at {rate}/s for {secs}s: p50 {p50:.1} ms, p99 {p99:.1} ms");
    }

    // Filter latency and memory at two sizes (users created directly to save time; the
    // server caches them through its watch like any other).
    let have = 1 + 2 * n + (25 + 100) * 10;
    for target in [1_000usize.max(have), large] {
        let existing = have.max(1_000);
        if target > existing {
            let extra = target - existing;
            let ns2 = ns.clone();
            let t = Instant::now();
            let _: Vec<()> = futures::stream::iter(0..extra)
                .map(|i| {
                    let api = users_api.clone();
                    let ns2 = ns2.clone();
                    async move {
                        api.create(
                            &PostParams::default(),
                            &direct_user(&ns2, "bench", &format!("fill-{target}-{i}@bench")),
                        )
                        .await
                        .unwrap();
                    }
                })
                .buffer_unordered(64)
                .collect()
                .await;
            println!("filled {extra} users directly in {:?}", t.elapsed());
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let mut lat = Vec::new();
        for i in 0..500 {
            lat.push(b.filter(&format!("tp16-{}@bench", i % n)).await);
        }
        let p50 = pct(&mut lat, 0.5);
        let p99 = pct(&mut lat, 0.99);
        let rss = rss_kb(pid);
        let m = reqwest::get(&b.metrics)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let cached: f64 = m
            .lines()
            .find(|l| l.starts_with("kube_scim_cache_users"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0);
        println!(
            "~{target} users (cache holds {cached} incl. direct-created): filter GET p50 {p50:.2} ms, p99 {p99:.2} ms; server RSS {rss} KiB = {:.2} KiB per cached user above the empty baseline",
            rss.saturating_sub(base_rss) as f64 / cached.max(1.0)
        );
    }
    proc.stop();
}
