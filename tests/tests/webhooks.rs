//! ScimWebhook end to end on the real control plane: the operator (which delivers) and the SCIM
//! server as processes, Entra's requests, and a receiver on 127.0.0.1 that verifies every
//! request with the independent `standardwebhooks` package from PyPI
//! (tests/fixtures/webhook_receiver.py).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_scim_crds::{
    Batching, DeletionGuardSpec, ScimDirectory, ScimDirectorySpec, ScimGroup, ScimWebhook,
};
use kube_scim_tests::entra::{Dialect, EntraClient, EntraUser};
use kube_scim_tests::keys;
use kube_scim_tests::procs::ManagedProcess;
use kube_scim_tests::stack::{Stack, StackOptions};
use kube_scim_tests::{ControlPlane, free_port, python_tools, repo_root, workspace_binary};
use serde_json::{Value, json};

/// The Python receiver; its events file outlives restarts.
struct Receiver {
    python: PathBuf,
    port: u16,
    secret: String,
    /// More keys the receiver verifies with, each on its own (`{"name": "whsec_..."}`).
    extra_keys: BTreeMap<String, String>,
    events: PathBuf,
    /// While this file exists, requests are refused (see the fixture).
    control: PathBuf,
    log: PathBuf,
    process: Option<ManagedProcess>,
}

impl Receiver {
    fn new(dir: &Path, secret: &str) -> Receiver {
        Receiver {
            python: python_tools().unwrap().join("python"),
            port: free_port().unwrap(),
            secret: secret.to_string(),
            extra_keys: BTreeMap::new(),
            events: dir.join("webhook-events.jsonl"),
            control: dir.join("webhook-control"),
            log: dir.join("webhook-receiver.log"),
            process: None,
        }
    }

    async fn start(&mut self) {
        let mut cmd = Command::new(&self.python);
        cmd.arg(repo_root().join("tests/fixtures/webhook_receiver.py"))
            .arg(self.port.to_string())
            .arg(&self.events)
            .arg(&self.control)
            .env("WEBHOOK_SECRET", &self.secret)
            .env(
                "WEBHOOK_KEYS",
                serde_json::to_string(&self.extra_keys).unwrap(),
            );
        self.process = Some(ManagedProcess::spawn_command("receiver", cmd, &self.log).unwrap());
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "receiver not listening within 10 s:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }

    /// From now on answer every request with `status` (and `Retry-After: retry_after`).
    fn refuse(&self, status: u16, retry_after: Option<u64>) {
        let text = match retry_after {
            Some(s) => format!("{status} {s}"),
            None => status.to_string(),
        };
        std::fs::write(&self.control, text).unwrap();
    }

    /// Stop refusing.
    fn accept(&self) {
        let _ = std::fs::remove_file(&self.control);
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Every recorded line, in arrival order.
    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("the receiver writes JSON lines"))
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One received event, reduced to what the assertions compare.
#[derive(Debug, Clone, PartialEq)]
struct Received {
    id: String,
    event: String,
    /// The group of a membership event.
    group: Option<String>,
    /// The event as sent.
    body: Value,
}

/// The user (membership events) or the resource an event is about.
fn resource_of(event: &Value) -> String {
    let data = &event["data"];
    let id = if data["user"].is_object() {
        &data["user"]["id"]
    } else {
        &data["id"]
    };
    id.as_str().unwrap_or_default().to_string()
}

/// Events per resource in arrival order, each id once (first arrival). Panics on a rejected
/// request or on two arrivals of one id that differ.
fn per_resource(lines: &[Value]) -> BTreeMap<String, Vec<Received>> {
    let mut by_id: HashMap<String, Value> = HashMap::new();
    let mut out: BTreeMap<String, Vec<Received>> = BTreeMap::new();
    for line in lines {
        assert!(
            line.get("rejected").is_none(),
            "the receiver rejected a request: {line}"
        );
        if line.get("refused").is_some() {
            continue;
        }
        let event = &line["event"];
        let id = event["id"]
            .as_str()
            .expect("every event has an id")
            .to_string();
        if let Some(first) = by_id.get(&id) {
            assert_eq!(first, event, "two deliveries of {id} differ");
            continue;
        }
        by_id.insert(id.clone(), event.clone());
        out.entry(resource_of(event)).or_default().push(Received {
            id,
            event: event["event"].as_str().unwrap_or_default().to_string(),
            group: event["data"]["group"]["id"].as_str().map(str::to_string),
            body: event.clone(),
        });
    }
    out
}

fn kinds(events: &[Received]) -> Vec<String> {
    events
        .iter()
        .map(|e| match &e.group {
            Some(g) => format!("{}:{g}", e.event),
            None => e.event.clone(),
        })
        .collect()
}

fn signing_key() -> String {
    let mut bytes = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn operator_args() -> Vec<String> {
    vec![
        "--default-ingress-host=scim.kube-scim.test".into(),
        "--webhook-allowed-cidrs=127.0.0.1/32".into(),
        "--webhook-checkpoint-interval=200ms".into(),
        "--webhook-key-refresh-interval=1s".into(),
        // Restarts in the second test take over at once instead of waiting for the Lease.
        "--leader-elect=false".into(),
    ]
}

struct Setup {
    /// The receiver's events, the restarted operators' logs and a kubeconfig.
    dir: PathBuf,
    /// The signing key the webhook starts with (the receiver's `primary`).
    key: String,
    kube: Client,
    ns: String,
    stack: Stack,
    receiver: Receiver,
    entra: EntraClient,
}

async fn setup(prefix: &str, batching: Option<Batching>, warn_after: Option<&str>) -> Setup {
    let plane = ControlPlane::shared();
    let ns = plane.namespace(prefix).await.unwrap();
    let kube = plane.client().await.unwrap();
    let mut options = StackOptions::new(&ns);
    options.operator_args = operator_args();
    let stack = Stack::start(plane, options).await.unwrap();

    let key = signing_key();
    // Not in the plane's directory under /tmp: the events must outlive anything that tidies
    // /tmp while the test runs.
    let events_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("webhooks-{ns}"));
    std::fs::create_dir_all(&events_dir).unwrap();
    std::fs::copy(plane.kubeconfig(), events_dir.join("kubeconfig")).unwrap();
    let mut receiver = Receiver::new(&events_dir, &key);
    receiver.accept();
    receiver.start().await;
    keys::create_webhook_signing_key(&kube, &ns, "hook-key", &key).await;
    Api::<ScimDirectory>::namespaced(kube.clone(), &ns)
        .create(
            &PostParams::default(),
            &ScimDirectory::new(
                "contoso",
                ScimDirectorySpec {
                    // The 1,000-user cycle deactivates and deletes more than the deletion
                    // guard's default 500 per hour; the guard has its own tests (safety.rs).
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
    let (_, token) = stack.ready_directory(&kube, &ns, "contoso").await;
    let mut webhook = keys::webhook("app", "contoso", &receiver.url(), "hook-key");
    webhook.spec.batching = batching;
    webhook.spec.warn_after = warn_after.map(str::to_string);
    Api::<ScimWebhook>::namespaced(kube.clone(), &ns)
        .create(&PostParams::default(), &webhook)
        .await
        .unwrap();
    let entra = EntraClient::new(&stack.base_url(&ns, "contoso"), &token, Dialect::Compliant);
    Setup {
        dir: events_dir,
        key,
        kube,
        ns,
        stack,
        receiver,
        entra,
    }
}

/// A numbered user with a job title, so that a title change has a previous value to report.
fn entra_user(n: usize) -> EntraUser {
    EntraUser {
        job_title: Some("Engineer".into()),
        ..EntraUser::numbered(n)
    }
}

async fn webhook_status(kube: &Client, ns: &str) -> kube_scim_crds::ScimWebhookStatus {
    Api::<ScimWebhook>::namespaced(kube.clone(), ns)
        .get("app")
        .await
        .unwrap()
        .status
        .unwrap_or_default()
}

/// Waits until the receiver has an event named `name` (`dsync.activated`, ...); returns the
/// first one.
async fn delivered(s: &Setup, name: &str) -> Value {
    let what = format!("{name} delivered");
    kube_scim_tests::eventually(&what, Duration::from_secs(60), || {
        let lines = s.receiver.lines();
        async move {
            lines
                .iter()
                .find(|l| l["event"]["event"] == name)
                .map(|l| l["event"].clone())
        }
    })
    .await
}

#[tokio::test]
async fn an_entra_cycle_arrives_signed_complete_and_in_order_per_resource() {
    let mut s = setup("webhook", None, None).await;
    // A webhook sees every change made after its delivery loop listed the directory's users
    // and groups; changes before that are coalesced into the list (docs/webhooks.md). The
    // cycle starts once the receiver has the directory's announcement, which follows it.
    delivered(&s, "dsync.activated").await;
    let entra = &s.entra;
    let u1 = entra.provision_user(&entra_user(1), None).await.unwrap();
    let u2 = entra.provision_user(&entra_user(2), None).await.unwrap();
    let u3 = entra.provision_user(&entra_user(3), None).await.unwrap();
    let g1 = entra
        .provision_group("Engineering", "aaaaaaaa-0000-4000-8000-000000000001")
        .await
        .unwrap();
    // Members follow the group's creation at once: the deliverer, which watches users and
    // groups separately, may see a member's label first; `user_added` must still name the group.
    entra
        .add_members(&g1, &[u1.clone(), u2.clone()])
        .await
        .unwrap();
    entra
        .update_user(&u1, &[("title", json!("Principal Engineer"))])
        .await
        .unwrap();
    entra
        .remove_members(&g1, std::slice::from_ref(&u2))
        .await
        .unwrap();
    entra.rename_group(&g1, "Engineering EMEA").await.unwrap();
    // Deprovisioning as Entra does it: active false, later the delete.
    entra.set_active(&u3, false).await.unwrap();
    entra.delete("Users", &u3).await.unwrap();
    entra.delete("Groups", &g1).await.unwrap();
    // A group DELETE removes its members' labels in the background (the cleanup finalizer):
    // wait for it, so that u1's `user_removed` is derived before u1 is gone. (A member deleted
    // before the cleanup reached it gets none: its `deleted` says enough.)
    kube_scim_tests::eventually("g1 gone", Duration::from_secs(60), || {
        let groups: Api<ScimGroup> = Api::namespaced(s.kube.clone(), &s.ns);
        let g1 = g1.clone();
        async move { groups.get_opt(&g1).await.unwrap().is_none().then_some(()) }
    })
    .await;
    entra.delete("Users", &u1).await.unwrap();

    let directory_id = format!("{}/contoso", s.ns);
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::from([
        (
            u1.clone(),
            vec![
                "dsync.user.created".to_string(),
                format!("dsync.group.user_added:{g1}"),
                "dsync.user.updated".into(),
                format!("dsync.group.user_removed:{g1}"),
                "dsync.user.deleted".into(),
            ],
        ),
        (
            u2.clone(),
            vec![
                "dsync.user.created".to_string(),
                format!("dsync.group.user_added:{g1}"),
                format!("dsync.group.user_removed:{g1}"),
            ],
        ),
        (
            u3.clone(),
            vec![
                "dsync.user.created".to_string(),
                "dsync.user.updated".into(),
                "dsync.user.deleted".into(),
            ],
        ),
        (
            g1.clone(),
            vec![
                "dsync.group.created".to_string(),
                "dsync.group.updated".into(),
                "dsync.group.deleted".into(),
            ],
        ),
    ]);
    expected.insert(directory_id.clone(), vec!["dsync.activated".into()]);
    let total: usize = expected.values().map(Vec::len).sum();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let received = loop {
        let got = per_resource(&s.receiver.lines());
        if got.values().map(Vec::len).sum::<usize>() >= total {
            break got;
        }
        if tokio::time::Instant::now() >= deadline {
            let kinds: BTreeMap<&String, Vec<String>> =
                got.iter().map(|(r, events)| (r, kinds(events))).collect();
            panic!(
                "not every event delivered within 90 s: got {kinds:#?}\nexpected {expected:#?}\n{}",
                s.stack.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let got: BTreeMap<String, Vec<String>> = received
        .iter()
        .map(|(r, events)| (r.clone(), kinds(events)))
        .collect();
    assert_eq!(got, expected, "\n{}", s.stack.logs());

    // The directory is announced before anything about its users and groups.
    let first = s.receiver.lines()[0]["event"].clone();
    assert_eq!(first["event"], "dsync.activated", "{first}");
    assert_eq!(first["data"]["object"], "directory");
    assert_eq!(first["data"]["id"], directory_id.as_str());
    assert_eq!(first["data"]["state"], "active");
    assert_eq!(first["data"]["type"], "azure scim v2.0");

    // Payloads: WorkOS shapes, previous attributes, a visible deprovisioning.
    let title = &received[&u1][2].body;
    assert_eq!(title["data"]["job_title"], "Principal Engineer");
    assert_eq!(
        title["data"]["previous_attributes"]["job_title"],
        "Engineer"
    );
    assert_eq!(title["data"]["object"], "directory_user");
    assert_eq!(title["data"]["username"], "User.1@contoso.onmicrosoft.com");
    let deprovision = &received[&u3][1].body;
    assert_eq!(deprovision["transition"], "deprovisioned");
    assert_eq!(deprovision["data"]["state"], "inactive");
    assert_eq!(
        deprovision["data"]["previous_attributes"]["state"],
        "active"
    );
    let added = &received[&u1][1].body;
    assert_eq!(added["data"]["group"]["name"], "Engineering");
    assert_eq!(added["data"]["user"]["id"], u1.as_str());
    let renamed = &received[&g1][1].body;
    assert_eq!(renamed["data"]["name"], "Engineering EMEA");
    assert_eq!(
        renamed["data"]["previous_attributes"]["name"],
        "Engineering"
    );

    // Status: Ready, nothing waiting, the last event acknowledged.
    let status = kube_scim_tests::eventually("status caught up", Duration::from_secs(30), || {
        let (kube, ns) = (s.kube.clone(), s.ns.clone());
        async move {
            let st = webhook_status(&kube, &ns).await;
            (st.backlog == Some(0) && st.last_delivered_event_id.is_some()).then_some(st)
        }
    })
    .await;
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True", "{ready:?}");
    let last_line = s.receiver.lines().last().cloned().unwrap();
    assert_eq!(
        status.last_delivered_event_id.as_deref(),
        last_line["event"]["id"].as_str()
    );
    assert_eq!(status.consecutive_failures, Some(0));

    // Deleting the directory (deletionPolicy Retain: u2 is kept) sends dsync.deleted, last.
    Api::<ScimDirectory>::namespaced(s.kube.clone(), &s.ns)
        .delete("contoso", &DeleteParams::default())
        .await
        .unwrap();
    let deleted = delivered(&s, "dsync.deleted").await;
    assert_eq!(deleted["data"]["id"], directory_id.as_str());
    assert_eq!(deleted["data"]["state"], "deleting");
    assert_eq!(deleted["data"]["object"], "directory");
    assert_eq!(
        deleted["data"]["external_key"],
        first["data"]["external_key"]
    );
    // Nothing about the directory's users follows it (the directory's ScimUsers are released,
    // not deleted, and dsync.deleted stands for them anyway).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lines = s.receiver.lines();
    assert_eq!(
        lines.last().unwrap()["event"]["event"],
        "dsync.deleted",
        "{:?}",
        lines.last()
    );
    s.receiver.stop();
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// Events (events.k8s.io) about the ScimWebhook `app` with `reason`.
async fn webhook_events(kube: &Client, ns: &str, reason: &str) -> Vec<Event> {
    Api::<Event>::namespaced(kube.clone(), ns)
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("ScimWebhook")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("app")
        })
        .collect()
}

fn ready_condition(status: &kube_scim_crds::ScimWebhookStatus) -> Option<(String, String)> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// The first delivered `dsync.user.created` of SCIM id `id`, as recorded.
fn created_line(lines: &[Value], id: &str) -> Option<Value> {
    lines
        .iter()
        .find(|l| l["event"]["event"] == "dsync.user.created" && l["event"]["data"]["id"] == id)
        .cloned()
}

#[tokio::test]
async fn retry_after_is_honoured_a_failing_receiver_is_reported_and_keys_rotate() {
    const RETRY_AFTER: u64 = 3;
    let mut s = setup("webhook-ops", None, Some("3s")).await;
    delivered(&s, "dsync.activated").await;

    // 1. The receiver refuses with 429, then 503, each with Retry-After: the deliverer waits
    //    at least that long before every next attempt (its own backoff would be 0.1 to 8 s).
    s.receiver.refuse(429, Some(RETRY_AFTER));
    let u1 = s.entra.provision_user(&entra_user(1), None).await.unwrap();
    let refused = |lines: &[Value]| -> Vec<Value> {
        lines
            .iter()
            .filter(|l| l.get("refused").is_some())
            .cloned()
            .collect()
    };
    kube_scim_tests::eventually("two 429 answers", Duration::from_secs(60), || {
        let lines = s.receiver.lines();
        async move { (refused(&lines).len() >= 2).then_some(()) }
    })
    .await;
    s.receiver.refuse(503, Some(RETRY_AFTER));
    kube_scim_tests::eventually("two 503 answers", Duration::from_secs(60), || {
        let lines = s.receiver.lines();
        async move {
            (refused(&lines)
                .iter()
                .filter(|l| l["refused"] == 503)
                .count()
                >= 2)
                .then_some(())
        }
    })
    .await;

    // While it fails: status says so, and after warnAfter (3 s) a Warning Event is published.
    let failing = kube_scim_tests::eventually(
        "status shows the failing receiver",
        Duration::from_secs(30),
        || {
            let (kube, ns) = (s.kube.clone(), s.ns.clone());
            async move {
                let st = webhook_status(&kube, &ns).await;
                (ready_condition(&st) == Some(("False".into(), "ReceiverFailing".into()))
                    && st.consecutive_failures.unwrap_or(0) >= 2)
                    .then_some(st)
            }
        },
    )
    .await;
    assert!(failing.failing_since.is_some(), "{failing:?}");
    assert!(
        failing.last_error.as_deref().unwrap_or("").contains("503")
            || failing.last_error.as_deref().unwrap_or("").contains("429"),
        "{failing:?}"
    );
    let warnings = kube_scim_tests::eventually(
        "a ReceiverFailing Warning event",
        Duration::from_secs(30),
        || {
            let (kube, ns) = (s.kube.clone(), s.ns.clone());
            async move {
                let found = webhook_events(&kube, &ns, "ReceiverFailing").await;
                (!found.is_empty()).then_some(found)
            }
        },
    )
    .await;
    assert_eq!(warnings[0].type_.as_deref(), Some("Warning"));
    eprintln!("warning: {:?}", warnings[0].note);

    s.receiver.accept();
    let delivered = kube_scim_tests::eventually("u1 delivered", Duration::from_secs(60), || {
        let lines = s.receiver.lines();
        let u1 = u1.clone();
        async move { created_line(&lines, &u1) }
    })
    .await;
    let lines = s.receiver.lines();
    let mut attempts: Vec<f64> = refused(&lines)
        .iter()
        .map(|l| l["at"].as_f64().unwrap())
        .collect();
    attempts.push(delivered["at"].as_f64().unwrap());
    let gaps: Vec<f64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!("attempts {gaps:.2?} s apart (Retry-After: {RETRY_AFTER})");
    assert!(gaps.len() >= 4, "{gaps:?}");
    for gap in &gaps {
        assert!(
            *gap >= RETRY_AFTER as f64,
            "an attempt came {gap:.2} s after a Retry-After: {RETRY_AFTER} answer: {gaps:.2?}"
        );
    }
    let recovered = kube_scim_tests::eventually("Ready again", Duration::from_secs(30), || {
        let (kube, ns) = (s.kube.clone(), s.ns.clone());
        async move {
            let st = webhook_status(&kube, &ns).await;
            (ready_condition(&st).map(|c| c.0) == Some("True".into())).then_some(st)
        }
    })
    .await;
    assert_eq!(recovered.consecutive_failures, Some(0));
    assert_eq!(recovered.failing_since, None);

    // 2. Key rotation. The receiver checks every request with the old key ("primary") and the
    //    new key ("new") separately, as two receivers holding one key each would.
    let old = s.key.clone();
    let new = signing_key();
    s.receiver.stop();
    s.receiver.extra_keys = BTreeMap::from([("new".to_string(), new.clone())]);
    s.receiver.start().await;
    let secrets: Api<Secret> = Api::namespaced(s.kube.clone(), &s.ns);
    secrets
        .patch(
            "hook-key",
            &PatchParams::default(),
            &Patch::Merge(&json!({"stringData": {"key": new, "previous": old}})),
        )
        .await
        .unwrap();
    // The operator re-reads the key Secret at most every second in this test.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let u2 = s.entra.provision_user(&entra_user(2), None).await.unwrap();
    let during = kube_scim_tests::eventually("u2 delivered", Duration::from_secs(60), || {
        let lines = s.receiver.lines();
        let u2 = u2.clone();
        async move { created_line(&lines, &u2) }
    })
    .await;
    assert_eq!(
        during["verified_by"],
        json!(["new", "primary"]),
        "during the grace period a receiver with only the old key and one with only the new key both accept: {during}"
    );

    // The grace period ends: `previous` removed.
    secrets
        .patch(
            "hook-key",
            &PatchParams::default(),
            &Patch::Merge(&json!({"data": {"previous": null}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let u3 = s.entra.provision_user(&entra_user(3), None).await.unwrap();
    let after = kube_scim_tests::eventually("u3 delivered", Duration::from_secs(60), || {
        let lines = s.receiver.lines();
        let u3 = u3.clone();
        async move { created_line(&lines, &u3) }
    })
    .await;
    assert_eq!(
        after["verified_by"],
        json!(["new"]),
        "after the grace period only the new key verifies: {after}"
    );
    // Before the rotation, only the old key did.
    assert_eq!(
        created_line(&lines, &u1).unwrap()["verified_by"],
        json!(["primary"])
    );

    s.receiver.stop();
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// Replaces the stack's operator by a new process with the same flags (after a SIGKILL).
fn restart_operator(stack: &mut Stack, dir: &Path, ns: &str) {
    let log = dir.join("operator.log");
    let mut cmd = Command::new(workspace_binary("kube-scim-operator").unwrap());
    cmd.env("KUBECONFIG", dir.join("kubeconfig"))
        .env("KUBE_SCIM_LOG_FORMAT", "text")
        .arg(format!(
            "--metrics-bind-address=127.0.0.1:{}",
            free_port().unwrap()
        ))
        .arg(format!("--lease-namespace={ns}"))
        .arg(format!("--server-service-namespace={ns}"))
        .arg(format!("--watch-namespaces={ns}"))
        .arg("--verifier-key-dir")
        .arg(stack.operator_keys.path())
        .arg("--verifier-key-reload-interval=1s")
        .args(operator_args());
    stack.operator = ManagedProcess::spawn_command("operator", cmd, &log).unwrap();
}

/// A number in `0..n` from the kernel's randomness (where the deliverer is killed).
fn random_below(n: usize) -> usize {
    (uuid::Uuid::new_v4().as_u128() % n.max(1) as u128) as usize
}

#[tokio::test]
async fn a_killed_deliverer_and_a_down_receiver_lose_no_event() {
    let users: usize = std::env::var("KUBE_SCIM_WEBHOOK_TEST_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut s = setup(
        "webhook-kill",
        Some(Batching {
            max_events: 25,
            max_wait: Some("200ms".into()),
        }),
        None,
    )
    .await;
    let (ns, dir) = (s.ns.clone(), s.dir.clone());
    let group = s
        .entra
        .provision_group("Everyone", "bbbbbbbb-0000-4000-8000-000000000001")
        .await
        .unwrap();

    // Phase 1: provision, with a kill at a random point.
    let kill_at = random_below(users);
    eprintln!("{users} users; first kill after {kill_at} creates");
    let mut ids = vec![String::new(); users];
    {
        let entra = &s.entra;
        let mut created = futures::stream::iter(0..users)
            .map(|n| async move { (n, entra.provision_user(&entra_user(n), None).await.unwrap()) })
            .buffer_unordered(8);
        let mut done = 0;
        while let Some((n, id)) = created.next().await {
            ids[n] = id;
            done += 1;
            if done == kill_at {
                s.stack.operator.kill();
                restart_operator(&mut s.stack, &dir, &ns);
            }
        }
    }
    if kill_at == 0 || kill_at > users {
        s.stack.operator.kill();
        restart_operator(&mut s.stack, &dir, &ns);
    }

    // Phase 2: memberships while the receiver is down.
    s.receiver.stop();
    for chunk in ids.chunks(50) {
        s.entra.add_members(&group, chunk).await.unwrap();
    }

    // Phase 3: deprovision every second user, a kill half-way, then the receiver comes back.
    let deprovisioned: Vec<usize> = (0..users).step_by(2).collect();
    let kill_at = random_below(deprovisioned.len());
    eprintln!("second kill after {kill_at} deprovisionings");
    for (i, n) in deprovisioned.iter().enumerate() {
        s.entra.set_active(&ids[*n], false).await.unwrap();
        if i == kill_at {
            s.stack.operator.kill();
            restart_operator(&mut s.stack, &dir, &ns);
        }
        if i == deprovisioned.len() / 2 {
            s.receiver.start().await;
        }
    }

    // Phase 4: delete every third user, a kill at a random point.
    let deleted: Vec<usize> = (0..users).step_by(3).collect();
    let kill_at = random_below(deleted.len());
    eprintln!("third kill after {kill_at} deletes");
    for (i, n) in deleted.iter().enumerate() {
        s.entra.delete("Users", &ids[*n]).await.unwrap();
        if i == kill_at {
            s.stack.operator.kill();
            restart_operator(&mut s.stack, &dir, &ns);
        }
    }

    // Every user reaches its final state at the receiver.
    let final_state = |received: &BTreeMap<String, Vec<Received>>| -> Result<(), String> {
        for (n, id) in ids.iter().enumerate() {
            let events = received.get(id).ok_or(format!("nothing for user {n}"))?;
            let k = kinds(events);
            if n % 3 == 0 {
                if k.last().map(String::as_str) != Some("dsync.user.deleted") {
                    return Err(format!("user {n} not deleted last: {k:?}"));
                }
            } else {
                let last_state = events
                    .iter()
                    .rev()
                    .find(|e| !e.event.starts_with("dsync.group."))
                    .map(|e| e.body["data"]["state"].clone());
                let want = if n % 2 == 0 { "inactive" } else { "active" };
                if last_state != Some(json!(want)) {
                    return Err(format!("user {n}: last state {last_state:?}, not {want}"));
                }
                let added = format!("dsync.group.user_added:{group}");
                if !k.contains(&added) {
                    return Err(format!("user {n}: no membership event: {k:?}"));
                }
            }
        }
        Ok(())
    };
    let received = kube_scim_tests::eventually(
        "every user's final state delivered",
        Duration::from_secs(300),
        || {
            let lines = s.receiver.lines();
            let check = &final_state;
            async move {
                let got = per_resource(&lines);
                check(&got).ok().map(|_| got)
            }
        },
    )
    .await;

    // No event lost, none doubled under a second id: per user exactly one created, at most one
    // deleted (last), membership events alternating, nothing after deleted.
    for (n, id) in ids.iter().enumerate() {
        let k = kinds(&received[id]);
        assert_eq!(k[0], "dsync.user.created", "user {n}: {k:?}");
        assert_eq!(
            k.iter().filter(|e| *e == "dsync.user.created").count(),
            1,
            "user {n}: {k:?}"
        );
        let deletes = k.iter().filter(|e| *e == "dsync.user.deleted").count();
        assert_eq!(deletes, usize::from(n % 3 == 0), "user {n}: {k:?}");
        let memberships: Vec<&String> = k.iter().filter(|e| e.contains("user_")).collect();
        for pair in memberships.windows(2) {
            assert_ne!(
                pair[0], pair[1],
                "user {n}: a membership event twice: {k:?}"
            );
        }
    }
    let lines = s.receiver.lines();
    let distinct = received.values().map(Vec::len).sum::<usize>();
    eprintln!(
        "{} requests' events received, {distinct} distinct ids, {} redeliveries",
        lines.len(),
        lines.len() - distinct
    );
    let status = kube_scim_tests::eventually("backlog drained", Duration::from_secs(60), || {
        let (kube, ns) = (s.kube.clone(), ns.clone());
        async move {
            let st = webhook_status(&kube, &ns).await;
            (st.backlog == Some(0)).then_some(st)
        }
    })
    .await;
    assert_eq!(status.dropped_events, Some(0));
    let _ = Api::<ScimWebhook>::namespaced(s.kube.clone(), &ns)
        .delete("app", &DeleteParams::default())
        .await;
    s.receiver.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
