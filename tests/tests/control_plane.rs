//! The test control plane is a real Kubernetes: CRDs are served and validated by the apiserver,
//! the garbage collector and namespace controller run, and RBAC is enforced.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Resource};
use kube_scim_crds::{
    DirectoryRef, IngressSpec, ScimDirectory, ScimDirectorySpec, ScimUser, ScimUserSpec,
    ScimUserStatus, TokenSpec,
};
use kube_scim_tests::{ControlPlane, eventually};

fn directory(name: &str, spec: ScimDirectorySpec) -> ScimDirectory {
    ScimDirectory::new(name, spec)
}

#[test]
fn kubectl_lists_the_three_established_crds_and_scimdirectories() {
    let plane = ControlPlane::shared();
    let out = plane
        .kubectl()
        .args(["get", "crd", "-o", "name"])
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&out.stdout);
    for crd in [
        "scimdirectories.kubescim.io",
        "scimusers.kubescim.io",
        "scimgroups.kubescim.io",
    ] {
        assert!(
            names.contains(crd),
            "{crd} missing from `kubectl get crd`: {names}"
        );
    }
    let out = plane
        .kubectl()
        .args(["get", "scimdirectories", "-A"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl get scimdirectories: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = plane
        .kubectl()
        .args(["version", "-o", "json"])
        .output()
        .unwrap();
    let version: serde_json::Value = serde_json::from_slice(&version.stdout).unwrap();
    assert_eq!(
        version["serverVersion"]["gitVersion"],
        kube_scim_tests::KUBERNETES_VERSION
    );
}

#[tokio::test]
async fn apiserver_rejects_invalid_directories_with_a_readable_message() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("invalid-dir").await.unwrap();
    let api: Api<ScimDirectory> = Api::namespaced(plane.client().await.unwrap(), &ns);

    let tls_without_host = directory(
        "tls-without-host",
        ScimDirectorySpec {
            ingress: IngressSpec {
                tls_secret_name: Some("scim-tls".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let err = api
        .create(&PostParams::default(), &tls_without_host)
        .await
        .expect_err("TLS without host must be rejected");
    assert!(
        err.to_string()
            .contains("ingress.tlsSecretName requires ingress.host"),
        "{err}"
    );

    let bad_grace = directory(
        "bad-grace",
        ScimDirectorySpec {
            token: TokenSpec {
                grace_period: Some("forever".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let err = api
        .create(&PostParams::default(), &bad_grace)
        .await
        .expect_err("a grace period that is no duration must be rejected");
    assert!(err.to_string().contains("gracePeriod"), "{err}");

    // The Rust enum cannot express an unknown provider, so send raw JSON through kubectl.
    let mut bad_provider =
        serde_json::to_value(directory("bad-provider", Default::default())).unwrap();
    bad_provider["spec"]["provider"] = "okta-ish".into();
    let file = plane.dir().join(format!("{ns}-bad-provider.json"));
    bad_provider["metadata"]["namespace"] = ns.clone().into();
    std::fs::write(&file, bad_provider.to_string()).unwrap();
    let out = plane
        .kubectl()
        .args(["create", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an unknown provider must be rejected"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.provider") && stderr.contains("supported values"),
        "{stderr}"
    );

    let good = directory("good", ScimDirectorySpec::default());
    let created = api.create(&PostParams::default(), &good).await.unwrap();
    assert_eq!(created.spec.provider, kube_scim_crds::Provider::Entra);
    assert!(
        created.spec.ingress.enabled,
        "ingress.enabled defaults to true"
    );
}

#[tokio::test]
async fn directory_ref_of_a_user_is_immutable() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("immutable-ref").await.unwrap();
    let api: Api<ScimUser> = Api::namespaced(plane.client().await.unwrap(), &ns);
    let mut user = ScimUser::new(
        "6f1c0a52-2f4b-4b8f-9a55-0d1a1c3e2b7a",
        ScimUserSpec {
            directory_ref: DirectoryRef {
                name: "contoso".into(),
            },
        },
    );
    user.status = Some(ScimUserStatus {
        id: "6f1c0a52-2f4b-4b8f-9a55-0d1a1c3e2b7a".into(),
        user_name: "ada@contoso.example".into(),
        active: true,
        ..Default::default()
    });
    let created = api.create(&PostParams::default(), &user).await.unwrap();
    assert_eq!(
        created.status.as_ref().map(|s| s.user_name.as_str()),
        Some("ada@contoso.example"),
        "status is stored with the create (no status subresource)"
    );

    let patch = serde_json::json!({"spec": {"directoryRef": {"name": "fabrikam"}}});
    let err = api
        .patch(
            created.meta().name.as_deref().unwrap(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect_err("changing directoryRef must be rejected");
    assert!(
        err.to_string().contains("directoryRef is immutable"),
        "{err}"
    );
}

#[tokio::test]
async fn garbage_collector_deletes_dependents_and_namespaces_finish_deleting() {
    let plane = ControlPlane::shared();
    let client = plane.client().await.unwrap();
    let ns = plane.namespace("gc").await.unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let owner = configmaps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("owner".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let dependent = ConfigMap {
        metadata: ObjectMeta {
            name: Some("dependent".into()),
            owner_references: Some(vec![owner.controller_owner_ref(&()).unwrap()]),
            ..Default::default()
        },
        ..Default::default()
    };
    configmaps
        .create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    configmaps
        .delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually(
        "garbage collection of the dependent",
        Duration::from_secs(60),
        || async {
            configmaps
                .get_opt("dependent")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;

    let namespaces: Api<Namespace> = Api::all(client);
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
    eventually("namespace deletion", Duration::from_secs(90), || async {
        namespaces
            .get_opt(&ns)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_service_account_without_rbac_cannot_list_scim_users() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("rbac").await.unwrap();
    let client = plane.service_account_client(&ns, "nobody").await.unwrap();
    let api: Api<ScimUser> = Api::namespaced(client, &ns);
    match api.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
}

/// `make dev` starts its plane from tokio's blocking pool, whose idle threads exit after 10 s;
/// a plane's processes must live as long as the plane, not as long as the thread that made it.
#[test]
fn a_plane_started_from_a_short_lived_thread_still_answers_30_seconds_later() {
    let plane = std::thread::spawn(ControlPlane::start)
        .join()
        .expect("the starting thread panicked")
        .expect("the plane starts");
    std::thread::sleep(Duration::from_secs(30));
    let out = plane
        .kubectl()
        .args(["get", "--raw", "/readyz"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the plane stopped answering after its starting thread exited: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
