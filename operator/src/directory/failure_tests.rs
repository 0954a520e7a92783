//! The ScimDirectory reconcile when the apiserver fails (409, 404, 500, 504, a lost
//! connection): the reconcile returns the kit's error, the error policy requeues it with a
//! backoff, and the user is told with a Warning Event, except for a lost compare-and-swap race
//! (retried silently).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;

use super::fixtures::{self, Failure, Fault, paths};
use super::{Error, error_policy, reconcile};
use kube_scim_crds::{DeletionPolicy, ScimDirectorySpec};

/// A directory with a generated token and no finalizer: its first write is its Secret.
fn spec() -> ScimDirectorySpec {
    ScimDirectorySpec {
        deletion_policy: DeletionPolicy::Delete,
        ..Default::default()
    }
}

/// The metric label `failure` must give.
fn label(failure: Failure) -> &'static str {
    match failure {
        Failure::Conflict => "api_409",
        Failure::NotFound => "api_404",
        Failure::Internal => "api_500",
        Failure::Timeout => "api_504",
        Failure::Dropped => "api_client",
    }
}

/// Whether a `ReconcileFailed` Event was published (the error policy publishes from a spawned
/// task: waited for, at most a second).
async fn reported(calls: &fixtures::Calls) -> bool {
    for _ in 0..100 {
        if calls.event_reasons().iter().any(|r| r == "ReconcileFailed") {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn a_failing_apiserver_fails_the_reconcile_which_is_requeued_and_reported() {
    // The first write of a new directory (its token Secret) and the last (its status).
    let places = [
        (Method::POST, paths::SECRETS),
        (Method::PATCH, paths::DIRECTORY_STATUS),
    ];
    for (method, path) in places {
        for failure in Failure::ALL {
            let case = format!("{failure:?} on {method} {path}");
            let dir = fixtures::directory(spec());
            let objects = HashMap::from([(
                paths::DIRECTORY.to_string(),
                serde_json::to_value(&dir).unwrap(),
            )]);
            let (client, calls) =
                fixtures::client_failing(objects, vec![Fault::new(method.clone(), path, failure)]);
            let ctx = fixtures::context(client, fixtures::settings(Some("h")));

            let error = reconcile(Arc::new(dir.clone()), ctx.clone())
                .await
                .expect_err(&case);
            let conflict = failure == Failure::Conflict && method == Method::POST;
            if conflict {
                assert!(matches!(error, Error::Conflict(_)), "{case}: {error}");
                assert_eq!(error.metric_label(), "conflict", "{case}");
            } else {
                assert!(matches!(error, Error::Kube(_)), "{case}: {error}");
                assert_eq!(error.metric_label(), label(failure), "{case}");
            }

            let first = error_policy(Arc::new(dir.clone()), &error, ctx.clone());
            let delay = |a: &kube::runtime::controller::Action| format!("{a:?}");
            assert!(
                delay(&first).contains("requeue_after: Some"),
                "{case}: {first:?}"
            );
            // A lost race is no news; anything else is.
            assert_eq!(reported(&calls).await, !conflict, "{case}");
            // The backoff grows per directory and is forgotten after a success.
            assert_eq!(
                ctx.failures
                    .lock()
                    .unwrap()
                    .get(&kube::runtime::reflector::ObjectRef::from_obj(&dir)),
                Some(&1),
                "{case}"
            );
        }
    }
}

#[tokio::test]
async fn a_success_after_failures_resets_the_backoff() {
    let dir = fixtures::directory(spec());
    let objects = HashMap::from([(
        paths::DIRECTORY.to_string(),
        serde_json::to_value(&dir).unwrap(),
    )]);
    let (client, _) = fixtures::client(objects);
    let ctx = fixtures::context(client, fixtures::settings(Some("h")));
    let key = kube::runtime::reflector::ObjectRef::from_obj(&dir);
    ctx.failures.lock().unwrap().insert(key.clone(), 4);
    reconcile(Arc::new(dir), ctx.clone()).await.unwrap();
    assert_eq!(ctx.failures.lock().unwrap().get(&key), None);
}

/// Every input is read before anything is written (`read.rs`): an apiserver failing one of the
/// reads (here the Ingress, the last read before the first write) fails the reconcile with
/// nothing written, so no half-done reconcile (a new token, no route) is left behind.
#[tokio::test]
async fn a_failing_read_fails_the_reconcile_before_any_write() {
    for failure in Failure::ALL {
        let case = format!("{failure:?} on GET {}", paths::INGRESS);
        let dir = fixtures::directory(spec());
        let objects = HashMap::from([(
            paths::DIRECTORY.to_string(),
            serde_json::to_value(&dir).unwrap(),
        )]);
        let (client, calls) = fixtures::client_failing(
            objects,
            vec![Fault::new(Method::GET, paths::INGRESS, failure)],
        );
        let ctx = fixtures::context(client, fixtures::settings(Some("h")));
        let result = reconcile(Arc::new(dir), ctx).await;
        if failure == Failure::NotFound {
            // A 404 on a read is "no such object": the reconcile goes on and writes.
            assert!(result.is_ok(), "{case}: {result:?}");
            continue;
        }
        let error = result.expect_err(&case);
        assert_eq!(error.metric_label(), label(failure), "{case}");
        assert_eq!(calls.write_lines(), Vec::<String>::new(), "{case}");
    }
}
