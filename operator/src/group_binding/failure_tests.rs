//! The ScimGroupBinding reconcile when the apiserver fails (409, 404, 500, 504, a lost
//! connection): a failed status write fails the reconcile with the kit's error and it is
//! requeued; a failed RoleBinding write is reported in the Ready condition (`ApplyFailed`,
//! with what to do about it) and retried soon.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use kube::Client;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube_scim_crds::group_binding::{
    AcceptedDirectory, GroupBindingDirectoryRef, GroupBindingRoleRef, GroupSelector,
    REASON_APPLY_FAILED, RoleKind, ScimGroupBindingStatus, SubjectMapping,
};
use kube_scim_crds::{
    DirectoryRef, ScimDirectory, ScimDirectorySpec, ScimGroup, ScimGroupBinding,
    ScimGroupBindingSpec, ScimGroupSpec, ScimGroupStatus, ScimUser, ScimUserSpec, ScimUserStatus,
    labels as scim_labels,
};

use super::plan::BindingPolicy;
use super::{Context, Error, FINALIZER, error_policy, reconcile, trust};
use crate::metrics::Metrics;
use crate::reconcile::fake_apiserver::{self, Failure, Fault};
use crate::reconcile::test_stores::filled_store;

const BINDING: &str = "/apis/kubescim.io/v1alpha1/namespaces/ns/scimgroupbindings/admins";
const STATUS: &str = "/apis/kubescim.io/v1alpha1/namespaces/ns/scimgroupbindings/admins/status";
const ROLE_BINDING: &str =
    "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings/kube-scim:ns:admins";

fn directory() -> ScimDirectory {
    let mut d = ScimDirectory::new("contoso", ScimDirectorySpec::default());
    d.metadata.namespace = Some("ns".into());
    d.metadata.uid = Some("uid-dir".into());
    d
}

/// `ns/admins`, past its finalizer, its directory already accepted: a reconcile goes straight
/// to the RoleBinding write and the status.
fn binding() -> ScimGroupBinding {
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
            trust_directory_secret_readers: true,
            directory_acknowledgement: None,
        },
    );
    b.metadata.namespace = Some("ns".into());
    b.metadata.uid = Some("uid-b".into());
    b.metadata.generation = Some(1);
    b.metadata.finalizers = Some(vec![FINALIZER.into()]);
    b.status = Some(ScimGroupBindingStatus {
        directory: Some(AcceptedDirectory {
            uid: "uid-dir".into(),
            credential_fingerprint: trust::credential_fingerprint(&directory()),
            acknowledgement: None,
        }),
        ..Default::default()
    });
    b
}

fn member() -> (ScimUser, ScimGroup) {
    let mut user = ScimUser::new(
        "ada",
        ScimUserSpec {
            directory_ref: DirectoryRef {
                name: "contoso".into(),
            },
        },
    );
    user.metadata.namespace = Some("ns".into());
    user.metadata.labels = Some(BTreeMap::from([(
        scim_labels::member_of("g"),
        "true".to_string(),
    )]));
    user.status = Some(ScimUserStatus {
        id: "ada".into(),
        user_name: "ada@example.com".into(),
        active: true,
        ..Default::default()
    });
    let mut group = ScimGroup::new(
        "g",
        ScimGroupSpec {
            directory_ref: DirectoryRef {
                name: "contoso".into(),
            },
            ..Default::default()
        },
    );
    group.metadata.namespace = Some("ns".into());
    group.status = Some(ScimGroupStatus {
        id: "g".into(),
        display_name: "Admins".into(),
        ..Default::default()
    });
    (user, group)
}

fn context(client: Client) -> Arc<Context> {
    let (user, group) = member();
    Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "test".into(),
                instance: None,
            },
        ),
        client,
        policy: BindingPolicy {
            allowed_cluster_roles: ["edit".to_string()].into(),
            ..Default::default()
        },
        resync: Duration::from_secs(600),
        users: filled_store(vec![user]),
        groups: filled_store(vec![group]),
        // Filled stores are ready; readiness is only awaited by `run_scope`'s gate anyway.
        users_ready: crate::watch::Readiness::of(&filled_store::<ScimUser>(Vec::new())),
        groups_ready: crate::watch::Readiness::of(&filled_store::<ScimGroup>(Vec::new())),
        directories: filled_store(vec![directory()]),
        directories_ready: crate::watch::Readiness::of(&filled_store::<ScimDirectory>(Vec::new())),
        role_bindings: filled_store(Vec::new()),
        cluster_role_bindings: None,
        metrics: Arc::new(Metrics::default()),
        buckets: Default::default(),
        written: Default::default(),
    })
}

/// The apiserver's objects: the binding (a status write answers with it).
fn objects() -> HashMap<String, serde_json::Value> {
    HashMap::from([(
        BINDING.to_string(),
        serde_json::to_value(binding()).unwrap(),
    )])
}

fn label(failure: Failure) -> &'static str {
    match failure {
        Failure::Conflict => "api_409",
        Failure::NotFound => "api_404",
        Failure::Internal => "api_500",
        Failure::Timeout => "api_504",
        Failure::Dropped => "api_client",
    }
}

#[tokio::test]
async fn without_failures_the_role_binding_is_written_and_ready() {
    let (client, calls) = fake_apiserver::client(objects());
    let action = reconcile(Arc::new(binding()), context(client))
        .await
        .expect("reconciled");
    assert_eq!(action, Action::requeue(Duration::from_secs(600)));
    assert_eq!(
        calls.write_lines(),
        [format!("PATCH {ROLE_BINDING}"), format!("PATCH {STATUS}")]
    );
    let status = calls.last_write_to(Method::PATCH, STATUS).unwrap();
    assert_eq!(status["status"]["conditions"][0]["status"], "True");
}

#[tokio::test]
async fn a_failed_status_write_fails_the_reconcile_which_is_requeued() {
    for failure in Failure::ALL {
        let (client, _) = fake_apiserver::client_failing(
            objects(),
            vec![Fault::new(Method::PATCH, STATUS, failure)],
        );
        let ctx = context(client);
        let b = Arc::new(binding());
        let error = reconcile(b.clone(), ctx.clone())
            .await
            .expect_err(&format!("{failure:?}"));
        assert!(
            matches!(&error, Error::Finalizer(inner) if matches!(**inner,
                kube::runtime::finalizer::Error::ApplyFailed(Error::Kube(_)))),
            "{failure:?}: {error}"
        );
        assert_eq!(error.metric_label(), label(failure), "{failure:?}");
        assert_eq!(
            error_policy(b, &error, ctx),
            Action::requeue(Duration::from_secs(5)),
            "{failure:?}"
        );
    }
}

#[tokio::test]
async fn a_failed_role_binding_write_is_a_condition_to_act_on() {
    for failure in Failure::ALL {
        let (client, calls) = fake_apiserver::client_failing(
            objects(),
            vec![Fault::new(Method::PATCH, ROLE_BINDING, failure)],
        );
        let action = reconcile(Arc::new(binding()), context(client))
            .await
            .expect("the status tells");
        assert_eq!(
            action,
            Action::requeue(Duration::from_secs(15)),
            "{failure:?}"
        );
        let status = calls
            .last_write_to(Method::PATCH, STATUS)
            .expect("status written");
        let ready = &status["status"]["conditions"][0];
        assert_eq!(ready["status"], "False", "{failure:?}");
        assert_eq!(ready["reason"], REASON_APPLY_FAILED, "{failure:?}");
        let message = ready["message"].as_str().unwrap();
        assert!(
            message.contains("namespace team-a"),
            "{failure:?}: {message}"
        );
        if failure == Failure::NotFound {
            assert!(message.contains("does the namespace exist?"), "{message}");
        }
        // No sync time for a sync that did not happen; the pin stays.
        assert_eq!(
            status["status"]["directory"]["uid"], "uid-dir",
            "{failure:?}"
        );
    }
}

#[test]
fn a_written_binding_triggers_only_a_scim_group_binding_of_the_store() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    let meta = |of: &str| ObjectMeta {
        annotations: Some(BTreeMap::from([(
            super::labels::BINDING.to_string(),
            of.to_string(),
        )])),
        ..Default::default()
    };
    let store = filled_store(vec![binding()]);
    assert!(super::known_binding_of(&store, &meta("ns/admins")).is_some());
    // Deleted (its cleanup removes the binding), of another scope, or not listed yet.
    assert!(super::known_binding_of(&store, &meta("ns/gone")).is_none());
    assert!(super::known_binding_of(&filled_store(Vec::new()), &meta("ns/admins")).is_none());
}
