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
