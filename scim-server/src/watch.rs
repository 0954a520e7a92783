//! Watchers that feed the cache: ScimDirectories, ScimUsers and ScimGroups, in every watched
//! namespace (or cluster-wide). Objects are converted on arrival; the raw objects are not kept
//! (and their managedFields not even parsed: [`StoredObject`]).

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use kube::api::ApiResource;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use kube_scim_crds::{ScimDirectory, ScimGroup, ScimUser};
use scim_protocol::ResourceKind;

use crate::cache::{Cache, directory_of, rv_num};
use crate::stored_object::StoredObject;

/// The apiserver resource of a kind.
pub fn api_resource(kind: ResourceKind) -> ApiResource {
    match kind {
        ResourceKind::User => ApiResource::erase::<ScimUser>(&()),
        ResourceKind::Group => ApiResource::erase::<ScimGroup>(&()),
    }
}

/// Starts every watcher; the cache reports synced once all of them listed once.
pub fn spawn(client: Client, cache: Arc<Cache>, namespaces: &[String]) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().cloned().map(Some).collect()
    };
    for scope in scopes {
        for _ in 0..3 {
            cache.register_watcher();
        }
        tokio::spawn(watch_directories(
            client.clone(),
            cache.clone(),
            scope.clone(),
        ));
        for kind in [ResourceKind::User, ResourceKind::Group] {
            tokio::spawn(watch_objects(
                client.clone(),
                cache.clone(),
                scope.clone(),
                kind,
            ));
        }
    }
}

async fn watch_directories(client: Client, cache: Arc<Cache>, scope: Option<String>) {
    let api: Api<ScimDirectory> = match &scope {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut synced = false;
    let mut seen = HashSet::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => seen.clear(),
            Ok(Event::InitApply(d)) => {
                if let (Some(ns), Some(n)) = (&d.metadata.namespace, &d.metadata.name) {
                    seen.insert((ns.clone(), n.clone()));
                }
                cache.apply_directory(&d);
            }
            Ok(Event::InitDone) => {
                cache.retain_directories(scope.as_deref(), &seen);
                seen.clear();
                if !synced {
                    synced = true;
                    cache.watcher_synced();
                    tracing::info!(namespace = ?scope, "directories synced");
                }
            }
            Ok(Event::Apply(d)) => cache.apply_directory(&d),
            Ok(Event::Delete(d)) => {
                if let (Some(ns), Some(n)) = (&d.metadata.namespace, &d.metadata.name) {
                    cache.delete_directory(ns, n);
                }
            }
            Err(e) => tracing::warn!(error = %e, "ScimDirectory watch error (retrying)"),
        }
    }
}

async fn watch_objects(
    client: Client,
    cache: Arc<Cache>,
    scope: Option<String>,
    kind: ResourceKind,
) {
    let ar = api_resource(kind);
    let api: Api<StoredObject> = match &scope {
        Some(ns) => Api::namespaced_with(client, ns, &ar),
        None => Api::all_with(client, &ar),
    };
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut synced = false;
    let mut seen = HashSet::new();
    let mut max_rv = 0u64;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => {
                seen.clear();
                max_rv = 0;
            }
            Ok(Event::InitApply(o)) => {
                let o = o.into_inner();
                if let (Some(ns), Some(n)) = (&o.metadata.namespace, &o.metadata.name) {
                    seen.insert((ns.clone(), n.clone()));
                }
                max_rv = max_rv.max(rv_num(o.metadata.resource_version.as_deref().unwrap_or("")));
                cache.apply_object(kind, &o);
            }
            Ok(Event::InitDone) => {
                cache.retain_objects(kind, scope.as_deref(), &seen, max_rv);
                seen = HashSet::new();
                if !synced {
                    synced = true;
                    cache.watcher_synced();
                    tracing::info!(namespace = ?scope, kind = kind.name(), "objects synced");
                }
            }
            Ok(Event::Apply(o)) => {
                cache.apply_object(kind, &o.into_inner());
            }
            Ok(Event::Delete(o)) => {
                let o = o.into_inner();
                if let (Some(ns), Some(n), Some(dir)) =
                    (&o.metadata.namespace, &o.metadata.name, directory_of(&o))
                {
                    let rv = rv_num(o.metadata.resource_version.as_deref().unwrap_or(""));
                    cache.delete_object(kind, ns, &dir, n, rv);
                }
            }
            Err(e) => tracing::warn!(error = %e, kind = kind.name(), "watch error (retrying)"),
        }
    }
}
