//! What every SCIM request goes through: a request id, the header limit, readiness, the body
//! (read under its own deadline before the request takes a slot), the directory's queue and
//! the server's, a timeout, metrics and one log line.
//!
//! Fairness between directories: a request first waits in its directory's queue
//! (`--max-concurrent-requests-per-directory`), then in the server's
//! (`--max-concurrent-requests`). A directory that floods the server, or whose clients send
//! bodies slowly (a slot is taken only once the body is in), fills its own queue and at most
//! its share of the server's; another directory's requests go past it. Requests wait rather
//! than being refused with 429, which Entra would count as failures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::http::Method;
use tokio::sync::Semaphore;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::AppState;
use crate::error::Error;
use crate::metrics::{OpLabels, RequestLabels};
use crate::storage::Storage;

/// Endpoints as metric labels: anything else is `/other`, so clients cannot grow the series.
const OPERATIONS: &[&str] = &[
    "/Users",
    "/Groups",
    "/.search",
    "/ServiceProviderConfig",
    "/ResourceTypes",
    "/Schemas",
    "/Users/{id}",
    "/Groups/{id}",
    "/Users/.search",
    "/Groups/.search",
    "/ResourceTypes/{id}",
    "/Schemas/{id}",
    "/oauth2/token",
];

/// Each directory's concurrency queue, made on its first request.
pub struct DirectorySlots {
    per_directory: usize,
    queues: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl DirectorySlots {
    /// Queues that let `per_directory` requests of one directory run at once.
    pub fn new(per_directory: usize) -> Self {
        DirectorySlots {
            per_directory: per_directory.max(1),
            queues: Mutex::new(HashMap::new()),
        }
    }

    /// The queue of directory `key` (`ns/name` of a directory the server knows; anything else
    /// shares one queue, so made-up names cannot grow the map).
    fn queue(&self, key: &str) -> Arc<Semaphore> {
        let mut q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        q.entry(key.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_directory)))
            .clone()
    }
}

/// A path segment as the router sees it (percent-decoded), so `/scim/v2/ns/%64ir` counts as
/// the directory `dir` it is served as.
fn decode_segment(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// `(namespace/directory, operation)` from a request path, for metrics and logs.
fn classify(method: &str, path: &str) -> (Option<(String, String)>, String) {
    let Some(rest) = path.strip_prefix("/scim/v2/") else {
        return (None, format!("{method} other"));
    };
    let mut parts = rest.splitn(3, '/');
    let ns = decode_segment(parts.next().unwrap_or(""));
    let dir = decode_segment(parts.next().unwrap_or(""));
    let tail = parts.next().unwrap_or("");
    let segs: Vec<&str> = tail.split('/').collect();
    let op = match segs.as_slice() {
        [r] => format!("/{r}"),
        [r, ".search"] => format!("/{r}/.search"),
        ["oauth2", "token"] => "/oauth2/token".into(),
        [r, _] => format!("/{r}/{{id}}"),
        _ => "/other".into(),
    };
    let op = if OPERATIONS.contains(&op.as_str()) {
        op
    } else {
        "/other".into()
    };
    (Some((ns, dir)), format!("{method} {op}"))
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Reads the body of an authorized write under the body deadline, before the request takes a
/// slot: a client that sends its body slowly (or never) holds a connection, not a slot. Other
/// requests pass as they are (an unauthorized one is answered 401 without its body being read).
async fn buffer_body<S: Storage>(
    st: &AppState<S>,
    dir: Option<&(String, String)>,
    req: Request,
) -> Result<Request, Response> {
    if !matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        return Ok(req);
    }
    let Some((ns, name)) = dir else {
        return Ok(req);
    };
    let d = crate::directory::DirRef { ns, name };
    let token = crate::request::bearer_token(req.headers());
    if st.directory.authorize(d, token).await.is_err() {
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    let limit = st
        .settings
        .body_read_timeout
        .max(std::time::Duration::from_millis(100));
    let read = crate::request::read_body(&st.settings, &parts.headers, body);
    match tokio::time::timeout(limit, read).await {
        Ok(Ok(bytes)) => Ok(Request::from_parts(parts, Body::from(bytes))),
        Ok(Err(e)) => Err(e.into_response()),
        Err(_) => Err(Error::BodyTimeout(limit.as_secs().max(1)).into_response()),
    }
}

/// Request id, header limit, readiness, body, queues, timeout, metrics and a log line per request.
pub async fn guard<S: Storage>(
    State(st): State<Arc<AppState<S>>>,
    req: Request,
    next: Next,
) -> Response {
    if matches!(req.uri().path(), "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    let cache = st.directory.cache();
    let start = Instant::now();
    let rid = request_id(req.headers());
    let method = req.method().as_str().to_string();
    let (dir, op) = classify(&method, req.uri().path());
    let known = dir
        .as_ref()
        .and_then(|(ns, d)| Some((ns.clone(), d.clone(), cache.directory(ns, d)?)));
    let dir_label = match &known {
        Some((ns, d, _)) => format!("{ns}/{d}"),
        None => "unknown".to_string(),
    };
    let span = tracing::info_span!("request", request_id = %rid, method = %method, path = %req.uri().path());
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    st.metrics.in_flight.inc();
    let mut resp = if header_bytes > st.settings.max_header_bytes {
        Error::HeadersTooLarge(st.settings.max_header_bytes).into_response()
    } else if !cache.is_synced() {
        Error::unavailable("the server is starting (caches not synced yet)", 5).into_response()
    } else {
        let deadline = tokio::time::Instant::from_std(start) + st.settings.request_timeout();
        let is_write = matches!(
            *req.method(),
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        match buffer_body(&st, dir.as_ref(), req).await {
            Err(resp) => resp,
            Ok(req) => {
                let queue = st.directory_slots.queue(&dir_label);
                let server = st.semaphore.clone();
                let started = Arc::new(AtomicBool::new(false));
                let running = started.clone();
                let fut = async move {
                    let _mine = queue.acquire_owned().await;
                    let _shared = server.acquire_owned().await;
                    running.store(true, Ordering::Release);
                    crate::storage::with_deadline(deadline, next.run(req)).await
                }
                .instrument(span.clone());
                match tokio::time::timeout_at(deadline, fut).await {
                    Ok(r) => r,
                    Err(_) if is_write && started.load(Ordering::Acquire) => Error::unavailable(
                        "the request timed out while it was being processed and may still take \
                         effect: read the resource (GET it, or filter on its userName or \
                         displayName) before sending the request again",
                        5,
                    )
                    .into_response(),
                    Err(_) => Error::unavailable(
                        "the request timed out before it was processed; nothing was changed; retry",
                        5,
                    )
                    .into_response(),
                }
            }
        }
    };
    st.metrics.in_flight.dec();
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    st.metrics
        .requests
        .get_or_create(&RequestLabels {
            directory: dir_label.clone(),
            operation: op.clone(),
            status,
        })
        .inc();
    if let Some((ns, d, info)) = &known {
        if status == 401 {
            st.metrics
                .auth_failures
                .get_or_create(&crate::metrics::DirLabels {
                    directory: dir_label.clone(),
                })
                .inc();
        } else {
            st.metrics.request_seen(&dir_label);
        }
        st.events.note(ns, d, &info.uid, status, &op);
    }
    st.metrics
        .request_latency
        .get_or_create(&OpLabels {
            operation: op.clone(),
        })
        .observe(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            directory = %dir_label,
            operation = %op,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        )
    });
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert("x-request-id", v);
    }
    if st.draining.load(Ordering::Acquire) {
        // hyper closes the connection after this response: see `draining` in main.rs.
        resp.headers_mut().insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_paths() {
        assert_eq!(
            classify("GET", "/scim/v2/ns/d/Users/abc").1,
            "GET /Users/{id}"
        );
        assert_eq!(classify("GET", "/scim/v2/ns/d/Users").1, "GET /Users");
        assert_eq!(
            classify("POST", "/scim/v2/ns/d/oauth2/token").1,
            "POST /oauth2/token"
        );
        assert_eq!(classify("GET", "/scim/v2/ns/d/Nope/x/y").1, "GET /other");
        assert_eq!(
            classify("GET", "/scim/v2/n%73/%64ir/Users").0,
            Some(("ns".into(), "dir".into()))
        );
    }
}

#[cfg(test)]
mod slot_tests {
    use super::*;

    #[test]
    fn a_full_directory_queue_leaves_the_others_free() {
        let slots = DirectorySlots::new(2);
        let a = slots.queue("ns/a");
        let _held: Vec<_> = (0..2)
            .map(|_| a.clone().try_acquire_owned().unwrap())
            .collect();
        assert!(slots.queue("ns/a").try_acquire_owned().is_err());
        assert!(slots.queue("ns/b").try_acquire_owned().is_ok());
    }
}
