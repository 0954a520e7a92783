//! The pure decision of a ScimGroupBinding reconcile: from the binding, the directory's groups
//! and users, the operator's allow-list and the bindings that exist, which RoleBindings (or the
//! ClusterRoleBinding) should exist with which subjects, which to replace or delete, and the
//! outcome for status. No I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::rbac::v1::{RoleRef, Subject};
use kube::ResourceExt;
use kube::api::ObjectMeta;
use kube_scim_crds::group_binding::{
    REASON_CLUSTER_WIDE_NOT_ALLOWED, REASON_GROUP_AMBIGUOUS, REASON_GROUP_NOT_FOUND,
    REASON_ROLE_NOT_ALLOWED, REASON_SUBJECT_PREFIX_REQUIRED, REASON_SUBJECT_REFUSED, REASON_SYNCED,
    RoleKind, SubjectKind,
};
use kube_scim_crds::{HELD_LABEL, ScimGroup, ScimGroupBinding, ScimUser, labels};
use sha2::{Digest, Sha256};

/// API group of RBAC subjects and role references.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Subjects of one RoleBinding are kept below this many bytes (estimated as JSON). etcd refuses
/// objects above 1.5 MiB; the margin covers metadata, managedFields and long names.
pub const BINDING_BUDGET_BYTES: usize = 256 * 1024;

/// At most this many bindings per target (1024 x 256 KiB of subjects is far beyond any group).
const MAX_PARTS: usize = 1024;

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

    if let Some(message) = missing_prefix(binding, policy) {
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

/// The template of `binding`'s subject names (the default when the spec has none).
fn subject_template(binding: &ScimGroupBinding) -> &str {
    let subject = &binding.spec.subject;
    subject.name.as_deref().unwrap_or(match subject.kind {
        SubjectKind::User => "{{userName}}",
        SubjectKind::Group => "{{displayName}}",
    })
}

/// Why the template does not satisfy the operator's required prefix, if it does not. The
/// template must begin with the prefix as literal text: an attribute value that happens to
/// begin with it proves nothing.
fn missing_prefix(binding: &ScimGroupBinding, policy: &BindingPolicy) -> Option<String> {
    let prefix = policy.subject_prefix.as_str();
    let template = subject_template(binding);
    if prefix.is_empty() || template.starts_with(prefix) && !prefix.contains("{{") {
        return None;
    }
    Some(format!(
        "this operator binds only subject names beginning with {prefix:?} (Helm value groupBindings.subjectPrefix, the prefix your authenticator gives identity-provider users and groups); spec.subject.name {template:?} must begin with it, e.g. {:?}",
        format!("{prefix}{}", template.trim_start_matches(prefix))
    ))
}

/// Whether the deletion guard holds the deletion or deactivation of this ScimUser or
/// ScimGroup (label `kubescim.io/held`, whatever its value: unknown values fail closed).
pub fn is_held(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .is_some_and(|l| l.contains_key(HELD_LABEL))
}

/// Why a rendered subject name is never bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// In the `system:` namespace Kubernetes reserves for built-in identities
    /// (`system:masters`, `system:anonymous`, `system:authenticated`,
    /// `system:serviceaccount:<ns>:<name>`, `system:node:<name>`, ...).
    Reserved,
    /// Not a plain name: leading or trailing whitespace, or a control or invisible character.
    /// No authenticator gives a person such a name; it can only be meant to look like another.
    NotPlain,
}

impl Refusal {
    fn explain(self) -> &'static str {
        match self {
            Refusal::Reserved => {
                "is in the system: namespace that Kubernetes reserves for built-in identities"
            }
            Refusal::NotPlain => {
                "is not a plain name (leading or trailing whitespace, control or invisible characters)"
            }
        }
    }
}

/// Whether a rendered subject name must not be bound, and why. Anyone who can name a user or
/// group in the identity provider, or holds the directory's SCIM credential, chooses the
/// attribute values a template renders; a name such as `system:masters` or
/// `system:serviceaccount:kube-system:default` would hand the role to a built-in identity.
/// RBAC compares names exactly, so only `system:` itself is reserved, but the check also folds
/// case and drops whitespace and invisible characters: a disguised `System: masters` is never
/// legitimate either, and a later normalisation anywhere must not turn it into the real one.
pub fn refusal(name: &str) -> Option<Refusal> {
    let folded: String = name
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control() && !is_invisible(*c))
        .flat_map(char::to_lowercase)
        .collect();
    if folded.starts_with("system:") {
        return Some(Refusal::Reserved);
    }
    if name.trim() != name || name.chars().any(|c| c.is_control() || is_invisible(c)) {
        return Some(Refusal::NotPlain);
    }
    None
}

/// Zero-width and direction-control characters (Unicode format characters that render as
/// nothing), which make one name look like another.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{E0000}'..='\u{E007F}')
}

fn selects(binding: &ScimGroupBinding, group: &ScimGroup) -> bool {
    let selector = &binding.spec.group;
    let status = group.status.as_ref();
    if let Some(id) = &selector.id {
        return &group_id(group) == id;
    }
    if let Some(external) = &selector.external_id {
        return status.and_then(|s| s.external_id.as_ref()) == Some(external);
    }
    if let Some(name) = &selector.display_name {
        return status.map(|s| &s.display_name) == Some(name);
    }
    false
}

fn describe_selector(binding: &ScimGroupBinding) -> String {
    let selector = &binding.spec.group;
    if let Some(id) = &selector.id {
        format!("id {id}")
    } else if let Some(external) = &selector.external_id {
        format!("externalId {external}")
    } else {
        format!(
            "displayName {}",
            selector.display_name.as_deref().unwrap_or_default()
        )
    }
}

/// The SCIM id of a group: the key of its members' membership label.
fn group_id(group: &ScimGroup) -> String {
    group
        .status
        .as_ref()
        .map(|s| s.id.clone())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| group.name_any())
}

/// SCIM ids of the groups whose membership label `meta_labels` carries.
fn memberships(meta_labels: &BTreeMap<String, String>) -> impl Iterator<Item = &str> {
    meta_labels
        .keys()
        .filter_map(|k| k.strip_prefix(labels::MEMBER_OF_PREFIX))
}

/// Active users of the directory that are members of `root` directly or through nested groups
/// (cycles are harmless: each group is expanded once). A group whose member list is being
/// replaced (`spec.memberRollout`) has exactly the new list, as SCIM serves it, whatever the
/// labels still say.
fn active_members<'a>(
    root: &str,
    groups: &[&ScimGroup],
    users: impl IntoIterator<Item = &'a ScimUser>,
    namespace: &str,
    directory: &str,
) -> Vec<&'a ScimUser> {
    let rollouts: HashMap<String, BTreeSet<&str>> = groups
        .iter()
        .filter_map(|g| {
            let rollout = g.spec.member_rollout.as_ref()?;
            Some((
                group_id(g),
                rollout.members.iter().map(|m| m.value.as_str()).collect(),
            ))
        })
        .collect();
    // The groups `member_id` belongs to directly.
    let parents = |member_id: &str, member_labels: &BTreeMap<String, String>| -> Vec<String> {
        let by_label = memberships(member_labels)
            .filter(|g| !rollouts.contains_key(*g))
            .map(str::to_string);
        let by_rollout = rollouts
            .iter()
            .filter(|(_, members)| members.contains(member_id))
            .map(|(g, _)| g.clone());
        by_label.chain(by_rollout).collect()
    };
    // Child groups by parent id.
    let mut children: HashMap<String, Vec<String>> = HashMap::new();
    for group in groups {
        let id = group_id(group);
        for parent in parents(&id, group.labels()) {
            children.entry(parent).or_default().push(id.clone());
        }
    }
    let mut included: BTreeSet<String> = BTreeSet::new();
    let mut queue = vec![root.to_string()];
    while let Some(id) = queue.pop() {
        if included.insert(id.clone())
            && let Some(nested) = children.get(id.as_str())
        {
            queue.extend(nested.iter().cloned());
        }
    }
    users
        .into_iter()
        .filter(|u| {
            u.namespace().as_deref() == Some(namespace)
                && u.spec.directory_ref.name == directory
                && u.status.as_ref().is_some_and(|s| s.active)
                && u.metadata.deletion_timestamp.is_none()
                && parents(&u.name_any(), u.labels())
                    .iter()
                    .any(|g| included.contains(g))
        })
        .collect()
}

pub fn render(template: &str, lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}")?;
        let value = lookup(after[..end].trim()).filter(|v| !v.is_empty())?;
        out.push_str(&value);
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return None;
    }
    out.push_str(rest);
    (!out.is_empty()).then_some(out)
}

fn user_attribute(user: &ScimUser, attribute: &str) -> Option<String> {
    let status = user.status.as_ref()?;
    match attribute {
        "userName" => Some(status.user_name.clone()),
        "externalId" => status.external_id.clone(),
        "id" => Some(status.id.clone()).filter(|id| !id.is_empty()),
        "displayName" => status.display_name.clone(),
        "email" => status
            .emails
            .iter()
            .find(|e| e.primary == Some(true) && e.value.is_some())
            .or_else(|| status.emails.iter().find(|e| e.value.is_some()))
            .and_then(|e| e.value.clone()),
        _ => None,
    }
}

fn group_attribute(group: &ScimGroup, attribute: &str) -> Option<String> {
    let status = group.status.as_ref()?;
    match attribute {
        "displayName" => Some(status.display_name.clone()),
        "externalId" => status.external_id.clone(),
        "id" => Some(group_id(group)),
        _ => None,
    }
}

/// Estimated JSON size of a subject in a binding.
fn subject_bytes(subject: &Subject) -> usize {
    subject.name.len() + subject.kind.len() + 64
}

/// Splits sorted subjects into as few parts as keep each under [`BINDING_BUDGET_BYTES`]. A
/// subject's part is chosen by a hash of its name (the number of parts is a power of two), so
/// adding or removing one member rewrites only the one binding that holds it. Always at least
/// one part (an empty group keeps one binding without subjects).
pub fn split(subjects: &[Subject]) -> Vec<Vec<Subject>> {
    let total: usize = subjects.iter().map(subject_bytes).sum();
    let mut parts = 1;
    while parts < MAX_PARTS && parts * BINDING_BUDGET_BYTES < total {
        parts *= 2;
    }
    loop {
        let mut buckets: Vec<Vec<Subject>> = vec![Vec::new(); parts];
        let mut sizes = vec![0usize; parts];
        for subject in subjects {
            let digest = Sha256::digest(subject.name.as_bytes());
            let hash = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
            let index = (hash % parts as u64) as usize;
            sizes[index] += subject_bytes(subject);
            buckets[index].push(subject.clone());
        }
        if parts >= MAX_PARTS || sizes.iter().all(|s| *s <= BINDING_BUDGET_BYTES) {
            return buckets;
        }
        parts *= 2;
    }
}

/// `kube-scim:<namespace>:<name>`: colons cannot occur in namespace or object names, so two
/// ScimGroupBindings never share a binding name; too long a name is cut and made unique by a
/// hash.
pub fn base_name(namespace: &str, name: &str) -> String {
    let full = format!("kube-scim:{namespace}:{name}");
    if full.len() <= 200 {
        return full;
    }
    let digest = Sha256::digest(full.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", &full[..180])
}

/// Name of part `index` of a split binding: the base name, then `:1`, `:2`, ...
pub fn part_name(base: &str, index: usize) -> String {
    if index == 0 {
        base.to_string()
    } else {
        format!("{base}:{index}")
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
