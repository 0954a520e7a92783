//! The test node itself: a pod runs on it under the `restricted` standard, reaches the
//! apiserver through the `kubernetes` Service with its own token, and stopping the node leaves
//! nothing behind on the host.

use std::process::Command;
use std::time::{Duration, Instant};

use kube_scim_tests::must_succeed;
use kube_scim_tests::node::{NODE_NAME, NodeCluster, build_static_image};

fn ok(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&must_succeed(cmd).stdout).into_owned()
}

#[test]
fn a_pod_reaches_the_apiserver_through_its_service_and_the_node_leaves_nothing_behind() {
    let started = Instant::now();
    let cluster = NodeCluster::start().expect("the node cluster starts");
    eprintln!("node Ready in {:?}", started.elapsed());
    let plane = cluster.plane();
    let image = "docker.io/kube-scim/test-kubectl:latest";
    let archive = plane.dir().join("kubectl.oci.tar");
    build_static_image(&plane.bin_dir().join("kubectl"), image, &archive).unwrap();
    cluster.import_image(&archive).unwrap();

    let nodes = ok(plane.kubectl().args(["get", "nodes", "-o", "name"]));
    assert_eq!(nodes.trim(), format!("node/{NODE_NAME}"));
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "whoami", "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "kubectl",
                "image": image,
                "imagePullPolicy": "Never",
                "args": ["get", "--raw", "/version"],
                "securityContext": {
                    "runAsNonRoot": true,
                    "readOnlyRootFilesystem": true,
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
            }],
        },
    });
    let manifest = plane.dir().join("whoami.json");
    std::fs::write(&manifest, pod.to_string()).unwrap();
    ok(plane.kubectl().args(["apply", "-f"]).arg(&manifest));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let phase =
            ok(plane
                .kubectl()
                .args(["get", "pod", "whoami", "-o", "jsonpath={.status.phase}"]));
        if phase == "Succeeded" || phase == "Failed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pod still {phase:?}: {}{}",
            ok(plane.kubectl().args(["describe", "pod", "whoami"])),
            cluster.log_tails()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = ok(plane.kubectl().args(["logs", "whoami"]));
    assert!(
        log.contains(kube_scim_tests::KUBERNETES_VERSION),
        "the pod read /version through the kubernetes Service: {log}"
    );

    cluster.stop();
    let left = cluster.leftovers();
    assert!(left.is_empty(), "left behind: {left:#?}");
}
