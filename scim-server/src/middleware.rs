//! What every SCIM request goes through: a request id, the header limit, readiness, the
//! concurrency queue, a timeout, metrics and one log line.

use std::sync::Arc;
use std::time::Instant;

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
];

/// `(namespace/directory, operation)` from a request path, for metrics and logs.
fn classify(method: &str, path: &str) -> (Option<(String, String)>, String) {
    let Some(rest) = path.strip_prefix("/scim/v2/") else {
        return (None, format!("{method} other"));
    };
    let mut parts = rest.splitn(3, '/');
    let ns = parts.next().unwrap_or("").to_string();
    let dir = parts.next().unwrap_or("").to_string();
    let tail = parts.next().unwrap_or("");
    let segs: Vec<&str> = tail.split('/').collect();
    let op = match segs.as_slice() {
        [r] => format!("/{r}"),
        [r, ".search"] => format!("/{r}/.search"),
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

/// Request id, header limit, readiness, queue, timeout, metrics and a log line per request.
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
    let dir_label = match &dir {
        Some((ns, d)) if cache.directory(ns, d).is_some() => format!("{ns}/{d}"),
        _ => "unknown".to_string(),
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
        let sem = st.semaphore.clone();
        let fut = async move {
            let _permit = sem.acquire_owned().await;
            next.run(req).await
        }
        .instrument(span.clone());
        match tokio::time::timeout(st.settings.request_timeout(), fut).await {
            Ok(r) => r,
            Err(_) => Error::unavailable("the request timed out; retry it", 5).into_response(),
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
        assert_eq!(classify("GET", "/scim/v2/ns/d/Nope/x/y").1, "GET /other");
    }
}
