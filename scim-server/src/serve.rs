//! The SCIM API's HTTP server: hyper with the connection limits `axum::serve` does not set. A
//! client that connects and sends nothing, sends half a request head, or keeps an idle
//! keep-alive connection is cut off after `header_read_timeout` (hyper's header timer runs
//! from the moment the connection waits for a request head, idle time included); request
//! bodies have their own deadline in the request middleware.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Timeouts of a connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Longest wait for a complete request head, including idle keep-alive time.
    pub header_read_timeout: Duration,
}

/// HTTP/1.1 only: what Entra and ingress controllers speak to a backend. (hyper's
/// auto-detection of HTTP/2 waits for a connection's first bytes with no deadline, so a client
/// that connects and says nothing would be kept forever.)
fn builder(limits: ConnLimits) -> Builder {
    let mut b = Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    b
}

/// Serves `router` on `listener` until `shutdown` completes, then lets in-flight requests
/// finish (the caller bounds how long).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) {
    let builder = builder(limits);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = router
            .clone()
            .map_request(|r: hyper::Request<Incoming>| r.map(axum::body::Body::new));
        let svc = TowerToHyperService::new(svc.map_err(|e: Infallible| match e {}));
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
