//! Issue 27, defect 3, on the real control plane: a token verifier planted in a directory's token
//! Secret by someone with only the built-in `edit` role in its namespace (with the chart's
//! aggregated roles, so they may also request a rotation) never opens the directory. (That a
//! verifier copied from one directory's status into another's matches nothing there is unit
//! tested: `runtime/src/verifier.rs`, `scim-server/src/auth/bearer.rs`.)
//!
//! Needs `cargo build --workspace --bins` first (`make test` builds every binary).

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_scim_crds::{ScimDirectory, ScimDirectorySpec};
use kube_scim_tests::stack::{Stack, StackOptions};
use kube_scim_tests::{ControlPlane, eventually, must_succeed};
use serde_json::json;

/// The annotation where earlier releases kept the previous tokens' verifiers.
const PREVIOUS: &str = "kubescim.io/previous-token-verifiers";

/// Prints the components' logs when the test fails while it is alive.
struct LogsOnPanic<'a>(&'a Stack);

impl Drop for LogsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.0.logs());
        }
    }
}

/// The chart's aggregated ClusterRoles (so `edit` may change ScimDirectories), rendered for the
/// test: the chart's conditionals and label helper dropped, its name helper replaced.
fn aggregated_roles() -> String {
    let path = kube_scim_tests::repo_root()
        .join("charts/kube-scim/templates/aggregated-clusterroles.yaml");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("{{"))
        .map(|l| {
            l.replace(
                "{{ include \"kube-scim.fullname\" . }}",
                "kube-scim-verifier-test",
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn status_code(stack: &Stack, ns: &str, dir: &str, token: &str) -> u16 {
    kube_scim_tests::http_client()
        .get(format!("{}/Users?count=1", stack.base_url(ns, dir)))
        .bearer_auth(token)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn create_directory(kube: &Client, stack: &Stack, ns: &str, name: &str) -> String {
    Api::<ScimDirectory>::namespaced(kube.clone(), ns)
        .create(
            &PostParams::default(),
            &ScimDirectory::new(name, ScimDirectorySpec::default()),
        )
        .await
        .unwrap();
    let (_, token) = stack.ready_directory(kube, ns, name).await;
    token
}

fn secret_token(secret: &Secret) -> String {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get("token"))
        .map(|b| b.0.clone())
        .unwrap_or_default();
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn a_verifier_planted_by_an_editor_never_opens_the_directory() {
    let plane = ControlPlane::shared();
    let kube = plane.client().await.unwrap();
    let ns = plane.namespace("vb").await.unwrap();
    let theirs = plane.namespace("vb-theirs").await.unwrap();
    let mut options = StackOptions::new(&ns);
    options.watch_namespaces = format!("{ns},{theirs}");
    let stack = Stack::start(plane, options).await.unwrap();
    let _logs = LogsOnPanic(&stack);

    // Directory A, the target; directory B, whose token the attacker holds (their own
    // directory in another namespace).
    let token_a = create_directory(&kube, &stack, &ns, "contoso").await;
    let token_b = create_directory(&kube, &stack, &theirs, "fabrikam").await;
    eventually("B's token to open B", Duration::from_secs(30), || async {
        (status_code(&stack, &theirs, "fabrikam", &token_b).await == 200).then_some(())
    })
    .await;
    let b_verifiers = Api::<ScimDirectory>::namespaced(kube.clone(), &theirs)
        .get("fabrikam")
        .await
        .unwrap()
        .status
        .unwrap()
        .token_verifiers;
    assert!(!b_verifiers.is_empty());

    // mallory holds only the built-in `edit` role in A's namespace (with the chart's roles).
    let roles = plane.dir().join("verifier-binding-aggregated-roles.yaml");
    std::fs::write(&roles, aggregated_roles()).unwrap();
    must_succeed(
        plane
            .kubectl()
            .args(["apply", "--server-side", "-f"])
            .arg(&roles),
    );
    let mallory = format!("mallory-{ns}");
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "mallory-edit", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": mallory}]
    });
    Api::<RoleBinding>::namespaced(kube.clone(), &ns)
        .patch(
            "mallory-edit",
            &PatchParams::apply("verifier-binding-test"),
            &Patch::Apply(&binding),
        )
        .await
        .unwrap();
    let as_mallory = plane
        .client_as(&mallory, &["system:authenticated"])
        .await
        .unwrap();

    // She plants B's verifiers (read from B's status) in A's token Secret, valid "forever", as
    // previous-token verifiers; then requests a rotation of A (the aggregated role lets her).
    let planted: Vec<serde_json::Value> = b_verifiers
        .iter()
        .map(|v| json!({"hash": v.hash, "expiresAt": "2099-01-01T00:00:00Z"}))
        .collect();
    let plant =
        json!({"metadata": {"annotations": {PREVIOUS: serde_json::to_string(&planted).unwrap()}}});
    let secrets: Api<Secret> = Api::namespaced(as_mallory.clone(), &ns);
    eventually(
        "mallory (edit) to be allowed to patch the token Secret",
        Duration::from_secs(30),
        || async {
            secrets
                .patch(
                    "contoso-scim-token",
                    &PatchParams::default(),
                    &Patch::Merge(&plant),
                )
                .await
                .ok()
        },
    )
    .await;
    let rotate = json!({"spec": {"token": {"rotationRequest": "planted"}}});
    let dirs_as_mallory: Api<ScimDirectory> = Api::namespaced(as_mallory, &ns);
    eventually(
        "mallory (edit + the chart's aggregated role) to be allowed to request a rotation",
        Duration::from_secs(30),
        || async {
            dirs_as_mallory
                .patch("contoso", &PatchParams::default(), &Patch::Merge(&rotate))
                .await
                .ok()
        },
    )
    .await;

    // The rotation happens: a new token, and A's old token in its grace period.
    let admin_secrets: Api<Secret> = Api::namespaced(kube.clone(), &ns);
    let dirs: Api<ScimDirectory> = Api::namespaced(kube.clone(), &ns);
    let (new_token, verifiers) = eventually(
        "A's token to be rotated",
        Duration::from_secs(30),
        || async {
            let token = secret_token(&admin_secrets.get("contoso-scim-token").await.ok()?);
            let verifiers = dirs.get("contoso").await.ok()?.status?.token_verifiers;
            (token != token_a && verifiers.iter().any(|v| v.expires_at.is_some()))
                .then_some((token, verifiers))
        },
    )
    .await;
    // Once the server serves the rotated status (the new token opens A, the old one still
    // does, for its grace period), B's token is refused at A: the planted verifiers are not
    // there, and were they copied into A's status they would not match (bound to B).
    eventually(
        "A's new token to open A",
        Duration::from_secs(30),
        || async { (status_code(&stack, &ns, "contoso", &new_token).await == 200).then_some(()) },
    )
    .await;
    assert_eq!(status_code(&stack, &ns, "contoso", &token_a).await, 200);
    assert_eq!(
        status_code(&stack, &ns, "contoso", &token_b).await,
        401,
        "B's token opens A"
    );
    assert_eq!(
        status_code(&stack, &theirs, "fabrikam", &token_b).await,
        200
    );

    // Nor is it in A's status: previous verifiers are never read from the Secret, and every
    // expiry is within the grace period.
    for v in &verifiers {
        assert!(
            !b_verifiers.iter().any(|b| b.hash == v.hash),
            "A publishes B's verifier {v:?}"
        );
        assert!(v.hash.starts_with("hmac-sha256-dir:"), "{v:?}");
        if let Some(expiry) = &v.expires_at {
            let expiry: jiff::Timestamp = expiry.parse().unwrap();
            assert!(
                expiry <= jiff::Timestamp::now() + jiff::SignedDuration::from_hours(25),
                "an expiry beyond the 24h grace period: {v:?}"
            );
        }
    }
}
