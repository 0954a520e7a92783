//! [`ScimGroup`]: a group provisioned through SCIM; its members carry its membership label.
//! [`MemberRollout`]: its member list while the labels are being written.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{DirectoryRef, ResourceMeta, preserved_object_map};

/// A group provisioned by an identity provider through SCIM. Its members are the ScimUsers and
/// ScimGroups that carry the group's membership label (see the `kubescim.io` labels).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubescim.io",
    version = "v1alpha1",
    kind = "ScimGroup",
    doc = "A group provisioned through SCIM. Written only by the SCIM server; members carry its member.kubescim.io/<id> label.",
    namespaced,
    status = "ScimGroupStatus",
    shortname = "scimgroup",
    shortname = "scg",
    category = "scim",
    printcolumn = r#"{"name":"DisplayName","type":"string","jsonPath":".status.displayName"}"#,
    printcolumn = r#"{"name":"Directory","type":"string","jsonPath":".spec.directoryRef.name"}"#,
    printcolumn = r#"{"name":"External ID","type":"string","priority":1,"jsonPath":".status.externalId"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ScimGroupSpec {
    /// The ScimDirectory this group was provisioned through.
    pub directory_ref: DirectoryRef,
    /// Set only while a replaced member list is being written to the members' labels: the
    /// group's new member list (see `docs/consumers.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_rollout: Option<MemberRollout>,
}

/// The SCIM Group resource (RFC 7643 §4.2). Members are not stored here: each member carries the
/// group's membership label, so no object grows with the size of a group.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimGroupStatus {
    /// SCIM `id`, assigned by the server.
    #[schemars(length(max = 64))]
    pub id: String,
    /// The identity provider's own identifier (Entra: the group's objectId).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub external_id: Option<String>,
    /// Unique (per directory) name of the group.
    #[schemars(length(max = 1024))]
    pub display_name: String,
    /// Custom extension attributes, keyed by extension schema URN, kept as sent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "preserved_object_map")]
    pub extensions: BTreeMap<String, serde_json::Value>,
    /// SCIM resource metadata.
    #[serde(default)]
    pub meta: ResourceMeta,
}

/// A replaced member list (a SCIM PUT with `members`, a PATCH `replace` of `members`, or a new
/// group with many members) that the SCIM server is writing to the members'
/// `member.kubescim.io/<group id>` labels in the background. While it is set, it is the group's
/// member list as SCIM serves it, and the labels converge to it: first the labels of members
/// that are not in it are removed, then the missing ones are added; then the SCIM server
/// removes the field. Absent whenever the labels are the member list.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberRollout {
    /// The complete new member list.
    pub members: Vec<RolloutMember>,
}

/// One member of a [`MemberRollout`].
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutMember {
    /// SCIM id of the member (a ScimUser or ScimGroup name in the same namespace).
    #[schemars(length(max = 253))]
    pub value: String,
    /// The member `display` the client sent, kept for directories whose provider expects it
    /// back (Okta); it becomes the member's `display.member.kubescim.io/<group id>` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}
