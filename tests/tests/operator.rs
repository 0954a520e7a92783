//! The operator on the real control plane: the `kube-scim-operator` binary runs as a process
//! (KUBECONFIG pointing at the plane, health/metrics on a free 127.0.0.1 port, its own Lease
//! namespace) and watches only the test's namespace, so tests run in parallel.
//!
//! Needs `cargo build -p kube-scim-operator --bins` first (`make test` builds every binary).

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
use kube_scim_tests::procs::ManagedProcess;
use kube_scim_tests::{ControlPlane, eventually, free_port, workspace_binary};

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
        let mut cmd = Command::new(binary);
        cmd.env("KUBECONFIG", plane.kubeconfig())
            .env_remove("POD_NAMESPACE")
            .env_remove("POD_NAME")
            .env("RUST_LOG", "info,kube_scim_operator=debug")
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

/// Waits until the directory is Ready (for its current generation) and returns it.
async fn ready(api: &Api<ScimDirectory>, name: &str, timeout: Duration) -> ScimDirectory {
    eventually(&format!("ScimDirectory {name} Ready"), timeout, || async {
        let dir = api.get_opt(name).await.ok()??;
        let current = condition(&dir, "Ready")?.observed_generation == dir.metadata.generation;
        (is_true(&dir, "Ready") && current).then_some(dir)
    })
    .await
}

/// `sha256:<hex>` of `token`, computed by coreutils' sha256sum (independently of the operator).
fn sha256_verifier(token: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(token).unwrap();
    let out = child.wait_with_output().unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", hex.split_whitespace().next().unwrap())
}

fn secret_token(secret: &Secret, key: &str) -> Vec<u8> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .unwrap_or_default()
}

async fn event_reasons(client: &Client, ns: &str, regarding: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&Default::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding))
                .filter_map(|e| e.reason)
                .collect()
        })
        .unwrap_or_default()
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
    assert!(
        is_true(&dir, "TokenReady") && is_true(&dir, "RouteReady"),
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
    assert_eq!(
        (
            status.users,
            status.active_users,
            status.inactive_users,
            status.groups
        ),
        (Some(0), Some(0), Some(0), Some(0))
    );

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
    let hash = sha256_verifier(&token);
    assert_eq!(status.token_verifiers.len(), 1);
    assert_eq!(status.token_verifiers[0].hash, hash);
    assert_eq!(status.token_verifiers[0].expires_at, None);
    assert_eq!(status.token_fingerprint.as_deref(), Some(&hash[7..15]));
    let status_json = serde_json::to_string(&status).unwrap();
    assert!(
        !status_json.contains(std::str::from_utf8(&token).unwrap()),
        "the token never appears in status"
    );

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
    let new_hash = sha256_verifier(&new_token);
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
    let _op = Operator::start(plane, "op", &ns, &ns, &[]);
    let dirs: Api<ScimDirectory> = Api::namespaced(client.clone(), &ns);
    dirs.create(
        &PostParams::default(),
        &directory("contoso", with_host("scim.contoso.example")),
    )
    .await
    .unwrap();
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
}

#[tokio::test]
async fn rotation_keeps_both_tokens_valid_through_the_grace_period_only() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("op-rotate").await.unwrap();
    let client = plane.client().await.unwrap();
    let _op = Operator::start(plane, "op", &ns, &ns, &[]);
    let dirs: Api<ScimDirectory> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut spec = with_host("scim.contoso.example");
    spec.token.grace_period = Some("5s".into());
    dirs.create(&PostParams::default(), &directory("contoso", spec))
        .await
        .unwrap();
    let dir = ready(&dirs, "contoso", Duration::from_secs(30)).await;
    let old_token = secret_token(&secrets.get("contoso-scim-token").await.unwrap(), "token");
    let old_hash = sha256_verifier(&old_token);
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
    let new_hash = sha256_verifier(&new_token);
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
    assert_eq!(status.token_fingerprint.as_deref(), Some(&new_hash[7..15]));
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
    let _op = Operator::start(plane, "op", &ns, &ns, &[]);
    let dirs: Api<ScimDirectory> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let byo = Secret {
        metadata: ObjectMeta {
            name: Some("entra-token".into()),
            ..Default::default()
        },
        data: Some(
            [(
                "apiKey".to_string(),
                ByteString(b"my-own-token-from-vault".to_vec()),
            )]
            .into(),
        ),
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
    assert_eq!(status.token_verifiers.len(), 1);
    assert_eq!(
        status.token_verifiers[0].hash,
        sha256_verifier(b"my-own-token-from-vault")
    );
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
    let change = serde_json::json!({"data": {"apiKey": "bmV3LXRva2Vu"}}); // "new-token"
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
    assert_eq!(verifiers[0].hash, sha256_verifier(b"new-token"));
    assert_eq!(
        verifiers[1].hash,
        sha256_verifier(b"my-own-token-from-vault")
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
    let fix = serde_json::json!({"data": {"token": "c2VjcmV0LXRva2Vu"}});
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
    let (dir, c) = eventually(
        "RouteReady=False NoHost",
        Duration::from_secs(30),
        || async {
            let dir = dirs.get("nohost").await.ok()?;
            let c = condition(&dir, "RouteReady")?;
            (c.status == "False" && c.reason == "NoHost").then_some((dir, c))
        },
    )
    .await;
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
        "IngressDisabled"
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
    dirs.create(
        &PostParams::default(),
        &directory("gone", with_host("scim.gone.example")),
    )
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
    let holder = || async {
        leases
            .get_opt("kube-scim-operator")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };

    let mut a = Operator::start(plane, "replica-a", &ns, &ns, &[]);
    eventually("replica-a to lead", Duration::from_secs(30), || async {
        (holder().await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
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

    dirs.create(
        &PostParams::default(),
        &directory("one", with_host("scim.one.example")),
    )
    .await
    .unwrap();
    ready(&dirs, "one", Duration::from_secs(30)).await;
    assert_eq!(holder().await.as_deref(), Some("replica-a"));
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
    eventually(
        "replica-b to take over after a graceful stop",
        Duration::from_secs(20),
        || async { (holder().await.as_deref() == Some("replica-b")).then_some(()) },
    )
    .await;
    dirs.create(
        &PostParams::default(),
        &directory("two", with_host("scim.two.example")),
    )
    .await
    .unwrap();
    ready(&dirs, "two", Duration::from_secs(30)).await;
    assert_eq!(b.metric("kube_scim_operator_leader"), Some(1.0));

    // A crashed leader (SIGKILL, no release) is replaced once its Lease expires (15 s).
    let _c = Operator::start(plane, "replica-c", &ns, &ns, &[]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.kill();
    let killed = tokio::time::Instant::now();
    eventually(
        "replica-c to take over after the leader was killed",
        Duration::from_secs(40),
        || async { (holder().await.as_deref() == Some("replica-c")).then_some(()) },
    )
    .await;
    eprintln!("fail-over after SIGKILL took {:?}", killed.elapsed());
    dirs.create(
        &PostParams::default(),
        &directory("three", with_host("scim.three.example")),
    )
    .await
    .unwrap();
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
    let out = plane
        .kubectl()
        .args(["apply", "--server-side", "-f"])
        .arg(&rbac)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sa = format!("system:serviceaccount:{ns}:kube-scim-operator");
    for (kind, name, role) in [
        (
            "clusterrolebinding",
            format!("kube-scim-operator-{ns}"),
            "kube-scim-operator",
        ),
        (
            "rolebinding",
            "kube-scim-operator-leader-election".to_string(),
            "kube-scim-operator-leader-election",
        ),
    ] {
        let out = plane
            .kubectl()
            .args([
                "create",
                kind,
                &name,
                &format!("--clusterrole={role}"),
                &format!("--serviceaccount={ns}:kube-scim-operator"),
                "-n",
                &ns,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
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
    let mut cmd = Command::new(workspace_binary("kube-scim-operator").unwrap());
    cmd.env("KUBECONFIG", &kubeconfig)
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
    let holder = || async {
        leases
            .get_opt("kube-scim-operator")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    let mut a = Operator::start(plane, "replica-a", &ns, &ns, &[]);
    eventually("replica-a to lead", Duration::from_secs(30), || async {
        (holder().await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
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
    dirs.create(
        &PostParams::default(),
        &directory("later", with_host("scim.later.example")),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let st = dirs.get("later").await.unwrap().status;
    assert!(
        st.is_none_or(|s| s.conditions.is_empty()),
        "a stepped-down leader reconciled"
    );
    // The Lease is free again: replica-a campaigns, leads and reconciles.
    set_holder(None, 1).await;
    eventually(
        "replica-a to lead again",
        Duration::from_secs(30),
        || async { (holder().await.as_deref() == Some("replica-a")).then_some(()) },
    )
    .await;
    ready(&dirs, "later", Duration::from_secs(30)).await;
    assert_eq!(a.metric("kube_scim_operator_leader"), Some(1.0));
    assert!(a.process.is_running());
    a.stop();
}
