//! kube-scim SCIM server: SCIM 2.0 over HTTP (axum) for every ScimDirectory, storing users and
//! groups as ScimUser / ScimGroup objects. See docs/scim-server.md and docs/ARCHITECTURE.md.
//!
//! Layers, top-down: `routes` -> `handlers` (HTTP adapters, with `request` / `response`) ->
//! `directory` (the SCIM service) -> `storage` (the seam; `kube_store` on the apiserver), with
//! `cache` (fed by `watch`) for reads and `render` for how resources are served.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::sync::Semaphore;

mod auth;
mod cache;
mod config;
mod convert;
mod directory;
mod error;
mod handlers;
mod kube_store;
#[cfg(test)]
mod memory_store;
mod metrics;
mod middleware;
mod render;
mod request;
mod response;
mod routes;
mod storage;
mod watch;

use config::Settings;
use directory::{DirectoryService, Limits};

/// Shared state of every handler.
pub struct AppState<S> {
    /// The SCIM directory service.
    pub directory: DirectoryService<S>,
    /// Metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// Settings.
    pub settings: Settings,
    /// Concurrency queue.
    pub semaphore: Arc<Semaphore>,
}

fn init_logging(s: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&s.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter);
    if s.log_format == "text" {
        b.init();
    } else {
        b.json().flatten_event(true).with_current_span(true).init();
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    init_logging(&settings);
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client configuration (in-cluster or KUBECONFIG)")?;
    let cache = Arc::new(cache::Cache::default());
    let metrics = Arc::new(metrics::Metrics::new());
    let namespaces = settings.watched_namespaces();
    watch::spawn(client.clone(), cache.clone(), &namespaces);
    let limits = Limits {
        max_results: settings.max_results,
        member_write_concurrency: settings.member_write_concurrency.max(1),
        conflict_retries: settings.conflict_retries,
    };
    let state = Arc::new(AppState {
        directory: DirectoryService::new(
            cache,
            kube_store::KubeStore::new(client, metrics.clone()),
            limits,
        ),
        metrics,
        semaphore: Arc::new(Semaphore::new(settings.max_concurrent_requests.max(1))),
        settings: settings.clone(),
    });

    let api = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("bind {}", settings.listen))?;
    let ops = tokio::net::TcpListener::bind(settings.metrics_listen)
        .await
        .with_context(|| format!("bind {}", settings.metrics_listen))?;
    tracing::info!(listen = %settings.listen, metrics = %settings.metrics_listen, namespaces = ?namespaces, "kube-scim-server starting");

    let (tx, rx) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let api_srv =
        axum::serve(api, routes::scim(state.clone())).with_graceful_shutdown(wait(rx.clone()));
    let ops_srv =
        axum::serve(ops, routes::ops(state.clone())).with_graceful_shutdown(wait(rx.clone()));
    let api_task = tokio::spawn(async move { api_srv.await });
    let ops_task = tokio::spawn(async move { ops_srv.await });

    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = tx.send(true);
    let grace = Duration::from_secs(settings.shutdown_grace_secs);
    let _ = tokio::time::timeout(grace, async {
        let _ = api_task.await;
        let _ = ops_task.await;
    })
    .await;
    tracing::info!("stopped");
    Ok(())
}
