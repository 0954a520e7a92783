//! Pure event derivation: ScimUser / ScimGroup objects become WorkOS Directory Sync shaped
//! snapshots, and the difference between the last derived snapshot of a resource and its new
//! state becomes events. No Kubernetes API calls and no I/O.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use kube_scim_crds::{CONDITION_READY, Provider, ScimDirectory, ScimGroup, ScimUser, labels};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    User,
    Group,
    /// The directory itself: `dsync.activated` / `dsync.deleted`.
    Directory,
}

/// What events are derived from: the WorkOS-shaped object and, for users, the SCIM ids of the
/// groups whose membership label the user carries.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub kind: Kind,
    /// SCIM id (the object's name).
    pub id: String,
    pub data: Value,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub groups: BTreeSet<String>,
}

/// The last derived state of one resource and how many events were derived for it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Derived {
    pub snapshot: Snapshot,
    pub seq: u64,
}

/// One event as stored in the outbox; [`Event::wire`] is what is sent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Event {
    /// Stable idempotency id: the same on every redelivery.
    pub id: String,
    pub event: String,
    pub data: Value,
    pub created_at: String,
    /// `deprovisioned` / `reactivated` on a user update that changed `state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition: Option<String>,
    /// uid of the resource the event is about (stored in the outbox, not sent).
    #[serde(default)]
    pub resource: String,
}

impl Event {
    /// The JSON object sent to the receiver.
    pub fn wire(&self) -> Value {
        let mut object = json!({
            "id": self.id,
            "event": self.event,
            "data": self.data,
            "created_at": self.created_at,
        });
        if let Some(t) = &self.transition {
            object["transition"] = json!(t);
        }
        object
    }
}

/// The id of the `seq`-th event derived for resource `uid` by webhook `webhook_uid`.
pub fn event_id(webhook_uid: &str, uid: &str, seq: u64) -> String {
    let mut hash = Sha256::new();
    for part in [webhook_uid, uid, &seq.to_string()] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("evt_{hex}")
}

fn scim_resource(status: &impl Serialize, schema: &str) -> Value {
    let mut raw = serde_json::to_value(status).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut raw {
        // meta.lastModified changes with every write, also for membership; not an attribute.
        map.remove("meta");
        map.insert("schemas".into(), json!([schema]));
    }
    raw
}

fn memberships(labels_of: &BTreeMap<String, String>) -> BTreeSet<String> {
    labels_of
        .keys()
        .filter_map(|k| k.strip_prefix(labels::MEMBER_OF_PREFIX))
        .map(str::to_string)
        .collect()
}

/// A ScimUser as a WorkOS `directory_user`; None while it has no status.
pub fn user_snapshot(user: &ScimUser, directory_id: &str) -> Option<Snapshot> {
    let status = user.status.as_ref()?;
    let id = user.name_any();
    let emails: Vec<Value> = status
        .emails
        .iter()
        .map(|e| json!({"primary": e.primary.unwrap_or(false), "type": e.kind, "value": e.value}))
        .collect();
    let primary_email = status
        .emails
        .iter()
        .find(|e| e.primary == Some(true))
        .or(status.emails.first())
        .and_then(|e| e.value.clone());
    let name = status.name.clone().unwrap_or_default();
    let data = json!({
        "object": "directory_user",
        "id": id,
        "directory_id": directory_id,
        "organization_id": null,
        "idp_id": status.external_id.clone().unwrap_or_default(),
        "username": status.user_name,
        "email": primary_email,
        "emails": emails,
        "first_name": name.given_name,
        "last_name": name.family_name,
        "job_title": status.title,
        "state": if status.active { "active" } else { "inactive" },
        "custom_attributes": serde_json::to_value(&status.enterprise).unwrap_or(Value::Null),
        "raw_attributes": scim_resource(status, "urn:ietf:params:scim:schemas:core:2.0:User"),
        "created_at": status.meta.created,
        "updated_at": status.meta.last_modified,
    });
    Some(Snapshot {
        kind: Kind::User,
        id,
        data,
        groups: memberships(user.labels()),
    })
}

/// A ScimGroup as a WorkOS `directory_group`; None while it has no status.
pub fn group_snapshot(group: &ScimGroup, directory_id: &str) -> Option<Snapshot> {
    let status = group.status.as_ref()?;
    let id = group.name_any();
    let data = json!({
        "object": "directory_group",
        "id": id,
        "directory_id": directory_id,
        "organization_id": null,
        "idp_id": status.external_id.clone().unwrap_or_default(),
        "name": status.display_name,
        "raw_attributes": scim_resource(status, "urn:ietf:params:scim:schemas:core:2.0:Group"),
        "created_at": status.meta.created,
        "updated_at": status.meta.last_modified,
    });
    Some(Snapshot {
        kind: Kind::Group,
        id,
        data,
        groups: BTreeSet::new(),
    })
}

/// What a ScimDirectory means for its webhooks.
#[derive(Debug, Clone, PartialEq)]
pub enum DirectoryState {
    /// Not Ready (yet): a directory never seen Ready is not announced; one already announced
    /// stays announced (a Ready flap is no event).
    Pending,
    /// Ready: announced with `dsync.activated` the first time a webhook sees it so.
    Active(Snapshot),
    /// Being deleted (deletionTimestamp set): `dsync.deleted` if it was announced.
    Deleting,
}

/// The WorkOS `type` of a directory.
fn directory_type(provider: Provider) -> &'static str {
    match provider {
        Provider::Entra => "azure scim v2.0",
        Provider::Okta => "okta scim v2.0",
        Provider::Generic => "generic scim v2.0",
    }
}

/// A ScimDirectory as a WorkOS `directory`. Only fields that do not move with provisioning
/// (no counts, no status times): a directory change must not make the outbox dirty.
pub fn directory_state(dir: &ScimDirectory, directory_id: &str) -> DirectoryState {
    if dir.metadata.deletion_timestamp.is_some() {
        return DirectoryState::Deleting;
    }
    let ready = dir.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == CONDITION_READY && c.status == "True")
    });
    if !ready {
        return DirectoryState::Pending;
    }
    let created = dir
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string());
    let data = json!({
        "object": "directory",
        "id": directory_id,
        "organization_id": null,
        // WorkOS's unique key of the connection; here the directory's uid, which changes when
        // a directory of the same name is deleted and created again.
        "external_key": dir.uid().unwrap_or_default(),
        "name": dir.spec.display_name.clone().unwrap_or_else(|| dir.name_any()),
        "type": directory_type(dir.spec.provider),
        "state": "active",
        "domains": [],
        "created_at": created,
        "updated_at": created,
    });
    DirectoryState::Active(Snapshot {
        kind: Kind::Directory,
        id: directory_id.to_string(),
        data,
        groups: BTreeSet::new(),
    })
}

/// An event before it gets its id and time.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub event: String,
    pub data: Value,
    pub transition: Option<String>,
}

/// Old values of the fields that differ (ignoring `updated_at`); `raw_attributes` is compared
/// one attribute deeper, as WorkOS does.
fn previous_attributes(old: &Value, new: &Value) -> Map<String, Value> {
    let empty = Map::new();
    let old = old.as_object().unwrap_or(&empty);
    let new = new.as_object().unwrap_or(&empty);
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut previous = Map::new();
    for key in keys {
        if key == "updated_at" {
            continue;
        }
        let (before, after) = (
            old.get(key).unwrap_or(&Value::Null),
            new.get(key).unwrap_or(&Value::Null),
        );
        if before == after {
            continue;
        }
        if key == "raw_attributes" {
            let nested = previous_attributes(before, after);
            if !nested.is_empty() {
                previous.insert(key.clone(), Value::Object(nested));
            }
        } else {
            previous.insert(key.clone(), before.clone());
        }
    }
    previous
}

fn membership(event: &str, directory_id: &str, user: &Value, group: Value) -> Change {
    Change {
        event: event.into(),
        data: json!({"directory_id": directory_id, "user": user, "group": group}),
        transition: None,
    }
}

/// The events that take a resource from `old` to `new` (None: absent), in the order a receiver
/// should apply them. `group_data` gives the last known `directory_group` of a group id.
pub fn diff(
    old: Option<&Snapshot>,
    new: Option<&Snapshot>,
    directory_id: &str,
    group_data: &dyn Fn(&str) -> Value,
) -> Vec<Change> {
    let noun = |s: &Snapshot| match s.kind {
        Kind::User => "user",
        Kind::Group => "group",
        Kind::Directory => "directory",
    };
    let mut changes = Vec::new();
    if let Some(directory) = old.or(new).filter(|s| s.kind == Kind::Directory) {
        match (old, new) {
            (None, Some(_)) => changes.push(Change {
                event: "dsync.activated".into(),
                data: directory.data.clone(),
                transition: None,
            }),
            (Some(_), None) => {
                // WorkOS: the state before deletion is `deleting`, and no `domains`.
                let mut data = directory.data.clone();
                if let Value::Object(map) = &mut data {
                    map.remove("domains");
                    map.insert("state".into(), json!("deleting"));
                }
                changes.push(Change {
                    event: "dsync.deleted".into(),
                    data,
                    transition: None,
                });
            }
            // WorkOS has no directory update event.
            _ => {}
        }
        return changes;
    }
    let no_groups = BTreeSet::new();
    match (old, new) {
        (None, None) => {}
        (None, Some(new)) => changes.push(Change {
            event: format!("dsync.{}.created", noun(new)),
            data: new.data.clone(),
            transition: None,
        }),
        (Some(old), None) => {
            changes.push(Change {
                event: format!("dsync.{}.deleted", noun(old)),
                data: old.data.clone(),
                transition: None,
            });
            return changes;
        }
        (Some(old), Some(new)) => {
            let previous = previous_attributes(&old.data, &new.data);
            if !previous.is_empty() {
                let mut data = new.data.clone();
                data["previous_attributes"] = Value::Object(previous);
                let transition = match (old.data["state"].as_str(), new.data["state"].as_str()) {
                    (Some("active"), Some("inactive")) => Some("deprovisioned".to_string()),
                    (Some("inactive"), Some("active")) => Some("reactivated".to_string()),
                    _ => None,
                };
                changes.push(Change {
                    event: format!("dsync.{}.updated", noun(new)),
                    data,
                    transition,
                });
            }
        }
    }
    let Some(new) = new else { return changes };
    if new.kind == Kind::User {
        let before = old.map(|o| &o.groups).unwrap_or(&no_groups);
        for removed in before.difference(&new.groups) {
            changes.push(membership(
                "dsync.group.user_removed",
                directory_id,
                &new.data,
                group_data(removed),
            ));
        }
        for added in new.groups.difference(before) {
            changes.push(membership(
                "dsync.group.user_added",
                directory_id,
                &new.data,
                group_data(added),
            ));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_scim_crds::{DirectoryRef, ScimDirectory, ScimUserSpec, ScimUserStatus};

    fn user(active: bool, title: &str, groups: &[&str]) -> ScimUser {
        let mut u = ScimUser::new(
            "u1",
            ScimUserSpec {
                directory_ref: DirectoryRef { name: "d".into() },
            },
        );
        u.status = Some(ScimUserStatus {
            id: "u1".into(),
            user_name: "ada@example.com".into(),
            active,
            title: Some(title.into()),
            ..Default::default()
        });
        let mut l = BTreeMap::new();
        for g in groups {
            l.insert(labels::member_of(g), "true".to_string());
        }
        u.metadata.labels = Some(l);
        u
    }

    fn group_data(id: &str) -> Value {
        json!({"object": "directory_group", "id": id})
    }

    fn events(old: Option<&ScimUser>, new: Option<&ScimUser>) -> Vec<Change> {
        let o = old.and_then(|u| user_snapshot(u, "ns/d"));
        let n = new.and_then(|u| user_snapshot(u, "ns/d"));
        diff(o.as_ref(), n.as_ref(), "ns/d", &group_data)
    }

    fn names(changes: &[Change]) -> Vec<&str> {
        changes.iter().map(|c| c.event.as_str()).collect()
    }

    #[test]
    fn created_with_groups_then_memberships() {
        let c = events(None, Some(&user(true, "Eng", &["g1"])));
        assert_eq!(names(&c), ["dsync.user.created", "dsync.group.user_added"]);
        assert_eq!(c[1].data["group"]["id"], "g1");
        assert_eq!(c[1].data["user"]["username"], "ada@example.com");
    }

    #[test]
    fn update_carries_previous_attributes_and_deprovisioning_is_marked() {
        let c = events(
            Some(&user(true, "Eng", &[])),
            Some(&user(false, "Mgr", &[])),
        );
        assert_eq!(names(&c), ["dsync.user.updated"]);
        let previous = &c[0].data["previous_attributes"];
        assert_eq!(previous["state"], "active");
        assert_eq!(previous["job_title"], "Eng");
        assert_eq!(previous["raw_attributes"]["active"], true);
        assert_eq!(c[0].data["state"], "inactive");
        assert_eq!(c[0].transition.as_deref(), Some("deprovisioned"));
    }

    #[test]
    fn membership_only_changes_give_no_update() {
        let c = events(
            Some(&user(true, "Eng", &["g1"])),
            Some(&user(true, "Eng", &["g2"])),
        );
        assert_eq!(
            names(&c),
            ["dsync.group.user_removed", "dsync.group.user_added"]
        );
        assert_eq!(c[0].data["group"]["id"], "g1");
        assert_eq!(c[1].data["group"]["id"], "g2");
    }

    #[test]
    fn unchanged_gives_nothing_and_delete_gives_deleted() {
        let u = user(true, "Eng", &["g1"]);
        assert!(events(Some(&u), Some(&u)).is_empty());
        assert_eq!(names(&events(Some(&u), None)), ["dsync.user.deleted"]);
    }

    fn directory(ready: &str, deleting: bool) -> ScimDirectory {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let mut d = ScimDirectory::new(
            "contoso",
            kube_scim_crds::ScimDirectorySpec {
                display_name: Some("Contoso".into()),
                ..Default::default()
            },
        );
        d.metadata.uid = Some("dir-uid".into());
        let at = Time("2026-12-01T00:00:00Z".parse().unwrap());
        d.metadata.creation_timestamp = Some(at.clone());
        if deleting {
            d.metadata.deletion_timestamp = Some(at.clone());
        }
        d.status = Some(kube_scim_crds::ScimDirectoryStatus {
            conditions: vec![Condition {
                type_: CONDITION_READY.into(),
                status: ready.into(),
                reason: "R".into(),
                message: String::new(),
                observed_generation: None,
                last_transition_time: at,
            }],
            users: Some(3),
            ..Default::default()
        });
        d
    }

    #[test]
    fn a_directory_is_announced_when_ready_and_only_then() {
        assert_eq!(
            directory_state(&directory("False", false), "ns/contoso"),
            DirectoryState::Pending
        );
        assert_eq!(
            directory_state(&directory("True", true), "ns/contoso"),
            DirectoryState::Deleting
        );
        let DirectoryState::Active(snapshot) =
            directory_state(&directory("True", false), "ns/contoso")
        else {
            panic!("a Ready directory is active");
        };
        assert_eq!(snapshot.kind, Kind::Directory);
        let data = &snapshot.data;
        assert_eq!(data["object"], "directory");
        assert_eq!(data["id"], "ns/contoso");
        assert_eq!(data["name"], "Contoso");
        assert_eq!(data["type"], "azure scim v2.0");
        assert_eq!(data["state"], "active");
        assert_eq!(data["external_key"], "dir-uid");
        assert_eq!(data["domains"], json!([]));
        assert_eq!(data["created_at"], "2026-12-01T00:00:00Z");
        // Provisioning moves the counts, not the snapshot: no outbox write per SCIM write.
        let mut busier = directory("True", false);
        busier.status.as_mut().unwrap().users = Some(4000);
        assert_eq!(
            directory_state(&busier, "ns/contoso"),
            DirectoryState::Active(snapshot)
        );
    }

    #[test]
    fn directory_events_are_activated_and_deleted_only() {
        let DirectoryState::Active(d) = directory_state(&directory("True", false), "ns/contoso")
        else {
            panic!("a Ready directory is active");
        };
        let activated = diff(None, Some(&d), "ns/contoso", &group_data);
        assert_eq!(names(&activated), ["dsync.activated"]);
        assert_eq!(activated[0].data, d.data);
        let mut renamed = d.clone();
        renamed.data["name"] = json!("Contoso EMEA");
        assert!(diff(Some(&d), Some(&renamed), "ns/contoso", &group_data).is_empty());
        let deleted = diff(Some(&renamed), None, "ns/contoso", &group_data);
        assert_eq!(names(&deleted), ["dsync.deleted"]);
        assert_eq!(deleted[0].data["state"], "deleting");
        assert_eq!(deleted[0].data["name"], "Contoso EMEA");
        assert_eq!(deleted[0].data["object"], "directory");
        assert!(deleted[0].data.get("domains").is_none());
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(event_id("w", "u", 1), event_id("w", "u", 1));
        assert_ne!(event_id("w", "u", 1), event_id("w", "u", 2));
        assert_ne!(event_id("w", "u", 1), event_id("w2", "u", 1));
        assert_eq!(event_id("w", "u", 1).len(), 4 + 32);
    }
}
