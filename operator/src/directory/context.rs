//! What every step of a ScimDirectory reconcile is given: the [`Context`] (client, Events,
//! metrics, settings, the user and group stores) and the field manager. A leaf: the steps
//! import it, it imports none of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource};
use kube_scim_crds::{ScimDirectory, ScimGroup, ScimUser};
use kube_scim_runtime::verifier::SharedKeyRing;

use crate::events::publish;
use crate::metrics::Metrics;
use crate::route::RouteDefaults;
use crate::watch::{Cache, Readiness};

/// Field manager of every write (server-side apply and plain writes alike).
pub const MANAGER: &str = crate::reconcile::manager::DIRECTORY;

/// Settings shared by every watched namespace.
#[derive(Clone)]
pub struct Settings {
    pub defaults: RouteDefaults,
    pub concurrency: u16,
    pub resync: Duration,
    pub identity: String,
    /// A directory's counts are written at most once per this interval.
    pub counts_min_interval: Duration,
    /// A user or group change is in its directory's counts at most this long after it.
    pub counts_max_delay: Duration,
    /// The verifier keys in force; a change reconciles every directory (new verifiers).
    pub keys: SharedKeyRing,
}

/// What a reconcile needs.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    /// The process's shared ScimUser and ScimGroup stores (full objects; counting reads only
    /// their metadata).
    pub users: Store<ScimUser>,
    pub groups: Store<ScimGroup>,
    /// Every directory in scope: which one an Entra application belongs to ([`super::entra`]).
    pub directories: Store<ScimDirectory>,
    /// Readiness of `users` and `groups`, which reconciles check and the counts refresher
    /// awaits at the same time (see [`Readiness`]).
    pub(super) users_ready: Readiness,
    pub(super) groups_ready: Readiness,
    /// Failed reconciles in a row, per directory (the error policy's backoff).
    pub(super) failures: Mutex<HashMap<ObjectRef<ScimDirectory>, u32>>,
    /// One lock per directory around "count, then write status", held by the reconcile and by
    /// the counts refresher, so a slower writer never puts older counts over newer ones.
    status_locks: Mutex<HashMap<ObjectRef<ScimDirectory>, Arc<tokio::sync::Mutex<()>>>>,
}

impl Context {
    /// A context over `client`, with user and group caches the caller fills (or leaves empty).
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        users: Cache<ScimUser>,
        groups: Cache<ScimGroup>,
        directories: Store<ScimDirectory>,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: Some(settings.identity.clone()),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            settings,
            users_ready: users.ready,
            groups_ready: groups.ready,
            users: users.store,
            groups: groups.store,
            directories,
            failures: Mutex::default(),
            status_locks: Mutex::default(),
        }
    }

    /// The status lock of `dir` (see [`Context::status_locks`]). Locks nobody holds or awaits
    /// are dropped, so the map stays as small as the number of directories being written.
    pub async fn status_lock(
        &self,
        dir: &ObjectRef<ScimDirectory>,
    ) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.status_locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
            locks.entry(dir.clone()).or_default().clone()
        };
        lock.lock_owned().await
    }

    pub(super) fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), ns)
    }

    pub(super) async fn publish(
        &self,
        dir: &ScimDirectory,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        publish(
            &self.recorder,
            &dir.object_ref(&()),
            type_,
            reason,
            action,
            note,
        )
        .await;
    }
}

/// Whether `meta` has an ownerReference to the object with `uid`.
pub(super) fn owned_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references.iter().flatten().any(|o| o.uid == uid)
}
