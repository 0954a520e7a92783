//! Types and schema helpers more than one kind uses.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A key of a Secret in the directory's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret's data that holds the token (default `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// The directory a ScimUser or ScimGroup belongs to; it cannot be changed after creation.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self == oldSelf",
    "message": "directoryRef is immutable: a user or group cannot move to another directory"
}]))]
pub struct DirectoryRef {
    /// Name of the ScimDirectory in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// SCIM resource metadata (RFC 7643 §3.1). `version` is not stored: it is the object's
/// resourceVersion.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceMeta {
    /// `User` or `Group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub resource_type: Option<String>,
    /// When the resource was created through SCIM (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub created: Option<String>,
    /// When the resource was last changed through SCIM (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub last_modified: Option<String>,
}

/// An object whose values are kept exactly as sent: custom SCIM extensions have schemas the
/// cluster cannot know in advance.
pub(crate) fn preserved_object_map(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

pub(crate) fn default_true() -> bool {
    true
}
