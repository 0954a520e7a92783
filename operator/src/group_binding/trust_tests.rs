use kube::api::ObjectMeta;
use kube_scim_crds::group_binding::{
    GroupBindingDirectoryRef, GroupBindingRoleRef, GroupSelector, RoleKind, ScimGroupBindingStatus,
    SubjectMapping,
};
use kube_scim_crds::{
    AuthSpec, EntraTokenSpec, Provider, ScimDirectorySpec, ScimGroupBindingSpec, SecretKeyRef,
};

use super::*;

const NS: &str = "identity";
const TENANT: &str = "3f1e4b7a-5c2d-4e8f-9a0b-1c2d3e4f5a6b";

fn directory(uid: &str, methods: Vec<AuthMethod>) -> ScimDirectory {
    let mut d = ScimDirectory::new(
        "contoso",
        ScimDirectorySpec {
            auth: AuthSpec {
                entra_token: methods
                    .contains(&AuthMethod::EntraToken)
                    .then(|| EntraTokenSpec {
                        tenant_id: TENANT.into(),
                        ..Default::default()
                    }),
                methods,
                oauth_client_credentials: None,
                workload_identity_federation: None,
            },
            ..Default::default()
        },
    );
    d.metadata = ObjectMeta {
        name: Some("contoso".into()),
        namespace: Some(NS.into()),
        uid: Some(uid.into()),
        ..Default::default()
    };
    d
}

fn entra(uid: &str) -> ScimDirectory {
    directory(uid, vec![AuthMethod::EntraToken])
}

fn binding(
    opt_in: bool,
    ack: Option<&str>,
    accepted: Option<AcceptedDirectory>,
) -> ScimGroupBinding {
    let mut b = ScimGroupBinding::new(
        "admins",
        ScimGroupBindingSpec {
            directory_ref: GroupBindingDirectoryRef {
                name: "contoso".into(),
            },
            group: GroupSelector {
                id: Some("g".into()),
                ..Default::default()
            },
            role_ref: GroupBindingRoleRef {
                kind: RoleKind::ClusterRole,
                name: "edit".into(),
            },
            namespaces: vec!["team-a".into()],
            cluster_wide: false,
            subject: SubjectMapping::default(),
            trust_directory_secret_readers: opt_in,
            directory_acknowledgement: ack.map(str::to_string),
        },
    );
    b.metadata.namespace = Some(NS.into());
    b.status = accepted.map(|a| ScimGroupBindingStatus {
        directory: Some(a),
        ..Default::default()
    });
    b
}

fn reason(trust: &Trust) -> Option<&'static str> {
    trust.refusal.as_ref().map(|o| o.reason)
}

#[test]
fn an_entra_only_directory_is_accepted_and_pinned_at_first_sight() {
    let dir = entra("uid-1");
    let trust = check(&binding(false, None, None), Some(&dir));
    assert_eq!(reason(&trust), None);
    let accepted = trust.accepted.unwrap();
    assert_eq!(accepted.uid, "uid-1");
    assert_eq!(
        accepted.credential_fingerprint,
        credential_fingerprint(&dir)
    );
    assert_eq!(accepted.acknowledgement, None);
}

#[test]
fn a_directory_with_a_secret_credential_needs_the_opt_in() {
    for methods in [
        vec![AuthMethod::BearerToken],
        vec![AuthMethod::OAuthClientCredentials],
        vec![AuthMethod::EntraToken, AuthMethod::BearerToken],
    ] {
        let dir = directory("uid-1", methods.clone());
        let refused = check(&binding(false, None, None), Some(&dir));
        assert_eq!(
            reason(&refused),
            Some(REASON_DIRECTORY_CREDENTIAL_SHARED),
            "{methods:?}"
        );
        let message = &refused.refusal.unwrap().message;
        assert!(message.contains("trustDirectorySecretReaders"), "{message}");
        // Pinned all the same: opting in later keeps the directory it was refused for.
        assert_eq!(refused.accepted.unwrap().uid, "uid-1");
        assert_eq!(
            reason(&check(&binding(true, None, None), Some(&dir))),
            None,
            "{methods:?}"
        );
    }
}

#[test]
fn a_missing_or_deleted_directory_binds_nothing_and_keeps_the_pin() {
    let pin = check(&binding(false, None, None), Some(&entra("uid-1")))
        .accepted
        .unwrap();
    let b = binding(false, None, Some(pin.clone()));
    let gone = check(&b, None);
    assert_eq!(reason(&gone), Some(REASON_DIRECTORY_NOT_FOUND));
    assert_eq!(gone.accepted, Some(pin.clone()));
    let mut deleting = entra("uid-1");
    deleting.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
    );
    assert_eq!(
        reason(&check(&b, Some(&deleting))),
        Some(REASON_DIRECTORY_NOT_FOUND)
    );
}

#[test]
fn a_directory_created_again_under_the_same_name_is_refused_until_acknowledged() {
    let pin = check(&binding(false, None, None), Some(&entra("uid-1")))
        .accepted
        .unwrap();
    // The same configuration, another object: whoever re-created it chose it.
    let again = entra("uid-2");
    let refused = check(&binding(false, None, Some(pin.clone())), Some(&again));
    assert_eq!(reason(&refused), Some(REASON_DIRECTORY_CHANGED));
    assert!(refused.refusal.unwrap().message.contains("uid-1"));
    assert_eq!(refused.accepted, Some(pin.clone()), "the old pin stays");
    // Any other spec change (opt-in included) does not accept it.
    assert_eq!(
        reason(&check(
            &binding(true, None, Some(pin.clone())),
            Some(&again)
        )),
        Some(REASON_DIRECTORY_CHANGED)
    );
    // Changing the acknowledgement does.
    let accepted = check(&binding(false, Some("2026-12-06"), Some(pin)), Some(&again));
    assert_eq!(reason(&accepted), None);
    let new_pin = accepted.accepted.unwrap();
    assert_eq!(new_pin.uid, "uid-2");
    assert_eq!(new_pin.acknowledgement.as_deref(), Some("2026-12-06"));
    // And it stays accepted on the next reconcile.
    assert_eq!(
        reason(&check(
            &binding(false, Some("2026-12-06"), Some(new_pin)),
            Some(&again)
        )),
        None
    );
}

#[test]
fn a_changed_credential_configuration_is_refused_until_acknowledged() {
    let original = entra("uid-1");
    let pin = check(&binding(true, None, None), Some(&original))
        .accepted
        .unwrap();
    let mut changes: Vec<(&str, ScimDirectory)> = Vec::new();
    let mut d = original.clone();
    d.spec.auth.methods.push(AuthMethod::BearerToken);
    changes.push(("a method added", d));
    let mut d = original.clone();
    d.spec.auth.entra_token.as_mut().unwrap().tenant_id =
        "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d".into();
    changes.push(("another tenant", d));
    let mut d = original.clone();
    d.spec.auth.entra_token.as_mut().unwrap().allowed_app_ids = vec!["app".into()];
    changes.push(("other applications", d));
    let mut d = original.clone();
    d.spec.token.secret_ref = Some(SecretKeyRef {
        name: "mine".into(),
        key: None,
    });
    changes.push(("another token Secret", d));
    let mut d = original.clone();
    d.spec.provider = Provider::Generic;
    changes.push(("another provider", d));
    for (what, changed) in changes {
        // Even with the opt-in: the opt-in trusts Secret readers, not whoever edits the
        // directory.
        let trust = check(&binding(true, None, Some(pin.clone())), Some(&changed));
        assert_eq!(reason(&trust), Some(REASON_DIRECTORY_CHANGED), "{what}");
        assert_eq!(trust.accepted, Some(pin.clone()), "{what}");
    }
    // Token rotation, suspension and display changes keep the pin.
    let mut d = original.clone();
    d.spec.token.rotation_request = Some("2".into());
    d.spec.token.grace_period = Some("1h".into());
    d.spec.display_name = Some("Contoso".into());
    assert_eq!(credential_fingerprint(&d), pin.credential_fingerprint);
    assert_eq!(
        reason(&check(&binding(true, None, Some(pin)), Some(&d))),
        None
    );
}

#[test]
fn an_acknowledged_change_to_a_secret_credential_still_needs_the_opt_in() {
    let pin = check(&binding(false, None, None), Some(&entra("uid-1")))
        .accepted
        .unwrap();
    let bearer = directory(
        "uid-1",
        vec![AuthMethod::EntraToken, AuthMethod::BearerToken],
    );
    let trust = check(&binding(false, Some("1"), Some(pin)), Some(&bearer));
    assert_eq!(reason(&trust), Some(REASON_DIRECTORY_CREDENTIAL_SHARED));
}

#[test]
fn the_fingerprint_is_stable_and_versioned() {
    let a = credential_fingerprint(&entra("uid-1"));
    assert_eq!(a, credential_fingerprint(&entra("uid-2")));
    assert!(a.starts_with("v1:") && a.len() == 3 + 64, "{a}");
}

#[test]
fn a_refused_plan_removes_every_binding() {
    let existing = vec![Existing {
        scope: Some("team-a".into()),
        name: "kube-scim:identity:admins".into(),
        role_ref: Default::default(),
        subjects: Vec::new(),
        cached: true,
    }];
    let outcome = Outcome {
        ready: false,
        reason: REASON_DIRECTORY_CHANGED,
        message: String::new(),
    };
    let plan = refused_plan(outcome, &existing);
    assert!(plan.desired.is_empty());
    assert_eq!(
        plan.stale,
        vec![(Some("team-a".into()), "kube-scim:identity:admins".into())]
    );
}
