//! The operator on the real control plane: the `kube-scim-operator` binary runs as a process
//! (KUBECONFIG pointing at the plane, health/metrics on a free 127.0.0.1 port, its own Lease
//! namespace) and watches only the test's namespace, so tests run in parallel.
//!
//! Needs `cargo build -p kube-scim-operator --bins` first (`make test` builds every binary).
//! The token tests that check tokens at the SCIM server as well run the operator and the server
//! together ([`Stack`]).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use kube_scim_crds::{
    DeletionPolicy, DirectoryRef, IngressSpec, Provider, ScimDirectory, ScimDirectorySpec,
    ScimGroup, ScimGroupSpec, ScimGroupStatus, ScimUser, ScimUserSpec, ScimUserStatus,
    SecretKeyRef, TokenSpec, labels,
};
use kube_scim_tests::keys::VerifierKeys;
use kube_scim_tests::procs::ManagedProcess;
use kube_scim_tests::stack::{Stack, StackOptions};
use kube_scim_tests::{ControlPlane, eventually, free_port, must_succeed, workspace_binary};

/// Namespace of the (absent) SCIM server Service the operator is told about.
const SERVER_NAMESPACE: &str = "kube-scim";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// One operator process; its log is printed when a test fails while it runs.
struct Operator {
    process: ManagedProcess,
    port: u16,
    name: String,
    /// Its verifier keys (shared by every operator watching the same namespace).
    keys: VerifierKeys,
}

/// The verifier keys of the operators watching `watch`.
fn keys_for(plane: &ControlPlane, watch: &str) -> VerifierKeys {
    VerifierKeys::open_or_create(&plane.dir().join(format!("verifier-keys-{watch}"))).unwrap()
}

impl Operator {
    fn start(
        plane: &ControlPlane,
        name: &str,
        watch: &str,
        lease_namespace: &str,
        extra: &[&str],
    ) -> Operator {
        let port = free_port().unwrap();
        let binary = workspace_binary("kube-scim-operator")
            .expect("build the operator first: cargo build -p kube-scim-operator --bins");
        let keys = keys_for(plane, watch);
        let mut cmd = Command::new(binary);
        cmd.env("KUBECONFIG", plane.kubeconfig())
            .env_remove("POD_NAMESPACE")
            .env_remove("POD_NAME")
            .env("RUST_LOG", "info,kube_scim_operator=debug")
            .arg("--verifier-key-dir")
            .arg(keys.path())
            .arg(format!("--metrics-bind-address=127.0.0.1:{port}"))
            .arg(format!("--watch-namespaces={watch}"))
            .arg(format!("--lease-namespace={lease_namespace}"))
            .arg(format!("--identity={name}"))
            .args(extra);
        if !extra
            .iter()
            .any(|a| a.starts_with("--server-service-namespace"))
        {
            cmd.arg(format!("--server-service-namespace={SERVER_NAMESPACE}"));
        }
        let log = plane.dir().join(format!("operator-{watch}-{name}.log"));
        let process = ManagedProcess::spawn_command(name, cmd, &log).unwrap();
        Operator {
            process,
            port,
            name: name.to_string(),
            keys,
        }
    }

    /// `GET path` on the health/metrics port: status code and body.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let code = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((code, body))
    }

    /// Value of a metric line that starts with `prefix` (e.g. `kube_scim_operator_leader`).
    fn metric(&self, prefix: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        body.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    fn stop(&mut self) {
        self.process.stop();
    }

    fn kill(&mut self) {
        self.process.kill();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- operator {} log ({}) ---\n{}",
                self.name,
                self.process.log().display(),
                self.process.log_tail(60)
            );
        }
    }
}

fn directory(name: &str, spec: ScimDirectorySpec) -> ScimDirectory {
    ScimDirectory::new(name, spec)
}

fn with_host(host: &str) -> ScimDirectorySpec {
    ScimDirectorySpec {
        ingress: IngressSpec {
            host: Some(host.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Creates directory `name` whose Ingress host is `scim.<name>.example`.
async fn create_directory(dirs: &Api<ScimDirectory>, name: &str) {
    let spec = with_host(&format!("scim.{name}.example"));
    dirs.create(&PostParams::default(), &directory(name, spec))
        .await
        .unwrap();
}

/// The identity holding the operators' leader Lease in `leases`' namespace, if any.
async fn lease_holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("kube-scim-operator")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
}

/// Waits until `who` holds the leader Lease; `what` names the wait in the timeout panic.
async fn wait_for_lease_holder(leases: &Api<Lease>, who: &str, what: &str, timeout: Duration) {
    eventually(what, timeout, || async {
        (lease_holder(leases).await.as_deref() == Some(who)).then_some(())
    })
    .await
}

/// Starts operator `name` watching `ns` (its Lease there too) and waits until it leads.
async fn start_leader(plane: &ControlPlane, ns: &str, leases: &Api<Lease>, name: &str) -> Operator {
    let operator = Operator::start(plane, name, ns, ns, &[]);
    wait_for_lease_holder(
        leases,
        name,
        &format!("{name} to lead"),
        Duration::from_secs(30),
    )
    .await;
    operator
}

fn condition(dir: &ScimDirectory, type_: &str) -> Option<Condition> {
    dir.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

fn is_true(dir: &ScimDirectory, type_: &str) -> bool {
    condition(dir, type_).is_some_and(|c| c.status == "True")
}

/// Waits (30 s at most) until directory `name`'s condition `type_` is False for `reason`:
/// the directory as it was then, and the condition.
async fn wait_for_false_condition(
    dirs: &Api<ScimDirectory>,
    name: &str,
    type_: &str,
    reason: &str,
) -> (ScimDirectory, Condition) {
    eventually(
        &format!("{type_}=False {reason}"),
        Duration::from_secs(30),
        || async {
            let dir = dirs.get(name).await.ok()?;
            let c = condition(&dir, type_)?;
            (c.status == "False" && c.reason == reason).then_some((dir, c))
        },
    )
    .await
}

/// Waits until the directory is Ready (for its current generation) and returns it.
async fn ready(api: &Api<ScimDirectory>, name: &str, timeout: Duration) -> ScimDirectory {
    eventually(&format!("ScimDirectory {name} Ready"), timeout, || async {
        let dir = api.get_opt(name).await.ok()??;
        let current = condition(&dir, "Ready")?.observed_generation == dir.metadata.generation;
        (is_true(&dir, "Ready") && current).then_some(dir)
    })
    .await
}

/// Lowercase hex SHA-256 of `token`, computed by coreutils' sha256sum: what kube-scim 0.1.0
/// published, and what status must never hold now (not even its first 8 digits).
fn sha256_hex(token: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(token).unwrap();
    let out = child.wait_with_output().unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    hex.split_whitespace().next().unwrap().to_string()
}

/// Asserts that no field of `status` holds an unkeyed hash of any of `tokens`, nor a token.
fn assert_no_unkeyed_hash(status: &kube_scim_crds::ScimDirectoryStatus, tokens: &[&[u8]]) {
    let json = serde_json::to_string(status).unwrap();
    for token in tokens {
        let hex = sha256_hex(token);
        assert!(
            !json.contains(&hex[..8]),
            "status holds (a prefix of) sha256 of a token: {json}"
        );
        assert!(
            !json.contains(std::str::from_utf8(token).unwrap()),
            "status holds a token: {json}"
        );
    }
    assert!(
        status
            .token_verifiers
            .iter()
            .all(|v| v.hash.starts_with("hmac-sha256-dir:")),
        "{json}"
    );
}

fn hashes(verifiers: &[kube_scim_crds::TokenVerifier]) -> Vec<String> {
    verifiers.iter().map(|v| v.hash.clone()).collect()
}

/// The events about `regarding` in `ns`; none when the list fails, so that callers polling with
/// `eventually` simply try again.
async fn events_about(client: &Client, ns: &str, regarding: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&Default::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding))
                .collect()
        })
        .unwrap_or_default()
}

/// The Warning events about `regarding`, by reason.
async fn warning_reasons(client: &Client, ns: &str, regarding: &str) -> Vec<String> {
    events_about(client, ns, regarding)
        .await
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter_map(|e| e.reason)
        .collect()
}

/// `GET /Users` on directory `ns/dir` of the stack's SCIM server with `token`: the status code.
async fn scim_status(stack: &Stack, ns: &str, dir: &str, token: &[u8]) -> u16 {
    kube_scim_tests::http_client()
        .get(format!("{}/Users?count=1", stack.base_url(ns, dir)))
        .bearer_auth(String::from_utf8_lossy(token))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn secret_token(secret: &Secret, key: &str) -> Vec<u8> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .unwrap_or_default()
}

/// The events about `regarding`, by reason.
async fn event_reasons(client: &Client, ns: &str, regarding: &str) -> Vec<String> {
    events_about(client, ns, regarding)
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

async fn wait_for_event(client: &Client, ns: &str, regarding: &str, reason: &str) {
    eventually(
        &format!("event {reason} for {regarding}"),
        Duration::from_secs(30),
        || async {
            event_reasons(client, ns, regarding)
                .await
                .iter()
                .any(|r| r == reason)
                .then_some(())
        },
    )
    .await
}

fn owner_of(dir: &ScimDirectory) -> OwnerReference {
    OwnerReference {
        api_version: ScimDirectory::api_version(&()).to_string(),
        kind: ScimDirectory::kind(&()).to_string(),
        name: dir.name_any(),
        uid: dir.uid().unwrap(),
        controller: Some(false),
        block_owner_deletion: Some(false),
    }
}

/// A ScimUser as the SCIM server writes it: labelled, owned (not controlled) by its directory.
fn user(dir: &ScimDirectory, id: &str, active: bool) -> ScimUser {
    let mut user = ScimUser::new(
        id,
        ScimUserSpec {
            directory_ref: DirectoryRef {
                name: dir.name_any(),
            },
        },
    );
    user.metadata.labels = Some(
        [
            (labels::DIRECTORY.to_string(), dir.name_any()),
            (labels::ACTIVE.to_string(), active.to_string()),
        ]
        .into(),
    );
    user.metadata.owner_references = Some(vec![owner_of(dir)]);
    user.status = Some(ScimUserStatus {
        id: id.into(),
        user_name: format!("{id}@contoso.example"),
        active,
        ..Default::default()
    });
    user
}

fn group(dir: &ScimDirectory, id: &str) -> ScimGroup {
    let mut group = ScimGroup::new(
        id,
        ScimGroupSpec {
            directory_ref: DirectoryRef {
                name: dir.name_any(),
            },
            member_rollout: None,
        },
    );
    group.metadata.labels = Some([(labels::DIRECTORY.to_string(), dir.name_any())].into());
    group.metadata.owner_references = Some(vec![owner_of(dir)]);
    group.status = Some(ScimGroupStatus {
        id: id.into(),
        display_name: format!("Group {id}"),
        ..Default::default()
    });
    group
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// The verifiers of `token` at directory `name` (bound to its uid, namespace and name) as the
/// operator should publish them, computed apart from kube-scim's code.
async fn expected(
    keys: &VerifierKeys,
    dirs: &Api<ScimDirectory>,
    name: &str,
    token: &[u8],
) -> Vec<String> {
    let dir = dirs.get(name).await.unwrap();
    keys.verifiers(kube_scim_tests::keys::Dir::of(&dir), token)
}

#[tokio::test]
async fn a_directory_becomes_ready_and_its_secret_and_ingress_are_restored() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("op-ready").await.unwrap();
    let client = plane.client().await.unwrap();
    let op = Operator::start(plane, "op", &ns, &ns, &["--default-ingress-class=nginx"]);
    let dirs: Api<ScimDirectory> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);

    let mut spec = with_host("scim.contoso.example");
    spec.ingress.tls_secret_name = Some("scim-tls".into());
    spec.ingress.annotations = [("example.com/team".to_string(), "identity".to_string())].into();
    dirs.create(&PostParams::default(), &directory("contoso", spec))
        .await
        .unwrap();
    let dir = ready(&dirs, "contoso", Duration::from_secs(30)).await;
    let status = dir.status.clone().unwrap();
    // No Ingress controller runs on this plane: the route is in place but has no address yet,
    // which RouteReady says (Unknown) without making the directory unready.
    let route = condition(&dir, "RouteReady").unwrap();
    assert!(
        is_true(&dir, "TokenReady")
            && route.status == "Unknown"
            && route.reason == "AwaitingAddress",
        "{status:?}"
    );
    assert_eq!(
        status.endpoint.as_deref(),
        Some(
            format!("https://scim.contoso.example/scim/v2/{ns}/contoso?aadOptscim062020").as_str()
        )
    );
    assert_eq!(
        status.token_secret_name.as_deref(),
        Some("contoso-scim-token")
    );
    assert!(status.token_created.is_some());
    // Counted as soon as the operator's user and group caches hold their first list (a
    // reconcile before that keeps the counts the status has, here none).
    eventually("counts of 0", Duration::from_secs(10), || async {
        let status = dirs.get("contoso").await.ok()?.status?;
        ((
            status.users,
            status.active_users,
            status.inactive_users,
            status.groups,
        ) == (Some(0), Some(0), Some(0), Some(0)))
            .then_some(())
    })
    .await;

    // The Secret: a 256-bit URL-safe token, owned and labelled; status has its hash, never it.
    let secret = secrets.get("contoso-scim-token").await.unwrap();
    let token = secret_token(&secret, "token");
    assert_eq!(
        token.len(),
        43,
        "32 random bytes, base64url without padding"
    );
    assert!(
        token
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
    );
    assert_eq!(
        secret.labels().get(labels::DIRECTORY).map(String::as_str),
        Some("contoso")
    );
    assert!(
        secret
            .owner_references()
            .iter()
            .any(|o| o.uid == dir.uid().unwrap() && o.controller == Some(true))
    );
    let hash = expected(&op.keys, &dirs, "contoso", &token).await.remove(0);
    assert_eq!(status.token_verifiers.len(), 1, "one token, one key");
    assert_eq!(status.token_verifiers[0].hash, hash);
    assert_eq!(status.token_verifiers[0].expires_at, None);
    let digest = hash.rsplit(':').next().unwrap();
    assert_eq!(status.token_fingerprint.as_deref(), Some(&digest[..8]));
    assert_no_unkeyed_hash(&status, &[&token]);

    // The route: an Ingress in the directory's namespace for exactly the directory's path, to an
    // ExternalName Service pointing at the SCIM server in its namespace.
    let ingress = ingresses.get("contoso-scim").await.unwrap();
    let ingress_spec = ingress.spec.clone().unwrap();
    assert_eq!(
        ingress_spec.ingress_class_name.as_deref(),
        Some("nginx"),
        "class from the operator flag"
    );
    assert_eq!(
        ingress
            .annotations()
            .get("example.com/team")
            .map(String::as_str),
        Some("identity")
    );
    let rule = &ingress_spec.rules.as_ref().unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some("scim.contoso.example"));
    let path = &rule.http.as_ref().unwrap().paths[0];
    assert_eq!(
        path.path.as_deref(),
        Some(format!("/scim/v2/{ns}/contoso").as_str())
    );
    assert_eq!(path.path_type, "Prefix");
    let backend = path.backend.service.as_ref().unwrap();
    assert_eq!(backend.name, "scim-contoso");
    assert_eq!(
        ingress_spec.tls.as_ref().unwrap()[0].secret_name.as_deref(),
        Some("scim-tls")
    );
    let service = services.get("scim-contoso").await.unwrap();
    let service_spec = service.spec.unwrap();
    assert_eq!(service_spec.type_.as_deref(), Some("ExternalName"));
    assert_eq!(
        service_spec.external_name.as_deref(),
        Some(format!("kube-scim-server.{SERVER_NAMESPACE}.svc.cluster.local").as_str())
    );
    wait_for_event(&client, &ns, "contoso", "TokenCreated").await;
    wait_for_event(&client, &ns, "contoso", "RouteCreated").await;

    // Probes and metrics.
    assert_eq!(op.get("/healthz").map(|r| r.0), Some(200));
    assert_eq!(op.get("/readyz").map(|r| r.0), Some(200));
    assert!(
        op.metric("kube_scim_operator_reconciliations_total")
            .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(op.metric("kube_scim_operator_leader"), Some(1.0));

    // An edited Ingress comes back as specified.
    let edit = serde_json::json!({"spec": {"rules": [{"host": "evil.example", "http": {"paths": [{
        "path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": "elsewhere", "port": {"number": 80}}}}]}}]}});
    ingresses
        .patch(
            "contoso-scim",
            &PatchParams::default(),
            &Patch::Merge(&edit),
        )
        .await
        .unwrap();
    eventually(
        "the edited Ingress to be restored",
        Duration::from_secs(30),
        || async {
            let ingress = ingresses.get("contoso-scim").await.ok()?;
            let rule = ingress.spec?.rules?.into_iter().next()?;
            let path = rule.http?.paths.into_iter().next()?;
            (rule.host.as_deref() == Some("scim.contoso.example")
                && path.path.as_deref() == Some(format!("/scim/v2/{ns}/contoso").as_str())
                && path.backend.service?.name == "scim-contoso")
                .then_some(())
        },
    )
    .await;

    // A deleted Ingress comes back.
    ingresses
        .delete("contoso-scim", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the deleted Ingress to be recreated",
        Duration::from_secs(30),
        || async {
            let ingress = ingresses.get_opt("contoso-scim").await.ok()??;
            (ingress.metadata.deletion_timestamp.is_none() && ingress.uid() != Some(String::new()))
                .then_some(())
        },
    )
    .await;

    // A deleted Secret is replaced by a new token, and an event says so.
    secrets
        .delete("contoso-scim-token", &DeleteParams::default())
        .await
        .unwrap();
    let old_token = &token;
    let new_token = eventually("a new token Secret", Duration::from_secs(30), || async {
        let secret = secrets.get_opt("contoso-scim-token").await.ok()??;
        let token = secret_token(&secret, "token");
        (!token.is_empty() && token != *old_token).then_some(token)
    })
    .await;
    assert_ne!(new_token, token, "a recreated Secret holds a new token");
    let new_hash = expected(&op.keys, &dirs, "contoso", &new_token)
        .await
        .remove(0);
    eventually(
        "status to publish only the new verifier",
        Duration::from_secs(30),
        || async {
            let dir = dirs.get("contoso").await.ok()?;
            let verifiers = dir.status?.token_verifiers;
            (verifiers.len() == 1 && verifiers[0].hash == new_hash).then_some(())
        },
    )
    .await;
    wait_for_event(&client, &ns, "contoso", "TokenRecreated").await;
    assert!(is_true(&dirs.get("contoso").await.unwrap(), "Ready"));

    // An unrelated reconcile never overwrites the token.
    let patch = serde_json::json!({"spec": {"displayName": "Contoso renamed"}});
    dirs.patch("contoso", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    ready(&dirs, "contoso", Duration::from_secs(30)).await;
    let secret = secrets.get("contoso-scim-token").await.unwrap();
    assert_eq!(secret_token(&secret, "token"), new_token);
}

#[tokio::test]
async fn users_and_groups_are_counted_from_their_labels() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("op-counts").await.unwrap();
    let client = plane.client().await.unwrap();
    let op = Operator::start(plane, "op", &ns, &ns, &[]);
    let dirs: Api<ScimDirectory> = Api::namespaced(client.clone(), &ns);
    create_directory(&dirs, "contoso").await;
    let dir = ready(&dirs, "contoso", Duration::from_secs(30)).await;

    let users: Api<ScimUser> = Api::namespaced(client.clone(), &ns);
    let groups: Api<ScimGroup> = Api::namespaced(client.clone(), &ns);
    users
        .create(&PostParams::default(), &user(&dir, "u1", true))
        .await
        .unwrap();
    users
        .create(&PostParams::default(), &user(&dir, "u2", true))
        .await
        .unwrap();
    users
        .create(&PostParams::default(), &user(&dir, "u3", false))
        .await
        .unwrap();
    groups
        .create(&PostParams::default(), &group(&dir, "g1"))
        .await
        .unwrap();
    let status = eventually(
        "counts 3 users (2 active, 1 inactive) and 1 group",
        Duration::from_secs(30),
        || async {
            let status = dirs.get("contoso").await.ok()?.status?;
            (status.users == Some(3)
                && status.active_users == Some(2)
                && status.inactive_users == Some(1)
                && status.groups == Some(1))
            .then_some(status)
        },
    )
    .await;
    let last: Timestamp = status
        .last_provisioning_time
        .expect("lastProvisioningTime")
        .parse()
        .unwrap();
    let created: Timestamp = dir.metadata.creation_timestamp.unwrap().0;
    assert!(
        last >= created,
        "{last} is a provisioning write after the directory was created ({created})"
    );

    // Deprovisioning (active label flips) and deletion are counted too.
    let deactivate = serde_json::json!({"metadata": {"labels": {labels::ACTIVE: "false"}}});
    users
        .patch("u1", &PatchParams::default(), &Patch::Merge(&deactivate))
        .await
        .unwrap();
    users.delete("u2", &DeleteParams::default()).await.unwrap();
    eventually(
        "counts 2 users, both inactive",
        Duration::from_secs(30),
        || async {
            let status = dirs.get("contoso").await.ok()?.status?;
            (status.users == Some(2)
                && status.active_users == Some(0)
                && status.inactive_users == Some(2))
            .then_some(())
        },
    )
    .await;

    // ScimUsers and ScimGroups are watched once, for both controllers (the directory's counts,
    // the ScimGroupBindings): one list and one watch request per kind. With a watch per
    // controller it was two of each (4 GETs); 3 leaves room for one re-watch of a closed
    // watch, which the watcher resumes without listing again.
    for resource in ["scimusers", "scimgroups"] {
        let line = format!(
            r#"kube_scim_operator_api_requests_total{{method="GET",resource="{resource}"}}"#
        );
        let gets = op.metric(&line).expect("the GET count of the watched kind");
        assert!(
            (2.0..=3.0).contains(&gets),
            "{resource}: {gets} GET requests (one list and one watch expected; 4 when each controller watched on its own)"
        );
    }
    // ScimDirectories too: one watch for the directory controller (its own kind) and the
    // group-binding controller (who may feed a binding). Their GETs above would not tell: every
    // reconcile also GETs its directory by name (the token step reads the status fresh), so
    // lists and watches are counted apart.
    for resource in ["scimdirectories", "scimusers", "scimgroups"] {
        let requests = |verb: &str| {
            op.metric(&format!(
                r#"kube_scim_operator_api_list_watch_requests_total{{resource="{resource}",verb="{verb}"}}"#
            ))
            .unwrap_or(0.0)
        };
        let (lists, watches) = (requests("list"), requests("watch"));
        assert!(
            lists >= 1.0 && watches >= 1.0 && lists + watches <= 3.0,
            "{resource}: {lists} lists and {watches} watches (one of each expected, and room for one re-watch; 2 and 2 when each controller watched on its own)"
        );
    }
}

#[tokio::test]
async fn rotation_keeps_both_tokens_valid_through_the_grace_period_only() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("op-rotate").await.unwrap();
    let client = plane.client().await.unwrap();
    let op = Operator::start(plane, "op", &ns, &ns, &[]);
    let dirs: Api<ScimDirectory> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut spec = with_host("scim.contoso.example");
    spec.token.grace_period = Some("5s".into());
    dirs.create(&PostParams::default(), &directory("contoso", spec))
        .await
        .unwrap();
    let dir = ready(&dirs, "contoso", Duration::from_secs(30)).await;
    let old_token = secret_token(&secrets.get("contoso-scim-token").await.unwrap(), "token");
    let old_hash = expected(&op.keys, &dirs, "contoso", &old_token)
        .await
        .remove(0);
    assert_eq!(dir.status.unwrap().token_verifiers[0].hash, old_hash);

    let rotate = serde_json::json!({"spec": {"token": {"rotationRequest": "2026-01-rotation"}}});
    dirs.patch("contoso", &PatchParams::default(), &Patch::Merge(&rotate))
        .await
        .unwrap();
    let (new_token, verifiers) = eventually(
        "rotation: a new token and two verifiers",
        Duration::from_secs(30),
        || async {
            let token = secret_token(&secrets.get("contoso-scim-token").await.ok()?, "token");
            let verifiers = dirs.get("contoso").await.ok()?.status?.token_verifiers;
            (token != old_token && verifiers.len() == 2).then_some((token, verifiers))
        },
    )
    .await;
    let new_hash = expected(&op.keys, &dirs, "contoso", &new_token)
        .await
        .remove(0);
    assert_eq!(verifiers[0].hash, new_hash, "current token first");
    assert_eq!(verifiers[0].expires_at, None);
    assert_eq!(verifiers[1].hash, old_hash, "the old token stays valid");
    let expires: Timestamp = verifiers[1]
        .expires_at
        .as_deref()
        .expect("old verifier expires")
        .parse()
        .unwrap();
    assert!(expires > Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(10));
    wait_for_event(&client, &ns, "contoso", "TokenRotated").await;

    // After the grace period only the new verifier is left (requeued at expiry, no other trigger).
    let status = eventually(
        "the old verifier to expire",
        Duration::from_secs(30),
        || async {
            let status = dirs.get("contoso").await.ok()?.status?;
            (status.token_verifiers.len() == 1).then_some(status)
        },
    )
    .await;
    assert_eq!(status.token_verifiers[0].hash, new_hash);
    assert!(Timestamp::now() >= expires, "removed only after expiresAt");
    let digest = new_hash.rsplit(':').next().unwrap();
    assert_eq!(status.token_fingerprint.as_deref(), Some(&digest[..8]));
    assert_no_unkeyed_hash(&status, &[&old_token, &new_token]);
    // The Secret keeps the new token.
    assert_eq!(
        secret_token(&secrets.get("contoso-scim-token").await.unwrap(), "token"),
        new_token
    );
}

#[tokio::test]
async fn a_bring_your_own_secret_is_used_as_is() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("op-byo").await.unwrap();
    let client = plane.client().await.unwrap();
    let op = Operator::start(plane, "op", &ns, &ns, &[]);
    let dirs: Api<ScimDirectory> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    const VAULT_TOKEN: &[u8] = b"my-own-token-from-vault-7f3a9c2e5b8d1f4a6c";
    const NEW_TOKEN: &[u8] = b"new-token-from-vault-b4d6f9a2c5e8b0d3f6a9";
    let byo = Secret {
        metadata: ObjectMeta {
            name: Some("entra-token".into()),
            ..Default::default()
        },
        data: Some([("apiKey".to_string(), ByteString(VAULT_TOKEN.to_vec()))].into()),
        ..Default::default()
    };
    let created = secrets.create(&PostParams::default(), &byo).await.unwrap();
    let mut spec = with_host("scim.contoso.example");
    spec.provider = Provider::Generic;
    spec.token = TokenSpec {
        secret_ref: Some(SecretKeyRef {
            name: "entra-token".into(),
            key: Some("apiKey".into()),
        }),
        grace_period: Some("1h".into()),
        ..Default::default()
    };
    dirs.create(&PostParams::default(), &directory("contoso", spec))
        .await
        .unwrap();
    let dir = ready(&dirs, "contoso", Duration::from_secs(30)).await;
    let status = dir.status.unwrap();
    assert_eq!(status.token_secret_name.as_deref(), Some("entra-token"));
    assert_eq!(
        hashes(&status.token_verifiers),
        expected(&op.keys, &dirs, "contoso", VAULT_TOKEN).await
    );
    assert_no_unkeyed_hash(&status, &[VAULT_TOKEN]);
    assert_eq!(
        status.endpoint.as_deref(),
        Some(format!("http://scim.contoso.example/scim/v2/{ns}/contoso").as_str()),
        "generic provider: no Entra flag; no TLS: http"
    );
    assert!(
        secrets
            .get_opt("contoso-scim-token")
            .await
            .unwrap()
            .is_none(),
        "no Secret is generated"
    );
    let after = secrets.get("entra-token").await.unwrap();
    assert_eq!(
        after.resource_version(),
        created.resource_version(),
        "the operator only reads it"
    );
    assert!(after.owner_references().is_empty());

    // Changing the token in the Secret is picked up (the Secret is watched) and the previous one
    // keeps working for the grace period.
    let change = serde_json::json!({"data": {"apiKey": ByteString(NEW_TOKEN.to_vec())}});
    secrets
        .patch(
            "entra-token",
            &PatchParams::default(),
            &Patch::Merge(&change),
        )
        .await
        .unwrap();
    let verifiers = eventually(
        "the changed token's verifier",
        Duration::from_secs(30),
        || async {
            let verifiers = dirs.get("contoso").await.ok()?.status?.token_verifiers;
            (verifiers.len() == 2).then_some(verifiers)
        },
    )
    .await;
    assert_eq!(
        verifiers[0].hash,
        expected(&op.keys, &dirs, "contoso", NEW_TOKEN).await[0]
    );
    assert_eq!(
        verifiers[1].hash,
        expected(&op.keys, &dirs, "contoso", VAULT_TOKEN).await[0]
    );
    assert!(verifiers[1].expires_at.is_some());
}

#[tokio::test]
async fn invalid_specs_give_readable_conditions() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("op-invalid").await.unwrap();
    let client = plane.client().await.unwrap();
    let _op = Operator::start(plane, "op", &ns, &ns, &[]);
    let dirs: Api<ScimDirectory> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);

    // A secretRef to a missing Secret.
    let mut spec = with_host("scim.contoso.example");
    spec.token.secret_ref = Some(SecretKeyRef {
        name: "missing".into(),
        key: None,
    });
    dirs.create(&PostParams::default(), &directory("byo", spec))
        .await
        .unwrap();
    let token_condition = |reason: &'static str| {
        let dirs = dirs.clone();
        move || {
            let dirs = dirs.clone();
            async move {
                let dir = dirs.get("byo").await.ok()?;
                let c = condition(&dir, "TokenReady")?;
                (c.status == "False" && c.reason == reason && !is_true(&dir, "Ready"))
                    .then_some((dir, c))
            }
        }
    };
    let (dir, c) = eventually(
        "TokenReady=False SecretNotFound",
        Duration::from_secs(30),
        token_condition("SecretNotFound"),
    )
    .await;
    assert!(
        c.message.contains("spec.token.secretRef.name") && c.message.contains("missing"),
        "{}",
        c.message
    );
    let ready_condition = condition(&dir, "Ready").unwrap();
    assert_eq!(ready_condition.status, "False");
    assert_eq!(ready_condition.reason, "TokenNotReady");
    assert_eq!(ready_condition.observed_generation, dir.metadata.generation);
    assert!(
        dir.status.as_ref().unwrap().token_verifiers.is_empty(),
        "no token, no verifier"
    );
    wait_for_event(&client, &ns, "byo", "SecretNotFound").await;

    // The Secret appears without the key.
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("missing".into()),
            ..Default::default()
        },
        data: Some([("password".to_string(), ByteString(b"x".to_vec()))].into()),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let (_, c) = eventually(
        "TokenReady=False SecretKeyMissing",
        Duration::from_secs(30),
        token_condition("SecretKeyMissing"),
    )
    .await;
    assert!(
        c.message.contains("spec.token.secretRef.key") && c.message.contains("\"token\""),
        "{}",
        c.message
    );

    // Fixing it makes the directory Ready.
    let fix = serde_json::json!({"data": {"token": ByteString(
        b"a-strong-enough-token-3f7a9c2e5b8d1f4a6c0e".to_vec()
    )}});
    secrets
        .patch("missing", &PatchParams::default(), &Patch::Merge(&fix))
        .await
        .unwrap();
    ready(&dirs, "byo", Duration::from_secs(30)).await;

    // No host anywhere: RouteReady=False naming the field and the flag, no Ingress, no endpoint.
    dirs.create(
        &PostParams::default(),
        &directory("nohost", ScimDirectorySpec::default()),
    )
    .await
    .unwrap();
    let (dir, c) = wait_for_false_condition(&dirs, "nohost", "RouteReady", "NoHost").await;
    assert!(
        c.message.contains("spec.ingress.host") && c.message.contains("--default-ingress-host"),
        "{}",
        c.message
    );
    assert!(
        is_true(&dir, "TokenReady"),
        "the token does not depend on the route"
    );
    assert!(!is_true(&dir, "Ready"));
    assert_eq!(dir.status.as_ref().unwrap().endpoint, None);
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    assert!(ingresses.get_opt("nohost-scim").await.unwrap().is_none());

    // Setting the host fixes it.
    let host = serde_json::json!({"spec": {"ingress": {"host": "scim.example.com"}}});
    dirs.patch("nohost", &PatchParams::default(), &Patch::Merge(&host))
        .await
        .unwrap();
    ready(&dirs, "nohost", Duration::from_secs(30)).await;

    // A Gateway route on a cluster without the Gateway API (this plane has none): a condition
    // that says what to install, and the Ingress of the previous kind is gone.
    let gateway = serde_json::json!({"spec": {
        "routeKind": "Gateway",
        "gateway": {"host": "scim.example.com", "parentRefs": [{"name": "edge", "namespace": "infra"}]},
    }});
    dirs.patch("nohost", &PatchParams::default(), &Patch::Merge(&gateway))
        .await
        .unwrap();
    let (dir, c) =
        wait_for_false_condition(&dirs, "nohost", "RouteReady", "GatewayAPIMissing").await;
    assert!(
        c.message.contains("sigs.k8s.io/gateway-api"),
        "{}",
        c.message
    );
    assert!(!is_true(&dir, "Ready"));
    assert!(ingresses.get_opt("nohost-scim").await.unwrap().is_none());
}

#[tokio::test]
async fn default_host_same_namespace_backend_and_disabled_ingress() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("op-route").await.unwrap();
    let client = plane.client().await.unwrap();
    // The SCIM server lives in this namespace: the Ingress points at its Service directly.
    let _op = Operator::start(
        plane,
        "op",
        &ns,
        &ns,
        &[
            "--default-ingress-host=scim.default.example",
            "--default-tls-secret=wildcard-tls",
            "--default-ingress-annotation=cert-manager.io/cluster-issuer=letsencrypt",
            &format!("--server-service-namespace={ns}"),
            "--server-service-port=8080",
        ],
    );
    let dirs: Api<ScimDirectory> = Api::namespaced(client.clone(), &ns);
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let mut spec = ScimDirectorySpec::default();
    spec.ingress.path_prefix = Some("/identity".into());
    dirs.create(&PostParams::default(), &directory("fabrikam", spec))
        .await
        .unwrap();
    let dir = ready(&dirs, "fabrikam", Duration::from_secs(30)).await;
    assert_eq!(
        dir.status.unwrap().endpoint.as_deref(),
        Some(
            format!("https://scim.default.example/identity/scim/v2/{ns}/fabrikam?aadOptscim062020")
                .as_str()
        )
    );
    let ingress = ingresses.get("fabrikam-scim").await.unwrap();
    assert_eq!(
        ingress
            .annotations()
            .get("cert-manager.io/cluster-issuer")
            .map(String::as_str),
        Some("letsencrypt")
    );
    let spec = ingress.spec.unwrap();
    let path = &spec.rules.as_ref().unwrap()[0].http.as_ref().unwrap().paths[0];
    assert_eq!(
        path.path.as_deref(),
        Some(format!("/identity/scim/v2/{ns}/fabrikam").as_str())
    );
    let backend = path.backend.service.as_ref().unwrap();
    assert_eq!(backend.name, "kube-scim-server");
    assert_eq!(backend.port.as_ref().unwrap().number, Some(8080));
    assert_eq!(
        spec.tls.unwrap()[0].secret_name.as_deref(),
        Some("wildcard-tls")
    );
    assert!(
        services.get_opt("scim-fabrikam").await.unwrap().is_none(),
        "no ExternalName Service in the server's namespace"
    );

    // ingress.enabled: false removes the Ingress; the Tenant URL stays on the known host.
    let disable = serde_json::json!({"spec": {"ingress": {"enabled": false}}});
    dirs.patch("fabrikam", &PatchParams::default(), &Patch::Merge(&disable))
        .await
        .unwrap();
    let dir = ready(&dirs, "fabrikam", Duration::from_secs(30)).await;
    assert_eq!(
        condition(&dir, "RouteReady").unwrap().reason,
        "RouteDisabled"
    );
    eventually(
        "the Ingress to be removed",
        Duration::from_secs(30),
        || async {
            ingresses
                .get_opt("fabrikam-scim")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn deletion_policy_deletes_or_retains_users_and_groups() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("op-delete").await.unwrap();
    let client = plane.client().await.unwrap();
    let _op = Operator::start(plane, "op", &ns, &ns, &[]);
    let dirs: Api<ScimDirectory> = Api::namespaced(client.clone(), &ns);
    let users: Api<ScimUser> = Api::namespaced(client.clone(), &ns);
    let groups: Api<ScimGroup> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);

    let mut keep_spec = with_host("scim.keep.example");
    keep_spec.deletion_policy = DeletionPolicy::Retain;
    let mut gone_spec = with_host("scim.gone.example");
    gone_spec.deletion_policy = DeletionPolicy::Delete;
    dirs.create(&PostParams::default(), &directory("gone", gone_spec))
        .await
        .unwrap();
    dirs.create(&PostParams::default(), &directory("keep", keep_spec))
        .await
        .unwrap();
    let gone = ready(&dirs, "gone", Duration::from_secs(30)).await;
    let keep = ready(&dirs, "keep", Duration::from_secs(30)).await;
    assert!(
        gone.finalizers().is_empty(),
        "Delete needs no finalizer: ownerReferences do it"
    );
    assert!(
        keep.finalizers()
            .iter()
            .any(|f| f == "kubescim.io/retain-users-and-groups")
    );

    users
        .create(&PostParams::default(), &user(&gone, "gone-user", true))
        .await
        .unwrap();
    groups
        .create(&PostParams::default(), &group(&gone, "gone-group"))
        .await
        .unwrap();
    users
        .create(&PostParams::default(), &user(&keep, "keep-user", true))
        .await
        .unwrap();
    groups
        .create(&PostParams::default(), &group(&keep, "keep-group"))
        .await
        .unwrap();

    dirs.delete("gone", &DeleteParams::background())
        .await
        .unwrap();
    dirs.delete("keep", &DeleteParams::background())
        .await
        .unwrap();

    eventually(
        "the Retain directory to be deleted",
        Duration::from_secs(60),
        || async { dirs.get_opt("keep").await.ok()?.is_none().then_some(()) },
    )
    .await;
    eventually(
        "garbage collection of the Delete directory's user, group and Secret",
        Duration::from_secs(90),
        || async {
            let user = users.get_opt("gone-user").await.ok()?;
            let group = groups.get_opt("gone-group").await.ok()?;
            let secret = secrets.get_opt("gone-scim-token").await.ok()?;
            (user.is_none() && group.is_none() && secret.is_none()).then_some(())
        },
    )
    .await;
    // By now the garbage collector has handled both directories; the retained ones are still there.
    eventually(
        "the retained Secret to be garbage-collected",
        Duration::from_secs(60),
        || async {
            secrets
                .get_opt("keep-scim-token")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    let kept_user = users.get("keep-user").await.expect("Retain keeps the user");
    let kept_group = groups
        .get("keep-group")
        .await
        .expect("Retain keeps the group");
    assert!(
        kept_user.owner_references().is_empty(),
        "{:?}",
        kept_user.owner_references()
    );
    assert!(
        kept_group.owner_references().is_empty(),
        "{:?}",
        kept_group.owner_references()
    );
    wait_for_event(&client, &ns, "keep", "Retained").await;
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("op-leader").await.unwrap();
    let client = plane.client().await.unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let dirs: Api<ScimDirectory> = Api::namespaced(client.clone(), &ns);

    let mut a = start_leader(plane, &ns, &leases, "replica-a").await;
    let mut b = Operator::start(plane, "replica-b", &ns, &ns, &[]);
    eventually(
        "replica-b to serve /readyz as a standby",
        Duration::from_secs(30),
        || async {
            b.get("/readyz")
                .filter(|(code, body)| *code == 200 && body.contains("standby"))
                .map(|_| ())
        },
    )
    .await;

    create_directory(&dirs, "one").await;
    ready(&dirs, "one", Duration::from_secs(30)).await;
    assert_eq!(lease_holder(&leases).await.as_deref(), Some("replica-a"));
    assert_eq!(a.metric("kube_scim_operator_leader"), Some(1.0));
    assert_eq!(b.metric("kube_scim_operator_leader"), Some(0.0));
    assert_eq!(
        b.metric("kube_scim_operator_reconciliations_total")
            .unwrap_or(0.0),
        0.0,
        "the standby does not reconcile"
    );
    let reasons_by = |instance: &'static str| {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            let api: Api<Event> = Api::namespaced(client, &ns);
            api.list(&Default::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|e| e.reporting_instance.as_deref() == Some(instance))
                .count()
        }
    };
    assert!(reasons_by("replica-a").await > 0);
    assert_eq!(reasons_by("replica-b").await, 0);

    // A graceful stop releases the Lease: replica-b takes over and reconciles.
    a.stop();
    // Graceful shutdown on SIGTERM: running reconciles finish, the Lease is released (so the
    // standby need not wait for it to expire), and every log line is a JSON object.
    let log = std::fs::read_to_string(a.process.log()).unwrap();
    assert!(
        log.contains("released the leader Lease"),
        "{}",
        a.process.log_tail(20)
    );
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            parsed["level"].is_string() && parsed["message"].is_string(),
            "{line}"
        );
    }
    wait_for_lease_holder(
        &leases,
        "replica-b",
        "replica-b to take over after a graceful stop",
        Duration::from_secs(20),
    )
    .await;
    create_directory(&dirs, "two").await;
    ready(&dirs, "two", Duration::from_secs(30)).await;
    assert_eq!(b.metric("kube_scim_operator_leader"), Some(1.0));

    // A crashed leader (SIGKILL, no release) is replaced once its Lease expires (15 s).
    let _c = Operator::start(plane, "replica-c", &ns, &ns, &[]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.kill();
    let killed = tokio::time::Instant::now();
    wait_for_lease_holder(
        &leases,
        "replica-c",
        "replica-c to take over after the leader was killed",
        Duration::from_secs(40),
    )
    .await;
    eprintln!("fail-over after SIGKILL took {:?}", killed.elapsed());
    create_directory(&dirs, "three").await;
    ready(&dirs, "three", Duration::from_secs(30)).await;
}

/// The operator runs as a ServiceAccount bound only to `operator/rbac.yaml` (the list the Helm
/// chart uses): everything from token to Retain deletion works, nothing is forbidden.
#[tokio::test]
async fn the_documented_rbac_is_enough() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("op-rbac").await.unwrap();
    let client = plane.client().await.unwrap();
    let rbac = kube_scim_tests::repo_root().join("operator/rbac.yaml");
    must_succeed(
        plane
            .kubectl()
            .args(["apply", "--server-side", "-f"])
            .arg(&rbac),
    );
    let sa = format!("system:serviceaccount:{ns}:kube-scim-operator");
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let server_ns = k8s_openapi::api::core::v1::Namespace {
        metadata: ObjectMeta {
            name: Some(SERVER_NAMESPACE.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match namespaces.create(&PostParams::default(), &server_ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("namespace {SERVER_NAMESPACE}: {e}"),
    }
    for (kind, name, role, binding_ns) in [
        (
            "clusterrolebinding",
            format!("kube-scim-operator-{ns}"),
            "kube-scim-operator",
            ns.as_str(),
        ),
        (
            "rolebinding",
            "kube-scim-operator-leader-election".to_string(),
            "kube-scim-operator-leader-election",
            ns.as_str(),
        ),
        // ReferenceGrants live in the SCIM server's namespace.
        (
            "rolebinding",
            format!("kube-scim-operator-reference-grants-{ns}"),
            "kube-scim-operator-reference-grants",
            SERVER_NAMESPACE,
        ),
    ] {
        must_succeed(plane.kubectl().args([
            "create",
            kind,
            &name,
            &format!("--clusterrole={role}"),
            &format!("--serviceaccount={ns}:kube-scim-operator"),
            "-n",
            binding_ns,
        ]));
    }
    // A kubeconfig that impersonates the ServiceAccount (as a pod's token would authenticate).
    let admin = std::fs::read_to_string(plane.kubeconfig()).unwrap();
    let impersonation = format!(
        "  user:\n    as: {sa}\n    as-groups:\n    - system:serviceaccounts\n    - system:serviceaccounts:{ns}\n    - system:authenticated\n"
    );
    let kubeconfig = plane.dir().join(format!("kubeconfig-{ns}"));
    std::fs::write(&kubeconfig, admin.replacen("  user:\n", &impersonation, 1)).unwrap();
    let sa_client = plane
        .service_account_client(&ns, "kube-scim-operator")
        .await
        .unwrap();
    let forbidden = Api::<Secret>::namespaced(sa_client, "kube-system")
        .create(&PostParams::default(), &Secret::default())
        .await;
    assert!(
        matches!(forbidden, Err(kube::Error::Api(ref s)) if s.code == 403 || s.code == 422),
        "{forbidden:?}"
    );

    let port = free_port().unwrap();
    let keys = keys_for(plane, &ns);
    let mut cmd = Command::new(workspace_binary("kube-scim-operator").unwrap());
    cmd.env("KUBECONFIG", &kubeconfig)
        .env("KUBE_SCIM_VERIFIER_KEY_DIR", keys.path())
        .env("POD_NAMESPACE", &ns)
        .env_remove("POD_NAME")
        .arg(format!("--metrics-bind-address=127.0.0.1:{port}"))
        .arg("--identity=rbac")
        .arg(format!("--watch-namespaces={ns}"))
        .arg(format!("--server-service-namespace={SERVER_NAMESPACE}"));
    let process = ManagedProcess::spawn_command(
        "rbac",
        cmd,
        &plane.dir().join(format!("operator-{ns}-rbac.log")),
    )
    .unwrap();
    let op = Operator {
        process,
        port,
        name: "rbac".into(),
        keys,
    };

    let dirs: Api<ScimDirectory> = Api::namespaced(client.clone(), &ns);
    let mut spec = with_host("scim.rbac.example");
    spec.deletion_policy = DeletionPolicy::Retain;
    dirs.create(&PostParams::default(), &directory("rbac", spec))
        .await
        .unwrap();
    let dir = ready(&dirs, "rbac", Duration::from_secs(30)).await;
    wait_for_event(&client, &ns, "rbac", "TokenCreated").await;
    let users: Api<ScimUser> = Api::namespaced(client.clone(), &ns);
    users
        .create(&PostParams::default(), &user(&dir, "rbac-user", false))
        .await
        .unwrap();
    eventually(
        "the user to be counted",
        Duration::from_secs(30),
        || async { (dirs.get("rbac").await.ok()?.status?.inactive_users == Some(1)).then_some(()) },
    )
    .await;
    // Rotation (Secret update) and Retain deletion (finalizer, ownerReference removal).
    let rotate = serde_json::json!({"spec": {"token": {"rotationRequest": "r1"}}});
    dirs.patch("rbac", &PatchParams::default(), &Patch::Merge(&rotate))
        .await
        .unwrap();
    wait_for_event(&client, &ns, "rbac", "TokenRotated").await;
    dirs.delete("rbac", &DeleteParams::background())
        .await
        .unwrap();
    eventually(
        "the Retain directory to be deleted",
        Duration::from_secs(60),
        || async { dirs.get_opt("rbac").await.ok()?.is_none().then_some(()) },
    )
    .await;
    assert!(
        users
            .get("rbac-user")
            .await
            .unwrap()
            .owner_references()
            .is_empty()
    );
    assert!(
        !event_reasons(&client, &ns, "rbac")
            .await
            .iter()
            .any(|r| r == "ReconcileFailed"),
        "no reconcile failed (e.g. Forbidden): {:?}",
        event_reasons(&client, &ns, "rbac").await
    );
    let log = std::fs::read_to_string(op.process.log()).unwrap();
    assert!(
        !log.contains("forbidden"),
        "the operator hit a Forbidden error:\n{}",
        op.process.log_tail(40)
    );
    assert_eq!(op.metric("kube_scim_operator_leader"), Some(1.0));
}

/// A BYO Secret `name` holding `token` under key `token`.
fn byo_secret(name: &str, token: &[u8]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some([("token".to_string(), ByteString(token.to_vec()))].into()),
        ..Default::default()
    }
}

/// A weak bring-your-own token is refused (no verifier, `TokenTooWeak`, a Warning) while the
/// token it replaced keeps working at the SCIM server for its grace period; a strong one is
/// accepted at once; status never holds an unkeyed hash of any of them.
#[tokio::test]
async fn a_weak_bring_your_own_token_is_refused_and_the_previous_one_keeps_working() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("op-weak").await.unwrap();
    let client = plane.client().await.unwrap();
    let stack = Stack::start(plane, StackOptions::new(&ns)).await.unwrap();
    let dirs: Api<ScimDirectory> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let strong = format!("byo-{}", kube_scim_tests::keys::random_key().unwrap()).into_bytes();
    const WEAK: &[u8] = b"Welcome2026!";
    secrets
        .create(&PostParams::default(), &byo_secret("entra-token", &strong))
        .await
        .unwrap();
    let mut spec = with_host("scim.contoso.example");
    spec.token.secret_ref = Some(SecretKeyRef {
        name: "entra-token".into(),
        key: None,
    });
    spec.token.grace_period = Some("1h".into());
    dirs.create(&PostParams::default(), &directory("contoso", spec))
        .await
        .unwrap();
    let dir = ready(&dirs, "contoso", Duration::from_secs(30)).await;
    let status = dir.status.unwrap();
    assert_eq!(
        hashes(&status.token_verifiers),
        expected(&stack.operator_keys, &dirs, "contoso", &strong).await
    );
    assert_no_unkeyed_hash(&status, &[&strong]);
    let opens = |token: &'static [u8]| scim_status(&stack, &ns, "contoso", token);
    let strong_status = || scim_status(&stack, &ns, "contoso", &strong);
    eventually(
        "the strong token to open the directory",
        Duration::from_secs(30),
        || async { (strong_status().await == 200).then_some(()) },
    )
    .await;

    // The weak token: refused, with the fix in the message and a Warning event.
    let weak = serde_json::json!({"data": {"token": ByteString(WEAK.to_vec())}});
    secrets
        .patch("entra-token", &PatchParams::default(), &Patch::Merge(&weak))
        .await
        .unwrap();
    let (dir, c) = wait_for_false_condition(&dirs, "contoso", "TokenReady", "TokenTooWeak").await;
    assert!(
        c.message.contains("openssl rand -base64 32") && c.message.contains("at least 32"),
        "{}",
        c.message
    );
    assert!(
        !c.message.contains("Welcome"),
        "never the token: {}",
        c.message
    );
    let status = dir.status.clone().unwrap();
    assert_eq!(
        hashes(&status.token_verifiers),
        expected(&stack.operator_keys, &dirs, "contoso", &strong).await,
        "no verifier of the weak token, the previous token's stay"
    );
    assert!(
        status
            .token_verifiers
            .iter()
            .all(|v| v.expires_at.is_some()),
        "the previous token only for its grace period: {:?}",
        status.token_verifiers
    );
    assert_eq!(status.token_fingerprint, None);
    let ready_condition = condition(&dir, "Ready").unwrap();
    assert_eq!(
        (
            ready_condition.status.as_str(),
            ready_condition.reason.as_str()
        ),
        ("True", "PreviousTokenValid"),
        "{}",
        ready_condition.message
    );
    assert_no_unkeyed_hash(&status, &[&strong, WEAK]);
    eventually(
        "a Warning event TokenTooWeak",
        Duration::from_secs(30),
        || async {
            warning_reasons(&client, &ns, "contoso")
                .await
                .iter()
                .any(|r| r == "TokenTooWeak")
                .then_some(())
        },
    )
    .await;
    assert_eq!(strong_status().await, 200, "the previous token still works");
    assert_eq!(opens(WEAK).await, 401, "the weak token opens nothing");

    // A strong token again: accepted at once, and the one before it keeps its grace period.
    let stronger = format!("byo-{}", kube_scim_tests::keys::random_key().unwrap()).into_bytes();
    let fix = serde_json::json!({"data": {"token": ByteString(stronger.clone())}});
    secrets
        .patch("entra-token", &PatchParams::default(), &Patch::Merge(&fix))
        .await
        .unwrap();
    let status = eventually(
        "TokenReady=True for the strong token",
        Duration::from_secs(30),
        || async {
            let dir = dirs.get("contoso").await.ok()?;
            is_true(&dir, "TokenReady").then_some(dir.status?)
        },
    )
    .await;
    let mut both = expected(&stack.operator_keys, &dirs, "contoso", &stronger).await;
    both.extend(expected(&stack.operator_keys, &dirs, "contoso", &strong).await);
    assert_eq!(hashes(&status.token_verifiers), both);
    assert_no_unkeyed_hash(&status, &[&strong, WEAK, &stronger]);
    eventually(
        "the new strong token to open the directory",
        Duration::from_secs(30),
        || async { (scim_status(&stack, &ns, "contoso", &stronger).await == 200).then_some(()) },
    )
    .await;
    assert_eq!(strong_status().await, 200);
    assert_eq!(opens(WEAK).await, 401);
}

/// Rotating the verifier key as documented (add the new key to both components, then remove the
/// old one), with the operator and the server seeing each change at different times as pods do:
/// the token opens the directory at every moment, checked by a request every 100 ms throughout.
#[tokio::test]
async fn rotating_the_verifier_key_never_locks_the_token_out() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("op-keys").await.unwrap();
    let client = plane.client().await.unwrap();
    let operator_keys =
        VerifierKeys::create(&plane.dir().join(format!("verifier-keys-{ns}-operator"))).unwrap();
    let server_keys = operator_keys
        .copy_to(&plane.dir().join(format!("verifier-keys-{ns}-server")))
        .unwrap();
    let mut options = StackOptions::new(&ns);
    options.operator_keys = Some(operator_keys.clone());
    options.server_keys = Some(server_keys.clone());
    let stack = Stack::start(plane, options).await.unwrap();
    let dirs: Api<ScimDirectory> = Api::namespaced(client.clone(), &ns);
    create_directory(&dirs, "contoso").await;
    let (_, token) =
        kube_scim_tests::stack::ready_directory(&client, &ns, "contoso", Duration::from_secs(30))
            .await
            .unwrap();
    let token = token.into_bytes();
    eventually(
        "the token to open the directory",
        Duration::from_secs(30),
        || async { (scim_status(&stack, &ns, "contoso", &token).await == 200).then_some(()) },
    )
    .await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let url = format!("{}/Users?count=1", stack.base_url(&ns, "contoso"));
        let token = String::from_utf8(token.clone()).unwrap();
        let stop = stop.clone();
        tokio::spawn(async move {
            let http = kube_scim_tests::http_client();
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let status = http
                    .get(&url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                if status == 200 {
                    ok += 1;
                } else {
                    failed.push(status);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (ok, failed)
        })
    };
    let published = |expected: Vec<String>| {
        let dirs = dirs.clone();
        async move {
            eventually(
                &format!("status to publish {expected:?}"),
                Duration::from_secs(30),
                || async {
                    let status = dirs.get("contoso").await.ok()?.status?;
                    (hashes(&status.token_verifiers) == expected).then_some(status)
                },
            )
            .await
        }
    };
    let before = published(expected(&operator_keys, &dirs, "contoso", &token).await).await;
    let new_key = kube_scim_tests::keys::random_key().unwrap();

    // 1. The operator gets the new key first: it publishes the token under both.
    operator_keys.write("k2", &new_key).unwrap();
    let both = published(expected(&operator_keys, &dirs, "contoso", &token).await).await;
    assert_eq!(both.token_verifiers.len(), 2);
    assert!(
        both.token_verifiers[0]
            .hash
            .starts_with("hmac-sha256-dir:k2:")
    );
    assert_ne!(
        both.token_fingerprint, before.token_fingerprint,
        "the fingerprint follows the primary key"
    );
    // 2. The server gets it.
    server_keys.write("k2", &new_key).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // 3. The old key leaves the operator: only the new key's verifier is published.
    operator_keys
        .remove(kube_scim_tests::keys::FIRST_KEY_ID)
        .unwrap();
    let after = published(expected(&operator_keys, &dirs, "contoso", &token).await).await;
    assert_eq!(after.token_verifiers.len(), 1);
    assert!(
        after.token_verifiers[0]
            .hash
            .starts_with("hmac-sha256-dir:k2:")
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    // 4. The old key leaves the server.
    server_keys
        .remove(kube_scim_tests::keys::FIRST_KEY_ID)
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = probe.await.unwrap();
    assert!(
        failed.is_empty(),
        "requests failed during the key rotation ({ok} succeeded): {failed:?}\n{}",
        stack.logs()
    );
    assert!(ok > 50, "{ok} requests");
    let reasons = event_reasons(&client, &ns, "contoso").await;
    assert!(
        !reasons
            .iter()
            .any(|r| r == "TokenRotated" || r == "TokenRecreated" || r == "ReconcileFailed"),
        "a key rotation is not a token change: {reasons:?}"
    );
    assert_no_unkeyed_hash(&after, &[&token]);
}

/// Requests the operator made to the Kubernetes API other than GETs (writes), by
/// `METHOD resource`, from its `kube_scim_operator_api_requests_total` counters.
fn api_writes(op: &Operator) -> std::collections::BTreeMap<String, f64> {
    let (_, body) = op.get("/metrics").expect("/metrics");
    let mut writes = std::collections::BTreeMap::new();
    for line in body
        .lines()
        .filter(|l| l.starts_with("kube_scim_operator_api_requests_total{"))
    {
        let label = |name: &str| {
            line.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
                .to_string()
        };
        let method = label("method");
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if method != "GET" {
            writes.insert(format!("{method} {}", label("resource")), value);
        }
    }
    writes
}

/// Polls `check` every 50 ms until it holds, for at most `timeout`; how long that took.
async fn time_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < timeout,
            "{what} did not happen within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

/// A directory under continuous provisioning (20 user writes/s for 25 s, written with a kube
/// client as the SCIM server would): a token rotation, a route change and a deleted token Secret
/// made mid-load appear in status at once (the debounce that starved them is gone), the counts in status follow at
/// most every --counts-max-delay and at most once per --counts-min-interval while the load runs,
/// and match the objects within --counts-max-delay of the last write. Prints the delays and the
/// operator's API writes per minute under that load.
#[tokio::test]
async fn a_busy_directory_is_reconciled_at_once_and_its_counts_stay_fresh() {
    // Small bounds, so that the 25 s load spans several of them.
    const MIN_INTERVAL: Duration = Duration::from_secs(2);
    const MAX_DELAY: Duration = Duration::from_secs(8);
    const RATE: u32 = 20;
    const LOAD: Duration = Duration::from_secs(25);
    // The goal is 2 s; the bound leaves room for a loaded machine and still fails a starved
    // reconcile (which waits for the end of the load, here 11 s or more).
    const RECONCILE_BOUND: Duration = Duration::from_secs(5);

    let plane = ControlPlane::shared();
    let ns = plane.namespace("op-busy").await.unwrap();
    let client = plane.client().await.unwrap();
    let op = Operator::start(
        plane,
        "op",
        &ns,
        &ns,
        &[
            &format!("--counts-min-interval={}s", MIN_INTERVAL.as_secs()),
            &format!("--counts-max-delay={}s", MAX_DELAY.as_secs()),
        ],
    );
    let dirs: Api<ScimDirectory> = Api::namespaced(client.clone(), &ns);
    let users: Api<ScimUser> = Api::namespaced(client.clone(), &ns);
    let groups: Api<ScimGroup> = Api::namespaced(client.clone(), &ns);
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    create_directory(&dirs, "busy").await;
    let dir = ready(&dirs, "busy", Duration::from_secs(30)).await;
    let first_fingerprint = dir.status.as_ref().unwrap().token_fingerprint.clone();
    assert!(first_fingerprint.is_some());
    groups
        .create(&PostParams::default(), &group(&dir, "g1"))
        .await
        .unwrap();

    // The load: every 10 writes, 8 creates, 1 deactivation, 1 deletion.
    let writes_before = api_writes(&op);
    let reconciles = || {
        op.metric("kube_scim_operator_reconciliations_total")
            .unwrap_or(0.0)
    };
    let reconciles_before = reconciles();
    let start = tokio::time::Instant::now();
    let load = {
        let users = users.clone();
        let dir = dir.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1) / RATE);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut live: std::collections::VecDeque<String> = Default::default();
            let mut next = 0;
            let mut writes = 0u32;
            while start.elapsed() < LOAD {
                ticks.tick().await;
                match writes % 10 {
                    4 if !live.is_empty() => {
                        let deactivate =
                            serde_json::json!({"metadata": {"labels": {labels::ACTIVE: "false"}}});
                        let name = live.back().unwrap().clone();
                        users
                            .patch(&name, &PatchParams::default(), &Patch::Merge(&deactivate))
                            .await
                            .unwrap();
                    }
                    9 if !live.is_empty() => {
                        let name = live.pop_front().unwrap();
                        users.delete(&name, &DeleteParams::default()).await.unwrap();
                    }
                    _ => {
                        let name = format!("u{next}");
                        next += 1;
                        users
                            .create(&PostParams::default(), &user(&dir, &name, true))
                            .await
                            .unwrap();
                        live.push_back(name);
                    }
                }
                writes += 1;
            }
            (writes, start.elapsed())
        })
    };
    // What the status said about the users, and when, throughout.
    let observed = {
        let dirs = dirs.clone();
        tokio::spawn(async move {
            let mut seen: Vec<(Duration, i64)> = Vec::new();
            while start.elapsed() < LOAD + MAX_DELAY + Duration::from_secs(2) {
                if let Some(users) = dirs
                    .get("busy")
                    .await
                    .ok()
                    .and_then(|d| d.status?.users)
                    .filter(|u| seen.last().map(|(_, last)| last) != Some(u))
                {
                    seen.push((start.elapsed(), users));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            seen
        })
    };

    // Mid-load: rotate the token.
    tokio::time::sleep_until(start + Duration::from_secs(8)).await;
    let rotate = serde_json::json!({"spec": {"token": {"rotationRequest": "busy-r1"}}});
    dirs.patch("busy", &PatchParams::default(), &Patch::Merge(&rotate))
        .await
        .unwrap();
    let rotation = time_until(
        "the rotated token in status",
        Duration::from_secs(30),
        || async {
            let status = dirs.get("busy").await.ok().and_then(|d| d.status);
            status.is_some_and(|s| {
                s.token_fingerprint != first_fingerprint && s.token_verifiers.len() == 2
            })
        },
    )
    .await;
    assert!(
        start.elapsed() < LOAD,
        "the rotation was seen during the load (it took {rotation:?}, until the load ended)"
    );

    // Mid-load: move the route to another host.
    tokio::time::sleep_until(start + Duration::from_secs(14)).await;
    let moved = serde_json::json!({"spec": {"ingress": {"host": "scim2.busy.example"}}});
    dirs.patch("busy", &PatchParams::default(), &Patch::Merge(&moved))
        .await
        .unwrap();
    let route = time_until(
        "the new route in status and in the Ingress",
        Duration::from_secs(30),
        || async {
            let endpoint = dirs
                .get("busy")
                .await
                .ok()
                .and_then(|d| d.status?.endpoint)
                .unwrap_or_default();
            let host = ingresses
                .get("busy-scim")
                .await
                .ok()
                .and_then(|i| i.spec?.rules?.first()?.host.clone());
            endpoint.starts_with("http://scim2.busy.example/")
                && host.as_deref() == Some("scim2.busy.example")
        },
    )
    .await;
    assert!(
        start.elapsed() < LOAD,
        "the route was seen during the load (it took {route:?}, until the load ended)"
    );

    // Mid-load: delete the token Secret (a Secret change, not a spec change): a new token
    // replaces both, the old ones stop working at once.
    tokio::time::sleep_until(start + Duration::from_secs(20)).await;
    let rotated = dirs
        .get("busy")
        .await
        .unwrap()
        .status
        .unwrap()
        .token_fingerprint;
    Api::<Secret>::namespaced(client.clone(), &ns)
        .delete("busy-scim-token", &DeleteParams::default())
        .await
        .unwrap();
    let recreated = time_until(
        "the recreated token in status",
        Duration::from_secs(30),
        || async {
            let status = dirs.get("busy").await.ok().and_then(|d| d.status);
            status.is_some_and(|s| {
                s.token_fingerprint.is_some()
                    && s.token_fingerprint != rotated
                    && s.token_verifiers.len() == 1
            })
        },
    )
    .await;
    assert!(
        start.elapsed() < LOAD,
        "the new Secret was seen during the load (it took {recreated:?}, until the load ended)"
    );

    let (writes, load_took) = load.await.unwrap();
    let load_end = tokio::time::Instant::now();
    let writes_during_load = api_writes(&op);
    let reconciles_during_load = reconciles() - reconciles_before;

    // After the last write: the counts match the objects within --counts-max-delay.
    let all_users = users.list(&Default::default()).await.unwrap().items;
    let inactive = all_users
        .iter()
        .filter(|u| u.labels().get(labels::ACTIVE).map(String::as_str) == Some("false"))
        .count() as i64;
    let expected = (
        Some(all_users.len() as i64),
        Some(all_users.len() as i64 - inactive),
        Some(inactive),
        Some(1),
    );
    let settled = time_until(
        "the counts to match the ScimUsers and ScimGroups",
        MAX_DELAY + Duration::from_secs(10),
        || async {
            let status = dirs.get("busy").await.ok().and_then(|d| d.status);
            let counts = status
                .as_ref()
                .map(|s| (s.users, s.active_users, s.inactive_users, s.groups));
            counts == Some(expected)
        },
    )
    .await;
    let newest_write = all_users
        .iter()
        .flat_map(|u| {
            u.metadata
                .managed_fields
                .iter()
                .flatten()
                .filter_map(|m| m.time.as_ref().map(|t| t.0))
                .chain(u.metadata.creation_timestamp.as_ref().map(|t| t.0))
        })
        .max()
        .unwrap();
    let last_provisioning: Timestamp = dirs
        .get("busy")
        .await
        .unwrap()
        .status
        .and_then(|s| s.last_provisioning_time)
        .expect("lastProvisioningTime")
        .parse()
        .unwrap();
    assert!(
        last_provisioning >= newest_write,
        "lastProvisioningTime {last_provisioning} covers the newest user write {newest_write}"
    );
    let seen = observed.await.unwrap();

    // Report.
    let per_minute = |after: &std::collections::BTreeMap<String, f64>,
                      before: &std::collections::BTreeMap<String, f64>,
                      secs: f64| {
        after
            .iter()
            .map(|(k, v)| (k.clone(), (v - before.get(k).unwrap_or(&0.0)) * 60.0 / secs))
            .filter(|(_, v)| *v > 0.0)
            .collect::<Vec<_>>()
    };
    let load_secs = load_took.as_secs_f64();
    let rates = per_minute(&writes_during_load, &writes_before, load_secs);
    let total: f64 = rates.iter().map(|(_, v)| v).sum();
    let status_writes = writes_during_load
        .get("PATCH scimdirectories/status")
        .unwrap_or(&0.0)
        - writes_before
            .get("PATCH scimdirectories/status")
            .unwrap_or(&0.0);
    eprintln!(
        "busy directory: {writes} user writes in {load_took:.1?} ({:.1}/s); rotation in status after {rotation:.2?}, \
         route after {route:.2?}, recreated Secret after {recreated:.2?}; counts matched {settled:.2?} after the last write; \
         users in status changed at {:?}; operator API writes during the load: {total:.1}/min {rates:?} \
         ({status_writes} status writes and {reconciles_during_load} reconciles for {writes} user writes)",
        f64::from(writes) / load_secs,
        seen.iter()
            .map(|(t, u)| format!("{:.1}s:{u}", t.as_secs_f64()))
            .collect::<Vec<_>>(),
    );

    assert!(
        writes as f64 >= f64::from(RATE) * LOAD.as_secs_f64() * 0.6,
        "the load ran ({writes} writes)"
    );
    assert!(
        rotation < RECONCILE_BOUND,
        "rotation took {rotation:?} under load"
    );
    assert!(route < RECONCILE_BOUND, "route took {route:?} under load");
    assert!(
        recreated < RECONCILE_BOUND,
        "the deleted Secret took {recreated:?} to be replaced under load"
    );
    assert!(
        settled <= MAX_DELAY,
        "counts matched {settled:?} after the last write"
    );
    // While the load ran, the counts moved at least every --counts-max-delay (plus the time a
    // write and a poll take) ...
    let during: Vec<Duration> = seen
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t <= load_end - start)
        .collect();
    for pair in during.windows(2) {
        assert!(
            pair[1] - pair[0] <= MAX_DELAY + Duration::from_secs(2),
            "counts stale for {:?} during the load: {seen:?}",
            pair[1] - pair[0]
        );
    }
    assert!(
        during.len() >= 3,
        "counts refreshed during the load: {seen:?}"
    );
    // ... and the status was written at most once per --counts-min-interval for counts, plus the
    // rotation, the route change and the new Secret (and the reconciles they caused), never once
    // per user write.
    let bound = load_secs / MIN_INTERVAL.as_secs_f64() + 8.0;
    assert!(
        status_writes <= bound,
        "{status_writes} status writes during the load (bound {bound})"
    );
    // User changes and counts writes reconcile nothing: only the two spec changes and the
    // Secret deletion did (with the Secret, Ingress and status changes they caused).
    assert!(
        reconciles_during_load <= 15.0,
        "{reconciles_during_load} reconciles during the load"
    );
}

/// A leader that loses its Lease (here another holder takes it; an apiserver that stalls past
/// the renew deadline ends the term the same way) steps down without exiting: the probes keep
/// answering, it stops reconciling, and it leads again once the Lease is free.
#[tokio::test]
async fn a_leader_that_loses_its_lease_steps_down_and_campaigns_again() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("op-stepdown").await.unwrap();
    let client = plane.client().await.unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let dirs: Api<ScimDirectory> = Api::namespaced(client.clone(), &ns);
    let mut a = start_leader(plane, &ns, &leases, "replica-a").await;
    let set_holder = |who: Option<&str>, seconds: i32| {
        let leases = leases.clone();
        let who = who.map(str::to_string);
        async move {
            let mut lease = leases.get("kube-scim-operator").await.unwrap();
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.holder_identity = who;
            spec.lease_duration_seconds = Some(seconds);
            spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                Timestamp::now(),
            ));
            leases
                .replace("kube-scim-operator", &PostParams::default(), &lease)
                .await
                .unwrap();
        }
    };
    set_holder(Some("intruder"), 3600).await;
    eventually(
        "replica-a to step down",
        Duration::from_secs(30),
        || async { (a.metric("kube_scim_operator_leader") == Some(0.0)).then_some(()) },
    )
    .await;
    assert!(a.process.is_running(), "{}", a.process.log_tail(30));
    assert_eq!(a.get("/healthz").map(|(c, _)| c), Some(200));
    // Not leading: a new directory is not reconciled.
    create_directory(&dirs, "later").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let st = dirs.get("later").await.unwrap().status;
    assert!(
        st.is_none_or(|s| s.conditions.is_empty()),
        "a stepped-down leader reconciled"
    );
    // The Lease is free again: replica-a campaigns, leads and reconciles.
    set_holder(None, 1).await;
    wait_for_lease_holder(
        &leases,
        "replica-a",
        "replica-a to lead again",
        Duration::from_secs(30),
    )
    .await;
    ready(&dirs, "later", Duration::from_secs(30)).await;
    assert_eq!(a.metric("kube_scim_operator_leader"), Some(1.0));
    assert!(a.process.is_running());
    a.stop();
}
