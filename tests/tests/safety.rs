//! The safety switches on the real control plane, with the operator and the SCIM server as
//! processes: `spec.suspend` refuses writes and serves reads; the deletion guard holds
//! deletions and deactivations past its limit and an annotation releases or discards them;
//! `deletionPolicy` defaults to `Retain` while directories created under the old default keep
//! `Delete`.
//!
//! Needs `cargo build --workspace --bins` first.

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kube_scim_crds::{
    DeletionGuardSpec, DeletionPolicy, ScimDirectory, ScimDirectorySpec, ScimGroup, ScimUser,
    labels,
};
use kube_scim_tests::stack::{Stack, StackOptions};
use kube_scim_tests::{ControlPlane, PlaneOptions, eventually};
use serde_json::{Value, json};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const WAIT: Duration = Duration::from_secs(60);

/// A SCIM client of one directory.
struct Scim {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Scim {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value, Option<String>) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("the SCIM server answers");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            retry_after,
        )
    }

    async fn create_user(&self, user_name: &str) -> (u16, Value) {
        let body = json!({"schemas": [USER_SCHEMA], "userName": user_name, "active": true});
        let (status, v, _) = self.send(reqwest::Method::POST, "/Users", Some(body)).await;
        (status, v)
    }

    async fn deactivate(&self, id: &str) -> u16 {
        let body = json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "Replace", "path": "active", "value": "False"}
        ]});
        self.send(reqwest::Method::PATCH, &format!("/Users/{id}"), Some(body))
            .await
            .0
    }

    async fn delete(&self, path: &str) -> u16 {
        self.send(reqwest::Method::DELETE, path, None).await.0
    }
}

async fn start(prefix: &str, spec: ScimDirectorySpec) -> (String, Client, Stack, Scim) {
    start_with(prefix, spec, &[]).await
}

async fn start_with(
    prefix: &str,
    spec: ScimDirectorySpec,
    server_args: &[&str],
) -> (String, Client, Stack, Scim) {
    let plane = ControlPlane::shared();
    let ns = plane.namespace(prefix).await.unwrap();
    let client = plane.client().await.unwrap();
    let mut options = StackOptions::new(&ns);
    options
        .server_args
        .extend(server_args.iter().map(|a| a.to_string()));
    let stack = Stack::start(plane, options).await.unwrap();
    let dirs: Api<ScimDirectory> = Api::namespaced(client.clone(), &ns);
    dirs.create(&PostParams::default(), &ScimDirectory::new("d", spec))
        .await
        .unwrap();
    let (_, token) = stack.ready_directory(&client, &ns, "d").await;
    let scim = Scim {
        http: kube_scim_tests::http_client(),
        base: stack.base_url(&ns, "d"),
        token,
    };
    (ns, client, stack, scim)
}

fn condition_status(dir: &ScimDirectory, type_: &str) -> Option<String> {
    dir.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

async fn event_reasons(client: &Client, ns: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&Default::default())
        .await
        .map(|l| l.items.into_iter().filter_map(|e| e.reason).collect())
        .unwrap_or_default()
}

fn label<'a>(labels: &'a std::collections::BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    labels.get(key).map(String::as_str)
}

#[tokio::test]
async fn a_suspended_directory_refuses_writes_with_503_and_serves_reads() {
    let (ns, client, stack, scim) = start("safety-suspend", ScimDirectorySpec::default()).await;
    let dirs: Api<ScimDirectory> = Api::namespaced(client.clone(), &ns);
    let (status, ada) = scim.create_user("ada@contoso.example").await;
    assert_eq!(status, 201, "{ada}");
    let ada_id = ada["id"].as_str().unwrap().to_string();

    dirs.patch(
        "d",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"suspend": true}})),
    )
    .await
    .unwrap();
    // Probed with a DELETE of an id that does not exist: until the server sees the suspension
    // it answers 404 and writes nothing (a POST as the probe could create a user meanwhile).
    eventually("writes to be refused", WAIT, || async {
        let probe = format!("/Users/{}", uuid::Uuid::new_v4());
        let answer = scim.send(reqwest::Method::DELETE, &probe, None).await;
        (answer.0 == 503).then_some(())
    })
    .await;
    let body = json!({"schemas": [USER_SCHEMA], "userName": "grace@contoso.example"});
    let (status, refused, retry_after) =
        scim.send(reqwest::Method::POST, "/Users", Some(body)).await;
    assert_eq!(status, 503, "{refused}");
    assert_eq!(
        refused["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert!(
        refused["detail"].as_str().unwrap().contains("suspended"),
        "{refused}"
    );
    assert!(retry_after.is_some(), "a 503 says when to retry");
    assert_eq!(scim.deactivate(&ada_id).await, 503);
    assert_eq!(scim.delete(&format!("/Users/{ada_id}")).await, 503);

    // Reads keep working: Entra's lookups and Test Connection succeed.
    let (status, list, _) = scim
        .send(
            reqwest::Method::GET,
            "/Users?filter=userName%20eq%20%22ada%40contoso.example%22",
            None,
        )
        .await;
    assert_eq!(
        (status, list["totalResults"].as_u64()),
        (200, Some(1)),
        "{list}"
    );
    let (status, _, _) = scim
        .send(reqwest::Method::GET, &format!("/Users/{ada_id}"), None)
        .await;
    assert_eq!(status, 200);
    // Nothing was written while suspended.
    let users: Api<ScimUser> = Api::namespaced(client.clone(), &ns);
    let stored = users.get(&ada_id).await.unwrap();
    assert_eq!(stored.status.as_ref().map(|s| s.active), Some(true));
    assert_eq!(
        users.list(&Default::default()).await.unwrap().items.len(),
        1
    );

    eventually("condition Suspended=True", WAIT, || async {
        let dir = dirs.get("d").await.ok()?;
        (condition_status(&dir, "Suspended").as_deref() == Some("True")).then_some(())
    })
    .await;

    dirs.patch(
        "d",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    eventually("writes to be accepted again", WAIT, || async {
        (scim.create_user("grace@contoso.example").await.0 == 201).then_some(())
    })
    .await;
    eventually("condition Suspended=False", WAIT, || async {
        let dir = dirs.get("d").await.ok()?;
        (condition_status(&dir, "Suspended").as_deref() == Some("False")).then_some(())
    })
    .await;
    drop(stack);
}

#[tokio::test]
async fn the_deletion_guard_holds_past_its_limit_until_released_or_discarded() {
    let spec = ScimDirectorySpec {
        deletion_guard: DeletionGuardSpec {
            max_operations: 2,
            ..Default::default()
        },
        ..Default::default()
    };
    let (ns, client, stack, scim) = start("safety-guard", spec).await;
    let dirs: Api<ScimDirectory> = Api::namespaced(client.clone(), &ns);
    let users: Api<ScimUser> = Api::namespaced(client.clone(), &ns);
    let groups: Api<ScimGroup> = Api::namespaced(client.clone(), &ns);
    let mut ids = Vec::new();
    for i in 0..6 {
        let (status, user) = scim.create_user(&format!("user{i}@contoso.example")).await;
        assert_eq!(status, 201, "{user}");
        ids.push(user["id"].as_str().unwrap().to_string());
    }
    let body = json!({"schemas": [GROUP_SCHEMA], "displayName": "Engineering"});
    let (status, group, _) = scim
        .send(reqwest::Method::POST, "/Groups", Some(body))
        .await;
    assert_eq!(status, 201, "{group}");
    let group_id = group["id"].as_str().unwrap().to_string();
    let add = json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "Add", "path": "members", "value": [{"value": ids[5]}]}
    ]});
    let (status, _, _) = scim
        .send(
            reqwest::Method::PATCH,
            &format!("/Groups/{group_id}"),
            Some(add),
        )
        .await;
    assert_eq!(status, 204);

    // Two removals are within the limit and applied.
    assert_eq!(scim.delete(&format!("/Users/{}", ids[0])).await, 204);
    assert_eq!(scim.deactivate(&ids[1]).await, 200);
    assert!(users.get_opt(&ids[0]).await.unwrap().is_none());
    let deactivated = users.get(&ids[1]).await.unwrap();
    assert_eq!(label(deactivated.labels(), labels::ACTIVE), Some("false"));

    // The third and every later one is held: answered as done, the objects stay, marked.
    assert_eq!(scim.delete(&format!("/Users/{}", ids[2])).await, 204);
    assert_eq!(scim.deactivate(&ids[3]).await, 200);
    assert_eq!(scim.delete(&format!("/Groups/{group_id}")).await, 204);
    let held_delete = users.get(&ids[2]).await.unwrap();
    assert_eq!(
        label(held_delete.labels(), "kubescim.io/held"),
        Some("delete")
    );
    let held_deactivation = users.get(&ids[3]).await.unwrap();
    assert_eq!(
        label(held_deactivation.labels(), "kubescim.io/held"),
        Some("deactivate")
    );
    assert_eq!(
        label(held_deactivation.labels(), labels::ACTIVE),
        Some("true")
    );
    assert_eq!(
        held_deactivation.status.as_ref().map(|s| s.active),
        Some(true)
    );
    let held_group = groups.get(&group_id).await.unwrap();
    assert_eq!(
        label(held_group.labels(), "kubescim.io/held"),
        Some("delete")
    );
    // A repeated DELETE of a held object is answered as done again (Entra retries).
    assert_eq!(scim.delete(&format!("/Users/{}", ids[2])).await, 204);
    // To the client a held deactivation is done: re-sending it changes nothing.
    assert_eq!(scim.deactivate(&ids[3]).await, 200);
    assert_eq!(
        label(
            users.get(&ids[3]).await.unwrap().labels(),
            "kubescim.io/held"
        ),
        Some("deactivate")
    );

    let dir = eventually(
        "condition DeletionsHeld=True with the counts",
        WAIT,
        || async {
            let dir = dirs.get("d").await.ok()?;
            let status = dir.status.clone()?;
            (condition_status(&dir, "DeletionsHeld").as_deref() == Some("True")
                && status.held_deletions == Some(2)
                && status.held_deactivations == Some(1))
            .then_some(dir)
        },
    )
    .await;
    let message = dir
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "DeletionsHeld")
        .unwrap()
        .message;
    assert!(
        message.contains("kubescim.io/held-operations=release"),
        "{message}"
    );
    eventually("the DeletionsHeld event", WAIT, || async {
        event_reasons(&client, &ns)
            .await
            .iter()
            .any(|r| r == "DeletionsHeld")
            .then_some(())
    })
    .await;

    // Release: the held operations are applied.
    dirs.patch(
        "d",
        &PatchParams::default(),
        &Patch::Merge(
            &json!({"metadata": {"annotations": {"kubescim.io/held-operations": "release"}}}),
        ),
    )
    .await
    .unwrap();
    eventually("the held operations to be applied", WAIT, || async {
        let deleted = users.get_opt(&ids[2]).await.ok()?.is_none();
        let group_gone = groups.get_opt(&group_id).await.ok()?.is_none();
        let user = users.get(&ids[3]).await.ok()?;
        let inactive = label(user.labels(), labels::ACTIVE) == Some("false")
            && user.status.as_ref().map(|s| s.active) == Some(false)
            && !user.labels().contains_key("kubescim.io/held");
        (deleted && group_gone && inactive).then_some(())
    })
    .await;
    let member = users.get(&ids[5]).await.unwrap();
    assert!(
        !member.labels().contains_key(&labels::member_of(&group_id)),
        "a released group deletion removes its membership labels: {:?}",
        member.labels()
    );
    let (status, read, _) = scim
        .send(reqwest::Method::GET, &format!("/Users/{}", ids[3]), None)
        .await;
    assert_eq!((status, &read["active"]), (200, &json!(false)), "{read}");
    eventually(
        "the annotation removed and DeletionsHeld=False",
        WAIT,
        || async {
            let dir = dirs.get("d").await.ok()?;
            let annotated = dir
                .annotations()
                .contains_key("kubescim.io/held-operations");
            (!annotated && condition_status(&dir, "DeletionsHeld").as_deref() == Some("False"))
                .then_some(())
        },
    )
    .await;

    // The window still counts the removals: the next deletion is held again; discard keeps
    // the user as it was.
    assert_eq!(scim.delete(&format!("/Users/{}", ids[4])).await, 204);
    eventually("the deletion to be held", WAIT, || async {
        let user = users.get(&ids[4]).await.ok()?;
        (label(user.labels(), "kubescim.io/held") == Some("delete")).then_some(())
    })
    .await;
    dirs.patch(
        "d",
        &PatchParams::default(),
        &Patch::Merge(
            &json!({"metadata": {"annotations": {"kubescim.io/held-operations": "discard"}}}),
        ),
    )
    .await
    .unwrap();
    eventually("the held deletion to be discarded", WAIT, || async {
        let user = users.get(&ids[4]).await.ok()?;
        (!user.labels().contains_key("kubescim.io/held")).then_some(())
    })
    .await;
    let (status, _, _) = scim
        .send(reqwest::Method::GET, &format!("/Users/{}", ids[4]), None)
        .await;
    assert_eq!(status, 200, "a discarded deletion leaves the user in place");
    drop(stack);
}

/// What `kubectl describe scimdirectory` and Prometheus see of a directory whose identity
/// provider sends a wrong token and bad requests.
#[tokio::test]
async fn auth_failures_and_rejections_become_events_and_per_directory_metrics() {
    let (ns, client, stack, scim) = start_with(
        "safety-events",
        ScimDirectorySpec::default(),
        &["--event-interval=1s"],
    )
    .await;
    let wrong = Scim {
        http: kube_scim_tests::http_client(),
        base: scim.base.clone(),
        token: "a-token-that-was-rotated-out".into(),
    };
    for _ in 0..3 {
        assert_eq!(
            wrong.send(reqwest::Method::GET, "/Users", None).await.0,
            401
        );
    }
    assert_eq!(scim.create_user("ada@contoso.example").await.0, 201);
    assert_eq!(scim.create_user("ADA@contoso.example").await.0, 409);
    let events = eventually("both events on the directory", WAIT, || async {
        let api: Api<Event> = Api::namespaced(client.clone(), &ns);
        let events = api.list(&Default::default()).await.ok()?.items;
        let on_directory = |reason: &str| {
            events.iter().find(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("ScimDirectory")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("d")
            })
        };
        Some((
            on_directory("AuthenticationFailed")?.note.clone()?,
            on_directory("RequestsRejected")?.note.clone()?,
        ))
    })
    .await;
    assert!(events.0.starts_with("3 requests"), "{}", events.0);
    assert!(events.1.contains("1x 409 POST /Users"), "{}", events.1);

    let metrics = kube_scim_tests::http_client()
        .get(format!(
            "http://127.0.0.1:{}/metrics",
            stack.server_metrics_port
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let directory = format!("directory=\"{ns}/d\"");
    for series in [
        format!("kube_scim_directory_ready{{{directory}}} 1"),
        format!("kube_scim_directory_users{{{directory}}} 1"),
        format!("kube_scim_directory_active_users{{{directory}}} 1"),
        format!("kube_scim_directory_groups{{{directory}}} 0"),
        format!("kube_scim_auth_failures_total{{{directory}}} 3"),
        format!(
            "kube_scim_requests_total{{{directory},operation=\"POST /Users\",status=\"409\"}} 1"
        ),
    ] {
        assert!(
            metrics.contains(&series),
            "{series} missing from:\n{metrics}"
        );
    }
    assert!(metrics.contains(&format!(
        "kube_scim_directory_last_request_timestamp_seconds{{{directory}}}"
    )));
    if let Ok(path) = std::env::var("KUBE_SCIM_CAPTURE_METRICS") {
        std::fs::write(path, &metrics).unwrap();
    }
    drop(stack);
}

/// A plane of its own: the test installs a CRD whose default is the old one.
#[tokio::test]
async fn deletion_policy_defaults_to_retain_and_old_directories_keep_delete() {
    let plane = ControlPlane::start_with(PlaneOptions {
        install_crds: false,
        ..PlaneOptions::default()
    })
    .unwrap();
    let current = std::fs::read_to_string(kube_scim_crdgen::checked_in_path()).unwrap();
    assert_eq!(current.matches("default: Retain").count(), 1);
    let old = current.replace("default: Retain", "default: Delete");
    let apply = |yaml: &str| {
        let mut child = plane
            .kubectl()
            .args(["apply", "--server-side", "--force-conflicts", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        let status = plane
            .kubectl()
            .args([
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/scimdirectories.kubescim.io",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    };
    apply(&old);
    let directory = |name: &str| {
        format!(
            "apiVersion: kubescim.io/v1alpha1\nkind: ScimDirectory\nmetadata:\n  name: {name}\n  namespace: default\nspec: {{}}\n"
        )
    };
    apply(&directory("before-upgrade"));
    apply(&current);
    apply(&directory("after-upgrade"));
    let client = plane.client().await.unwrap();
    let dirs: Api<ScimDirectory> = Api::namespaced(client, "default");
    let before = dirs.get("before-upgrade").await.unwrap();
    let after = dirs.get("after-upgrade").await.unwrap();
    assert_eq!(before.spec.deletion_policy, DeletionPolicy::Delete);
    assert_eq!(after.spec.deletion_policy, DeletionPolicy::Retain);
    // Re-applying the old manifest (what a GitOps tool does after the upgrade) keeps the choice.
    apply(&directory("before-upgrade"));
    let before = dirs.get("before-upgrade").await.unwrap();
    assert_eq!(before.spec.deletion_policy, DeletionPolicy::Delete);
}
