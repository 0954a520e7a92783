//! What every SCIM request goes through: a request id, the header limit, readiness, admission
//! (authentication from the headers, the body under its own deadline and byte budget, the
//! directory's queue and the server's in the request's lane: see [`crate::admission`]), a
//! timeout, metrics and one log line.
//!
//! Fairness between directories: an authenticated request first waits in its directory's
//! queue, then in the server's, of its lane. A directory that floods the server, or whose
//! clients send bodies slowly (a slot is taken only once the body is in), fills its own queue
//! and at most its share of the server's; another directory's requests go past it. Authorized
//! requests wait rather than being refused with 429, which Entra would count as failures.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::AppState;
use crate::admission::{self, Class, ConnTicket};
use crate::error::Error;
use crate::metrics::{OpLabels, RequestLabels, ThrottleLabels};
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

/// A response to a request that failed authentication (also when it was answered 429): counted
/// and reported as such.
#[derive(Clone, Copy)]
struct AuthFailed;

/// Bytes a body is reserved: its declared length, or the largest accepted when undeclared
/// (a longer one is refused with 413 before more is kept).
fn body_bytes(settings: &crate::config::Settings, headers: &HeaderMap) -> usize {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(settings.max_body_bytes, |n| n.min(settings.max_body_bytes))
}

/// Reads the body under the body deadline: a client that sends its body slowly (or never)
/// holds its connection and its reserved bytes, not a slot.
async fn read_body_within(
    settings: &crate::config::Settings,
    req: Request,
) -> Result<Request, Response> {
    let (parts, body) = req.into_parts();
    let limit = settings
        .body_read_timeout
        .max(std::time::Duration::from_millis(100));
    let read = crate::request::read_body(settings, &parts.headers, body);
    match tokio::time::timeout(limit, read).await {
        Ok(Ok(bytes)) => Ok(Request::from_parts(parts, Body::from(bytes))),
        Ok(Err(e)) => Err(e.into_response()),
        Err(_) => Err(Error::BodyTimeout(limit.as_secs().max(1)).into_response()),
    }
}

/// Charges a failed authentication to the directory path `path_dir` (whether or not it
/// exists, so the limits tell nothing about existence) and to the client's address; past a
/// limit the answer waits `--auth-failure-delay` and becomes a 429, holding no slot.
async fn charge_failure<S: Storage>(
    st: &AppState<S>,
    path_dir: &str,
    dir_label: &str,
    peer: Option<IpAddr>,
    resp: Response,
) -> Response {
    let mut resp = match st.admission.failures.failed(path_dir, peer, Instant::now()) {
        Ok(()) => resp,
        Err((scope, wait)) => {
            st.metrics
                .auth_throttled
                .get_or_create(&ThrottleLabels {
                    directory: dir_label.to_string(),
                    scope: scope.label().to_string(),
                })
                .inc();
            tokio::time::sleep(st.settings.auth_failure_delay).await;
            let secs = u32::try_from(wait.as_secs_f64().ceil() as u64).unwrap_or(u32::MAX);
            Error::Throttled(secs.max(1)).into_response()
        }
    };
    resp.extensions_mut().insert(AuthFailed);
    resp
}

/// Admits a request as [`crate::admission`] describes, then runs it. `started` is set once it
/// holds its slots (a write that times out after may still take effect).
async fn admit<S: Storage>(
    st: &AppState<S>,
    dir: Option<&(String, String)>,
    dir_label: &str,
    op: &str,
    req: Request,
    next: Next,
    started: &AtomicBool,
) -> Response {
    let Some((ns, name)) = dir else {
        // Outside every directory: the router's 404, nothing to hold.
        return next.run(req).await;
    };
    let ticket = req.extensions().get::<Arc<ConnTicket>>().cloned();
    // Behind a trusted proxy, the client it forwards: else one attacker behind the ingress
    // drains the bucket every client behind it shares.
    let peer = ticket
        .as_ref()
        .map(|t| st.admission.proxies.client(t.ip, req.headers()));
    // Built only for a failure: a request that authenticates never needs it.
    let path_dir = || format!("{ns}/{name}");
    let class = admission::class(req.method(), op);
    let Some(lane) = st.admission.lane(class) else {
        // Discovery and the token endpoint are answered from memory; the token endpoint
        // reads its small body under the body deadline itself.
        let token_request = class == Class::Public && *req.method() == Method::POST;
        let resp = next.run(req).await;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return charge_failure(st, &path_dir(), dir_label, peer, resp).await;
        }
        if token_request
            && resp.status().is_success()
            && let Some(t) = &ticket
        {
            t.authenticated();
        }
        return resp;
    };
    let d = crate::directory::DirRef { ns, name };
    let token = crate::request::bearer_token(req.headers());
    let info = match st.directory.authorize(d, token).await {
        Ok(info) => info,
        Err(e) => {
            let resp = e.into_response();
            if resp.status() == StatusCode::UNAUTHORIZED {
                return charge_failure(st, &path_dir(), dir_label, peer, resp).await;
            }
            return resp;
        }
    };
    if let Some(t) = &ticket {
        t.authenticated();
    }
    let mut req = req;
    req.extensions_mut()
        .insert(crate::handlers::Authorized(info));
    let mut reserved = None;
    let req = if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        let bytes = body_bytes(&st.settings, req.headers());
        let Some(r) = st.admission.bodies.try_reserve(dir_label, bytes) else {
            st.metrics
                .bodies_refused
                .get_or_create(&crate::metrics::DirLabels {
                    directory: dir_label.to_string(),
                })
                .inc();
            return Error::unavailable(
                "the server is holding as many request bodies as it may; nothing was changed; \
                 retry",
                2,
            )
            .into_response();
        };
        reserved = Some(r);
        match read_body_within(&st.settings, req).await {
            Ok(req) => req,
            Err(resp) => return resp,
        }
    } else {
        req
    };
    let _slots = lane.acquire(dir_label).await;
    started.store(true, Ordering::Release);
    let resp = next.run(req).await;
    drop(reserved);
    resp
}

/// Request id, header limit, readiness, admission, timeout, metrics and a log line per request.
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
        ) && op != "POST /oauth2/token";
        let started = AtomicBool::new(false);
        // The store retries transient apiserver failures until this request's deadline.
        let run = crate::storage::with_deadline(
            deadline,
            admit(&st, dir.as_ref(), &dir_label, &op, req, next, &started),
        )
        .instrument(span.clone());
        match tokio::time::timeout_at(deadline, run).await {
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
    };
    st.metrics.in_flight.dec();
    let status = resp.status().as_u16();
    let auth_failed = status == 401 || resp.extensions().get::<AuthFailed>().is_some();
    let elapsed = start.elapsed();
    st.metrics
        .requests
        .get_or_create(&RequestLabels {
            directory: dir_label.clone(),
            operation: op.clone(),
            status,
        })
        .inc();
    if auth_failed {
        st.metrics
            .auth_failures
            .get_or_create(&crate::metrics::DirLabels {
                directory: dir_label.clone(),
            })
            .inc();
    }
    if let Some((ns, d, info)) = &known {
        if auth_failed {
            st.events.note_auth_failure(ns, d, &info.uid, status == 429);
        } else {
            st.metrics.request_seen(&dir_label);
            st.events.note(ns, d, &info.uid, status, &op);
        }
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
