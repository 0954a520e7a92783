//! `/healthz`, `/readyz` and `/metrics`: liveness never depends on anything but the process;
//! readiness and metrics are asked of the binary.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// What the binary reports on `/readyz` (the status and a short line) and `/metrics`.
pub trait Probe: Send + Sync + 'static {
    /// `Ok(line)`: ready (200); `Err(line)`: not ready (503).
    fn ready(&self) -> Result<&'static str, &'static str>;
    /// OpenMetrics text.
    fn metrics(&self) -> String;
}

async fn readyz<P: Probe>(State(p): State<Arc<P>>) -> Response {
    match p.ready() {
        Ok(line) => (StatusCode::OK, format!("{line}\n")).into_response(),
        Err(line) => (StatusCode::SERVICE_UNAVAILABLE, format!("{line}\n")).into_response(),
    }
}

async fn metrics<P: Probe>(State(p): State<Arc<P>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        p.metrics(),
    )
        .into_response()
}

/// `/healthz` and `/readyz` only (e.g. beside an API on its own port).
pub fn health<P: Probe>(probe: Arc<P>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::<P>))
        .with_state(probe)
}

/// `/healthz`, `/readyz` and `/metrics`.
pub fn router<P: Probe>(probe: Arc<P>) -> Router {
    health(probe.clone()).merge(
        Router::new()
            .route("/metrics", get(metrics::<P>))
            .with_state(probe),
    )
}

/// Binds a probe address. Done before anything else starts, so a port clash stops the
/// process at once instead of leaving it running without probes.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let listener = crate::listen::bind(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    tracing::info!(address = %listener.local_addr()?, "serving /healthz, /readyz and /metrics");
    Ok(listener)
}
