//! The ScimDirectory controller, in the shape every controller of the operator has (see
//! `group_binding/`): this file holds the wiring (watches, stores, the kube-runtime
//! `Controller`), the error policy and the reconcile entry, which decides the lifecycle
//! ([`plan::lifecycle`]) and runs the `finalizer` helper around one pass of
//!
//! [`read`] (every input) -> [`plan`] (pure, unit-tested) -> [`apply`] (the writes) ->
//! [`status`] (conditions, the one status write).
//!
//! The steps, each a file or folder with its own read, pure plan and writes, called by those
//! four in turn, never calling back:
//!
//! - [`deletion`]: the deletion policy (finalizer only where needed, releasing for `Retain`);
//! - [`token`]: the bearer token (generated, rotated, bring-your-own);
//! - [`route`]: Ingress (and, across namespaces, an ExternalName Service) or Gateway API
//!   HTTPRoute (and, across namespaces, a ReferenceGrant);
//! - [`safety`]: conditions `Suspended` and `DeletionsHeld`, releasing or dropping held
//!   operations;
//! - [`entra`]: method `EntraToken` needs the enterprise application's id, one directory per
//!   application;
//! - [`counts`]: users and groups in status, kept fresh by a throttled refresher
//!   ([`throttle`]) outside the reconcile.
//!
//! What triggers what: a change of a ScimDirectory (except a write of its counts alone), of an
//! Ingress or Service it owns, or of a Secret it uses is reconciled at once through the
//! `Controller` (no debounce, so a busy directory is never starved). A change of a ScimUser or
//! ScimGroup does not reconcile anything: it marks its directory's counts pending, and
//! [`counts::keep_fresh`] refreshes them at most once per `--counts-min-interval` and at the
//! latest `--counts-max-delay` after the first pending change.

pub mod apply;
mod context;
pub mod counts;
pub mod deletion;
pub mod entra;
pub mod plan;
pub mod read;
pub mod route;
pub mod safety;
pub mod status;
pub mod throttle;
pub mod token;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use kube_scim_crds::{ScimDirectory, labels};

use crate::events::publish;
use crate::metrics::Metrics;
use crate::reconcile::predicate;
use crate::watch::{Scope, Subscription, after, run_controller, scoped};
use kube_scim_runtime::duration;

pub use crate::reconcile::Error;
pub use context::{Context, MANAGER, Settings};

fn directory_of(meta: &ObjectMeta) -> Option<ObjectRef<ScimDirectory>> {
    let name = meta.labels.as_ref()?.get(labels::DIRECTORY)?;
    Some(ObjectRef::new(name).within(meta.namespace.as_deref()?))
}

/// The directories a Secret change concerns: the one its label or ownerReference names, and
/// every directory whose `spec.token.secretRef` names it.
fn directories_of_secret(
    secret: &PartialObjectMeta<Secret>,
    directories: &reflector::Store<ScimDirectory>,
) -> Vec<ObjectRef<ScimDirectory>> {
    let mut refs: Vec<ObjectRef<ScimDirectory>> =
        directory_of(&secret.metadata).into_iter().collect();
    let (Some(ns), Some(name)) = (
        secret.metadata.namespace.as_deref(),
        secret.metadata.name.as_deref(),
    ) else {
        return refs;
    };
    // Generated Secrets whose label was removed still name their directory as owner.
    for owner in secret.metadata.owner_references.iter().flatten() {
        if owner.kind == ScimDirectory::kind(&())
            && owner.api_version == ScimDirectory::api_version(&())
        {
            refs.push(ObjectRef::new(&owner.name).within(ns));
        }
    }
    for dir in directories.state() {
        let referenced = dir
            .spec
            .token
            .secret_ref
            .as_ref()
            .is_some_and(|r| r.name == name);
        if referenced && dir.metadata.namespace.as_deref() == Some(ns) {
            refs.push(ObjectRef::from_obj(dir.as_ref()));
        }
    }
    refs
}

/// What of a directory calls for a reconcile: everything but the counts in its status
/// (`users`, `activeUsers`, `inactiveUsers`, `groups`, `lastProvisioningTime`), which the
/// counts refresher writes and which need no token or route work. A predicate hash for
/// [`WatchStreamExt::predicate_filter`].
pub fn reconcile_relevant(dir: &ScimDirectory) -> Option<u64> {
    let mut status = dir.status.clone().unwrap_or_default();
    counts::clear_counts(&mut status);
    let meta = &dir.metadata;
    predicate::hash(&(
        predicate::lifecycle(meta),
        &meta.labels,
        &meta.annotations,
        &dir.spec,
        &status,
    ))
}

/// Runs the controller and the counts refresher for one scope (one namespace, or all) until
/// `stop` resolves and every running reconcile has finished.
pub async fn run_scope(scope: Scope, settings: Settings, metrics: Arc<Metrics>) {
    let (client, ns) = (&scope.client, scope.namespace.as_deref());
    let watched = scope.watched;
    let (users, groups, directories) = (watched.users, watched.groups, watched.directories);
    let managed = format!("{}={}", labels::MANAGED_BY, labels::MANAGED_BY_OPERATOR);
    // Secrets: metadata only (never their data) of all Secrets, so that both generated Secrets
    // (labelled) and bring-your-own Secrets (named in spec.token.secretRef) trigger their
    // directory when they change or disappear.
    let secret_changes = watcher(
        scoped::<PartialObjectMeta<Secret>>(client, ns),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .touched_objects();
    // Directories: the shared store; a change reaches the Controller unless it only wrote
    // counts. A deleted directory (gone from the store) is no trigger, as with
    // `applied_objects()`: it needs no reconcile (one with a finalizer was released by the
    // reconcile that saw its deletionTimestamp), and the Controller would only log it missing.
    let Subscription {
        cache: directory_cache,
        changes: directory_changes,
    } = directories;
    let directories = directory_cache.store.clone();
    let present = directories.clone();
    let directory_changes = directory_changes
        .filter(move |d| {
            futures::future::ready(present.get(&ObjectRef::from_obj(d.as_ref())).is_some())
        })
        .map(|d| Ok(ScimDirectory::clone(&d)))
        .predicate_filter(reconcile_relevant, Default::default());
    // The Controller's runner awaits the store's own readiness future, which wakes only its
    // last poller, and the shared `Readiness` polls it too (see
    // [`Readiness`](crate::watch::Readiness)): the triggers wait for that `Readiness`, which
    // wakes this task once the store has listed, and the runner starts then.
    let ready = directory_cache.ready.clone();
    let directory_changes = after(async move { ready.wait().await }, directory_changes);

    let mut controller = Controller::for_stream(directory_changes, directories.clone());
    // HTTPRoutes are watched only where the Gateway API is installed; without the watch, a
    // pending route is still looked at again every few seconds.
    if let Some(resource) = route::httproute_resource(client).await {
        let api: Api<kube::api::DynamicObject> = match ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        controller = controller.owns_with(
            api,
            resource,
            watcher::Config::default().labels(&managed).any_semantic(),
        );
    }
    let concurrency = settings.concurrency;
    // A change of the verifier keys re-publishes every directory's verifiers.
    let key_changes = futures::stream::unfold(settings.keys.changes(), |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    });
    let ctx = Arc::new(Context::new(
        client.clone(),
        settings,
        metrics,
        users.cache,
        groups.cache,
        directories.clone(),
    ));
    let secret_directories = directories.clone();
    // No debounce: kube's debounce restarts on every new trigger, so a steady stream of
    // triggers would postpone a directory forever. A trigger for a directory already queued
    // or running is merged into that run (or the one right after it).
    let controller = controller
        .owns(
            scoped::<Ingress>(client, ns),
            watcher::Config::default().labels(&managed).any_semantic(),
        )
        .owns(
            scoped::<Service>(client, ns),
            watcher::Config::default().labels(&managed).any_semantic(),
        )
        .watches_stream(secret_changes, move |secret: PartialObjectMeta<Secret>| {
            directories_of_secret(&secret, &secret_directories)
        })
        .reconcile_all_on(key_changes)
        .with_config(ControllerConfig::default().concurrency(concurrency));

    // Users and groups: their changes only mark counts pending.
    // (Watch errors are logged where the shared watch runs.)
    let touched = futures::stream::select(
        users.changes.map(|u| directory_of(&u.metadata)),
        groups.changes.map(|g| directory_of(&g.metadata)),
    )
    .filter_map(futures::future::ready);
    // The refresher never ends on its own: it stops with the controller.
    let counting = counts::keep_fresh(ctx.clone(), directory_cache, touched);
    run_controller(
        "directory",
        controller,
        scope.stop,
        reconcile,
        error_policy,
        ctx,
        counting,
    )
    .await;
}

/// Delay before retrying a failed reconcile: exponential from 1 s, capped at 5 min, with
/// ±50 % jitter (`random` in `[0, 1)`) so failing directories do not retry in lock-step.
pub fn backoff_delay(attempt: u32, random: f64) -> Duration {
    let base = 2f64.powi(attempt.clamp(1, 10) as i32 - 1).min(300.0);
    Duration::from_secs_f64(base * (0.5 + random.clamp(0.0, 1.0)))
}

fn random_fraction() -> f64 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

fn error_policy(dir: Arc<ScimDirectory>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(&error.metric_label());
    let attempt = {
        let mut failures = ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures
            .entry(ObjectRef::from_obj(dir.as_ref()))
            .or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff_delay(attempt, random_fraction());
    tracing::warn!(
        directory = %dir.name_any(), namespace = dir.namespace().unwrap_or_default(),
        error = %error, attempt, retry_in = ?delay, "reconcile failed"
    );
    if !matches!(error, Error::Conflict(_)) {
        let note = if error.is_forbidden() {
            format!(
                "{error}. Grant the operator's ServiceAccount the RBAC rules listed in operator/README.md (the Helm chart does)."
            )
        } else {
            format!(
                "{error}. Retrying in {}.",
                duration::format(Duration::from_secs(delay.as_secs().max(1)))
            )
        };
        let recorder = ctx.recorder.clone();
        let reference = dir.object_ref(&());
        tokio::spawn(async move {
            publish(
                &recorder,
                &reference,
                EventType::Warning,
                "ReconcileFailed",
                "Reconcile",
                note,
            )
            .await;
        });
    }
    Action::requeue(delay)
}

/// Reconciles one directory.
pub async fn reconcile(dir: Arc<ScimDirectory>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciliations.inc();
    let started = Instant::now();
    let result = run(dir.clone(), &ctx).await;
    ctx.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ObjectRef::from_obj(dir.as_ref()));
    }
    result
}

/// The lifecycle plan, then the finalizer helper around the reconcile of a live directory and
/// the cleanup of a deleted one (the shape of controller-rs: the finalizer in the top-level
/// reconcile, so no step calls back here).
async fn run(dir: Arc<ScimDirectory>, ctx: &Context) -> Result<Action, Error> {
    let (lifecycle, needs_grant) = plan::lifecycle(&dir, &ctx.settings.defaults);
    match lifecycle {
        deletion::Plan::WithFinalizer => {
            let ns = dir.namespace().ok_or(Error::Unnamed)?;
            let api: Api<ScimDirectory> = ctx.api(&ns);
            finalizer(&api, deletion::FINALIZER, dir, |event| async move {
                match event {
                    FinalizerEvent::Apply(dir) => converge(&dir, ctx, needs_grant).await,
                    FinalizerEvent::Cleanup(dir) => deletion::cleanup(dir, ctx).await,
                }
            })
            .await
            .map_err(|e| Error::Finalizer(Box::new(e)))
        }
        deletion::Plan::AwaitGone => Ok(Action::await_change()),
        deletion::Plan::Apply => converge(&dir, ctx, needs_grant).await,
    }
}

/// Brings a live directory to its desired state: read every input, decide the plan (pure),
/// carry it out, write the status once.
async fn converge(dir: &ScimDirectory, ctx: &Context, needs_grant: bool) -> Result<Action, Error> {
    let now = jiff::Timestamp::now();
    let observed = read::read(dir, ctx).await?;
    let plan = plan::plan(dir, &observed, &ctx.settings.defaults, needs_grant, now);
    let outcome = apply::apply(dir, ctx, observed, plan).await?;
    status::write(dir, ctx, &outcome, now).await
}

#[cfg(test)]
mod failure_tests;
#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        assert_eq!(backoff_delay(1, 0.5), Duration::from_secs(1));
        assert_eq!(backoff_delay(2, 0.5), Duration::from_secs(2));
        assert_eq!(backoff_delay(4, 0.5), Duration::from_secs(8));
        assert_eq!(backoff_delay(100, 0.5), Duration::from_secs(300));
        assert_eq!(backoff_delay(3, 0.0), Duration::from_secs(2));
        assert_eq!(backoff_delay(3, 1.0), Duration::from_secs(6));
        assert!(backoff_delay(0, 0.5) >= Duration::from_millis(500));
    }
}
