//! kube-scim SCIM server: SCIM 2.0 over HTTP (axum) for every ScimDirectory, storing users and
//! groups as ScimUser / ScimGroup objects. See docs/scim-server.md and docs/ARCHITECTURE.md.
//!
//! Layers, top-down: `routes` -> `handlers` (HTTP adapters, with `request` / `response`) ->
//! `directory` (the SCIM service) -> `storage` (the seam; `kube_store` on the apiserver), with
//! `cache` (fed by `watch`) for reads and `render` for how resources are served.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use kube_scim_runtime::verifier;
use kube_scim_runtime::{logging, probes, shutdown};

mod admission;
mod auth;
mod cache;
mod cleanup_queue;
mod config;
mod convert;
mod dialect;
mod directory;
mod error;
mod events;
mod guard;
mod handlers;
mod kube_store;
#[cfg(test)]
mod memory_store;
mod metrics;
mod middleware;
mod proxy;
mod render;
mod request;
mod response;
mod retry;
mod routes;
#[cfg(test)]
mod routes_tests;
mod serve;
mod storage;
mod stored_object;
mod watch;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use auth::{entra, federation};
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
    /// What a request may hold before it runs (slots, body bytes, failure limits).
    pub admission: admission::Admission,
    /// Events about what each directory's identity provider runs into.
    pub events: Arc<events::DirectoryEvents>,
    /// SIGTERM arrived: requests are still served (`--shutdown-drain`), but readiness fails
    /// and every response closes its connection.
    pub draining: std::sync::atomic::AtomicBool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    logging::init(
        &settings.log_filter,
        settings.log_format,
        logging::Output::Stdout,
    );
    // The verifier keys first: without them no token can be checked.
    let key_dir = settings
        .verifier_key_dir
        .clone()
        .filter(|d| !d.as_os_str().is_empty())
        .context("no --verifier-key-dir (KUBE_SCIM_VERIFIER_KEY_DIR): bearer tokens are checked against verifiers keyed with HMAC keys that only the operator and this server hold. Point both at the same directory of key files (the Helm chart mounts its verifier-key Secret); for a local run: mkdir keys && openssl rand -base64 32 > keys/k1")?;
    let keys = verifier::load_and_reload(key_dir, settings.verifier_key_reload_interval)?;
    let config = kube::Config::infer()
        .await
        .context("no Kubernetes client configuration (in-cluster or KUBECONFIG)")?;
    // Watches and Events keep kube-rs's retries; the store retries its own calls, per verb and
    // within each request's deadline (retry.rs).
    let store_client = kube_store::client(config.clone())?;
    let client = kube::Client::try_from(config)?;
    let cache = Arc::new(cache::Cache::default());
    let metrics = Arc::new(metrics::Metrics::new());
    let namespaces = settings.watched_namespaces();
    watch::spawn(client.clone(), cache.clone(), &namespaces);
    let events = Arc::new(events::DirectoryEvents::new(
        Some(client.clone()),
        std::env::var("POD_NAME")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "kube-scim-server".into()),
    ));
    tokio::spawn(events.clone().publish_every(settings.event_interval));
    let limits = Limits {
        max_results: settings.max_results,
        member_write_concurrency: settings.member_write_concurrency.max(1),
        conflict_retries: settings.conflict_retries,
        inline_member_writes: settings.inline_member_writes,
    };
    // One key cache per tenant, for Entra-issued tokens and federation assertions alike.
    let entra = Arc::new(entra::EntraVerifier::new(entra::EntraConfig {
        metadata_url: settings.entra_metadata_url.clone(),
        issuer: settings.entra_issuer.clone(),
        min_refresh: settings.entra_key_refresh_interval,
    })?);
    let store = kube_store::KubeStore::new(
        store_client,
        metrics.clone(),
        settings.max_apiserver_requests,
    );
    let wif = Arc::new(
        federation::FederationVerifier::new(
            federation::FederationConfig {
                issuer: settings.federation_issuer.clone(),
            },
            entra.clone(),
        )
        // Single use of an assertion across replicas: claimed in the apiserver.
        .with_claims(Arc::new(store.clone())),
    );
    // The last claims of a namespace expire with no exchange there to sweep them.
    tokio::spawn(wif.clone().run_sweeps(std::time::Duration::from_secs(60)));
    let state = Arc::new(AppState {
        directory: DirectoryService::new(cache, store.clone(), limits, keys)
            .with_label_writes(metrics.cleanup_label_writes.clone())
            .with_entra(entra.clone())
            .with_federation(wif),
        metrics,
        admission: admission::Admission::new(&settings),
        events,
        draining: std::sync::atomic::AtomicBool::new(false),
        settings: settings.clone(),
    });

    // Every replica runs the worker: its work is idempotent and resumes from the apiserver's
    // state (see directory/cleanup/).
    let worker = state.clone();
    let cleanup = directory::CleanupSettings {
        batch: settings.member_cleanup_batch.max(1),
        sweep_interval: settings
            .membership_sweep_interval
            .max(std::time::Duration::from_secs(1)),
        retry_after: std::time::Duration::from_secs(5),
    };
    tokio::spawn(async move { worker.directory.run_cleanup(cleanup).await });

    let api = kube_scim_runtime::listen::bind(settings.listen)
        .with_context(|| format!("bind {}", settings.listen))?;
    let ops = probes::bind(settings.metrics_listen).await?;
    tracing::info!(listen = %settings.listen, metrics = %settings.metrics_listen, namespaces = ?namespaces, "kube-scim-server starting");

    let (tx, rx) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let limits = serve::ConnLimits {
        header_read_timeout: settings
            .header_read_timeout
            .max(std::time::Duration::from_secs(1)),
        max_header_bytes: settings.max_header_bytes,
        unauthenticated: state.admission.connections.clone(),
        refused: state.metrics.connections_refused.clone(),
    };
    let api_srv = serve::serve(api, routes::scim(state.clone()), limits, wait(rx.clone()));
    let ops_srv =
        axum::serve(ops, routes::ops(state.clone())).with_graceful_shutdown(wait(rx.clone()));
    let api_task = tokio::spawn(api_srv);
    let ops_task = tokio::spawn(async move { ops_srv.await });

    shutdown::signal().await;
    // The pod's endpoints are removed as SIGTERM is sent, but proxies learn of it later and a
    // keep-alive client keeps its connection to this pod: keep serving through the drain while
    // readiness fails, and close each connection after its response, so the client's next
    // request opens a connection that reaches a pod that stays. Stopping at once would close
    // idle keep-alive connections under a request already on its way.
    state
        .draining
        .store(true, std::sync::atomic::Ordering::Release);
    if !settings.shutdown_drain.is_zero() {
        tracing::info!(drain = ?settings.shutdown_drain, "draining: not ready, closing keep-alive connections, still serving");
        tokio::time::sleep(settings.shutdown_drain).await;
    }
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = tx.send(true);
    let grace = settings.shutdown_grace;
    let _ = tokio::time::timeout(grace, async {
        let _ = api_task.await;
        let _ = ops_task.await;
    })
    .await;
    tracing::info!("stopped");
    Ok(())
}
