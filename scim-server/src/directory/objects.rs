//! The ScimUser / ScimGroup objects the service writes: names (SCIM ids), labels, the
//! object of a new resource and the merge patch of a change.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource as _;
use kube::api::DynamicObject;
use kube_scim_crds::{
    DirectoryRef, ScimDirectory, ScimGroup, ScimGroupSpec, ScimUser, ScimUserSpec, labels,
};
use scim_protocol::{Resource, ResourceKind, ScimError};
use serde_json::{Value, json};

use super::DirRef;
use crate::cache::Entry;
use crate::convert::{canonical_status, merge_diff, status_json};

/// Fixed namespace of the UUIDv5 ids (random, generated once for kube-scim).
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b75_6265_7363_696d_8a1c_4f0e_2d9b_7a31);

/// How many deterministic ids are tried when earlier ones are held by renamed resources.
pub const ID_CANDIDATES: u32 = 8;

/// Deterministic SCIM id of the `attempt`-th candidate for a unique key: a POST re-sent after a
/// lost answer lands on the object it created the first time, on any replica. The directory's
/// uid (which a SCIM client never sees) is part of the name, so a client cannot compute the id
/// another directory gives a userName and test whether it exists there.
pub fn candidate_id(
    kind: ResourceKind,
    ns: &str,
    dir: &str,
    dir_uid: &str,
    key: &str,
    attempt: u32,
) -> String {
    let name = format!("{}\n{ns}\n{dir}\n{dir_uid}\n{key}\n{attempt}", kind.name());
    uuid::Uuid::new_v5(&ID_NAMESPACE, name.as_bytes()).to_string()
}

/// The labels consumers select on: the directory and, for users, whether they are active.
pub fn managed_labels(kind: ResourceKind, dir: &str, r: &Resource) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([(labels::DIRECTORY.to_string(), dir.to_string())]);
    if kind == ResourceKind::User {
        let active = r.active().unwrap_or(true);
        l.insert(labels::ACTIVE.to_string(), active.to_string());
    }
    l
}

/// The object of a new resource, owned (without blocking) by its directory. `status` is the
/// canonical `.status` from [`status_json`].
pub fn new_object(
    kind: ResourceKind,
    dir: DirRef<'_>,
    dir_uid: &str,
    id: &str,
    r: &Resource,
    status: Value,
) -> Result<DynamicObject, ScimError> {
    let metadata = ObjectMeta {
        name: Some(id.to_string()),
        namespace: Some(dir.ns.to_string()),
        labels: Some(managed_labels(kind, dir.name, r)),
        owner_references: Some(vec![OwnerReference {
            api_version: ScimDirectory::api_version(&()).into_owned(),
            kind: ScimDirectory::kind(&()).into_owned(),
            name: dir.name.to_string(),
            uid: dir_uid.to_string(),
            controller: Some(false),
            block_owner_deletion: Some(false),
        }]),
        ..ObjectMeta::default()
    };
    let directory_ref = DirectoryRef {
        name: dir.name.to_string(),
    };
    let typed = match kind {
        ResourceKind::User => serde_json::to_value(ScimUser {
            metadata,
            spec: ScimUserSpec { directory_ref },
            status: None,
        }),
        ResourceKind::Group => serde_json::to_value(ScimGroup {
            metadata,
            spec: ScimGroupSpec {
                directory_ref,
                member_rollout: None,
            },
            status: None,
        }),
    };
    let mut obj: DynamicObject = typed
        .and_then(serde_json::from_value)
        .map_err(|e| ScimError::Internal(format!("object: {e}")))?;
    obj.data["status"] = status;
    Ok(obj)
}

// Changes are JSON merge patches, not typed objects: removing a label or attribute is a `null`,
// which the typed labels map and status types cannot express.

/// The merge patch turning the held object (`entry`, read as `oldr`) into `newr`; its
/// resourceVersion makes the write a compare-and-swap.
pub fn attribute_patch(
    dir: DirRef<'_>,
    entry: &Entry,
    oldr: &Resource,
    newr: &Resource,
    now: &str,
) -> Result<Value, ScimError> {
    let old_status = canonical_status(oldr, &entry.created, &entry.last_modified)?;
    let new_status = status_json(newr, &entry.created, now)?;
    let mut meta = json!({ "resourceVersion": entry.rv_str });
    if entry.kind == ResourceKind::User && newr.active() != oldr.active() {
        meta["labels"] = json!(managed_labels(entry.kind, dir.name, newr));
    }
    let mut patch = json!({ "metadata": meta });
    if let Some(d) = merge_diff(&old_status, &new_status) {
        patch["status"] = d;
    }
    Ok(patch)
}

/// The merge patch that changes nothing but holds only if `entry` is still the stored version:
/// proves a change the cache found to be a no-op is one.
pub fn precondition_patch(entry: &Entry) -> Value {
    json!({"metadata": {"resourceVersion": entry.rv_str}})
}

/// Adds to `patch` the deletion guard's mark: `Some(operation)` holds that operation (see
/// [`kube_scim_crds::HELD_LABEL`]), `None` removes the mark.
pub fn set_hold(patch: &mut Value, hold: Option<&str>, now: &str) {
    let (label, since) = match hold {
        Some(op) => (Value::from(op), Value::from(now)),
        None => (Value::Null, Value::Null),
    };
    let meta = &mut patch["metadata"];
    meta["labels"][kube_scim_crds::HELD_LABEL] = label;
    meta["annotations"][kube_scim_crds::HELD_SINCE_ANNOTATION] = since;
}

/// The merge patch that sets (`on`) or removes a membership label, with the member `display`
/// kept for the group (`None` removes a kept one).
pub fn membership_patch(group: &str, on: bool, display: Option<&str>) -> Value {
    let value = if on { Value::from("true") } else { Value::Null };
    let display = match display {
        Some(d) if on => Value::from(d),
        _ => Value::Null,
    };
    json!({"metadata": {
        "labels": { labels::member_of(group): value },
        "annotations": { labels::member_display(group): display }
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_user_is_a_scim_user_owned_by_its_directory_without_blocking_it() {
        let dir = DirRef {
            ns: "ns",
            name: "d",
        };
        let r =
            scim_protocol::validate_create(ResourceKind::User, &json!({"userName": "a"})).unwrap();
        let obj = new_object(
            ResourceKind::User,
            dir,
            "uid",
            "id1",
            &r,
            json!({"userName": "a"}),
        )
        .unwrap();
        let v = serde_json::to_value(&obj).unwrap();
        assert_eq!(v["apiVersion"], "kubescim.io/v1alpha1");
        assert_eq!(v["kind"], "ScimUser");
        assert_eq!(v["spec"]["directoryRef"]["name"], "d");
        assert_eq!(v["status"]["userName"], "a");
        assert_eq!(v["metadata"]["labels"][labels::ACTIVE], "true");
        let owner = &v["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["uid"].as_str()),
            (Some("ScimDirectory"), Some("uid"))
        );
        assert_eq!(owner["blockOwnerDeletion"], false);
    }
}
