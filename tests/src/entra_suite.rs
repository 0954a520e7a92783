//! Microsoft Entra ID end to end, as a suite that runs against any deployment of kube-scim: the
//! operator and SCIM server as local processes ([`crate::stack::Stack`]) or the Helm chart's pods
//! on a real node, reached through their Service. A client plays Entra's provisioning service in
//! both PATCH dialects; every assertion checks both the HTTP answer and the ScimUser / ScimGroup
//! objects a watching workload sees. Each `pub async fn` is one scenario, run in a namespace of
//! its own.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use kube_scim_crds::{ScimDirectory, ScimDirectorySpec, ScimGroup, ScimUser, labels};
use serde_json::{Value, json};

use crate::entra::{Answer, CUSTOM_EXTENSION, Dialect, ENTERPRISE, EntraClient, EntraUser};
use crate::stack::ready_directory;

/// Where the suite sends its SCIM requests.
pub trait ScimTarget: Sync {
    /// The URL Entra would call for `namespace/directory` (what the route sends to the server).
    fn base_url(&self, namespace: &str, directory: &str) -> String;
    /// Logs of the components, for failure messages.
    fn logs(&self) -> String;
    /// The HTTP client that reaches `base_url` (through a route controller it may need a host
    /// resolved to 127.0.0.1 and the test's CA).
    fn http(&self) -> reqwest::Client {
        crate::entra::default_http()
    }
    /// The spec of each directory the suite creates (e.g. its route).
    fn directory_spec(&self) -> ScimDirectorySpec {
        ScimDirectorySpec::default()
    }
    /// Whether requests travel through the directory's route (so a tenant is used only once
    /// `RouteReady` is True and its controller routes the Tenant URL), not straight to a server.
    fn through_route(&self) -> bool {
        false
    }
}

/// Waits until `RouteReady` is True and the route controller routes `base` (no more 404 from a
/// controller that has not loaded the route yet): what an admin sees before Test Connection.
async fn route_is_live(kube: &Client, target: &dyn ScimTarget, ns: &str, name: &str, token: &str) {
    let api: Api<ScimDirectory> = Api::namespaced(kube.clone(), ns);
    let http = target.http();
    let url = format!("{}/Users?count=0", target.base_url(ns, name));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready = api
            .get(name)
            .await
            .ok()
            .and_then(|d| d.status)
            .is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == kube_scim_crds::CONDITION_ROUTE_READY && c.status == "True")
            });
        let routed = ready
            && http
                .get(&url)
                .bearer_auth(token)
                .send()
                .await
                .is_ok_and(|r| r.status() != 404);
        if routed {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{ns}/{name}: the route is not Ready and live within 60 s\n{}",
            target.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

struct Tenant {
    client: EntraClient,
    namespace: String,
    directory: String,
}

/// The answer to `GET path` once `settled` holds for it. Reads are cache reads: behind a load
/// balancer a replica other than the one that took a write may answer before its watch has
/// delivered the write (milliseconds; docs/scim-server.md, Read-your-writes).
async fn settled_get(
    entra: &EntraClient,
    what: &str,
    path: &str,
    settled: impl Fn(&Answer) -> bool,
) -> Answer {
    crate::eventually(what, Duration::from_secs(10), || async {
        let answer = entra.send(reqwest::Method::GET, path, None).await.unwrap();
        settled(&answer).then_some(answer)
    })
    .await
}

/// As [`settled_get`], for a filter on `resource`.
async fn settled_filter(
    entra: &EntraClient,
    what: &str,
    resource: &str,
    filter: &str,
    settled: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    crate::eventually(what, Duration::from_secs(10), || async {
        let found = entra.filter(resource, filter, "").await.unwrap();
        settled(&found).then_some(found)
    })
    .await
}

/// Waits until `target`'s server takes `token` for `ns/name`: its own view of the directory
/// (its watch) can lag the apiserver's Ready.
pub(crate) async fn served(target: &dyn ScimTarget, ns: &str, name: &str, token: &str) {
    crate::stack::server_accepts(
        &target.http(),
        &target.base_url(ns, name),
        token,
        Duration::from_secs(60),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", target.logs()));
}

async fn tenant(
    kube: &Client,
    target: &dyn ScimTarget,
    ns: &str,
    name: &str,
    dialect: Dialect,
) -> Tenant {
    let api: Api<ScimDirectory> = Api::namespaced(kube.clone(), ns);
    api.create(
        &PostParams::default(),
        &ScimDirectory::new(name, target.directory_spec()),
    )
    .await
    .unwrap();
    let (endpoint, token) = ready_directory(kube, ns, name, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", target.logs()));
    assert!(
        endpoint.ends_with(&format!("/scim/v2/{ns}/{name}?aadOptscim062020")),
        "the Tenant URL selects the compliant dialect: {endpoint}"
    );
    if target.through_route() {
        route_is_live(kube, target, ns, name, &token).await;
    }
    served(target, ns, name, &token).await;
    Tenant {
        client: EntraClient::with_http(&target.base_url(ns, name), &token, dialect, target.http()),
        namespace: ns.into(),
        directory: name.into(),
    }
}

fn entra_user(n: usize, tenant: &str) -> EntraUser {
    EntraUser {
        object_id: format!("{:08x}-0000-4000-8000-{:012x}", n, n),
        upn: format!("User.{n}@{tenant}.onmicrosoft.com"),
        given_name: format!("Given{n}"),
        surname: format!("Sur{n}"),
        display_name: format!("User {n}"),
        job_title: Some("Engineer".into()),
        mail: Some(format!("user.{n}@{tenant}.example")),
        mobile: Some(format!("+1 555 {n:04}")),
        employee_id: Some(format!("E{n:05}")),
        department: Some("R&D".into()),
        division: Some("Platform".into()),
        manager_object_id: None,
    }
}

async fn stored_user(kube: &Client, ns: &str, id: &str) -> ScimUser {
    Api::<ScimUser>::namespaced(kube.clone(), ns)
        .get(id)
        .await
        .unwrap()
}

fn status_json(user: &ScimUser) -> Value {
    serde_json::to_value(user.status.as_ref().expect("status")).unwrap()
}

pub async fn test_connection_answers_an_empty_list_and_refuses_wrong_tokens(
    kube: &Client,
    ns: &str,
    target: &dyn ScimTarget,
) {
    let (ns, kube) = (ns.to_string(), kube.clone());
    let contoso = tenant(&kube, target, &ns, "contoso", Dialect::Compliant).await;
    let fabrikam = tenant(&kube, target, &ns, "fabrikam", Dialect::Compliant).await;

    let answer = contoso.client.test_connection().await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.content_type.starts_with("application/scim+json"),
        "{}",
        answer.content_type
    );
    assert_eq!(answer.body["totalResults"], 0);
    assert_eq!(answer.body["Resources"], json!([]));
    assert_eq!(answer.body["startIndex"], 1);
    assert_eq!(answer.body["itemsPerPage"], 0);
    assert_eq!(
        answer.body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );

    let wrong = EntraClient::with_http(
        &target.base_url(&ns, "contoso"),
        "not-the-token",
        Dialect::Compliant,
        target.http(),
    );
    let answer = wrong.test_connection().await.unwrap();
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert_eq!(answer.body["status"], "401");

    // fabrikam's token never opens contoso.
    let crossed = fabrikam.client.test_connection().await.unwrap();
    assert_eq!(crossed.status, 200);
    let fabrikam_token = ready_directory(&kube, &ns, "fabrikam", Duration::from_secs(5))
        .await
        .unwrap()
        .1;
    let cross = EntraClient::with_http(
        &target.base_url(&ns, "contoso"),
        &fabrikam_token,
        Dialect::Compliant,
        target.http(),
    );
    assert_eq!(cross.test_connection().await.unwrap().status, 401);
}

/// The user cycle in one dialect: match, create, manager, attribute updates by single paths
/// and path-less replace, value-filter paths, extensions, UPN change, deprovisioning,
/// re-enabling, hard delete.
async fn user_cycle(kube: &Client, t: &Tenant) {
    let entra = &t.client;
    let manager = entra_user(1, &t.directory);
    let manager_id = entra.provision_user(&manager, None).await.unwrap();
    let mut ada = entra_user(2, &t.directory);
    ada.manager_object_id = Some(manager.object_id.clone());
    let id = entra.provision_user(&ada, Some(&manager_id)).await.unwrap();

    // Entra matches again by externalId and by userName (case-insensitively).
    let by_external = settled_filter(
        entra,
        "every replica finds the new user by its externalId",
        "Users",
        &format!("externalId eq \"{}\"", ada.object_id),
        |found| !found.is_empty(),
    )
    .await;
    assert_eq!(by_external.len(), 1);
    assert_eq!(by_external[0]["id"], id.as_str());
    let by_upn = settled_filter(
        entra,
        "every replica finds the new user by its userName in capitals",
        "Users",
        &format!("userName eq \"{}\"", ada.upn.to_uppercase()),
        |found| !found.is_empty(),
    )
    .await;
    assert_eq!(by_upn.len(), 1, "userName matching is case-insensitive");
    assert_eq!(
        by_upn[0][ENTERPRISE]["manager"]["value"],
        manager_id.as_str()
    );

    let user = stored_user(kube, &t.namespace, &id).await;
    let status = status_json(&user);
    assert_eq!(status["userName"], ada.upn.as_str());
    assert_eq!(status["externalId"], ada.object_id.as_str());
    assert_eq!(status["enterprise"]["employeeNumber"], "E00002");
    assert_eq!(
        status["enterprise"]["manager"]["value"],
        manager_id.as_str()
    );
    assert_eq!(
        status["extensions"][CUSTOM_EXTENSION]["division"],
        "Platform"
    );
    assert_eq!(user.labels().get(labels::DIRECTORY), Some(&t.directory));
    assert_eq!(
        user.labels().get(labels::ACTIVE).map(String::as_str),
        Some("true")
    );

    // Updates of only the changed attributes.
    entra
        .update_user(
            &id,
            &[
                ("name.givenName", json!("Ada")),
                (
                    "emails[type eq \"work\"].value",
                    json!("ada@contoso.example"),
                ),
                (
                    "phoneNumbers[type eq \"mobile\"].value",
                    json!("+44 20 7946 0000"),
                ),
                ("addresses[type eq \"work\"].postalCode", json!("EC1A 1BB")),
                (
                    &format!("{ENTERPRISE}:department"),
                    json!("Analytical Engines"),
                ),
                (
                    &format!("{CUSTOM_EXTENSION}:division"),
                    json!("Mathematics"),
                ),
            ],
        )
        .await
        .unwrap();
    let status = status_json(&stored_user(kube, &t.namespace, &id).await);
    assert_eq!(status["name"]["givenName"], "Ada");
    assert_eq!(
        status["name"]["familyName"], "Sur2",
        "untouched attributes stay"
    );
    let work: Vec<&Value> = status["emails"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "work")
        .collect();
    assert_eq!(work.len(), 1, "{status}");
    assert_eq!(work[0]["value"], "ada@contoso.example");
    assert!(
        status["phoneNumbers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["type"] == "mobile" && p["value"] == "+44 20 7946 0000"),
        "{status}"
    );
    assert!(
        status["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["type"] == "work" && a["postalCode"] == "EC1A 1BB"),
        "a filter path that matches nothing creates the element: {status}"
    );
    assert_eq!(status["enterprise"]["department"], "Analytical Engines");
    assert_eq!(
        status["extensions"][CUSTOM_EXTENSION]["division"],
        "Mathematics"
    );

    // UPN change: same object, no duplicate, old name free, new name found.
    let new_upn = format!("ada.lovelace@{}.onmicrosoft.com", t.directory);
    entra
        .update_user(&id, &[("userName", json!(new_upn))])
        .await
        .unwrap();
    // Filters are cache reads: behind a load balancer the next request may reach a replica
    // whose watch has not delivered the change yet (milliseconds; docs/scim-server.md,
    // Read-your-writes). Within a few seconds every replica must answer the same.
    let found = crate::eventually(
        "every replica finds the user by its new userName only",
        Duration::from_secs(10),
        || async {
            let new = entra
                .filter("Users", &format!("userName eq \"{new_upn}\""), "")
                .await
                .unwrap();
            let old = entra
                .filter("Users", &format!("userName eq \"{}\"", ada.upn), "")
                .await
                .unwrap();
            (new.len() == 1 && old.is_empty()).then_some(new)
        },
    )
    .await;
    assert_eq!(found[0]["id"], id.as_str());
    // Matching again after the rename (a restarted job) finds the same user by externalId.
    assert_eq!(entra.provision_user(&ada, None).await.unwrap(), id);

    // Deprovision, still returned; re-enable; in the dialect's boolean form.
    entra.set_active(&id, false).await.unwrap();
    let user = stored_user(kube, &t.namespace, &id).await;
    assert_eq!(
        user.labels().get(labels::ACTIVE).map(String::as_str),
        Some("false")
    );
    assert_eq!(status_json(&user)["active"], false);
    let inactive = settled_filter(
        entra,
        "every replica returns the deprovisioned user, inactive",
        "Users",
        &format!("externalId eq \"{}\"", ada.object_id),
        |found| found.first().is_some_and(|u| u["active"] == false),
    )
    .await;
    assert_eq!(inactive.len(), 1, "inactive users are still returned");
    entra.set_active(&id, true).await.unwrap();
    let user = stored_user(kube, &t.namespace, &id).await;
    assert_eq!(
        user.labels().get(labels::ACTIVE).map(String::as_str),
        Some("true")
    );

    // Hard delete.
    entra.delete("Users", &id).await.unwrap();
    let users: Api<ScimUser> = Api::namespaced(kube.clone(), &t.namespace);
    assert!(users.get_opt(&id).await.unwrap().is_none());
    settled_get(
        entra,
        "every replica answers 404 for the deleted user",
        &format!("/Users/{id}"),
        |gone| gone.status == 404,
    )
    .await;
}

pub async fn user_cycle_in_both_dialects(kube: &Client, ns: &str, target: &dyn ScimTarget) {
    let (ns, kube) = (ns.to_string(), kube.clone());
    for (name, dialect) in [
        ("legacy", Dialect::Legacy),
        ("compliant", Dialect::Compliant),
    ] {
        let t = tenant(&kube, target, &ns, name, dialect).await;
        user_cycle(&kube, &t).await;
    }
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

/// Groups: create empty, add in batches of 1, 25 and 100, remove in the dialect's form,
/// rename, members excluded on get and filter, delete.
async fn group_cycle(kube: &Client, t: &Tenant) {
    let entra = &t.client;
    let mut ids = Vec::new();
    for n in 0..126 {
        ids.push(
            entra
                .provision_user(&entra_user(100 + n, &t.directory), None)
                .await
                .unwrap(),
        );
    }
    let group = entra
        .provision_group("Engineering", "0a0a0a0a-0000-4000-8000-000000000001")
        .await
        .unwrap();
    entra.add_members(&group, &ids[..1]).await.unwrap();
    entra.add_members(&group, &ids[1..26]).await.unwrap();
    entra.add_members(&group, &ids[26..126]).await.unwrap();
    // Re-adding an existing member succeeds silently.
    entra.add_members(&group, &ids[..1]).await.unwrap();

    let users: Api<ScimUser> = Api::namespaced(kube.clone(), &t.namespace);
    let selector = format!("{}={}", labels::DIRECTORY, t.directory);
    let all = users
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items;
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(members_of(&all, &group), expected);

    // Every member's label may not have reached every replica's watch yet.
    settled_get(
        entra,
        "every replica answers the group with its 126 members",
        &format!("/Groups/{group}"),
        |get| get.body["members"].as_array().map(Vec::len) == Some(126),
    )
    .await;
    let without = entra
        .send(
            reqwest::Method::GET,
            &format!("/Groups/{group}?excludedAttributes=members"),
            None,
        )
        .await
        .unwrap();
    assert!(without.body.get("members").is_none(), "{}", without.body);
    let filtered = entra
        .filter(
            "Groups",
            "displayName eq \"Engineering\"",
            "&excludedAttributes=members",
        )
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);
    assert!(filtered[0].get("members").is_none());

    // Removing two members removes exactly those; removing a non-member is a no-op.
    entra.remove_members(&group, &ids[..2]).await.unwrap();
    entra.remove_members(&group, &ids[..1]).await.unwrap();
    let all = users
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items;
    assert_eq!(
        members_of(&all, &group),
        expected
            .iter()
            .filter(|id| !ids[..2].contains(id))
            .cloned()
            .collect::<Vec<_>>()
    );

    entra
        .rename_group(&group, "Engineering (all)")
        .await
        .unwrap();
    let groups: Api<ScimGroup> = Api::namespaced(kube.clone(), &t.namespace);
    let stored = groups.get(&group).await.unwrap();
    assert_eq!(stored.status.unwrap().display_name, "Engineering (all)");
    settled_filter(
        entra,
        "no replica finds the group by its old name",
        "Groups",
        "displayName eq \"Engineering\"",
        <[Value]>::is_empty,
    )
    .await;

    // Entra's group PATCH gets 204; a client that asks for attributes gets them (RFC 7644
    // §3.5.2), without members unless it names them.
    let with_attributes = entra
        .send(
            reqwest::Method::PATCH,
            &format!("/Groups/{group}?attributes=displayName"),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "externalId", "value": "0a0a0a0a-0000-4000-8000-000000000002"}]
            })),
        )
        .await
        .unwrap();
    assert_eq!(with_attributes.status, 200, "{}", with_attributes.body);
    assert_eq!(with_attributes.body["displayName"], "Engineering (all)");
    assert_eq!(with_attributes.body["id"], group.as_str());
    assert!(
        with_attributes.body.get("members").is_none(),
        "{}",
        with_attributes.body
    );
    assert!(
        with_attributes.body.get("externalId").is_none(),
        "only the requested attributes"
    );

    entra.delete("Groups", &group).await.unwrap();
    // Deleting a group removes its memberships, in the background (the group is gone for
    // SCIM at once; its object stays, marked, until no member carries its label).
    crate::eventually(
        "the deleted group's labels and object are gone",
        std::time::Duration::from_secs(60),
        || async {
            let all = users
                .list(&ListParams::default().labels(&selector))
                .await
                .unwrap()
                .items;
            let gone = groups.get_opt(&group).await.unwrap().is_none();
            (gone && members_of(&all, &group).is_empty()).then_some(())
        },
    )
    .await;
}

pub async fn group_cycle_in_both_dialects(kube: &Client, ns: &str, target: &dyn ScimTarget) {
    let (ns, kube) = (ns.to_string(), kube.clone());
    for (name, dialect) in [
        ("legacy", Dialect::Legacy),
        ("compliant", Dialect::Compliant),
    ] {
        let t = tenant(&kube, target, &ns, name, dialect).await;
        group_cycle(&kube, &t).await;
    }
}

pub async fn on_demand_provisioning_uses_the_legacy_dialect_on_a_flagged_tenant(
    kube: &Client,
    ns: &str,
    target: &dyn ScimTarget,
) {
    let (ns, kube) = (ns.to_string(), kube.clone());
    let t = tenant(&kube, target, &ns, "contoso", Dialect::Compliant).await;
    let id = t
        .client
        .provision_user(&entra_user(7, "contoso"), None)
        .await
        .unwrap();
    t.client.set_active(&id, false).await.unwrap();
    // Provisioning on demand ignores aadOptscim062020: "True" strings and capitalised ops.
    let on_demand = t.client.with_dialect(Dialect::Legacy);
    on_demand.set_active(&id, true).await.unwrap();
    on_demand
        .update_user(&id, &[("title", json!("Principal Engineer"))])
        .await
        .unwrap();
    let user = stored_user(&kube, &ns, &id).await;
    assert_eq!(
        user.labels().get(labels::ACTIVE).map(String::as_str),
        Some("true")
    );
    assert_eq!(status_json(&user)["title"], "Principal Engineer");
}

const TENANTS: usize = 4;
const USERS: usize = 500;
const GROUPS: usize = 50;
const MEMBERS_PER_GROUP: usize = 50;
const BATCH: usize = 25;
const CONCURRENCY: usize = 8;

/// One tenant's provisioning cycle: match-or-create every user and group, then the
/// memberships in batches. Returns the user ids and each group's expected members.
async fn initial_cycle(t: &Tenant) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let users: Vec<EntraUser> = (0..USERS).map(|n| entra_user(n, &t.directory)).collect();
    let ids: Vec<String> = futures::stream::iter(users.iter())
        .map(|u| async move { t.client.provision_user(u, None).await.unwrap() })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let groups: Vec<String> = futures::stream::iter(0..GROUPS)
        .map(|g| async move {
            t.client
                .provision_group(
                    &format!("Group {g}"),
                    &format!("{g:08x}-1111-4111-8111-000000000000"),
                )
                .await
                .unwrap()
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let batches: Vec<(String, Vec<String>)> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, group)| {
            let members: Vec<String> = (0..MEMBERS_PER_GROUP)
                .map(|k| ids[(g * 7 + k * 10) % USERS].clone())
                .collect();
            expected.insert(group.clone(), members.clone());
            members
                .chunks(BATCH)
                .map(|c| (group.clone(), c.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect();
    futures::stream::iter(batches.iter())
        .map(|(group, members)| async move { t.client.add_members(group, members).await.unwrap() })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    (ids, expected)
}

/// Several tenants provisioned at once from scratch, then the job restarted (everything matched
/// again): exactly the expected objects, no duplicates. 2,000 users, 200 groups and 10,000
/// memberships in all.
pub async fn initial_cycle_of_several_tenants_then_a_restarted_job_creates_exactly_the_expected_objects(
    kube: &Client,
    ns: &str,
    target: &dyn ScimTarget,
) {
    let (ns, kube) = (ns.to_string(), kube.clone());
    let mut tenants = Vec::new();
    for i in 0..TENANTS {
        let dialect = if i % 2 == 0 {
            Dialect::Compliant
        } else {
            Dialect::Legacy
        };
        tenants.push(tenant(&kube, target, &ns, &format!("tenant-{i}"), dialect).await);
    }

    let results = futures::future::join_all(tenants.iter().map(initial_cycle)).await;
    // The provisioning job restarts: everything is matched again, nothing is duplicated.
    let again = futures::future::join_all(tenants.iter().map(initial_cycle)).await;

    let users: Api<ScimUser> = Api::namespaced(kube.clone(), &ns);
    let groups: Api<ScimGroup> = Api::namespaced(kube.clone(), &ns);
    let mut memberships = 0;
    for ((t, (ids, expected)), (ids_again, _)) in tenants.iter().zip(&results).zip(&again) {
        assert_eq!(
            ids, ids_again,
            "{}: a restarted job matches the same users",
            t.directory
        );
        let selector = format!("{}={}", labels::DIRECTORY, t.directory);
        let stored_users = users
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items;
        assert_eq!(stored_users.len(), USERS, "{}", t.directory);
        let stored_groups = groups
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items;
        assert_eq!(stored_groups.len(), GROUPS, "{}", t.directory);
        for (group, members) in expected {
            let mut members = members.clone();
            members.sort();
            members.dedup();
            assert_eq!(
                members_of(&stored_users, group),
                members,
                "{} group {group}",
                t.directory
            );
            memberships += members.len();
        }
    }
    assert_eq!(memberships, TENANTS * GROUPS * MEMBERS_PER_GROUP);
}
