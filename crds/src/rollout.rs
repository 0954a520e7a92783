//! The member list of a ScimGroup while it is being rolled out to the members' labels.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
