//! The safety switches of a ScimDirectory: `spec.suspend` and the deletion guard
//! (`spec.deletionGuard`), with the condition types, labels and annotation they use.
//!
//! Held operations live on the objects themselves: the SCIM server labels a ScimUser or
//! ScimGroup whose deletion or deactivation it holds ([`HELD_LABEL`]) and otherwise leaves it
//! as it was, so nothing is lost whichever way the hold ends. The operator counts them into the
//! directory's status and, when the directory is annotated with [`HELD_OPERATIONS_ANNOTATION`],
//! applies (`release`) or drops (`discard`) them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition type: `True` while `spec.suspend` refuses provisioning writes.
pub const CONDITION_SUSPENDED: &str = "Suspended";
/// Condition type: `True` while the deletion guard holds deletions or deactivations.
pub const CONDITION_DELETIONS_HELD: &str = "DeletionsHeld";

/// Label on a ScimUser or ScimGroup whose deletion (`delete`) or deactivation (`deactivate`)
/// the deletion guard holds. Consumers may ignore it: the object is unchanged until the hold
/// is released.
pub const HELD_LABEL: &str = "kubescim.io/held";
/// Value of [`HELD_LABEL`]: a held DELETE.
pub const HELD_DELETE: &str = "delete";
/// Value of [`HELD_LABEL`]: a held deactivation (`active: false`).
pub const HELD_DEACTIVATE: &str = "deactivate";
/// Annotation on a held object: when the operation was held (RFC 3339).
pub const HELD_SINCE_ANNOTATION: &str = "kubescim.io/held-since";

/// Annotation on a ScimDirectory that ends a hold: `release` applies every held operation,
/// `discard` drops them (the objects stay as they are). The operator removes it when done.
pub const HELD_OPERATIONS_ANNOTATION: &str = "kubescim.io/held-operations";
/// Value of [`HELD_OPERATIONS_ANNOTATION`] that applies the held operations.
pub const RELEASE: &str = "release";
/// Value of [`HELD_OPERATIONS_ANNOTATION`] that drops the held operations.
pub const DISCARD: &str = "discard";

/// The deletion guard, like Microsoft Entra's accidental-deletion prevention: once more than
/// `maxOperations` (or `maxPercent` of the directory's users and groups) deletions and
/// deactivations arrive within `window`, the SCIM server holds that one and every later one
/// instead of applying them, answers the identity provider as if it had, and marks the objects
/// (label `kubescim.io/held`). The directory then shows condition `DeletionsHeld` and an
/// event; annotate it with `kubescim.io/held-operations=release` to apply them, or `=discard`
/// to drop them.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeletionGuardSpec {
    /// Largest number of deletions and deactivations applied within `window`; 0 turns the
    /// count limit off. Default 500 (Entra's own default threshold).
    #[serde(default = "default_max_operations")]
    #[schemars(range(min = 0, max = 1000000))]
    pub max_operations: i32,

    /// Largest share, in percent of the directory's users and groups, of deletions and
    /// deactivations applied within `window`. Empty: no percentage limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_percent: Option<i32>,

    /// The window deletions and deactivations are counted in, a duration such as `1h`
    /// (default `1h`, at most `168h`).
    #[serde(default = "default_window")]
    #[schemars(length(max = 32), extend("x-kubernetes-validations" = [{
        "rule": "duration(self) > duration('0s') && duration(self) <= duration('168h')",
        "message": "deletionGuard.window must be a duration between 1s and 168h, e.g. 1h"
    }]))]
    pub window: String,
}

impl Default for DeletionGuardSpec {
    fn default() -> Self {
        Self {
            max_operations: default_max_operations(),
            max_percent: None,
            window: default_window(),
        }
    }
}

fn default_max_operations() -> i32 {
    500
}

fn default_window() -> String {
    "1h".into()
}
