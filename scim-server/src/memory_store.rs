//! An in-memory [`Storage`] for unit tests of the directory service: the apiserver's
//! semantics that the service relies on (AlreadyExists, resourceVersion preconditions on merge
//! patches, NotFound), without a cluster.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use kube::api::DynamicObject;
use scim_protocol::ResourceKind;
use serde_json::Value;

use crate::storage::{ClaimStore, OnceClaim, Storage, StoreError};

type Key = (ResourceKind, String, String);

/// Objects in a map; every write gets the next resourceVersion.
#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<HashMap<Key, Value>>,
    revision: AtomicU64,
    /// Writes so far (creates, patches, deletes), for tests that count round trips.
    pub writes: AtomicU64,
    /// Reads so far.
    pub reads: AtomicU64,
    /// Patch calls so far, including those that changed nothing.
    pub patches: AtomicU64,
    /// One-time claims: (namespace, name) to expiry.
    claims: Mutex<HashMap<(String, String), i64>>,
}

/// RFC 7386: `null` removes a key, objects merge recursively, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn has_finalizers(v: &Value) -> bool {
    v["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

impl MemoryStore {
    fn stamp(&self, v: &mut Value) -> Result<DynamicObject, StoreError> {
        let rv = self.revision.fetch_add(1, Ordering::SeqCst) + 1;
        v["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        self.writes.fetch_add(1, Ordering::SeqCst);
        serde_json::from_value(v.clone()).map_err(|e| StoreError::Rejected(e.to_string()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Value>> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts an object in place as another writer (another replica) would.
    pub fn insert_behind_the_cache(
        &self,
        kind: ResourceKind,
        obj: &DynamicObject,
    ) -> DynamicObject {
        let mut v = serde_json::to_value(obj).expect("object serializes");
        let key = (
            kind,
            obj.metadata.namespace.clone().unwrap_or_default(),
            obj.metadata.name.clone().unwrap_or_default(),
        );
        let stored = self.stamp(&mut v).expect("object deserializes");
        self.lock().insert(key, v);
        stored
    }
}

impl Storage for MemoryStore {
    async fn create(
        &self,
        kind: ResourceKind,
        ns: &str,
        obj: DynamicObject,
    ) -> Result<DynamicObject, StoreError> {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let key = (kind, ns.to_string(), name);
        if self.lock().contains_key(&key) {
            return Err(StoreError::AlreadyExists);
        }
        let mut v = serde_json::to_value(&obj).map_err(|e| StoreError::Rejected(e.to_string()))?;
        let stored = self.stamp(&mut v)?;
        self.lock().insert(key, v);
        Ok(stored)
    }

    async fn patch(
        &self,
        kind: ResourceKind,
        ns: &str,
        name: &str,
        body: &Value,
    ) -> Result<DynamicObject, StoreError> {
        self.patches.fetch_add(1, Ordering::SeqCst);
        let mut objects = self.lock();
        let current = objects
            .get_mut(&(kind, ns.to_string(), name.to_string()))
            .ok_or(StoreError::NotFound)?;
        if let Some(expected) = body["metadata"]["resourceVersion"].as_str()
            && current["metadata"]["resourceVersion"].as_str() != Some(expected)
        {
            return Err(StoreError::Conflict);
        }
        let before = current.clone();
        merge_patch(current, body);
        if *current == before {
            // The apiserver stores nothing for a patch that changes nothing.
            return serde_json::from_value(before).map_err(|e| StoreError::Rejected(e.to_string()));
        }
        let stored = self.stamp(current)?;
        if !current["metadata"]["deletionTimestamp"].is_null() && !has_finalizers(current) {
            // The last finalizer of a deleted object is gone: so is the object.
            objects.remove(&(kind, ns.to_string(), name.to_string()));
        }
        Ok(stored)
    }

    async fn get(
        &self,
        kind: ResourceKind,
        ns: &str,
        name: &str,
    ) -> Result<Option<DynamicObject>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.lock()
            .get(&(kind, ns.to_string(), name.to_string()))
            .map(|v| {
                serde_json::from_value(v.clone()).map_err(|e| StoreError::Rejected(e.to_string()))
            })
            .transpose()
    }

    async fn list_labelled(
        &self,
        kind: ResourceKind,
        ns: &str,
        key: &str,
    ) -> Result<Vec<DynamicObject>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.lock()
            .iter()
            .filter(|((k, n, _), v)| {
                *k == kind && n == ns && v["metadata"]["labels"][key].as_str() == Some("true")
            })
            .map(|(_, v)| {
                serde_json::from_value(v.clone()).map_err(|e| StoreError::Rejected(e.to_string()))
            })
            .collect()
    }

    async fn names_labelled(
        &self,
        kind: ResourceKind,
        ns: &str,
        key: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let mut names: Vec<String> = self
            .lock()
            .iter()
            .filter(|((k, n, _), v)| {
                *k == kind && n == ns && !v["metadata"]["labels"][key].is_null()
            })
            .map(|((_, _, name), _)| name.clone())
            .collect();
        names.sort();
        names.truncate(limit);
        Ok(names)
    }

    async fn delete(
        &self,
        kind: ResourceKind,
        ns: &str,
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        let key = (kind, ns.to_string(), name.to_string());
        let mut objects = self.lock();
        let current = objects.get_mut(&key).ok_or(StoreError::NotFound)?;
        if has_finalizers(current) {
            // As the apiserver: only marked; the object stays until its finalizers are gone.
            if current["metadata"]["deletionTimestamp"].is_null() {
                current["metadata"]["deletionTimestamp"] = Value::from("2026-01-01T00:00:00Z");
                let stored = self.stamp(current)?;
                return Ok(stored.metadata.resource_version);
            }
            return Ok(current["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string));
        }
        let removed = objects.remove(&key).ok_or(StoreError::NotFound)?;
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(removed["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string))
    }
}

impl MemoryStore {
    /// Claims held, expired or not.
    pub fn claim_count(&self) -> usize {
        self.claims.lock().unwrap().len()
    }
}

impl ClaimStore for MemoryStore {
    fn claim<'a>(
        &'a self,
        ns: &'a str,
        claim: &'a OnceClaim,
    ) -> futures::future::BoxFuture<'a, Result<(), StoreError>> {
        let mut claims = self.claims.lock().unwrap();
        let key = (ns.to_string(), claim.name.clone());
        let r = match claims.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => Err(StoreError::AlreadyExists),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(claim.expires);
                Ok(())
            }
        };
        Box::pin(std::future::ready(r))
    }

    fn sweep<'a>(
        &'a self,
        ns: &'a str,
        now: i64,
        limit: usize,
    ) -> futures::future::BoxFuture<'a, Result<usize, StoreError>> {
        let mut claims = self.claims.lock().unwrap();
        let expired: Vec<_> = claims
            .iter()
            .filter(|((n, _), exp)| n == ns && **exp < now)
            .map(|(k, _)| k.clone())
            .take(limit)
            .collect();
        for k in &expired {
            claims.remove(k);
        }
        Box::pin(std::future::ready(Ok(expired.len())))
    }
}
