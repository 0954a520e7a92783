//! The store's retries against a scripted apiserver (a mocked `tower` service, as the
//! operator's controller fixtures do): each call gets the next scripted answer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Request, Response};
use kube::client::{Body, ClientBuilder};
use serde_json::{Value, json};

use super::*;

/// One scripted answer.
#[derive(Clone)]
enum Reply {
    /// HTTP status, extra headers, body.
    Http(u16, Vec<(&'static str, &'static str)>, String),
    /// The connection is reset before an answer arrives.
    Reset,
}

fn status(code: u16, reason: &str, message: &str) -> Reply {
    Reply::Http(
        code,
        vec![("content-type", "application/json")],
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "code": code, "reason": reason, "message": message})
        .to_string(),
    )
}

fn ok(obj: &Value) -> Reply {
    Reply::Http(
        200,
        vec![("content-type", "application/json")],
        obj.to_string(),
    )
}

fn user(name: &str, created: &str) -> Value {
    json!({
        "apiVersion": "kubescim.io/v1alpha1", "kind": "ScimUser",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": "7",
                     "labels": {"kubescim.io/directory": "d"}},
        "spec": {"directory": "d"},
        "status": {"id": name, "meta": {"created": created}},
    })
}

/// Requests as `METHOD path`, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A store whose apiserver answers with `script` in order (the last answer repeats).
fn store(script: Vec<Reply>) -> (KubeStore, Seen, Arc<Metrics>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Seen::default();
    let recorded = seen.clone();
    let mut script: VecDeque<Reply> = script.into();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            recorded.0.lock().unwrap().push(format!(
                "{} {}",
                request.method(),
                request.uri().path()
            ));
            let reply = if script.len() > 1 {
                script.pop_front()
            } else {
                script.front().cloned()
            };
            match reply.expect("a scripted answer") {
                Reply::Reset => {
                    send.send_error(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
                }
                Reply::Http(code, headers, body) => {
                    let mut r = Response::builder().status(code);
                    for (k, v) in headers {
                        r = r.header(k, v);
                    }
                    send.send_response(r.body(Body::from(body.into_bytes())).unwrap());
                }
            }
        }
    });
    let metrics = Arc::new(Metrics::new());
    let client = keep_retry_after(ClientBuilder::new(service, "default"));
    (KubeStore::new(client, metrics.clone(), 4), seen, metrics)
}

fn retries(m: &Metrics, verb: &str, cause: &str) -> u64 {
    m.api_retries
        .get_or_create(&RetryLabels {
            verb: verb.into(),
            kind: "User".into(),
            cause: cause.into(),
        })
        .get()
}

fn in_request<F: Future>(f: F) -> impl Future<Output = F::Output> {
    storage::with_deadline(tokio::time::Instant::now() + Duration::from_secs(10), f)
}

#[tokio::test(start_paused = true)]
async fn a_429_from_priority_and_fairness_is_retried_after_its_retry_after() {
    let (s, seen, m) = store(vec![
        // As APF answers: plain text, the wait in a header.
        Reply::Http(
            429,
            vec![("content-type", "text/plain"), ("retry-after", "1")],
            "Too many requests, please try again later.\n".into(),
        ),
        ok(&user("u1", "t1")),
    ]);
    let t = tokio::time::Instant::now();
    let got = in_request(s.get(ResourceKind::User, "ns", "u1")).await;
    assert_eq!(got.unwrap().unwrap().metadata.name.as_deref(), Some("u1"));
    assert_eq!(seen.lines().len(), 2);
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(retries(&m, "get", "429"), 1);
}

#[tokio::test(start_paused = true)]
async fn an_etcd_timeout_is_retried() {
    let (s, seen, m) = store(vec![
        status(500, "InternalError", "etcdserver: request timed out"),
        ok(&user("u1", "t1")),
    ]);
    let body = json!({"metadata": {"labels": {"member.kubescim.io/g": "true"}}});
    let got = in_request(s.patch(ResourceKind::User, "ns", "u1", &body)).await;
    assert!(got.is_ok(), "{got:?}");
    assert_eq!(seen.lines().len(), 2);
    assert_eq!(retries(&m, "patch", "500"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_500_that_is_no_timeout_is_answered_at_once() {
    let (s, seen, _) = store(vec![status(500, "InternalError", "webhook panicked")]);
    let got = in_request(s.get(ResourceKind::User, "ns", "u1")).await;
    assert!(matches!(got, Err(StoreError::Unavailable(_))), "{got:?}");
    assert_eq!(seen.lines().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_lasting_503_is_unavailable_before_the_request_deadline() {
    let (s, seen, m) = store(vec![status(503, "ServiceUnavailable", "shutting down")]);
    let t = tokio::time::Instant::now();
    let deadline = t + Duration::from_secs(3);
    let got = storage::with_deadline(deadline, s.get(ResourceKind::User, "ns", "u1")).await;
    assert!(matches!(got, Err(StoreError::Unavailable(_))), "{got:?}");
    // Tried more than once, and given up with time left to answer.
    let calls = seen.lines().len();
    assert!(calls > 2, "{calls}");
    assert!(tokio::time::Instant::now() + s.backoff.reserve <= deadline + Duration::from_millis(1));
    assert_eq!(retries(&m, "get", "503"), calls as u64 - 1);
}

#[tokio::test(start_paused = true)]
async fn background_work_retries_within_its_budget() {
    let (s, seen, _) = store(vec![status(504, "Timeout", "slow")]);
    let t = tokio::time::Instant::now();
    let got = s.get(ResourceKind::User, "ns", "u1").await;
    assert!(matches!(got, Err(StoreError::Unavailable(_))), "{got:?}");
    assert!(t.elapsed() <= s.backoff.background_budget);
    assert!(seen.lines().len() > 2);
}

#[tokio::test(start_paused = true)]
async fn a_create_whose_answer_was_lost_finds_its_own_object() {
    let mine = user("u1", "2026-01-01T00:00:00.123Z");
    let (s, seen, _) = store(vec![
        Reply::Reset,
        status(409, "AlreadyExists", "scimusers \"u1\" already exists"),
        ok(&mine),
    ]);
    let obj: DynamicObject = serde_json::from_value(mine.clone()).unwrap();
    let got = in_request(s.create(ResourceKind::User, "ns", obj)).await;
    assert_eq!(got.unwrap().metadata.name.as_deref(), Some("u1"));
    let lines = seen.lines();
    assert!(
        lines[0].starts_with("POST") && lines[1].starts_with("POST"),
        "{lines:?}"
    );
    assert!(lines[2].starts_with("GET"), "{lines:?}");
}

#[tokio::test(start_paused = true)]
async fn a_create_retried_into_another_writers_object_is_already_exists() {
    let (s, _, _) = store(vec![
        Reply::Reset,
        status(409, "AlreadyExists", "exists"),
        ok(&user("u1", "another request's time")),
    ]);
    let obj: DynamicObject = serde_json::from_value(user("u1", "mine")).unwrap();
    let got = in_request(s.create(ResourceKind::User, "ns", obj)).await;
    assert_eq!(got.unwrap_err(), StoreError::AlreadyExists);
}

#[tokio::test(start_paused = true)]
async fn a_create_refused_with_429_then_taken_is_already_exists_without_a_read() {
    let (s, seen, _) = store(vec![
        status(429, "TooManyRequests", "slow down"),
        status(409, "AlreadyExists", "exists"),
    ]);
    let obj: DynamicObject = serde_json::from_value(user("u1", "mine")).unwrap();
    let got = in_request(s.create(ResourceKind::User, "ns", obj)).await;
    assert_eq!(got.unwrap_err(), StoreError::AlreadyExists);
    assert_eq!(seen.lines().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_delete_whose_answer_was_lost_is_done() {
    let (s, seen, m) = store(vec![Reply::Reset, status(404, "NotFound", "gone")]);
    let got = in_request(s.delete(ResourceKind::User, "ns", "u1")).await;
    assert_eq!(got, Ok(None));
    assert_eq!(seen.lines().len(), 2);
    assert_eq!(retries(&m, "delete", "transport"), 1);
    // Without a lost answer before it, not found stays not found.
    let (s, _, _) = store(vec![status(404, "NotFound", "gone")]);
    let got = in_request(s.delete(ResourceKind::User, "ns", "u1")).await;
    assert_eq!(got, Err(StoreError::NotFound));
}

#[tokio::test(start_paused = true)]
async fn conflicts_and_rejections_are_not_retried() {
    for (reply, want) in [
        (status(409, "Conflict", "modified"), StoreError::Conflict),
        (
            status(422, "Invalid", "bad"),
            StoreError::Rejected("bad".into()),
        ),
    ] {
        let (s, seen, _) = store(vec![reply]);
        let got = in_request(s.patch(ResourceKind::User, "ns", "u1", &json!({}))).await;
        assert_eq!(got.unwrap_err(), want);
        assert_eq!(seen.lines().len(), 1);
    }
}

fn claim() -> storage::OnceClaim {
    storage::OnceClaim {
        name: "kube-scim-assertion-00".into(),
        directory: "d".into(),
        expires: 1_800_000_100,
    }
}

fn lease(name: &str, expires: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                     "resourceVersion": "3",
                     "annotations": {"kubescim.io/expires": expires, "kubescim.io/claim": "another"}},
    })
}

#[tokio::test(start_paused = true)]
async fn a_claim_taken_by_another_replica_is_already_exists() {
    use storage::ClaimStore;
    let (s, seen, _) = store(vec![status(409, "AlreadyExists", "leases exists")]);
    let c = claim();
    let got = in_request(s.claim("ns", &c)).await;
    assert_eq!(got, Err(StoreError::AlreadyExists));
    assert_eq!(
        seen.lines(),
        ["POST /apis/coordination.k8s.io/v1/namespaces/ns/leases"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_claim_retried_after_a_lost_answer_into_another_claim_is_already_exists() {
    use storage::ClaimStore;
    let (s, seen, _) = store(vec![
        Reply::Reset,
        status(409, "AlreadyExists", "exists"),
        ok(&lease("kube-scim-assertion-00", "1800000100")),
    ]);
    let c = claim();
    let got = in_request(s.claim("ns", &c)).await;
    assert_eq!(got, Err(StoreError::AlreadyExists));
    assert!(seen.lines()[2].starts_with("GET"), "{:?}", seen.lines());
}

#[tokio::test(start_paused = true)]
async fn an_unconfirmed_claim_is_unavailable() {
    use storage::ClaimStore;
    let (s, seen, _) = store(vec![status(503, "ServiceUnavailable", "shutting down")]);
    let c = claim();
    let got = in_request(s.claim("ns", &c)).await;
    assert!(matches!(got, Err(StoreError::Unavailable(_))), "{got:?}");
    assert!(seen.lines().len() > 1, "retried");
}

#[tokio::test(start_paused = true)]
async fn the_sweep_deletes_only_expired_claims() {
    use storage::ClaimStore;
    let list = json!({
        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
        "metadata": {"resourceVersion": "9"},
        "items": [
            {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
             "metadata": lease("old", "99")["metadata"]},
            {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
             "metadata": lease("new", "101")["metadata"]},
        ],
    });
    let (s, seen, _) = store(vec![ok(&list), ok(&lease("old", "99"))]);
    let got = s.sweep("ns", 100, 10).await;
    assert_eq!(got, Ok(1));
    let lines = seen.lines();
    assert_eq!(
        lines,
        [
            "GET /apis/coordination.k8s.io/v1/namespaces/ns/leases",
            "DELETE /apis/coordination.k8s.io/v1/namespaces/ns/leases/old",
        ]
    );
}
