//! The directory service, unique attributes (userName, displayName): case-insensitive, renames, normal forms; against the in-memory store.

use super::fixtures::*;

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
