//! What the directory service's tests share: a service over the in-memory store (milliseconds
//! per scenario, no cluster), two replicas over one store, and readers of what was stored.

pub(super) use std::sync::Arc;
pub(super) use std::sync::atomic::Ordering;

pub(super) use scim_protocol::{ListQuery, PatchRequest, Resource, ResourceKind, ScimError};
pub(super) use serde_json::{Value, json};

pub(super) use super::*;
pub(super) use crate::cache::{Cache, DirInfo};
pub(super) use crate::memory_store::MemoryStore;
pub(super) use crate::render::Locations;
pub(super) use crate::storage::StoreError;

pub(super) const DIR: DirRef<'static> = DirRef {
    ns: "ns",
    name: "d",
};

pub(super) fn keys() -> kube_scim_runtime::verifier::SharedKeyRing {
    kube_scim_runtime::verifier::SharedKeyRing::new(
        kube_scim_runtime::verifier::KeyRing::from_keys([(
            "k1",
            b"directory-test-key-0123456789abcdef".to_vec(),
        )])
        .unwrap(),
    )
}

pub(super) fn service() -> DirectoryService<MemoryStore> {
    service_inline(1000)
}

/// A service that writes at most `inline` membership labels inside a request.
pub(super) fn service_inline(inline: usize) -> DirectoryService<MemoryStore> {
    DirectoryService::new(
        Arc::new(Cache::default()),
        MemoryStore::default(),
        Limits {
            max_results: 100,
            member_write_concurrency: 4,
            conflict_retries: 3,
            inline_member_writes: inline,
        },
        keys(),
    )
}

pub(super) fn at() -> Locations {
    Locations::new("https://scim.test/scim/v2/ns/d".into())
}

pub(super) fn owner() -> DirInfo {
    DirInfo {
        uid: "uid-1".into(),
        ready: true,
        ..DirInfo::default()
    }
}

pub(super) async fn user(s: &DirectoryService<MemoryStore>, name: &str) -> String {
    let r = s
        .create(
            DIR,
            &owner(),
            ResourceKind::User,
            &json!({"userName": name}),
            &at(),
        )
        .await
        .unwrap();
    r.id().unwrap().to_string()
}

pub(super) async fn group(
    s: &DirectoryService<MemoryStore>,
    name: &str,
    members: &[&str],
) -> String {
    let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    let body = json!({"displayName": name, "members": members});
    let r = s
        .create(DIR, &owner(), ResourceKind::Group, &body, &at())
        .await
        .unwrap();
    r.id().unwrap().to_string()
}

pub(super) fn patch(body: Value) -> Change {
    Change::Patch(PatchRequest::parse(&body).unwrap())
}

pub(super) fn member_ids(r: &Resource) -> Vec<String> {
    r.members().into_iter().map(|m| m.value).collect()
}

pub(super) fn scim_type(e: Error) -> Option<&'static str> {
    match e {
        Error::Scim(e) => e.scim_type(),
        other => panic!("not a SCIM error: {other:?}"),
    }
}

pub(super) fn member_labels(obj: &kube::api::DynamicObject) -> Vec<String> {
    obj.metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_keys()
        .filter(|k| k.starts_with(kube_scim_crds::labels::MEMBER_OF_PREFIX))
        .collect()
}

/// Two replicas over one store, whose caches see only their own writes (no watch at all: the
/// worst case of a watch that lags).
pub(super) fn replicas() -> (
    DirectoryService<Arc<MemoryStore>>,
    DirectoryService<Arc<MemoryStore>>,
    Arc<MemoryStore>,
) {
    let store = Arc::new(MemoryStore::default());
    let limits = Limits {
        max_results: 100,
        member_write_concurrency: 4,
        conflict_retries: 3,
        inline_member_writes: 1000,
    };
    let one = || DirectoryService::new(Arc::new(Cache::default()), store.clone(), limits, keys());
    (one(), one(), store)
}

pub(super) async fn stored(
    store: &MemoryStore,
    kind: ResourceKind,
    id: &str,
) -> kube::api::DynamicObject {
    store.get(kind, "ns", id).await.unwrap().unwrap()
}

pub(super) fn labelled(obj: &kube::api::DynamicObject, group: &str) -> bool {
    obj.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(&kube_scim_crds::labels::member_of(group)))
        .is_some_and(|v| v == "true")
}

pub(super) async fn create_in<S: Storage>(
    s: &DirectoryService<S>,
    dir: DirRef<'_>,
    kind: ResourceKind,
    body: Value,
) -> String {
    let r = s.create(dir, &owner(), kind, &body, &at()).await.unwrap();
    r.id().unwrap().to_string()
}

/// Makes `s` see the stored object as its watch eventually would.
pub(super) async fn sync<S: Storage>(
    s: &DirectoryService<S>,
    store: &MemoryStore,
    kind: ResourceKind,
    id: &str,
) {
    s.cache().apply_object(kind, &stored(store, kind, id).await);
}

pub(super) fn rollout_of(obj: &kube::api::DynamicObject) -> Option<Vec<String>> {
    let list = obj.data["spec"]["memberRollout"]["members"].as_array()?;
    Some(
        list.iter()
            .map(|m| m["value"].as_str().unwrap().to_string())
            .collect(),
    )
}

/// The label writes the worker made in `s`, by change (`add` / `remove`).
pub(super) fn worker_writes(s: &DirectoryService<MemoryStore>, change: &str) -> u64 {
    s.label_writes
        .get_or_create(&LabelWriteLabels {
            directory: "ns/d".into(),
            change: change.into(),
        })
        .get()
}
