//! The directory service, group membership: adds and removes, unknown and foreign members, large replacements rolled out in the background; against the in-memory store.

use super::fixtures::*;

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
