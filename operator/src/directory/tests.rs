//! Reconcile scenarios against the fake apiserver of `fixtures.rs`: one per plan, each
//! asserting on the writes made. The real-control-plane tests in tests/tests/operator.rs
//! cover the same ground end to end.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::http::Method;
use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::runtime::reflector::{self, ObjectRef};
use kube_scim_crds::{
    DeletionPolicy, ScimDirectory, ScimDirectorySpec, ScimDirectoryStatus, SecretKeyRef,
};
use serde_json::{Value, json};
use sha2::Digest;

use super::counts::{self, Refreshed};
use super::deletion::FINALIZER;
use super::fixtures::{self, paths};
use super::token::{ANNOTATION_PREVIOUS, ANNOTATION_ROTATION};
use super::{reconcile, reconcile_relevant};
use crate::token as tokens;

fn owned_secret(owner_uid: &str, token: &str, rotation: &str) -> Value {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("d-scim-token".into()),
            namespace: Some("ns".into()),
            resource_version: Some("5".into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "kubescim.io/v1alpha1".into(),
                kind: "ScimDirectory".into(),
                name: "d".into(),
                uid: owner_uid.into(),
                ..Default::default()
            }]),
            annotations: Some(BTreeMap::from([(
                ANNOTATION_ROTATION.to_string(),
                rotation.to_string(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            tokens::TOKEN_KEY.to_string(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Default::default()
    };
    serde_json::to_value(secret).unwrap()
}

async fn run(
    dir: ScimDirectory,
    objects: HashMap<String, Value>,
    host: Option<&str>,
) -> fixtures::Calls {
    run_with(dir, objects, fixtures::settings(host)).await
}

async fn run_with(
    dir: ScimDirectory,
    objects: HashMap<String, Value>,
    settings: super::Settings,
) -> fixtures::Calls {
    let mut objects = objects;
    objects.insert(paths::DIRECTORY.into(), serde_json::to_value(&dir).unwrap());
    let (client, calls) = fixtures::client(objects);
    let ctx = fixtures::context(client, settings);
    reconcile(Arc::new(dir), ctx)
        .await
        .expect("reconcile succeeds");
    calls
}

/// A default directory (`ns/d`) reconciled with one object in place, host `h`.
async fn run_default_with(path: &str, object: Value) -> fixtures::Calls {
    let objects = HashMap::from([(path.to_string(), object)]);
    run(fixtures::directory(plain_spec()), objects, Some("h")).await
}

/// Whether any write went to a path containing `part`.
fn wrote_to(calls: &fixtures::Calls, part: &str) -> bool {
    calls.write_lines().iter().any(|w| w.contains(part))
}

fn status_condition(calls: &fixtures::Calls, type_: &str) -> Value {
    let status = calls
        .last_write_to(Method::PATCH, paths::DIRECTORY_STATUS)
        .expect("status written");
    status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn a_new_directory_gets_a_token_secret_an_ingress_and_a_ready_status() {
    let calls = run(
        fixtures::directory(plain_spec()),
        HashMap::new(),
        Some("scim.example.com"),
    )
    .await;
    assert_eq!(
        calls.write_lines(),
        vec![
            format!("POST {}", paths::SECRETS),
            format!("PATCH {}", paths::INGRESS),
            format!("PATCH {}", paths::DIRECTORY_STATUS),
        ]
    );
    assert_eq!(calls.event_reasons(), vec!["TokenCreated", "RouteCreated"]);
    assert_eq!(status_condition(&calls, "Ready")["status"], "True");
    let status = calls
        .last_write_to(Method::PATCH, paths::DIRECTORY_STATUS)
        .unwrap();
    assert_eq!(
        status["status"]["endpoint"],
        "http://scim.example.com/scim/v2/ns/d?aadOptscim062020"
    );
}

#[tokio::test]
async fn an_unchanged_token_is_kept() {
    let calls = run_default_with(paths::TOKEN_SECRET, owned_secret("uid-d", "t", "")).await;
    assert!(!wrote_to(&calls, "/secrets"));
    assert_eq!(
        status_condition(&calls, "TokenReady")["reason"],
        "TokenPresent"
    );
}

#[tokio::test]
async fn a_new_rotation_request_replaces_the_token_and_keeps_the_old_one_for_the_grace_period() {
    let mut spec = plain_spec();
    spec.token.rotation_request = Some("r1".into());
    let objects = HashMap::from([(
        paths::TOKEN_SECRET.to_string(),
        owned_secret("uid-d", "old", ""),
    )]);
    let calls = run(fixtures::directory(spec), objects, Some("h")).await;
    let replaced = calls
        .last_write_to(Method::PUT, paths::TOKEN_SECRET)
        .expect("Secret replaced");
    assert_eq!(
        replaced["metadata"]["annotations"][ANNOTATION_ROTATION],
        "r1"
    );
    assert_eq!(
        replaced["metadata"]["resourceVersion"], "5",
        "a compare-and-swap"
    );
    let status = calls
        .last_write_to(Method::PATCH, paths::DIRECTORY_STATUS)
        .unwrap();
    let verifiers = status["status"]["tokenVerifiers"].as_array().unwrap();
    assert_eq!(verifiers.len(), 4, "two tokens under two keys");
    let old = fixtures::keys().hashes(&fixtures::BINDING, "old");
    assert_eq!(verifiers[2]["hash"], old[0]);
    assert_eq!(verifiers[3]["hash"], old[1]);
    // Nothing about previous tokens is kept in the Secret, which the namespace's editors may
    // write (issue 27): the status is the only record.
    assert!(replaced["metadata"]["annotations"][ANNOTATION_PREVIOUS].is_null());
    assert!(calls.event_reasons().contains(&"TokenRotated".to_string()));
}

fn byo_secret(token: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "entra", "namespace": "ns", "resourceVersion": "7"},
        "data": {"token": base64::engine::general_purpose::STANDARD.encode(token)}})
}

fn byo_directory(previous_token: Option<&str>) -> ScimDirectory {
    let mut spec = plain_spec();
    spec.token.secret_ref = Some(SecretKeyRef {
        name: "entra".into(),
        key: None,
    });
    let mut dir = fixtures::directory(spec);
    if let Some(token) = previous_token {
        dir.status = Some(ScimDirectoryStatus {
            token_verifiers: tokens::verifiers(&fixtures::keys(), &fixtures::BINDING, token, None),
            ..Default::default()
        });
    }
    dir
}

#[tokio::test]
async fn a_weak_bring_your_own_token_is_refused_with_a_warning_and_no_verifier() {
    let previous = "previous-strong-token-3f7a9c2e5b8d1f4a6c0e";
    let objects = HashMap::from([(
        format!("{}/entra", paths::SECRETS),
        byo_secret("Welcome2026!"),
    )]);
    let calls = run(byo_directory(Some(previous)), objects, Some("h")).await;
    assert!(
        !wrote_to(&calls, "/secrets"),
        "a bring-your-own Secret is only read"
    );
    let token = status_condition(&calls, "TokenReady");
    assert_eq!(token["status"], "False");
    assert_eq!(token["reason"], "TokenTooWeak");
    assert!(
        token["message"]
            .as_str()
            .unwrap()
            .contains("openssl rand -base64 32")
    );
    assert!(calls.event_reasons().contains(&"TokenTooWeak".to_string()));
    let status = calls
        .last_write_to(Method::PATCH, paths::DIRECTORY_STATUS)
        .unwrap();
    let verifiers = status["status"]["tokenVerifiers"].as_array().unwrap();
    let hashes: Vec<&str> = verifiers
        .iter()
        .filter_map(|v| v["hash"].as_str())
        .collect();
    assert_eq!(
        hashes,
        fixtures::keys().hashes(&fixtures::BINDING, previous),
        "only the previous token's"
    );
    assert!(verifiers.iter().all(|v| v["expiresAt"].is_string()));
    assert!(status["status"].get("tokenFingerprint").is_none());
    // The previous token still opens the directory, so it stays Ready until that token expires.
    assert_eq!(
        status_condition(&calls, "Ready")["reason"],
        "PreviousTokenValid"
    );

    // Without a previous token nothing opens it.
    let objects = HashMap::from([(
        format!("{}/entra", paths::SECRETS),
        byo_secret("Welcome2026!"),
    )]);
    let calls = run(byo_directory(None), objects, Some("h")).await;
    let status = calls
        .last_write_to(Method::PATCH, paths::DIRECTORY_STATUS)
        .unwrap();
    assert!(status["status"].get("tokenVerifiers").is_none());
    assert_eq!(status_condition(&calls, "Ready")["status"], "False");
}

#[tokio::test]
async fn a_strong_bring_your_own_token_is_published_keyed_only() {
    let token = "a-strong-token-b4d6f9a2c5e8b0d3f6a9c1e4b7d0";
    let objects = HashMap::from([(format!("{}/entra", paths::SECRETS), byo_secret(token))]);
    let calls = run(byo_directory(None), objects, Some("h")).await;
    assert_eq!(
        status_condition(&calls, "TokenReady")["reason"],
        "SecretReferenced"
    );
    assert_eq!(status_condition(&calls, "Ready")["status"], "True");
    let status = calls
        .last_write_to(Method::PATCH, paths::DIRECTORY_STATUS)
        .unwrap();
    let verifiers = status["status"]["tokenVerifiers"].as_array().unwrap();
    let hashes: Vec<&str> = verifiers
        .iter()
        .filter_map(|v| v["hash"].as_str())
        .collect();
    assert_eq!(hashes, fixtures::keys().hashes(&fixtures::BINDING, token));
    let sha256: String = sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let written = status.to_string();
    assert!(
        !written.contains(&sha256) && !written.contains(&sha256[..8]),
        "no unkeyed hash of the token: {written}"
    );
}

#[tokio::test]
async fn a_secret_that_lost_its_token_gets_a_new_one() {
    let mut secret = owned_secret("uid-d", "t", "");
    secret["data"] = json!({});
    let calls = run_default_with(paths::TOKEN_SECRET, secret).await;
    assert!(
        calls
            .last_write_to(Method::PUT, paths::TOKEN_SECRET)
            .is_some()
    );
    assert_eq!(
        status_condition(&calls, "TokenReady")["reason"],
        "TokenRecreated"
    );
}

#[tokio::test]
async fn a_foreign_secret_is_left_alone_and_reported() {
    let calls = run_default_with(paths::TOKEN_SECRET, owned_secret("someone-else", "t", "")).await;
    assert!(!wrote_to(&calls, "/secrets"));
    assert_eq!(
        status_condition(&calls, "TokenReady")["reason"],
        "SecretConflict"
    );
    assert!(
        calls
            .event_reasons()
            .contains(&"SecretConflict".to_string())
    );
}

#[tokio::test]
async fn without_a_host_no_ingress_is_written_and_the_route_is_not_ready() {
    let calls = run(fixtures::directory(plain_spec()), HashMap::new(), None).await;
    assert!(!wrote_to(&calls, "ingresses"));
    assert_eq!(status_condition(&calls, "RouteReady")["reason"], "NoHost");
}

#[tokio::test]
async fn disabling_the_ingress_deletes_ours() {
    let mut spec = plain_spec();
    spec.ingress.enabled = false;
    let ingress = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "d-scim", "namespace": "ns", "ownerReferences": [
            {"apiVersion": "kubescim.io/v1alpha1", "kind": "ScimDirectory", "name": "d", "uid": "uid-d"}]}});
    let objects = HashMap::from([(paths::INGRESS.to_string(), ingress)]);
    let calls = run(fixtures::directory(spec), objects, Some("h")).await;
    assert!(
        calls
            .write_lines()
            .contains(&format!("DELETE {}", paths::INGRESS))
    );
    assert_eq!(
        status_condition(&calls, "RouteReady")["reason"],
        "RouteDisabled"
    );
}

#[tokio::test]
async fn an_ingress_of_someone_else_is_not_touched() {
    let ingress = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "d-scim", "namespace": "ns"}});
    let calls = run_default_with(paths::INGRESS, ingress).await;
    assert!(!wrote_to(&calls, "ingresses"));
    assert_eq!(
        status_condition(&calls, "RouteReady")["reason"],
        "IngressConflict"
    );
}

#[tokio::test]
async fn retain_adds_the_finalizer_first() {
    let spec = ScimDirectorySpec {
        deletion_policy: DeletionPolicy::Retain,
        ..Default::default()
    };
    let calls = run(fixtures::directory(spec), HashMap::new(), Some("h")).await;
    assert_eq!(
        calls.write_lines(),
        vec![format!("PATCH {}", paths::DIRECTORY)]
    );
    let patch = calls
        .last_write_to(Method::PATCH, paths::DIRECTORY)
        .unwrap();
    assert!(patch.to_string().contains(FINALIZER));
}

#[tokio::test]
async fn deleting_a_retain_directory_releases_its_users_before_the_finalizer_goes() {
    let spec = ScimDirectorySpec {
        deletion_policy: DeletionPolicy::Retain,
        ..Default::default()
    };
    let mut dir = fixtures::directory(spec);
    dir.metadata.finalizers = Some(vec![FINALIZER.into()]);
    dir.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    let owned = |name: &str| {
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": "3", "ownerReferences": [
            {"apiVersion": "kubescim.io/v1alpha1", "kind": "ScimDirectory", "name": "d", "uid": "uid-d"}]}})
    };
    let list = |items: Vec<Value>| json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": {}, "items": items});
    let objects = HashMap::from([
        (
            paths::USERS.to_string(),
            list(vec![owned("u1"), owned("u2")]),
        ),
        (format!("{}/u1", paths::USERS), owned("u1")),
        (format!("{}/u2", paths::USERS), owned("u2")),
        (paths::GROUPS.to_string(), list(vec![])),
    ]);
    let calls = run(dir, objects, Some("h")).await;
    assert_eq!(
        calls.write_lines(),
        vec![
            format!("PATCH {}/u1", paths::USERS),
            format!("PATCH {}/u2", paths::USERS),
            format!("PATCH {}", paths::DIRECTORY),
        ]
    );
    let released = calls
        .last_write_to(Method::PATCH, &format!("{}/u1", paths::USERS))
        .unwrap();
    assert_eq!(released["metadata"]["ownerReferences"], json!([]));
    assert!(calls.event_reasons().contains(&"Retained".to_string()));
}

#[tokio::test]
async fn a_delete_directory_being_deleted_is_left_to_the_garbage_collector() {
    let mut dir = fixtures::directory(plain_spec());
    dir.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    let calls = run(dir, HashMap::new(), Some("h")).await;
    assert!(calls.write_lines().is_empty());
}

#[tokio::test]
async fn outside_the_servers_namespace_the_ingress_goes_through_an_external_name_service() {
    let mut settings = fixtures::settings(Some("h"));
    settings.defaults.server.namespace = "scim".into();
    let objects = HashMap::from([(
        paths::TOKEN_SECRET.to_string(),
        owned_secret("uid-d", "t", ""),
    )]);
    let calls = run_with(fixtures::directory(plain_spec()), objects, settings).await;
    assert_eq!(
        calls.write_lines(),
        vec![
            format!("PATCH {}", paths::SERVICE),
            format!("PATCH {}", paths::INGRESS),
            format!("PATCH {}", paths::DIRECTORY_STATUS),
        ]
    );
    let service = calls.last_write_to(Method::PATCH, paths::SERVICE).unwrap();
    assert_eq!(
        service["spec"]["externalName"],
        "kube-scim-server.scim.svc.cluster.local"
    );
    let ingress = calls.last_write_to(Method::PATCH, paths::INGRESS).unwrap();
    assert_eq!(
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        "scim-d"
    );
}

/// Directory `ns/d` whose status says 1 user (active), 0 groups, last write at 01:00.
fn counted_directory() -> ScimDirectory {
    let mut dir = fixtures::directory(plain_spec());
    dir.status = Some(ScimDirectoryStatus {
        endpoint: Some("http://h/scim/v2/ns/d".into()),
        users: Some(1),
        active_users: Some(1),
        inactive_users: Some(0),
        groups: Some(0),
        last_provisioning_time: Some("2026-01-01T01:00:00Z".into()),
        ..Default::default()
    });
    dir
}

#[tokio::test]
async fn a_counts_refresh_writes_the_counts_alone_only_when_they_changed() {
    let dir = counted_directory();
    let objects = HashMap::from([(
        paths::DIRECTORY.to_string(),
        serde_json::to_value(&dir).unwrap(),
    )]);
    let (client, calls) = fixtures::client(objects);
    let users = fixtures::filled_store(vec![
        fixtures::member_meta("u1", Some(true), "2026-01-01T00:00:00Z"),
        fixtures::member_meta("u2", Some(false), "2026-01-01T02:00:00Z"),
        fixtures::member_meta("u3", None, "2026-01-01T00:30:00Z"),
    ]);
    let groups = fixtures::filled_store(vec![fixtures::member_meta(
        "g1",
        None,
        "2026-01-01T00:00:00Z",
    )]);
    let ctx = fixtures::context_with(client, fixtures::settings(Some("h")), users, groups);
    let key = ObjectRef::from_obj(&dir);

    // 3 users (u3 has no active label: active), 1 group, newest write 02:00: one merge patch of
    // those fields, compare-and-swap on the resourceVersion they were compared with.
    let directories = fixtures::filled_store(vec![dir.clone()]);
    let refreshed = counts::refresh(&ctx, &directories, &key).await.unwrap();
    assert_eq!(refreshed, Refreshed::Written);
    assert_eq!(
        calls.write_lines(),
        vec![format!("PATCH {}", paths::DIRECTORY_STATUS)]
    );
    assert_eq!(
        calls
            .last_write_to(Method::PATCH, paths::DIRECTORY_STATUS)
            .unwrap(),
        json!({
            "metadata": {"resourceVersion": "1"},
            "status": {"users": 3, "activeUsers": 2, "inactiveUsers": 1, "groups": 1,
                       "lastProvisioningTime": "2026-01-01T02:00:00Z",
                       "heldDeletions": null, "heldDeactivations": null},
        }),
        "the counts only: conditions, token and endpoint are the reconcile's"
    );

    // Once the status has them: nothing to write.
    let mut current = dir.clone();
    let status = current.status.as_mut().unwrap();
    status.users = Some(3);
    status.active_users = Some(2);
    status.inactive_users = Some(1);
    status.groups = Some(1);
    status.last_provisioning_time = Some("2026-01-01T02:00:00Z".into());
    let directories = fixtures::filled_store(vec![current]);
    let refreshed = counts::refresh(&ctx, &directories, &key).await.unwrap();
    assert_eq!(refreshed, Refreshed::Unchanged);
    assert_eq!(calls.write_lines().len(), 1);

    // A directory that is gone, or going: nothing to count.
    let empty = fixtures::filled_store(Vec::<ScimDirectory>::new());
    assert_eq!(
        counts::refresh(&ctx, &empty, &key).await.unwrap(),
        Refreshed::Gone
    );
    let mut going = dir.clone();
    going.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    let going = fixtures::filled_store(vec![going]);
    assert_eq!(
        counts::refresh(&ctx, &going, &key).await.unwrap(),
        Refreshed::Gone
    );
    assert_eq!(calls.write_lines().len(), 1);
}

#[tokio::test]
async fn a_reconcile_counts_from_complete_caches_only() {
    let users = || {
        fixtures::filled_store(vec![fixtures::member_meta(
            "u1",
            Some(false),
            "2026-01-01T00:00:00Z",
        )])
    };
    let objects = HashMap::from([
        (
            paths::TOKEN_SECRET.to_string(),
            owned_secret("uid-d", "t", ""),
        ),
        (
            paths::DIRECTORY.to_string(),
            serde_json::to_value(counted_directory()).unwrap(),
        ),
    ]);

    // Complete caches: the reconcile writes the counts with the rest of the status.
    let (client, calls) = fixtures::client(objects.clone());
    let ctx = fixtures::context_with(
        client,
        fixtures::settings(Some("h")),
        users(),
        fixtures::filled_store(Vec::new()),
    );
    reconcile(Arc::new(counted_directory()), ctx).await.unwrap();
    let status = calls
        .last_write_to(Method::PATCH, paths::DIRECTORY_STATUS)
        .unwrap();
    assert_eq!(status["status"]["users"], 1);
    assert_eq!(status["status"]["inactiveUsers"], 1);
    assert_eq!(status["status"]["activeUsers"], 0);
    assert_eq!(
        status["status"]["lastProvisioningTime"], "2026-01-01T01:00:00Z",
        "never backwards"
    );

    // Before the group cache has its first list it is empty: the counts in status are kept.
    let (client, calls) = fixtures::client(objects);
    let (unfilled, _writer) = reflector::store();
    let ctx = fixtures::context_with(client, fixtures::settings(Some("h")), users(), unfilled);
    reconcile(Arc::new(counted_directory()), ctx).await.unwrap();
    let status = calls
        .last_write_to(Method::PATCH, paths::DIRECTORY_STATUS)
        .unwrap();
    assert_eq!(status["status"]["users"], 1);
    assert_eq!(status["status"]["activeUsers"], 1);
    assert_eq!(status["status"]["groups"], 0);
}

#[test]
fn only_changes_beyond_the_counts_call_for_a_reconcile() {
    let dir = counted_directory();
    let same = reconcile_relevant(&dir);
    assert!(same.is_some());
    let mut counted = dir.clone();
    let status = counted.status.as_mut().unwrap();
    status.users = Some(500);
    status.active_users = Some(500);
    status.last_provisioning_time = Some("2026-02-01T00:00:00Z".into());
    counted.metadata.resource_version = Some("2".into());
    assert_eq!(reconcile_relevant(&counted), same, "a counts write");

    let mut changed = Vec::new();
    let mut d = dir.clone();
    d.spec.token.rotation_request = Some("r1".into());
    d.metadata.generation = Some(2);
    changed.push(d);
    let mut d = dir.clone();
    d.metadata.finalizers = Some(vec![FINALIZER.into()]);
    changed.push(d);
    let mut d = dir.clone();
    d.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    changed.push(d);
    let mut d = dir.clone();
    d.status.as_mut().unwrap().endpoint = None;
    changed.push(d);
    let mut d = dir.clone();
    d.metadata.uid = Some("uid-recreated".into());
    changed.push(d);
    for d in changed {
        assert_ne!(reconcile_relevant(&d), same, "{:?}", d.metadata);
    }
}

/// A directory with nothing but the deletion policy that needs no finalizer (`Delete`), so a
/// reconcile goes straight to its work.
fn plain_spec() -> ScimDirectorySpec {
    ScimDirectorySpec {
        deletion_policy: DeletionPolicy::Delete,
        ..Default::default()
    }
}
