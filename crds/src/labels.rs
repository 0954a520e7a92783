//! Label and annotation keys shared by the operator, the SCIM server and consuming applications.
//! They are API: applications select on them (`kubectl get scimusers -l kubescim.io/active=true`).

/// On ScimUsers, ScimGroups and the token Secret / Ingress: name of the owning ScimDirectory.
pub const DIRECTORY: &str = "kubescim.io/directory";

/// On objects the operator creates outside a directory's namespace (the ReferenceGrant that lets
/// the directory's HTTPRoute reach the SCIM server): namespace of the owning ScimDirectory.
pub const DIRECTORY_NAMESPACE: &str = "kubescim.io/directory-namespace";

/// On ScimUsers: `"true"` or `"false"`, mirroring the SCIM `active` attribute.
pub const ACTIVE: &str = "kubescim.io/active";

/// On ScimUsers and ScimGroups that are members of a group: the key is this prefix followed by
/// the group's SCIM id, the value `"true"`. `kubectl get scimusers -l member.kubescim.io/<id>`
/// lists a group's members.
pub const MEMBER_OF_PREFIX: &str = "member.kubescim.io/";

/// On objects the operator creates: which component manages them.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// Value of [`MANAGED_BY`] on objects created by the operator.
pub const MANAGED_BY_OPERATOR: &str = "kube-scim-operator";

/// Annotation on ScimUsers and ScimGroups that are members of a group of an Okta directory: the
/// key is this prefix followed by the group's SCIM id, the value the member's `display` as Okta
/// sent it (served back as the member's `display` in that group).
pub const MEMBER_DISPLAY_PREFIX: &str = "display.member.kubescim.io/";

/// Annotation key of the member `display` kept for the group with SCIM id `group_id`.
pub fn member_display(group_id: &str) -> String {
    format!("{MEMBER_DISPLAY_PREFIX}{group_id}")
}

/// Label key of the membership label for the group with SCIM id `group_id`.
pub fn member_of(group_id: &str) -> String {
    format!("{MEMBER_OF_PREFIX}{group_id}")
}

/// Finalizer the SCIM server puts on a ScimGroup that a SCIM client deletes: the group object
/// stays (with `deletionTimestamp` set, hidden from SCIM reads) until a background worker has
/// removed the group's membership labels from every member, then the worker removes it.
pub const GROUP_MEMBER_CLEANUP_FINALIZER: &str = "kubescim.io/member-cleanup";
