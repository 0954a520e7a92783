//! The test node itself: a pod runs on it under the `restricted` standard, reaches the
//! apiserver through the `kubernetes` Service with its own token, and stopping the node leaves
//! nothing behind on the host.

use std::process::Command;
use std::time::Instant;

use kube_scim_tests::must_succeed;
use kube_scim_tests::node::{KUBECTL_IMAGE, NODE_NAME, NodeCluster, restricted_container};
use serde_json::json;

fn ok(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&must_succeed(cmd).stdout).into_owned()
}

#[test]
fn a_pod_reaches_the_apiserver_through_its_service_and_the_node_leaves_nothing_behind() {
    let started = Instant::now();
    let cluster = NodeCluster::start().expect("the node cluster starts");
    eprintln!("node Ready in {:?}", started.elapsed());
    let plane = cluster.plane();
    cluster.import_kubectl_image().unwrap();

    let nodes = ok(plane.kubectl().args(["get", "nodes", "-o", "name"]));
    assert_eq!(nodes.trim(), format!("node/{NODE_NAME}"));
    let (phase, log) = cluster.run_pod(
        "default",
        "whoami",
        json!({
            "containers": [{
                "name": "kubectl",
                "image": KUBECTL_IMAGE,
                "imagePullPolicy": "Never",
                "args": ["get", "--raw", "/version"],
                "securityContext": restricted_container(),
            }],
        }),
    );
    assert_eq!(phase, "Succeeded", "{log}");
    assert!(
        log.contains(kube_scim_tests::KUBERNETES_VERSION),
        "the pod read /version through the kubernetes Service: {log}"
    );

    cluster.stop();
    let left = cluster.leftovers();
    assert!(left.is_empty(), "left behind: {left:#?}");
}
