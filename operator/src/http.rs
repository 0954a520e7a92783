//! What the operator's `/healthz`, `/readyz` and `/metrics` report (served by
//! [`kube_scim_runtime::probes`] on their own port).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kube_scim_runtime::probes::{self, Probe};

use crate::metrics::Metrics;

/// What the probes report.
pub struct Health {
    /// The process has a working Kubernetes client and runs its main loop.
    pub ready: AtomicBool,
    /// This replica holds the Lease (or leader election is off).
    pub leading: AtomicBool,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
}

impl Health {
    /// Not ready, not leading.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Health {
            ready: AtomicBool::new(false),
            leading: AtomicBool::new(false),
            metrics,
        }
    }
}

impl Probe for Health {
    /// Ready once initialised, leader or standby: a standby must count as ready, or a rolling
    /// update of two replicas would never finish.
    fn ready(&self) -> Result<&'static str, &'static str> {
        if !self.ready.load(Ordering::Relaxed) {
            Err("starting")
        } else if self.leading.load(Ordering::Relaxed) {
            Ok("ok: leader")
        } else {
            Ok("ok: standby")
        }
    }

    fn metrics(&self) -> String {
        self.metrics.encode()
    }
}

/// Serves the probes and metrics on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, probes::router(health))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
