//! Watch plumbing the controllers share: an `Api` scoped to the watched namespace (or all), a
//! watch kept in a reflector store, and [`SharedWatch`], one watch of a kind whose store and
//! changes every controller of the process shares.

use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use kube_scim_crds::{ScimDirectory, ScimGroup, ScimUser};
use serde::de::DeserializeOwned;

/// What a watched kind must be: a static Kubernetes resource that a reflector can hold and
/// share between tasks.
pub trait Watched:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static
{
}

impl<K> Watched for K where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// `K` in `namespace`, or in every namespace when the operator watches all of them.
pub(crate) fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Watch of `api` kept in a store, and the stream of touched objects that fills it (the store
/// only advances while the stream is polled). `K` may be `PartialObjectMeta<_>` for a
/// metadata-only watch.
pub(crate) fn store<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>>,
)
where
    K: Watched,
{
    let (reader, writer) = reflector::store::<K>();
    let stream =
        reflector::reflector(writer, watcher(api, config).default_backoff()).touched_objects();
    (reader, stream)
}

/// One watch of a kind (in one scope), kept in one store, whose changes every subscriber
/// receives: ScimUsers, ScimGroups and ScimDirectories are watched once per process and scope,
/// not once per controller.
///
/// Not kube-runtime's `store_shared` + `Writer::subscribe`: its `ReflectHandle` never yields a
/// deleted object (the dispatcher broadcasts only applies and the re-list), so a deleted
/// ScimUser would no longer reconcile the ScimGroupBindings that grant it anything (revocation
/// late until the resync) nor refresh its directory's counts. Here every touched object, a
/// deleted one included, reaches every subscriber, as `touched_objects()` did per watch.
///
/// A subscriber's channel is unbounded: the store never waits for a subscriber, so a slow one
/// (the counts refresher awaits its status write before it reads on) cannot delay another
/// controller's triggers, nor the store it reads, which is what a bounded broadcast buffer would
/// do. What a lagging subscriber costs is memory: one `Arc` per change it has not read yet
/// (the object versions stay alive until it does); every subscriber is polled continuously by
/// its controller, so the lag lasts at most one API call.
pub struct SharedWatch<K>
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    kind: &'static str,
    cache: Cache<K>,
    events: futures::stream::BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>,
    subscribers: Vec<futures::channel::mpsc::UnboundedSender<std::sync::Arc<K>>>,
}

/// A shared store and its [`Readiness`]: awaiting the store itself from more than one task
/// loses wake-ups (see [`Readiness`]), so everyone awaits `ready`.
pub struct Cache<K>
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    pub store: Store<K>,
    pub ready: Readiness,
}

impl<K> Clone for Cache<K>
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn clone(&self) -> Self {
        Cache {
            store: self.store.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<K> Cache<K>
where
    K: kube::runtime::reflector::Lookup + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    /// `store` with its readiness.
    pub fn of(store: Store<K>) -> Self {
        Cache {
            ready: Readiness::of(&store),
            store,
        }
    }
}

/// What a subscriber of a [`SharedWatch`] gets: the shared cache, and every object the watch
/// touches from its first list on (applied, listed or deleted; a deleted one as last seen).
pub struct Subscription<K>
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    pub cache: Cache<K>,
    pub changes: futures::channel::mpsc::UnboundedReceiver<std::sync::Arc<K>>,
}

impl<K> SharedWatch<K>
where
    K: Watched,
{
    /// The watch of `K` in `namespace` (or every namespace); nothing is requested before
    /// [`SharedWatch::run`].
    pub fn new(client: &Client, namespace: Option<&str>, kind: &'static str) -> Self
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        let events = watcher(
            scoped::<K>(client, namespace),
            watcher::Config::default().any_semantic(),
        )
        .default_backoff();
        Self::of_events(events, kind)
    }

    /// The shared watch of these watcher events.
    fn of_events(
        events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
        kind: &'static str,
    ) -> Self {
        use futures::StreamExt;
        let (store, writer) = reflector::store::<K>();
        SharedWatch {
            kind,
            cache: Cache::of(store),
            events: reflector::reflector(writer, events).boxed(),
            subscribers: Vec::new(),
        }
    }

    /// A new subscriber; every subscription is made before [`SharedWatch::run`] (it consumes
    /// the watch), so none misses the first list.
    pub fn subscribe(&mut self) -> Subscription<K> {
        let (tx, changes) = futures::channel::mpsc::unbounded();
        self.subscribers.push(tx);
        Subscription {
            cache: self.cache.clone(),
            changes,
        }
    }

    /// Keeps the store and the subscribers fed; never ends on its own (the caller drops it
    /// with the controllers). A subscriber that went away is forgotten.
    pub async fn run(self) {
        use futures::StreamExt;
        let SharedWatch {
            kind,
            mut events,
            mut subscribers,
            ..
        } = self;
        while let Some(event) = events.next().await {
            match event {
                Ok(
                    watcher::Event::Apply(obj)
                    | watcher::Event::Delete(obj)
                    | watcher::Event::InitApply(obj),
                ) => {
                    let obj = std::sync::Arc::new(obj);
                    subscribers.retain(|s| s.unbounded_send(obj.clone()).is_ok());
                }
                Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
                Err(e) => tracing::warn!(kind, error = %e, "watch failed; retrying"),
            }
        }
    }
}

/// The shared watches of one scope: every kind that both the directory and the group-binding
/// controller read (ScimUsers, ScimGroups, ScimDirectories), each watched once.
pub struct Watches {
    users: SharedWatch<ScimUser>,
    groups: SharedWatch<ScimGroup>,
    directories: SharedWatch<ScimDirectory>,
}

/// One controller's subscriptions to the [`Watches`] of its scope.
pub struct Subscriptions {
    pub users: Subscription<ScimUser>,
    pub groups: Subscription<ScimGroup>,
    pub directories: Subscription<ScimDirectory>,
}

impl Watches {
    /// The watches of `namespace` (or every namespace); nothing is requested before
    /// [`Watches::run`].
    pub fn new(client: &Client, namespace: Option<&str>) -> Self {
        Watches {
            users: SharedWatch::new(client, namespace, "ScimUser"),
            groups: SharedWatch::new(client, namespace, "ScimGroup"),
            directories: SharedWatch::new(client, namespace, "ScimDirectory"),
        }
    }

    /// A controller's subscriptions, all made before [`Watches::run`] (see
    /// [`SharedWatch::subscribe`]).
    pub fn subscribe(&mut self) -> Subscriptions {
        Subscriptions {
            users: self.users.subscribe(),
            groups: self.groups.subscribe(),
            directories: self.directories.subscribe(),
        }
    }

    /// Runs every watch (see [`SharedWatch::run`]); never ends on its own.
    pub async fn run(self) {
        futures::join!(self.users.run(), self.groups.run(), self.directories.run());
    }
}

/// Readiness of a watch cache that any number of tasks may check or await.
///
/// kube-runtime's `Store::wait_until_ready` is a futures oneshot receiver with one waker slot:
/// every poll replaces the waker of the previous one, so of several tasks waiting at once only
/// the last to poll is woken, and a check with `now_or_never` (a no-op waker) steals the wake-up
/// of a task that really waits. Here one `Shared` future is the store's only poller, and it
/// wakes every task waiting on it.
#[derive(Clone)]
pub struct Readiness(futures::future::Shared<futures::future::BoxFuture<'static, ()>>);

impl Readiness {
    /// The readiness of `store` (it completes when the writer is dropped, too).
    pub fn of<K>(store: &Store<K>) -> Self
    where
        K: kube::runtime::reflector::Lookup + Clone + Send + Sync + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
    {
        use futures::FutureExt;
        let store = store.clone();
        Readiness(
            async move {
                let _ = store.wait_until_ready().await;
            }
            .boxed()
            .shared(),
        )
    }

    /// Waits until the store holds its first complete list.
    pub async fn wait(&self) {
        self.0.clone().await
    }

    /// Whether the store holds its first complete list, without waiting.
    pub fn is_ready(&self) -> bool {
        use futures::FutureExt;
        self.0.clone().now_or_never().is_some()
    }
}

/// Runs a controller (`run`, which shuts down gracefully once `stop` resolves) to its end, but
/// for no longer than `grace` after `stop`; then drops it, which aborts the reconciles still
/// running. kube-runtime's runner never ends when stopped before its store has listed once,
/// and a reconcile stuck in an API call must not keep the process past its termination grace
/// period either: what it did not finish, the next leader does.
pub(crate) async fn bounded_shutdown(
    controller: &str,
    run: impl std::future::Future<Output = ()>,
    stop: impl std::future::Future<Output = ()>,
    grace: std::time::Duration,
) {
    let deadline = async {
        stop.await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = run => {}
        () = deadline => tracing::warn!(
            controller, ?grace,
            "reconciles still running after the shutdown grace period; abandoning them"
        ),
    }
}

/// How long a stopping controller waits for its running reconciles (see [`bounded_shutdown`]).
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The signal every task of a leader's term stops on; cloned freely (one `Shared` future).
pub type Stop = futures::future::Shared<futures::future::BoxFuture<'static, ()>>;

/// What every controller's `run_scope` is given for its scope (one namespace, or all): the
/// rest of its arguments are what differs between the controllers.
pub struct Scope {
    pub client: Client,
    pub namespace: Option<String>,
    /// The controller's subscriptions to the scope's shared watches (see [`Watches`]).
    pub watched: Subscriptions,
    pub stop: Stop,
}

impl Scope {
    pub fn new(
        client: Client,
        namespace: Option<String>,
        watched: Subscriptions,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Self {
        use futures::FutureExt;
        Scope {
            client,
            namespace,
            watched,
            stop: stop.boxed().shared(),
        }
    }
}

/// `stream`, started once `ready` has completed: how a controller's trigger stream waits for
/// the caches its reconciles read. Awaited in the one stream that feeds the Controller, never
/// in each reconcile (see [`Readiness`] for why).
pub fn after<S: futures::Stream>(
    ready: impl std::future::Future<Output = ()>,
    stream: S,
) -> impl futures::Stream<Item = S::Item> {
    use futures::FutureExt;
    ready.map(move |()| stream).flatten_stream()
}

/// Runs `controller` (already given its watches and config) until `stop`, logging each
/// reconcile's outcome, with `beside` (a task that never ends on its own) stopping with it;
/// the whole for no longer than [`SHUTDOWN_GRACE`] after `stop` (see [`bounded_shutdown`]).
/// `name` labels the logs.
pub async fn run_controller<K, Fut, Ctx>(
    name: &'static str,
    controller: kube::runtime::Controller<K>,
    stop: Stop,
    reconcile: impl FnMut(std::sync::Arc<K>, std::sync::Arc<Ctx>) -> Fut,
    error_policy: impl Fn(
        std::sync::Arc<K>,
        &Fut::Error,
        std::sync::Arc<Ctx>,
    ) -> kube::runtime::controller::Action,
    ctx: std::sync::Arc<Ctx>,
    beside: impl std::future::Future<Output = ()>,
) where
    K: Watched + Unpin,
    Fut: futures::TryFuture<Ok = kube::runtime::controller::Action> + Send + 'static,
    Fut::Error: std::error::Error + Send + 'static,
{
    use futures::{FutureExt, StreamExt};
    let reconciling = controller
        .graceful_shutdown_on(stop.clone())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, action)) => {
                    tracing::debug!(controller = name, object = %obj, ?action, "reconciled")
                }
                Err(kube::runtime::controller::Error::ReconcilerFailed(e, obj)) => {
                    tracing::warn!(controller = name, object = %obj, error = %e, "reconcile failed")
                }
                Err(e) => tracing::warn!(controller = name, error = %e, "controller"),
            }
        });
    futures::pin_mut!(reconciling, beside);
    let running = futures::future::select(reconciling, beside).map(|_| ());
    bounded_shutdown(name, running, stop, SHUTDOWN_GRACE).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::watcher::Event;

    use super::*;

    fn config_map(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Every subscriber gets every touched object, a deleted one included (kube-runtime's
    /// shared `ReflectHandle` drops deletions), from the first list on; a subscriber that went
    /// away stops no one; the cache is ready once listed.
    #[tokio::test]
    async fn every_subscriber_gets_every_change_deletions_included() {
        use futures::StreamExt;
        let events = futures::stream::iter([
            Event::Init,
            Event::InitApply(config_map("a")),
            Event::InitDone,
            Event::Apply(config_map("b")),
            Event::Delete(config_map("a")),
        ])
        .map(Ok)
        .chain(futures::stream::pending());
        let mut shared = SharedWatch::<ConfigMap>::of_events(events, "ConfigMap");
        let first = shared.subscribe();
        let second = shared.subscribe();
        drop(shared.subscribe());
        let running = tokio::spawn(shared.run());
        for subscription in [first, second] {
            let names: Vec<String> = tokio::time::timeout(
                Duration::from_secs(5),
                subscription
                    .changes
                    .take(3)
                    .map(|o| o.metadata.name.clone().unwrap())
                    .collect(),
            )
            .await
            .expect("three changes");
            assert_eq!(names, ["a", "b", "a"]);
            assert!(subscription.cache.ready.is_ready());
            let left: Vec<_> = subscription
                .cache
                .store
                .state()
                .iter()
                .map(|o| o.metadata.name.clone().unwrap())
                .collect();
            assert_eq!(left, ["b"]);
        }
        running.abort();
    }

    /// Many tasks waiting at once, and checks without waiting meanwhile: every waiter is woken
    /// when the store lists (kube-runtime's own readiness future wakes only the last poller).
    #[tokio::test]
    async fn every_waiter_is_woken_when_the_store_lists() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let ready = Readiness::of(&store);
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let ready = ready.clone();
                tokio::spawn(async move { ready.wait().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!ready.is_ready());
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitDone);
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("every waiter is woken")
                .unwrap();
        }
        assert!(ready.is_ready());
    }
}
