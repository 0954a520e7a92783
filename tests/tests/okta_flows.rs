//! Okta end to end against the operator and SCIM server running as local processes on the
//! shared control plane: the scenarios of `kube_scim_tests::okta_suite`, one test each.

use kube::Client;
use kube_scim_tests::ControlPlane;
use kube_scim_tests::okta_suite;
use kube_scim_tests::stack::{Stack, StackOptions};

/// The whole stack on the shared plane, serving a fresh namespace of its own.
async fn start_stack() -> (String, Client, Stack) {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("okta").await.unwrap();
    let kube = plane.client().await.unwrap();
    let stack = Stack::start(plane, StackOptions::new(&ns)).await.unwrap();
    (ns, kube, stack)
}

#[tokio::test]
async fn connector_test_and_paged_import() {
    let (ns, kube, stack) = start_stack().await;
    okta_suite::connector_test_and_paged_import(&kube, &ns, &stack).await;
}

#[tokio::test]
async fn user_lifecycle_with_put_profile_updates() {
    let (ns, kube, stack) = start_stack().await;
    okta_suite::user_lifecycle_with_put_profile_updates(&kube, &ns, &stack).await;
}

#[tokio::test]
async fn group_push_with_memberships_rename_and_delete() {
    let (ns, kube, stack) = start_stack().await;
    okta_suite::group_push_with_memberships_rename_and_delete(&kube, &ns, &stack).await;
}

#[tokio::test]
async fn provider_change_keeps_every_object() {
    let (ns, kube, stack) = start_stack().await;
    okta_suite::provider_change_keeps_every_object(&kube, &ns, &stack).await;
}
