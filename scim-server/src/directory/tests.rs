//! The directory service against the in-memory store: milliseconds per scenario, no cluster.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use scim_protocol::{ListQuery, PatchRequest, Resource, ResourceKind, ScimError};
use serde_json::{Value, json};

use super::*;
use crate::cache::{Cache, DirInfo};
use crate::memory_store::MemoryStore;
use crate::render::Locations;

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
    DirectoryService::new(
        Arc::new(Cache::default()),
        MemoryStore::default(),
        Limits {
            max_results: 100,
            member_write_concurrency: 4,
            conflict_retries: 3,
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

#[tokio::test]
async fn deleting_a_group_releases_its_members_first() {
    let s = service();
    let u = user(&s, "u").await;
    let g = group(&s, "g", &[&u]).await;
    s.delete(DIR, ResourceKind::Group, &g, None).await.unwrap();
    let obj = s
        .store
        .get(ResourceKind::User, "ns", &u)
        .await
        .unwrap()
        .unwrap();
    assert!(
        obj.metadata
            .labels
            .unwrap_or_default()
            .keys()
            .all(|k| !k.starts_with(kube_scim_crds::labels::MEMBER_OF_PREFIX))
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
