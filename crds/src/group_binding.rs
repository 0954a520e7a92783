//! [`ScimGroupBinding`]: the members of a SCIM group become the subjects of Kubernetes RBAC
//! bindings, kept in step with the identity provider by the operator.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition reason: every RoleBinding holds exactly the group's active members.
pub const REASON_SYNCED: &str = "Synced";
/// Condition reason: no ScimGroup of the directory matches `spec.group`.
pub const REASON_GROUP_NOT_FOUND: &str = "GroupNotFound";
/// Condition reason: several ScimGroups of the directory match `spec.group`.
pub const REASON_GROUP_AMBIGUOUS: &str = "GroupAmbiguous";
/// Condition reason: `spec.roleRef` is not in the operator's allow-list.
pub const REASON_ROLE_NOT_ALLOWED: &str = "RoleNotAllowed";
/// Condition reason: `spec.clusterWide` is set but the operator does not allow cluster-wide
/// bindings.
pub const REASON_CLUSTER_WIDE_NOT_ALLOWED: &str = "ClusterWideNotAllowed";
/// Condition reason: the operator could not write a binding (RBAC, a missing namespace).
pub const REASON_APPLY_FAILED: &str = "ApplyFailed";
/// Condition reason: subjects to add wait for the ScimGroupBinding's write budget (removals are
/// applied at once); the operator retries when the budget allows.
pub const REASON_WRITE_DEFERRED: &str = "WriteDeferred";
/// Condition reason: the group subject's rendered name is refused (a built-in `system:`
/// identity, or not a plain name), so nothing is bound.
pub const REASON_SUBJECT_REFUSED: &str = "SubjectRefused";
/// Condition reason: the operator requires a literal prefix on subject names
/// (`groupBindings.subjectPrefix`) and `spec.subject.name` does not begin with it.
pub const REASON_SUBJECT_PREFIX_REQUIRED: &str = "SubjectPrefixRequired";
/// Event reason (Warning): rendered subject names were refused and left out.
pub const EVENT_SUBJECTS_REFUSED: &str = "SubjectsRefused";
/// Condition reason: the ScimDirectory named in `spec.directoryRef` does not exist (or is being
/// deleted): nobody could deprovision its members, so nothing is bound.
pub const REASON_DIRECTORY_NOT_FOUND: &str = "DirectoryNotFound";
/// Condition reason: the ScimDirectory is not the one this binding accepted (it was deleted and
/// re-created, or its provider, `spec.auth` or `spec.token.secretRef` changed); nothing is bound
/// until `spec.directoryAcknowledgement` is changed.
pub const REASON_DIRECTORY_CHANGED: &str = "DirectoryChanged";
/// Condition reason: the directory accepts a credential kept in a Kubernetes Secret (methods
/// `BearerToken`, `OAuthClientCredentials`) and the binding does not set
/// `spec.trustDirectorySecretReaders`.
pub const REASON_DIRECTORY_CREDENTIAL_SHARED: &str = "DirectoryCredentialShared";

/// Labels on every RoleBinding / ClusterRoleBinding the operator writes for a ScimGroupBinding:
/// the namespace and name of that ScimGroupBinding (bindings may live in other namespaces, where
/// an ownerReference cannot point).
pub mod labels {
    /// Namespace of the owning ScimGroupBinding.
    pub const BINDING_NAMESPACE: &str = "kubescim.io/group-binding-namespace";
    /// Name of the owning ScimGroupBinding.
    pub const BINDING_NAME: &str = "kubescim.io/group-binding";
}

/// Members of a SCIM group, as Kubernetes RBAC subjects of a Role or ClusterRole. The operator
/// keeps one RoleBinding per target namespace (split into several when the group is very large)
/// whose subjects are exactly the group's **active** members, nested groups included, and
/// removes them when the group or this object is deleted.
///
/// Creating or changing it requires the permission to `bind` the role in every target namespace
/// (the Helm chart's admission policy checks it), and the role must be in the operator's
/// allow-list (Helm value `groupBindings.allowedClusterRoles` / `allowedRoles`).
///
/// Whoever can send SCIM writes to the directory decides who is bound, so the binding trusts
/// only the directory it accepted (its uid and credential configuration, recorded in
/// `status.directory`), and a directory whose credential sits in a Secret only with
/// `trustDirectorySecretReaders` (see docs/group-bindings.md, "Trust model").
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kubescim.io",
    version = "v1alpha1",
    kind = "ScimGroupBinding",
    doc = "Grants a Role or ClusterRole to the active members of a SCIM group: the operator keeps one RoleBinding per target namespace whose subjects follow the group's membership.",
    namespaced,
    status = "ScimGroupBindingStatus",
    shortname = "scimgb",
    category = "scim",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.roleRef.name"}"#,
    printcolumn = r#"{"name":"Members","type":"integer","jsonPath":".status.members"}"#,
    printcolumn = r#"{"name":"LastSync","type":"date","jsonPath":".status.lastSyncTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!self.clusterWide || (self.roleRef.kind == 'ClusterRole' && size(self.namespaces) == 0)",
        "message": "clusterWide binds a ClusterRole through a ClusterRoleBinding: set roleRef.kind ClusterRole and leave namespaces empty"
    }
]))]
pub struct ScimGroupBindingSpec {
    /// The ScimDirectory (in this namespace) whose group is bound.
    pub directory_ref: GroupBindingDirectoryRef,

    /// Which group of the directory: exactly one of `displayName`, `externalId` (Entra: the
    /// group's objectId, which survives renames) or `id` (the SCIM id).
    pub group: GroupSelector,

    /// The Role (in each target namespace) or ClusterRole granted to the members.
    pub role_ref: GroupBindingRoleRef,

    /// Namespaces that get a RoleBinding. Empty: this object's namespace.
    #[serde(default)]
    #[schemars(
        length(max = 64),
        extend("x-kubernetes-list-type" = "set"),
        inner(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))
    )]
    pub namespaces: Vec<String>,

    /// Grant the ClusterRole cluster-wide through one ClusterRoleBinding instead of RoleBindings.
    /// Only where the operator allows it (Helm value `groupBindings.allowClusterWide`).
    #[serde(default)]
    pub cluster_wide: bool,

    /// How a member becomes an RBAC subject (default: a User named by the SCIM `userName`).
    #[serde(default)]
    pub subject: SubjectMapping,

    /// Accept a directory whose credential is kept in a Kubernetes Secret (auth methods
    /// `BearerToken` and `OAuthClientCredentials`). Whoever can read Secrets in this namespace
    /// (the built-in `edit` and `admin` roles can) can then send SCIM writes as the identity
    /// provider and so decide who gets the role in every target namespace. Without it such a
    /// directory binds nothing (Ready False, `DirectoryCredentialShared`); a directory that
    /// accepts only tokens Microsoft Entra ID issues (`auth.methods: [EntraToken]`) needs no
    /// opt-in. Like every spec change, setting it needs `bind` on the role in each target
    /// namespace (the chart's admission policy).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trust_directory_secret_readers: bool,

    /// Any value; changing it accepts the directory as it is now. The operator records the
    /// directory's uid and a fingerprint of its credential configuration (provider, `spec.auth`,
    /// `spec.token.secretRef`) in `status.directory` when it first sees the binding; when the
    /// directory is later deleted and re-created, or that configuration changes, the binding
    /// removes its subjects (Ready False, `DirectoryChanged`) until this field is changed, a
    /// spec write that needs `bind` on the role like any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub directory_acknowledgement: Option<String>,
}

/// The directory of a ScimGroupBinding.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupBindingDirectoryRef {
    /// Name of the ScimDirectory in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Selects one ScimGroup of a directory.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.displayName), has(self.externalId), has(self.id)].filter(x, x).size() == 1",
    "message": "group: set exactly one of displayName, externalId, id"
}]))]
pub struct GroupSelector {
    /// The group's SCIM `displayName` (exact match). A renamed group no longer matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub display_name: Option<String>,
    /// The group's SCIM `externalId` (Entra: the group's objectId).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub external_id: Option<String>,
    /// The group's SCIM `id` (the ScimGroup's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub id: Option<String>,
}

/// The role granted.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupBindingRoleRef {
    /// `Role` (looked up in each target namespace) or `ClusterRole`.
    pub kind: RoleKind,
    /// Name of the Role or ClusterRole, e.g. `edit`.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Kind of a granted role.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RoleKind {
    /// A namespaced Role of the target namespace.
    Role,
    /// A ClusterRole.
    ClusterRole,
}

impl RoleKind {
    /// The RBAC kind, as in a roleRef.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleKind::Role => "Role",
            RoleKind::ClusterRole => "ClusterRole",
        }
    }
}

/// How members become RBAC subjects.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectMapping {
    /// `User` (default): one subject per active member, named by `name` over the user's SCIM
    /// attributes; it must match the user name your authenticator gives that person.
    /// `Group`: one subject, a Kubernetes group named by `name` over the SCIM group's attributes,
    /// for authenticators that put the group in the token (membership then follows the token).
    #[serde(default)]
    pub kind: SubjectKind,

    /// Template of the subject name. `{{attribute}}` is replaced by the attribute; for kind
    /// `User`: `userName`, `externalId`, `id`, `displayName`, `email` (the primary, else first,
    /// email); for kind `Group`: `displayName`, `externalId`, `id`. Examples: `{{userName}}`,
    /// `oidc:{{externalId}}`. A user lacking an attribute the template uses is left out (and
    /// counted in `status.skippedMembers`). A rendered name in the reserved `system:` namespace
    /// (any case, whitespace or invisible characters), or with leading or trailing whitespace
    /// or control characters, is never bound (`status.refusedSubjects`). Default:
    /// `{{userName}}` for users, `{{displayName}}` for groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 512),
        regex(pattern = r"^([^{}]|\{\{(userName|externalId|id|displayName|email)\}\})+$")
    )]
    pub name: Option<String>,
}

impl Default for SubjectMapping {
    fn default() -> Self {
        Self {
            kind: SubjectKind::User,
            name: None,
        }
    }
}

/// Kind of RBAC subject a member becomes.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SubjectKind {
    /// One `User` subject per active member.
    #[default]
    User,
    /// One `Group` subject for the whole SCIM group.
    Group,
}

/// Observed state of a ScimGroupBinding, written by the operator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimGroupBindingStatus {
    /// `metadata.generation` the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`: True when every binding holds exactly the group's active members; False with a
    /// reason (`DirectoryNotFound`, `DirectoryChanged`, `DirectoryCredentialShared`,
    /// `GroupNotFound`, `GroupAmbiguous`, `RoleNotAllowed`, `ClusterWideNotAllowed`,
    /// `SubjectRefused`, `SubjectPrefixRequired`, `ApplyFailed`) and a message saying what to
    /// change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub conditions: Vec<Condition>,

    /// SCIM id of the bound group, as last resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,

    /// Number of distinct subjects bound (active members, nested groups included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<i64>,

    /// Active members left out because they lack an attribute the subject template uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_members: Option<i64>,

    /// Subject names never bound: a name in Kubernetes' reserved `system:` namespace (such as
    /// `system:masters`, `system:anonymous`, `system:serviceaccount:...`), also disguised by
    /// case, whitespace or invisible characters, or a name that is not plain (leading or
    /// trailing whitespace, control characters). A Warning event `SubjectsRefused` names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_subjects: Option<i64>,

    /// Active members left out because the deletion guard holds their deactivation or
    /// deletion (label `kubescim.io/held`): a held deprovisioning removes access at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_members: Option<i64>,

    /// Per target namespace (empty for the cluster-wide binding): the bindings written and the
    /// subjects they hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 65))]
    pub targets: Vec<TargetStatus>,

    /// When the bindings were last brought in line with the group (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,

    /// The directory this binding accepted: a different uid or credential configuration
    /// removes every subject (Ready False, `DirectoryChanged`) until
    /// `spec.directoryAcknowledgement` changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<AcceptedDirectory>,
}

/// The ScimDirectory a ScimGroupBinding trusts, as the operator recorded it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedDirectory {
    /// `metadata.uid` of the ScimDirectory (a directory deleted and re-created under the same
    /// name has another).
    pub uid: String,
    /// SHA-256 of the directory's provider, `spec.auth` and `spec.token.secretRef`: who may
    /// authenticate as its identity provider.
    pub credential_fingerprint: String,
    /// The `spec.directoryAcknowledgement` under which it was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledgement: Option<String>,
}

/// What the operator wrote into one namespace (or cluster-wide).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// Target namespace; empty for the ClusterRoleBinding.
    #[serde(default)]
    pub namespace: String,
    /// Number of subjects bound there.
    pub subjects: i64,
    /// Names of the RoleBindings (or the ClusterRoleBinding) holding them; a large group is
    /// split across several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub bindings: Vec<String>,
}
