//! The Helm chart (`charts/kube-scim`) against a real control plane with the pinned helm: it
//! lints, renders into objects the apiserver accepts (defaults and every option), installs, and
//! grants exactly what the operator and the SCIM server need: both run here as local processes
//! impersonating the chart's ServiceAccounts, so a permission the chart forgot fails the test.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use kube_scim_crds::{ScimDirectory, ScimDirectorySpec, ScimGroupBinding, ScimUser};
use kube_scim_tests::keys::VerifierKeys;
use kube_scim_tests::stack::{Stack, StackOptions, ready_directory, service_account_kubeconfig};
use kube_scim_tests::{ControlPlane, eventually, must_succeed, repo_root};
use serde_json::{Value, json};

const RELEASE: &str = "kube-scim";

/// Tests that create or dry-run the chart's cluster-scoped objects (CRDs, ClusterRoles, the
/// admission policy) on the shared plane take turns: the same names would otherwise collide.
static CLUSTER_SCOPED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn chart() -> PathBuf {
    repo_root().join("charts/kube-scim")
}

fn kubectl_apply_stdin(plane: &ControlPlane, args: &[&str], manifest: &[u8]) -> Output {
    use std::io::Write;
    let mut child = plane
        .kubectl()
        .arg("apply")
        .args(args)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(manifest).unwrap();
    child.wait_with_output().unwrap()
}

fn all_options_values(plane: &ControlPlane, watched: [&str; 2]) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures/chart-all-options.yaml"))
        .unwrap()
        .replace("placeholder-watched-a", watched[0])
        .replace("placeholder-watched-b", watched[1]);
    let path = plane.dir().join(format!("values-{}.yaml", watched[0]));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn chart_lints_with_defaults_and_with_every_option() {
    let plane = ControlPlane::shared_without_crds();
    must_succeed(
        plane
            .helm()
            .unwrap()
            .args(["lint", "--strict"])
            .arg(chart()),
    );
    let values = all_options_values(plane, ["lint-a", "lint-b"]);
    must_succeed(
        plane
            .helm()
            .unwrap()
            .args(["lint", "--strict"])
            .arg(chart())
            .arg("-f")
            .arg(values),
    );
}

#[test]
fn values_schema_rejects_a_mistyped_value() {
    let plane = ControlPlane::shared_without_crds();
    let out = plane
        .helm()
        .unwrap()
        .args(["template", RELEASE])
        .arg(chart())
        .args(["--set", "server.replicas=two", "--set", "operator.bogus=1"])
        .args(["--set", "operator.countsMaxDelay=soon"])
        .args(["--set", "server.membershipSweepInterval=hourly"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a string replica count must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/server/replicas"), "{stderr}");
    assert!(
        stderr.contains("/operator/countsMaxDelay"),
        "durations are Go durations: {stderr}"
    );
    assert!(
        stderr.contains("/server/membershipSweepInterval"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bogus"),
        "unknown keys are errors too: {stderr}"
    );
}

/// The admission policies need admissionregistration v1 and CEL authorizer checks (1.30);
/// helm refuses older clusters up front instead of failing halfway through an install.
#[test]
fn the_chart_states_the_kubernetes_versions_it_needs() {
    let plane = ControlPlane::shared_without_crds();
    let render = |version: &str| {
        plane
            .helm()
            .unwrap()
            .args(["template", RELEASE])
            .arg(chart())
            .args(["--kube-version", version])
            .output()
            .unwrap()
    };
    let old = render("1.29.0");
    assert!(!old.status.success(), "1.29 must be refused");
    let stderr = String::from_utf8_lossy(&old.stderr);
    assert!(stderr.contains("kubeVersion"), "{stderr}");
    assert!(render("1.30.0").status.success(), "1.30 is supported");
}

#[tokio::test]
async fn apiserver_accepts_the_rendered_chart_with_defaults_and_every_option() {
    let _cluster_scoped = CLUSTER_SCOPED.lock().await;
    let plane = ControlPlane::shared_without_crds();
    let release_ns = plane.namespace("chart-render").await.unwrap();
    let watched_a = plane.namespace("chart-watched").await.unwrap();
    let watched_b = plane.namespace("chart-watched").await.unwrap();
    must_succeed(
        plane
            .kubectl()
            .args(["apply", "--server-side", "-f"])
            .arg(repo_root().join("tests/fixtures/servicemonitor-crd.yaml")),
    );
    must_succeed(plane.kubectl().args([
        "wait",
        "--for=condition=Established",
        "crd/servicemonitors.monitoring.coreos.com",
    ]));

    let values = all_options_values(plane, [&watched_a, &watched_b]);
    for extra in [None, Some(values)] {
        let mut template = plane.helm().unwrap();
        template
            .args(["template", RELEASE])
            .arg(chart())
            .args(["--namespace", &release_ns])
            // As the plane serves it (its CRD is applied above): helm template asks no cluster.
            .args(["--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"]);
        if let Some(values) = &extra {
            template.arg("-f").arg(values);
        }
        let rendered = must_succeed(&mut template).stdout;
        let out = kubectl_apply_stdin(plane, &["--dry-run=server"], &rendered);
        assert!(
            out.status.success(),
            "apiserver refused the chart rendered with {extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let applied = String::from_utf8_lossy(&out.stdout);
        for kind in [
            "customresourcedefinition.apiextensions.k8s.io/scimusers.kubescim.io",
            "deployment.apps/kube-scim-operator",
            "deployment.apps/kube-scim-server",
            "validatingadmissionpolicy.admissionregistration.k8s.io/kube-scim-writers",
        ] {
            assert!(applied.contains(kind), "{kind} missing from:\n{applied}");
        }
        // Both Deployments mount the verifier keys: the chart's own Secret, or the user's.
        let rendered = String::from_utf8_lossy(&rendered);
        let secret_name = if extra.is_some() {
            "identity-verifier-keys"
        } else {
            "kube-scim-verifier-keys"
        };
        assert_eq!(
            rendered
                .matches(&format!("secretName: {secret_name}"))
                .count(),
            2,
            "{rendered}"
        );
        assert_eq!(
            rendered.matches("name: KUBE_SCIM_VERIFIER_KEY_DIR").count(),
            2
        );
        assert_eq!(
            applied.contains("secret/kube-scim-verifier-keys"),
            extra.is_none(),
            "the chart creates the Secret only without existingSecret:\n{applied}"
        );
        if extra.is_some() {
            // The server's flags for groups of many members follow their values.
            for (name, value) in [
                ("KUBE_SCIM_INLINE_MEMBER_WRITES", "\"1000\""),
                ("KUBE_SCIM_MEMBER_CLEANUP_BATCH", "\"250\""),
                ("KUBE_SCIM_MEMBER_WRITE_CONCURRENCY", "\"32\""),
                ("KUBE_SCIM_MEMBERSHIP_SWEEP_INTERVAL", "\"10m\""),
            ] {
                assert_eq!(
                    env_value(&rendered, name),
                    format!("value: {value}"),
                    "{name}"
                );
            }
            for kind in [
                "servicemonitor.monitoring.coreos.com/kube-scim-server",
                "networkpolicy.networking.k8s.io/kube-scim-server",
                "configmap/kube-scim-extra-string",
                "role.rbac.authorization.k8s.io/kube-scim-server",
            ] {
                assert!(applied.contains(kind), "{kind} missing from:\n{applied}");
            }
        }
    }
}

/// Install, a full provisioning flow as the chart's identities, the negative RBAC and
/// admission checks, upgrade, and uninstall: one test, because a release owns cluster-scoped
/// objects (CRDs, ClusterRoles, the admission policy) that a second release would conflict with.
#[tokio::test]
async fn install_grants_exactly_what_the_operator_and_server_need_then_upgrade_and_uninstall() {
    let _cluster_scoped = CLUSTER_SCOPED.lock().await;
    let plane = ControlPlane::shared_without_crds();
    let release_ns = plane.namespace("kube-scim").await.unwrap();
    let tenant_ns = plane.namespace("tenant").await.unwrap();
    let client = plane.client().await.unwrap();

    must_succeed(
        plane
            .helm()
            .unwrap()
            .args(["install", RELEASE])
            .arg(chart())
            .args(["--namespace", &release_ns, "--wait=false"])
            .args(["--set", "ingressDefaults.host=scim.example.test"]),
    );
    must_succeed(plane.kubectl().args([
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/scimdirectories.kubescim.io",
        "crd/scimusers.kubescim.io",
        "crd/scimgroups.kubescim.io",
        "crd/scimgroupbindings.kubescim.io",
    ]));

    // The verifier keys the chart created, as its Secret volume gives them to both pods: one
    // random key named by the install date.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &release_ns);
    let key_secret = secrets.get("kube-scim-verifier-keys").await.unwrap();
    let key_data = key_secret.data.clone().unwrap_or_default();
    assert_eq!(key_data.len(), 1, "{:?}", key_data.keys());
    let keys = VerifierKeys::create(&plane.dir().join(format!("chart-keys-{release_ns}"))).unwrap();
    keys.remove(kube_scim_tests::keys::FIRST_KEY_ID).unwrap();
    for (id, key) in &key_data {
        assert!(
            id.len() == 10 && id.starts_with("20"),
            "a key id like 2026-11-22: {id}"
        );
        assert!(key.0.len() >= 32, "{} bytes", key.0.len());
        keys.write(id, std::str::from_utf8(&key.0).unwrap())
            .unwrap();
    }

    // The chart's identities, as their pods would act.
    let mut options = StackOptions::new(&release_ns);
    options.operator_keys = Some(keys.clone());
    // Cluster-wide, as the chart's default RBAC grants: directories live in another namespace.
    options.watch_namespaces = String::new();
    options.operator_kubeconfig =
        Some(service_account_kubeconfig(plane, &release_ns, "kube-scim-operator").unwrap());
    options.server_kubeconfig =
        Some(service_account_kubeconfig(plane, &release_ns, "kube-scim-server").unwrap());
    options.operator_args = vec![
        "--lease-name=kube-scim-operator".into(),
        "--server-service-name=kube-scim-server".into(),
        "--default-ingress-host=scim.example.test".into(),
        // What the chart's default values set through the environment.
        "--group-binding-allowed-cluster-roles=view,edit".into(),
    ];
    let mut stack = Stack::start(plane, options).await.unwrap();

    let directories: Api<ScimDirectory> = Api::namespaced(client.clone(), &tenant_ns);
    directories
        .create(
            &PostParams::default(),
            &ScimDirectory::new("contoso", ScimDirectorySpec::default()),
        )
        .await
        .unwrap();
    let (endpoint, token) =
        ready_directory(&client, &tenant_ns, "contoso", Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", stack.logs()));
    assert!(
        endpoint.starts_with(&format!(
            "http://scim.example.test/scim/v2/{tenant_ns}/contoso"
        )),
        "{endpoint}"
    );
    let dir = directories.get("contoso").await.unwrap();
    let status = dir.status.clone().unwrap();
    assert_eq!(
        status
            .token_verifiers
            .iter()
            .map(|v| v.hash.clone())
            .collect::<Vec<_>>(),
        keys.verifiers(kube_scim_tests::keys::Dir::of(&dir), token.as_bytes()),
        "verifiers keyed with the chart's key"
    );

    // A provisioning flow through the server running as the chart's server identity.
    let base = stack.base_url(&tenant_ns, "contoso");
    let http = reqwest::Client::new();
    let scim = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut req = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(&token)
            .header("Content-Type", "application/scim+json");
        if let Some(body) = body {
            req = req.body(body.to_string());
        }
        req.send()
    };
    eventually("SCIM server ready", Duration::from_secs(60), || async {
        let response = scim(
            reqwest::Method::GET,
            "/Users?filter=userName%20eq%20%22probe%22",
            None,
        )
        .await
        .ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    let created = scim(
        reqwest::Method::POST,
        "/Users",
        Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ada@contoso.example",
            "externalId": "0f5c6c2e-8a43-4c0e-bb7a-4f7e0b0b8a11",
            "active": true,
            "emails": [{"type": "work", "value": "ada@contoso.example", "primary": true}]
        })),
    )
    .await
    .unwrap();
    assert_eq!(created.status(), 201, "{:?}", created.text().await);
    let user: Value = created.json().await.unwrap();
    let user_id = user["id"].as_str().unwrap().to_string();
    let patched = scim(
        reqwest::Method::PATCH,
        &format!("/Users/{user_id}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}]
        })),
    )
    .await
    .unwrap();
    assert!(patched.status().is_success(), "{:?}", patched.text().await);
    let group = scim(
        reqwest::Method::POST,
        "/Groups",
        Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Engineering",
            "members": []
        })),
    )
    .await
    .unwrap();
    assert_eq!(group.status(), 201, "{:?}", group.text().await);
    let group: Value = group.json().await.unwrap();
    let group_id = group["id"].as_str().unwrap().to_string();
    let added = scim(
        reqwest::Method::PATCH,
        &format!("/Groups/{group_id}"),
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Add", "path": "members", "value": [{"value": user_id}]}]
        })),
    )
    .await
    .unwrap();
    assert!(added.status().is_success(), "{:?}", added.text().await);
    let users: Api<ScimUser> = Api::namespaced(client.clone(), &tenant_ns);
    let stored = users.get(&user_id).await.unwrap();
    let labels = stored.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("kubescim.io/active").map(String::as_str),
        Some("false")
    );
    assert!(
        labels.contains_key(&kube_scim_crds::labels::member_of(&group_id)),
        "{labels:?}"
    );

    // A ScimGroupBinding of the group to `view` (allow-listed by default): the operator, as the
    // chart's identity, passes the chart's admission policy with its finalizer and creates the
    // RoleBinding (which needs the chart's `bind` on `view`); `admin` is refused by the
    // allow-list.
    let group_bindings: Api<ScimGroupBinding> = Api::namespaced(client.clone(), &tenant_ns);
    for (name, role) in [("viewers", "view"), ("admins", "admin")] {
        let spec: kube_scim_crds::ScimGroupBindingSpec = serde_json::from_value(json!({
            "directoryRef": {"name": "contoso"},
            "group": {"id": group_id},
            "roleRef": {"kind": "ClusterRole", "name": role},
        }))
        .unwrap();
        group_bindings
            .create(&PostParams::default(), &ScimGroupBinding::new(name, spec))
            .await
            .unwrap();
    }
    for (name, reason) in [("viewers", "Synced"), ("admins", "RoleNotAllowed")] {
        eventually(
            &format!("{name} reports {reason}"),
            Duration::from_secs(30),
            || async {
                let binding = group_bindings.get(name).await.ok()?;
                let ready = binding
                    .status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Ready")?;
                (ready.reason == reason).then_some(())
            },
        )
        .await;
    }
    let role_bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
        Api::namespaced(client.clone(), &tenant_ns);
    let viewers = role_bindings
        .get(&format!("kube-scim:{tenant_ns}:viewers"))
        .await
        .unwrap();
    assert_eq!(viewers.role_ref.name, "view");
    assert!(
        role_bindings
            .get_opt(&format!("kube-scim:{tenant_ns}:admins"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !stack.operator.log_tail(400).contains("forbidden"),
        "{}",
        stack.logs()
    );
    group_bindings
        .delete("viewers", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the viewers RoleBinding is removed",
        Duration::from_secs(30),
        || async {
            role_bindings
                .get_opt(&format!("kube-scim:{tenant_ns}:viewers"))
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;

    // Negative checks: the server's identity has nothing on Secrets; another ServiceAccount
    // with RBAC to create ScimUsers is still refused by the admission policy.
    let server_sa = format!("system:serviceaccount:{release_ns}:kube-scim-server");
    let can = plane
        .kubectl()
        .args([
            "auth", "can-i", "get", "secrets", "-n", &tenant_ns, "--as", &server_sa,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&can.stdout).trim(), "no");
    must_succeed(plane.kubectl().args([
        "create",
        "role",
        "scimuser-writer",
        "-n",
        &tenant_ns,
        "--verb=create,update,delete,get,list",
        "--resource=scimusers.kubescim.io",
    ]));
    must_succeed(plane.kubectl().args([
        "create",
        "rolebinding",
        "intruder-writes",
        "-n",
        &tenant_ns,
        "--role=scimuser-writer",
        &format!("--serviceaccount={tenant_ns}:intruder"),
    ]));
    let intruder: Api<ScimUser> = Api::namespaced(
        plane
            .service_account_client(&tenant_ns, "intruder")
            .await
            .unwrap(),
        &tenant_ns,
    );
    let mut forged = stored.clone();
    forged.metadata = kube::api::ObjectMeta {
        name: Some("forged-user".into()),
        ..Default::default()
    };
    let err = intruder
        .create(&PostParams::default(), &forged)
        .await
        .expect_err("the admission policy refuses writes by anyone but the SCIM server");
    assert!(
        err.to_string()
            .contains("written only by the kube-scim SCIM server"),
        "{err}"
    );

    let deleted = scim(
        reqwest::Method::DELETE,
        &format!("/Groups/{group_id}"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(stack.server.is_running(), "server died:\n{}", stack.logs());
    assert!(
        stack.operator.is_running(),
        "operator died:\n{}",
        stack.logs()
    );
    drop(stack);

    // Upgrade to changed values.
    must_succeed(
        plane
            .helm()
            .unwrap()
            .args(["upgrade", RELEASE])
            .arg(chart())
            .args([
                "--namespace",
                &release_ns,
                "--reuse-values",
                "--set",
                "server.replicas=3",
            ]),
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &release_ns);
    let server_deployment = deployments.get("kube-scim-server").await.unwrap();
    assert_eq!(server_deployment.spec.unwrap().replicas, Some(3));
    // The upgrade kept the verifier key (a new one would change every published verifier), and
    // keeps a key added by hand for a rotation too.
    assert_eq!(
        secrets
            .get("kube-scim-verifier-keys")
            .await
            .unwrap()
            .data
            .unwrap_or_default(),
        key_data
    );
    let rotation = json!({"data": {"2099-01-01": k8s_openapi::ByteString(
        kube_scim_tests::keys::random_key().unwrap().into_bytes()
    )}});
    secrets
        .patch(
            "kube-scim-verifier-keys",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&rotation),
        )
        .await
        .unwrap();
    must_succeed(
        plane
            .helm()
            .unwrap()
            .args(["upgrade", RELEASE])
            .arg(chart())
            .args(["--namespace", &release_ns, "--reuse-values"]),
    );
    let after = secrets
        .get("kube-scim-verifier-keys")
        .await
        .unwrap()
        .data
        .unwrap_or_default();
    assert_eq!(after.len(), 2, "{:?}", after.keys());
    assert!(after.contains_key("2099-01-01"));

    // Uninstall keeps the CRDs (crds.keep) and so every provisioned user.
    must_succeed(
        plane
            .helm()
            .unwrap()
            .args(["uninstall", RELEASE])
            .args(["--namespace", &release_ns]),
    );
    assert!(
        deployments
            .get_opt("kube-scim-server")
            .await
            .unwrap()
            .is_none()
    );
    must_succeed(
        plane
            .kubectl()
            .args(["get", "crd", "scimusers.kubescim.io"]),
    );
    assert!(
        users.get_opt(&user_id).await.unwrap().is_some(),
        "users survive uninstall"
    );
}

/// `docs/helm-values.md` is generated from `values.schema.json` (descriptions, types) and
/// `values.yaml` (defaults); `UPDATE_DOCS=1 cargo test -p kube-scim-tests --test helm_chart
/// values_reference` rewrites it.
#[test]
fn values_reference_in_docs_matches_the_schema_and_defaults() {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(chart().join("values.schema.json")).unwrap())
            .unwrap();
    let defaults: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap())
            .unwrap();
    let mut rows = Vec::new();
    values_rows("", &schema, Some(&defaults), &mut rows);
    let mut doc = String::from(
        "# Helm values reference\n\n\
         Generated from `charts/kube-scim/values.schema.json` and `values.yaml` by the test \
         `values_reference_in_docs_matches_the_schema_and_defaults` (run it with `UPDATE_DOCS=1` \
         to rewrite this file). Unknown keys are rejected by the schema.\n\n\
         | value | type | default | description |\n|---|---|---|---|\n",
    );
    for (key, kind, default, description) in rows {
        doc.push_str(&format!(
            "| `{key}` | {kind} | {default} | {description} |\n"
        ));
    }
    let path = repo_root().join("docs/helm-values.md");
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &doc).unwrap();
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == doc,
        "{} is out of date: run `UPDATE_DOCS=1 cargo test -p kube-scim-tests --test helm_chart values_reference`",
        path.display()
    );
}

fn values_rows(
    prefix: &str,
    schema: &Value,
    default: Option<&Value>,
    rows: &mut Vec<(String, String, String, String)>,
) {
    let Some(properties) = schema["properties"].as_object() else {
        return;
    };
    for (name, property) in properties {
        if name == "global" {
            continue;
        }
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let value = default.and_then(|d| d.get(name));
        let nested = property["additionalProperties"] == Value::Bool(false);
        if nested {
            values_rows(&key, property, value, rows);
            continue;
        }
        let kind = match &property["type"] {
            Value::String(t) => t.clone(),
            Value::Array(ts) => ts
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" or "),
            _ => "any".into(),
        };
        let kind = match property["enum"].as_array() {
            Some(options) => format!(
                "{kind}: {}",
                options
                    .iter()
                    .map(|o| format!("`{}`", o.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => kind,
        };
        let default = match value {
            None | Some(Value::Null) => String::new(),
            Some(v) => format!(
                "`{}`",
                serde_json::to_string(v).unwrap().replace('|', "\\|")
            ),
        };
        let description = property["description"]
            .as_str()
            .unwrap_or_default()
            .replace('|', "\\|");
        rows.push((key, kind, default, description));
    }
}

/// Helm reads numbers from values as floats, and `quote` of 1048576.0 renders `1.048576e+06`,
/// which the server refuses at start: every number passed as an environment variable is
/// rendered as an integer.
#[test]
fn numeric_environment_values_render_as_integers() {
    let plane = ControlPlane::shared_without_crds();
    let out = must_succeed(
        plane
            .helm()
            .unwrap()
            .args(["template", RELEASE])
            .arg(chart())
            .args(["--set", "server.maxBodyBytes=10485760"]),
    );
    let rendered = String::from_utf8_lossy(&out.stdout);
    for (name, value) in [
        ("KUBE_SCIM_MAX_BODY_BYTES", "\"10485760\""),
        ("KUBE_SCIM_REQUEST_TIMEOUT", "\"30s\""),
        ("KUBE_SCIM_MAX_CONCURRENT_REQUESTS", "\"64\""),
        ("KUBE_SCIM_MAX_CONCURRENT_REQUESTS_PER_DIRECTORY", "\"16\""),
        ("KUBE_SCIM_INLINE_MEMBER_WRITES", "\"500\""),
        ("KUBE_SCIM_MEMBER_CLEANUP_BATCH", "\"500\""),
        ("KUBE_SCIM_MEMBER_WRITE_CONCURRENCY", "\"16\""),
        ("KUBE_SCIM_MEMBERSHIP_SWEEP_INTERVAL", "\"5m\""),
        ("KUBE_SCIM_CONCURRENCY", "\"4\""),
        ("KUBE_SCIM_COUNTS_MIN_INTERVAL", "\"5s\""),
        ("KUBE_SCIM_COUNTS_MAX_DELAY", "\"30s\""),
    ] {
        assert_eq!(
            env_value(&rendered, name),
            format!("value: {value}"),
            "{name} in the rendered chart"
        );
    }
}

/// The `value:` line after the first environment variable `name` in a rendered chart.
fn env_value(rendered: &str, name: &str) -> String {
    rendered
        .lines()
        .skip_while(|l| !l.contains(&format!("name: {name}")))
        .nth(1)
        .unwrap_or_else(|| panic!("{name} is not rendered"))
        .trim()
        .to_string()
}
