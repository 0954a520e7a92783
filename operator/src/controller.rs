//! The ScimDirectory controller: token Secret, route, status, deletion policy.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Future, StreamExt};
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use kube_scim_crds::{
    CONDITION_READY, CONDITION_ROUTE_READY, CONDITION_TOKEN_READY, DeletionPolicy, ScimDirectory,
    ScimDirectoryStatus, ScimGroup, ScimUser, TokenVerifier, labels,
};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::metrics::Metrics;
use crate::route::{self, RouteDefaults};
use crate::status::{self, Check};
use crate::{duration, token};

/// Field manager of every write (server-side apply and plain writes alike).
pub const MANAGER: &str = "kube-scim-operator";

/// Finalizer of directories with `deletionPolicy: Retain`.
pub const FINALIZER: &str = "kubescim.io/retain-users-and-groups";

/// Annotation on a generated Secret: the `spec.token.rotationRequest` its token answers.
pub const ANNOTATION_ROTATION: &str = "kubescim.io/rotation-request";
/// Annotation on a generated Secret: when its token was created.
pub const ANNOTATION_CREATED: &str = "kubescim.io/token-created";
/// Annotation on a generated Secret: verifiers (hashes, never tokens) of rotated-out tokens
/// still in their grace period, as JSON. Kept with the token so one write changes both.
pub const ANNOTATION_PREVIOUS: &str = "kubescim.io/previous-token-verifiers";

/// Default `spec.token.gracePeriod`.
pub const DEFAULT_GRACE: &str = "24h";

#[derive(thiserror::Error, Debug)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("no random bytes from the operating system: {0}")]
    Random(getrandom::Error),
    #[error("object has no namespace or name")]
    Unnamed,
    #[error("{0} was changed concurrently; retrying")]
    Conflict(String),
}

impl Error {
    /// Label of the failure metric.
    pub fn metric_label(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(s)) => format!("api_{}", s.code),
            Error::Kube(_) => "api_client".into(),
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer".into(),
            },
            Error::Random(_) => "random".into(),
            Error::Unnamed => "unnamed".into(),
            Error::Conflict(_) => "conflict".into(),
        }
    }

    fn is_forbidden(&self) -> bool {
        match self {
            Error::Kube(kube::Error::Api(s)) => s.code == 403,
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.is_forbidden(),
                kube::runtime::finalizer::Error::AddFinalizer(kube::Error::Api(s))
                | kube::runtime::finalizer::Error::RemoveFinalizer(kube::Error::Api(s)) => {
                    s.code == 403
                }
                _ => false,
            },
            _ => false,
        }
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Settings shared by every watched namespace.
#[derive(Clone)]
pub struct Settings {
    pub defaults: RouteDefaults,
    pub concurrency: u16,
    pub resync: Duration,
    pub identity: String,
}

/// What a reconcile needs.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub users: Store<PartialObjectMeta<ScimUser>>,
    pub groups: Store<PartialObjectMeta<ScimGroup>>,
    failures: Mutex<HashMap<ObjectRef<ScimDirectory>, u32>>,
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn directory_of(meta: &ObjectMeta) -> Option<ObjectRef<ScimDirectory>> {
    let name = meta.labels.as_ref()?.get(labels::DIRECTORY)?;
    Some(ObjectRef::new(name).within(meta.namespace.as_deref()?))
}

/// Metadata-only watch of `K` kept in a store, whose changes trigger the labelled directory.
fn metadata_store<K>(
    api: Api<PartialObjectMeta<K>>,
) -> (
    Store<PartialObjectMeta<K>>,
    impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>>,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<PartialObjectMeta<K>>();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default().any_semantic()).default_backoff(),
    )
    .touched_objects();
    (reader, stream)
}

/// Runs the controller for one scope (one namespace, or all) until `stop` resolves and every
/// running reconcile has finished.
pub async fn run_scope(
    client: Client,
    namespace: Option<String>,
    settings: Settings,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = namespace.as_deref();
    let managed = format!("{}={}", labels::MANAGED_BY, labels::MANAGED_BY_OPERATOR);
    let (users, user_changes) = metadata_store(scoped::<PartialObjectMeta<ScimUser>>(&client, ns));
    let (groups, group_changes) =
        metadata_store(scoped::<PartialObjectMeta<ScimGroup>>(&client, ns));
    // Secrets: metadata only (never their data) of all Secrets, so that both generated Secrets
    // (labelled) and bring-your-own Secrets (named in spec.token.secretRef) trigger their
    // directory when they change or disappear.
    let secret_changes = watcher(
        scoped::<PartialObjectMeta<Secret>>(&client, ns),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .touched_objects();

    let controller = Controller::new(
        scoped::<ScimDirectory>(&client, ns),
        watcher::Config::default().any_semantic(),
    );
    let directories = controller.store();
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: Some(settings.identity.clone()),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client: client.clone(),
        metrics,
        settings: settings.clone(),
        users,
        groups,
        failures: Mutex::default(),
    });
    controller
        .owns(
            scoped::<Ingress>(&client, ns),
            watcher::Config::default().labels(&managed).any_semantic(),
        )
        .owns(
            scoped::<Service>(&client, ns),
            watcher::Config::default().labels(&managed).any_semantic(),
        )
        .watches_stream(user_changes, |u| directory_of(&u.metadata))
        .watches_stream(group_changes, |g| directory_of(&g.metadata))
        .watches_stream(secret_changes, move |secret: PartialObjectMeta<Secret>| {
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
        })
        .with_config(
            ControllerConfig::default()
                .concurrency(settings.concurrency)
                .debounce(Duration::from_millis(300)),
        )
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, action)) => tracing::debug!(directory = %obj, ?action, "reconciled"),
                Err(kube::runtime::controller::Error::ReconcilerFailed(e, obj)) => {
                    tracing::warn!(directory = %obj, error = %e, "reconcile failed")
                }
                Err(e) => tracing::warn!(error = %e, "controller"),
            }
        })
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

async fn publish(
    recorder: &Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = KubeEvent {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, reference).await {
        tracing::warn!(error = %e, reason, "could not publish an event");
    }
}

/// Reconciles one directory.
pub async fn reconcile(dir: Arc<ScimDirectory>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciliations.inc();
    let started = Instant::now();
    let result = reconcile_directory(dir.clone(), &ctx).await;
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

async fn reconcile_directory(dir: Arc<ScimDirectory>, ctx: &Context) -> Result<Action, Error> {
    let ns = dir.namespace().ok_or(Error::Unnamed)?;
    let api: Api<ScimDirectory> = Api::namespaced(ctx.client.clone(), &ns);
    let has_finalizer = dir.finalizers().iter().any(|f| f == FINALIZER);
    // The finalizer only where ownerReferences are not enough: Retain must release the users
    // and groups before the directory goes; Delete is plain garbage collection.
    if dir.spec.deletion_policy == DeletionPolicy::Retain || has_finalizer {
        finalizer(&api, FINALIZER, dir, |event| async move {
            match event {
                FinalizerEvent::Apply(dir) => apply(dir, ctx).await,
                FinalizerEvent::Cleanup(dir) => cleanup(dir, ctx).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)))
    } else if dir.metadata.deletion_timestamp.is_some() {
        Ok(Action::await_change())
    } else {
        apply(dir, ctx).await
    }
}

fn owned_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references.iter().flatten().any(|o| o.uid == uid)
}

/// Before a `Retain` directory goes: removes its ownerReference from each of its ScimUsers and
/// ScimGroups, so the garbage collector keeps them.
async fn cleanup(dir: Arc<ScimDirectory>, ctx: &Context) -> Result<Action, Error> {
    if dir.spec.deletion_policy != DeletionPolicy::Retain {
        return Ok(Action::await_change());
    }
    let ns = dir.namespace().ok_or(Error::Unnamed)?;
    let uid = dir.uid().ok_or(Error::Unnamed)?;
    let users = release::<ScimUser>(Api::namespaced(ctx.client.clone(), &ns), &uid).await?;
    let groups = release::<ScimGroup>(Api::namespaced(ctx.client.clone(), &ns), &uid).await?;
    publish(
        &ctx.recorder,
        &dir.object_ref(&()),
        EventType::Normal,
        "Retained",
        "Delete",
        format!("deletionPolicy Retain: released {users} ScimUsers and {groups} ScimGroups from the directory; they stay in namespace {ns}"),
    )
    .await;
    Ok(Action::await_change())
}

async fn release<K>(api: Api<K>, uid: &str) -> Result<usize, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut released = 0;
    for item in api.list_metadata(&Default::default()).await? {
        if !owned_by(&item.metadata, uid) {
            continue;
        }
        let remaining: Vec<OwnerReference> = item
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|o| o.uid != uid)
            .cloned()
            .collect();
        // resourceVersion in a merge patch makes it a compare-and-swap.
        let patch = json!({"metadata": {
            "resourceVersion": item.metadata.resource_version,
            "ownerReferences": remaining,
        }});
        match api
            .patch_metadata(
                &item.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => released += 1,
            Err(e) if is_status(&e, 404) => {}
            Err(e) if is_status(&e, 409) => {
                return Err(Error::Conflict(format!(
                    "{} {}",
                    K::kind(&()),
                    item.name_any()
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(released)
}

/// Result of the token part.
struct TokenState {
    check: Check,
    secret_name: Option<String>,
    created: Option<String>,
    verifiers: Vec<TokenVerifier>,
}

impl TokenState {
    fn failed(reason: &str, message: String, secret_name: Option<String>) -> Self {
        Self {
            check: Check::failed(reason, message),
            secret_name,
            created: None,
            verifiers: Vec::new(),
        }
    }
}

/// Result of the route part.
struct RouteState {
    check: Check,
    endpoint: Option<String>,
}

async fn apply(dir: Arc<ScimDirectory>, ctx: &Context) -> Result<Action, Error> {
    let ns = dir.namespace().ok_or(Error::Unnamed)?;
    let name = dir.name_any();
    let now = Timestamp::now();
    let previous = dir.status.clone().unwrap_or_default();
    let reference = dir.object_ref(&());

    if dir.spec.deletion_policy == DeletionPolicy::Delete
        && dir.metadata.deletion_timestamp.is_none()
    {
        remove_finalizer(&dir, ctx).await?;
    }

    let token = reconcile_token(&dir, ctx, &previous, now).await?;
    let route = reconcile_route(&dir, ctx).await?;
    let counts = status::count(
        ctx.users.state().iter().map(|u| &u.metadata),
        ctx.groups.state().iter().map(|g| &g.metadata),
        &ns,
        &name,
    );
    let ready = status::ready(&token.check, &route.check);
    let generation = dir.metadata.generation;
    let conditions = vec![
        status::condition(
            CONDITION_READY,
            &ready,
            generation,
            &previous.conditions,
            now,
        ),
        status::condition(
            CONDITION_TOKEN_READY,
            &token.check,
            generation,
            &previous.conditions,
            now,
        ),
        status::condition(
            CONDITION_ROUTE_READY,
            &route.check,
            generation,
            &previous.conditions,
            now,
        ),
    ];
    let last_provisioning = counts
        .last_write
        .map(token::format_time)
        .into_iter()
        .chain(previous.last_provisioning_time.clone())
        .max_by_key(|t| t.parse::<Timestamp>().ok());
    let current = token.verifiers.first();
    let new_status = ScimDirectoryStatus {
        observed_generation: generation,
        conditions,
        endpoint: route.endpoint.clone(),
        token_secret_name: token.secret_name.clone(),
        token_created: token.created.clone(),
        token_fingerprint: current.and_then(|v| v.fingerprint.clone()),
        token_verifiers: token.verifiers.clone(),
        users: Some(counts.users),
        active_users: Some(counts.active_users),
        inactive_users: Some(counts.inactive_users),
        groups: Some(counts.groups),
        last_provisioning_time: last_provisioning,
    };

    // Every fixable problem as a Warning event, once per new message.
    for (type_, check) in [
        (CONDITION_TOKEN_READY, &token.check),
        (CONDITION_ROUTE_READY, &route.check),
    ] {
        let seen = previous
            .conditions
            .iter()
            .any(|c| c.type_ == type_ && c.reason == check.reason && c.message == check.message);
        if !check.ok && !seen {
            publish(
                &ctx.recorder,
                &reference,
                EventType::Warning,
                &check.reason,
                "Reconcile",
                check.message.clone(),
            )
            .await;
        }
    }

    if dir.status.as_ref() != Some(&new_status) {
        let api: Api<ScimDirectory> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = json!({
            "apiVersion": ScimDirectory::api_version(&()),
            "kind": ScimDirectory::kind(&()),
            "status": new_status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    }

    let mut wait = ctx.settings.resync;
    if let Some(expiry) = token::next_expiry(&new_status.token_verifiers) {
        let until = Duration::try_from(expiry.duration_since(now)).unwrap_or(Duration::ZERO);
        wait = wait.min(until + Duration::from_millis(500));
    }
    Ok(Action::requeue(wait))
}

/// A directory switched from Retain to Delete: its finalizer is no longer needed.
async fn remove_finalizer(dir: &ScimDirectory, ctx: &Context) -> Result<(), Error> {
    if !dir.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let api: Api<ScimDirectory> =
        Api::namespaced(ctx.client.clone(), &dir.namespace().ok_or(Error::Unnamed)?);
    let remaining: Vec<&String> = dir
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    // resourceVersion in a merge patch makes it a compare-and-swap.
    let patch = json!({"metadata": {
        "resourceVersion": dir.metadata.resource_version,
        "finalizers": remaining,
    }});
    match api
        .patch(
            &dir.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 409) => Err(Error::Conflict("finalizers".into())),
        Err(e) => Err(e.into()),
    }
}

fn grace_period(dir: &ScimDirectory) -> Result<Duration, String> {
    let raw = dir
        .spec
        .token
        .grace_period
        .as_deref()
        .unwrap_or(DEFAULT_GRACE);
    duration::parse(raw)
        .map_err(|e| format!("spec.token.gracePeriod: {e}; use a duration such as 24h or 90m"))
}

async fn reconcile_token(
    dir: &ScimDirectory,
    ctx: &Context,
    previous: &ScimDirectoryStatus,
    now: Timestamp,
) -> Result<TokenState, Error> {
    let grace = match grace_period(dir) {
        Ok(g) => g,
        Err(message) => return Ok(TokenState::failed("InvalidGracePeriod", message, None)),
    };
    match &dir.spec.token.secret_ref {
        Some(secret_ref) => {
            bring_your_own(
                dir,
                ctx,
                previous,
                now,
                grace,
                &secret_ref.name,
                secret_ref.key.as_deref().unwrap_or(token::TOKEN_KEY),
            )
            .await
        }
        None => generated(dir, ctx, previous, now, grace).await,
    }
}

fn secret_token(secret: &Secret, key: &str) -> Option<Result<String, ()>> {
    let bytes = secret.data.as_ref()?.get(key)?;
    Some(String::from_utf8(bytes.0.clone()).map_err(|_| ()))
}

async fn bring_your_own(
    dir: &ScimDirectory,
    ctx: &Context,
    previous: &ScimDirectoryStatus,
    now: Timestamp,
    grace: Duration,
    name: &str,
    key: &str,
) -> Result<TokenState, Error> {
    let ns = dir.namespace().ok_or(Error::Unnamed)?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(secret) = secrets.get_opt(name).await? else {
        return Ok(TokenState::failed(
            "SecretNotFound",
            format!(
                "spec.token.secretRef.name: Secret {ns}/{name} does not exist. Create it with the token under key {key:?}, or fix spec.token.secretRef.name (or remove secretRef to let the operator generate a token)."
            ),
            Some(name.to_string()),
        ));
    };
    let token = match secret_token(&secret, key) {
        None => {
            let keys: Vec<&String> = secret.data.iter().flat_map(|d| d.keys()).collect();
            return Ok(TokenState::failed(
                "SecretKeyMissing",
                format!(
                    "spec.token.secretRef.key: Secret {ns}/{name} has no key {key:?} (it has {keys:?}). Add the token under that key, or set spec.token.secretRef.key to the right one."
                ),
                Some(name.to_string()),
            ));
        }
        Some(Err(())) => {
            return Ok(TokenState::failed(
                "TokenInvalid",
                format!(
                    "spec.token.secretRef: key {key:?} of Secret {ns}/{name} is not UTF-8 text. Store the bearer token as plain text."
                ),
                Some(name.to_string()),
            ));
        }
        Some(Ok(t)) if t.is_empty() => {
            return Ok(TokenState::failed(
                "TokenEmpty",
                format!(
                    "spec.token.secretRef: key {key:?} of Secret {ns}/{name} is empty. Put the bearer token there."
                ),
                Some(name.to_string()),
            ));
        }
        Some(Ok(t)) => t,
    };
    let hash = token::hash(&token);
    let carried = token::carry_over(&previous.token_verifiers, &hash, now, grace);
    let verifiers = token::publishable(&hash, &carried, now);
    let unchanged = previous
        .token_verifiers
        .first()
        .is_some_and(|v| v.hash == hash && v.expires_at.is_none());
    let created = if unchanged {
        previous.token_created.clone()
    } else if previous.token_verifiers.is_empty() {
        secret
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| token::format_time(t.0))
    } else {
        Some(token::format_time(now))
    };
    if !unchanged && !previous.token_verifiers.is_empty() {
        publish(
            &ctx.recorder,
            &dir.object_ref(&()),
            EventType::Normal,
            "TokenChanged",
            "Token",
            format!(
                "The token in Secret {name} changed (fingerprint {}); the previous token stays valid for {}.",
                token::fingerprint_of_hash(&hash),
                duration::format(grace)
            ),
        )
        .await;
    }
    Ok(TokenState {
        check: Check::ok(
            "SecretReferenced",
            format!(
                "Using the token in Secret {name}, key {key:?} (fingerprint {})",
                token::fingerprint_of_hash(&hash)
            ),
        ),
        secret_name: Some(name.to_string()),
        created,
        verifiers,
    })
}

fn token_secret(
    name: &str,
    dir: &ScimDirectory,
    token: &str,
    rotation: &str,
    created: Timestamp,
    previous: &[TokenVerifier],
) -> Result<Secret, Error> {
    let mut annotations = BTreeMap::from([
        (ANNOTATION_ROTATION.to_string(), rotation.to_string()),
        (ANNOTATION_CREATED.to_string(), token::format_time(created)),
    ]);
    if !previous.is_empty() {
        annotations.insert(
            ANNOTATION_PREVIOUS.to_string(),
            serde_json::to_string(previous).unwrap_or_default(),
        );
    }
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: dir.namespace(),
            labels: Some(route::child_labels(&dir.name_any())),
            annotations: Some(annotations),
            owner_references: Some(vec![dir.controller_owner_ref(&()).ok_or(Error::Unnamed)?]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            token::TOKEN_KEY.to_string(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Default::default()
    })
}

fn previous_verifiers(secret: &Secret) -> Vec<TokenVerifier> {
    secret
        .annotations()
        .get(ANNOTATION_PREVIOUS)
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

async fn generated(
    dir: &ScimDirectory,
    ctx: &Context,
    previous: &ScimDirectoryStatus,
    now: Timestamp,
    grace: Duration,
) -> Result<TokenState, Error> {
    let ns = dir.namespace().ok_or(Error::Unnamed)?;
    let uid = dir.uid().ok_or(Error::Unnamed)?;
    let name = route::token_secret_name(&dir.name_any());
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let rotation = dir.spec.token.rotation_request.clone().unwrap_or_default();
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let reference = dir.object_ref(&());

    let Some(mut secret) = secrets.get_opt(&name).await? else {
        let new_token = token::generate().map_err(Error::Random)?;
        let fresh = token_secret(&name, dir, &new_token, &rotation, now, &[])?;
        // Create, never overwrite: a Secret that appeared meanwhile is read on the next round.
        match secrets.create(&params, &fresh).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 409) => return Err(Error::Conflict(format!("Secret {name}"))),
            Err(e) => return Err(e.into()),
        }
        let hash = token::hash(&new_token);
        let fingerprint = token::fingerprint_of_hash(&hash);
        let existed_before = previous.token_secret_name.as_deref() == Some(name.as_str())
            && previous.token_fingerprint.is_some();
        if existed_before {
            publish(
                &ctx.recorder,
                &reference,
                EventType::Warning,
                "TokenRecreated",
                "Token",
                format!("Secret {name} was deleted, so a new token was generated (fingerprint {fingerprint}); the old token no longer works. Paste the new token from Secret {name} into the identity provider."),
            )
            .await;
        } else {
            publish(
                &ctx.recorder,
                &reference,
                EventType::Normal,
                "TokenCreated",
                "Token",
                format!("Generated a bearer token in Secret {name}, key {:?} (fingerprint {fingerprint})", token::TOKEN_KEY),
            )
            .await;
        }
        return Ok(TokenState {
            check: Check::ok(
                "TokenCreated",
                format!(
                    "Token in Secret {name}, key {:?} (fingerprint {fingerprint})",
                    token::TOKEN_KEY
                ),
            ),
            secret_name: Some(name),
            created: Some(token::format_time(now)),
            verifiers: vec![token::verifier_from_hash(hash, None)],
        });
    };

    if !owned_by(&secret.metadata, &uid) {
        return Ok(TokenState::failed(
            "SecretConflict",
            format!(
                "Secret {ns}/{name} exists but does not belong to this directory (no ownerReference to it). Delete or rename that Secret, or use it on purpose through spec.token.secretRef."
            ),
            Some(name),
        ));
    }

    let current = secret_token(&secret, token::TOKEN_KEY)
        .and_then(Result::ok)
        .filter(|t| !t.is_empty());
    let applied_rotation = secret
        .annotations()
        .get(ANNOTATION_ROTATION)
        .cloned()
        .unwrap_or_default();
    let earlier = previous_verifiers(&secret);

    let (event, new_previous) = match &current {
        None => (
            Some(("TokenRecreated", EventType::Warning)),
            token::retire("", &[], now, Duration::ZERO),
        ),
        Some(t) if applied_rotation != rotation => (
            Some(("TokenRotated", EventType::Normal)),
            token::retire(&token::hash(t), &earlier, now, grace),
        ),
        Some(_) => (None, Vec::new()),
    };

    if let Some((reason, type_)) = event {
        let new_token = token::generate().map_err(Error::Random)?;
        let desired = token_secret(&name, dir, &new_token, &rotation, now, &new_previous)?;
        secret.data = desired.data;
        secret.metadata.annotations = desired.metadata.annotations;
        secret
            .metadata
            .labels
            .get_or_insert_default()
            .extend(route::child_labels(&dir.name_any()));
        // `replace` carries the resourceVersion just read: a concurrent change wins and we retry.
        match secrets.replace(&name, &params, &secret).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 409) => return Err(Error::Conflict(format!("Secret {name}"))),
            Err(e) => return Err(e.into()),
        }
        let hash = token::hash(&new_token);
        let fingerprint = token::fingerprint_of_hash(&hash);
        let note = if reason == "TokenRotated" {
            format!(
                "spec.token.rotationRequest changed: new token in Secret {name} (fingerprint {fingerprint}); the previous token stays valid for {}.",
                duration::format(grace)
            )
        } else {
            format!(
                "Secret {name} had no token under key {:?}, so a new token was generated (fingerprint {fingerprint}). Paste it into the identity provider.",
                token::TOKEN_KEY
            )
        };
        publish(&ctx.recorder, &reference, type_, reason, "Token", note).await;
        return Ok(TokenState {
            check: Check::ok(
                reason,
                format!(
                    "Token in Secret {name}, key {:?} (fingerprint {fingerprint})",
                    token::TOKEN_KEY
                ),
            ),
            secret_name: Some(name),
            created: Some(token::format_time(now)),
            verifiers: token::publishable(&hash, &new_previous, now),
        });
    }

    let hash = token::hash(current.as_deref().unwrap_or_default());
    let created = secret
        .annotations()
        .get(ANNOTATION_CREATED)
        .cloned()
        .or_else(|| {
            secret
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| token::format_time(t.0))
        });
    Ok(TokenState {
        check: Check::ok(
            "TokenPresent",
            format!(
                "Token in Secret {name}, key {:?} (fingerprint {})",
                token::TOKEN_KEY,
                token::fingerprint_of_hash(&hash)
            ),
        ),
        secret_name: Some(name),
        created,
        verifiers: token::publishable(&hash, &earlier, now),
    })
}

/// Deletes `name` if it exists and this directory owns it.
async fn delete_owned<K>(api: &Api<K>, name: &str, uid: &str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    if let Some(existing) = api.get_opt(name).await?
        && owned_by(existing.meta(), uid)
    {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn reconcile_route(dir: &ScimDirectory, ctx: &Context) -> Result<RouteState, Error> {
    let ns = dir.namespace().ok_or(Error::Unnamed)?;
    let uid = dir.uid().ok_or(Error::Unnamed)?;
    let name = dir.name_any();
    let defaults = &ctx.settings.defaults;
    let server = &defaults.server;
    let route = route::resolve(&ns, &name, &dir.spec.ingress, defaults);
    let ingresses: Api<Ingress> = Api::namespaced(ctx.client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let ingress_name = route::ingress_name(&name);
    let service_name = route::external_service_name(&name);

    if !dir.spec.ingress.enabled {
        delete_owned(&ingresses, &ingress_name, &uid).await?;
        delete_owned(&services, &service_name, &uid).await?;
        return Ok(RouteState {
            check: Check::ok(
                "IngressDisabled",
                format!(
                    "spec.ingress.enabled is false: route {} to Service {}/{} port {} yourself",
                    route.path, server.namespace, server.name, server.port
                ),
            ),
            endpoint: Some(route::endpoint_without_ingress(
                &route,
                &ns,
                &name,
                dir.spec.provider,
                server,
            )),
        });
    }
    let Some(host) = route.host.clone() else {
        delete_owned(&ingresses, &ingress_name, &uid).await?;
        delete_owned(&services, &service_name, &uid).await?;
        return Ok(RouteState {
            check: Check::failed(
                "NoHost",
                "No Ingress host: set spec.ingress.host (or start the operator with --default-ingress-host, Helm value ingressDefaults.host), or set spec.ingress.enabled to false and route to the SCIM server yourself.",
            ),
            endpoint: None,
        });
    };

    let existing = ingresses.get_opt(&ingress_name).await?;
    if let Some(existing) = &existing
        && !owned_by(&existing.metadata, &uid)
    {
        return Ok(RouteState {
            check: Check::failed(
                "IngressConflict",
                format!(
                    "Ingress {ns}/{ingress_name} exists but does not belong to this directory. Delete or rename it so the operator can create the directory's route."
                ),
            ),
            endpoint: None,
        });
    }
    let owner = dir.controller_owner_ref(&()).ok_or(Error::Unnamed)?;
    let apply = PatchParams::apply(MANAGER).force();

    let backend = if ns == server.namespace {
        delete_owned(&services, &service_name, &uid).await?;
        server.name.clone()
    } else {
        if let Some(svc) = services.get_opt(&service_name).await?
            && !owned_by(&svc.metadata, &uid)
        {
            return Ok(RouteState {
                check: Check::failed(
                    "ServiceConflict",
                    format!(
                        "Service {ns}/{service_name} exists but does not belong to this directory. Delete or rename it so the operator can route to the SCIM server."
                    ),
                ),
                endpoint: None,
            });
        }
        let svc = route::build_external_service(&service_name, &ns, &name, owner.clone(), server);
        services
            .patch(&service_name, &apply, &Patch::Apply(&svc))
            .await?;
        service_name.clone()
    };
    let ingress = route::build_ingress(
        &ingress_name,
        &ns,
        &name,
        owner,
        &route,
        &backend,
        server.port,
    );
    ingresses
        .patch(&ingress_name, &apply, &Patch::Apply(&ingress))
        .await?;
    if existing.is_none() {
        publish(
            &ctx.recorder,
            &dir.object_ref(&()),
            EventType::Normal,
            "RouteCreated",
            "Route",
            format!(
                "Created Ingress {ingress_name} for {host}{} (backend Service {backend})",
                route.path
            ),
        )
        .await;
    }
    Ok(RouteState {
        check: Check::ok(
            "IngressReady",
            format!(
                "Ingress {ingress_name} routes {host}{} to Service {backend}",
                route.path
            ),
        ),
        endpoint: route::endpoint(&route, dir.spec.provider),
    })
}

#[cfg(test)]
mod tests {
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
