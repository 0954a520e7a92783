//! kube-scim as users deploy it: the images built by `images/build.sh`, imported into a real
//! node's containerd, and the Helm chart's pods running there under the `restricted` Pod
//! Security Standard. One test, in order, because each step builds on the last and the node is
//! the host's (one per machine):
//!
//! 1. each image runs `--version` as its own non-root user with a read-only root filesystem,
//!    and is small;
//! 2. `helm install`: operator (two replicas) and server pods Running and Ready;
//! 3. the sample ScimDirectory becomes Ready; the Entra suite passes through the server's Service;
//! 4. deleting the leader operator pod hands over, and a change is reconciled within 30 s;
//! 5. `helm upgrade` rolls the server pods under 25 requests/s with no failed request;
//! 6. a pod with the server's ServiceAccount token cannot read Secrets;
//! 7. `helm uninstall` keeps the CRDs and every ScimUser;
//! 8. stopping the node leaves no process, mount, cgroup, iptables rule or bridge behind.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use kube_scim_crds::{ScimDirectory, ScimUser};
use kube_scim_tests::entra_suite::{self, ScimTarget};
use kube_scim_tests::node::chart::{
    self, NAMESPACE, OPERATOR, RELEASE, SERVER, diagnostics, restricted_namespace,
};
use kube_scim_tests::node::{KUBECTL_IMAGE, NodeCluster, restricted_container, run_on_node};
use kube_scim_tests::procs::LogsOnFailure;
use kube_scim_tests::stack::ready_directory;
use kube_scim_tests::{ControlPlane, eventually, must_succeed, repo_root};
use serde_json::json;

/// Goal for each image (a static binary, a CA bundle and two passwd lines).
const IMAGE_SIZE_LIMIT: u64 = 25 * 1024 * 1024;

#[test]
fn the_chart_runs_as_pods_on_a_real_node() {
    run_on_node(deploy_and_operate);
}

async fn deploy_and_operate(cluster: &NodeCluster) {
    let plane = cluster.plane();
    let kube = plane.client().await.unwrap();
    // Any failed step below prints the pods' logs (the Entra suite's assertions do not).
    let _logs = LogsOnFailure::new(|| diagnostics(plane));

    let images = chart::build_and_import_images(cluster);
    for (image, archive) in &images {
        let size = std::fs::metadata(archive).unwrap().len();
        eprintln!("{image}: {:.1} MB", size as f64 / 1e6);
        assert!(
            size < IMAGE_SIZE_LIMIT,
            "{image} is {size} bytes, over the {IMAGE_SIZE_LIMIT}-byte goal"
        );
    }
    images_run_as_non_root_with_a_read_only_root(cluster, &images).await;

    let started = Instant::now();
    install_the_chart(plane);
    eprintln!("helm install: pods Ready in {:?}", started.elapsed());

    let target = ThroughTheService::new(&kube, plane).await;
    the_sample_directory_becomes_ready_and_the_entra_suite_passes(plane, &kube, &target).await;
    the_standby_operator_takes_over_from_a_deleted_leader(plane, &kube).await;
    an_upgrade_rolls_the_servers_without_a_failed_request(plane, &kube, &target).await;
    the_servers_token_cannot_read_secrets(cluster).await;
    uninstall_keeps_crds_and_users(plane, &kube).await;
}

async fn images_run_as_non_root_with_a_read_only_root(
    cluster: &NodeCluster,
    images: &[(String, PathBuf)],
) {
    let plane = cluster.plane();
    restricted_namespace(plane, "image-checks");
    for (image, _) in images {
        let binary = image
            .rsplit('/')
            .next()
            .and_then(|n| n.split(':').next())
            .unwrap();
        let (phase, log) = cluster.run_pod(
            "image-checks",
            binary,
            json!({
                "containers": [{
                    "name": "version",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "args": ["--version"],
                    "securityContext": restricted_container(),
                }],
            }),
        );
        assert_eq!(phase, "Succeeded", "{image} --version: {log}");
        assert!(
            log.contains(binary) && log.contains(env!("CARGO_PKG_VERSION")),
            "{image} --version printed {log:?}"
        );
    }
    // The kubelet ran both as their image's user; that user is 65532.
    let out = must_succeed(plane.kubectl().args([
        "get",
        "pods",
        "-n",
        "image-checks",
        "-o",
        "jsonpath={.items[*].status.containerStatuses[*].user.linux.uid}",
    ]));
    let uids = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        uids.split_whitespace().collect::<Vec<_>>(),
        ["65532", "65532"],
        "{uids}"
    );
}

fn install_the_chart(plane: &ControlPlane) {
    chart::install(
        plane,
        &[
            "operator.replicas=2",
            "ingressDefaults.host=scim.kube-scim.test",
        ],
    );
    let out = must_succeed(plane.kubectl().args([
        "get",
        "pods",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={range .items[*]}{.metadata.labels.app\\.kubernetes\\.io/component}={.status.phase} {end}",
    ]));
    let pods = String::from_utf8_lossy(&out.stdout).to_string();
    let running = |component: &str| {
        pods.split_whitespace()
            .filter(|p| *p == format!("{component}=Running"))
            .count()
    };
    assert_eq!(running("operator"), 2, "{pods}");
    assert_eq!(running("server"), 2, "{pods}");
}

/// The server's Service, called at its ClusterIP from the host: kube-proxy's rules carry each
/// request to a server pod on the node's bridge.
struct ThroughTheService<'a> {
    cluster_ip: String,
    plane: &'a ControlPlane,
}

impl<'a> ThroughTheService<'a> {
    async fn new(kube: &Client, plane: &'a ControlPlane) -> Self {
        let service = Api::<Service>::namespaced(kube.clone(), NAMESPACE)
            .get(SERVER)
            .await
            .unwrap();
        let cluster_ip = service.spec.unwrap().cluster_ip.unwrap();
        ThroughTheService { cluster_ip, plane }
    }
}

impl ScimTarget for ThroughTheService<'_> {
    fn base_url(&self, namespace: &str, directory: &str) -> String {
        format!("http://{}/scim/v2/{namespace}/{directory}", self.cluster_ip)
    }

    fn logs(&self) -> String {
        diagnostics(self.plane)
    }
}

async fn the_sample_directory_becomes_ready_and_the_entra_suite_passes(
    plane: &ControlPlane,
    kube: &Client,
    target: &ThroughTheService<'_>,
) {
    must_succeed(
        plane
            .kubectl()
            .args(["apply", "-f"])
            .arg(repo_root().join("examples/scimdirectory.yaml")),
    );
    let (endpoint, token) = ready_directory(kube, "default", "contoso", Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", target.logs()));
    assert!(endpoint.contains("/scim/v2/default/contoso"), "{endpoint}");
    // Each server replica learns of the directory (and its token) from its own watch: the
    // Service may pick one that has not yet, for milliseconds after the operator's Ready.
    let http = kube_scim_tests::http_client();
    let users = format!("{}/Users", target.base_url("default", "contoso"));
    eventually(
        "the sample directory answers 200 through the Service",
        Duration::from_secs(10),
        || async {
            let answer = http.get(&users).bearer_auth(&token).send().await.ok()?;
            (answer.status() == 200).then_some(())
        },
    )
    .await;

    let started = Instant::now();
    let mut namespaces = Vec::new();
    for _ in 0..5 {
        namespaces.push(plane.namespace("entra-on-node").await.unwrap());
    }
    futures::join!(
        entra_suite::test_connection_answers_an_empty_list_and_refuses_wrong_tokens(
            kube,
            &namespaces[0],
            target
        ),
        entra_suite::user_cycle_in_both_dialects(kube, &namespaces[1], target),
        entra_suite::group_cycle_in_both_dialects(kube, &namespaces[2], target),
        entra_suite::on_demand_provisioning_uses_the_legacy_dialect_on_a_flagged_tenant(
            kube,
            &namespaces[3],
            target
        ),
        entra_suite::initial_cycle_of_several_tenants_then_a_restarted_job_creates_exactly_the_expected_objects(
            kube,
            &namespaces[4],
            target
        ),
    );
    eprintln!("Entra suite through the Service: {:?}", started.elapsed());
}

async fn lease_holder(kube: &Client) -> Option<String> {
    Api::<Lease>::namespaced(kube.clone(), NAMESPACE)
        .get_opt(OPERATOR)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

async fn the_standby_operator_takes_over_from_a_deleted_leader(
    plane: &ControlPlane,
    kube: &Client,
) {
    let leader = eventually("an operator leads", Duration::from_secs(60), || {
        lease_holder(kube)
    })
    .await;
    must_succeed(
        plane
            .kubectl()
            .args(["delete", "pod", "-n", NAMESPACE, &leader, "--wait=false"]),
    );
    let deleted = Instant::now();

    // The deleted leader may still reconcile during its graceful shutdown, and it releases
    // the Lease before the standby's next retry picks it up: wait for the new holder first,
    // then prove that it reconciles a change.
    let new_leader = eventually(
        "the standby takes the Lease",
        Duration::from_secs(60),
        || async { lease_holder(kube).await.filter(|holder| *holder != leader) },
    )
    .await;
    let took_over = deleted.elapsed();

    let directories: Api<ScimDirectory> = Api::namespaced(kube.clone(), "default");
    let changed = directories
        .patch(
            "contoso",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"displayName": "Contoso after fail-over"}})),
        )
        .await
        .unwrap();
    let generation = changed.metadata.generation.unwrap();
    eventually(
        "the change is reconciled by the new leader",
        Duration::from_secs(30),
        || async {
            let d = directories.get("contoso").await.ok()?;
            let observed = d.status?.observed_generation?;
            (observed >= generation).then_some(())
        },
    )
    .await;
    assert_eq!(
        lease_holder(kube).await.as_deref(),
        Some(new_leader.as_str()),
        "the new leader kept the Lease while it reconciled"
    );
    eprintln!(
        "fail-over: {leader} -> {new_leader} {took_over:?} after the delete, change reconciled {:?} after the delete",
        deleted.elapsed()
    );
}

async fn an_upgrade_rolls_the_servers_without_a_failed_request(
    plane: &ControlPlane,
    kube: &Client,
    target: &ThroughTheService<'_>,
) {
    let (_, token) = ready_directory(kube, "default", "contoso", Duration::from_secs(30))
        .await
        .unwrap();
    let url = format!(
        "{}/Users?filter=userName%20eq%20%22nobody%40contoso.example%22",
        target.base_url("default", "contoso")
    );
    let done = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load = {
        let (done, sent, failed, failures) =
            (done.clone(), sent.clone(), failed.clone(), failures.clone());
        tokio::spawn(async move {
            // 25 requests/s, open loop, bounded to 3 minutes whatever happens.
            let http = kube_scim_tests::http_builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let mut tick = tokio::time::interval(Duration::from_millis(40));
            let stop_at = Instant::now() + Duration::from_secs(180);
            let mut requests = Vec::new();
            while !done.load(Ordering::SeqCst) && Instant::now() < stop_at {
                tick.tick().await;
                let (http, url, token) = (http.clone(), url.clone(), token.clone());
                let (sent, failed, failures) = (sent.clone(), failed.clone(), failures.clone());
                requests.push(tokio::spawn(async move {
                    sent.fetch_add(1, Ordering::SeqCst);
                    let outcome = http.get(&url).bearer_auth(&token).send().await;
                    let problem = match outcome {
                        Ok(r) if r.status() == 200 => None,
                        Ok(r) => Some(format!("status {}", r.status())),
                        Err(e) => Some(format!("{e}")),
                    };
                    if let Some(problem) = problem {
                        failed.fetch_add(1, Ordering::SeqCst);
                        failures.lock().unwrap().push(problem);
                    }
                }));
            }
            for r in requests {
                let _ = r.await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Old pods drain for server.drainSeconds after the rollout reports done; the load stays on
    // until they are gone.
    let rolled = chart::upgrade_and_roll_the_server(
        plane,
        &[
            "--wait",
            "--timeout",
            "5m",
            "--set",
            "server.logLevel=debug",
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    done.store(true, Ordering::SeqCst);
    load.await.unwrap();
    let (sent, failed) = (sent.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    eprintln!("rolling upgrade in {rolled:?}: {sent} requests, {failed} failed");
    assert!(
        sent as f64 >= 25.0 * rolled.as_secs_f64() * 0.8,
        "the load ran at 25/s during the rollout ({sent} in {rolled:?})"
    );
    assert_eq!(
        failed,
        0,
        "requests failed during the rolling upgrade: {:?}",
        failures.lock().unwrap()
    );
}

async fn the_servers_token_cannot_read_secrets(cluster: &NodeCluster) {
    let (phase, log) = cluster.run_pod(
        NAMESPACE,
        "server-token-reads-secrets",
        json!({
            "serviceAccountName": SERVER,
            "automountServiceAccountToken": true,
            "containers": [{
                "name": "kubectl",
                "image": KUBECTL_IMAGE,
                "imagePullPolicy": "Never",
                // The pod's own token (in-cluster configuration), nothing from the host.
                "args": ["get", "scimdirectories.kubescim.io,secrets", "--all-namespaces", "-o", "name"],
                "env": [{"name": "HOME", "value": "/tmp"}],
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                "securityContext": restricted_container(),
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        }),
    );
    assert_eq!(phase, "Failed", "kubectl must fail on Secrets: {log}");
    assert!(
        log.contains("scimdirectory.kubescim.io/contoso"),
        "the token works for what the server may read: {log}"
    );
    assert!(
        log.contains(&format!(
            "User \"system:serviceaccount:{NAMESPACE}:{SERVER}\" cannot list resource \"secrets\""
        )),
        "{log}"
    );
}

async fn uninstall_keeps_crds_and_users(plane: &ControlPlane, kube: &Client) {
    let users: Api<ScimUser> = Api::all(kube.clone());
    let before = users
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    assert!(before > 0, "the Entra suite left users");
    must_succeed(plane.helm().unwrap().args([
        "uninstall",
        RELEASE,
        "--namespace",
        NAMESPACE,
        "--wait",
    ]));
    must_succeed(
        plane
            .kubectl()
            .args(["get", "crd", "scimusers.kubescim.io"]),
    );
    let after = users
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(after, before, "helm uninstall keeps every ScimUser");
}
