//! Microsoft Entra ID end to end against the operator and SCIM server running as local
//! processes on the shared control plane: the scenarios of `kube_scim_tests::entra_suite`, one
//! test each (`tests/tests/node_chart.rs` runs the same scenarios against the chart's pods).

use kube::Client;
use kube_scim_tests::ControlPlane;
use kube_scim_tests::entra_suite;
use kube_scim_tests::stack::{Stack, StackOptions};

/// The whole stack on the shared plane, serving a fresh namespace of its own.
async fn start_stack(prefix: &str) -> (String, Client, Stack) {
    let plane = ControlPlane::shared();
    let ns = plane.namespace(prefix).await.unwrap();
    let kube = plane.client().await.unwrap();
    let stack = Stack::start(plane, StackOptions::new(&ns)).await.unwrap();
    (ns, kube, stack)
}

#[tokio::test]
async fn test_connection_answers_an_empty_list_and_refuses_wrong_tokens() {
    let (ns, kube, stack) = start_stack("entra").await;
    entra_suite::test_connection_answers_an_empty_list_and_refuses_wrong_tokens(&kube, &ns, &stack)
        .await;
}

#[tokio::test]
async fn user_cycle_in_both_dialects() {
    let (ns, kube, stack) = start_stack("entra").await;
    entra_suite::user_cycle_in_both_dialects(&kube, &ns, &stack).await;
}

#[tokio::test]
async fn group_cycle_in_both_dialects() {
    let (ns, kube, stack) = start_stack("entra").await;
    entra_suite::group_cycle_in_both_dialects(&kube, &ns, &stack).await;
}

#[tokio::test]
async fn on_demand_provisioning_uses_the_legacy_dialect_on_a_flagged_tenant() {
    let (ns, kube, stack) = start_stack("entra").await;
    entra_suite::on_demand_provisioning_uses_the_legacy_dialect_on_a_flagged_tenant(
        &kube, &ns, &stack,
    )
    .await;
}

#[tokio::test]
async fn initial_cycle_of_several_tenants_then_a_restarted_job_creates_exactly_the_expected_objects()
 {
    let (ns, kube, stack) = start_stack("entra").await;
    entra_suite::initial_cycle_of_several_tenants_then_a_restarted_job_creates_exactly_the_expected_objects(&kube, &ns, &stack).await;
}
