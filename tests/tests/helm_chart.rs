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
use kube_scim_tests::stack::{Stack, StackOptions, service_account_kubeconfig};
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

/// `apiPriority.enabled=false` leaves API Priority and Fairness to the cluster's own
/// FlowSchemas (e.g. when a platform team classifies workloads centrally).
#[test]
fn api_priority_objects_can_be_left_out() {
    let plane = ControlPlane::shared_without_crds();
    let render = |sets: &[&str]| {
        let mut helm = plane.helm().unwrap();
        helm.args(["template", RELEASE]).arg(chart());
        for set in sets {
            helm.args(["--set", set]);
        }
        String::from_utf8(must_succeed(&mut helm).stdout).unwrap()
    };
    let on = render(&[]);
    assert_eq!(on.matches("kind: FlowSchema").count(), 1);
    assert_eq!(on.matches("kind: PriorityLevelConfiguration").count(), 1);
    let off = render(&["apiPriority.enabled=false"]);
    assert!(!off.contains("kind: FlowSchema"), "{off}");
    assert!(!off.contains("kind: PriorityLevelConfiguration"), "{off}");
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
        // The FlowSchema classifies both ServiceAccounts of the release, into the release's
        // own priority level or (every option) an existing one.
        assert!(
            applied.contains("flowschema.flowcontrol.apiserver.k8s.io/kube-scim"),
            "{applied}"
        );
        assert_eq!(
            applied.contains("prioritylevelconfiguration.flowcontrol.apiserver.k8s.io/kube-scim"),
            extra.is_none(),
            "{applied}"
        );
        let schema = flow_schema(&rendered);
        let level = if extra.is_some() {
            "workload-high"
        } else {
            RELEASE
        };
        assert_eq!(
            schema["spec"]["priorityLevelConfiguration"]["name"], level,
            "{schema}"
        );
        let subjects: Vec<(String, String)> = schema["spec"]["rules"][0]["subjects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let sa = &s["serviceAccount"];
                (
                    sa["namespace"].as_str().unwrap().to_string(),
                    sa["name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            subjects,
            [
                (release_ns.clone(), "kube-scim-operator".to_string()),
                (release_ns.clone(), "kube-scim-server".to_string())
            ]
        );
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
                ("KUBE_SCIM_MAX_APISERVER_REQUESTS", "\"48\""),
                ("KUBE_SCIM_MEMBERSHIP_SWEEP_INTERVAL", "\"10m\""),
                (
                    "KUBE_SCIM_TRUSTED_PROXIES",
                    "\"10.244.0.0/16,fd00:10:244::/56\"",
                ),
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

    // API Priority and Fairness classifies both identities into the release's priority level,
    // not workload-low: the apiserver names the level of each request in a response header.
    let level_uid = String::from_utf8(
        must_succeed(plane.kubectl().args([
            "get",
            "prioritylevelconfiguration",
            RELEASE,
            "-o",
            "jsonpath={.metadata.uid}",
        ]))
        .stdout,
    )
    .unwrap();
    assert!(!level_uid.is_empty());
    for identity in ["kube-scim-operator", "kube-scim-server"] {
        let kubeconfig = service_account_kubeconfig(plane, &release_ns, identity).unwrap();
        eventually(
            &format!("{identity}'s requests are classified into the release's priority level"),
            Duration::from_secs(30),
            || async {
                // Verbose kubectl prints the response headers; the request's answer (allowed or
                // not) does not matter, classification comes first.
                let out = plane
                    .kubectl()
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args(["get", "--raw", "/apis/kubescim.io/v1alpha1", "-v=8"])
                    .output()
                    .ok()?;
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .any(|l| {
                        l.to_ascii_lowercase()
                            .contains("x-kubernetes-pf-prioritylevel-uid")
                            && l.contains(&level_uid)
                    })
                    .then_some(())
            },
        )
        .await;
    }
    let mut stack = Stack::start(plane, options).await.unwrap();

    let directories: Api<ScimDirectory> = Api::namespaced(client.clone(), &tenant_ns);
    directories
        .create(
            &PostParams::default(),
            &ScimDirectory::new("contoso", ScimDirectorySpec::default()),
        )
        .await
        .unwrap();
    let (endpoint, token) = stack.ready_directory(&client, &tenant_ns, "contoso").await;
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
    let http = kube_scim_tests::http_client();
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
            // The directory accepts its bearer token (a Secret of the namespace).
            "trustDirectorySecretReaders": true,
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
        serde_norway::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap())
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
/// The FlowSchema among the rendered objects.
fn flow_schema(rendered: &[u8]) -> Value {
    let text = String::from_utf8_lossy(rendered);
    for doc in text.split("\n---") {
        let Ok(object) = serde_norway::from_str::<Value>(doc) else {
            continue;
        };
        if object["kind"] == "FlowSchema" {
            return object;
        }
    }
    panic!("no FlowSchema rendered:\n{text}")
}

fn env_value(rendered: &str, name: &str) -> String {
    rendered
        .lines()
        .skip_while(|l| !l.contains(&format!("name: {name}")))
        .nth(1)
        .unwrap_or_else(|| panic!("{name} is not rendered"))
        .trim()
        .to_string()
}

/// The environment of a container of a rendered Deployment, `(name, value)` for each variable
/// with a literal value and `(name, "<from>")` for one taken from the pod (valueFrom).
fn deployment_env(rendered: &str, deployment: &str) -> Vec<(String, String)> {
    let document = serde_norway::Deserializer::from_str(rendered)
        .filter_map(|d| <Value as serde::Deserialize>::deserialize(d).ok())
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == deployment)
        .unwrap_or_else(|| panic!("no Deployment {deployment} rendered"));
    document["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let value = match &e["value"] {
                Value::String(v) => v.clone(),
                Value::Null => "<from>".to_string(),
                other => other.to_string(),
            };
            (name, value)
        })
        .collect()
}

/// `make dev` starts the operator and the server with the environment the chart gives them by
/// default (`kube_scim_tests::chart_defaults`), so what works after `helm install` works there:
/// a value changed in the chart but not for `make dev`, or the reverse, fails here.
#[test]
fn make_dev_starts_both_components_with_the_charts_defaults() {
    use kube_scim_tests::chart_defaults::{OPERATOR_ENV, PER_INSTALL_ENV, SERVER_ENV};
    let plane = ControlPlane::shared_without_crds();
    let out = must_succeed(
        plane
            .helm()
            .unwrap()
            .args(["template", RELEASE])
            .arg(chart()),
    );
    let rendered = String::from_utf8_lossy(&out.stdout);
    for (deployment, dev) in [
        ("kube-scim-operator", OPERATOR_ENV),
        ("kube-scim-server", SERVER_ENV),
    ] {
        let chart: Vec<(String, String)> = deployment_env(&rendered, deployment)
            .into_iter()
            .filter(|(name, _)| !PER_INSTALL_ENV.contains(&name.as_str()))
            .collect();
        let dev: Vec<(String, String)> = dev
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let mut chart_sorted = chart.clone();
        chart_sorted.sort();
        let mut dev_sorted = dev.clone();
        dev_sorted.sort();
        assert_eq!(
            dev_sorted, chart_sorted,
            "{deployment}: make dev's environment (left, tests/src/chart_defaults.rs) differs from the chart's defaults (right)"
        );
    }
    let allowed = OPERATOR_ENV
        .iter()
        .find(|(n, _)| *n == "KUBE_SCIM_GROUP_BINDING_ALLOWED_CLUSTER_ROLES")
        .unwrap()
        .1;
    assert_eq!(
        allowed, "view,edit",
        "make dev accepts ScimGroupBindings of the chart's default roles"
    );
}

/// README's "API in one look" names every `spec.provider` the CRD accepts.
#[test]
fn readme_api_in_one_look_names_every_provider() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let line = readme
        .lines()
        .skip_while(|l| !l.starts_with("## The API in one look"))
        .find(|l| l.trim_start().starts_with("provider:"))
        .expect("README's API in one look sets spec.provider");
    let crd = kube_scim_crds::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == "ScimDirectory")
        .unwrap();
    let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
    let providers =
        schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["provider"]["enum"]
            .as_array()
            .unwrap()
            .clone();
    assert!(providers.len() >= 3, "{providers:?}");
    for provider in providers {
        let provider = provider.as_str().unwrap();
        assert!(
            line.contains(provider),
            "README's `{line}` does not name provider {provider}"
        );
    }
}

/// Every manifest in `examples/` that users apply for a real connection keeps the users and
/// groups when the directory is deleted, and README and NOTES.txt read the token Secret's name
/// from the directory's status instead of guessing it.
#[test]
fn examples_keep_data_and_docs_read_the_token_secret_from_status() {
    let mut directories = 0;
    for entry in std::fs::read_dir(repo_root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_norway::Deserializer::from_str(&text) {
            let object = <Value as serde::Deserialize>::deserialize(document).unwrap();
            if object["kind"] != "ScimDirectory" {
                continue;
            }
            directories += 1;
            let policy = &object["spec"]["deletionPolicy"];
            assert!(
                policy.is_null() || policy == "Retain",
                "{}: deletionPolicy {policy} deletes every user with the directory",
                path.display()
            );
        }
    }
    assert!(directories >= 2, "examples/ holds the sample directories");
    for file in ["README.md", "charts/kube-scim/templates/NOTES.txt"] {
        let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
        assert!(
            !text.contains("-scim-token"),
            "{file} guesses the token Secret's name"
        );
        assert!(
            text.contains("jsonpath='{.status.tokenSecretName}'"),
            "{file} reads the token Secret's name from status"
        );
    }
}

/// Relative links in README.md, the chart's README and docs/ lead to files of this repository:
/// a link that leaves it (e.g. to notes of the machine the docs were written on) is dead for
/// every reader.
#[test]
fn documentation_links_resolve_inside_the_repository() {
    let root = repo_root().canonicalize().unwrap();
    let mut files = vec![
        root.join("README.md"),
        root.join("charts/kube-scim/README.md"),
    ];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (start, _) in text.match_indices("](") {
            let rest = &text[start + 2..];
            let Some(end) = rest.find(')') else { continue };
            let link = &rest[..end];
            if link.contains("://") || link.starts_with('#') || link.starts_with("mailto:") {
                continue;
            }
            let path = link.split('#').next().unwrap();
            let target = file.parent().unwrap().join(path);
            let resolved = target
                .canonicalize()
                .unwrap_or_else(|_| panic!("{}: link {link} leads to nothing", file.display()));
            assert!(
                resolved.starts_with(&root),
                "{}: link {link} leaves the repository",
                file.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} relative links found");
}

/// `helm template` of the chart with `args`; the rendered objects, or helm's error output.
fn render(plane: &ControlPlane, args: &[&str]) -> Result<Vec<Value>, String> {
    let out = plane
        .helm()
        .unwrap()
        .args(["template", RELEASE])
        .arg(chart())
        .args(args)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(serde_norway::Deserializer::from_str(&text)
        .filter_map(|d| <Value as serde::Deserialize>::deserialize(d).ok())
        .filter(|d| d.is_object())
        .collect())
}

fn objects<'a>(rendered: &'a [Value], kind: &str) -> Vec<&'a Value> {
    rendered.iter().filter(|o| o["kind"] == kind).collect()
}

fn named<'a>(rendered: &'a [Value], kind: &str, name: &str) -> &'a Value {
    rendered
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn container_env(deployment: &Value, name: &str) -> Option<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str().map(str::to_string))
}

#[test]
fn name_overrides_and_common_labels_reach_every_object() {
    let plane = ControlPlane::shared_without_crds();
    let rendered = render(
        plane,
        &[
            "--set",
            "fullnameOverride=identity",
            "--set",
            "commonLabels.team=platform",
        ],
    )
    .unwrap();
    let operator = named(&rendered, "Deployment", "identity-operator");
    let server = named(&rendered, "Deployment", "identity-server");
    named(&rendered, "Service", "identity-server");
    assert_eq!(
        container_env(operator, "KUBE_SCIM_SERVER_SERVICE_NAME").as_deref(),
        Some("identity-server"),
        "the operator routes to the renamed Service"
    );
    assert_eq!(
        server["spec"]["template"]["spec"]["serviceAccountName"],
        "identity-server"
    );
    let mut labelled = 0;
    for object in &rendered {
        let labels = &object["metadata"]["labels"];
        if labels["helm.sh/chart"].is_null() {
            continue;
        }
        labelled += 1;
        assert_eq!(labels["team"], "platform", "{object}");
        assert!(
            !object["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("kube-scim-"),
            "{object}"
        );
    }
    assert!(labelled > 15, "{labelled} labelled objects");
    for deployment in [operator, server] {
        assert!(
            deployment["spec"]["selector"]["matchLabels"]["team"].is_null(),
            "selectors are immutable: no common labels there"
        );
        assert_eq!(
            deployment["spec"]["template"]["metadata"]["labels"]["team"],
            "platform"
        );
    }

    // nameOverride: object names and app.kubernetes.io/name, in labels and selectors.
    let rendered = render(plane, &["--set", "nameOverride=scim-sync"]).unwrap();
    let operator = named(&rendered, "Deployment", "kube-scim-scim-sync-operator");
    assert_eq!(
        operator["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "scim-sync"
    );
}

#[test]
fn service_accounts_can_be_brought_and_renamed_but_never_shared() {
    let plane = ControlPlane::shared_without_crds();
    let rendered = render(
        plane,
        &[
            "--set",
            "serviceAccount.create=false",
            "--set",
            "serviceAccount.operatorName=wi-operator",
            "--set",
            "serviceAccount.serverName=wi-server",
        ],
    )
    .unwrap();
    assert!(objects(&rendered, "ServiceAccount").is_empty());
    for (deployment, account) in [
        ("kube-scim-operator", "wi-operator"),
        ("kube-scim-server", "wi-server"),
    ] {
        assert_eq!(
            named(&rendered, "Deployment", deployment)["spec"]["template"]["spec"]["serviceAccountName"],
            account
        );
    }
    let subjects: Vec<String> = rendered
        .iter()
        .filter(|o| o["kind"] == "ClusterRoleBinding" || o["kind"] == "RoleBinding")
        .flat_map(|b| b["subjects"].as_array().unwrap().iter())
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        subjects.contains(&"wi-operator".to_string()),
        "{subjects:?}"
    );
    assert!(subjects.contains(&"wi-server".to_string()), "{subjects:?}");
    assert!(
        subjects.iter().all(|s| s.starts_with("wi-")),
        "every binding names the brought accounts: {subjects:?}"
    );
    // Only the server's account may write ScimUsers: the admission policy names it.
    let policy = serde_json::to_string(named(
        &rendered,
        "ValidatingAdmissionPolicy",
        "kube-scim-writers",
    ))
    .unwrap();
    assert!(
        policy.contains("system:serviceaccount:default:wi-server"),
        "{policy}"
    );

    let created = render(plane, &["--set", "serviceAccount.serverName=wi-server"]).unwrap();
    let accounts: Vec<&Value> = objects(&created, "ServiceAccount")
        .into_iter()
        .map(|a| &a["metadata"]["name"])
        .collect();
    assert_eq!(
        accounts,
        [&json!("kube-scim-operator"), &json!("wi-server")]
    );

    let shared = render(
        plane,
        &[
            "--set",
            "serviceAccount.operatorName=one",
            "--set",
            "serviceAccount.serverName=one",
        ],
    )
    .unwrap_err();
    assert!(shared.contains("must differ"), "{shared}");
}

/// Artifact Hub shows the chart's icon, maintainers and images; the images it lists are those
/// a default install runs.
#[test]
fn chart_metadata_names_its_icon_maintainers_and_the_images_it_runs() {
    let plane = ControlPlane::shared_without_crds();
    let metadata: Value =
        serde_norway::from_str(&std::fs::read_to_string(chart().join("Chart.yaml")).unwrap())
            .unwrap();
    let icon = metadata["icon"].as_str().expect("Chart.yaml has an icon");
    let in_repo = icon
        .strip_prefix("https://raw.githubusercontent.com/kube-scim/kube-scim/main/")
        .expect("the icon is served from this repository");
    assert!(repo_root().join(in_repo).is_file(), "{in_repo} is missing");
    let maintainers = metadata["maintainers"].as_array().unwrap();
    assert!(maintainers.iter().all(|m| m["name"].is_string()));
    assert!(!maintainers.is_empty());

    let listed: Value = serde_norway::from_str(
        metadata["annotations"]["artifacthub.io/images"]
            .as_str()
            .expect("artifacthub.io/images"),
    )
    .unwrap();
    let mut listed: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["image"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let rendered = render(plane, &[]).unwrap();
    let mut running: Vec<String> = objects(&rendered, "Deployment")
        .iter()
        .map(|d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    running.sort();
    assert_eq!(listed, running);
}

/// A budget that keeps the only pod blocks every node drain: none at one replica.
#[test]
fn pod_disruption_budget_never_blocks_a_drain() {
    let plane = ControlPlane::shared_without_crds();
    let budgets = |args: &[&str]| -> Vec<Value> {
        objects(&render(plane, args).unwrap(), "PodDisruptionBudget")
            .into_iter()
            .cloned()
            .collect()
    };
    let default = budgets(&[]);
    assert_eq!(default.len(), 1);
    assert_eq!(default[0]["spec"]["minAvailable"], 1);
    assert!(budgets(&["--set", "server.replicas=1"]).is_empty());
    let refused = render(
        plane,
        &["--set", "server.podDisruptionBudget.minAvailable=2"],
    )
    .unwrap_err();
    assert!(
        refused.contains("must be below server.replicas"),
        "{refused}"
    );
    assert_eq!(
        budgets(&[
            "--set",
            "server.replicas=3",
            "--set",
            "server.podDisruptionBudget.minAvailable=2"
        ])
        .len(),
        1
    );
}

/// Enabling ServiceMonitors on a cluster without their API fails the install by default
/// instead of rendering nothing; SkipIfMissing and Always are explicit choices.
#[test]
fn service_monitor_render_mode_decides_what_happens_without_the_api() {
    let plane = ControlPlane::shared_without_crds();
    let monitors = |args: &[&str]| -> Result<usize, String> {
        let mut all = vec!["--set", "serviceMonitor.enabled=true"];
        all.extend_from_slice(args);
        render(plane, &all).map(|r| objects(&r, "ServiceMonitor").len())
    };
    let refused = monitors(&[]).unwrap_err();
    assert!(
        refused.contains("does not serve monitoring.coreos.com/v1"),
        "{refused}"
    );
    assert_eq!(
        monitors(&["--set", "serviceMonitor.renderMode=SkipIfMissing"]),
        Ok(0)
    );
    assert_eq!(
        monitors(&["--set", "serviceMonitor.renderMode=Always"]),
        Ok(2)
    );
    let served = ["--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"];
    assert_eq!(monitors(&served), Ok(2));
    assert_eq!(
        render(plane, &[]).map(|r| objects(&r, "ServiceMonitor").len()),
        Ok(0),
        "disabled by default"
    );
}

/// Durations in values are strings (30s, 1m); the integer keys of earlier versions still work
/// and win when set.
#[test]
fn durations_are_strings_and_the_old_integer_keys_still_work() {
    let plane = ControlPlane::shared_without_crds();
    // The drain is the server's own (--shutdown-drain), not a preStop sleep.
    let server = |args: &[&str]| -> Result<(String, u64, Option<String>), String> {
        let rendered = render(plane, args)?;
        let server = named(&rendered, "Deployment", "kube-scim-server").clone();
        let pod = &server["spec"]["template"]["spec"];
        Ok((
            container_env(&server, "KUBE_SCIM_REQUEST_TIMEOUT").unwrap(),
            pod["terminationGracePeriodSeconds"].as_u64().unwrap(),
            container_env(&server, "KUBE_SCIM_SHUTDOWN_DRAIN"),
        ))
    };
    assert_eq!(server(&[]), Ok(("30s".into(), 45, Some("5s".into()))));
    assert_eq!(
        server(&[
            "--set",
            "server.requestTimeout=20s",
            "--set",
            "server.drainDelay=10s"
        ]),
        Ok(("20s".into(), 40, Some("10s".into())))
    );
    assert_eq!(
        server(&["--set", "server.requestTimeout=0m55s"]),
        Ok(("55s".into(), 70, Some("5s".into())))
    );
    assert_eq!(
        server(&[
            "--set",
            "server.requestTimeoutSeconds=25",
            "--set",
            "server.drainSeconds=0"
        ]),
        Ok(("25s".into(), 35, Some("0s".into()))),
        "the old integer keys win"
    );
    let too_long = server(&["--set", "server.requestTimeout=1m"]).unwrap_err();
    assert!(too_long.contains("not between 1s and 55s"), "{too_long}");
    let integer = server(&["--set", "server.requestTimeout=30"]).unwrap_err();
    assert!(integer.contains("/server/requestTimeout"), "{integer}");
    let drain = server(&["--set", "server.drainDelay=45s"]).unwrap_err();
    assert!(drain.contains("over 30s"), "{drain}");
}

/// The notes printed after an install tell how to read the token through the directory's
/// status, in the namespace the directory is created in.
#[test]
fn install_notes_read_the_token_secret_name_from_status() {
    let plane = ControlPlane::shared_without_crds();
    let out = must_succeed(
        plane
            .helm()
            .unwrap()
            // Helm checks the ownership of every existing object even on a client dry run, and
            // another test of this binary installs RELEASE for real on the same plane: its
            // cluster-wide objects (ClusterRoles, CRDs) would belong to another namespace. A
            // release name of its own and no CRDs keep this test apart; the notes name neither.
            .args(["install", "install-notes"])
            .arg(chart())
            .args(["--set", "crds.enabled=false"])
            .args(["--dry-run=client", "--namespace", "identity"]),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let notes = &text[text.find("NOTES:").expect("helm prints the notes")..];
    assert!(
        notes.contains(
            "\"$(kubectl get scimdirectory contoso -n identity -o jsonpath='{.status.tokenSecretName}')\""
        ),
        "{notes}"
    );
    assert!(!notes.contains("-scim-token"), "{notes}");
}

/// Both components listen on the dual-stack wildcard, so kubelet's probes (sent to the pod's
/// address, IPv6 on an IPv6-only cluster) and the Service reach them in either family
/// (tests/tests/dual_stack.rs runs both binaries with `[::]` and probes 127.0.0.1 and ::1).
#[test]
fn both_components_listen_on_ipv6_and_ipv4() {
    let plane = ControlPlane::shared_without_crds();
    let out = must_succeed(
        plane
            .helm()
            .unwrap()
            .args(["template", RELEASE])
            .arg(chart()),
    );
    let rendered = String::from_utf8_lossy(&out.stdout);
    for deployment in ["kube-scim-operator", "kube-scim-server"] {
        for (name, value) in deployment_env(&rendered, deployment) {
            if name == "KUBE_SCIM_LISTEN" || name == "KUBE_SCIM_METRICS_BIND_ADDRESS" {
                assert!(
                    value.starts_with("[::]:"),
                    "{deployment}: {name}={value} is not dual-stack"
                );
            }
        }
        assert!(
            deployment_env(&rendered, deployment)
                .iter()
                .any(|(name, _)| name == "KUBE_SCIM_METRICS_BIND_ADDRESS"),
            "{deployment} sets no probe address"
        );
    }
}

/// The server's Service takes the cluster's family policy unless told (a dual-stack cluster
/// gives a Service one family by default); PreferDualStack and the families' order render as
/// given, and a mistyped policy is refused by the schema.
#[test]
fn the_server_service_can_be_dual_stack() {
    let plane = ControlPlane::shared_without_crds();
    let defaults = render(plane, &[]).unwrap();
    let spec = &named(&defaults, "Service", "kube-scim-server")["spec"];
    assert!(spec.get("ipFamilyPolicy").is_none(), "{spec}");
    assert!(spec.get("ipFamilies").is_none(), "{spec}");

    let dual = render(
        plane,
        &[
            "--set",
            "server.service.ipFamilyPolicy=PreferDualStack",
            "--set",
            "server.service.ipFamilies={IPv6,IPv4}",
        ],
    )
    .unwrap();
    let spec = &named(&dual, "Service", "kube-scim-server")["spec"];
    assert_eq!(spec["ipFamilyPolicy"], "PreferDualStack", "{spec}");
    assert_eq!(spec["ipFamilies"], json!(["IPv6", "IPv4"]), "{spec}");

    let refused = render(plane, &["--set", "server.service.ipFamilyPolicy=DualStack"]);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("ipFamilyPolicy")),
        "{refused:?}"
    );
}
