//! The directory service, creating, reading back and writing (If-Match, lost races, replicas whose caches lag, errors); against the in-memory store.

use super::fixtures::*;

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
