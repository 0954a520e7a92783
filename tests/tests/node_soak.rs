//! The zero-downtime promises of the chart as a soak on the real node (`make soak`, ignored by
//! `make test`): figures, not timings. One run, because the node is the host's:
//!
//! 1. `SOAK_ROLLOUTS` (default 20) `helm upgrade`s that roll the server pods, each waited for
//!    until the old pods are gone, under `SOAK_RATE` (default 50) requests/s, open loop, through
//!    the server's Service: half through one keep-alive client (a connection pool), half on a
//!    new connection each; GETs (filter by userName), POSTs and PATCHes. No request may fail.
//! 2. `SOAK_FAILOVERS` (default 5) fail-overs of the leader operator pod while SCIM writes run
//!    (odd ones delete the pod, even ones crash it with SIGKILL, so it neither releases its
//!    Lease nor finishes a delivery)
//!    and a ScimWebhook delivers to a receiver this test runs on the node's bridge address. Each
//!    user goes created -> updated -> added to a group -> deleted, one step after the receiver
//!    got the event of the previous one, so no event can be coalesced: every one of them must
//!    arrive (at least once; duplicates are counted). A ScimDirectory change made right after
//!    each fail-over must be reconciled (observedGeneration).
//!
//! `SOAK_SET` adds chart values (`key=value`, space separated) to the install.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_scim_crds::{DeletionGuardSpec, ScimDirectory, ScimDirectorySpec, ScimWebhook};
use kube_scim_tests::entra::{Dialect, EntraClient, EntraUser};
use kube_scim_tests::keys;
use kube_scim_tests::node::chart::{self, NAMESPACE, OPERATOR, SERVER, diagnostics};
use kube_scim_tests::node::{NODE_IP, NodeCluster, run_on_node};
use kube_scim_tests::procs::LogsOnFailure;
use kube_scim_tests::stack::ready_directory;
use kube_scim_tests::{ControlPlane, eventually, free_port_on, must_succeed};
use serde_json::{Value, json};
use sha2::Sha256;

fn knob(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a count")),
        Err(_) => default,
    }
}

#[test]
#[ignore = "a soak of many minutes on the real node: `make soak`"]
fn rolling_upgrades_and_leader_changes_under_load_lose_nothing() {
    run_on_node(soak);
}

async fn soak(cluster: &NodeCluster) {
    let rollouts = knob("SOAK_ROLLOUTS", 20);
    let rate = knob("SOAK_RATE", 50);
    let failovers = knob("SOAK_FAILOVERS", 5);
    let plane = cluster.plane();
    let kube = plane.client().await.unwrap();
    let _logs = LogsOnFailure::new(|| diagnostics(plane));

    // More chart values, space separated, e.g. `server.drainDelay=0s` to see what the drain
    // is for.
    let extra_sets = std::env::var("SOAK_SET").unwrap_or_default();

    chart::build_and_import_images(cluster);
    let allowed = format!("operator.webhookAllowedCIDRs={{{NODE_IP}/32}}");
    let mut sets = vec![
        "operator.replicas=2",
        "ingressDefaults.host=scim.kube-scim.test",
        // The test's receiver listens on the node's bridge address, a private one.
        &allowed,
    ];
    sets.extend(extra_sets.split_whitespace());
    chart::install(plane, &sets);
    let cluster_ip = Api::<Service>::namespaced(kube.clone(), NAMESPACE)
        .get(SERVER)
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();

    if rollouts > 0 {
        rolling_upgrades_under_load(plane, &kube, &cluster_ip, rollouts, rate).await;
    }
    if failovers > 0 {
        leader_changes_under_webhook_load(cluster, &kube, &cluster_ip, failovers).await;
    }
}

/// A directory in `namespace` (deletion guard off: the soak deletes many users) that answers
/// through the Service; returns its Tenant URL on the ClusterIP and its token.
async fn directory_through_the_service(
    kube: &Client,
    cluster_ip: &str,
    namespace: &str,
    name: &str,
) -> (String, String) {
    Api::<ScimDirectory>::namespaced(kube.clone(), namespace)
        .create(
            &PostParams::default(),
            &ScimDirectory::new(
                name,
                ScimDirectorySpec {
                    deletion_guard: DeletionGuardSpec {
                        max_operations: 0,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ),
        )
        .await
        .unwrap();
    let (_, token) = ready_directory(kube, namespace, name, Duration::from_secs(60))
        .await
        .unwrap();
    let base = format!("http://{cluster_ip}/scim/v2/{namespace}/{name}");
    // Each server replica learns of the directory from its own watch.
    let http = kube_scim_tests::http_client();
    eventually(
        "the directory answers 200 through the Service",
        Duration::from_secs(20),
        || async {
            let answer = http
                .get(format!("{base}/Users"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?;
            (answer.status() == 200).then_some(())
        },
    )
    .await;
    (base, token)
}

// ---------------------------------------------------------------------------------------------
// 1. Rolling upgrades under load

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// One client, one connection pool: requests reuse kept-alive connections.
    KeepAlive,
    /// No idle connection is kept: a new TCP connection per request.
    NewConnection,
}

#[derive(Default)]
struct Tally {
    sent: AtomicUsize,
    failed: AtomicUsize,
}

struct Load {
    tallies: [Tally; 2],
    /// The first failures (kind, seconds into the load, what happened).
    failures: Mutex<Vec<String>>,
    /// Ids of users the load created, for its PATCHes.
    users: Mutex<Vec<String>>,
    started: Instant,
    done: AtomicBool,
}

impl Load {
    fn counts(&self) -> [(usize, usize); 2] {
        [0, 1].map(|k| {
            (
                self.tallies[k].sent.load(Ordering::SeqCst),
                self.tallies[k].failed.load(Ordering::SeqCst),
            )
        })
    }
}

/// Every cause of an error, not only the outermost ("error sending request").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

async fn one_request(
    load: Arc<Load>,
    http: reqwest::Client,
    kind: Kind,
    base: String,
    n: usize,
    token: String,
) {
    let tally = &load.tallies[kind as usize];
    tally.sent.fetch_add(1, Ordering::SeqCst);
    // Both kinds send every request shape: the shape follows n / 2, names follow n.
    let shape = (n / 2) % 10;
    let patch_target = (shape == 5)
        .then(|| load.users.lock().unwrap().last().cloned())
        .flatten();
    let (request, created) = if shape == 0 {
        let user = EntraUser::numbered(1_000_000 + n);
        (
            http.post(format!("{base}/Users"))
                .header("Content-Type", "application/scim+json")
                .body(kube_scim_tests::entra::user_body(&user).to_string()),
            true,
        )
    } else if let Some(id) = patch_target {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"displayName": format!("Patched {n}")}}],
        });
        (
            http.patch(format!("{base}/Users/{id}"))
                .header("Content-Type", "application/scim+json")
                .body(body.to_string()),
            false,
        )
    } else {
        // A user of the load (or one not created yet): a list of one or none.
        let upn = format!("User.{}@contoso.onmicrosoft.com", 1_000_000 + n / 20 * 20);
        (
            http.get(format!("{base}/Users"))
                .query(&[("filter", format!("userName eq \"{upn}\""))]),
            false,
        )
    };
    let problem = match request.bearer_auth(&token).send().await {
        Ok(answer) if answer.status().is_success() => {
            if created
                && let Ok(body) = answer.json::<Value>().await
                && let Some(id) = body["id"].as_str()
            {
                load.users.lock().unwrap().push(id.to_string());
            }
            None
        }
        Ok(answer) => {
            let status = answer.status();
            Some(format!(
                "status {status}: {}",
                answer.text().await.unwrap_or_default()
            ))
        }
        Err(e) => Some(chain(&e)),
    };
    if let Some(problem) = problem {
        tally.failed.fetch_add(1, Ordering::SeqCst);
        let mut failures = load.failures.lock().unwrap();
        if failures.len() < 50 {
            failures.push(format!(
                "{kind:?} at {:.1}s: {problem}",
                load.started.elapsed().as_secs_f64()
            ));
        }
    }
}

/// Open loop at `rate` requests/s, alternating between the two kinds of client, until
/// `load.done` or `limit`.
async fn run_load(load: Arc<Load>, base: String, token: String, rate: usize, limit: Duration) {
    let timeout = Duration::from_secs(10);
    let keep_alive = kube_scim_tests::http_builder()
        .timeout(timeout)
        .build()
        .unwrap();
    let new_connection = kube_scim_tests::http_builder()
        .timeout(timeout)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut requests = Vec::new();
    let mut n = 0;
    while !load.done.load(Ordering::SeqCst) && load.started.elapsed() < limit {
        tick.tick().await;
        let (kind, http) = if n % 2 == 0 {
            (Kind::KeepAlive, keep_alive.clone())
        } else {
            (Kind::NewConnection, new_connection.clone())
        };
        requests.push(tokio::spawn(one_request(
            load.clone(),
            http,
            kind,
            base.clone(),
            n,
            token.clone(),
        )));
        n += 1;
    }
    for r in requests {
        r.await.unwrap();
    }
}

async fn rolling_upgrades_under_load(
    plane: &ControlPlane,
    kube: &Client,
    cluster_ip: &str,
    rollouts: usize,
    rate: usize,
) {
    let namespace = plane.namespace("soak-load").await.unwrap();
    let (base, token) = directory_through_the_service(kube, cluster_ip, &namespace, "load").await;
    let load = Arc::new(Load {
        tallies: Default::default(),
        failures: Mutex::new(Vec::new()),
        users: Mutex::new(Vec::new()),
        started: Instant::now(),
        done: AtomicBool::new(false),
    });
    // Bounded whatever happens: about 90 s per rollout at most.
    let limit = Duration::from_secs(60 + 90 * rollouts as u64);
    let generator = tokio::spawn(run_load(load.clone(), base, token, rate, limit));
    tokio::time::sleep(Duration::from_secs(3)).await;

    eprintln!("rollout  seconds  keep-alive sent/failed  new-connection sent/failed");
    let mut rolling = Duration::ZERO;
    for i in 1..=rollouts {
        let before_counts = load.counts();
        let took = chart::upgrade_and_roll_the_server(
            plane,
            &[
                "--set-string",
                &format!("server.podAnnotations.soak-rollout={i}"),
            ],
        )
        .await;
        rolling += took;
        let after = load.counts();
        eprintln!(
            "{i:>7}  {:>7.1}  {:>10}/{:<6}  {:>10}/{:<6}",
            took.as_secs_f64(),
            after[0].0 - before_counts[0].0,
            after[0].1 - before_counts[0].1,
            after[1].0 - before_counts[1].0,
            after[1].1 - before_counts[1].1,
        );
        assert!(
            load.started.elapsed() < limit,
            "the load stopped before rollout {i} ended"
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    load.done.store(true, Ordering::SeqCst);
    generator.await.unwrap();
    let total = load.counts();
    let elapsed = load.started.elapsed();
    let writes = load.users.lock().unwrap().len();
    eprintln!(
        "{rollouts} rollouts in {:.0} s ({:.0} s of load): keep-alive {} sent {} failed, \
         new-connection {} sent {} failed, {writes} users created",
        rolling.as_secs_f64(),
        elapsed.as_secs_f64(),
        total[0].0,
        total[0].1,
        total[1].0,
        total[1].1,
    );
    let sent = total[0].0 + total[1].0;
    assert!(
        sent as f64 >= rate as f64 * elapsed.as_secs_f64() * 0.8,
        "the load kept its rate ({sent} in {elapsed:?})"
    );
    assert_eq!(
        total[0].1 + total[1].1,
        0,
        "requests failed during the rollouts: {:#?}",
        load.failures.lock().unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Leader changes under webhook load

/// One arrival at the receiver.
struct Arrival {
    /// The event's own id (a redelivery repeats it).
    id: String,
    /// `<event type> <resource id>[ <group id>]`.
    key: String,
}

#[derive(Default)]
struct Received {
    arrivals: Vec<Arrival>,
    /// Requests no key verified.
    rejected: Vec<String>,
}

/// A Standard Webhooks receiver on the node's bridge address (the operator pod reaches it
/// there), verifying each request with the hmac crate and recording its events.
struct Receiver {
    url: String,
    received: Arc<Mutex<Received>>,
    server: tokio::task::JoinHandle<()>,
}

fn event_key(event: &Value) -> String {
    let data = &event["data"];
    let kind = event["event"].as_str().unwrap_or_default();
    let resource = if data["user"].is_object() {
        &data["user"]["id"]
    } else {
        &data["id"]
    };
    match data["group"]["id"].as_str() {
        Some(group) => format!("{kind} {} {group}", resource.as_str().unwrap_or_default()),
        None => format!("{kind} {}", resource.as_str().unwrap_or_default()),
    }
}

fn verified(key: &[u8], headers: &axum::http::HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{}.{}.", header("webhook-id"), header("webhook-timestamp")).as_bytes());
    mac.update(body);
    let ours = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    header("webhook-signature").split(' ').any(|s| s == ours)
}

impl Receiver {
    async fn start(secret: &str) -> Receiver {
        let key = STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        let received = Arc::new(Mutex::new(Received::default()));
        let port = free_port_on(NODE_IP).unwrap();
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((NODE_IP, port)))
            .await
            .unwrap();
        let state = (key, received.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                |axum::extract::State((key, received)): axum::extract::State<(
                    Vec<u8>,
                    Arc<Mutex<Received>>,
                )>,
                 headers: axum::http::HeaderMap,
                 body: axum::body::Bytes| async move {
                    let mut received = received.lock().unwrap();
                    if !verified(&key, &headers, &body) {
                        received
                            .rejected
                            .push(String::from_utf8_lossy(&body).chars().take(200).collect());
                        return axum::http::StatusCode::UNAUTHORIZED;
                    }
                    let payload: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let events = if payload["object"] == "list" {
                        payload["data"].as_array().cloned().unwrap_or_default()
                    } else {
                        vec![payload]
                    };
                    for event in events {
                        received.arrivals.push(Arrival {
                            id: event["id"].as_str().unwrap_or_default().to_string(),
                            key: event_key(&event),
                        });
                    }
                    axum::http::StatusCode::NO_CONTENT
                },
            ),
        );
        let server = tokio::spawn(async move {
            axum::serve(listener, app.with_state(state)).await.unwrap();
        });
        Receiver {
            url: format!("http://{NODE_IP}:{port}/hook"),
            received,
            server,
        }
    }

    fn has(&self, key: &str) -> bool {
        self.received
            .lock()
            .unwrap()
            .arrivals
            .iter()
            .any(|a| a.key == key)
    }

    fn keys(&self) -> HashSet<String> {
        self.received
            .lock()
            .unwrap()
            .arrivals
            .iter()
            .map(|a| a.key.clone())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn signing_key() -> String {
    let hex = kube_scim_tests::keys::random_key().unwrap();
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// The operator's leader Lease as it is now.
async fn lease(kube: &Client) -> Option<k8s_openapi::api::coordination::v1::LeaseSpec> {
    Api::<Lease>::namespaced(kube.clone(), NAMESPACE)
        .get_opt(OPERATOR)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
}

/// The Lease's renewTime (None before the first).
async fn lease_renewed(kube: &Client) -> Option<jiff::Timestamp> {
    lease(kube).await?.renew_time.map(|t| t.0)
}

async fn lease_holder(kube: &Client) -> Option<String> {
    lease(kube).await?.holder_identity.filter(|h| !h.is_empty())
}

/// Where a user is in its life: each step waits for the event of the one before.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    Created,
    Updated,
    Added,
    Deleted,
}

struct Life {
    id: String,
    group: String,
    step: Step,
}

impl Life {
    /// The event the current step must produce.
    fn awaited(&self) -> String {
        match self.step {
            Step::Created => format!("dsync.user.created {}", self.id),
            Step::Updated => format!("dsync.user.updated {}", self.id),
            Step::Added => format!("dsync.group.user_added {} {}", self.id, self.group),
            Step::Deleted => format!("dsync.user.deleted {}", self.id),
        }
    }
}

#[derive(Default)]
struct Writes {
    done: usize,
    failed: Vec<String>,
    expected: Vec<String>,
}

/// SCIM writes until `stop`: a new user every 500 ms, and each user's next step as soon as the
/// receiver has its previous one. Bounded by `limit`; then finishes the users it started.
async fn drive_writes(
    entra: EntraClient,
    receiver: Arc<Receiver>,
    groups: Vec<String>,
    stop: Arc<AtomicBool>,
    limit: Duration,
) -> Writes {
    let started = Instant::now();
    let mut writes = Writes::default();
    let mut lives: Vec<Life> = Vec::new();
    let mut next_user = 0usize;
    let mut last_create = Instant::now() - Duration::from_secs(1);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    // After the stop, the started lives may take a fail-over's worth of time to finish.
    let mut stopped_at = None;
    loop {
        tick.tick().await;
        let stopping = stop.load(Ordering::SeqCst) || started.elapsed() > limit;
        if stopping && stopped_at.is_none() {
            stopped_at = Some(Instant::now());
        }
        if stopped_at.is_some_and(|at| at.elapsed() > Duration::from_secs(180)) {
            break;
        }
        if !stopping && last_create.elapsed() >= Duration::from_millis(500) {
            last_create = Instant::now();
            next_user += 1;
            let user = EntraUser {
                job_title: Some("Engineer".into()),
                ..EntraUser::numbered(2_000_000 + next_user)
            };
            match entra.provision_user(&user, None).await {
                Ok(id) => {
                    let life = Life {
                        id,
                        group: groups[next_user % groups.len()].clone(),
                        step: Step::Created,
                    };
                    writes.expected.push(life.awaited());
                    lives.push(life);
                    writes.done += 1;
                }
                Err(e) => writes.failed.push(format!("create: {e:#}")),
            }
        }
        let arrived = receiver.keys();
        for life in lives.iter_mut() {
            if life.step == Step::Deleted || !arrived.contains(&life.awaited()) {
                continue;
            }
            let (next, outcome) = match life.step {
                Step::Created => (
                    Step::Updated,
                    entra
                        .update_user(&life.id, &[("title", json!("Manager"))])
                        .await
                        .map(|_| ()),
                ),
                Step::Updated => (
                    Step::Added,
                    entra
                        .add_members(&life.group, std::slice::from_ref(&life.id))
                        .await,
                ),
                Step::Added => (Step::Deleted, entra.delete("Users", &life.id).await),
                Step::Deleted => unreachable!(),
            };
            match outcome {
                Ok(()) => {
                    life.step = next;
                    writes.expected.push(life.awaited());
                    writes.done += 1;
                }
                // The step is tried again at the next tick; the failure is reported.
                Err(e) => writes.failed.push(format!("{next:?} {}: {e:#}", life.id)),
            }
        }
        if stopped_at.is_some()
            && lives
                .iter()
                .all(|l| l.step == Step::Deleted && arrived.contains(&l.awaited()))
        {
            break;
        }
    }
    writes
}

async fn leader_changes_under_webhook_load(
    cluster: &NodeCluster,
    kube: &Client,
    cluster_ip: &str,
    failovers: usize,
) {
    let plane = cluster.plane();
    let ns = plane.namespace("soak-hooks").await.unwrap();
    let (base, token) = directory_through_the_service(kube, cluster_ip, &ns, "hooks").await;
    let secret = signing_key();
    let receiver = Arc::new(Receiver::start(&secret).await);
    keys::create_webhook_signing_key(kube, &ns, "hook-key", &secret).await;
    Api::<ScimWebhook>::namespaced(kube.clone(), &ns)
        .create(
            &PostParams::default(),
            &keys::webhook("soak", "hooks", &receiver.url, "hook-key"),
        )
        .await
        .unwrap();
    let directory_id = format!("{ns}/hooks");
    eventually(
        "the receiver has dsync.activated",
        Duration::from_secs(60),
        || async {
            receiver
                .has(&format!("dsync.activated {directory_id}"))
                .then_some(())
        },
    )
    .await;
    let entra = EntraClient::new(&base, &token, Dialect::Compliant);
    let mut groups = Vec::new();
    for g in 0..2 {
        let id = entra
            .provision_group(
                &format!("Soak {g}"),
                &format!("{g:08x}-0000-4000-8000-000000000000"),
            )
            .await
            .unwrap();
        let created = format!("dsync.group.created {id}");
        eventually(
            "the group's created event",
            Duration::from_secs(60),
            || async { receiver.has(&created).then_some(()) },
        )
        .await;
        groups.push(id);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let limit = Duration::from_secs(120 * failovers as u64 + 60);
    let writer = tokio::spawn(drive_writes(
        entra,
        receiver.clone(),
        groups,
        stop.clone(),
        limit,
    ));
    let directories: Api<ScimDirectory> = Api::namespaced(kube.clone(), &ns);
    eprintln!(
        "fail-over  kind    old leader -> new leader  lease taken (s)  change reconciled (s)"
    );
    for k in 1..=failovers {
        // Load before each fail-over, and a standby ready to take over.
        tokio::time::sleep(Duration::from_secs(10)).await;
        eventually(
            "two Ready operator pods",
            Duration::from_secs(120),
            || async {
                let out = plane
                    .kubectl()
                    .args(["get", "pods", "-n", NAMESPACE, "-l"])
                    .arg("app.kubernetes.io/component=operator")
                    .args([
                        "-o",
                        "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
                    ])
                    .output()
                    .ok()?;
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                (text.split_whitespace().filter(|s| *s == "True").count() == 2
                    && chart::pods(plane, "operator").len() == 2)
                    .then_some(())
            },
        )
        .await;
        let leader = eventually("an operator leads", Duration::from_secs(60), || {
            lease_holder(kube)
        })
        .await;
        // Every second fail-over is a crash: SIGKILL, so the leader neither releases its Lease
        // nor finishes what it was sending; the Lease must expire (or the restarted container
        // take it back) before anyone reconciles or delivers again.
        let crash = k % 2 == 0;
        if crash {
            let uid = must_succeed(plane.kubectl().args([
                "get",
                "pod",
                "-n",
                NAMESPACE,
                &leader,
                "-o",
                "jsonpath={.metadata.uid}",
            ]));
            let uid = String::from_utf8_lossy(&uid.stdout).trim().to_string();
            assert!(
                cluster.crash_pod(&uid) > 0,
                "no process of the leader pod {leader} ({uid}) to kill"
            );
        } else {
            must_succeed(plane.kubectl().args([
                "delete",
                "pod",
                "-n",
                NAMESPACE,
                &leader,
                "--wait=false",
            ]));
        }
        let deleted = Instant::now();
        let new_leader = if crash {
            // A renewal the killed process had in flight may still land: take the Lease's
            // state once that has had time to happen.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let renewed_before = lease_renewed(kube).await;
            eventually(
                "a leader renews the Lease after the crash",
                Duration::from_secs(90),
                || async {
                    let renewed = lease_renewed(kube).await;
                    let holder = lease_holder(kube).await?;
                    // The crashed process cannot renew: a renewal after the kill is the
                    // standby's or the restarted container's.
                    (renewed > renewed_before).then_some(holder)
                },
            )
            .await
        } else {
            eventually(
                "the standby takes the Lease",
                Duration::from_secs(60),
                || async { lease_holder(kube).await.filter(|holder| *holder != leader) },
            )
            .await
        };
        let took_over = deleted.elapsed();
        let generation = directories
            .patch(
                "hooks",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"spec": {"displayName": format!("Hooks after fail-over {k}")}}),
                ),
            )
            .await
            .unwrap()
            .metadata
            .generation
            .unwrap();
        eventually(
            "the change after the fail-over is reconciled",
            Duration::from_secs(30),
            || async {
                let observed = directories
                    .get("hooks")
                    .await
                    .ok()?
                    .status?
                    .observed_generation?;
                (observed >= generation).then_some(())
            },
        )
        .await;
        eprintln!(
            "{k:>9}  {:<6}  {leader} -> {new_leader}  {:>6.1}  {:>6.1}",
            if crash { "crash" } else { "delete" },
            took_over.as_secs_f64(),
            deleted.elapsed().as_secs_f64()
        );
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::SeqCst);
    let writes = writer.await.unwrap();
    // Redeliveries that were in flight at the end.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let received = receiver.received.lock().unwrap();
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for a in &received.arrivals {
        *per_key.entry(a.key.as_str()).or_default() += 1;
        *per_id.entry(a.id.as_str()).or_default() += 1;
    }
    let missing: Vec<&String> = writes
        .expected
        .iter()
        .filter(|k| !per_key.contains_key(k.as_str()))
        .collect();
    let redelivered: usize = per_id.values().map(|n| n - 1).sum();
    let distinct_ids = per_id.len();
    let twice_derived = per_key.values().map(|n| n - 1).sum::<usize>() - redelivered;
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for k in &writes.expected {
        *by_type.entry(k.split(' ').next().unwrap()).or_default() += 1;
    }
    eprintln!(
        "{failovers} fail-overs: {} SCIM writes ({} failed), {} events expected {by_type:?}, \
         {} delivered, {} missing; {} arrivals of {distinct_ids} event ids: {redelivered} \
         redelivered with the same id, {twice_derived} derived twice under two ids; {} rejected",
        writes.done,
        writes.failed.len(),
        writes.expected.len(),
        writes.expected.len() - missing.len(),
        missing.len(),
        received.arrivals.len(),
        received.rejected.len(),
    );
    assert!(missing.is_empty(), "events never delivered: {missing:#?}");
    assert!(
        received.rejected.is_empty(),
        "requests with a bad signature: {:#?}",
        received.rejected
    );
    assert!(
        writes.failed.is_empty(),
        "SCIM writes failed: {:#?}",
        writes.failed
    );
}
