//! ScimGroupBinding on the real control plane: Entra group membership becomes Kubernetes RBAC
//! (checked with `kubectl auth can-i --as`), follows every SCIM change, and cannot be used to
//! grant more than its author may (the chart's admission policy, tested with impersonation, and
//! the operator's allow-list).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;

use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_scim_crds::group_binding::{
    GroupBindingDirectoryRef, GroupBindingRoleRef, GroupSelector, RoleKind, SubjectMapping,
};
use kube_scim_crds::{
    DirectoryRef, ScimDirectory, ScimDirectorySpec, ScimGroupBinding, ScimGroupBindingSpec,
    ScimUser, ScimUserSpec, ScimUserStatus, labels,
};
use kube_scim_tests::entra::{Dialect, EntraClient, EntraUser};
use kube_scim_tests::procs::ManagedProcess;
use kube_scim_tests::stack::{Stack, StackOptions, ready_directory};
use kube_scim_tests::{ControlPlane, eventually, free_port, must_succeed, workspace_binary};
use serde_json::json;

const ACCESS_TIMEOUT: Duration = Duration::from_secs(30);

/// The RBAC user name a member gets with the template `oidc:{{externalId}}`.
fn subject(n: usize) -> String {
    format!("oidc:{}", EntraUser::numbered(n).object_id)
}

/// `kubectl auth can-i create deployments.apps -n <ns> --as <user>`.
fn can_edit(plane: &ControlPlane, user: &str, ns: &str) -> bool {
    let out = plane
        .kubectl()
        .args([
            "auth",
            "can-i",
            "create",
            "deployments.apps",
            "-n",
            ns,
            "--as",
            user,
        ])
        .output()
        .expect("kubectl runs");
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// Polls until every `(user, namespace, expected)` holds; returns how long it took.
async fn access_follows(
    plane: &ControlPlane,
    what: &str,
    since: Instant,
    expect: &[(String, &str, bool)],
) -> Duration {
    eventually(what, ACCESS_TIMEOUT, || async {
        expect
            .iter()
            .all(|(user, ns, allowed)| can_edit(plane, user, ns) == *allowed)
            .then_some(())
    })
    .await;
    let latency = since.elapsed();
    println!("latency {what}: {} ms", latency.as_millis());
    latency
}

async fn directory(kube: &Client, stack: &Stack, ns: &str, name: &str) -> EntraClient {
    Api::<ScimDirectory>::namespaced(kube.clone(), ns)
        .create(
            &PostParams::default(),
            &ScimDirectory::new(name, ScimDirectorySpec::default()),
        )
        .await
        .unwrap();
    let (_, token) = stack.ready_directory(kube, ns, name).await;
    EntraClient::new(&stack.base_url(ns, name), &token, Dialect::Compliant)
}

fn binding_spec(group_object_id: &str, role: &str, namespaces: &[&str]) -> ScimGroupBindingSpec {
    ScimGroupBindingSpec {
        directory_ref: GroupBindingDirectoryRef {
            name: "contoso".into(),
        },
        group: GroupSelector {
            external_id: Some(group_object_id.into()),
            ..Default::default()
        },
        role_ref: GroupBindingRoleRef {
            kind: RoleKind::ClusterRole,
            name: role.into(),
        },
        namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
        cluster_wide: false,
        subject: SubjectMapping {
            name: Some("oidc:{{externalId}}".into()),
            ..Default::default()
        },
        // These tests' directories accept the bearer token they read from the Secret.
        trust_directory_secret_readers: true,
        directory_acknowledgement: None,
    }
}

fn ready_reason(binding: &ScimGroupBinding) -> Option<(String, String)> {
    let ready = binding
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((ready.status.clone(), ready.reason.clone()))
}

async fn managed_role_bindings(kube: &Client, ns: &str) -> usize {
    Api::<RoleBinding>::namespaced(kube.clone(), ns)
        .list(&ListParams::default().labels("kubescim.io/group-binding-uid"))
        .await
        .unwrap()
        .items
        .len()
}

#[tokio::test]
async fn group_membership_becomes_rbac_and_follows_every_scim_change() {
    let plane = ControlPlane::shared();
    let kube = plane.client().await.unwrap();
    let ns = plane.namespace("gb").await.unwrap();
    let team_a = plane.namespace("gb-a").await.unwrap();
    let team_b = plane.namespace("gb-b").await.unwrap();
    let mut options = StackOptions::new(&ns);
    options.watch_namespaces = format!("{ns},{team_a},{team_b}");
    options
        .operator_args
        .push("--group-binding-allowed-cluster-roles=view,edit".into());
    options
        .operator_args
        .push("--log-filter=info,kube_scim_operator::group_binding=debug".into());
    let stack = Stack::start(plane, options).await.unwrap();
    let entra = directory(&kube, &stack, &ns, "contoso").await;

    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(
            entra
                .provision_user(&EntraUser::numbered(n), None)
                .await
                .unwrap(),
        );
    }
    let group_oid = "aaaaaaaa-0000-4000-8000-000000000001";
    let group = entra
        .provision_group("Platform-Admins", group_oid)
        .await
        .unwrap();
    entra
        .add_members(&group, &[ids[0].clone(), ids[1].clone()])
        .await
        .unwrap();

    let bindings: Api<ScimGroupBinding> = Api::namespaced(kube.clone(), &ns);
    let started = Instant::now();
    bindings
        .create(
            &PostParams::default(),
            &ScimGroupBinding::new(
                "platform-admins",
                binding_spec(group_oid, "edit", &[&team_a, &team_b]),
            ),
        )
        .await
        .unwrap();
    let (a, b) = (team_a.as_str(), team_b.as_str());
    let mut latencies = Vec::new();
    latencies.push(
        access_follows(
            plane,
            "binding created: members edit both namespaces",
            started,
            &[
                (subject(0), a, true),
                (subject(0), b, true),
                (subject(1), b, true),
                (subject(2), a, false),
                (subject(5), b, false),
            ],
        )
        .await,
    );
    let status = bindings
        .get("platform-admins")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.members, Some(2));
    assert_eq!(status.targets.len(), 2);
    assert!(status.targets.iter().all(|t| t.subjects == 2));
    assert!(status.last_sync_time.is_some());
    assert_eq!(
        ready_reason(&bindings.get("platform-admins").await.unwrap()),
        Some(("True".into(), "Synced".into()))
    );

    // Add a member.
    let t = Instant::now();
    entra.add_members(&group, &[ids[2].clone()]).await.unwrap();
    latencies.push(
        access_follows(
            plane,
            "member added",
            t,
            &[(subject(2), a, true), (subject(2), b, true)],
        )
        .await,
    );
    // Remove one.
    let t = Instant::now();
    entra
        .remove_members(&group, &[ids[1].clone()])
        .await
        .unwrap();
    latencies.push(
        access_follows(
            plane,
            "member removed",
            t,
            &[(subject(1), a, false), (subject(1), b, false)],
        )
        .await,
    );
    // Deactivate and reactivate.
    let t = Instant::now();
    entra.set_active(&ids[0], false).await.unwrap();
    latencies.push(
        access_follows(
            plane,
            "member deactivated",
            t,
            &[(subject(0), a, false), (subject(0), b, false)],
        )
        .await,
    );
    let t = Instant::now();
    entra.set_active(&ids[0], true).await.unwrap();
    latencies.push(
        access_follows(
            plane,
            "member reactivated",
            t,
            &[(subject(0), a, true), (subject(0), b, true)],
        )
        .await,
    );
    // A nested group: its members get access through it.
    let sre = entra
        .provision_group("Platform-SRE", "aaaaaaaa-0000-4000-8000-000000000002")
        .await
        .unwrap();
    entra.add_members(&sre, &[ids[3].clone()]).await.unwrap();
    assert!(!can_edit(plane, &subject(3), a));
    let t = Instant::now();
    entra
        .add_members(&group, std::slice::from_ref(&sre))
        .await
        .unwrap();
    latencies.push(
        access_follows(
            plane,
            "group nested",
            t,
            &[(subject(3), a, true), (subject(3), b, true)],
        )
        .await,
    );
    // A member added to the nested group later.
    let t = Instant::now();
    entra.add_members(&sre, &[ids[4].clone()]).await.unwrap();
    latencies.push(
        access_follows(
            plane,
            "member of the nested group added",
            t,
            &[(subject(4), b, true)],
        )
        .await,
    );
    // A deleted user.
    let t = Instant::now();
    entra.delete("Users", &ids[2]).await.unwrap();
    latencies.push(
        access_follows(
            plane,
            "member deleted",
            t,
            &[(subject(2), a, false), (subject(2), b, false)],
        )
        .await,
    );
    // A rename changes nothing: the binding selects the group by externalId.
    entra.rename_group(&group, "Platform-Owners").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        can_edit(plane, &subject(0), a),
        "a renamed group keeps its access"
    );
    assert!(can_edit(plane, &subject(3), b));
    // The group deleted: every member loses access and the RoleBindings go.
    let t = Instant::now();
    entra.delete("Groups", &group).await.unwrap();
    latencies.push(
        access_follows(
            plane,
            "group deleted",
            t,
            &[
                (subject(0), a, false),
                (subject(3), b, false),
                (subject(4), a, false),
            ],
        )
        .await,
    );
    assert_eq!(managed_role_bindings(&kube, a).await, 0);
    let deleted_group = bindings.get("platform-admins").await.unwrap();
    assert_eq!(
        ready_reason(&deleted_group).map(|r| r.1),
        Some("GroupNotFound".to_string())
    );

    // The group comes back (same objectId) with a member; then the binding is deleted.
    let again = entra
        .provision_group("Platform-Admins", group_oid)
        .await
        .unwrap();
    let t = Instant::now();
    entra.add_members(&again, &[ids[5].clone()]).await.unwrap();
    latencies.push(
        access_follows(
            plane,
            "group provisioned again",
            t,
            &[(subject(5), a, true)],
        )
        .await,
    );
    let t = Instant::now();
    bindings
        .delete("platform-admins", &DeleteParams::default())
        .await
        .unwrap();
    latencies.push(
        access_follows(
            plane,
            "binding deleted",
            t,
            &[(subject(5), a, false), (subject(5), b, false)],
        )
        .await,
    );
    eventually("the ScimGroupBinding is gone", ACCESS_TIMEOUT, || async {
        bindings
            .get_opt("platform-admins")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(managed_role_bindings(&kube, a).await, 0);
    assert_eq!(managed_role_bindings(&kube, b).await, 0);

    latencies.sort();
    println!(
        "access latency over {} changes (SCIM request to `kubectl auth can-i` answering, polled every 250 ms): median {} ms, max {} ms",
        latencies.len(),
        latencies[latencies.len() / 2].as_millis(),
        latencies.last().unwrap().as_millis()
    );
}

/// Size of the large group (`GROUP_BINDING_MEMBERS`, default 10,000 as the issue asks).
fn large_group_members() -> usize {
    std::env::var("GROUP_BINDING_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// etcd's default request limit (`--max-request-bytes`), the size no object can exceed.
const ETCD_OBJECT_LIMIT: usize = 1536 * 1024;

/// Creates `n` active members of `group` directly in the apiserver, as the SCIM server writes
/// them (through SCIM, 10,000 users would take many minutes on a test machine); returns their
/// RBAC subject names.
async fn direct_members(kube: &Client, ns: &str, group: &str, n: usize) -> BTreeSet<String> {
    let api: Api<ScimUser> = Api::namespaced(kube.clone(), ns);
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let id = uuid::Uuid::new_v4().to_string();
                let external_id = format!("dddddddd-0000-4000-8000-{i:012}");
                let mut user = ScimUser::new(
                    &id,
                    ScimUserSpec {
                        directory_ref: DirectoryRef {
                            name: "contoso".into(),
                        },
                    },
                );
                user.metadata.labels = Some(BTreeMap::from([
                    (labels::DIRECTORY.to_string(), "contoso".to_string()),
                    (labels::ACTIVE.to_string(), "true".to_string()),
                    (labels::member_of(group), "true".to_string()),
                ]));
                let status = json!({"id": id, "externalId": external_id,
                    "userName": format!("member{i:06}@contoso.onmicrosoft.com"), "active": true,
                    "meta": {"created": "2026-01-01T00:00:00Z", "lastModified": "2026-01-01T00:00:00Z"}});
                user.status = Some(serde_json::from_value::<ScimUserStatus>(status).unwrap());
                api.create(&PostParams::default(), &user).await.unwrap();
                format!("oidc:{external_id}")
            }
        })
        .buffer_unordered(32)
        .collect()
        .await
}

/// The managed RoleBindings of `ns`: their subject names, and each one's size as stored
/// (JSON, managedFields included).
async fn bound_subjects(kube: &Client, ns: &str) -> (Vec<String>, Vec<usize>) {
    let list = Api::<RoleBinding>::namespaced(kube.clone(), ns)
        .list(&ListParams::default().labels("kubescim.io/group-binding-uid"))
        .await
        .unwrap();
    let sizes = list
        .items
        .iter()
        .map(|rb| serde_json::to_vec(rb).unwrap().len())
        .collect();
    let names = list
        .items
        .into_iter()
        .flat_map(|rb| rb.subjects.unwrap_or_default())
        .map(|s| s.name)
        .collect();
    (names, sizes)
}

#[tokio::test]
async fn a_group_of_ten_thousand_members_is_bound_and_follows_scim_changes_within_seconds() {
    let n = large_group_members();
    let plane = ControlPlane::shared();
    let kube = plane.client().await.unwrap();
    let ns = plane.namespace("gb-large").await.unwrap();
    let mut options = StackOptions::new(&ns);
    options
        .operator_args
        .push("--group-binding-allowed-cluster-roles=view,edit".into());
    let stack = Stack::start(plane, options).await.unwrap();
    let entra = directory(&kube, &stack, &ns, "contoso").await;
    let group_oid = "cccccccc-0000-4000-8000-000000000001";
    let group = entra.provision_group("All-Staff", group_oid).await.unwrap();

    let t = Instant::now();
    let mut expected = direct_members(&kube, &ns, &group, n).await;
    println!("{n} members created in {} ms", t.elapsed().as_millis());

    let t = Instant::now();
    Api::<ScimGroupBinding>::namespaced(kube.clone(), &ns)
        .create(
            &PostParams::default(),
            &ScimGroupBinding::new("all-staff", binding_spec(group_oid, "view", &[])),
        )
        .await
        .unwrap();
    let sizes = eventually(
        "every member is a subject",
        Duration::from_secs(180),
        || async {
            let (names, sizes) = bound_subjects(&kube, &ns).await;
            (names.len() == n).then_some(sizes)
        },
    )
    .await;
    println!(
        "{n} subjects bound in {} ms, in {} RoleBinding(s) of {:?} bytes each (limit {ETCD_OBJECT_LIMIT})",
        t.elapsed().as_millis(),
        sizes.len(),
        sizes
    );
    let (names, _) = bound_subjects(&kube, &ns).await;
    assert_eq!(
        names.iter().cloned().collect::<BTreeSet<_>>(),
        expected,
        "each member once, nobody else"
    );
    assert!(
        sizes.iter().all(|s| *s < ETCD_OBJECT_LIMIT / 2),
        "a RoleBinding near etcd's limit: {sizes:?}"
    );

    // Membership changes through SCIM, one at a time, timed from the request to the
    // RoleBinding holding the change.
    let mut latencies = Vec::new();
    let mut joined = Vec::new();
    for k in 0..10 {
        let user = EntraUser::numbered(100 + k);
        let id = entra.provision_user(&user, None).await.unwrap();
        let t = Instant::now();
        entra
            .add_members(&group, std::slice::from_ref(&id))
            .await
            .unwrap();
        expected.insert(subject(100 + k));
        latencies.push(bound_as(&kube, &ns, &expected, t, "member added").await);
        joined.push((id, 100 + k));
    }
    for (id, k) in &joined {
        let t = Instant::now();
        entra
            .remove_members(&group, std::slice::from_ref(id))
            .await
            .unwrap();
        expected.remove(&subject(*k));
        latencies.push(bound_as(&kube, &ns, &expected, t, "member removed").await);
    }
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    println!(
        "SCIM membership change to RoleBinding update, {} changes in a group of {n} (polled every 250 ms): median {} ms, p99 {} ms, max {} ms",
        latencies.len(),
        latencies[latencies.len() / 2].as_millis(),
        p99.as_millis(),
        latencies.last().unwrap().as_millis()
    );
    // The target is a p99 within 5 s; this machine is shared with builds, so only a
    // generous bound is asserted.
    assert!(p99 < Duration::from_secs(30), "{latencies:?}");
    drop(stack);
}

/// Waits (bounded) until the group-binding admission policy refuses `spec` for the user of
/// `api` (a policy takes effect a moment after it is created); a probe that gets through is
/// deleted again.
async fn until_the_policy_refuses(
    what: &str,
    api: &Api<ScimGroupBinding>,
    spec: ScimGroupBindingSpec,
) {
    eventually(what, ACCESS_TIMEOUT, || async {
        let probe = ScimGroupBinding::new("probe", spec.clone());
        match api.create(&PostParams::default(), &probe).await {
            Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("may not bind") => {
                Some(())
            }
            Ok(_) => {
                api.delete("probe", &DeleteParams::default()).await.ok();
                None
            }
            Err(e) => {
                println!("probe: {e}");
                None
            }
        }
    })
    .await;
}

/// Waits until the managed RoleBindings hold exactly `expected`; returns the time since `since`.
async fn bound_as(
    kube: &Client,
    ns: &str,
    expected: &BTreeSet<String>,
    since: Instant,
    what: &str,
) -> Duration {
    eventually(what, Duration::from_secs(60), || async {
        let (names, _) = bound_subjects(kube, ns).await;
        (names.len() == expected.len() && names.iter().all(|s| expected.contains(s))).then_some(())
    })
    .await;
    since.elapsed()
}

/// Chart templates as `helm template` renders them for release `release` (the chart's default
/// values, with the opt-in aggregated roles on), ready for `kubectl apply`.
fn chart_templates(plane: &ControlPlane, release: &str, files: &[&str]) -> String {
    let mut helm = plane.helm().unwrap();
    helm.args(["template", release])
        .arg(kube_scim_tests::repo_root().join("charts/kube-scim"))
        .args(["--set", "aggregatedClusterRoles.enabled=true"]);
    for file in files {
        helm.args(["--show-only", &format!("templates/{file}")]);
    }
    String::from_utf8(must_succeed(&mut helm).stdout).unwrap()
}

/// The chart's ScimGroupBinding admission policies.
fn admission_policy(plane: &ControlPlane) -> String {
    chart_templates(plane, "kube-scim-test", &["group-binding-policy.yaml"])
}

#[tokio::test]
async fn a_binding_grants_nothing_its_author_could_not_grant() {
    let plane = ControlPlane::shared();
    let kube = plane.client().await.unwrap();
    let ns = plane.namespace("gb-esc").await.unwrap();
    let other = plane.namespace("gb-other").await.unwrap();
    let mut options = StackOptions::new(&ns);
    options.watch_namespaces = format!("{ns},{other}");
    options
        .operator_args
        .push("--group-binding-allowed-cluster-roles=view,edit".into());
    let stack = Stack::start(plane, options).await.unwrap();
    let _entra = directory(&kube, &stack, &ns, "contoso").await;

    let policy = plane.dir().join("group-binding-policy.yaml");
    std::fs::write(&policy, admission_policy(plane)).unwrap();
    must_succeed(
        plane
            .kubectl()
            .args(["apply", "--server-side", "-f"])
            .arg(&policy),
    );

    // alice administers ScimGroupBindings in `ns` and may bind `edit` there, nothing else.
    let alice = format!("alice-{ns}");
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "group-binding-author", "namespace": ns},
        "rules": [
            {"apiGroups": ["kubescim.io"], "resources": ["scimgroupbindings"], "verbs": ["*"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
             "verbs": ["bind"], "resourceNames": ["edit"]}
        ]
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "group-binding-author", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "group-binding-author"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": alice}]
    });
    let ssa = PatchParams::apply("group-binding-test");
    Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(kube.clone(), &ns)
        .patch("group-binding-author", &ssa, &Patch::Apply(&role))
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(kube.clone(), &ns)
        .patch("group-binding-author", &ssa, &Patch::Apply(&binding))
        .await
        .unwrap();
    let as_alice: Api<ScimGroupBinding> = Api::namespaced(
        plane
            .client_as(&alice, &["system:authenticated"])
            .await
            .unwrap(),
        &ns,
    );
    let group = "bbbbbbbb-0000-4000-8000-000000000001";

    // The policy takes a moment to load; alice's allowed binding is accepted meanwhile too.
    let refused = |e: kube::Error| match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("not an API error: {other}"),
    };
    let expect_refused = |result: Result<ScimGroupBinding, kube::Error>, needle: &str| {
        let (code, message) = refused(result.expect_err("must be refused"));
        assert_eq!(code, 403, "{message}");
        assert!(
            message.contains(needle),
            "message {message:?} lacks {needle:?}"
        );
        println!("refused as expected: {message}");
    };
    until_the_policy_refuses(
        "the admission policy refuses cluster-admin",
        &as_alice,
        binding_spec(group, "cluster-admin", &[]),
    )
    .await;

    // cluster-admin in her own namespace: refused.
    expect_refused(
        as_alice
            .create(
                &PostParams::default(),
                &ScimGroupBinding::new("admins", binding_spec(group, "cluster-admin", &[])),
            )
            .await,
        "may not bind ClusterRole cluster-admin in every target namespace (",
    );
    // edit in another namespace: refused, naming it.
    expect_refused(
        as_alice
            .create(
                &PostParams::default(),
                &ScimGroupBinding::new("elsewhere", binding_spec(group, "edit", &[&ns, &other])),
            )
            .await,
        &format!("may not bind ClusterRole edit in every target namespace ({ns}, {other})"),
    );
    // Every one of the CRD's up to 64 target namespaces is checked. Kubernetes allows two
    // authorizer checks per CEL expression and 28 per policy, so a policy that checked them all
    // in one expression refused any binding of three or more namespaces, even the admin's.
    let grant_bind_edit = |target: String| {
        let (kube, alice) = (kube.clone(), alice.clone());
        let (mut role, mut binding) = (role.clone(), binding.clone());
        async move {
            role["metadata"]["namespace"] = json!(target);
            binding["metadata"]["namespace"] = json!(target);
            binding["subjects"][0]["name"] = json!(alice);
            let ssa = PatchParams::apply("group-binding-test");
            Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(kube.clone(), &target)
                .patch("group-binding-author", &ssa, &Patch::Apply(&role))
                .await
                .unwrap();
            Api::<RoleBinding>::namespaced(kube, &target)
                .patch("group-binding-author", &ssa, &Patch::Apply(&binding))
                .await
                .unwrap();
        }
    };
    let mut many = vec![ns.clone()];
    for _ in 1..64 {
        let target = plane.namespace("gb-many").await.unwrap();
        grant_bind_edit(target.clone()).await;
        many.push(target);
    }
    let all: Vec<&str> = many.iter().map(String::as_str).collect();
    eventually(
        "64 namespaces where alice may bind edit are accepted",
        ACCESS_TIMEOUT,
        || async {
            let created = as_alice
                .create(
                    &PostParams::default(),
                    &ScimGroupBinding::new("many", binding_spec(group, "edit", &all)),
                )
                .await;
            match created {
                Ok(_) => Some(()),
                Err(e) => {
                    println!("not yet: {e}");
                    None
                }
            }
        },
    )
    .await;
    Api::<ScimGroupBinding>::namespaced(kube.clone(), &ns)
        .delete("many", &Default::default())
        .await
        .unwrap();
    // The last of 64 is checked too (by the third policy).
    let mut last_refused = all[..63].to_vec();
    last_refused.push(&other);
    expect_refused(
        as_alice
            .create(
                &PostParams::default(),
                &ScimGroupBinding::new("last", binding_spec(group, "edit", &last_refused)),
            )
            .await,
        &format!("may not bind ClusterRole edit in every target namespace ({ns}, "),
    );
    // cluster-wide: refused.
    let mut wide = binding_spec(group, "edit", &[]);
    wide.cluster_wide = true;
    expect_refused(
        as_alice
            .create(&PostParams::default(), &ScimGroupBinding::new("wide", wide))
            .await,
        "cluster-wide",
    );
    // edit in her namespace: accepted; then she cannot widen it in either direction.
    as_alice
        .create(
            &PostParams::default(),
            &ScimGroupBinding::new("editors", binding_spec(group, "edit", &[])),
        )
        .await
        .expect("alice may bind edit in her namespace");
    let merge = PatchParams::default();
    for (change, needle) in [
        (
            json!({"spec": {"roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}}}),
            "may not bind ClusterRole cluster-admin".to_string(),
        ),
        (
            json!({"spec": {"namespaces": [ns, other]}}),
            format!("may not bind ClusterRole edit in every target namespace ({ns}, {other})"),
        ),
    ] {
        expect_refused(
            as_alice
                .patch("editors", &merge, &Patch::Merge(&change))
                .await,
            &needle,
        );
    }
    // The operator's own writes (finalizer, status) pass: the binding becomes Ready.
    let admin_bindings: Api<ScimGroupBinding> = Api::namespaced(kube.clone(), &ns);
    eventually("editors reports GroupNotFound", ACCESS_TIMEOUT, || async {
        let b = admin_bindings.get("editors").await.ok()?;
        (ready_reason(&b)?.1 == "GroupNotFound").then_some(())
    })
    .await;

    // Past admission (the admin may bind anything), the operator's allow-list still refuses.
    admin_bindings
        .create(
            &PostParams::default(),
            &ScimGroupBinding::new("root", binding_spec(group, "cluster-admin", &[&other])),
        )
        .await
        .unwrap();
    let status = eventually("root reports RoleNotAllowed", ACCESS_TIMEOUT, || async {
        let b = admin_bindings.get("root").await.ok()?;
        let ready = b
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        (ready.reason == "RoleNotAllowed").then_some(ready)
    })
    .await;
    assert_eq!(status.status, "False");
    assert!(status.message.contains("allow-list"), "{}", status.message);
    println!("operator refused: {}", status.message);
    assert_eq!(managed_role_bindings(&kube, &other).await, 0);

    // Clean up the cluster-wide policy so other tests are unaffected.
    plane
        .kubectl()
        .args(["delete", "--ignore-not-found", "-f"])
        .arg(&policy)
        .output()
        .unwrap();
    drop(stack);
}

/// Asserts that `user` may not edit `ns`, polled for `window` (the operator had its chance to
/// act: the caller waited for an effect of the same trigger first).
async fn never_edits(
    plane: &ControlPlane,
    stack: &Stack,
    user: &str,
    ns: &str,
    window: Duration,
    what: &str,
) {
    let end = Instant::now() + window;
    while Instant::now() < end {
        assert!(
            !can_edit(plane, user, ns),
            "{what}: {user} may edit {ns} (escalation)\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!("{what}: {user} still may not edit {ns}");
}

/// Waits (bounded) until `name` reports Ready `status` with `reason`; on timeout prints what it
/// reports and the components' logs.
async fn ready_reason_is(
    bindings: &Api<ScimGroupBinding>,
    stack: &Stack,
    name: &str,
    status: &str,
    reason: &str,
) {
    let deadline = Instant::now() + ACCESS_TIMEOUT;
    let expected = (status.to_string(), reason.to_string());
    loop {
        let current = bindings.get(name).await.ok();
        if current.as_ref().and_then(ready_reason).as_ref() == Some(&expected) {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "{name} did not report Ready {status} {reason} within {ACCESS_TIMEOUT:?}: {:?}\n{}",
                current.and_then(|b| b.status),
                stack.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

const TRUST_TENANT: &str = "3f1e4b7a-5c2d-4e8f-9a0b-1c2d3e4f5a6b";
/// An Entra tenant eve controls (the test issuer signs for every tenant).
const EVE_TENANT: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";

/// A directory that accepts only tokens Entra issues (the test issuer) for the provisioning app.
/// The second Entra-only directory's enterprise application (one application per directory:
/// the operator refuses a second directory of the same tenant and application).
const NORTHWIND_APP_ID: &str = "5b0d9c1e-7a2f-4e3b-9c8d-2f1e0a9b8c7d";

fn entra_only(app: &str) -> ScimDirectorySpec {
    serde_json::from_value(json!({
        "auth": {
            "methods": ["EntraToken"],
            "entraToken": {
                "tenantId": TRUST_TENANT,
                "allowedAppIds": [app]
            }
        }
    }))
    .unwrap()
}

/// Issue 27: a user with only the built-in `edit` role in the directory's namespace cannot
/// cause a ScimGroupBinding to grant anything: not with the token Secret she can read, not by
/// changing the directory's authentication, not by deleting and re-creating it. Run as that
/// user (impersonation) with the chart's admission policy and aggregated roles applied.
#[tokio::test]
async fn an_editor_of_the_directory_namespace_cannot_cause_a_grant() {
    use kube_scim_tests::jwt_issuer::{JwtIssuer, valid_claims};
    let issuer = JwtIssuer::start().await.unwrap();
    let plane = ControlPlane::shared();
    let kube = plane.client().await.unwrap();
    let ns = plane.namespace("gb-trust").await.unwrap();
    let team_a = plane.namespace("gb-trust-a").await.unwrap();
    // One witness namespace per attack: a binding that trusts the attacker by construction
    // shows when the operator has processed her SCIM writes.
    let mut witness = Vec::new();
    for _ in 0..3 {
        witness.push(plane.namespace("gb-trust-w").await.unwrap());
    }
    let mut options = StackOptions::new(&ns);
    options.watch_namespaces = format!("{ns},{team_a},{}", witness.join(","));
    options
        .operator_args
        .push("--group-binding-allowed-cluster-roles=view,edit".into());
    options.server_args = vec![
        format!("--entra-metadata-url={}", issuer.metadata_url_template()),
        "--entra-key-refresh-interval=1s".into(),
    ];
    let stack = Stack::start(plane, options).await.unwrap();

    // The chart's admission policy and aggregated roles, under names of this test's own.
    let manifests = plane.dir().join("trust-policies.yaml");
    std::fs::write(
        &manifests,
        chart_templates(
            plane,
            "kube-scim-trust",
            &["group-binding-policy.yaml", "aggregated-clusterroles.yaml"],
        ),
    )
    .unwrap();
    must_succeed(
        plane
            .kubectl()
            .args(["apply", "--server-side", "-f"])
            .arg(&manifests),
    );

    // eve: the built-in `edit` role in the directory's namespace, nothing else.
    let eve = format!("eve-{ns}");
    let ssa = PatchParams::apply("group-binding-test");
    Api::<RoleBinding>::namespaced(kube.clone(), &ns)
        .patch(
            "eve-edit",
            &ssa,
            &Patch::Apply(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "eve-edit", "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": eve}]
            })),
        )
        .await
        .unwrap();
    let as_eve = plane
        .client_as(&eve, &["system:authenticated"])
        .await
        .unwrap();
    let can_i = |verb: &str, resource: &str, namespace: &str| {
        let out = plane
            .kubectl()
            .args([
                "auth", "can-i", verb, resource, "-n", namespace, "--as", &eve,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    eventually(
        "edit aggregates ScimDirectory writes",
        ACCESS_TIMEOUT,
        || async { can_i("update", "scimdirectories.kubescim.io", &ns).then_some(()) },
    )
    .await;
    assert!(can_i("get", "secrets", &ns), "edit reads Secrets");
    assert!(!can_i("create", "scimgroupbindings.kubescim.io", &ns));
    assert!(!can_i("create", "scimusers.kubescim.io", &ns));
    // The rendered subject name eve would log in as.
    let eve_subject = subject(9);
    let eve_user = EntraUser::numbered(9);
    let dirs_as_eve: Api<ScimDirectory> = Api::namespaced(as_eve.clone(), &ns);
    let bindings: Api<ScimGroupBinding> = Api::namespaced(kube.clone(), &ns);
    let entra_jwt = issuer.mint(0, &valid_claims(TRUST_TENANT));
    let create_binding = |name: &str, dir: &str, group: &str, target: &str, opt_in: bool| {
        let mut spec = binding_spec(group, "edit", &[target]);
        spec.directory_ref.name = dir.into();
        spec.trust_directory_secret_readers = opt_in;
        let bindings = bindings.clone();
        let name = name.to_string();
        async move {
            bindings
                .create(&PostParams::default(), &ScimGroupBinding::new(&name, spec))
                .await
                .unwrap()
        }
    };

    // mallory may write ScimGroupBindings but not bind any role: the admission policy refuses
    // her every spec write (waited for: the policy takes a moment to load).
    let mallory = format!("mallory-{ns}");
    Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(kube.clone(), &ns)
        .patch(
            "binding-writer",
            &ssa,
            &Patch::Apply(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "binding-writer", "namespace": ns},
                "rules": [{"apiGroups": ["kubescim.io"], "resources": ["scimgroupbindings"], "verbs": ["*"]}]
            })),
        )
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(kube.clone(), &ns)
        .patch(
            "binding-writer",
            &ssa,
            &Patch::Apply(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "binding-writer", "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "binding-writer"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": mallory}]
            })),
        )
        .await
        .unwrap();
    let as_mallory: Api<ScimGroupBinding> = Api::namespaced(
        plane
            .client_as(&mallory, &["system:authenticated"])
            .await
            .unwrap(),
        &ns,
    );
    until_the_policy_refuses(
        "the admission policy is loaded",
        &as_mallory,
        binding_spec("probe", "view", &[]),
    )
    .await;

    // 1. A bearer-token directory: eve reads its token and provisions herself into the group.
    let admin_entra = directory(&kube, &stack, &ns, "fabrikam").await;
    let member = admin_entra
        .provision_user(&EntraUser::numbered(0), None)
        .await
        .unwrap();
    let group_oid = "cccccccc-0000-4000-8000-000000000001";
    let group = admin_entra
        .provision_group("Fabrikam-Admins", group_oid)
        .await
        .unwrap();
    admin_entra.add_members(&group, &[member]).await.unwrap();
    create_binding("fabrikam", "fabrikam", group_oid, &team_a, false).await;
    // The legitimate path for such a directory: an explicit opt-in by someone who may bind.
    create_binding("fabrikam-w", "fabrikam", group_oid, &witness[0], true).await;
    access_follows(
        plane,
        "an opted-in binding of a bearer-token directory grants",
        Instant::now(),
        &[(subject(0), witness[0].as_str(), true)],
    )
    .await;
    let (_, stolen) = ready_directory(&as_eve, &ns, "fabrikam", ACCESS_TIMEOUT)
        .await
        .expect("edit reads the token Secret");
    let eve_entra = EntraClient::new(
        &stack.base_url(&ns, "fabrikam"),
        &stolen,
        Dialect::Compliant,
    );
    let eve_id = eve_entra.provision_user(&eve_user, None).await.unwrap();
    eve_entra.add_members(&group, &[eve_id]).await.unwrap();
    access_follows(
        plane,
        "the operator processed eve's SCIM writes",
        Instant::now(),
        &[(eve_subject.clone(), witness[0].as_str(), true)],
    )
    .await;
    never_edits(
        plane,
        &stack,
        &eve_subject,
        &team_a,
        Duration::from_secs(3),
        "stolen token",
    )
    .await;
    ready_reason_is(
        &bindings,
        &stack,
        "fabrikam",
        "False",
        "DirectoryCredentialShared",
    )
    .await;
    assert!(!can_edit(plane, &subject(0), &team_a));
    assert_eq!(managed_role_bindings(&kube, &team_a).await, 0);

    // 2. Entra-only directories: the legitimate path without opt-in. Her copy of their token
    //    opens neither.
    let mut grants = Vec::new();
    let mut groups = BTreeMap::new();
    let mut northwind_claims = valid_claims(TRUST_TENANT);
    northwind_claims["appid"] = json!(NORTHWIND_APP_ID);
    let northwind_jwt = issuer.mint(0, &northwind_claims);
    for (n, dir, app, jwt) in [
        (
            1usize,
            "contoso",
            kube_scim_tests::jwt_issuer::PROVISIONING_APP_ID,
            &entra_jwt,
        ),
        (2, "northwind", NORTHWIND_APP_ID, &northwind_jwt),
    ] {
        Api::<ScimDirectory>::namespaced(kube.clone(), &ns)
            .create(
                &PostParams::default(),
                &ScimDirectory::new(dir, entra_only(app)),
            )
            .await
            .unwrap();
        // Entra-issued tokens only: wait until the server takes this one, not the Secret's.
        ready_directory(&kube, &ns, dir, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", stack.logs()));
        kube_scim_tests::stack::server_accepts(
            &kube_scim_tests::http_client(),
            &stack.base_url(&ns, dir),
            jwt,
            Duration::from_secs(60),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", stack.logs()));
        let idp = EntraClient::new(&stack.base_url(&ns, dir), jwt, Dialect::Compliant);
        let id = idp
            .provision_user(&EntraUser::numbered(n), None)
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", stack.logs()));
        let oid = format!("dddddddd-0000-4000-8000-00000000000{n}");
        let group = idp
            .provision_group(&format!("{dir}-admins"), &oid)
            .await
            .unwrap();
        idp.add_members(&group, &[id]).await.unwrap();
        groups.insert(dir, (oid.clone(), group));
        create_binding(dir, dir, &oid, &team_a, false).await;
        grants.push((subject(n), team_a.as_str(), true));
        grants.push((eve_subject.clone(), team_a.as_str(), false));
        let (_, token) = ready_directory(&as_eve, &ns, dir, ACCESS_TIMEOUT)
            .await
            .unwrap();
        kube_scim_tests::entra::assert_invalid_token(&stack.base_url(&ns, dir), &token, dir).await;
    }
    access_follows(
        plane,
        "Entra-only directories grant without opt-in",
        Instant::now(),
        &grants,
    )
    .await;

    //    eve points contoso at an Entra tenant of her own and provisions herself with its token.
    let (contoso_oid, contoso_group) = groups["contoso"].clone();
    dirs_as_eve
        .patch(
            "contoso",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"auth": {"entraToken": {"tenantId": EVE_TENANT}}}})),
        )
        .await
        .expect("edit may change a ScimDirectory");
    let eve_jwt = issuer.mint(0, &valid_claims(EVE_TENANT));
    let eve_entra = EntraClient::new(
        &stack.base_url(&ns, "contoso"),
        &eve_jwt,
        Dialect::Compliant,
    );
    let eve_id = eventually("contoso accepts eve's tenant", ACCESS_TIMEOUT, || async {
        eve_entra.provision_user(&eve_user, None).await.ok()
    })
    .await;
    eve_entra
        .add_members(&contoso_group, &[eve_id])
        .await
        .unwrap();
    create_binding("contoso-w", "contoso", &contoso_oid, &witness[1], true).await;
    access_follows(
        plane,
        "the operator processed eve's SCIM writes to contoso",
        Instant::now(),
        &[(eve_subject.clone(), witness[1].as_str(), true)],
    )
    .await;
    never_edits(
        plane,
        &stack,
        &eve_subject,
        &team_a,
        Duration::from_secs(3),
        "tenant switched",
    )
    .await;
    ready_reason_is(&bindings, &stack, "contoso", "False", "DirectoryChanged").await;
    access_follows(
        plane,
        "a re-configured directory revokes",
        Instant::now(),
        &[(subject(1), team_a.as_str(), false)],
    )
    .await;

    // 3. eve deletes northwind and creates it again exactly as it was (its kept users and
    //    groups are adopted): nothing is bound until the binding's author acknowledges it.
    let (northwind_oid, northwind_group) = groups["northwind"].clone();
    let uid_before = dirs_as_eve.get("northwind").await.unwrap().metadata.uid;
    dirs_as_eve
        .delete("northwind", &DeleteParams::default())
        .await
        .expect("edit may delete a ScimDirectory");
    eventually("northwind is gone", Duration::from_secs(60), || async {
        dirs_as_eve
            .get_opt("northwind")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    dirs_as_eve
        .create(
            &PostParams::default(),
            &ScimDirectory::new("northwind", entra_only(NORTHWIND_APP_ID)),
        )
        .await
        .expect("edit may create a ScimDirectory");
    ready_reason_is(&bindings, &stack, "northwind", "False", "DirectoryChanged").await;
    access_follows(
        plane,
        "a re-created directory revokes",
        Instant::now(),
        &[(subject(2), team_a.as_str(), false)],
    )
    .await;
    let pinned = bindings.get("northwind").await.unwrap().status.unwrap();
    assert_eq!(pinned.directory.map(|d| d.uid), uid_before);
    //    Then she opens it to the bearer token she can read and provisions herself.
    dirs_as_eve
        .patch(
            "northwind",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"auth": {"methods": ["EntraToken", "BearerToken"]}}})),
        )
        .await
        .unwrap();
    let (_, token) = ready_directory(&as_eve, &ns, "northwind", Duration::from_secs(60))
        .await
        .unwrap();
    let eve_entra = EntraClient::new(
        &stack.base_url(&ns, "northwind"),
        &token,
        Dialect::Compliant,
    );
    let eve_id = eventually(
        "northwind accepts the bearer token",
        ACCESS_TIMEOUT,
        || async { eve_entra.provision_user(&eve_user, None).await.ok() },
    )
    .await;
    eve_entra
        .add_members(&northwind_group, &[eve_id])
        .await
        .unwrap();
    create_binding(
        "northwind-w",
        "northwind",
        &northwind_oid,
        &witness[2],
        true,
    )
    .await;
    access_follows(
        plane,
        "the operator processed eve's SCIM writes to northwind",
        Instant::now(),
        &[(eve_subject.clone(), witness[2].as_str(), true)],
    )
    .await;
    never_edits(
        plane,
        &stack,
        &eve_subject,
        &team_a,
        Duration::from_secs(3),
        "re-created and opened",
    )
    .await;
    // Acknowledging it (a spec write the admission policy checks) does not waive the opt-in
    // that a Secret-held credential needs.
    bindings
        .patch(
            "northwind",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"directoryAcknowledgement": "re-created"}})),
        )
        .await
        .unwrap();
    ready_reason_is(
        &bindings,
        &stack,
        "northwind",
        "False",
        "DirectoryCredentialShared",
    )
    .await;
    never_edits(
        plane,
        &stack,
        &eve_subject,
        &team_a,
        Duration::from_secs(1),
        "acknowledged",
    )
    .await;
    assert!(!can_edit(plane, &subject(2), &team_a));

    // The opt-in and the acknowledgement are spec writes: mallory cannot set them.
    for change in [
        json!({"spec": {"trustDirectorySecretReaders": true}}),
        json!({"spec": {"directoryAcknowledgement": "mine"}}),
    ] {
        match as_mallory
            .patch("northwind", &PatchParams::default(), &Patch::Merge(&change))
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("may not bind") => {
                println!("refused as expected: {}", s.message)
            }
            other => panic!("{change}: {other:?}"),
        }
    }

    plane
        .kubectl()
        .args(["delete", "--ignore-not-found", "-f"])
        .arg(&manifests)
        .output()
        .unwrap();
    drop(stack);
}

/// Polls `check` every 250 ms for at most `timeout`; on timeout, fails with the components'
/// logs.
async fn within<T, F, Fut>(stack: &Stack, what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("{what} did not happen within {timeout:?}\n{}", stack.logs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A new operator process for `stack`, with the flags `Stack::start` gives it plus `extra`.
fn operator_process(
    stack: &Stack,
    ns: &str,
    extra: &[&str],
    log: &std::path::Path,
) -> ManagedProcess {
    let plane = ControlPlane::shared();
    let mut cmd = std::process::Command::new(workspace_binary("kube-scim-operator").unwrap());
    cmd.env("KUBECONFIG", plane.kubeconfig())
        .env("KUBE_SCIM_LOG_FORMAT", "text")
        .arg(format!(
            "--metrics-bind-address=127.0.0.1:{}",
            free_port().unwrap()
        ))
        .arg(format!("--lease-namespace={ns}"))
        .arg(format!("--server-service-namespace={ns}"))
        .arg(format!("--watch-namespaces={ns}"))
        .arg("--verifier-key-dir")
        .arg(stack.operator_keys.path())
        .arg("--verifier-key-reload-interval=1s")
        .args(StackOptions::new(ns).operator_args)
        .args(extra);
    ManagedProcess::spawn_command("operator", cmd, log).unwrap()
}

/// Subject names per managed RoleBinding of `ns`.
async fn subjects_by_binding(kube: &Client, ns: &str) -> BTreeMap<String, Vec<String>> {
    Api::<RoleBinding>::namespaced(kube.clone(), ns)
        .list(&ListParams::default().labels("kubescim.io/group-binding-uid"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|rb| {
            (
                rb.metadata.name.unwrap_or_default(),
                rb.subjects
                    .unwrap_or_default()
                    .into_iter()
                    .map(|s| s.name)
                    .collect(),
            )
        })
        .collect()
}

/// Issue 27, defect 0: with several ScimGroupBindings present when the operator started, most
/// were never reconciled again (each reconcile awaited the watch caches' readiness, whose
/// future wakes only one waiter), not even to revoke, and SIGTERM then hung. Here the operator
/// starts 10 times with 20 bindings present; each time every binding follows a membership
/// change (one member added, one removed) within seconds, and the operator exits promptly on
/// SIGTERM.
#[tokio::test]
async fn twenty_bindings_follow_membership_across_ten_operator_restarts() {
    const BINDINGS: usize = 20;
    const RESTARTS: usize = 10;
    let plane = ControlPlane::shared();
    let kube = plane.client().await.unwrap();
    let ns = plane.namespace("gb-restart").await.unwrap();
    let mut options = StackOptions::new(&ns);
    let extra = ["--group-binding-allowed-cluster-roles=view,edit"];
    options
        .operator_args
        .extend(extra.iter().map(|a| a.to_string()));
    let mut stack = Stack::start(plane, options).await.unwrap();
    let entra = directory(&kube, &stack, &ns, "contoso").await;
    let mut ids = Vec::new();
    for n in 0..=RESTARTS {
        ids.push(
            entra
                .provision_user(&EntraUser::numbered(300 + n), None)
                .await
                .unwrap(),
        );
    }
    let group_oid = "eeeeeeee-0000-4000-8000-000000000001";
    let group = entra.provision_group("Restarts", group_oid).await.unwrap();
    entra
        .add_members(&group, std::slice::from_ref(&ids[0]))
        .await
        .unwrap();
    let bindings: Api<ScimGroupBinding> = Api::namespaced(kube.clone(), &ns);
    for b in 0..BINDINGS {
        bindings
            .create(
                &PostParams::default(),
                &ScimGroupBinding::new(&format!("b{b:02}"), binding_spec(group_oid, "view", &[])),
            )
            .await
            .unwrap();
    }
    let every_binding_holds = |member: usize| {
        let kube = kube.clone();
        let ns = ns.clone();
        async move {
            let found = subjects_by_binding(&kube, &ns).await;
            let expected = vec![subject(300 + member)];
            (found.len() == BINDINGS && found.values().all(|s| *s == expected)).then_some(())
        }
    };
    within(
        &stack,
        "every binding holds the first member",
        Duration::from_secs(60),
        || every_binding_holds(0),
    )
    .await;

    let log = stack.operator.log().to_path_buf();
    let mut exits = Vec::new();
    let mut latencies = Vec::new();
    for round in 1..=RESTARTS {
        let t = Instant::now();
        stack.operator.stop();
        let exit = t.elapsed();
        assert!(
            exit < Duration::from_secs(9),
            "start {round}: the operator took {exit:?} to exit on SIGTERM\n{}",
            stack.logs()
        );
        exits.push(exit);
        stack.operator = operator_process(&stack, &ns, &extra, &log);
        // One PATCH: the next member in, the previous one out (a grant and a revocation).
        let t = Instant::now();
        entra
            .patch_group(
                &group,
                vec![
                    json!({"op": "add", "path": "members", "value": [{"value": ids[round]}]}),
                    json!({"op": "remove", "path": format!("members[value eq \"{}\"]", ids[round - 1])}),
                ],
            )
            .await
            .unwrap();
        within(
            &stack,
            &format!("start {round}: all {BINDINGS} bindings follow the membership change"),
            ACCESS_TIMEOUT,
            || every_binding_holds(round),
        )
        .await;
        latencies.push(t.elapsed());
    }
    let t = Instant::now();
    stack.operator.stop();
    exits.push(t.elapsed());
    assert!(*exits.last().unwrap() < Duration::from_secs(9), "{exits:?}");
    println!(
        "{RESTARTS} operator starts with {BINDINGS} bindings: every binding followed within {:?} (max), exits on SIGTERM within {:?} (max)",
        latencies.iter().max().unwrap(),
        exits.iter().max().unwrap()
    );
}

/// `kubectl auth can-i create deployments.apps -n <ns> --as <user> --as-group <group>...`.
fn can_edit_as(plane: &ControlPlane, user: &str, groups: &[&str], ns: &str) -> bool {
    let mut cmd = plane.kubectl();
    cmd.args([
        "auth",
        "can-i",
        "create",
        "deployments.apps",
        "-n",
        ns,
        "--as",
        user,
    ]);
    for group in groups {
        cmd.args(["--as-group", group]);
    }
    let out = cmd.output().expect("kubectl runs");
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

async fn event_reasons_of(kube: &Client, ns: &str, object: &str) -> Vec<String> {
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(kube.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object))
        .filter_map(|e| e.reason)
        .collect()
}

/// Issue 27, defect 1: a user named like a built-in identity, or a group renamed to one, is
/// never rendered into a RoleBinding (counted in status, a Warning event), however the name is
/// disguised; a group renamed to `system:authenticated` does not hand the role to everyone.
#[tokio::test]
async fn built_in_identities_never_become_subjects() {
    let plane = ControlPlane::shared();
    let kube = plane.client().await.unwrap();
    let ns = plane.namespace("gb-builtin").await.unwrap();
    let mut options = StackOptions::new(&ns);
    options
        .operator_args
        .push("--group-binding-allowed-cluster-roles=view,edit".into());
    let stack = Stack::start(plane, options).await.unwrap();
    let entra = directory(&kube, &stack, &ns, "contoso").await;

    let service_account = format!("system:serviceaccount:{ns}:default");
    let names = [
        "alice@contoso.example".to_string(),
        "system:masters".to_string(),
        service_account.clone(),
        "System:Anonymous".to_string(),
        " system:kube-controller-manager".to_string(),
    ];
    let mut ids = Vec::new();
    for (n, name) in names.iter().enumerate() {
        let user = EntraUser {
            upn: name.clone(),
            ..EntraUser::numbered(400 + n)
        };
        ids.push(entra.provision_user(&user, None).await.unwrap());
    }
    let users_oid = "ffffffff-0000-4000-8000-000000000001";
    let users_group = entra
        .provision_group("Builtin-Users", users_oid)
        .await
        .unwrap();
    entra.add_members(&users_group, &ids).await.unwrap();
    let mut by_name = binding_spec(users_oid, "edit", &[]);
    by_name.subject.name = Some("{{userName}}".into());
    let bindings: Api<ScimGroupBinding> = Api::namespaced(kube.clone(), &ns);
    bindings
        .create(
            &PostParams::default(),
            &ScimGroupBinding::new("by-name", by_name),
        )
        .await
        .unwrap();
    within(&stack, "alice is bound", ACCESS_TIMEOUT, || async {
        can_edit(plane, "alice@contoso.example", &ns).then_some(())
    })
    .await;
    // Rendered in the same write as alice: nobody else is a subject.
    let subjects: Vec<String> = subjects_by_binding(&kube, &ns)
        .await
        .into_values()
        .flatten()
        .collect();
    assert_eq!(subjects, ["alice@contoso.example"]);
    for name in &names[1..] {
        assert!(!can_edit(plane, name, &ns), "{name:?} may edit");
    }
    within(
        &stack,
        "status counts four refused names",
        ACCESS_TIMEOUT,
        || async {
            let status = bindings.get("by-name").await.ok()?.status?;
            (status.members == Some(1) && status.refused_subjects == Some(4)).then_some(())
        },
    )
    .await;
    assert!(!can_edit(plane, &service_account, &ns));
    within(
        &stack,
        "a Warning event SubjectsRefused",
        ACCESS_TIMEOUT,
        || async {
            event_reasons_of(&kube, &ns, "by-name")
                .await
                .iter()
                .any(|r| r == "SubjectsRefused")
                .then_some(())
        },
    )
    .await;

    // A group subject: first a real group, then the group renamed (by the identity provider,
    // or anyone holding the directory's token) to a built-in group.
    let group_oid = "ffffffff-0000-4000-8000-000000000002";
    let platform = entra.provision_group("Platform", group_oid).await.unwrap();
    let mut as_group = binding_spec(group_oid, "edit", &[]);
    as_group.subject = SubjectMapping {
        kind: kube_scim_crds::group_binding::SubjectKind::Group,
        name: Some("{{displayName}}".into()),
    };
    bindings
        .create(
            &PostParams::default(),
            &ScimGroupBinding::new("as-group", as_group),
        )
        .await
        .unwrap();
    let outsider = format!("outsider-{ns}");
    within(
        &stack,
        "the group Platform is bound",
        ACCESS_TIMEOUT,
        || async { can_edit_as(plane, &outsider, &["Platform"], &ns).then_some(()) },
    )
    .await;
    assert!(!can_edit(plane, &outsider, &ns));
    for renamed in ["system:authenticated", "System:Masters"] {
        entra.rename_group(&platform, renamed).await.unwrap();
        within(
            &stack,
            &format!("renamed to {renamed}: the group Platform is bound no more"),
            ACCESS_TIMEOUT,
            || async {
                let found = subjects_by_binding(&kube, &ns).await;
                (!found.values().flatten().any(|s| s == "Platform")).then_some(())
            },
        )
        .await;
        // Never, at any moment, may an arbitrary authenticated user edit.
        for _ in 0..8 {
            assert!(
                !can_edit(plane, &outsider, &ns),
                "{renamed}: every authenticated user may edit"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let found = subjects_by_binding(&kube, &ns).await;
        assert!(
            !found.keys().any(|k| k.ends_with(":as-group")),
            "the group's RoleBinding is removed: {found:?}"
        );
        within(
            &stack,
            &format!("renamed to {renamed}: Ready False, SubjectRefused"),
            ACCESS_TIMEOUT,
            || async {
                let b = bindings.get("as-group").await.ok()?;
                let refused = b.status.as_ref()?.refused_subjects == Some(1);
                (ready_reason(&b)? == ("False".into(), "SubjectRefused".into()) && refused)
                    .then_some(())
            },
        )
        .await;
    }
    drop(stack);
}

/// Issue 27, defect 5: while the deletion guard holds a deactivation or a deletion, the user
/// (or every member of the group) loses access at once: the guard protects data, not access.
/// Discarding the hold gives it back (the objects were kept as they were).
#[tokio::test]
async fn a_held_deprovisioning_removes_access_at_once() {
    let plane = ControlPlane::shared();
    let kube = plane.client().await.unwrap();
    let ns = plane.namespace("gb-held").await.unwrap();
    let mut options = StackOptions::new(&ns);
    options
        .operator_args
        .push("--group-binding-allowed-cluster-roles=view,edit".into());
    let stack = Stack::start(plane, options).await.unwrap();
    // The guard holds every deletion or deactivation after the first within the hour.
    let spec = ScimDirectorySpec {
        deletion_guard: kube_scim_crds::DeletionGuardSpec {
            max_operations: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let directories: Api<ScimDirectory> = Api::namespaced(kube.clone(), &ns);
    directories
        .create(&PostParams::default(), &ScimDirectory::new("contoso", spec))
        .await
        .unwrap();
    let (_, token) = stack.ready_directory(&kube, &ns, "contoso").await;
    let entra = EntraClient::new(&stack.base_url(&ns, "contoso"), &token, Dialect::Compliant);

    let mut ids = Vec::new();
    for n in 500..505 {
        ids.push(
            entra
                .provision_user(&EntraUser::numbered(n), None)
                .await
                .unwrap(),
        );
    }
    let guarded_oid = "99999999-0000-4000-8000-000000000001";
    let ops_oid = "99999999-0000-4000-8000-000000000002";
    let guarded = entra.provision_group("Guarded", guarded_oid).await.unwrap();
    let ops = entra.provision_group("Ops", ops_oid).await.unwrap();
    entra
        .add_members(
            &guarded,
            &[
                ids[0].clone(),
                ids[1].clone(),
                ids[2].clone(),
                ids[4].clone(),
            ],
        )
        .await
        .unwrap();
    entra
        .add_members(&ops, std::slice::from_ref(&ids[3]))
        .await
        .unwrap();
    let bindings: Api<ScimGroupBinding> = Api::namespaced(kube.clone(), &ns);
    for (name, oid) in [("guarded", guarded_oid), ("ops", ops_oid)] {
        bindings
            .create(
                &PostParams::default(),
                &ScimGroupBinding::new(name, binding_spec(oid, "edit", &[])),
            )
            .await
            .unwrap();
    }
    let n = ns.as_str();
    access_follows(
        plane,
        "every member may edit",
        Instant::now(),
        &(500..505)
            .map(|k| (subject(k), n, true))
            .collect::<Vec<_>>(),
    )
    .await;

    // The first deactivation is within the limit and applied.
    entra.set_active(&ids[0], false).await.unwrap();
    access_follows(
        plane,
        "deactivated",
        Instant::now(),
        &[(subject(500), n, false)],
    )
    .await;
    // Every later one is held: the user stays active, marked; access goes at once anyway.
    let users: Api<ScimUser> = Api::namespaced(kube.clone(), &ns);
    let t = Instant::now();
    entra.set_active(&ids[1], false).await.unwrap();
    let held = users.get(&ids[1]).await.unwrap();
    assert_eq!(
        held.metadata
            .labels
            .as_ref()
            .unwrap()
            .get("kubescim.io/held")
            .map(String::as_str),
        Some("deactivate"),
        "the guard holds the second deactivation"
    );
    assert_eq!(held.status.as_ref().map(|s| s.active), Some(true));
    access_follows(plane, "held deactivation", t, &[(subject(501), n, false)]).await;
    let t = Instant::now();
    entra.delete("Users", &ids[2]).await.unwrap();
    let held = users.get(&ids[2]).await.unwrap();
    assert_eq!(
        held.metadata
            .labels
            .as_ref()
            .unwrap()
            .get("kubescim.io/held")
            .map(String::as_str),
        Some("delete")
    );
    access_follows(plane, "held user deletion", t, &[(subject(502), n, false)]).await;
    let t = Instant::now();
    entra.delete("Groups", &ops).await.unwrap();
    access_follows(plane, "held group deletion", t, &[(subject(503), n, false)]).await;
    assert!(
        can_edit(plane, &subject(504), n),
        "others keep their access"
    );
    within(
        &stack,
        "status counts the held members",
        ACCESS_TIMEOUT,
        || async {
            let status = bindings.get("guarded").await.ok()?.status?;
            (status.held_members == Some(2) && status.members == Some(1)).then_some(())
        },
    )
    .await;

    // Discarding the hold keeps the objects as they were: access comes back.
    directories
        .patch(
            "contoso",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"kubescim.io/held-operations": "discard"}}}),
            ),
        )
        .await
        .unwrap();
    access_follows(
        plane,
        "hold discarded",
        Instant::now(),
        &[
            (subject(501), n, true),
            (subject(502), n, true),
            (subject(503), n, true),
            (subject(500), n, false),
        ],
    )
    .await;
    drop(stack);
}

/// Sums the sizes of the RoleBindings written (ADDED and MODIFIED events, as the apiserver
/// stores them) in `namespaces` until dropped: the bytes etcd's history grows by.
struct WrittenBytes {
    total: std::sync::Arc<std::sync::atomic::AtomicU64>,
    writes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl WrittenBytes {
    async fn watch(kube: &Client, namespaces: &[String]) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let api = Api::<RoleBinding>::all(kube.clone());
        let params = ListParams::default().labels("kubescim.io/group-binding-uid");
        let version = api
            .list_metadata(&params)
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap();
        let stream = api
            .watch(
                &kube::api::WatchParams::default()
                    .labels("kubescim.io/group-binding-uid")
                    .timeout(290),
                &version,
            )
            .await
            .unwrap();
        let (total, writes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (t, w, namespaces) = (total.clone(), writes.clone(), namespaces.to_vec());
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if let Ok(kube::api::WatchEvent::Added(rb) | kube::api::WatchEvent::Modified(rb)) =
                    event
                    && namespaces.contains(rb.metadata.namespace.as_ref().unwrap())
                {
                    t.fetch_add(
                        serde_json::to_vec(&rb).unwrap().len() as u64,
                        Ordering::SeqCst,
                    );
                    w.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Self {
            total,
            writes,
            task,
        }
    }

    fn read(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        (
            self.total.load(Ordering::SeqCst),
            self.writes.load(Ordering::SeqCst),
        )
    }
}

impl Drop for WrittenBytes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether `name` is a subject of the managed RoleBindings in each of `namespaces`.
async fn bound_in(kube: &Client, namespaces: &[String], name: &str) -> Vec<bool> {
    let mut found = Vec::new();
    for ns in namespaces {
        let (names, _) = bound_subjects(kube, ns).await;
        found.push(names.iter().any(|n| n == name));
    }
    found
}

/// Issue 27, defect 6: one member change rewrote the part holding that member in every target
/// namespace, so a SCIM credential holder toggling a member in and out could fill etcd's
/// history. A 3,000-member group is bound into 10 namespaces, one member is toggled 10 times,
/// and the bytes of RoleBindings the apiserver stored are counted (from its watch): with the
/// write budget they stay within burst + rate × elapsed + one removal (removals are never held
/// back); a deactivation through SCIM still leaves the RoleBindings within seconds while
/// additions wait. `GROUP_BINDING_WRITE_BUDGET=0` runs it without the budget (the figures
/// before the fix; the bound then fails).
#[tokio::test]
async fn toggling_a_member_writes_within_the_budget_and_removal_stays_immediate() {
    const TARGETS: usize = 10;
    const TOGGLES: usize = 10;
    const MIB: u64 = 1024 * 1024;
    let members = std::env::var("GROUP_BINDING_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let rate: u64 = std::env::var("GROUP_BINDING_WRITE_BUDGET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4 * MIB);
    let burst: u64 = 2 * MIB;
    let plane = ControlPlane::shared();
    let kube = plane.client().await.unwrap();
    let ns = plane.namespace("gb-amplify").await.unwrap();
    let mut targets = Vec::new();
    for _ in 0..TARGETS {
        targets.push(plane.namespace("gb-amplify-t").await.unwrap());
    }
    let mut options = StackOptions::new(&ns);
    // The targets are watched: the operator knows what each binding holds.
    options.watch_namespaces = std::iter::once(ns.clone())
        .chain(targets.iter().cloned())
        .collect::<Vec<_>>()
        .join(",");
    options.operator_args.extend([
        "--group-binding-allowed-cluster-roles=view,edit".to_string(),
        format!("--group-binding-write-budget={rate}"),
        format!("--group-binding-write-burst={burst}"),
    ]);
    let stack = Stack::start(plane, options).await.unwrap();
    let entra = directory(&kube, &stack, &ns, "contoso").await;
    let group_oid = "cccccccc-0000-4000-8000-000000000006";
    let group = entra.provision_group("All-Staff", group_oid).await.unwrap();
    direct_members(&kube, &ns, &group, members).await;
    // Two SCIM users: one toggled, one deactivated at the end.
    let toggled = entra
        .provision_user(&EntraUser::numbered(1), None)
        .await
        .unwrap();
    let leaver = entra
        .provision_user(&EntraUser::numbered(2), None)
        .await
        .unwrap();
    entra
        .add_members(&group, std::slice::from_ref(&leaver))
        .await
        .unwrap();

    let target_refs: Vec<&str> = targets.iter().map(String::as_str).collect();
    Api::<ScimGroupBinding>::namespaced(kube.clone(), &ns)
        .create(
            &PostParams::default(),
            &ScimGroupBinding::new("all-staff", binding_spec(group_oid, "view", &target_refs)),
        )
        .await
        .unwrap();
    let sizes = within(
        &stack,
        "every member bound in every target",
        Duration::from_secs(180),
        || async {
            let mut sizes = Vec::new();
            for t in &targets {
                let (names, s) = bound_subjects(&kube, t).await;
                if names.len() != members + 1 {
                    return None;
                }
                sizes.extend(s);
            }
            Some(sizes)
        },
    )
    .await;
    let bound_bytes: usize = sizes.iter().sum();
    println!(
        "{} members bound into {TARGETS} namespaces: {} RoleBindings, {bound_bytes} bytes",
        members + 1,
        sizes.len()
    );
    // The initial grant may have left the bucket in debt; let it refill so the toggles start
    // from a full bucket (the worst case).
    if rate > 0 {
        tokio::time::sleep(Duration::from_secs_f64(
            (bound_bytes as f64 / rate as f64 * 60.0).min(150.0),
        ))
        .await;
    }

    let written = WrittenBytes::watch(&kube, &targets).await;
    let started = Instant::now();
    for _ in 0..TOGGLES {
        entra
            .add_members(&group, std::slice::from_ref(&toggled))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        entra
            .remove_members(&group, std::slice::from_ref(&toggled))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let name = subject(1);
    within(
        &stack,
        "the toggled member is gone",
        Duration::from_secs(20),
        || async {
            bound_in(&kube, &targets, &name)
                .await
                .iter()
                .all(|b| !b)
                .then_some(())
        },
    )
    .await;
    // Writes still under way land in the count.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let elapsed = started.elapsed();
    let (bytes, writes) = written.read();
    // One change rewrites one part per namespace: at most the largest part, 10 times.
    let change = *sizes.iter().max().unwrap() as u64 * TARGETS as u64;
    println!(
        "budget {rate} B/min, burst {burst} B: {TOGGLES} toggles (= {} member changes) in {:.1} s wrote {writes} RoleBindings, {bytes} bytes ({} bytes per member change; one change rewrites about {change} bytes)",
        2 * TOGGLES,
        elapsed.as_secs_f64(),
        bytes / (2 * TOGGLES) as u64
    );
    // What the budget allows over the window, plus one removal (never held back); without
    // the budget, the bound of the default test budget.
    let bound_rate = if rate == 0 { 4 * MIB } else { rate };
    let allowed = burst + (bound_rate as f64 * elapsed.as_secs_f64() / 60.0) as u64 + change;
    assert!(
        bytes <= allowed,
        "wrote {bytes} bytes over {elapsed:?}, the budget allows {allowed}\n{}",
        stack.logs()
    );

    // The budget is spent now; a deactivation still removes access at once.
    let leaver_name = subject(2);
    assert!(
        bound_in(&kube, &targets, &leaver_name)
            .await
            .iter()
            .all(|b| *b)
    );
    let t = Instant::now();
    entra.set_active(&leaver, false).await.unwrap();
    within(
        &stack,
        "the deactivated member is gone",
        Duration::from_secs(15),
        || async {
            bound_in(&kube, &targets, &leaver_name)
                .await
                .iter()
                .all(|b| !b)
                .then_some(())
        },
    )
    .await;
    println!(
        "deactivation to gone from {TARGETS} namespaces: {} ms",
        t.elapsed().as_millis()
    );
    drop(stack);
}
