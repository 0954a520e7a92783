//! The webhook receivers of docs/webhooks.md (examples/webhook-receiver-python with the PyPI
//! `standardwebhooks` package, examples/webhook-receiver-go with the Go library pinned in its
//! go.mod) run as processes on 127.0.0.1: each verifies the operator's real deliveries, and
//! refuses a tampered body and a stale (correctly signed, old) delivery; a replay within the
//! tolerance is acknowledged but handled once. The requests the tests sign themselves are
//! computed here apart from the operator's code, and checked against the Standard Webhooks
//! specification's test vector.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use kube::Api;
use kube::api::PostParams;
use kube_scim_crds::{ScimDirectory, ScimDirectorySpec, ScimWebhook};
use kube_scim_tests::entra::{Dialect, EntraClient, EntraUser};
use kube_scim_tests::keys;
use kube_scim_tests::procs::ManagedProcess;
use kube_scim_tests::stack::{Stack, StackOptions};
use kube_scim_tests::{ControlPlane, free_port, go_examples, python_tools, repo_root};
use serde_json::json;
use sha2::Sha256;

const PYTHON_RECEIVER: &str = "examples/webhook-receiver-python/receiver.py";
const GO_RECEIVER: &str = "examples/webhook-receiver-go/main.go";

/// The test vector of the Standard Webhooks specification: a correct signature, from 2021.
const SPEC_KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SPEC_TIMESTAMP: i64 = 1614265330;
const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

/// `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>` (Standard Webhooks).
fn sign(key: &str, id: &str, timestamp: i64, body: &str) -> String {
    let secret = STANDARD
        .decode(key.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&secret).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[derive(Clone, Copy, Debug)]
enum Example {
    Python,
    Go,
}

/// A receiver example listening on 127.0.0.1 with `key`.
struct Receiver {
    process: ManagedProcess,
    port: u16,
}

impl Receiver {
    async fn start(example: Example, key: &str, dir: &Path) -> Receiver {
        let port = free_port().unwrap();
        let (name, mut cmd) = match example {
            Example::Python => {
                let key_file = dir.join("python-receiver-key");
                std::fs::write(&key_file, key).unwrap();
                let mut cmd = Command::new(python_tools().unwrap().join("python"));
                cmd.arg(repo_root().join(PYTHON_RECEIVER))
                    .env("WEBHOOK_KEY_FILE", key_file);
                ("python-receiver", cmd)
            }
            Example::Go => {
                let mut cmd = Command::new(go_examples().unwrap().join("webhook-receiver-go"));
                cmd.env("WEBHOOK_SECRET", key);
                ("go-receiver", cmd)
            }
        };
        cmd.env("LISTEN_ADDRESS", format!("127.0.0.1:{port}"));
        let log = dir.join(format!("{name}.log"));
        let process = ManagedProcess::spawn_command(name, cmd, &log).unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Receiver { process, port };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{example:?} receiver not listening within 10 s:\n{}",
            process.log_tail(30)
        );
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/directory", self.port)
    }

    /// The events it handled: `(id, event, transition)` per line printed.
    fn handled(&self) -> Vec<(String, String, String)> {
        std::fs::read_to_string(self.process.log())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut words = l.split(' ');
                let id = words.next()?;
                let event = words.next()?;
                let transition = words.next().unwrap_or_default();
                (id.starts_with("evt_") || id.starts_with("msg_"))
                    .then(|| (id.to_string(), event.to_string(), transition.to_string()))
            })
            .collect()
    }

    /// Posts `body` with the given Standard Webhooks headers; returns the status code.
    async fn post(&self, id: &str, timestamp: i64, signature: &str, body: &str) -> u16 {
        kube_scim_tests::http_client()
            .post(self.url())
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_string())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

fn docs_show(doc: &str, file: &str, language: &str) {
    let docs = std::fs::read_to_string(repo_root().join(doc)).unwrap();
    let source = std::fs::read_to_string(repo_root().join(file)).unwrap();
    assert!(
        docs.contains(&format!("```{language}\n{source}```")),
        "{doc} must show {file} verbatim"
    );
}

#[test]
fn the_receivers_in_the_docs_are_the_tested_files() {
    docs_show("docs/webhooks.md", PYTHON_RECEIVER, "python");
    docs_show("docs/webhooks.md", GO_RECEIVER, "go");
}

#[test]
fn this_tests_signatures_match_the_specification_vector() {
    assert_eq!(
        sign(SPEC_KEY, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY),
        SPEC_SIGNATURE
    );
}

fn event(id: &str, transition: &str) -> serde_json::Value {
    json!({
        "id": id, "event": "dsync.user.updated", "transition": transition,
        "created_at": "2026-12-03T20:00:00Z",
        "data": {"object": "directory_user", "id": "u1", "username": "ada@contoso.example",
                 "state": "inactive"}
    })
}

async fn accepts_signed_and_refuses_tampered_and_stale(example: Example) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "webhook-receivers-{example:?}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let key = SPEC_KEY;
    let receiver = Receiver::start(example, key, &dir).await;
    let log = || receiver.process.log_tail(30);
    let handled = |ids: &[(&str, &str)]| -> Vec<(String, String, String)> {
        ids.iter()
            .map(|(id, t)| (id.to_string(), "dsync.user.updated".into(), t.to_string()))
            .collect()
    };

    // A correctly signed, current delivery is handled.
    let body = event("evt_1", "deprovisioned").to_string();
    let t = now();
    let signature = sign(key, "evt_1", t, &body);
    assert_eq!(
        receiver.post("evt_1", t, &signature, &body).await,
        204,
        "{}",
        log()
    );
    assert_eq!(
        receiver.handled(),
        handled(&[("evt_1", "deprovisioned")]),
        "{}",
        log()
    );

    // The same delivery again (a redelivery, or a replay within the tolerance): acknowledged,
    // not handled twice.
    assert_eq!(
        receiver.post("evt_1", t, &signature, &body).await,
        204,
        "{}",
        log()
    );

    // The signed body with one field changed: refused.
    let tampered = event("evt_1", "reactivated").to_string();
    assert_eq!(
        receiver.post("evt_1", t, &signature, &tampered).await,
        401,
        "{}",
        log()
    );
    // Another id under the same signature: refused.
    assert_eq!(
        receiver.post("evt_2", t, &signature, &body).await,
        401,
        "{}",
        log()
    );
    // Signed with another key: refused.
    let other = sign(
        "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=",
        "evt_1",
        t,
        &body,
    );
    assert_eq!(
        receiver.post("evt_1", t, &other, &body).await,
        401,
        "{}",
        log()
    );

    // Correctly signed but stale: the specification's vector (2021), and a delivery captured
    // ten minutes ago and replayed now.
    assert_eq!(
        receiver
            .post(SPEC_ID, SPEC_TIMESTAMP, SPEC_SIGNATURE, SPEC_BODY)
            .await,
        401,
        "{}",
        log()
    );
    let old = now() - 600;
    let body3 = event("evt_3", "deprovisioned").to_string();
    let stale = sign(key, "evt_3", old, &body3);
    assert_eq!(
        receiver.post("evt_3", old, &stale, &body3).await,
        401,
        "{}",
        log()
    );

    // A batch (`{"object":"list"}`): each new event once, the one already seen skipped.
    let batch = json!({"object": "list",
                       "data": [event("evt_4", "deprovisioned"), event("evt_1", "deprovisioned"),
                                event("evt_5", "reactivated")]})
    .to_string();
    let t = now();
    let signature = sign(key, "batch_1", t, &batch);
    assert_eq!(
        receiver.post("batch_1", t, &signature, &batch).await,
        204,
        "{}",
        log()
    );
    assert_eq!(
        receiver.handled(),
        handled(&[
            ("evt_1", "deprovisioned"),
            ("evt_4", "deprovisioned"),
            ("evt_5", "reactivated")
        ]),
        "{}",
        log()
    );
}

#[tokio::test]
async fn python_receiver_accepts_signed_and_refuses_tampered_and_stale_deliveries() {
    accepts_signed_and_refuses_tampered_and_stale(Example::Python).await;
}

#[tokio::test]
async fn go_receiver_accepts_signed_and_refuses_tampered_and_stale_deliveries() {
    accepts_signed_and_refuses_tampered_and_stale(Example::Go).await;
}

/// The operator delivers to both examples (one ScimWebhook each, one signing key): each
/// verifies and handles `dsync.activated` and the `dsync.user.created` of a user Entra creates.
#[tokio::test]
async fn both_receivers_verify_the_operators_deliveries() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("receivers").await.unwrap();
    let kube = plane.client().await.unwrap();
    let mut options = StackOptions::new(&ns);
    options.operator_args = vec![
        "--default-ingress-host=scim.kube-scim.test".into(),
        "--webhook-allowed-cidrs=127.0.0.1/32".into(),
        "--leader-elect=false".into(),
    ];
    let stack = Stack::start(plane, options).await.unwrap();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("receivers-{ns}"));
    std::fs::create_dir_all(&dir).unwrap();
    let random = [
        uuid::Uuid::new_v4().into_bytes(),
        uuid::Uuid::new_v4().into_bytes(),
    ]
    .concat();
    let key = format!("whsec_{}", STANDARD.encode(random));
    let python = Receiver::start(Example::Python, &key, &dir).await;
    let go = Receiver::start(Example::Go, &key, &dir).await;

    keys::create_webhook_signing_key(&kube, &ns, "hook-key", &key).await;
    Api::<ScimDirectory>::namespaced(kube.clone(), &ns)
        .create(
            &PostParams::default(),
            &ScimDirectory::new("contoso", ScimDirectorySpec::default()),
        )
        .await
        .unwrap();
    let (_, token) = stack.ready_directory(&kube, &ns, "contoso").await;
    for (name, receiver) in [("python", &python), ("go", &go)] {
        Api::<ScimWebhook>::namespaced(kube.clone(), &ns)
            .create(
                &PostParams::default(),
                &keys::webhook(name, "contoso", &receiver.url(), "hook-key"),
            )
            .await
            .unwrap();
    }
    let entra = EntraClient::new(&stack.base_url(&ns, "contoso"), &token, Dialect::Compliant);
    entra
        .provision_user(&EntraUser::numbered(1), None)
        .await
        .unwrap();

    for (name, receiver) in [("python", &python), ("go", &go)] {
        let mut events = Vec::new();
        for _ in 0..240 {
            events = receiver.handled();
            let kinds: Vec<&str> = events.iter().map(|(_, e, _)| e.as_str()).collect();
            if kinds.contains(&"dsync.activated") && kinds.contains(&"dsync.user.created") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let kinds: Vec<&str> = events.iter().map(|(_, e, _)| e.as_str()).collect();
        // The directory's announcement first; the user's creation after it.
        assert!(
            kinds.first() == Some(&"dsync.activated") && kinds.contains(&"dsync.user.created"),
            "the {name} receiver within 60 s: {kinds:?}\n{}\n{}",
            receiver.process.log_tail(30),
            stack.logs()
        );
    }
}
