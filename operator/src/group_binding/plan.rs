//! The pure decision of a ScimGroupBinding reconcile: from the binding, the directory's groups
//! and users, the operator's allow-list and the bindings that exist, which RoleBindings (or the
//! ClusterRoleBinding) should exist with which subjects, which to replace or delete, and the
//! outcome for status. No I/O.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::rbac::v1::{RoleRef, Subject};
use kube::ResourceExt;
use kube_scim_crds::group_binding::{
    REASON_CLUSTER_WIDE_NOT_ALLOWED, REASON_GROUP_AMBIGUOUS, REASON_GROUP_NOT_FOUND,
    REASON_ROLE_NOT_ALLOWED, REASON_SUBJECT_PREFIX_REQUIRED, REASON_SUBJECT_REFUSED, REASON_SYNCED,
    RoleKind, SubjectKind,
};
use kube_scim_crds::{ScimGroup, ScimGroupBinding, ScimUser};

pub use super::members::is_held;
use super::members::{active_members, describe_selector, group_id, selects};
pub use super::parts::{BINDING_BUDGET_BYTES, base_name, part_name, split};
pub use super::subjects::{Refusal, refusal, render};
use super::subjects::{group_attribute, missing_prefix, subject_template, user_attribute};

/// API group of RBAC subjects and role references.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// What the operator may bind (Helm values `groupBindings.*`).
#[derive(Clone, Debug, Default)]
pub struct BindingPolicy {
    /// ClusterRoles a ScimGroupBinding may grant.
    pub allowed_cluster_roles: BTreeSet<String>,
    /// Names of namespaced Roles a ScimGroupBinding may grant (in its target namespaces).
    pub allowed_roles: BTreeSet<String>,
    /// Whether `spec.clusterWide` (a ClusterRoleBinding) is allowed.
    pub allow_cluster_wide: bool,
    /// Literal text every subject template must begin with (empty: none), the prefix the
    /// cluster's authenticator puts on the identity provider's names: the values a template
    /// renders then cannot name anyone outside that prefix.
    pub subject_prefix: String,
    /// How many bytes of bindings each ScimGroupBinding may write (see [`super::budget`]).
    pub write_budget: super::budget::WriteBudget,
}

/// Where a binding lives: a namespace (RoleBinding) or the cluster (ClusterRoleBinding).
pub type Scope = Option<String>;

/// A binding the operator wrote earlier, as the watch cache sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Existing {
    pub scope: Scope,
    pub name: String,
    pub role_ref: RoleRef,
    pub subjects: Vec<Subject>,
    /// Whether the watch cache holds it (`role_ref` and `subjects` are real); else it is only
    /// recorded in status (a namespace the operator does not watch) and is always applied.
    pub cached: bool,
}

/// A binding that should exist.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub scope: Scope,
    pub name: String,
    pub role_ref: RoleRef,
    pub subjects: Vec<Subject>,
}

/// What to do with one desired binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// It is already exactly as desired.
    Keep,
    /// Server-side apply it (create, or change its subjects).
    Apply,
    /// Delete it first, then apply: a binding's roleRef cannot be changed.
    Replace,
}

/// The outcome reported in the Ready condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

/// The whole decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub outcome: Outcome,
    pub desired: Vec<(Desired, Write)>,
    /// Bindings to delete: `(scope, name)`.
    pub stale: Vec<(Scope, String)>,
    pub group_id: Option<String>,
    /// Distinct subjects per binding target.
    pub members: usize,
    /// Active members without an attribute the template needs.
    pub skipped: usize,
    /// Rendered subject names never bound (see [`refusal`]), sorted.
    pub refused: Vec<String>,
    /// Active members left out because the deletion guard holds their deprovisioning.
    pub held: usize,
}

impl Plan {
    /// A plan that grants nothing: no binding desired, every binding written so far removed.
    pub fn nothing(outcome: Outcome, existing: &[Existing]) -> Plan {
        Plan {
            outcome,
            desired: Vec::new(),
            stale: existing
                .iter()
                .map(|e| (e.scope.clone(), e.name.clone()))
                .collect(),
            group_id: None,
            members: 0,
            skipped: 0,
            refused: Vec::new(),
            held: 0,
        }
    }
}

/// Decides the plan for `binding`. `groups` and `users` may hold objects of any directory and
/// namespace; only those of the binding's directory count.
pub fn plan<'a>(
    binding: &ScimGroupBinding,
    groups: impl IntoIterator<Item = &'a ScimGroup>,
    users: impl IntoIterator<Item = &'a ScimUser>,
    policy: &BindingPolicy,
    existing: &[Existing],
) -> Plan {
    let namespace = binding.namespace().unwrap_or_default();
    let directory = binding.spec.directory_ref.name.as_str();
    let in_directory = |meta_ns: Option<String>, dir: &str| {
        meta_ns.as_deref() == Some(namespace.as_str()) && dir == directory
    };
    // A group being deleted is already gone for SCIM (its member labels are still being
    // removed in the background), so it grants nothing from the moment it is deleted.
    let (groups, held_groups): (Vec<&ScimGroup>, Vec<&ScimGroup>) = groups
        .into_iter()
        .filter(|g| in_directory(g.namespace(), &g.spec.directory_ref.name))
        .filter(|g| g.metadata.deletion_timestamp.is_none())
        .partition(|g| !is_held(&g.metadata));

    let refused = |reason, message: String| {
        Plan::nothing(
            Outcome {
                ready: false,
                reason,
                message,
            },
            existing,
        )
    };

    let spec = &binding.spec;
    if spec.cluster_wide && !policy.allow_cluster_wide {
        return refused(
            REASON_CLUSTER_WIDE_NOT_ALLOWED,
            "this operator does not create ClusterRoleBindings for ScimGroupBindings (Helm value groupBindings.allowClusterWide is false): list target namespaces instead".into(),
        );
    }
    let (allowed, value) = match spec.role_ref.kind {
        RoleKind::ClusterRole => (
            &policy.allowed_cluster_roles,
            "groupBindings.allowedClusterRoles",
        ),
        RoleKind::Role => (&policy.allowed_roles, "groupBindings.allowedRoles"),
    };
    if !allowed.contains(&spec.role_ref.name) {
        return refused(
            REASON_ROLE_NOT_ALLOWED,
            format!(
                "{} {} is not in the operator's allow-list (Helm value {value}: {}); ask the cluster administrator to add it, or bind an allowed role",
                spec.role_ref.kind.as_str(),
                spec.role_ref.name,
                if allowed.is_empty() {
                    "empty".to_string()
                } else {
                    allowed.iter().cloned().collect::<Vec<_>>().join(", ")
                }
            ),
        );
    }

    if let Some(message) = missing_prefix(binding, &policy.subject_prefix) {
        return refused(REASON_SUBJECT_PREFIX_REQUIRED, message);
    }

    let selected: Vec<&ScimGroup> = groups
        .iter()
        .copied()
        .filter(|g| selects(binding, g))
        .collect();
    let group = match selected.as_slice() {
        [] if held_groups.iter().any(|g| selects(binding, g)) => {
            return refused(
                REASON_GROUP_NOT_FOUND,
                format!(
                    "the deletion guard holds the deletion of the group of directory {directory} with {}: a group being deleted grants nothing, so the bindings are removed until the hold is discarded (kubectl annotate scimdirectory {directory} kubescim.io/held-operations=discard) or the identity provider writes the group again",
                    describe_selector(binding)
                ),
            );
        }
        [] => {
            return refused(
                REASON_GROUP_NOT_FOUND,
                format!(
                    "directory {directory} has no group with {}; the bindings are removed until it is provisioned",
                    describe_selector(binding)
                ),
            );
        }
        [one] => *one,
        many => {
            return refused(
                REASON_GROUP_AMBIGUOUS,
                format!(
                    "{} groups of directory {directory} have {}; select the group by externalId or id",
                    many.len(),
                    describe_selector(binding)
                ),
            );
        }
    };
    let group_id = group_id(group);

    let (subjects, skipped, refused_names, held) = match spec.subject.kind {
        SubjectKind::Group => {
            let template = subject_template(binding);
            let rendered = render(template, |attr| group_attribute(group, attr));
            if let Some((name, why)) = rendered
                .as_ref()
                .and_then(|name| Some((name, refusal(name)?)))
            {
                let mut plan = refused(
                    REASON_SUBJECT_REFUSED,
                    format!(
                        "the group's subject name {name:?} {}: nothing is bound (change spec.subject.name, or the group's name in the identity provider)",
                        why.explain()
                    ),
                );
                plan.group_id = Some(group_id);
                plan.refused = vec![name.clone()];
                return plan;
            }
            let subjects = rendered
                .map(|name| {
                    vec![Subject {
                        api_group: Some(RBAC_GROUP.into()),
                        kind: "Group".into(),
                        name,
                        namespace: None,
                    }]
                })
                .unwrap_or_default();
            (subjects, 0, BTreeSet::new(), 0)
        }
        SubjectKind::User => {
            let template = subject_template(binding);
            let members = active_members(&group_id, &groups, users, &namespace, directory);
            // The guard protects data, not access: a held deprovisioning removes access now.
            let (held, members): (Vec<&ScimUser>, Vec<&ScimUser>) =
                members.into_iter().partition(|u| is_held(&u.metadata));
            let mut names = BTreeSet::new();
            let mut refused_names = BTreeSet::new();
            let mut skipped = 0;
            for user in members {
                match render(template, |attr| user_attribute(user, attr)) {
                    Some(name) if refusal(&name).is_some() => {
                        refused_names.insert(name);
                    }
                    Some(name) => {
                        names.insert(name);
                    }
                    None => skipped += 1,
                }
            }
            let subjects = names
                .into_iter()
                .map(|name| Subject {
                    api_group: Some(RBAC_GROUP.into()),
                    kind: "User".into(),
                    name,
                    namespace: None,
                })
                .collect();
            (subjects, skipped, refused_names, held.len())
        }
    };

    let role_ref = RoleRef {
        api_group: Some(RBAC_GROUP.into()),
        kind: spec.role_ref.kind.as_str().into(),
        name: spec.role_ref.name.clone(),
    };
    let scopes: Vec<Scope> = if spec.cluster_wide {
        vec![None]
    } else if spec.namespaces.is_empty() {
        vec![Some(namespace.clone())]
    } else {
        spec.namespaces.iter().cloned().map(Some).collect()
    };
    let parts = split(&subjects);
    let base = base_name(&namespace, &binding.name_any());
    let mut desired = Vec::new();
    for scope in &scopes {
        for (index, part) in parts.iter().enumerate() {
            desired.push(Desired {
                scope: scope.clone(),
                name: part_name(&base, index),
                role_ref: role_ref.clone(),
                subjects: part.clone(),
            });
        }
    }
    let by_key: HashMap<(&Scope, &str), &Existing> = existing
        .iter()
        .map(|e| ((&e.scope, e.name.as_str()), e))
        .collect();
    let wanted: BTreeSet<(&Scope, &str)> = desired
        .iter()
        .map(|d| (&d.scope, d.name.as_str()))
        .collect();
    let stale = existing
        .iter()
        .filter(|e| !wanted.contains(&(&e.scope, e.name.as_str())))
        .map(|e| (e.scope.clone(), e.name.clone()))
        .collect();
    let desired = desired
        .into_iter()
        .map(|d| {
            let write = match by_key.get(&(&d.scope, d.name.as_str())) {
                None => Write::Apply,
                Some(e) if !e.cached => Write::Apply,
                Some(e) if e.role_ref != d.role_ref => Write::Replace,
                Some(e) if e.subjects != d.subjects => Write::Apply,
                Some(_) => Write::Keep,
            };
            (d, write)
        })
        .collect();
    let members = subjects.len();
    Plan {
        outcome: Outcome {
            ready: true,
            reason: REASON_SYNCED,
            message: format!(
                "{members} subject(s) of group {} bound to {} {} in {}{}",
                group
                    .status
                    .as_ref()
                    .map(|s| s.display_name.as_str())
                    .unwrap_or(&group_id),
                spec.role_ref.kind.as_str(),
                spec.role_ref.name,
                if spec.cluster_wide {
                    "the whole cluster".to_string()
                } else {
                    format!("{} namespace(s)", scopes.len())
                },
                if skipped > 0 {
                    format!(
                        "; {skipped} active member(s) lack an attribute of the subject template and are left out"
                    )
                } else {
                    String::new()
                }
            ) + &left_out(&refused_names, held),
        },
        desired,
        stale,
        group_id: Some(group_id),
        members,
        skipped,
        refused: refused_names.into_iter().collect(),
        held,
    }
}

/// The Ready message's note on members left out for safety: refused names, held members.
fn left_out(refused: &BTreeSet<String>, held: usize) -> String {
    let mut note = String::new();
    if !refused.is_empty() {
        let shown: Vec<String> = refused.iter().take(5).map(|n| format!("{n:?}")).collect();
        note.push_str(&format!(
            "; {} subject name(s) refused and left out (a built-in system: identity, or not a plain name): {}{}",
            refused.len(),
            shown.join(", "),
            if refused.len() > shown.len() { ", ..." } else { "" }
        ));
    }
    if held > 0 {
        note.push_str(&format!(
            "; {held} member(s) left out while the deletion guard holds their deactivation or deletion"
        ));
    }
    note
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
