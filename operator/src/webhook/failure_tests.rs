//! The ScimWebhook deliverer when the apiserver fails (409, 404, 500, 504, a lost connection).
//! It is no kube-runtime reconcile: it keeps running, retries what failed, and says why in the
//! Ready condition where the user can act.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use k8s_openapi::api::core::v1::Secret;
use kube_scim_crds::{DirectoryRef, ScimWebhook, ScimWebhookSpec, ScimWebhookStatus};
use serde_json::Value;

use super::Shared;
use super::delivery::{run, write_status};
use super::target::Policy;

use crate::metrics::Metrics;
use crate::reconcile::fake_apiserver::{self, Failure, Fault};

const HOOK: &str = "/apis/kubescim.io/v1alpha1/namespaces/ns/scimwebhooks/hook";
const STATUS: &str = "/apis/kubescim.io/v1alpha1/namespaces/ns/scimwebhooks/hook/status";
const OUTBOX: &str = "/api/v1/namespaces/ns/secrets/hook-webhook-outbox";

fn hook(url: &str) -> ScimWebhook {
    let mut h = ScimWebhook::new(
        "hook",
        ScimWebhookSpec {
            directory_ref: DirectoryRef { name: "d".into() },
            url: url.into(),
            ..Default::default()
        },
    );
    h.metadata.namespace = Some("ns".into());
    h.metadata.uid = Some("uid-hook".into());
    h.metadata.generation = Some(1);
    h
}

fn objects(extra: &[(&str, Value)]) -> HashMap<String, Value> {
    let mut objects = HashMap::from([(
        HOOK.to_string(),
        serde_json::to_value(hook("https://receiver.example/")).unwrap(),
    )]);
    for (path, object) in extra {
        objects.insert(path.to_string(), object.clone());
    }
    objects
}

fn shared(client: kube::Client) -> Arc<Shared> {
    Arc::new(Shared::new(
        client,
        Policy::default(),
        Arc::new(Metrics::default()),
        "test",
        Duration::from_secs(1),
        Duration::from_secs(30),
    ))
}

fn ready(calls: &fake_apiserver::Calls) -> Value {
    calls
        .last_write_to(Method::PATCH, STATUS)
        .expect("status written")["status"]["conditions"][0]
        .clone()
}

#[tokio::test]
async fn a_failed_status_write_is_reported_as_unwritten_so_the_next_tick_retries_it() {
    for failure in Failure::ALL {
        let (client, _) = fake_apiserver::client_failing(
            objects(&[]),
            vec![Fault::new(Method::PATCH, STATUS, failure)],
        );
        let hooks = kube::Api::<ScimWebhook>::namespaced(client, "ns");
        assert!(
            !write_status(&hooks, "hook", &ScimWebhookStatus::default()).await,
            "{failure:?}"
        );
    }
    let (client, _) = fake_apiserver::client(objects(&[]));
    let hooks = kube::Api::<ScimWebhook>::namespaced(client, "ns");
    assert!(write_status(&hooks, "hook", &ScimWebhookStatus::default()).await);
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_outbox_is_read_again_with_a_backoff() {
    for failure in [
        Failure::Conflict,
        Failure::Internal,
        Failure::Timeout,
        Failure::Dropped,
    ] {
        let (client, calls) = fake_apiserver::client_failing(
            objects(&[]),
            vec![Fault::new(Method::GET, OUTBOX, failure)],
        );
        let task = tokio::spawn(run(shared(client), hook("https://receiver.example/")));
        // 1 + 2 + 4 + 8 s of backoff: five reads.
        tokio::time::sleep(Duration::from_secs(15) + Duration::from_millis(500)).await;
        task.abort();
        let reads = calls
            .all()
            .iter()
            .filter(|c| c.method == Method::GET && c.path == OUTBOX)
            .count();
        assert_eq!(reads, 5, "{failure:?}");
        assert!(
            calls.writes().is_empty(),
            "{failure:?}: nothing written meanwhile"
        );
    }
}

#[tokio::test]
async fn a_foreign_secret_in_the_outbox_place_is_a_condition_to_act_on() {
    let foreign = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("hook-webhook-outbox".into()),
            namespace: Some("ns".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let (client, calls) =
        fake_apiserver::client(objects(&[(OUTBOX, serde_json::to_value(foreign).unwrap())]));
    run(shared(client), hook("https://receiver.example/")).await;
    let ready = ready(&calls);
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "OutboxNotOwned");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("delete or rename it")
    );
}

#[tokio::test]
async fn an_invalid_spec_is_a_condition_even_if_its_write_fails_once() {
    let (client, calls) = fake_apiserver::client(objects(&[]));
    run(shared(client), hook("https://10.0.0.1/")).await;
    assert_eq!(ready(&calls)["reason"], "InvalidSpec");

    // The write fails: the deliverer ends all the same (the manager restarts it on the next
    // spec change), no panic.
    for failure in Failure::ALL {
        let (client, _) = fake_apiserver::client_failing(
            objects(&[]),
            vec![Fault::new(Method::PATCH, STATUS, failure)],
        );
        run(shared(client), hook("https://10.0.0.1/")).await;
    }
}
