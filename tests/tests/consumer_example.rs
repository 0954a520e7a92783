//! `examples/user-sync`, the consumer example of docs/consumers.md, turns ScimUser changes on a
//! real control plane into the right account actions. The ScimUsers are written here the way the
//! SCIM server writes them (labels, `.status` in the same request).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube_scim_crds::{
    DirectoryRef, MultiValuedAttribute, ScimUser, ScimUserSpec, ScimUserStatus, labels,
};
use kube_scim_tests::procs::ManagedProcess;
use kube_scim_tests::{ControlPlane, workspace_binary};
use serde_json::{Value, json};

fn user(id: &str, directory: &str, user_name: &str) -> ScimUser {
    ScimUser {
        metadata: ObjectMeta {
            name: Some(id.into()),
            labels: Some(BTreeMap::from([
                (labels::DIRECTORY.to_string(), directory.to_string()),
                (labels::ACTIVE.to_string(), "true".to_string()),
            ])),
            ..Default::default()
        },
        spec: ScimUserSpec {
            directory_ref: DirectoryRef {
                name: directory.into(),
            },
        },
        status: Some(ScimUserStatus {
            id: id.into(),
            user_name: user_name.into(),
            active: true,
            emails: vec![MultiValuedAttribute {
                value: Some(user_name.into()),
                kind: Some("work".into()),
                primary: Some(true),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

/// Waits until the example has printed `count` action lines and returns them.
async fn actions(process: &ManagedProcess, count: usize) -> Vec<Value> {
    for _ in 0..150 {
        let lines: Vec<Value> = std::fs::read_to_string(process.log())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= count {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "user-sync printed fewer than {count} actions:\n{}",
        process.log_tail(30)
    );
}

#[tokio::test]
async fn user_sync_example_provisions_updates_deprovisions_and_deletes() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("consumer").await.unwrap();
    let users: Api<ScimUser> = Api::namespaced(plane.client().await.unwrap(), &ns);

    // A user of another directory in the same namespace must not reach the application.
    users
        .create(
            &PostParams::default(),
            &user(
                "b0f0e5a4-0000-4000-8000-000000000002",
                "fabrikam",
                "eve@fabrikam.example",
            ),
        )
        .await
        .unwrap();
    let ada = "b0f0e5a4-0000-4000-8000-000000000001";
    users
        .create(
            &PostParams::default(),
            &user(ada, "contoso", "ada@contoso.example"),
        )
        .await
        .unwrap();

    let mut cmd = Command::new(workspace_binary("user-sync").unwrap());
    cmd.env("KUBECONFIG", plane.kubeconfig())
        .args([&ns, "contoso"]);
    let log = plane.dir().join(format!("user-sync-{ns}.log"));
    let sync = ManagedProcess::spawn_command("user-sync", cmd, &log).unwrap();

    let lines = actions(&sync, 1).await;
    assert_eq!(lines[0]["action"], "provision");
    assert_eq!(lines[0]["userName"], "ada@contoso.example");
    assert_eq!(lines[0]["email"], "ada@contoso.example");

    let group = "6e3d9f4e-1111-4111-8111-000000000001";
    let join = json!({"metadata": {"labels": {labels::member_of(group): "true"}}});
    users
        .patch(ada, &PatchParams::default(), &Patch::Merge(&join))
        .await
        .unwrap();
    let lines = actions(&sync, 2).await;
    assert_eq!(lines[1]["action"], "update");
    assert_eq!(lines[1]["groups"], json!([group]));

    let deactivate = json!({
        "metadata": {"labels": {labels::ACTIVE: "false"}},
        "status": {"active": false}
    });
    users
        .patch(ada, &PatchParams::default(), &Patch::Merge(&deactivate))
        .await
        .unwrap();
    let lines = actions(&sync, 3).await;
    assert_eq!(lines[2]["action"], "deprovision");

    users.delete(ada, &DeleteParams::default()).await.unwrap();
    let lines = actions(&sync, 4).await;
    assert_eq!(lines[3]["action"], "delete");
    assert!(
        lines
            .iter()
            .all(|l| l["userName"] != "eve@fabrikam.example"),
        "another directory's user leaked: {lines:?}"
    );
}
