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

fn service() -> DirectoryService<MemoryStore> {
    DirectoryService::new(
        Arc::new(Cache::default()),
        MemoryStore::default(),
        Limits {
            max_results: 100,
            member_write_concurrency: 4,
            conflict_retries: 3,
        },
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
        candidate_id(ResourceKind::User, "ns", "d", "alice@contoso.com", 0)
    );
    let r = s.get(DIR, ResourceKind::User, &id, &at(), true).unwrap();
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
    assert_eq!(again, candidate_id(ResourceKind::User, "ns", "d", "a", 1));
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
    let r = s.get(DIR, ResourceKind::Group, &g, &at(), true).unwrap();
    assert_eq!(member_ids(&r), vec![u2.clone()]);
    // The user shows its group; the removed one does not.
    let groups = |id: &str| {
        s.get(DIR, ResourceKind::User, id, &at(), false)
            .unwrap()
            .to_json()["groups"]
            .clone()
    };
    assert_eq!(groups(&u2)[0]["value"], g.as_str());
    assert!(groups(&u1).as_array().is_none_or(Vec::is_empty));
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
    let r = s.get(DIR, ResourceKind::Group, &g, &at(), true).unwrap();
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
