//! The ScimUser / ScimGroup objects the service writes: names (SCIM ids), labels, the
//! object of a new resource and the merge patch of a change.

use kube::api::DynamicObject;
use kube_scim_crds::labels;
use scim_protocol::{Resource, ResourceKind, ScimError};
use serde_json::{Map, Value, json};

use super::DirRef;
use crate::cache::Entry;
use crate::convert::{merge_diff, status_json};

/// Fixed namespace of the UUIDv5 ids (random, generated once for kube-scim).
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b75_6265_7363_696d_8a1c_4f0e_2d9b_7a31);

/// How many deterministic ids are tried when earlier ones are held by renamed resources.
pub const ID_CANDIDATES: u32 = 8;

/// Deterministic SCIM id of the `attempt`-th candidate for a unique key: a POST re-sent after a
/// lost answer lands on the object it created the first time.
pub fn candidate_id(kind: ResourceKind, ns: &str, dir: &str, key: &str, attempt: u32) -> String {
    let name = format!("{}\n{ns}\n{dir}\n{key}\n{attempt}", kind.name());
    uuid::Uuid::new_v5(&ID_NAMESPACE, name.as_bytes()).to_string()
}

/// The labels consumers select on: the directory and, for users, whether they are active.
pub fn managed_labels(kind: ResourceKind, dir: &str, r: &Resource) -> Map<String, Value> {
    let mut l = Map::new();
    l.insert(labels::DIRECTORY.into(), dir.into());
    if kind == ResourceKind::User {
        let active = r.active().unwrap_or(true);
        l.insert(labels::ACTIVE.into(), active.to_string().into());
    }
    l
}

/// The object of a new resource, owned (without blocking) by its directory.
pub fn new_object(
    kind: ResourceKind,
    dir: DirRef<'_>,
    dir_uid: &str,
    id: &str,
    r: &Resource,
    status: Value,
) -> Result<DynamicObject, ScimError> {
    let api_version = format!("{}/{}", kube_scim_crds::GROUP, kube_scim_crds::VERSION);
    let v = json!({
        "apiVersion": api_version,
        "kind": match kind { ResourceKind::User => "ScimUser", ResourceKind::Group => "ScimGroup" },
        "metadata": {
            "name": id,
            "namespace": dir.ns,
            "labels": managed_labels(kind, dir.name, r),
            "ownerReferences": [{
                "apiVersion": api_version,
                "kind": "ScimDirectory",
                "name": dir.name,
                "uid": dir_uid,
                "controller": false,
                "blockOwnerDeletion": false
            }]
        },
        "spec": { "directoryRef": { "name": dir.name } },
        "status": status,
    });
    serde_json::from_value(v).map_err(|e| ScimError::Internal(format!("object: {e}")))
}

/// The merge patch turning the held object (`entry`, read as `oldr`) into `newr`; its
/// resourceVersion makes the write a compare-and-swap.
pub fn attribute_patch(
    dir: DirRef<'_>,
    entry: &Entry,
    oldr: &Resource,
    newr: &Resource,
    now: &str,
) -> Result<Value, ScimError> {
    let old_status = status_json(oldr, &entry.created, &entry.last_modified)?;
    let new_status = status_json(newr, &entry.created, now)?;
    let mut meta = json!({ "resourceVersion": entry.rv_str });
    if entry.kind == ResourceKind::User && newr.active() != oldr.active() {
        meta["labels"] = Value::Object(managed_labels(entry.kind, dir.name, newr));
    }
    let mut patch = json!({ "metadata": meta });
    if let Some(d) = merge_diff(&old_status, &new_status) {
        patch["status"] = d;
    }
    Ok(patch)
}

/// The merge patch that sets (`on`) or removes a membership label.
pub fn membership_patch(group: &str, on: bool) -> Value {
    let value = if on { Value::from("true") } else { Value::Null };
    json!({"metadata": {"labels": { labels::member_of(group): value }}})
}
