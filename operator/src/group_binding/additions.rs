//! Which writes grant someone new (they wait for the write budget) and what may be written
//! meanwhile (removals never wait). No I/O.

use std::collections::HashSet;

use k8s_openapi::api::rbac::v1::Subject;

use super::plan::{Desired, Existing};

type SubjectKey<'a> = (&'a str, &'a str, Option<&'a str>);

fn key(s: &Subject) -> SubjectKey<'_> {
    (&s.kind, &s.name, s.namespace.as_deref())
}

/// The subjects already bound with `desired`'s role in its scope (in any of its parts), or
/// None when a binding of `desired`'s name is not cached (its subjects are unknown).
fn present<'a>(desired: &Desired, existing: &'a [Existing]) -> Option<HashSet<SubjectKey<'a>>> {
    if existing
        .iter()
        .any(|e| e.scope == desired.scope && e.name == desired.name && !e.cached)
    {
        return None;
    }
    Some(
        existing
            .iter()
            .filter(|e| e.scope == desired.scope && e.role_ref == desired.role_ref)
            .flat_map(|e| e.subjects.iter().map(key))
            .collect(),
    )
}

/// Whether writing `desired` grants a subject not bound before (a member moved between parts
/// of the same scope is not one). A binding whose subjects are unknown is never held back: it
/// may hold a subject to remove.
pub fn adds_subjects(desired: &Desired, existing: &[Existing]) -> bool {
    present(desired, existing)
        .is_some_and(|p| desired.subjects.iter().any(|s| !p.contains(&key(s))))
}

/// `desired` without the subjects it would add: what may be written while additions wait, so
/// that removals are never held back. None: nothing to write.
pub fn without_additions(desired: &Desired, existing: &[Existing]) -> Option<Desired> {
    let present = present(desired, existing)?;
    let subjects: Vec<Subject> = desired
        .subjects
        .iter()
        .filter(|s| present.contains(&key(s)))
        .cloned()
        .collect();
    let current = existing
        .iter()
        .find(|e| e.scope == desired.scope && e.name == desired.name);
    match current {
        Some(e) if e.role_ref == desired.role_ref && e.subjects == subjects => None,
        None if subjects.is_empty() => None,
        _ => Some(Desired {
            subjects,
            ..desired.clone()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::RoleRef;

    fn user(name: &str) -> Subject {
        Subject {
            kind: "User".into(),
            name: name.into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            namespace: None,
        }
    }

    fn role(name: &str) -> RoleRef {
        RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: name.into(),
        }
    }

    fn desired(name: &str, role_name: &str, subjects: &[&str]) -> Desired {
        Desired {
            scope: Some("team-a".into()),
            name: name.into(),
            role_ref: role(role_name),
            subjects: subjects.iter().map(|s| user(s)).collect(),
        }
    }

    fn existing(name: &str, role_name: &str, subjects: &[&str]) -> Existing {
        Existing {
            scope: Some("team-a".into()),
            name: name.into(),
            role_ref: role(role_name),
            subjects: subjects.iter().map(|s| user(s)).collect(),
            cached: true,
        }
    }

    #[test]
    fn a_removal_is_no_addition_and_a_new_member_is() {
        let now = [existing("p-0", "view", &["a", "b"])];
        assert!(!adds_subjects(&desired("p-0", "view", &["a"]), &now));
        assert!(adds_subjects(
            &desired("p-0", "view", &["a", "b", "c"]),
            &now
        ));
        assert!(adds_subjects(&desired("p-1", "view", &["c"]), &now));
    }

    #[test]
    fn a_member_moved_between_parts_is_no_addition() {
        let now = [
            existing("p-0", "view", &["a", "b"]),
            existing("p-1", "view", &["c"]),
        ];
        assert!(!adds_subjects(&desired("p-1", "view", &["b", "c"]), &now));
    }

    #[test]
    fn another_role_is_an_addition() {
        let now = [existing("p-0", "view", &["a"])];
        assert!(adds_subjects(&desired("p-0", "edit", &["a"]), &now));
        let narrowed = without_additions(&desired("p-0", "edit", &["a"]), &now).unwrap();
        assert!(narrowed.subjects.is_empty(), "nobody gets the new role yet");
    }

    #[test]
    fn while_additions_wait_the_removals_of_the_same_write_are_done() {
        // b leaves and c joins in one write: b must go now, c waits.
        let now = [existing("p-0", "view", &["a", "b"])];
        let narrowed = without_additions(&desired("p-0", "view", &["a", "c"]), &now).unwrap();
        assert_eq!(narrowed.subjects, vec![user("a")]);
        // Nothing removed: nothing to write.
        assert_eq!(
            without_additions(&desired("p-0", "view", &["a", "b", "c"]), &now),
            None
        );
        // A new part of only new members: nothing to write.
        assert_eq!(
            without_additions(&desired("p-1", "view", &["c"]), &now),
            None
        );
    }

    #[test]
    fn a_binding_whose_subjects_are_unknown_is_never_held_back() {
        let now = [Existing {
            cached: false,
            subjects: Vec::new(),
            ..existing("p-0", "view", &[])
        }];
        assert!(!adds_subjects(&desired("p-0", "view", &["a"]), &now));
    }
}
