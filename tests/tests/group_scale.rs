//! Large groups on the real control plane: a group DELETE and a member-list replacement answer
//! in bounded time whatever the size, the SCIM view is right at once, the membership labels
//! follow in the background (also across a restart of the server), and labels naming a group
//! that no longer exists are swept. `GROUP_SCALE_MEMBERS` sets the size of the large group
//! (default 3000).

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_scim_crds::{
    DirectoryRef, ScimDirectory, ScimDirectorySpec, ScimGroup, ScimUser, ScimUserSpec,
    ScimUserStatus, labels,
};
use kube_scim_tests::keys::VerifierKeys;
use kube_scim_tests::procs::ManagedProcess;
use kube_scim_tests::{ControlPlane, eventually, free_port, workspace_binary};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const DIR: &str = "entra";

fn members_wanted() -> usize {
    std::env::var("GROUP_SCALE_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

fn keys() -> &'static VerifierKeys {
    static KEYS: OnceLock<VerifierKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        VerifierKeys::create(&ControlPlane::shared().dir().join("group-scale-keys")).unwrap()
    })
}

/// A namespace with a Ready directory whose token is returned.
async fn setup(prefix: &str) -> (&'static ControlPlane, Client, String, String) {
    let plane = ControlPlane::shared();
    let client = plane.client().await.unwrap();
    let ns = plane.namespace(prefix).await.unwrap();
    let token = format!("tok-{}-{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let api: Api<ScimDirectory> = Api::namespaced(client.clone(), &ns);
    let dir = api
        .create(
            &PostParams::default(),
            &ScimDirectory::new(DIR, ScimDirectorySpec::default()),
        )
        .await
        .unwrap();
    let hash = keys()
        .verifiers(kube_scim_tests::keys::Dir::of(&dir), token.as_bytes())
        .remove(0);
    let status = json!({"status": {"tokenVerifiers": [{"hash": hash}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
            "message": "set by the test", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    api.patch_status(DIR, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    (plane, client, ns, token)
}

struct Server {
    proc: ManagedProcess,
    port: u16,
    metrics_port: u16,
}

impl Server {
    async fn start(plane: &ControlPlane, ns: &str, extra: &[&str]) -> Server {
        let port = free_port().unwrap();
        let metrics_port = free_port().unwrap();
        let mut cmd = Command::new(workspace_binary("kube-scim-server").unwrap());
        cmd.env("KUBECONFIG", plane.kubeconfig())
            .env_remove("RUST_LOG")
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--metrics-bind-address=127.0.0.1:{metrics_port}"))
            .arg(format!("--watch-namespaces={ns}"))
            .arg("--verifier-key-dir")
            .arg(keys().path())
            .args(extra);
        let log = plane.dir().join(format!("group-scale-{ns}-{port}.log"));
        let mut proc = ManagedProcess::spawn_command("kube-scim-server", cmd, &log).unwrap();
        let ready = format!("http://127.0.0.1:{metrics_port}/readyz");
        for _ in 0..600 {
            if let Ok(r) = kube_scim_tests::http_client().get(&ready).send().await
                && r.status() == StatusCode::OK
            {
                return Server {
                    proc,
                    port,
                    metrics_port,
                };
            }
            assert!(proc.is_running(), "server exited: {}", proc.log_tail(40));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("server not ready in 60 s: {}", proc.log_tail(40));
    }

    /// The value of the series `series` (name and labels as exposed) on `/metrics`, if any.
    async fn metric(&self, series: &str) -> Option<f64> {
        let text = kube_scim_tests::http_client()
            .get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    fn scim(&self, ns: &str, token: &str) -> Scim {
        Scim {
            http: kube_scim_tests::http_client(),
            base: format!("http://127.0.0.1:{}/scim/v2/{ns}/{DIR}", self.port),
            token: token.to_string(),
        }
    }
}

struct Scim {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Scim {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(120));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(serde_json::to_vec(b).unwrap());
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
}

fn member_ids(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| m["value"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Creates `n` users directly in the apiserver (much faster than through SCIM), carrying the
/// membership labels of `groups`; returns their ids, sorted.
async fn direct_users(
    client: &Client,
    ns: &str,
    prefix: &str,
    n: usize,
    groups: &[&str],
) -> Vec<String> {
    let api: Api<ScimUser> = Api::namespaced(client.clone(), ns);
    let created: Vec<String> = futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let id = uuid::Uuid::new_v4().to_string();
                let mut u = ScimUser::new(
                    &id,
                    ScimUserSpec {
                        directory_ref: DirectoryRef { name: DIR.into() },
                    },
                );
                let mut l = std::collections::BTreeMap::from([
                    (labels::DIRECTORY.to_string(), DIR.to_string()),
                    (labels::ACTIVE.to_string(), "true".to_string()),
                ]);
                for g in groups {
                    l.insert(labels::member_of(g), "true".into());
                }
                u.metadata.labels = Some(l);
                let status = json!({"id": id, "userName": format!("{prefix}{i:06}@contoso.com"),
                    "active": true,
                    "meta": {"created": "2026-01-01T00:00:00Z", "lastModified": "2026-01-01T00:00:00Z"}});
                u.status = Some(serde_json::from_value::<ScimUserStatus>(status).unwrap());
                api.create(&PostParams::default(), &u).await.unwrap();
                id
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut ids = created;
    ids.sort();
    ids
}

async fn labelled(client: &Client, ns: &str, group: &str) -> Vec<String> {
    let users: Api<ScimUser> = Api::namespaced(client.clone(), ns);
    let mut ids: Vec<String> = users
        .list_metadata(&ListParams::default().labels(&labels::member_of(group)))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect();
    ids.sort();
    ids
}

async fn create_group(scim: &Scim, name: &str) -> String {
    let (status, body) = scim
        .call(
            reqwest::Method::POST,
            "/Groups",
            Some(&json!({"displayName": name})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// Waits until the server's cache holds `n` members of `group` (the watch delivered the
/// directly created users).
async fn wait_members(scim: &Scim, group: &str, n: usize) {
    eventually(
        "the server sees every member",
        Duration::from_secs(120),
        || async {
            let (status, body) = scim.get(&format!("/Groups/{group}")).await;
            (status == 200 && member_ids(&body).len() == n).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn deleting_a_large_group_answers_at_once_and_finishes_across_a_restart() {
    let n = members_wanted();
    let (plane, client, ns, token) = setup("group-delete").await;
    // A short request timeout, and a slow worker so that the restart lands mid-cleanup.
    let slow = [
        "--request-timeout=3s",
        "--member-cleanup-batch=20",
        "--member-write-concurrency=1",
    ];
    let mut srv = Server::start(plane, &ns, &slow).await;
    let scim = srv.scim(&ns, &token);
    let gid = create_group(&scim, "Everyone").await;
    let other = create_group(&scim, "Others").await;
    let ids = direct_users(&client, &ns, "big", n, &[&gid, &other]).await;
    wait_members(&scim, &gid, n).await;

    let started = Instant::now();
    let (status, body) = scim
        .call(reqwest::Method::DELETE, &format!("/Groups/{gid}"), None)
        .await;
    eprintln!(
        "DELETE of a {n}-member group answered {status} in {:?}",
        started.elapsed()
    );
    assert_eq!(status, 204, "{body}");
    // Gone for SCIM at once: read, filter, the members' `groups`; the other group is intact.
    assert_eq!(scim.get(&format!("/Groups/{gid}")).await.0, 404);
    let (_, list) = scim
        .get("/Groups?filter=displayName%20eq%20%22Everyone%22")
        .await;
    assert_eq!(list["totalResults"], 0, "{list}");
    let (_, user) = scim.get(&format!("/Users/{}", ids[0])).await;
    let groups: Vec<&str> = user["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["value"].as_str().unwrap())
        .collect();
    assert_eq!(groups, vec![other.as_str()], "{user}");
    assert_eq!(
        scim.call(reqwest::Method::DELETE, &format!("/Groups/{gid}"), None)
            .await
            .0,
        404
    );
    // Watchers see the group being deleted, kept by the cleanup finalizer.
    let group_api: Api<ScimGroup> = Api::namespaced(client.clone(), &ns);
    let marked = group_api.get(&gid).await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert!(
        marked
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&labels::GROUP_MEMBER_CLEANUP_FINALIZER.to_string())
    );

    // Stop the server mid-cleanup: the labels that are left, and the group, stay.
    let partly = eventually(
        "the cleanup is under way",
        Duration::from_secs(120),
        || async {
            let left = labelled(&client, &ns, &gid).await.len();
            (left < n).then_some(left)
        },
    )
    .await;
    srv.proc.kill();
    let left = labelled(&client, &ns, &gid).await.len();
    eprintln!("server killed with {left} of {n} labels left (first look: {partly})");
    assert!(
        left > 0,
        "the cleanup finished before the kill; use more members"
    );
    assert!(group_api.get_opt(&gid).await.unwrap().is_some());

    // A new server resumes from the apiserver's state and finishes.
    let srv = Server::start(plane, &ns, &[]).await;
    let resumed = Instant::now();
    eventually(
        "the cleanup finishes after the restart",
        Duration::from_secs(300),
        || async {
            let gone = group_api.get_opt(&gid).await.unwrap().is_none();
            (gone && labelled(&client, &ns, &gid).await.is_empty()).then_some(())
        },
    )
    .await;
    eprintln!(
        "{left} labels removed after the restart in {:?}",
        resumed.elapsed()
    );
    // The other group's labels were left alone.
    assert_eq!(labelled(&client, &ns, &other).await, ids);
    let scim = srv.scim(&ns, &token);
    assert_eq!(
        member_ids(&scim.get(&format!("/Groups/{other}")).await.1),
        ids
    );
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await;
}

#[tokio::test]
async fn replacing_a_member_list_is_served_at_once_and_labels_follow() {
    let n = 1500;
    let (plane, client, ns, token) = setup("group-replace").await;
    let srv = Server::start(plane, &ns, &["--inline-member-writes=100"]).await;
    let scim = srv.scim(&ns, &token);
    let gid = create_group(&scim, "Engineering").await;
    let old = direct_users(&client, &ns, "old", n, &[&gid]).await;
    let fresh = direct_users(&client, &ns, "new", n / 2, &[]).await;
    wait_members(&scim, &gid, n).await;

    // The new list: half of the old members and every new user (Okta's group push sends PUT).
    let mut want: Vec<String> = old[..n / 2].iter().chain(&fresh).cloned().collect();
    want.sort();
    let list: Vec<Value> = want.iter().map(|id| json!({"value": id})).collect();
    let started = Instant::now();
    let (status, body) = scim
        .call(
            reqwest::Method::PUT,
            &format!("/Groups/{gid}"),
            Some(&json!({"displayName": "Engineering", "members": list})),
        )
        .await;
    eprintln!(
        "PUT replacing {n} members by {} answered in {:?}",
        want.len(),
        started.elapsed()
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(member_ids(&body), want);
    assert_eq!(
        member_ids(&scim.get(&format!("/Groups/{gid}")).await.1),
        want
    );
    let (_, dropped) = scim.get(&format!("/Users/{}", old[n - 1])).await;
    assert!(
        dropped["groups"].as_array().is_none_or(|g| g.is_empty()),
        "{dropped}"
    );
    let (_, joined) = scim.get(&format!("/Users/{}", fresh[0])).await;
    assert_eq!(joined["groups"][0]["value"], gid.as_str(), "{joined}");

    // A PATCH replace while the rollout runs goes into the recorded list.
    let mut last = want.clone();
    last.retain(|id| id != &want[0]);
    let ops = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "members",
        "value": last.iter().map(|id| json!({"value": id})).collect::<Vec<_>>()}]});
    let (status, body) = scim
        .call(
            reqwest::Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(&ops),
        )
        .await;
    assert!(status == 204 || status == 200, "{status} {body}");
    assert_eq!(
        member_ids(&scim.get(&format!("/Groups/{gid}")).await.1),
        last
    );

    let group_api: Api<ScimGroup> = Api::namespaced(client.clone(), &ns);
    let settled = Instant::now();
    eventually(
        "the labels are the new list",
        Duration::from_secs(300),
        || async {
            let rolled_out = group_api
                .get(&gid)
                .await
                .unwrap()
                .spec
                .member_rollout
                .is_none();
            (rolled_out && labelled(&client, &ns, &gid).await == last).then_some(())
        },
    )
    .await;
    eprintln!("labels settled {:?} after the PATCH", settled.elapsed());
    // The worker's backlog and writes are exported per directory (never per group).
    let directory = format!("directory=\"{ns}/{DIR}\"");
    eventually(
        "no background work pending",
        Duration::from_secs(60),
        || async {
            let pending = srv
                .metric(&format!("kube_scim_group_cleanup_pending{{{directory}}}"))
                .await;
            (pending == Some(0.0)).then_some(())
        },
    )
    .await;
    let writes = |change: &'static str| {
        let series = format!(
            "kube_scim_group_cleanup_label_writes_total{{{directory},change=\"{change}\"}}"
        );
        let srv = &srv;
        async move { srv.metric(&series).await.unwrap_or(0.0) }
    };
    let (added, removed) = (writes("add").await, writes("remove").await);
    eprintln!("the worker added {added} and removed {removed} labels");
    // want[0] left again with the PATCH; if it was new and the worker had not reached it yet,
    // its label is never added.
    let fresh_in_last = fresh.iter().filter(|id| last.contains(id)).count();
    assert!(added >= fresh_in_last as f64, "added {added}");
    assert!(removed >= (n - n / 2) as f64, "removed {removed}");
    assert_eq!(
        member_ids(&scim.get(&format!("/Groups/{gid}")).await.1),
        last
    );
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await;
}

#[tokio::test]
async fn labels_of_groups_deleted_behind_the_servers_back_are_swept() {
    let (plane, client, ns, token) = setup("group-sweep").await;
    let srv = Server::start(plane, &ns, &[]).await;
    let scim = srv.scim(&ns, &token);
    let gid = create_group(&scim, "Contractors").await;
    let keep = create_group(&scim, "Staff").await;
    let ids = direct_users(&client, &ns, "sw", 50, &[&gid, &keep]).await;
    wait_members(&scim, &gid, 50).await;

    // kubectl delete: no finalizer, the object is gone at once; the watch event starts the
    // cleanup.
    let group_api: Api<ScimGroup> = Api::namespaced(client.clone(), &ns);
    group_api
        .delete(&gid, &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "labels of the kubectl-deleted group are removed",
        Duration::from_secs(60),
        || async { labelled(&client, &ns, &gid).await.is_empty().then_some(()) },
    )
    .await;
    assert_eq!(labelled(&client, &ns, &keep).await, ids);

    // A label naming a group that vanished while no server ran: the sweep after the next
    // start removes it.
    drop(srv);
    let ghost = uuid::Uuid::new_v4().to_string();
    let users: Api<ScimUser> = Api::namespaced(client.clone(), &ns);
    let add = json!({"metadata": {"labels": {labels::member_of(&ghost): "true"}}});
    for id in &ids[..5] {
        users
            .patch(id, &PatchParams::default(), &Patch::Merge(&add))
            .await
            .unwrap();
    }
    let _srv = Server::start(plane, &ns, &[]).await;
    eventually(
        "leftover labels are swept at start",
        Duration::from_secs(60),
        || async {
            labelled(&client, &ns, &ghost)
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
    assert_eq!(labelled(&client, &ns, &keep).await, ids);
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await;
}
