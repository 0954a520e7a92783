//! The directory service, a deleted group: gone for SCIM at once, its members' labels removed in the background; against the in-memory store.

use super::fixtures::*;

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
