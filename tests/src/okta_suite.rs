//! Okta end to end: a client plays Okta's SCIM 2.0 provisioning ([`crate::okta`]) against a
//! directory with `provider: okta`; every scenario checks the HTTP answers Okta expects and the
//! ScimUser / ScimGroup objects a watching workload sees. Runs against any [`ScimTarget`].

use std::time::Duration;

use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kube_scim_crds::{Provider, ScimDirectory, ScimGroup, ScimUser, labels};
use serde_json::{Value, json};

use crate::entra_suite::ScimTarget;
use crate::okta::{OktaClient, OktaUser};
use crate::stack::ready_directory;

struct Org {
    client: OktaClient,
    namespace: String,
    directory: String,
    token: String,
}

/// A directory with `provider: okta`, Ready; its Tenant URL is what the admin pastes as the
/// SCIM connector base URL, so it must carry no query string.
async fn org(kube: &Client, target: &dyn ScimTarget, ns: &str, name: &str) -> Org {
    let mut spec = target.directory_spec();
    spec.provider = Provider::Okta;
    Api::<ScimDirectory>::namespaced(kube.clone(), ns)
        .create(&PostParams::default(), &ScimDirectory::new(name, spec))
        .await
        .unwrap();
    let (endpoint, token) = ready_directory(kube, ns, name, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", target.logs()));
    crate::entra_suite::served(target, ns, name, &token).await;
    assert!(
        endpoint.ends_with(&format!("/scim/v2/{ns}/{name}")),
        "an Okta connector base URL has no query string: {endpoint}"
    );
    Org {
        client: OktaClient::with_http(&target.base_url(ns, name), &token, target.http()),
        namespace: ns.into(),
        directory: name.into(),
        token,
    }
}

fn okta_user(n: usize) -> OktaUser {
    OktaUser {
        okta_id: format!("00u{n:017}"),
        login: format!("user.{n}@example.okta.test"),
        first_name: format!("First{n}"),
        last_name: format!("Last{n}"),
        email: format!("user.{n}@example.okta.test"),
        password: Some(format!("Pa55-{n}-never-stored")),
    }
}

fn member(id: &str, user: &OktaUser) -> (String, String) {
    (id.to_string(), user.login.clone())
}

async fn users_of(kube: &Client, org: &Org) -> Vec<ScimUser> {
    let selector = format!("{}={}", labels::DIRECTORY, org.directory);
    Api::<ScimUser>::namespaced(kube.clone(), &org.namespace)
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
}

fn members_of(users: &[ScimUser], group_id: &str) -> Vec<String> {
    let key = labels::member_of(group_id);
    let mut ids: Vec<String> = users
        .iter()
        .filter(|u| u.labels().contains_key(&key))
        .map(|u| u.name_any())
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&String]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn answer_member_ids(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|m| m["value"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Test Connector Configuration, then an import of 7 users in pages of 3 and of the groups, as
/// Okta pages: `startIndex` from 1, `count` as configured, until `totalResults`. A wrong token
/// gets 401 with a SCIM error.
pub async fn connector_test_and_paged_import(kube: &Client, ns: &str, target: &dyn ScimTarget) {
    let org = org(kube, target, ns, "acme").await;
    let okta = &org.client;
    let (users, groups) = okta.test_connector().await.unwrap();
    for answer in [&users, &groups] {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(answer.content_type.starts_with("application/scim+json"));
        assert_eq!(answer.body["totalResults"], 0);
        assert_eq!(answer.body["Resources"], json!([]));
        assert_eq!(answer.body["startIndex"], 1);
    }
    let wrong = OktaClient::with_http(&target.base_url(ns, "acme"), "not-the-token", target.http());
    let (denied, _) = wrong.test_connector().await.unwrap();
    assert_eq!(denied.status, 401, "{}", denied.body);
    assert_eq!(
        denied.body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );

    let mut created = Vec::new();
    for n in 0..7 {
        let (id, new) = okta.assign_user(&okta_user(n)).await.unwrap();
        assert!(new);
        created.push(id);
    }
    okta.push_group("Imported", &[]).await.unwrap();
    let (imported, requests) = okta.import("Users", 3).await.unwrap();
    assert_eq!(requests, 3, "7 users in pages of 3");
    let mut ids: Vec<String> = imported
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    created.sort();
    assert_eq!(ids, created, "every user exactly once across the pages");
    assert!(imported.iter().all(|u| u.get("password").is_none()));
    let (groups, _) = okta.import("Groups", 100).await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["displayName"], "Imported");
}

/// Assignment (lookup, POST with a password), a second assignment that links instead of
/// creating, profile updates by GET + PUT that keep the group memberships Okta does not send,
/// deactivation and reactivation by PATCH answered 200 with the user, 409 for a duplicate
/// userName and 404 for an unknown id.
pub async fn user_lifecycle_with_put_profile_updates(
    kube: &Client,
    ns: &str,
    target: &dyn ScimTarget,
) {
    let org = org(kube, target, ns, "acme").await;
    let okta = &org.client;
    let ada = okta_user(1);
    let (id, new) = okta.assign_user(&ada).await.unwrap();
    assert!(new);
    let (again, new) = okta.assign_user(&ada).await.unwrap();
    assert_eq!(
        (again.as_str(), new),
        (id.as_str(), false),
        "the lookup links, no second POST"
    );

    let users = Api::<ScimUser>::namespaced(kube.clone(), &org.namespace);
    let stored = users.get(&id).await.unwrap();
    let status = serde_json::to_value(stored.status.as_ref().unwrap()).unwrap();
    assert_eq!(status["userName"], ada.login.as_str());
    assert_eq!(status["externalId"], ada.okta_id.as_str());
    let object = serde_json::to_string(&stored).unwrap();
    assert!(
        !object.contains(ada.password.as_deref().unwrap()),
        "the password is never stored: {object}"
    );
    let got = okta.get("Users", &id).await.unwrap();
    assert_eq!(got.status, 200);
    assert!(got.body.get("password").is_none());

    // Group push made a membership; Okta's PUT does not carry it and must not remove it.
    let group = okta
        .push_group("Engineering", &[member(&id, &ada)])
        .await
        .unwrap();
    let gid = group.body["id"].as_str().unwrap().to_string();
    let renamed = OktaUser {
        last_name: "King".into(),
        email: "ada.king@example.okta.test".into(),
        password: Some("changed-Pa55".into()),
        ..ada.clone()
    };
    let put = okta.update_profile(&id, &renamed).await.unwrap();
    assert_eq!(put.body["name"]["familyName"], "King");
    assert_eq!(put.body["emails"][0]["value"], "ada.king@example.okta.test");
    assert!(put.body.get("password").is_none());
    assert_eq!(put.body["groups"][0]["value"], gid.as_str(), "{}", put.body);
    let stored = users.get(&id).await.unwrap();
    assert!(
        stored.labels().contains_key(&labels::member_of(&gid)),
        "PUT kept the membership label: {:?}",
        stored.labels()
    );
    assert_eq!(
        stored
            .status
            .as_ref()
            .unwrap()
            .name
            .as_ref()
            .unwrap()
            .family_name
            .as_deref(),
        Some("King")
    );
    assert!(
        !serde_json::to_string(&stored)
            .unwrap()
            .contains("changed-Pa55")
    );
    let logs = target.logs();
    assert!(
        !logs.contains("changed-Pa55") && !logs.contains(ada.password.as_deref().unwrap()),
        "passwords are never logged"
    );

    // Unassignment deactivates; reassignment reactivates. 200 with the user both times.
    let off = okta.set_active(&id, false).await.unwrap();
    assert_eq!(off.body["active"], false);
    assert_eq!(off.body["id"], id.as_str());
    let stored = users.get(&id).await.unwrap();
    assert_eq!(
        stored.labels().get(labels::ACTIVE).map(String::as_str),
        Some("false")
    );
    assert_eq!(
        okta.find_user(&ada.login).await.unwrap().unwrap()["active"],
        false,
        "deactivated users are still found"
    );
    let on = okta.set_active(&id, true).await.unwrap();
    assert_eq!(on.body["active"], true);
    let stored = users.get(&id).await.unwrap();
    assert_eq!(
        stored.labels().get(labels::ACTIVE).map(String::as_str),
        Some("true")
    );
    assert!(stored.labels().contains_key(&labels::member_of(&gid)));

    // A duplicate userName (other case) is 409 uniqueness, which Okta shows as an error and
    // resolves by the lookup; an unknown id is 404 with a SCIM error.
    let duplicate = okta
        .send(
            reqwest::Method::POST,
            "/Users",
            Some(crate::okta::user_body(&OktaUser {
                login: ada.login.to_uppercase(),
                ..okta_user(2)
            })),
        )
        .await
        .unwrap();
    assert_eq!(duplicate.status, 409, "{}", duplicate.body);
    assert_eq!(duplicate.body["scimType"], "uniqueness");
    let missing = okta
        .get("Users", "00000000-0000-4000-8000-000000000000")
        .await
        .unwrap();
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_eq!(missing.body["status"], "404");
    assert_eq!(users_of(kube, &org).await.len(), 1);
}

/// Push Groups: a group created with members, member add/remove PATCHes, a full PUT, a rename
/// by path-less replace with the group's id, and the delete; every PATCH answered 200 with
/// the group, and the membership labels follow each step.
pub async fn group_push_with_memberships_rename_and_delete(
    kube: &Client,
    ns: &str,
    target: &dyn ScimTarget,
) {
    let org = org(kube, target, ns, "acme").await;
    let okta = &org.client;
    let people: Vec<OktaUser> = (10..16).map(okta_user).collect();
    let mut ids = Vec::new();
    for p in &people {
        ids.push(okta.assign_user(p).await.unwrap().0);
    }
    let m = |i: usize| member(&ids[i], &people[i]);

    let created = okta.push_group("Platform", &[m(0), m(1)]).await.unwrap();
    let gid = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        answer_member_ids(&created.body),
        sorted(&[&ids[0], &ids[1]])
    );
    assert_eq!(
        members_of(&users_of(kube, &org).await, &gid),
        sorted(&[&ids[0], &ids[1]])
    );

    let patched = okta
        .update_members(&gid, &[m(2), m(3)], std::slice::from_ref(&ids[0]))
        .await
        .unwrap();
    assert_eq!(patched.body["id"], gid.as_str());
    assert_eq!(patched.body["displayName"], "Platform");
    let expected = sorted(&[&ids[1], &ids[2], &ids[3]]);
    assert_eq!(answer_member_ids(&patched.body), expected);
    // Each member's `display` is the login Okta sent, not the user's displayName.
    for m in patched.body["members"].as_array().unwrap() {
        let i = ids.iter().position(|id| m["value"] == id.as_str()).unwrap();
        assert_eq!(m["display"], people[i].login.as_str(), "{}", patched.body);
    }
    assert_eq!(members_of(&users_of(kube, &org).await, &gid), expected);

    // Re-adding a member and removing a non-member change nothing.
    let same = okta
        .update_members(&gid, &[m(1)], std::slice::from_ref(&ids[5]))
        .await
        .unwrap();
    assert_eq!(answer_member_ids(&same.body), expected);

    let replaced = okta
        .replace_group(&gid, "Platform", &[m(3), m(4), m(5)])
        .await
        .unwrap();
    let expected = sorted(&[&ids[3], &ids[4], &ids[5]]);
    assert_eq!(answer_member_ids(&replaced.body), expected);
    assert_eq!(members_of(&users_of(kube, &org).await, &gid), expected);

    let renamed = okta.rename_group(&gid, "Platform Team").await.unwrap();
    assert_eq!(renamed.body["displayName"], "Platform Team");
    assert_eq!(renamed.body["id"], gid.as_str(), "the id never changes");
    assert_eq!(
        answer_member_ids(&renamed.body),
        expected,
        "a rename keeps members"
    );
    let groups = Api::<ScimGroup>::namespaced(kube.clone(), &org.namespace);
    assert_eq!(
        groups.get(&gid).await.unwrap().status.unwrap().display_name,
        "Platform Team"
    );
    assert_eq!(members_of(&users_of(kube, &org).await, &gid), expected);

    okta.delete_group(&gid).await.unwrap();
    // Gone for SCIM at once; labels and object follow in the background.
    assert_eq!(okta.get("Groups", &gid).await.unwrap().status, 404);
    crate::eventually(
        "the deleted group's labels and object are gone",
        std::time::Duration::from_secs(60),
        || async {
            let labels_gone = members_of(&users_of(kube, &org).await, &gid).is_empty();
            let object_gone = groups.get_opt(&gid).await.unwrap().is_none();
            (labels_gone && object_gone).then_some(())
        },
    )
    .await;
    assert_eq!(users_of(kube, &org).await.len(), 6, "users stay");
}

/// `spec.provider` changes from okta to entra and back: the Tenant URL follows, the stored
/// users, groups and memberships stay as they were, and only the group PATCH answer changes
/// (Entra: 204).
pub async fn provider_change_keeps_every_object(kube: &Client, ns: &str, target: &dyn ScimTarget) {
    let org = org(kube, target, ns, "acme").await;
    let okta = &org.client;
    let ada = okta_user(20);
    let (id, _) = okta.assign_user(&ada).await.unwrap();
    let group = okta.push_group("Ops", &[member(&id, &ada)]).await.unwrap();
    let gid = group.body["id"].as_str().unwrap().to_string();
    let before_user = okta.get("Users", &id).await.unwrap().body;

    let dirs = Api::<ScimDirectory>::namespaced(kube.clone(), &org.namespace);
    let set = |p: &'static str| {
        let dirs = dirs.clone();
        let name = org.directory.clone();
        async move {
            dirs.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"provider": p}})),
            )
            .await
            .unwrap();
        }
    };
    set("entra").await;
    wait_endpoint(
        &dirs,
        &org.directory,
        |e| e.ends_with("?aadOptscim062020"),
        target,
    )
    .await;
    // The server sees the change through its watch; until then Okta's answer may still come.
    let op = json!({"op": "replace", "path": "externalId", "value": "grp-1"});
    let mut status = 0;
    for _ in 0..100 {
        let answer = okta
            .send(
                reqwest::Method::PATCH,
                &format!("/Groups/{gid}"),
                Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [op.clone()]})),
            )
            .await
            .unwrap();
        status = answer.status;
        if status == 204 {
            break;
        }
        assert_eq!(status, 200, "{}", answer.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 204, "an Entra directory's group PATCH is 204");
    let after_user = okta.get("Users", &id).await.unwrap().body;
    assert_eq!(after_user["id"], before_user["id"]);
    assert_eq!(after_user["userName"], before_user["userName"]);
    assert_eq!(after_user["groups"], before_user["groups"]);
    assert_eq!(
        members_of(&users_of(kube, &org).await, &gid),
        vec![id.clone()]
    );

    set("okta").await;
    wait_endpoint(&dirs, &org.directory, |e| !e.contains('?'), target).await;
    let back = OktaClient::with_http(
        &target.base_url(&org.namespace, &org.directory),
        &org.token,
        target.http(),
    );
    let mut ok = false;
    for _ in 0..100 {
        let answer = back
            .send(
                reqwest::Method::PATCH,
                &format!("/Groups/{gid}"),
                Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [op.clone()]})),
            )
            .await
            .unwrap();
        if answer.status == 200 {
            assert_eq!(answer_member_ids(&answer.body), vec![id.clone()]);
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "back on okta, group PATCHes answer 200 with the group");
    assert_eq!(users_of(kube, &org).await.len(), 1);
}

async fn wait_endpoint(
    dirs: &Api<ScimDirectory>,
    name: &str,
    ok: impl Fn(&str) -> bool,
    target: &dyn ScimTarget,
) {
    for _ in 0..300 {
        let endpoint = dirs
            .get(name)
            .await
            .unwrap()
            .status
            .and_then(|s| s.endpoint)
            .unwrap_or_default();
        if ok(&endpoint) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "{name}: the Tenant URL did not follow the provider\n{}",
        target.logs()
    );
}
