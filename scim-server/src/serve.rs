//! The SCIM API's HTTP server: hyper with the connection limits `axum::serve` does not set. A
//! client that connects and sends nothing, sends half a request head, or keeps an idle
//! keep-alive connection is cut off after `header_read_timeout` (hyper's header timer runs
//! from the moment the connection waits for a request head, idle time included); request
//! bodies have their own deadline in the request middleware. A request head larger than
//! hyper's read buffer (sized from `--max-header-bytes`) is refused by hyper with 431, so a
//! connection never buffers more than that for its head. A connection is counted as
//! unauthenticated (see [`crate::admission`]) until it carries an authenticated request; past
//! the limits of its address or of the server it is closed as soon as it is accepted.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::admission::UnauthenticatedConnections;

/// Limits of a connection.
#[derive(Clone)]
pub struct ConnLimits {
    /// Longest wait for a complete request head, including idle keep-alive time.
    pub header_read_timeout: Duration,
    /// Largest request head (hyper's read buffer is sized from it).
    pub max_header_bytes: usize,
    /// Connections not yet authenticated, per address and in all.
    pub unauthenticated: Arc<UnauthenticatedConnections>,
    /// Connections closed at once for those limits.
    pub refused: Counter,
}

/// hyper's connection buffer: the head must fit in it (hyper answers 431 otherwise), so it
/// bounds what one connection buffers of a head (hyper's default is about 400 KiB). Room for
/// the request line beside the headers, and at least 64 KiB: with 20 KiB, the mixed-load
/// benchmark's latencies grew a hundredfold (the buffer also bounds hyper's reads and writes).
fn read_buffer(max_header_bytes: usize) -> usize {
    max_header_bytes.saturating_add(4096).max(64 * 1024)
}

/// HTTP/1.1 only: what Entra and ingress controllers speak to a backend. (hyper's
/// auto-detection of HTTP/2 waits for a connection's first bytes with no deadline, so a client
/// that connects and says nothing would be kept forever.)
fn builder(limits: &ConnLimits) -> Builder {
    let mut b = Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(read_buffer(limits.max_header_bytes))
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
    let builder = builder(&limits);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer): (_, SocketAddr) = tokio::select! {
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
        let Some(ticket) = limits.unauthenticated.admit(peer.ip()) else {
            limits.refused.inc();
            drop(stream);
            continue;
        };
        let ticket = Arc::new(ticket);
        let _ = stream.set_nodelay(true);
        let svc = router
            .clone()
            .map_request(move |r: hyper::Request<Incoming>| {
                let mut r = r.map(axum::body::Body::new);
                r.extensions_mut().insert(ConnectInfo(peer));
                r.extensions_mut().insert(ticket.clone());
                r
            });
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
