//! The directory service against the in-memory store: milliseconds per scenario, no cluster.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use scim_protocol::{ListQuery, PatchRequest, Resource, ResourceKind, ScimError};
use serde_json::{Value, json};

use super::*;
use crate::cache::{Cache, DirInfo};
use crate::memory_store::MemoryStore;
use crate::render::Locations;
use crate::storage::StoreError;

const DIR: DirRef<'static> = DirRef {
    ns: "ns",
    name: "d",
};

fn keys() -> kube_scim_runtime::verifier::SharedKeyRing {
    kube_scim_runtime::verifier::SharedKeyRing::new(
        kube_scim_runtime::verifier::KeyRing::from_keys([(
            "k1",
            b"directory-test-key-0123456789abcdef".to_vec(),
        )])
        .unwrap(),
    )
}

fn service() -> DirectoryService<MemoryStore> {
    service_inline(1000)
}

/// A service that writes at most `inline` membership labels inside a request.
fn service_inline(inline: usize) -> DirectoryService<MemoryStore> {
    DirectoryService::new(
        Arc::new(Cache::default()),
        MemoryStore::default(),
        Limits {
            max_results: 100,
            member_write_concurrency: 4,
            conflict_retries: 3,
            inline_member_writes: inline,
        },
        keys(),
    )
}

fn at() -> Locations {
    Locations::new("https://scim.test/scim/v2/ns/d".into())
}

fn owner() -> DirInfo {
    DirInfo {
        uid: "uid-1".into(),
        ready: true,
        ..DirInfo::default()
    }
}

async fn user(s: &DirectoryService<MemoryStore>, name: &str) -> String {
    let r = s
        .create(
            DIR,
            &owner(),
            ResourceKind::User,
            &json!({"userName": name}),
            &at(),
        )
        .await
        .unwrap();
    r.id().unwrap().to_string()
}

async fn group(s: &DirectoryService<MemoryStore>, name: &str, members: &[&str]) -> String {
    let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    let body = json!({"displayName": name, "members": members});
    let r = s
        .create(DIR, &owner(), ResourceKind::Group, &body, &at())
        .await
        .unwrap();
    r.id().unwrap().to_string()
}

fn patch(body: Value) -> Change {
    Change::Patch(PatchRequest::parse(&body).unwrap())
}

fn member_ids(r: &Resource) -> Vec<String> {
    r.members().into_iter().map(|m| m.value).collect()
}

fn scim_type(e: Error) -> Option<&'static str> {
    match e {
        Error::Scim(e) => e.scim_type(),
        other => panic!("not a SCIM error: {other:?}"),
    }
}

#[tokio::test]
async fn created_users_are_read_back_with_meta_and_a_deterministic_id() {
    let s = service();
    let id = user(&s, "Alice@Contoso.com").await;
    assert_eq!(
        id,
        candidate_id(
            ResourceKind::User,
            "ns",
            "d",
            "uid-1",
            "alice@contoso.com",
            0
        )
    );
    let r = s
        .get(DIR, ResourceKind::User, &id, &at(), true)
        .await
        .unwrap();
    let v = r.to_json();
    assert_eq!(v["userName"], "Alice@Contoso.com");
    assert_eq!(
        v["meta"]["location"],
        format!("https://scim.test/scim/v2/ns/d/Users/{id}")
    );
}

#[tokio::test]
async fn unique_attributes_are_unique_case_insensitively_for_users_and_groups() {
    let s = service();
    user(&s, "alice").await;
    let dup = s
        .create(
            DIR,
            &owner(),
            ResourceKind::User,
            &json!({"userName": "ALICE"}),
            &at(),
        )
        .await
        .unwrap_err();
    assert_eq!(scim_type(dup), Some("uniqueness"));
    group(&s, "Admins", &[]).await;
    let dup = s
        .create(
            DIR,
            &owner(),
            ResourceKind::Group,
            &json!({"displayName": "admins"}),
            &at(),
        )
        .await
        .unwrap_err();
    assert_eq!(scim_type(dup), Some("uniqueness"));
}

#[tokio::test]
async fn renaming_onto_a_taken_name_is_refused_and_the_old_name_is_freed() {
    let s = service();
    let a = user(&s, "a").await;
    user(&s, "b").await;
    let rename = |to: &str| {
        patch(json!({"Operations": [{"op": "replace", "path": "userName", "value": to}]}))
    };
    let err = s
        .modify(
            DIR,
            ResourceKind::User,
            &a,
            &rename("B"),
            None,
            Reply::Nothing,
        )
        .await
        .unwrap_err();
    assert_eq!(scim_type(err), Some("uniqueness"));
    s.modify(
        DIR,
        ResourceKind::User,
        &a,
        &rename("c"),
        None,
        Reply::Nothing,
    )
    .await
    .unwrap();
    // The id of `a` stays with the renamed user; a new `a` gets the next candidate id.
    let again = user(&s, "a").await;
    assert_eq!(
        again,
        candidate_id(ResourceKind::User, "ns", "d", "uid-1", "a", 1)
    );
}

#[tokio::test]
async fn legacy_remove_with_a_value_removes_only_those_members() {
    let s = service();
    let (u1, u2) = (user(&s, "u1").await, user(&s, "u2").await);
    let g = group(&s, "g", &[&u1, &u2]).await;
    let change = patch(json!({"Operations": [
        {"op": "Remove", "path": "members", "value": [{"value": u1}]}]}));
    let reply = s
        .modify(DIR, ResourceKind::Group, &g, &change, None, Reply::Nothing)
        .await
        .unwrap();
    assert!(reply.is_none());
    let r = s
        .get(DIR, ResourceKind::Group, &g, &at(), true)
        .await
        .unwrap();
    assert_eq!(member_ids(&r), vec![u2.clone()]);
    // The user shows its group; the removed one does not.
    let groups = |id: String| {
        let s = &s;
        async move {
            s.get(DIR, ResourceKind::User, &id, &at(), false)
                .await
                .unwrap()
                .to_json()["groups"]
                .clone()
        }
    };
    assert_eq!(groups(u2.clone()).await[0]["value"], g.as_str());
    assert!(
        groups(u1.clone())
            .await
            .as_array()
            .is_none_or(Vec::is_empty)
    );
}

#[tokio::test]
async fn re_adding_a_member_writes_nothing() {
    let s = service();
    let u = user(&s, "u").await;
    let g = group(&s, "g", &[&u]).await;
    let before = s.store.writes.load(Ordering::SeqCst);
    let change = patch(json!({"Operations": [
        {"op": "Add", "path": "members", "value": [{"value": u}]}]}));
    s.modify(DIR, ResourceKind::Group, &g, &change, None, Reply::Nothing)
        .await
        .unwrap();
    assert_eq!(s.store.writes.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn unknown_members_are_refused_before_anything_is_written() {
    let s = service();
    let u = user(&s, "u").await;
    let g = group(&s, "g", &[]).await;
    let before = s.store.writes.load(Ordering::SeqCst);
    let change = patch(json!({"Operations": [
        {"op": "add", "path": "members", "value": [{"value": u}, {"value": "no-such-id"}]}]}));
    let err = s
        .modify(DIR, ResourceKind::Group, &g, &change, None, Reply::Nothing)
        .await
        .unwrap_err();
    assert_eq!(scim_type(err), Some("invalidValue"));
    assert_eq!(s.store.writes.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn many_members_written_by_another_replica_are_looked_up_not_refused() {
    let s = service();
    let g = group(&s, "g", &[]).await;
    // 30 users that exist in storage but whose watch events have not reached this replica.
    let other = service();
    let mut ids = Vec::new();
    for i in 0..30 {
        let id = user(&other, &format!("u{i}")).await;
        let obj = other
            .store
            .get(ResourceKind::User, "ns", &id)
            .await
            .unwrap()
            .unwrap();
        s.store.insert_behind_the_cache(ResourceKind::User, &obj);
        ids.push(id);
    }
    let values: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
    let change = patch(json!({"Operations": [{"op": "add", "path": "members", "value": values}]}));
    s.modify(DIR, ResourceKind::Group, &g, &change, None, Reply::Nothing)
        .await
        .unwrap();
    let r = s
        .get(DIR, ResourceKind::Group, &g, &at(), true)
        .await
        .unwrap();
    assert_eq!(member_ids(&r).len(), 30);
}

#[tokio::test]
async fn invented_member_ids_cost_few_lookups() {
    let s = service();
    let g = group(&s, "g", &[]).await;
    let values: Vec<Value> = (0..500)
        .map(|i| json!({"value": format!("00000000-0000-0000-0000-{i:012}")}))
        .collect();
    let change = patch(json!({"Operations": [{"op": "add", "path": "members", "value": values}]}));
    let err = s
        .modify(DIR, ResourceKind::Group, &g, &change, None, Reply::Nothing)
        .await
        .unwrap_err();
    assert_eq!(scim_type(err), Some("invalidValue"));
    // Stops at the first id that exists nowhere (two reads per id, a few in flight).
    assert!(s.store.reads.load(Ordering::SeqCst) <= 2 * 5);
}

#[tokio::test]
async fn a_write_that_lost_a_race_is_retried_on_the_winner() {
    let s = service();
    let id = user(&s, "u").await;
    // Another replica changes the user; this replica's cache still holds the old version.
    let mut obj = s
        .store
        .get(ResourceKind::User, "ns", &id)
        .await
        .unwrap()
        .unwrap();
    obj.data["status"]["title"] = json!("Boss");
    s.store.insert_behind_the_cache(ResourceKind::User, &obj);
    let change =
        patch(json!({"Operations": [{"op": "replace", "path": "displayName", "value": "U"}]}));
    let at = at();
    let r = s
        .modify(
            DIR,
            ResourceKind::User,
            &id,
            &change,
            None,
            Reply::Resource {
                at: &at,
                with_members: false,
            },
        )
        .await
        .unwrap()
        .unwrap();
    let v = r.to_json();
    assert_eq!(
        (v["displayName"].as_str(), v["title"].as_str()),
        (Some("U"), Some("Boss"))
    );
}

#[tokio::test]
async fn if_match_guards_writes() {
    let s = service();
    let id = user(&s, "u").await;
    let err = s
        .delete(DIR, ResourceKind::User, &id, Some("W/\"0\""))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Scim(ScimError::PreconditionFailed(_))));
    s.delete(DIR, ResourceKind::User, &id, None).await.unwrap();
    let gone = s
        .get(DIR, ResourceKind::User, &id, &at(), false)
        .await
        .unwrap_err();
    assert!(matches!(gone, Error::Scim(ScimError::NotFound(_))));
}

fn member_labels(obj: &kube::api::DynamicObject) -> Vec<String> {
    obj.metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_keys()
        .filter(|k| k.starts_with(kube_scim_crds::labels::MEMBER_OF_PREFIX))
        .collect()
}

#[tokio::test]
async fn a_deleted_group_is_gone_for_scim_at_once_and_its_labels_go_in_the_background() {
    let s = service();
    let u = user(&s, "u").await;
    let other = user(&s, "v").await;
    let g = group(&s, "g", &[&u, &other]).await;
    let writes = s.store.writes.load(Ordering::SeqCst);
    s.delete(DIR, ResourceKind::Group, &g, None).await.unwrap();
    // The request marked the group (finalizer, then delete): two writes, whatever its size.
    assert_eq!(s.store.writes.load(Ordering::SeqCst) - writes, 2);
    let marked = stored(&s.store, ResourceKind::Group, &g).await;
    assert!(marked.metadata.deletion_timestamp.is_some());
    // Gone for SCIM: reads, filters, the members' `groups`; a second DELETE is a 404.
    let read = s.get(DIR, ResourceKind::Group, &g, &at(), true).await;
    assert!(matches!(read, Err(Error::Scim(ScimError::NotFound(_)))));
    let q = ListQuery::from_query_pairs([("startIndex", "1")]).unwrap();
    let listed = s.list(DIR, &[ResourceKind::Group], &q, &at()).unwrap();
    assert_eq!(listed["totalResults"], 0, "{listed}");
    let ur = s
        .get(DIR, ResourceKind::User, &u, &at(), false)
        .await
        .unwrap();
    assert!(
        ur.to_json()
            .get("groups")
            .is_none_or(|g| g.as_array().unwrap().is_empty())
    );
    let again = s.delete(DIR, ResourceKind::Group, &g, None).await;
    assert!(matches!(again, Err(Error::Scim(ScimError::NotFound(_)))));
    // The labels are still there until the worker runs; then they and the group are gone.
    assert_eq!(
        member_labels(&stored(&s.store, ResourceKind::User, &u).await).len(),
        1
    );
    assert_eq!(s.run_queued_cleanups().await, 2);
    for id in [&u, &other] {
        assert!(member_labels(&stored(&s.store, ResourceKind::User, id).await).is_empty());
    }
    assert!(
        s.store
            .get(ResourceKind::Group, "ns", &g)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn cleanup_ends_consistent_with_nested_groups_and_a_member_deleted_meanwhile() {
    let s = service();
    let u = user(&s, "u").await;
    let gone = user(&s, "gone").await;
    let inner = group(&s, "inner", &[&u]).await;
    let outer = group(&s, "outer", &[&u, &gone, &inner]).await;
    s.delete(DIR, ResourceKind::Group, &outer, None)
        .await
        .unwrap();
    // The nested group is being deleted too, and a member is deleted before the worker runs.
    s.delete(DIR, ResourceKind::Group, &inner, None)
        .await
        .unwrap();
    s.delete(DIR, ResourceKind::User, &gone, None)
        .await
        .unwrap();
    s.run_queued_cleanups().await;
    assert!(member_labels(&stored(&s.store, ResourceKind::User, &u).await).is_empty());
    for g in [&inner, &outer] {
        assert!(
            s.store
                .get(ResourceKind::Group, "ns", g)
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn labels_of_a_group_deleted_behind_the_servers_back_are_swept() {
    let s = service();
    let u = user(&s, "u").await;
    let g = group(&s, "g", &[&u]).await;
    // kubectl delete: the object vanishes without the finalizer; the watch reports it.
    s.store.delete(ResourceKind::Group, "ns", &g).await.unwrap();
    assert_eq!(s.cache.orphaned_groups().len(), 0);
    s.cache.delete_object(ResourceKind::Group, "ns", "d", &g, 0);
    assert_eq!(s.cache.orphaned_groups().len(), 1);
    assert_eq!(s.run_queued_cleanups().await, 1);
    assert!(member_labels(&stored(&s.store, ResourceKind::User, &u).await).is_empty());
    assert!(s.cache.orphaned_groups().is_empty());
    // A job for a group that lives removes nothing.
    let live = group(&s, "live", &[&u]).await;
    s.cache.cleanups().queue(crate::cleanup_queue::CleanupJob {
        ns: "ns".into(),
        dir: "d".into(),
        group: live.clone(),
    });
    assert_eq!(s.run_queued_cleanups().await, 0);
    assert_eq!(
        member_labels(&stored(&s.store, ResourceKind::User, &u).await).len(),
        1
    );
}

#[tokio::test]
async fn lists_use_the_indexes_and_page() {
    let s = service();
    for n in ["a", "b", "c"] {
        user(&s, n).await;
    }
    let q = ListQuery::from_query_pairs([("filter", r#"userName eq "B""#)]).unwrap();
    let v = s.list(DIR, &[ResourceKind::User], &q, &at()).unwrap();
    assert_eq!(v["totalResults"], 1);
    assert_eq!(v["Resources"][0]["userName"], "b");
    let q = ListQuery::from_query_pairs([("startIndex", "2"), ("count", "1")]).unwrap();
    let v = s.list(DIR, &[ResourceKind::User], &q, &at()).unwrap();
    assert_eq!(
        (v["totalResults"].as_u64(), v["itemsPerPage"].as_u64()),
        (Some(3), Some(1))
    );
}

/// Two replicas over one store, whose caches see only their own writes (no watch at all: the
/// worst case of a watch that lags).
fn replicas() -> (
    DirectoryService<Arc<MemoryStore>>,
    DirectoryService<Arc<MemoryStore>>,
    Arc<MemoryStore>,
) {
    let store = Arc::new(MemoryStore::default());
    let limits = Limits {
        max_results: 100,
        member_write_concurrency: 4,
        conflict_retries: 3,
        inline_member_writes: 1000,
    };
    let one = || DirectoryService::new(Arc::new(Cache::default()), store.clone(), limits, keys());
    (one(), one(), store)
}

async fn stored(store: &MemoryStore, kind: ResourceKind, id: &str) -> kube::api::DynamicObject {
    store.get(kind, "ns", id).await.unwrap().unwrap()
}

fn labelled(obj: &kube::api::DynamicObject, group: &str) -> bool {
    obj.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(&kube_scim_crds::labels::member_of(group)))
        .is_some_and(|v| v == "true")
}

async fn create_in<S: Storage>(
    s: &DirectoryService<S>,
    dir: DirRef<'_>,
    kind: ResourceKind,
    body: Value,
) -> String {
    let r = s.create(dir, &owner(), kind, &body, &at()).await.unwrap();
    r.id().unwrap().to_string()
}

/// Makes `s` see the stored object as its watch eventually would.
async fn sync<S: Storage>(
    s: &DirectoryService<S>,
    store: &MemoryStore,
    kind: ResourceKind,
    id: &str,
) {
    s.cache().apply_object(kind, &stored(store, kind, id).await);
}

#[tokio::test]
async fn sequential_patches_through_alternating_replicas_lose_no_update() {
    let (r1, r2, store) = replicas();
    let id = create_in(&r1, DIR, ResourceKind::User, json!({"userName": "u"})).await;
    sync(&r2, &store, ResourceKind::User, &id).await;
    let title =
        |t: &str| patch(json!({"Operations": [{"op": "replace", "path": "title", "value": t}]}));
    for round in 0..20 {
        for (s, t) in [(&r1, "A"), (&r2, "B"), (&r1, "A")] {
            s.modify(
                DIR,
                ResourceKind::User,
                &id,
                &title(t),
                None,
                Reply::Nothing,
            )
            .await
            .unwrap();
            let obj = stored(&store, ResourceKind::User, &id).await;
            assert_eq!(obj.data["status"]["title"], t, "round {round}");
        }
    }
}

#[tokio::test]
async fn a_no_op_on_a_current_copy_stores_nothing() {
    let s = service();
    let id = user(&s, "u").await;
    let title = patch(json!({"Operations": [{"op": "replace", "path": "title", "value": "A"}]}));
    s.modify(DIR, ResourceKind::User, &id, &title, None, Reply::Nothing)
        .await
        .unwrap();
    let writes = s.store.writes.load(Ordering::SeqCst);
    s.modify(DIR, ResourceKind::User, &id, &title, None, Reply::Nothing)
        .await
        .unwrap();
    assert_eq!(s.store.writes.load(Ordering::SeqCst), writes);
}

#[tokio::test]
async fn membership_add_remove_add_through_alternating_replicas_is_stored() {
    let (r1, r2, store) = replicas();
    let u = create_in(&r1, DIR, ResourceKind::User, json!({"userName": "u"})).await;
    let g = create_in(&r1, DIR, ResourceKind::Group, json!({"displayName": "g"})).await;
    for id in [&u, &g] {
        let kind = if id == &u {
            ResourceKind::User
        } else {
            ResourceKind::Group
        };
        sync(&r2, &store, kind, id).await;
    }
    let op = |op: &str| {
        patch(json!({"Operations": [{"op": op, "path": "members", "value": [{"value": u}]}]}))
    };
    for round in 0..10 {
        for (s, o, on) in [
            (&r1, "add", true),
            (&r2, "remove", false),
            (&r1, "add", true),
        ] {
            s.modify(DIR, ResourceKind::Group, &g, &op(o), None, Reply::Nothing)
                .await
                .unwrap();
            let obj = stored(&store, ResourceKind::User, &u).await;
            assert_eq!(labelled(&obj, &g), on, "round {round}: {o}");
        }
    }
    // A PUT through the replica that never saw the member still removes it.
    r2.modify(
        DIR,
        ResourceKind::Group,
        &g,
        &Change::Replace(json!({"displayName": "g", "members": []})),
        None,
        Reply::Nothing,
    )
    .await
    .unwrap();
    assert!(!labelled(&stored(&store, ResourceKind::User, &u).await, &g));
    // And so does a DELETE of the group.
    r1.modify(
        DIR,
        ResourceKind::Group,
        &g,
        &op("add"),
        None,
        Reply::Nothing,
    )
    .await
    .unwrap();
    r2.delete(DIR, ResourceKind::Group, &g, None).await.unwrap();
    r2.run_queued_cleanups().await;
    assert!(!labelled(&stored(&store, ResourceKind::User, &u).await, &g));
}

#[tokio::test]
async fn a_refused_group_change_leaves_no_trace() {
    let s = service();
    let u = user(&s, "u").await;
    let g = group(&s, "g", &[]).await;
    let before = stored(&s.store, ResourceKind::Group, &g).await;
    let changes = [
        patch(json!({"Operations": [
            {"op": "replace", "path": "displayName", "value": "renamed"},
            {"op": "add", "path": "members", "value": [{"value": g}]}]})),
        patch(json!({"Operations": [
            {"op": "replace", "path": "displayName", "value": "renamed"},
            {"op": "add", "path": "members", "value": [{"value": u}, {"value": "no-such-id"}]}]})),
        Change::Replace(json!({"displayName": "renamed", "members": [{"value": g}]})),
        Change::Replace(
            json!({"displayName": "renamed", "members": [{"value": u}, {"value": "00000000-0000-0000-0000-000000000000"}]}),
        ),
    ];
    for change in &changes {
        let err = s
            .modify(DIR, ResourceKind::Group, &g, change, None, Reply::Nothing)
            .await
            .unwrap_err();
        assert_eq!(scim_type(err), Some("invalidValue"));
        let after = stored(&s.store, ResourceKind::Group, &g).await;
        assert_eq!(after.data, before.data);
        assert_eq!(
            after.metadata.resource_version,
            before.metadata.resource_version
        );
        assert!(!labelled(
            &stored(&s.store, ResourceKind::User, &u).await,
            &g
        ));
    }
}

#[tokio::test]
async fn another_directorys_users_are_no_members_and_answer_like_unknown_ids() {
    let (a, b, store) = replicas();
    let dir_a = DirRef {
        ns: "ns",
        name: "a",
    };
    let dir_b = DirRef {
        ns: "ns",
        name: "b",
    };
    let victim = create_in(&a, dir_a, ResourceKind::User, json!({"userName": "ceo"})).await;
    let g = create_in(&b, dir_b, ResourceKind::Group, json!({"displayName": "g"})).await;
    let add = |id: &str| {
        patch(json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]}))
    };
    let detail = |e: Error| match e {
        Error::Scim(ScimError::InvalidValue(d)) => d,
        other => panic!("{other:?}"),
    };
    let foreign = b
        .modify(
            dir_b,
            ResourceKind::Group,
            &g,
            &add(&victim),
            None,
            Reply::Nothing,
        )
        .await
        .unwrap_err();
    let unknown_id = "0b7e9a0c-0000-4000-8000-000000000000";
    let unknown = b
        .modify(
            dir_b,
            ResourceKind::Group,
            &g,
            &add(unknown_id),
            None,
            Reply::Nothing,
        )
        .await
        .unwrap_err();
    assert_eq!(
        detail(foreign).replace(&victim, "ID"),
        detail(unknown).replace(unknown_id, "ID")
    );
    assert!(!labelled(
        &stored(&store, ResourceKind::User, &victim).await,
        &g
    ));
    // On create too.
    let err = b
        .create(
            dir_b,
            &owner(),
            ResourceKind::Group,
            &json!({"displayName": "h", "members": [{"value": victim}]}),
            &at(),
        )
        .await
        .unwrap_err();
    assert_eq!(scim_type(err), Some("invalidValue"));
    // Ids are not computable from the userName without the directory's uid.
    assert_ne!(
        victim,
        candidate_id(ResourceKind::User, "ns", "a", "", "ceo", 0)
    );
}

#[tokio::test]
async fn unique_names_are_visible_non_blank_and_one_per_normal_form() {
    let s = service();
    let create = |name: &str| {
        let body = json!({"userName": name});
        let s = &s;
        async move {
            s.create(DIR, &owner(), ResourceKind::User, &body, &at())
                .await
        }
    };
    for bad in [
        "",
        "   ",
        "ad\u{200B}a",
        "ada\u{0007}",
        "\u{FEFF}ada",
        "a\u{202E}da",
    ] {
        let err = create(bad).await.unwrap_err();
        assert_eq!(scim_type(err), Some("invalidValue"), "{bad:?}");
    }
    // "é" precomposed and as e + combining acute are one name, stored in NFC.
    let r = create("jos\u{0065}\u{0301}").await.unwrap();
    assert_eq!(r.user_name(), Some("jos\u{00E9}"));
    let err = create("jos\u{00E9}").await.unwrap_err();
    assert_eq!(scim_type(err), Some("uniqueness"));
    // A rename is checked the same way; other changes of a user are not refused for it.
    let id = r.id().unwrap().to_string();
    let rename =
        patch(json!({"Operations": [{"op": "replace", "path": "userName", "value": " "}]}));
    let err = s
        .modify(DIR, ResourceKind::User, &id, &rename, None, Reply::Nothing)
        .await
        .unwrap_err();
    assert_eq!(scim_type(err), Some("invalidValue"));
    let groups = |name: &str| json!({"displayName": name});
    let err = s
        .create(
            DIR,
            &owner(),
            ResourceKind::Group,
            &groups("G\u{200D}"),
            &at(),
        )
        .await
        .unwrap_err();
    assert_eq!(scim_type(err), Some("invalidValue"));
}

#[test]
fn the_apiservers_words_are_not_sent_to_the_client() {
    let e = Error::from(StoreError::Rejected(
        "ScimUser.kubescim.io \"x\" is invalid: status.title: Too long: may not be more than 256 bytes".into(),
    ));
    let detail = e.to_string();
    assert!(
        !detail.contains("kubescim.io") && !detail.contains("status."),
        "{detail}"
    );
}

/// Reads by id and writes follow the store, not a lagging cache: what one replica created,
/// another reads, changes and deletes at once; what one deleted, another no longer serves.
#[tokio::test]
async fn a_replica_reads_what_another_wrote_a_moment_ago() {
    let (r1, r2, _store) = replicas();
    let id = create_in(&r1, DIR, ResourceKind::User, json!({"userName": "u"})).await;
    let r = r2
        .get(DIR, ResourceKind::User, &id, &at(), false)
        .await
        .expect("created through the other replica");
    assert_eq!(r.to_json()["userName"], "u");
    let change = patch(json!({"Operations": [{"op": "replace", "path": "title", "value": "T"}]}));
    r2.modify(DIR, ResourceKind::User, &id, &change, None, Reply::Nothing)
        .await
        .expect("changed through the replica that did not create it");
    let r = r1
        .get(DIR, ResourceKind::User, &id, &at(), false)
        .await
        .unwrap();
    assert_eq!(
        r.to_json()["title"],
        "T",
        "not the creating replica's stale copy"
    );
    r1.delete(DIR, ResourceKind::User, &id, None).await.unwrap();
    let gone = r2.get(DIR, ResourceKind::User, &id, &at(), false).await;
    assert!(
        matches!(gone, Err(Error::Scim(ref e)) if e.status() == 404),
        "deleted through the other replica: {gone:?}"
    );
}

fn rollout_of(obj: &kube::api::DynamicObject) -> Option<Vec<String>> {
    let list = obj.data["spec"]["memberRollout"]["members"].as_array()?;
    Some(
        list.iter()
            .map(|m| m["value"].as_str().unwrap().to_string())
            .collect(),
    )
}

#[tokio::test]
async fn a_large_replacement_is_served_at_once_and_written_in_the_background() {
    let s = service_inline(2);
    let mut old = Vec::new();
    let mut new = Vec::new();
    for i in 0..3 {
        old.push(user(&s, &format!("o{i}")).await);
        new.push(user(&s, &format!("n{i}")).await);
    }
    let both = &old[0];
    let refs: Vec<&str> = old.iter().map(String::as_str).collect();
    let g = group(&s, "g", &refs[..2]).await;
    let writes = s.store.writes.load(Ordering::SeqCst);
    let list: Vec<Value> = new
        .iter()
        .chain(std::iter::once(both))
        .map(|m| json!({"value": m}))
        .collect();
    let served = s
        .modify(
            DIR,
            ResourceKind::Group,
            &g,
            &Change::Replace(json!({"displayName": "g", "members": list})),
            None,
            Reply::Resource {
                at: &at(),
                with_members: true,
            },
        )
        .await
        .unwrap()
        .unwrap();
    // One write (the group, with the new list); the SCIM view is the new list at once.
    assert_eq!(s.store.writes.load(Ordering::SeqCst) - writes, 1);
    let mut want: Vec<String> = new.iter().chain(std::iter::once(both)).cloned().collect();
    want.sort();
    assert_eq!(member_ids(&served), want);
    let gone = s
        .get(DIR, ResourceKind::User, &old[1], &at(), false)
        .await
        .unwrap();
    assert!(
        gone.to_json()
            .get("groups")
            .is_none_or(|v| v.as_array().unwrap().is_empty())
    );
    let joined = s
        .get(DIR, ResourceKind::User, &new[0], &at(), false)
        .await
        .unwrap();
    assert_eq!(joined.to_json()["groups"][0]["value"], g.as_str());
    let rolling = stored(&s.store, ResourceKind::Group, &g).await;
    assert_eq!(rollout_of(&rolling).map(|l| l.len()), Some(4));
    // A change while the rollout runs goes into the rollout.
    let add = patch(
        json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": old[2]}]}]}),
    );
    s.modify(DIR, ResourceKind::Group, &g, &add, None, Reply::Nothing)
        .await
        .unwrap();
    want.push(old[2].clone());
    want.sort();
    let read = s
        .get(DIR, ResourceKind::Group, &g, &at(), true)
        .await
        .unwrap();
    assert_eq!(member_ids(&read), want);
    // The worker writes the labels: old members out, new ones in, then the rollout ends.
    s.run_queued_cleanups().await;
    for id in old.iter().chain(new.iter()) {
        let on = labelled(&stored(&s.store, ResourceKind::User, id).await, &g);
        assert_eq!(on, want.contains(id), "{id}");
    }
    assert_eq!(
        rollout_of(&stored(&s.store, ResourceKind::Group, &g).await),
        None
    );
    let read = s
        .get(DIR, ResourceKind::Group, &g, &at(), true)
        .await
        .unwrap();
    assert_eq!(member_ids(&read), want);
}

/// The label writes the worker made in `s`, by change (`add` / `remove`).
fn worker_writes(s: &DirectoryService<MemoryStore>, change: &str) -> u64 {
    s.label_writes
        .get_or_create(&LabelWriteLabels {
            directory: "ns/d".into(),
            change: change.into(),
        })
        .get()
}

#[tokio::test]
async fn background_label_work_is_pending_until_done_and_its_writes_are_counted() {
    let s = service_inline(1);
    let a = user(&s, "a").await;
    let b = user(&s, "b").await;
    // More than the inline limit: a rollout for the worker.
    let g = group(&s, "g", &[&a, &b]).await;
    assert_eq!(s.cache.cleanups().pending("ns", "d"), 1);
    s.run_queued_cleanups().await;
    assert_eq!(s.cache.cleanups().pending("ns", "d"), 0);
    assert_eq!(
        (worker_writes(&s, "add"), worker_writes(&s, "remove")),
        (2, 0)
    );
    s.delete(DIR, ResourceKind::Group, &g, None).await.unwrap();
    assert_eq!(s.cache.cleanups().pending("ns", "d"), 1);
    s.run_queued_cleanups().await;
    assert_eq!(s.cache.cleanups().pending("ns", "d"), 0);
    assert_eq!(
        (worker_writes(&s, "add"), worker_writes(&s, "remove")),
        (2, 2)
    );
}

#[tokio::test]
async fn a_small_replacement_is_written_inline() {
    let s = service_inline(10);
    let u = user(&s, "u").await;
    let v = user(&s, "v").await;
    let g = group(&s, "g", &[&u]).await;
    s.modify(
        DIR,
        ResourceKind::Group,
        &g,
        &Change::Replace(json!({"displayName": "g", "members": [{"value": v}]})),
        None,
        Reply::Nothing,
    )
    .await
    .unwrap();
    assert!(!labelled(
        &stored(&s.store, ResourceKind::User, &u).await,
        &g
    ));
    assert!(labelled(
        &stored(&s.store, ResourceKind::User, &v).await,
        &g
    ));
    assert_eq!(
        rollout_of(&stored(&s.store, ResourceKind::Group, &g).await),
        None
    );
}

#[tokio::test]
async fn a_new_group_with_many_members_rolls_them_out() {
    let s = service_inline(1);
    let a = user(&s, "a").await;
    let b = user(&s, "b").await;
    let g = group(&s, "g", &[&a, &b]).await;
    assert!(!labelled(
        &stored(&s.store, ResourceKind::User, &a).await,
        &g
    ));
    let read = s
        .get(DIR, ResourceKind::Group, &g, &at(), true)
        .await
        .unwrap();
    assert_eq!(member_ids(&read).len(), 2);
    s.run_queued_cleanups().await;
    for id in [&a, &b] {
        assert!(labelled(
            &stored(&s.store, ResourceKind::User, id).await,
            &g
        ));
    }
    assert_eq!(
        rollout_of(&stored(&s.store, ResourceKind::Group, &g).await),
        None
    );
}
