//! Watch plumbing the controllers share: an `Api` scoped to the watched namespace (or all), and
//! a watch kept in a reflector store.

use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

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
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let stream =
        reflector::reflector(writer, watcher(api, config).default_backoff()).touched_objects();
    (reader, stream)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::watcher::Event;

    use super::*;

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
