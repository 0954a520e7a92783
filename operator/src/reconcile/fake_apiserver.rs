//! A fake apiserver behind a mocked `tower` service (the pattern of kube-rs's controller-rs
//! fixtures), for every controller's unit tests: it answers GETs from a map of objects (404
//! otherwise), echoes writes back, fails the requests a test names ([`Fault`]), and records
//! every call, so a reconcile runs in milliseconds and a test asserts on its writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// One request the reconcile made.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

/// The calls so far.
#[derive(Clone, Default)]
pub struct Calls(Arc<Mutex<Vec<Call>>>);

impl Calls {
    fn push(&self, c: Call) {
        self.0.lock().unwrap().push(c);
    }

    /// Every call except Event writes (events are advice; they are checked on their own).
    pub fn writes(&self) -> Vec<Call> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.method != Method::GET && !c.path.contains("/events"))
            .cloned()
            .collect()
    }

    /// Every call, reads included.
    pub fn all(&self) -> Vec<Call> {
        self.0.lock().unwrap().clone()
    }

    /// Writes as `METHOD path` lines, for compact assertions.
    pub fn write_lines(&self) -> Vec<String> {
        self.writes()
            .iter()
            .map(|c| format!("{} {}", c.method, c.path))
            .collect()
    }

    /// Reasons of the Events published.
    pub fn event_reasons(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.method == Method::POST && c.path.contains("/events"))
            .filter_map(|c| c.body["reason"].as_str().map(str::to_string))
            .collect()
    }

    /// The body of the last write to `path`.
    pub fn last_write_to(&self, method: Method, path: &str) -> Option<Value> {
        self.writes()
            .into_iter()
            .rev()
            .find(|c| c.method == method && c.path == path)
            .map(|c| c.body)
    }
}

fn not_found() -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": "not found", "reason": "NotFound", "code": 404}),
    )
}

fn answer(
    objects: &HashMap<String, Value>,
    method: &Method,
    path: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let stored = objects
        .get(path)
        .or_else(|| objects.get(path.trim_end_matches("/status")));
    match *method {
        Method::GET => stored.map_or_else(not_found, |o| (StatusCode::OK, o.clone())),
        Method::POST => (StatusCode::CREATED, body.clone()),
        Method::PUT => (StatusCode::OK, body.clone()),
        // Server-side apply sends objects: the stored one (if any) with their top-level
        // fields laid over it. Merge and JSON patches get the stored object back.
        Method::PATCH if body.get("kind").is_some() => {
            let mut out = stored.cloned().unwrap_or(json!({}));
            for (k, v) in body.as_object().into_iter().flatten() {
                out[k] = v.clone();
            }
            (StatusCode::OK, out)
        }
        Method::PATCH => stored.map_or_else(not_found, |o| (StatusCode::OK, o.clone())),
        Method::DELETE => match stored {
            Some(_) => (
                StatusCode::OK,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}),
            ),
            None => not_found(),
        },
        _ => not_found(),
    }
}

/// An apiserver failure injected into the fake apiserver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 409 Conflict (a stale resourceVersion, or created meanwhile).
    Conflict,
    /// 404 Not Found (deleted meanwhile, or a namespace that does not exist).
    NotFound,
    /// 500 Internal Server Error (etcd unavailable, a webhook failing).
    Internal,
    /// 504 Timeout: the apiserver gave up on the request.
    Timeout,
    /// No answer at all: the connection is lost (the client sees a transport error).
    Dropped,
}

impl Failure {
    pub const ALL: [Failure; 5] = [
        Failure::Conflict,
        Failure::NotFound,
        Failure::Internal,
        Failure::Timeout,
        Failure::Dropped,
    ];

    fn answer(self) -> Option<(StatusCode, Value)> {
        let (code, reason, message) = match self {
            Failure::Conflict => (
                409,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version and try again",
            ),
            Failure::NotFound => return Some(not_found()),
            Failure::Internal => (
                500,
                "InternalError",
                "Internal error occurred: etcdserver: request timed out",
            ),
            Failure::Timeout => (
                504,
                "Timeout",
                "Timeout: request did not complete within requested timeout",
            ),
            Failure::Dropped => return None,
        };
        Some((
            StatusCode::from_u16(code).expect("valid code"),
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "message": message, "reason": reason, "code": code}),
        ))
    }
}

/// Where to inject a [`Failure`]: every request of `method` whose path is `path`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: Method,
    pub path: String,
    pub failure: Failure,
}

impl Fault {
    pub fn new(method: Method, path: &str, failure: Failure) -> Fault {
        Fault {
            method,
            path: path.to_string(),
            failure,
        }
    }
}

/// A client whose apiserver holds `objects` (by request path).
pub fn client(objects: HashMap<String, Value>) -> (Client, Calls) {
    client_failing(objects, Vec::new())
}

/// A client whose apiserver holds `objects` and fails the requests `faults` name.
pub fn client_failing(objects: HashMap<String, Value>, faults: Vec<Fault>) -> (Client, Calls) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls = Calls::default();
    let recorded = calls.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().clone();
            let path = request.uri().path().to_string();
            let query = request.uri().query().unwrap_or_default().to_string();
            let content_type = request
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let fault = faults
                .iter()
                .find(|f| f.method == method && f.path == path)
                .map(|f| f.failure);
            let answered = match fault {
                Some(failure) => failure.answer(),
                None => Some(answer(&objects, &method, &path, &body)),
            };
            recorded.push(Call {
                method,
                path,
                query,
                content_type,
                body,
            });
            // Dropping `send` unanswered fails the request in the client.
            let Some((status, response)) = answered else {
                continue;
            };
            let response = Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&response).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    (Client::new(service, "default"), calls)
}
