//! The ScimGroupBinding controller: a SCIM group's active members become the subjects of one
//! RoleBinding per target namespace (or one ClusterRoleBinding).
//!
//! - [`plan`]: the pure decision (members with nested groups flattened, subject names from the
//!   template, the allow-list, splitting large groups, what to write and delete);
//!   [`members`] (who the group is), [`subjects`] (subject names, refused names) and
//!   [`parts`] (large groups over several bindings) hold its parts;
//! - [`trust`]: whether the binding's ScimDirectory may feed it at all (pinned uid and
//!   credential configuration, no Secret-held credential without an opt-in);
//! - [`read`]: what the bindings are now (watch caches, status, what this process wrote);
//! - [`apply`]: carries the plan out (server-side apply with one field manager, deletions);
//!   [`additions`] tells what grants someone new (waits for the budget);
//! - [`status`]: the Ready condition and the status write (server-side apply);
//! - [`budget`]: how many bytes of bindings a ScimGroupBinding may write (additions wait,
//!   removals never do).
//!
//! What triggers what: a change of a ScimGroupBinding's spec, finalizers or deletion; a change
//! of any ScimUser or ScimGroup of a directory reconciles every ScimGroupBinding of that
//! directory (a removed membership label leaves no trace on the new object, so the directory is
//! the narrowest key that never misses one); a change of a binding the operator wrote
//! reconciles its ScimGroupBinding (a hand edit is reverted). Reconciles read users and groups
//! from watch caches, so a directory-wide trigger costs no API call unless subjects changed.
//!
//! Bindings in other namespaces cannot carry an ownerReference to the ScimGroupBinding, so a
//! finalizer removes them; they are found by the label [`labels::BINDING_UID`].

pub mod additions;
pub mod apply;
pub mod budget;
pub mod members;
pub mod parts;
pub mod plan;
pub mod read;
pub mod status;
pub mod subjects;
pub mod trust;

#[cfg(test)]
mod failure_tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use kube_scim_crds::{ScimDirectory, ScimGroup, ScimGroupBinding, ScimUser};

use crate::directory::MANAGER;
use crate::reconcile::predicate;
use crate::watch::{Scope, after, run_controller, scoped, store};
use plan::BindingPolicy;

/// Finalizer that removes a ScimGroupBinding's RoleBindings in every namespace.
pub const FINALIZER: &str = "kubescim.io/group-binding-cleanup";

/// Labels and annotations on the bindings the operator writes.
pub mod labels {
    /// Label: UID of the ScimGroupBinding (a name may be longer than a label value).
    pub const BINDING_UID: &str = "kubescim.io/group-binding-uid";
    /// Annotation: `<namespace>/<name>` of the ScimGroupBinding.
    pub const BINDING: &str = "kubescim.io/group-binding";
}

pub use crate::reconcile::Error;

/// What a reconcile needs.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub policy: BindingPolicy,
    pub resync: Duration,
    /// The process's shared ScimUser, ScimGroup and ScimDirectory stores, and their readiness
    /// (awaited through the `_ready` fields only: the directory controller awaits the same
    /// stores).
    pub users: Store<ScimUser>,
    pub groups: Store<ScimGroup>,
    pub users_ready: crate::watch::Readiness,
    pub groups_ready: crate::watch::Readiness,
    /// The directories bindings name: who may feed a binding is decided from them.
    pub directories: Store<ScimDirectory>,
    pub directories_ready: crate::watch::Readiness,
    pub role_bindings: Store<RoleBinding>,
    /// Only where cluster-wide bindings are allowed and the operator watches every namespace.
    pub cluster_role_bindings: Option<Store<ClusterRoleBinding>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Write budgets of the ScimGroupBindings, by uid.
    pub buckets: std::sync::Mutex<budget::Buckets>,
    /// What this process last wrote to each binding: the subjects of a binding outside the
    /// watch caches (another scope's namespace), so that the budget can tell an addition there
    /// from a removal.
    pub written: std::sync::Mutex<read::Written>,
}

impl Context {
    /// Waits until every watch cache a reconcile reads holds its first complete list: deciding
    /// from a cache that has not listed yet would remove every subject.
    ///
    /// Awaited once, before the Controller reconciles anything, never inside a reconcile:
    /// kube-runtime's readiness future keeps one waker (a futures oneshot receiver), so of
    /// several reconciles waiting at once only the last to poll was woken; the others waited
    /// forever, their ScimGroupBindings were never reconciled again (no revocation either),
    /// and a graceful shutdown, which waits for running reconciles, hung. A cache added to the
    /// context must be awaited here.
    async fn caches_ready(&self) {
        self.users_ready.wait().await;
        self.groups_ready.wait().await;
        self.directories_ready.wait().await;
        let _ = self.role_bindings.wait_until_ready().await;
        if let Some(store) = &self.cluster_role_bindings {
            let _ = store.wait_until_ready().await;
        }
    }
}

/// What of a ScimGroupBinding calls for a reconcile: not its status (our own write).
fn reconcile_relevant(binding: &ScimGroupBinding) -> Option<u64> {
    let meta = &binding.metadata;
    predicate::hash(&(predicate::lifecycle(meta), &binding.spec))
}

/// The ScimGroupBindings of the directory `directory` in `namespace`.
fn bindings_of_directory(
    bindings: &Store<ScimGroupBinding>,
    namespace: Option<&str>,
    directory: &str,
) -> Vec<ObjectRef<ScimGroupBinding>> {
    bindings
        .state()
        .iter()
        .filter(|b| b.namespace().as_deref() == namespace && b.spec.directory_ref.name == directory)
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

/// The ScimGroupBinding named in a written binding's annotation.
fn binding_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<ObjectRef<ScimGroupBinding>> {
    let (ns, name) = meta
        .annotations
        .as_ref()?
        .get(labels::BINDING)?
        .split_once('/')?;
    Some(ObjectRef::new(name).within(ns))
}

/// The ScimGroupBinding a written binding names, if this scope's store holds it. The others
/// would each make the Controller log "tried to reconcile object ... not found in local
/// store": the bindings a deleted ScimGroupBinding's cleanup removes, every binding listed
/// while the ScimGroupBindings wait for the other caches (see `run_scope`), and bindings that
/// name a ScimGroupBinding of another scope. None of them had a reconcile to run: a
/// ScimGroupBinding the store lists later is reconciled then, as every listed one is.
fn known_binding_of(
    bindings: &Store<ScimGroupBinding>,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<ObjectRef<ScimGroupBinding>> {
    binding_of(meta).filter(|r| bindings.get(r).is_some())
}

/// Runs the ScimGroupBinding controller for one scope (one namespace, or all) until `stop`.
pub async fn run_scope(
    scope: Scope,
    policy: BindingPolicy,
    identity: String,
    concurrency: u16,
    resync: Duration,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let (client, ns) = (&scope.client, scope.namespace.as_deref());
    let watched = scope.watched;
    let (users, groups, directories) = (watched.users, watched.groups, watched.directories);
    let any = || watcher::Config::default().any_semantic();
    let written = || {
        watcher::Config::default()
            .labels(labels::BINDING_UID)
            .any_semantic()
    };
    let (user_changes, group_changes) = (users.changes, groups.changes);
    let directory_changes = directories.changes;
    let (role_bindings, role_binding_changes) = store(scoped::<RoleBinding>(client, ns), written());
    let (bindings, writer) = reflector::store::<ScimGroupBinding>();
    let binding_changes = reflector::reflector(
        writer,
        watcher(scoped::<ScimGroupBinding>(client, ns), any()).default_backoff(),
    )
    .applied_objects()
    .predicate_filter(reconcile_relevant, Default::default());

    let mut cluster_role_binding_changes = None;
    let mut cluster_role_bindings = None;
    if policy.allow_cluster_wide && ns.is_none() {
        let (store, changes) = store(Api::<ClusterRoleBinding>::all(client.clone()), written());
        cluster_role_bindings = Some(store);
        cluster_role_binding_changes = Some(changes);
    }
    let reporter = Reporter {
        controller: format!("{MANAGER}-group-binding"),
        instance: Some(identity),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client: client.clone(),
        policy,
        resync,
        users: users.cache.store,
        groups: groups.cache.store,
        users_ready: users.cache.ready,
        groups_ready: groups.cache.ready,
        directories: directories.cache.store,
        directories_ready: directories.cache.ready,
        role_bindings,
        cluster_role_bindings,
        metrics,
        buckets: Default::default(),
        written: Default::default(),
    });
    // The ScimGroupBindings are listed only once every other cache has listed: the Controller
    // starts no reconcile before its own store is ready, so none decides from a cache that is
    // still empty. Waiting here, in the one stream that feeds the Controller, and not in each
    // reconcile, is what makes it work: see [`Context::caches_ready`].
    let gate = ctx.clone();
    let caches_listed = async move {
        gate.caches_ready().await;
        tracing::debug!("watch caches listed; listing ScimGroupBindings");
    };
    let binding_changes = after(caches_listed, binding_changes);

    let mut controller = Controller::for_stream(binding_changes, bindings.clone());
    if let Some(changes) = cluster_role_binding_changes {
        let of_crb = bindings.clone();
        controller = controller.watches_stream(changes, move |crb: ClusterRoleBinding| {
            known_binding_of(&of_crb, &crb.metadata)
        });
    }
    let of_user = bindings.clone();
    let of_group = bindings.clone();
    let of_directory = bindings.clone();
    let of_role_binding = bindings.clone();
    let controller = controller
        .watches_shared_stream(user_changes, move |user: Arc<ScimUser>| {
            bindings_of_directory(
                &of_user,
                user.namespace().as_deref(),
                &user.spec.directory_ref.name,
            )
        })
        .watches_shared_stream(group_changes, move |group: Arc<ScimGroup>| {
            bindings_of_directory(
                &of_group,
                group.namespace().as_deref(),
                &group.spec.directory_ref.name,
            )
        })
        // A directory replaced or re-configured must revoke at once, not at the next resync.
        .watches_shared_stream(directory_changes, move |directory: Arc<ScimDirectory>| {
            bindings_of_directory(
                &of_directory,
                directory.namespace().as_deref(),
                &directory.name_any(),
            )
        })
        .watches_stream(role_binding_changes, move |rb: RoleBinding| {
            known_binding_of(&of_role_binding, &rb.metadata)
        })
        .with_config(ControllerConfig::default().concurrency(concurrency));
    let nothing_beside = futures::future::pending();
    run_controller(
        "group-binding",
        controller,
        scope.stop,
        reconcile,
        error_policy,
        ctx,
        nothing_beside,
    )
    .await;
}

fn error_policy(binding: Arc<ScimGroupBinding>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.group_binding_failure(&error.metric_label());
    tracing::warn!(
        group_binding = %binding.name_any(), namespace = binding.namespace().unwrap_or_default(),
        error = %error, "reconcile failed"
    );
    Action::requeue(Duration::from_secs(5))
}

/// Reconciles one ScimGroupBinding.
pub async fn reconcile(binding: Arc<ScimGroupBinding>, ctx: Arc<Context>) -> Result<Action, Error> {
    // The caches have listed once before any reconcile starts (see `run_scope`).
    let ns = binding.namespace().ok_or(Error::Unnamed)?;
    let api: Api<ScimGroupBinding> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, binding, |event| async {
        match event {
            FinalizerEvent::Apply(binding) => apply::apply(binding, &ctx).await,
            FinalizerEvent::Cleanup(binding) => apply::cleanup(binding, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}
