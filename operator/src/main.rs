//! `kube-scim-operator`: see `--help` and operator/README.md.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use clap::Parser;
use futures::FutureExt;
use kube::client::ClientBuilder;
use kube::{Api, Client};
use kube_scim_operator::config::Flags;
use kube_scim_operator::directory::{self, Settings};
use kube_scim_operator::group_binding;
use kube_scim_operator::http::{self, Health};
use kube_scim_operator::leader::{self, LeaderElector, LeaseTiming};
use kube_scim_operator::metrics::Metrics;
use kube_scim_operator::watch::{Scope, Watches};
use kube_scim_runtime::verifier;
use kube_scim_runtime::{logging, probes, shutdown};
use tokio::sync::{oneshot, watch};
use tower::util::MapRequestLayer;

#[tokio::main]
async fn main() -> ExitCode {
    let flags = Flags::parse();
    logging::init(&flags.log_filter, flags.log_format, logging::Output::Stderr);
    match run(flags).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "kube-scim-operator failed");
            ExitCode::FAILURE
        }
    }
}

async fn flag_set(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

async fn run(flags: Flags) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !flags.counts_min_interval.is_zero() && flags.counts_min_interval <= flags.counts_max_delay,
        "need 0 < --counts-min-interval <= --counts-max-delay"
    );

    // The verifier keys first: without them no token can be published.
    let key_dir = flags.verifier_key_dir.clone().filter(|d| !d.as_os_str().is_empty()).ok_or_else(|| {
        anyhow::anyhow!(
            "no --verifier-key-dir (KUBE_SCIM_VERIFIER_KEY_DIR): token verifiers are keyed with HMAC keys that only the operator and the SCIM server hold. Point both at the same directory of key files (the Helm chart mounts its verifier-key Secret); for a local run: mkdir keys && openssl rand -base64 32 > keys/k1"
        )
    })?;
    let keys = verifier::load_and_reload(key_dir, flags.verifier_key_reload_interval)?;
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::new(metrics.clone()));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown::signal().await;
        let _ = shutdown_tx.send(true);
    });
    // The probes answer from the start (liveness must not depend on the apiserver).
    let listener = probes::bind(flags.metrics_bind_address).await?;
    let http_task = tokio::spawn(http::serve(
        listener,
        health.clone(),
        flag_set(shutdown_rx.clone()),
    ));

    // Every request to the Kubernetes API is counted (kube_scim_operator_api_requests_total).
    let counted = metrics.clone();
    let client = ClientBuilder::try_from(kube::Config::infer().await?)?
        .with_layer(&MapRequestLayer::new(
            move |request: axum::http::Request<kube::client::Body>| {
                counted.api_request(
                    request.method().as_str(),
                    request.uri().path(),
                    request.uri().query(),
                );
                request
            },
        ))
        .build();
    // Wait for the apiserver (it may be restarting or slow) instead of crash-looping.
    let mut delay = std::time::Duration::from_millis(500);
    loop {
        match client.apiserver_version().await {
            Ok(version) => {
                tracing::info!(kubernetes = %version.git_version, "connected to the Kubernetes API");
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "cannot reach the Kubernetes API")
            }
        }
        if *shutdown_rx.borrow() {
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(10));
    }
    health.ready.store(true, Ordering::Relaxed);

    let identity = flags
        .identity
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(leader::default_identity);
    let settings = Settings {
        defaults: flags.route_defaults(),
        concurrency: flags.concurrency.max(1),
        resync: flags.resync_interval.max(std::time::Duration::from_secs(1)),
        identity: identity.clone(),
        counts_min_interval: flags.counts_min_interval,
        counts_max_delay: flags.counts_max_delay,
        keys,
    };

    let webhooks = Arc::new(kube_scim_operator::webhook::Shared::new(
        client.clone(),
        flags.webhook_policy()?,
        metrics.clone(),
        &identity,
        flags
            .webhook_checkpoint_interval
            .max(std::time::Duration::from_millis(100)),
        flags.webhook_key_refresh_interval,
    ));

    let mut elector = None;
    if flags.leader_elect {
        anyhow::ensure!(
            flags.lease_renew_deadline < flags.lease_duration
                && flags.lease_retry_period < flags.lease_renew_deadline,
            "need --lease-retry-period < --lease-renew-deadline < --lease-duration"
        );
        elector = Some(LeaderElector::new(
            Api::namespaced(client.clone(), &flags.lease_namespace()),
            &flags.lease_name,
            &identity,
            LeaseTiming {
                lease_duration: flags.lease_duration,
                renew_deadline: flags.lease_renew_deadline,
                retry_period: flags.lease_retry_period,
            },
        ));
    }

    // Leading is a term, not the life of the process: a leader that cannot renew its Lease
    // in time (the apiserver stalls) stops reconciling, steps down and campaigns again,
    // while the probes keep answering; only SIGTERM ends the process.
    loop {
        if let Some(candidate) = elector.as_mut() {
            let namespace = flags.lease_namespace();
            tracing::info!(lease = %flags.lease_name, %namespace, %identity, "waiting to acquire the leader Lease");
            let mut stop = Box::pin(flag_set(shutdown_rx.clone()));
            if candidate.acquire(&mut stop).await.is_none() {
                tracing::info!("stopped before becoming leader");
                break;
            }
            tracing::info!(lease = %flags.lease_name, %namespace, %identity, "acquired the leader Lease");
        }
        let lost = lead(
            &client,
            &flags,
            &settings,
            &webhooks,
            &metrics,
            &health,
            &shutdown_rx,
            &mut elector,
        )
        .await;
        if !lost || *shutdown_rx.borrow() {
            break;
        }
        tracing::error!("lost the leader Lease; stepped down, campaigning again");
    }
    let _ = http_task.await;
    Ok(ExitCode::SUCCESS)
}

/// One term as leader (or the whole run without leader election): runs the controllers until
/// SIGTERM or, with an elector, until the Lease is lost; releases the Lease on SIGTERM.
/// Returns whether leadership was lost.
// One borrowed handle per long-lived piece of the process; bundling them would only rename them.
#[allow(clippy::too_many_arguments)]
async fn lead(
    client: &Client,
    flags: &Flags,
    settings: &Settings,
    webhooks: &Arc<kube_scim_operator::webhook::Shared>,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
    shutdown_rx: &watch::Receiver<bool>,
    elector: &mut Option<LeaderElector>,
) -> bool {
    health.leading.store(true, Ordering::Relaxed);
    metrics.leader.set(1);

    // Stop reconciling on SIGTERM or when leadership is lost.
    let (lost_tx, lost_rx) = watch::channel(false);
    // Without an elector nothing sends on `lost_tx`; it must still live for the whole term,
    // or `flag_set(lost)` sees the channel closed and stops the controllers at once
    // (--leader-elect=false stopped everything right after start).
    let _lost_sender = lost_tx.clone();
    let (done_tx, done_rx) = watch::channel(false);
    let renewer = elector.take().map(|mut elector| {
        tokio::spawn(async move {
            tokio::select! {
                _ = elector.keep_renewing() => {
                    let _ = lost_tx.send(true);
                }
                _ = flag_set(done_rx) => {
                    let release = tokio::time::timeout(std::time::Duration::from_secs(5), elector.release());
                    match release.await {
                        Ok(Ok(())) => tracing::info!("released the leader Lease"),
                        Ok(Err(e)) => tracing::warn!(error = %e, "could not release the leader Lease"),
                        Err(_) => tracing::warn!("releasing the leader Lease timed out"),
                    }
                }
            }
            elector
        })
    });
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    {
        let shutdown = shutdown_rx.clone();
        let lost = lost_rx.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = flag_set(shutdown) => {}
                _ = flag_set(lost) => {}
            }
            let _ = stop_tx.send(());
        });
    }
    let stop = stop_rx.map(|_| ()).shared();

    let namespaces = flags.namespaces();
    tracing::info!(namespaces = ?namespaces, "reconciling ScimDirectories (empty: all namespaces)");
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    // Webhook delivery loops run with the controllers, for the leader's term only.
    let deliveries = scopes
        .clone()
        .into_iter()
        .map(|scope| kube_scim_operator::webhook::run(webhooks.clone(), scope, stop.clone()));
    let policy = flags.binding_policy();
    tracing::info!(
        cluster_roles = ?policy.allowed_cluster_roles, roles = ?policy.allowed_roles,
        cluster_wide = policy.allow_cluster_wide, "ScimGroupBindings may grant"
    );
    // One watch per kind and scope, shared by both controllers: ScimUsers, ScimGroups and
    // ScimDirectories are watched once here, not once per controller (the webhook delivery
    // loops keep their own per-directory watches: see docs/ARCHITECTURE.md). The watches live
    // for the term.
    let mut controllers = Vec::new();
    let mut shared = Vec::new();
    for scope in &scopes {
        let mut watches = Watches::new(client, scope.as_deref());
        controllers.push(
            directory::run_scope(
                Scope::new(
                    client.clone(),
                    scope.clone(),
                    watches.subscribe(),
                    stop.clone(),
                ),
                settings.clone(),
                metrics.clone(),
            )
            .boxed(),
        );
        controllers.push(
            group_binding::run_scope(
                Scope::new(
                    client.clone(),
                    scope.clone(),
                    watches.subscribe(),
                    stop.clone(),
                ),
                policy.clone(),
                settings.identity.clone(),
                settings.concurrency,
                settings.resync,
                metrics.clone(),
            )
            .boxed(),
        );
        shared.push(watches.run().boxed());
    }
    // The shared watches never end on their own: they are dropped once every controller and
    // delivery loop has stopped (each stops within its grace period after `stop`).
    let running = futures::future::join(
        futures::future::join_all(controllers),
        futures::future::join_all(deliveries),
    );
    futures::pin_mut!(running);
    futures::future::select(running, futures::future::join_all(shared)).await;
    tracing::info!("controllers stopped");
    metrics.leader.set(0);
    health.leading.store(false, Ordering::Relaxed);

    let lost = *lost_rx.borrow();
    // A leader that lost its Lease does not release it (someone else may hold it by now).
    if !lost {
        let _ = done_tx.send(true);
    }
    if let Some(renewer) = renewer
        && let Ok(e) = renewer.await
    {
        *elector = Some(e);
    }
    lost
}
