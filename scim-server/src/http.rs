//! HTTP plumbing: SCIM error responses, authentication, body limits, the middleware that
//! adds request ids, logs, metrics, a timeout and a concurrency queue, and the routers.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use scim_protocol::ScimError;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::Instrument;

use crate::AppState;
use crate::cache::DirInfo;
use crate::handlers;

/// SCIM media type.
pub const SCIM_JSON: &str = "application/scim+json";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// An error answered as a SCIM Error message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
    headers: Vec<(header::HeaderName, String)>,
}

impl ApiError {
    /// A SCIM error with any status.
    pub fn new(status: StatusCode, scim_type: Option<&str>, detail: impl Into<String>) -> Self {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": status.as_u16().to_string(),
            "detail": detail.into(),
        });
        if let Some(t) = scim_type {
            body["scimType"] = t.into();
        }
        ApiError {
            status,
            body,
            headers: Vec::new(),
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: header::HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// 503 with Retry-After.
    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u32) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, None, detail)
            .with_header(header::RETRY_AFTER, retry_after_secs.to_string())
    }
}

impl From<ScimError> for ApiError {
    fn from(e: ScimError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError {
            status,
            body: e.to_json(),
            headers: Vec::new(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = scim_response(self.status, &self.body);
        for (k, v) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().insert(k, v);
            }
        }
        r
    }
}

/// A JSON body with `Content-Type: application/scim+json`.
pub fn scim_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = (status, bytes).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    r
}

/// Checks that the directory exists, is Ready, and that the bearer token opens it.
pub fn authorize(
    st: &AppState,
    ns: &str,
    dir: &str,
    headers: &HeaderMap,
) -> Result<DirInfo, ApiError> {
    let Some(info) = st.cache.directory(ns, dir) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            None,
            format!("there is no SCIM directory {ns}/{dir}"),
        ));
    };
    if !info.ready {
        return Err(ApiError::unavailable(
            format!("the SCIM directory {ns}/{dir} is not ready yet"),
            10,
        ));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim())
                .filter(|t| !t.is_empty())
        });
    let unauthorized = |why: &str| {
        ApiError::new(StatusCode::UNAUTHORIZED, None, why.to_string()).with_header(
            header::WWW_AUTHENTICATE,
            "Bearer realm=\"kube-scim\", error=\"invalid_token\"",
        )
    };
    let Some(token) = token else {
        return Err(unauthorized("a bearer token is required"));
    };
    if token_matches(&info, token, jiff::Timestamp::now()) {
        Ok(info)
    } else {
        Err(unauthorized(
            "the bearer token is not valid for this directory",
        ))
    }
}

/// Whether `token` hashes to one of the directory's unexpired verifiers (constant time per
/// verifier; every verifier is compared).
pub fn token_matches(info: &DirInfo, token: &str, now: jiff::Timestamp) -> bool {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let mut ok = subtle::Choice::from(0u8);
    for (v, exp) in &info.verifiers {
        let live = exp.is_none_or(|e| e > now);
        ok |= v.ct_eq(&digest) & subtle::Choice::from(live as u8);
    }
    ok.into()
}

/// Maximum nesting of `[`/`{` in a JSON text (strings skipped).
pub fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_str {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Reads and parses a JSON request body within the configured limits.
pub async fn read_json(st: &AppState, headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let mime = ct.split(';').next().unwrap_or("").trim();
        if mime != SCIM_JSON && mime != "application/json" {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Some("invalidSyntax"),
                format!(
                    "Content-Type {mime:?} is not accepted; send application/scim+json or application/json"
                ),
            ));
        }
    }
    let limit = st.settings.max_body_bytes;
    let too_large = || {
        ApiError::from(ScimError::PayloadTooLarge(format!(
            "the request body is larger than {limit} bytes"
        )))
    };
    // A body up to this size is read to its end (and dropped) before a 413 is answered, so the
    // client finishes sending and reads the error instead of hitting a broken pipe.
    let drain_cap = limit.saturating_mul(4).max(4 * 1024 * 1024);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > drain_cap as u64) {
        return Err(too_large());
    }
    let mut body = body;
    let mut bytes: Vec<u8> = Vec::new();
    let mut seen: usize = 0;
    loop {
        let frame = match http_body_util::BodyExt::frame(&mut body).await {
            None => break,
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                return Err(ApiError::from(ScimError::InvalidSyntax(format!(
                    "the request body could not be read: {e}"
                ))));
            }
        };
        if let Ok(data) = frame.into_data() {
            seen = seen.saturating_add(data.len());
            if seen > drain_cap {
                return Err(too_large());
            }
            if seen <= limit {
                bytes.extend_from_slice(&data);
            }
        }
    }
    if seen > limit || declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    if json_depth(&bytes) > st.settings.max_json_depth {
        return Err(ApiError::from(ScimError::InvalidSyntax(format!(
            "the JSON body is nested deeper than {} levels",
            st.settings.max_json_depth
        ))));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::from(ScimError::InvalidSyntax(format!(
            "the body is not valid JSON: {e}"
        )))
    })
}

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
    let op = match op.as_str() {
        "/Users"
        | "/Groups"
        | "/.search"
        | "/ServiceProviderConfig"
        | "/ResourceTypes"
        | "/Schemas"
        | "/Users/{id}"
        | "/Groups/{id}"
        | "/Users/.search"
        | "/Groups/.search"
        | "/ResourceTypes/{id}"
        | "/Schemas/{id}" => op,
        _ => "/other".into(),
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
async fn guard(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if matches!(req.uri().path(), "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    let start = Instant::now();
    let rid = request_id(req.headers());
    let method = req.method().as_str().to_string();
    let (dir, op) = classify(&method, req.uri().path());
    let dir_label = match &dir {
        Some((ns, d)) if st.cache.directory(ns, d).is_some() => format!("{ns}/{d}"),
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
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            None,
            format!(
                "request headers exceed {} bytes",
                st.settings.max_header_bytes
            ),
        )
        .into_response()
    } else if !st.cache.is_synced() {
        ApiError::unavailable("the server is starting (caches not synced yet)", 5).into_response()
    } else {
        let sem = st.semaphore.clone();
        let fut = async move {
            let _permit = sem.acquire_owned().await;
            next.run(req).await
        }
        .instrument(span.clone());
        match tokio::time::timeout(st.settings.request_timeout(), fut).await {
            Ok(r) => r,
            Err(_) => ApiError::unavailable("the request timed out; retry it", 5).into_response(),
        }
    };
    st.metrics.in_flight.dec();
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    st.metrics
        .requests
        .get_or_create(&crate::metrics::RequestLabels {
            directory: dir_label.clone(),
            operation: op.clone(),
            status,
        })
        .inc();
    st.metrics
        .request_latency
        .get_or_create(&crate::metrics::OpLabels {
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

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, None, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        "method not allowed on this endpoint",
    )
}

/// The SCIM API router.
pub fn scim_router(st: Arc<AppState>) -> Router {
    use handlers as h;
    let base = "/scim/v2/{ns}/{dir}";
    Router::new()
        .route(
            &format!("{base}/Users"),
            get(h::list_users).post(h::create_user),
        )
        .route(&format!("{base}/Users/.search"), post(h::search_users))
        .route(
            &format!("{base}/Users/{{id}}"),
            get(h::get_user)
                .put(h::put_user)
                .patch(h::patch_user)
                .delete(h::delete_user),
        )
        .route(
            &format!("{base}/Groups"),
            get(h::list_groups).post(h::create_group),
        )
        .route(&format!("{base}/Groups/.search"), post(h::search_groups))
        .route(
            &format!("{base}/Groups/{{id}}"),
            get(h::get_group)
                .put(h::put_group)
                .patch(h::patch_group)
                .delete(h::delete_group),
        )
        .route(&format!("{base}/.search"), post(h::search_all))
        .route(
            &format!("{base}/ServiceProviderConfig"),
            get(h::service_provider_config),
        )
        .route(&format!("{base}/ResourceTypes"), get(h::resource_types))
        .route(
            &format!("{base}/ResourceTypes/{{name}}"),
            get(h::resource_type),
        )
        .route(&format!("{base}/Schemas"), get(h::schemas))
        .route(&format!("{base}/Schemas/{{name}}"), get(h::schema))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(st.clone(), guard))
        .with_state(st)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    if st.cache.is_synced() {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced").into_response()
    }
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let mut r = st.metrics.render(&st.cache).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

/// The metrics / health router.
pub fn ops_router(st: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_nesting_outside_strings() {
        assert_eq!(json_depth(br#"{"a":[{"b":"[[[["}]}"#), 3);
        assert_eq!(json_depth(b"1"), 0);
    }

    #[test]
    fn tokens_match_only_their_unexpired_verifier() {
        let d: [u8; 32] = Sha256::digest(b"secret").into();
        let now = jiff::Timestamp::now();
        let info = DirInfo {
            uid: String::new(),
            ready: true,
            verifiers: vec![(d, None)],
        };
        assert!(token_matches(&info, "secret", now));
        assert!(!token_matches(&info, "other", now));
        let expired = DirInfo {
            verifiers: vec![(d, Some(now - jiff::SignedDuration::from_secs(1)))],
            ..info
        };
        assert!(!token_matches(&expired, "secret", now));
    }

    #[test]
    fn classify_paths() {
        assert_eq!(
            classify("GET", "/scim/v2/ns/d/Users/abc").1,
            "GET /Users/{id}"
        );
        assert_eq!(classify("GET", "/scim/v2/ns/d/Users").1, "GET /Users");
    }
}
