//! `examples/user-sync`, the consumer example of docs/consumers.md, turns ScimUser changes on a
//! real control plane into the right account actions. The ScimUsers are written here the way the
//! SCIM server writes them (labels, `.status` in the same request). The Python watcher and the
//! Go informer of the same document run here too, with the official `kubernetes` client from
//! the tools venv and client-go from examples/go-informer's pinned modules.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube_scim_crds::{
    DirectoryRef, MultiValuedAttribute, ScimUser, ScimUserSpec, ScimUserStatus, labels,
};
use kube_scim_tests::procs::ManagedProcess;
use kube_scim_tests::{
    ControlPlane, eventually, go_examples, python_tools, repo_root, workspace_binary,
};
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

fn printed(process: &ManagedProcess) -> Vec<Value> {
    std::fs::read_to_string(process.log())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits until the example has printed `count` action lines and returns them.
async fn actions(process: &ManagedProcess, count: usize) -> Vec<Value> {
    for _ in 0..150 {
        let lines = printed(process);
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

/// Waits until the example has finished its first list (every action of the list is printed
/// and saved before it says so) and returns the actions.
async fn listed(process: &ManagedProcess) -> Vec<Value> {
    for _ in 0..150 {
        let log = std::fs::read_to_string(process.log()).unwrap_or_default();
        if log.contains("user-sync: list done") {
            return printed(process);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "user-sync did not finish its list:\n{}",
        process.log_tail(30)
    );
}

fn start_sync(plane: &ControlPlane, ns: &str, state: &Path, run: &str) -> ManagedProcess {
    let mut cmd = Command::new(workspace_binary("user-sync").unwrap());
    cmd.env("KUBECONFIG", plane.kubeconfig())
        .arg("--state")
        .arg(state)
        .args([ns, "contoso"]);
    let log = plane.dir().join(format!("user-sync-{ns}-{run}.log"));
    ManagedProcess::spawn_command("user-sync", cmd, &log).unwrap()
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

#[tokio::test]
async fn user_sync_example_catches_up_after_a_restart_from_its_state_file() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("consumer-restart").await.unwrap();
    let users: Api<ScimUser> = Api::namespaced(plane.client().await.unwrap(), &ns);
    let id = |n: u32| format!("c0f0e5a4-0000-4000-8000-{n:012}");
    for n in 1..=3 {
        users
            .create(
                &PostParams::default(),
                &user(&id(n), "contoso", &format!("user{n}@contoso.example")),
            )
            .await
            .unwrap();
    }
    let state = plane.dir().join(format!("user-sync-{ns}.json"));

    let mut first = start_sync(plane, &ns, &state, "1");
    let lines = listed(&first).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines.iter().all(|l| l["action"] == "provision"),
        "{lines:?}"
    );
    first.stop();
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved.as_object().unwrap().len(), 3, "{saved}");

    // While the application is down: user 2 is deleted, user 3 deprovisioned, user 4 created.
    users
        .delete(&id(2), &DeleteParams::default())
        .await
        .unwrap();
    let deactivate = json!({
        "metadata": {"labels": {labels::ACTIVE: "false"}},
        "status": {"active": false}
    });
    users
        .patch(&id(3), &PatchParams::default(), &Patch::Merge(&deactivate))
        .await
        .unwrap();
    users
        .create(
            &PostParams::default(),
            &user(&id(4), "contoso", "user4@contoso.example"),
        )
        .await
        .unwrap();
    eventually("user 2 is gone", Duration::from_secs(30), || async {
        users.get_opt(&id(2)).await.unwrap().is_none().then_some(())
    })
    .await;

    let second = start_sync(plane, &ns, &state, "2");
    let lines = listed(&second).await;
    let of = |n: u32| -> Vec<&str> {
        lines
            .iter()
            .filter(|l| l["id"] == id(n).as_str())
            .map(|l| l["action"].as_str().unwrap())
            .collect()
    };
    assert_eq!(of(1), Vec::<&str>::new(), "unchanged: no action; {lines:?}");
    assert_eq!(of(2), ["delete"], "{lines:?}");
    assert_eq!(of(3), ["deprovision"], "{lines:?}");
    assert_eq!(of(4), ["provision"], "{lines:?}");
    assert_eq!(lines.len(), 3, "{lines:?}");
    let deleted = lines.iter().find(|l| l["action"] == "delete").unwrap();
    assert_eq!(
        deleted["userName"], "user2@contoso.example",
        "the delete names the account from the state file"
    );
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let mut ids: Vec<&String> = saved.as_object().unwrap().keys().collect();
    ids.sort();
    assert_eq!(ids, [&id(1), &id(3), &id(4)]);
}

/// The example's state file after its last action, as SCIM id -> account.
fn saved_ids(state: &Path) -> Vec<String> {
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(state).unwrap()).unwrap();
    let mut ids: Vec<String> = saved.as_object().unwrap().keys().cloned().collect();
    ids.sort();
    ids
}

/// Both Rust examples keep running through a crash of the apiserver: the watch they hold
/// breaks, the apiserver comes back with a new watch cache (a resumed watch is answered 410
/// Gone), and what changed while they could not watch is reported once they can. They are
/// frozen (SIGSTOP) during the outage so that every change falls in it. Before the watcher had
/// a backoff and its errors were logged, the first of these errors ended `user-sync`.
#[tokio::test]
async fn user_sync_examples_recover_from_a_dropped_watch_and_report_what_changed_meanwhile() {
    // A plane of its own: the shared plane's apiserver serves the other tests of this binary.
    let plane = tokio::task::spawn_blocking(ControlPlane::start)
        .await
        .unwrap()
        .unwrap();
    let ns = plane.namespace("consumer-outage").await.unwrap();
    let users: Api<ScimUser> = Api::namespaced(plane.client().await.unwrap(), &ns);
    let id = |n: u32| format!("f0f0e5a4-0000-4000-8000-{n:012}");
    for n in 1..=3 {
        users
            .create(
                &PostParams::default(),
                &user(&id(n), "contoso", &format!("user{n}@contoso.example")),
            )
            .await
            .unwrap();
    }
    let state = plane.dir().join("user-sync-outage.json");
    let sync = start_sync(&plane, &ns, &state, "outage");
    let mut cmd = Command::new(workspace_binary("user-sync-stateless").unwrap());
    cmd.env("KUBECONFIG", plane.kubeconfig())
        .env("SWEEP_SECONDS", "1")
        .args([&ns, "contoso"]);
    let log = plane.dir().join("user-sync-stateless.log");
    let stateless = ManagedProcess::spawn_command("user-sync-stateless", cmd, &log).unwrap();
    let keep_only = |process: &ManagedProcess| -> Option<Value> {
        printed(process)
            .into_iter()
            .rev()
            .find(|l| l["action"] == "keep-only")
            .map(|l| l["ids"].clone())
    };
    let before = listed(&sync).await;
    assert_eq!(before.len(), 3, "{before:?}");
    eventually(
        "the stateless example's first sweep",
        Duration::from_secs(30),
        || async { (keep_only(&stateless)? == json!([id(1), id(2), id(3)])).then_some(()) },
    )
    .await;
    let stateless_before = printed(&stateless).len();

    sync.suspend();
    stateless.suspend();
    let restarted = plane.restart_apiserver();
    // While both are away: user 2 deleted, user 3 deprovisioned, user 4 created.
    let changes = async {
        restarted?;
        // The old client's connections died with the apiserver.
        let users: Api<ScimUser> = Api::namespaced(plane.client().await?, &ns);
        users.delete(&id(2), &DeleteParams::default()).await?;
        let deactivate = json!({
            "metadata": {"labels": {labels::ACTIVE: "false"}},
            "status": {"active": false}
        });
        users
            .patch(&id(3), &PatchParams::default(), &Patch::Merge(&deactivate))
            .await?;
        users
            .create(
                &PostParams::default(),
                &user(&id(4), "contoso", "user4@contoso.example"),
            )
            .await?;
        anyhow::Ok(())
    }
    .await;
    sync.resume();
    stateless.resume();
    changes.unwrap();

    let lines = actions(&sync, 6).await;
    let after = &lines[3..];
    let of = |n: u32| -> Vec<&str> {
        after
            .iter()
            .filter(|l| l["id"] == id(n).as_str())
            .map(|l| l["action"].as_str().unwrap())
            .collect()
    };
    let log_text = || std::fs::read_to_string(sync.log()).unwrap_or_default();
    assert_eq!(
        of(1),
        Vec::<&str>::new(),
        "unchanged: no action; {}",
        log_text()
    );
    assert_eq!(of(2), ["delete"], "{}", log_text());
    assert_eq!(of(3), ["deprovision"], "{}", log_text());
    assert_eq!(of(4), ["provision"], "{}", log_text());
    assert!(
        log_text().contains("user-sync: watch error, retrying"),
        "the outage was noticed: {}",
        log_text()
    );
    assert_eq!(
        log_text().matches("user-sync: list done").count(),
        2,
        "the watch could not resume (410 Gone from the new watch cache), so it listed again: {}",
        log_text()
    );
    assert_eq!(saved_ids(&state), [id(1), id(3), id(4)]);
    // Nothing more arrives, and the example still watches: a change after the outage is seen.
    let users: Api<ScimUser> = Api::namespaced(plane.client().await.unwrap(), &ns);
    users
        .create(
            &PostParams::default(),
            &user(&id(5), "contoso", "user5@contoso.example"),
        )
        .await
        .unwrap();
    let lines = actions(&sync, 7).await;
    assert_eq!(lines.len(), 7, "{}", log_text());
    assert_eq!(lines[6]["id"], id(5).as_str());
    assert_eq!(lines[6]["action"], "provision");

    // The stateless form: users 3 and 4 ensured, and the sweep keeps 1, 3, 4 and 5 only.
    eventually(
        "the stateless example's sweep after the outage",
        Duration::from_secs(60),
        || async { (keep_only(&stateless)? == json!([id(1), id(3), id(4), id(5)])).then_some(()) },
    )
    .await;
    let ensured: Vec<Value> = printed(&stateless)[stateless_before..]
        .iter()
        .filter(|l| l["action"] == "ensure")
        .cloned()
        .collect();
    let last = |n: u32| ensured.iter().rev().find(|l| l["id"] == id(n).as_str());
    assert_eq!(
        last(3).map(|l| &l["active"]),
        Some(&json!(false)),
        "{ensured:?}"
    );
    assert_eq!(
        last(4).map(|l| &l["active"]),
        Some(&json!(true)),
        "{ensured:?}"
    );
    assert!(last(2).is_none(), "{ensured:?}");
}

const PYTHON_WATCHER: &str = "examples/python-watcher/watch_users.py";
const GO_INFORMER: &str = "examples/go-informer/main.go";

/// Waits until a watcher example has printed `count` events; returns `(event, id)` of each.
async fn watched(process: &ManagedProcess, count: usize) -> Vec<(String, String)> {
    for _ in 0..300 {
        let lines: Vec<(String, String)> = printed(process)
            .iter()
            .map(|l| {
                (
                    l["event"].as_str().unwrap_or_default().to_string(),
                    l["id"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        if lines.len() >= count {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "the watcher printed fewer than {count} events:\n{}",
        process.log_tail(30)
    );
}

/// The docs show each watcher file verbatim, so what `make test` runs is what a reader copies.
#[test]
fn the_watchers_in_the_docs_are_the_tested_files() {
    let docs = std::fs::read_to_string(repo_root().join("docs/consumers.md")).unwrap();
    for (file, language) in [(PYTHON_WATCHER, "python"), (GO_INFORMER, "go")] {
        let source = std::fs::read_to_string(repo_root().join(file)).unwrap();
        assert!(
            docs.contains(&format!("```{language}\n{source}```")),
            "docs/consumers.md must show {file} verbatim"
        );
    }
}

/// Runs a watcher example (`command` with `<namespace> contoso` appended) through a create,
/// a deactivation, another create and a delete, with another directory's user beside them.
async fn watcher_reports_created_modified_and_deleted_users(
    name: &str,
    mut command: Command,
    prefix: &str,
) {
    let plane = ControlPlane::shared();
    let ns = plane.namespace(prefix).await.unwrap();
    let users: Api<ScimUser> = Api::namespaced(plane.client().await.unwrap(), &ns);
    let (ann, bob) = (
        "d0f0e5a4-0000-4000-8000-000000000001",
        "d0f0e5a4-0000-4000-8000-000000000002",
    );
    users
        .create(
            &PostParams::default(),
            &user(ann, "contoso", "ann@contoso.example"),
        )
        .await
        .unwrap();
    users
        .create(
            &PostParams::default(),
            &user(
                "d0f0e5a4-0000-4000-8000-000000000003",
                "fabrikam",
                "eve@fabrikam.example",
            ),
        )
        .await
        .unwrap();

    command
        .env("KUBECONFIG", plane.kubeconfig())
        .args([&ns, "contoso"]);
    let log = plane.dir().join(format!("{name}-{ns}.log"));
    let watcher = ManagedProcess::spawn_command(name, command, &log).unwrap();
    let event = |e: &str, id: &str| (e.to_string(), id.to_string());

    // The initial list reports the existing user; changes after it come from the watch.
    assert_eq!(watched(&watcher, 1).await, [event("created", ann)]);
    let deactivate = json!({
        "metadata": {"labels": {labels::ACTIVE: "false"}},
        "status": {"active": false}
    });
    users
        .patch(ann, &PatchParams::default(), &Patch::Merge(&deactivate))
        .await
        .unwrap();
    users
        .create(
            &PostParams::default(),
            &user(bob, "contoso", "bob@contoso.example"),
        )
        .await
        .unwrap();
    users.delete(ann, &DeleteParams::default()).await.unwrap();
    let events = watched(&watcher, 4).await;
    assert_eq!(
        events,
        [
            event("created", ann),
            event("modified", ann),
            event("created", bob),
            event("deleted", ann),
        ],
        "{}",
        watcher.log_tail(30)
    );
    let lines = printed(&watcher);
    assert_eq!(lines[1]["active"], false);
    assert_eq!(lines[2]["userName"], "bob@contoso.example");
    // Nothing more (another directory's user, duplicates) arrives.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(printed(&watcher).len(), 4, "{}", watcher.log_tail(30));
}

#[tokio::test]
async fn python_watcher_example_reports_created_modified_and_deleted_users() {
    let mut cmd = Command::new(python_tools().unwrap().join("python"));
    cmd.arg(repo_root().join(PYTHON_WATCHER));
    watcher_reports_created_modified_and_deleted_users("python-watcher", cmd, "consumer-py").await;
}

/// The client-go dynamic informer of docs/consumers.md, built from examples/go-informer's
/// pinned modules.
#[tokio::test]
async fn go_informer_example_reports_created_modified_and_deleted_users() {
    let cmd = Command::new(go_examples().unwrap().join("go-informer"));
    watcher_reports_created_modified_and_deleted_users("go-informer", cmd, "consumer-go").await;
}

/// Runs the watcher with its first watch request made stale: a user is deleted and the watch
/// asks for resourceVersion 1, older than anything the apiserver keeps, as a watch resumed after
/// a long disconnection would. The apiserver answers 410 Gone.
const STALE_FIRST_WATCH: &str = r#"
import runpy, sys
from kubernetes import client
script, namespace, directory, victim = sys.argv[1:5]
list_or_watch = client.CustomObjectsApi.list_namespaced_custom_object
first_watch = [True]
def stale(self, *args, **kwargs):
    if kwargs.get("watch") and first_watch[0]:
        first_watch[0] = False
        self.delete_namespaced_custom_object(
            "kubescim.io", "v1alpha1", namespace, "scimusers", victim)
        kwargs["resource_version"] = "1"
    return list_or_watch(self, *args, **kwargs)
client.CustomObjectsApi.list_namespaced_custom_object = stale
sys.argv = [script, namespace, directory]
runpy.run_path(script, run_name="__main__")
"#;

#[tokio::test]
async fn python_watcher_example_lists_again_after_410_gone_and_reports_what_it_missed() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("consumer-py-410").await.unwrap();
    let users: Api<ScimUser> = Api::namespaced(plane.client().await.unwrap(), &ns);
    let (ann, bob, cy) = (
        "e0f0e5a4-0000-4000-8000-000000000001",
        "e0f0e5a4-0000-4000-8000-000000000002",
        "e0f0e5a4-0000-4000-8000-000000000003",
    );
    for (id, name) in [(ann, "ann"), (bob, "bob")] {
        users
            .create(
                &PostParams::default(),
                &user(id, "contoso", &format!("{name}@contoso.example")),
            )
            .await
            .unwrap();
    }
    let mut cmd = Command::new(python_tools().unwrap().join("python"));
    cmd.env("KUBECONFIG", plane.kubeconfig())
        .args(["-c", STALE_FIRST_WATCH])
        .arg(repo_root().join(PYTHON_WATCHER))
        .args([ns.as_str(), "contoso", bob]);
    let log = plane.dir().join(format!("python-watcher-{ns}.log"));
    let watcher = ManagedProcess::spawn_command("python-watcher", cmd, &log).unwrap();
    let event = |e: &str, id: &str| (e.to_string(), id.to_string());

    // The list reports both users; bob is deleted before the (stale) watch, so only the
    // list after the 410 can tell.
    let events = watched(&watcher, 3).await;
    assert_eq!(events[..2].len(), 2);
    assert!(events[..2].contains(&event("created", ann)), "{events:?}");
    assert!(events[..2].contains(&event("created", bob)), "{events:?}");
    assert_eq!(events[2], event("deleted", bob), "{}", watcher.log_tail(30));
    let log_text = std::fs::read_to_string(watcher.log()).unwrap();
    assert!(
        log_text.contains("resourceVersion expired, listing again"),
        "{log_text}"
    );
    // The watch after the new list goes on.
    users
        .create(
            &PostParams::default(),
            &user(cy, "contoso", "cy@contoso.example"),
        )
        .await
        .unwrap();
    assert_eq!(watched(&watcher, 4).await[3], event("created", cy));
}
