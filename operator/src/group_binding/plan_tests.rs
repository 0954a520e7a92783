use std::collections::BTreeMap;

use kube::api::ObjectMeta;
use kube_scim_crds::group_binding::{
    GroupBindingDirectoryRef, GroupBindingRoleRef, GroupSelector, SubjectMapping,
};
use kube_scim_crds::{
    DirectoryRef, ScimGroupBindingSpec, ScimGroupSpec, ScimGroupStatus, ScimUserSpec,
    ScimUserStatus, labels,
};

use super::*;

const NS: &str = "team";
const DIR: &str = "entra";

fn meta(name: &str, member_of: &[&str]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        uid: Some(format!("uid-{name}")),
        labels: Some(
            member_of
                .iter()
                .map(|g| (labels::member_of(g), "true".to_string()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    }
}

fn user(id: &str, active: bool, member_of: &[&str]) -> ScimUser {
    ScimUser {
        metadata: meta(id, member_of),
        spec: ScimUserSpec {
            directory_ref: DirectoryRef { name: DIR.into() },
        },
        status: Some(ScimUserStatus {
            id: id.into(),
            user_name: format!("{id}@example.com"),
            external_id: (id != "noext").then(|| format!("oid-{id}")),
            active,
            ..Default::default()
        }),
    }
}

fn group(id: &str, name: &str, member_of: &[&str]) -> ScimGroup {
    ScimGroup {
        metadata: meta(id, member_of),
        spec: ScimGroupSpec {
            directory_ref: DirectoryRef { name: DIR.into() },
            member_rollout: None,
        },
        status: Some(ScimGroupStatus {
            id: id.into(),
            external_id: Some(format!("oid-{id}")),
            display_name: name.into(),
            ..Default::default()
        }),
    }
}

fn binding(selector: GroupSelector, role: &str, namespaces: &[&str]) -> ScimGroupBinding {
    let mut b = ScimGroupBinding::new(
        "admins",
        ScimGroupBindingSpec {
            directory_ref: GroupBindingDirectoryRef { name: DIR.into() },
            group: selector,
            role_ref: GroupBindingRoleRef {
                kind: RoleKind::ClusterRole,
                name: role.into(),
            },
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            cluster_wide: false,
            subject: SubjectMapping {
                kind: SubjectKind::User,
                name: Some("oidc:{{externalId}}".into()),
            },
            trust_directory_secret_readers: false,
            directory_acknowledgement: None,
        },
    );
    b.metadata.namespace = Some(NS.into());
    b.metadata.uid = Some("uid-binding".into());
    b
}

fn by_name(name: &str) -> GroupSelector {
    GroupSelector {
        display_name: Some(name.into()),
        ..Default::default()
    }
}

fn policy() -> BindingPolicy {
    BindingPolicy {
        allowed_cluster_roles: ["edit".to_string(), "view".to_string()].into(),
        ..Default::default()
    }
}

fn names(plan: &Plan) -> Vec<String> {
    plan.desired[0]
        .0
        .subjects
        .iter()
        .map(|s| s.name.clone())
        .collect()
}

#[test]
fn active_members_of_nested_groups_become_users_in_every_namespace() {
    let groups = [
        group("g1", "Platform", &[]),
        group("g2", "Platform-SRE", &["g1"]),
        group("g3", "Other", &[]),
    ];
    let users = [
        user("alice", true, &["g1"]),
        user("bob", true, &["g2"]),
        user("carol", false, &["g1"]),
        user("dave", true, &["g3"]),
        user("noext", true, &["g1"]),
    ];
    let b = binding(by_name("Platform"), "edit", &["a", "b"]);
    let plan = plan(&b, &groups, &users, &policy(), &[]);
    assert!(plan.outcome.ready, "{:?}", plan.outcome);
    assert_eq!(plan.desired.len(), 2);
    assert_eq!(names(&plan), ["oidc:oid-alice", "oidc:oid-bob"]);
    assert_eq!(plan.skipped, 1);
    assert_eq!(plan.group_id.as_deref(), Some("g1"));
    let scopes: Vec<_> = plan.desired.iter().map(|(d, _)| d.scope.clone()).collect();
    assert_eq!(scopes, [Some("a".into()), Some("b".into())]);
    assert!(plan.desired.iter().all(|(_, w)| *w == Write::Apply));
    assert_eq!(plan.desired[0].0.name, "kube-scim:team:admins");
    assert_eq!(plan.desired[0].0.role_ref.kind, "ClusterRole");
}

#[test]
fn a_group_cycle_terminates() {
    let groups = [group("g1", "A", &["g2"]), group("g2", "B", &["g1"])];
    let users = [user("alice", true, &["g2"])];
    let plan = plan(
        &binding(by_name("A"), "edit", &[]),
        &groups,
        &users,
        &policy(),
        &[],
    );
    assert_eq!(names(&plan), ["oidc:oid-alice"]);
    assert_eq!(
        plan.desired[0].0.scope.as_deref(),
        Some(NS),
        "default: own namespace"
    );
}

#[test]
fn unchanged_bindings_are_kept_and_leftovers_removed() {
    let groups = [group("g1", "A", &[])];
    let users = [user("alice", true, &["g1"])];
    let b = binding(by_name("A"), "edit", &["a"]);
    let first = plan(&b, &groups, &users, &policy(), &[]);
    let (d, _) = &first.desired[0];
    let existing = vec![
        Existing {
            scope: d.scope.clone(),
            name: d.name.clone(),
            role_ref: d.role_ref.clone(),
            subjects: d.subjects.clone(),
            cached: true,
        },
        Existing {
            scope: Some("old".into()),
            name: d.name.clone(),
            role_ref: d.role_ref.clone(),
            subjects: Vec::new(),
            cached: true,
        },
    ];
    let again = plan(&b, &groups, &users, &policy(), &existing);
    assert_eq!(again.desired[0].1, Write::Keep);
    assert_eq!(again.stale, [(Some("old".into()), d.name.clone())]);

    let mut changed = b.clone();
    changed.spec.role_ref.name = "view".into();
    let replaced = plan(&changed, &groups, &users, &policy(), &existing);
    assert_eq!(
        replaced.desired[0].1,
        Write::Replace,
        "roleRef is immutable"
    );
}

#[test]
fn refusals_remove_everything_with_an_actionable_reason() {
    let groups = [
        group("g1", "A", &[]),
        group("g9", "Twin", &[]),
        group("g8", "Twin", &[]),
    ];
    let users = [user("alice", true, &["g1"])];
    let existing = vec![Existing {
        scope: Some("a".into()),
        name: "kube-scim:team:admins".into(),
        role_ref: Default::default(),
        subjects: Vec::new(),
        cached: false,
    }];
    let cases = [
        (
            binding(by_name("A"), "cluster-admin", &["a"]),
            REASON_ROLE_NOT_ALLOWED,
        ),
        (
            binding(by_name("Missing"), "edit", &["a"]),
            REASON_GROUP_NOT_FOUND,
        ),
        (
            binding(by_name("Twin"), "edit", &["a"]),
            REASON_GROUP_AMBIGUOUS,
        ),
    ];
    for (b, reason) in cases {
        let p = plan(&b, &groups, &users, &policy(), &existing);
        assert!(!p.outcome.ready);
        assert_eq!(p.outcome.reason, reason, "{}", p.outcome.message);
        assert!(p.desired.is_empty());
        assert_eq!(p.stale.len(), 1);
    }
    let mut wide = binding(by_name("A"), "edit", &[]);
    wide.spec.cluster_wide = true;
    let p = plan(&wide, &groups, &users, &policy(), &[]);
    assert_eq!(p.outcome.reason, REASON_CLUSTER_WIDE_NOT_ALLOWED);
    let allowed = BindingPolicy {
        allow_cluster_wide: true,
        ..policy()
    };
    let p = plan(&wide, &groups, &users, &allowed, &[]);
    assert!(p.outcome.ready);
    assert_eq!(p.desired[0].0.scope, None);
}

#[test]
fn selection_by_external_id_survives_a_rename_and_group_subjects_name_the_group() {
    let groups = [group("g1", "Renamed", &[])];
    let mut b = binding(
        GroupSelector {
            external_id: Some("oid-g1".into()),
            ..Default::default()
        },
        "edit",
        &[],
    );
    b.spec.subject = SubjectMapping {
        kind: SubjectKind::Group,
        name: Some("entra:{{displayName}}".into()),
    };
    let p = plan(&b, &groups, &[], &policy(), &[]);
    assert_eq!(names(&p), ["entra:Renamed"]);
    assert_eq!(p.desired[0].0.subjects[0].kind, "Group");
}

#[test]
fn templates_render_or_refuse() {
    let lookup = |a: &str| match a {
        "userName" => Some("ann@x".to_string()),
        "empty" => Some(String::new()),
        _ => None,
    };
    assert_eq!(render("{{userName}}", lookup).as_deref(), Some("ann@x"));
    assert_eq!(
        render("oidc:{{ userName }}!", lookup).as_deref(),
        Some("oidc:ann@x!")
    );
    assert_eq!(render("{{externalId}}", lookup), None);
    assert_eq!(render("{{empty}}", lookup), None);
    assert_eq!(render("{{userName", lookup), None);
    assert_eq!(render("x}}", lookup), None);
}

#[test]
fn ten_thousand_users_split_into_bindings_under_the_budget_and_one_change_touches_one_part() {
    let subjects: Vec<Subject> = (0..10_000)
        .map(|i| Subject {
            api_group: Some(RBAC_GROUP.into()),
            kind: "User".into(),
            name: format!(
                "oidc:{:08x}-aaaa-bbbb-cccc-{i:012}@a-rather-long-tenant.example.com",
                i * 7919
            ),
            namespace: None,
        })
        .collect();
    let parts = split(&subjects);
    assert!(
        parts.len() > 1 && parts.len().is_power_of_two(),
        "{}",
        parts.len()
    );
    for part in &parts {
        let bytes = serde_json::to_vec(part).unwrap().len();
        assert!(bytes <= BINDING_BUDGET_BYTES, "{bytes}");
    }
    assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 10_000);
    let fewer = split(&subjects[1..]);
    assert_eq!(fewer.len(), parts.len());
    let changed = parts.iter().zip(&fewer).filter(|(a, b)| a != b).count();
    assert_eq!(changed, 1);
    assert_eq!(split(&[]).len(), 1, "an empty group keeps one binding");
    assert_eq!(part_name("b", 0), "b");
    assert_eq!(part_name("b", 3), "b:3");
    let long = base_name("ns", &"x".repeat(253));
    assert!(long.len() <= 200);
}

#[test]
fn a_group_being_deleted_grants_nothing_while_its_labels_are_removed() {
    let mut deleting = group("g1", "Platform", &[]);
    deleting.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
    );
    let users = [user("alice", true, &["g1"])];
    let b = binding(by_name("Platform"), "edit", &["a"]);
    let before = plan(&b, &[group("g1", "Platform", &[])], &users, &policy(), &[]);
    let (d, _) = &before.desired[0];
    let existing = [Existing {
        scope: d.scope.clone(),
        name: d.name.clone(),
        role_ref: d.role_ref.clone(),
        subjects: d.subjects.clone(),
        cached: true,
    }];
    let plan = plan(&b, &[deleting], &users, &policy(), &existing);
    assert!(!plan.outcome.ready);
    assert_eq!(plan.outcome.reason, REASON_GROUP_NOT_FOUND);
    assert!(plan.desired.is_empty());
    assert_eq!(plan.stale.len(), 1);
}

#[test]
fn a_member_list_being_replaced_binds_the_new_list_not_the_old_labels() {
    use kube_scim_crds::{MemberRollout, RolloutMember};
    let member = |value: &str| RolloutMember {
        value: value.into(),
        display: None,
    };
    let mut replaced = group("g1", "Platform", &[]);
    replaced.spec.member_rollout = Some(MemberRollout {
        members: vec![member("bob"), member("g2")],
    });
    let groups = [replaced, group("g2", "Nested", &[])];
    let users = [
        // Still labelled from the old list, not in the new one.
        user("alice", true, &["g1"]),
        // In the new list, label not written yet.
        user("bob", true, &[]),
        // Member of a nested group that the new list names.
        user("carol", true, &["g2"]),
    ];
    let plan = plan(
        &binding(by_name("Platform"), "edit", &["a"]),
        &groups,
        &users,
        &policy(),
        &[],
    );
    assert!(plan.outcome.ready, "{:?}", plan.outcome);
    assert_eq!(names(&plan), ["oidc:oid-bob", "oidc:oid-carol"]);
}

fn named(id: &str, user_name: &str, member_of: &[&str]) -> ScimUser {
    let mut u = user(id, true, member_of);
    u.status.as_mut().unwrap().user_name = user_name.into();
    u
}

fn held(mut meta: ObjectMeta, operation: &str) -> ObjectMeta {
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(kube_scim_crds::HELD_LABEL.into(), operation.into());
    meta
}

#[test]
fn built_in_identities_are_never_subjects_however_disguised() {
    let groups = [group("g1", "Platform", &[])];
    let users = [
        named("alice", "alice@example.com", &["g1"]),
        named("u1", "system:masters", &["g1"]),
        named("u2", "system:anonymous", &["g1"]),
        named("u3", "system:serviceaccount:kube-system:default", &["g1"]),
        named("u4", "System:Masters", &["g1"]),
        named("u5", " system:masters", &["g1"]),
        named("u6", "system :masters", &["g1"]),
        named("u7", "sys\u{200b}tem:masters", &["g1"]),
        named("u8", "\tsystem:node:n1", &["g1"]),
        named("u9", "bob@example.com ", &["g1"]),
        named("u10", "carol\u{0}@example.com", &["g1"]),
    ];
    let mut b = binding(by_name("Platform"), "edit", &["a"]);
    b.spec.subject.name = Some("{{userName}}".into());
    let p = plan(&b, &groups, &users, &policy(), &[]);
    assert!(p.outcome.ready, "{:?}", p.outcome);
    assert_eq!(names(&p), ["alice@example.com"]);
    assert_eq!(p.refused.len(), 10, "{:?}", p.refused);
    assert_eq!(p.members, 1);
    assert!(
        p.outcome.message.contains("10 subject name(s) refused"),
        "{}",
        p.outcome.message
    );

    // The template itself cannot reach there either.
    b.spec.subject.name = Some("system:{{externalId}}".into());
    let p = plan(&b, &groups, &users, &policy(), &[]);
    assert!(names(&p).is_empty());
    assert_eq!(p.refused.len(), users.len());

    // A literal prefix keeps every value out of the reserved namespace.
    b.spec.subject.name = Some("oidc:{{userName}}".into());
    let p = plan(&b, &groups, &users[..5], &policy(), &[]);
    assert_eq!(names(&p).len(), 5);
    assert!(p.refused.is_empty());
}

#[test]
fn refusal_rules() {
    for name in [
        "system:masters",
        "system:authenticated",
        "system:unauthenticated",
        "SYSTEM:masters",
        "system:",
        "\u{feff}system:masters",
        "system\u{2060}:masters",
    ] {
        assert_eq!(refusal(name), Some(Refusal::Reserved), "{name:?}");
    }
    for name in [
        "alice ",
        " alice",
        "al\u{200d}ice",
        "al\nice",
        "al\u{7f}ice",
    ] {
        assert_eq!(refusal(name), Some(Refusal::NotPlain), "{name:?}");
    }
    for name in [
        "alice@example.com",
        "oidc:system:masters",
        "Platform Admins",
        "systemd:journal",
        "entra:system",
    ] {
        assert_eq!(refusal(name), None, "{name:?}");
    }
}

#[test]
fn a_group_renamed_to_a_built_in_group_binds_nothing() {
    let mut b = binding(by_name("system:authenticated"), "edit", &["a"]);
    b.spec.group = GroupSelector {
        external_id: Some("oid-g1".into()),
        ..Default::default()
    };
    b.spec.subject = SubjectMapping {
        kind: SubjectKind::Group,
        name: None,
    };
    let existing = [Existing {
        scope: Some("a".into()),
        name: "kube-scim:team:admins".into(),
        role_ref: Default::default(),
        subjects: Vec::new(),
        cached: true,
    }];
    for renamed in [
        "system:authenticated",
        "system:masters",
        "System:Unauthenticated",
    ] {
        let groups = [group("g1", renamed, &[])];
        let p = plan(&b, &groups, &[], &policy(), &existing);
        assert!(!p.outcome.ready);
        assert_eq!(p.outcome.reason, REASON_SUBJECT_REFUSED, "{renamed}");
        assert!(p.desired.is_empty());
        assert_eq!(p.stale.len(), 1, "the old binding is removed");
        assert_eq!(p.refused, [renamed.to_string()]);
    }
    let groups = [group("g1", "Platform", &[])];
    let p = plan(&b, &groups, &[], &policy(), &existing);
    assert!(p.outcome.ready);
    assert_eq!(names(&p), ["Platform"]);
}

#[test]
fn a_held_deactivation_or_deletion_removes_access_at_once() {
    let groups = [group("g1", "Platform", &[]), group("g2", "Nested", &["g1"])];
    let mut deactivating = user("bob", true, &["g1"]);
    deactivating.metadata = held(deactivating.metadata, kube_scim_crds::HELD_DEACTIVATE);
    let mut deleting = user("carol", true, &["g2"]);
    deleting.metadata = held(deleting.metadata, kube_scim_crds::HELD_DELETE);
    let mut unknown = user("dave", true, &["g1"]);
    unknown.metadata = held(unknown.metadata, "something-new");
    let users = [
        user("alice", true, &["g1"]),
        deactivating,
        deleting,
        unknown,
    ];
    let p = plan(
        &binding(by_name("Platform"), "edit", &["a"]),
        &groups,
        &users,
        &policy(),
        &[],
    );
    assert!(p.outcome.ready, "{:?}", p.outcome);
    assert_eq!(names(&p), ["oidc:oid-alice"]);
    assert_eq!(p.held, 3);
    assert!(
        p.outcome
            .message
            .contains("3 member(s) left out while the deletion guard holds")
    );
}

#[test]
fn a_group_whose_deletion_is_held_grants_nothing_directly_or_nested() {
    let users = [user("alice", true, &["g1"]), user("bob", true, &["g2"])];
    let b = binding(by_name("Platform"), "edit", &["a"]);
    let mut root = group("g1", "Platform", &[]);
    root.metadata = held(root.metadata, kube_scim_crds::HELD_DELETE);
    let existing = [Existing {
        scope: Some("a".into()),
        name: "kube-scim:team:admins".into(),
        role_ref: Default::default(),
        subjects: Vec::new(),
        cached: true,
    }];
    let p = plan(
        &b,
        &[root, group("g2", "Nested", &["g1"])],
        &users,
        &policy(),
        &existing,
    );
    assert!(!p.outcome.ready);
    assert_eq!(p.outcome.reason, REASON_GROUP_NOT_FOUND);
    assert!(
        p.outcome.message.contains("deletion guard"),
        "{}",
        p.outcome.message
    );
    assert!(p.desired.is_empty());
    assert_eq!(p.stale.len(), 1);

    let mut nested = group("g2", "Nested", &["g1"]);
    nested.metadata = held(nested.metadata, kube_scim_crds::HELD_DELETE);
    let p = plan(
        &b,
        &[group("g1", "Platform", &[]), nested],
        &users,
        &policy(),
        &existing,
    );
    assert!(p.outcome.ready);
    assert_eq!(names(&p), ["oidc:oid-alice"]);
}

#[test]
fn a_required_prefix_must_begin_the_template_literally() {
    let groups = [group("g1", "Platform", &[])];
    let users = [user("alice", true, &["g1"])];
    let strict = BindingPolicy {
        subject_prefix: "oidc:".into(),
        ..policy()
    };
    let b = binding(by_name("Platform"), "edit", &["a"]);
    let p = plan(&b, &groups, &users, &strict, &[]);
    assert!(p.outcome.ready, "{:?}", p.outcome);
    assert_eq!(names(&p), ["oidc:oid-alice"]);

    let existing = [Existing {
        scope: Some("a".into()),
        name: "kube-scim:team:admins".into(),
        role_ref: Default::default(),
        subjects: Vec::new(),
        cached: true,
    }];
    for template in [None, Some("{{userName}}"), Some("{{externalId}}oidc:")] {
        let mut b = b.clone();
        b.spec.subject.name = template.map(str::to_string);
        let p = plan(&b, &groups, &users, &strict, &existing);
        assert!(!p.outcome.ready);
        assert_eq!(p.outcome.reason, REASON_SUBJECT_PREFIX_REQUIRED);
        assert!(
            p.outcome.message.contains("\"oidc:"),
            "{}",
            p.outcome.message
        );
        assert!(p.desired.is_empty());
        assert_eq!(p.stale.len(), 1);
    }
    let mut as_group = b.clone();
    as_group.spec.subject = SubjectMapping {
        kind: SubjectKind::Group,
        name: Some("oidc:{{displayName}}".into()),
    };
    assert_eq!(
        names(&plan(&as_group, &groups, &users, &strict, &[])),
        ["oidc:Platform"]
    );
}
