//! [`StoredObject`]: a ScimUser or ScimGroup as the server reads it from the apiserver (watch,
//! list, write responses), parsed without its managedFields.
//!
//! Why not `DynamicObject` itself: its `#[serde(flatten)]` body is buffered twice (serde's
//! `Content`, then `Value`), and its `ObjectMeta` parses managedFields into owned values that the
//! server drops unread. Every replica parses every write of its namespaces from the watch, so
//! this is on the hottest path (measured together with the switch to mimalloc, the server's CPU
//! per watched create went from 0.06-0.10 ms to 0.04-0.07 ms; docs/scim-server.md, Benchmark).
//! The result is still a `DynamicObject`, so the cache and the directory service see the type
//! they always had.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{ApiResource, DynamicObject, TypeMeta};
use kube::core::DynamicResourceScope;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// A ScimUser / ScimGroup without managedFields; [`StoredObject::into_inner`] gives the object.
#[derive(Clone, Debug)]
pub struct StoredObject(DynamicObject);

impl StoredObject {
    /// The object to send (what is sent is exactly `obj`).
    pub fn new(obj: DynamicObject) -> Self {
        StoredObject(obj)
    }

    /// The object read.
    pub fn into_inner(self) -> DynamicObject {
        self.0
    }

    /// The object, borrowed.
    pub fn inner(&self) -> &DynamicObject {
        &self.0
    }
}

/// The metadata the server uses; every other field (managedFields first of all) is skipped
/// while parsing.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    generation: Option<i64>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    finalizers: Option<Vec<String>>,
    owner_references: Option<Vec<OwnerReference>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    api_version: Option<String>,
    kind: Option<String>,
    metadata: WireMeta,
    spec: Option<Value>,
    status: Option<Value>,
}

impl<'de> Deserialize<'de> for StoredObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        let m = w.metadata;
        let metadata = ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            resource_version: m.resource_version,
            generation: m.generation,
            creation_timestamp: m.creation_timestamp,
            deletion_timestamp: m.deletion_timestamp,
            labels: m.labels,
            annotations: m.annotations,
            finalizers: m.finalizers,
            owner_references: m.owner_references,
            ..ObjectMeta::default()
        };
        let mut data = Map::new();
        if let Some(spec) = w.spec {
            data.insert("spec".into(), spec);
        }
        if let Some(status) = w.status {
            data.insert("status".into(), status);
        }
        let types = match (w.api_version, w.kind) {
            (Some(api_version), Some(kind)) => Some(TypeMeta { api_version, kind }),
            _ => None,
        };
        Ok(StoredObject(DynamicObject {
            types,
            metadata,
            data: Value::Object(data),
        }))
    }
}

impl Serialize for StoredObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl kube::Resource for StoredObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        DynamicObject::group(dt)
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        DynamicObject::version(dt)
    }

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        DynamicObject::kind(dt)
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        DynamicObject::api_version(dt)
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        DynamicObject::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.0.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_what_the_server_uses_and_skips_managed_fields() {
        let wire = json!({
            "apiVersion": "kubescim.io/v1alpha1", "kind": "ScimUser",
            "metadata": {
                "name": "u1", "namespace": "ns", "uid": "x", "resourceVersion": "42",
                "generation": 1, "creationTimestamp": "2026-12-06T07:17:36Z",
                "deletionTimestamp": "2026-12-06T08:00:00Z",
                "labels": {"kubescim.io/directory": "d"},
                "annotations": {"a": "b"}, "finalizers": ["f"],
                "ownerReferences": [{"apiVersion": "kubescim.io/v1alpha1", "kind": "ScimDirectory",
                    "name": "d", "uid": "y"}],
                "managedFields": [{"manager": "m", "operation": "Update",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}]
            },
            "spec": {"directoryRef": {"name": "d"}},
            "status": {"userName": "a@b", "meta": {"created": "c"}}
        });
        let read = serde_json::from_value::<StoredObject>(wire.clone())
            .unwrap()
            .into_inner();
        let mut full: DynamicObject = serde_json::from_value(wire).unwrap();
        assert!(full.metadata.managed_fields.take().is_some());
        assert_eq!(read.metadata, full.metadata);
        assert_eq!(read.types, full.types);
        assert_eq!(read.data, full.data);
    }

    #[test]
    fn sends_the_object_unchanged() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "kubescim.io/v1alpha1", "kind": "ScimGroup",
            "metadata": {"name": "g", "namespace": "ns"},
            "spec": {"directoryRef": {"name": "d"}}
        }))
        .unwrap();
        assert_eq!(
            serde_json::to_value(StoredObject::new(obj.clone())).unwrap(),
            serde_json::to_value(obj).unwrap()
        );
    }
}
