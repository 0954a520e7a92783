//! Who a ScimGroupBinding's group is: the group its selector names, and its active members
//! through nested groups and member rollouts. No I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kube::ResourceExt;
use kube::api::ObjectMeta;
use kube_scim_crds::{HELD_LABEL, ScimGroup, ScimGroupBinding, ScimUser, labels};

/// Whether the deletion guard holds the deletion or deactivation of this ScimUser or
/// ScimGroup (label `kubescim.io/held`, whatever its value: unknown values fail closed).
pub fn is_held(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .is_some_and(|l| l.contains_key(HELD_LABEL))
}

/// Whether `group` is the one `binding`'s selector names.
pub(super) fn selects(binding: &ScimGroupBinding, group: &ScimGroup) -> bool {
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

pub(super) fn describe_selector(binding: &ScimGroupBinding) -> String {
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
pub(super) fn group_id(group: &ScimGroup) -> String {
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
pub(super) fn active_members<'a>(
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
