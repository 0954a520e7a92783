//! A first part of Microsoft's gallery validation (the Logic App in AzureAD/SCIMReferenceCode,
//! `SCIMTests_Workflow.json`), as the requests it sends: `Schema_Discoverability_Test` (in
//! part), `SCIM_User_Create_Test`, `SCIM_User_Update_Test`, `SCIM_Group_Create_Test`,
//! `SCIM_Group_Update_Test`, `SCIM_Group_Pagination_Test`, `SCIM_Null_Update_Test` (empty
//! strings, then nulls), `SCIM_Update_Manager_Test` (set, change, remove with an empty replace)
//! and `SCIM_User_Pagination_Test` (`count=5`, several pages, `startIndex` echoed), in both of
//! Entra's dialects (with and without `?aadOptscim062020`), on the shared plane.
//! `Validate_Credentials_Test` is in `oauth_client_credentials.rs`, `Federated_Identity_Test` in
//! `workload_identity_federation.rs`.

use std::time::Duration;

use kube::Api;
use kube::api::PostParams;
use kube_scim_crds::{ScimDirectory, ScimDirectorySpec};
use kube_scim_tests::ControlPlane;
use kube_scim_tests::entra::{Dialect, EntraClient};
use kube_scim_tests::stack::{Stack, StackOptions, ready_directory};
use serde_json::{Value, json};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn user_body(user_name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "userName": user_name,
        "active": true,
        "displayName": "Validation User",
        "title": "Engineer",
        "name": {"givenName": "Val", "familyName": "Idation"},
        "emails": [{"type": "work", "value": user_name, "primary": true}],
        ENTERPRISE: {"department": "R&D", "employeeNumber": "42"}
    })
}

async fn create(client: &EntraClient, user_name: &str) -> String {
    let answer = client
        .send(reqwest::Method::POST, "/Users", Some(user_body(user_name)))
        .await
        .unwrap();
    assert!(
        [200, 201].contains(&answer.status),
        "create {user_name}: {} {}",
        answer.status,
        answer.body
    );
    assert_eq!(answer.body["userName"], user_name);
    answer.body["id"].as_str().unwrap().to_string()
}

async fn patch(client: &EntraClient, id: &str, ops: Vec<Value>, case: &str) {
    let body = json!({"schemas": [PATCH_OP], "Operations": ops});
    let answer = client
        .send(reqwest::Method::PATCH, &format!("/Users/{id}"), Some(body))
        .await
        .unwrap();
    assert!(
        [200, 204].contains(&answer.status),
        "{case}: {} {}",
        answer.status,
        answer.body
    );
}

async fn get(client: &EntraClient, id: &str) -> Value {
    let answer = client
        .send(reqwest::Method::GET, &format!("/Users/{id}"), None)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

fn blank(v: &Value) -> bool {
    v.is_null() || v.as_str().is_some_and(str::is_empty)
}

async fn null_update(client: &EntraClient, tag: &str) {
    let id = create(client, &format!("null-{tag}@contoso.example")).await;
    let paths = [
        "title",
        "displayName",
        "name.givenName",
        &format!("{ENTERPRISE}:department"),
    ];
    for (phase, value) in [("empty string", json!("")), ("null", Value::Null)] {
        let ops = paths
            .iter()
            .map(|p| json!({"op": "replace", "path": p, "value": value}))
            .collect();
        patch(client, &id, ops, &format!("{tag}: null update, {phase}")).await;
        let user = get(client, &id).await;
        assert!(blank(&user["title"]), "{tag} {phase}: {user}");
        assert!(blank(&user["displayName"]), "{tag} {phase}: {user}");
        assert!(blank(&user["name"]["givenName"]), "{tag} {phase}: {user}");
        assert!(
            blank(&user[ENTERPRISE]["department"]),
            "{tag} {phase}: {user}"
        );
    }
}

async fn update_manager(client: &EntraClient, tag: &str) {
    let id = create(client, &format!("report-{tag}@contoso.example")).await;
    let m1 = create(client, &format!("boss1-{tag}@contoso.example")).await;
    let m2 = create(client, &format!("boss2-{tag}@contoso.example")).await;
    let path = format!("{ENTERPRISE}:manager");
    // Set (Add, Entra's bare-string id), change (Replace, the RFC object), remove (empty replace).
    for (case, op, expected) in [
        (
            "set",
            json!({"op": "Add", "path": path, "value": m1}),
            Some(&m1),
        ),
        (
            "change",
            json!({"op": "Replace", "path": path, "value": {"value": m2}}),
            Some(&m2),
        ),
        (
            "remove",
            json!({"op": "Replace", "path": path, "value": ""}),
            None,
        ),
    ] {
        patch(client, &id, vec![op], &format!("{tag}: manager {case}")).await;
        let user = get(client, &id).await;
        let manager = &user[ENTERPRISE]["manager"];
        match expected {
            Some(m) => assert_eq!(manager["value"], m.as_str(), "{tag} {case}: {user}"),
            None => assert!(
                manager.is_null() || blank(&manager["value"]),
                "{tag} {case}: {user}"
            ),
        }
    }
}

async fn user_pagination(client: &EntraClient, tag: &str) {
    for n in 0..11 {
        create(client, &format!("page{n}-{tag}@contoso.example")).await;
    }
    let mut pages = 0;
    let mut seen = std::collections::BTreeSet::new();
    let mut start = 1;
    // Bounded as the Logic App's loop is (10 pages).
    while pages < 10 {
        let answer = client
            .send(
                reqwest::Method::GET,
                &format!("/Users?startIndex={start}&count=5"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{tag} page {pages}: {}", answer.body);
        assert_eq!(
            answer.body["startIndex"],
            pages * 5 + 1,
            "{tag} page {pages}: {}",
            answer.body
        );
        let resources = answer.body["Resources"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(resources.len() <= 5, "{tag}: {}", resources.len());
        for r in &resources {
            assert!(
                seen.insert(r["id"].as_str().unwrap().to_string()),
                "{tag}: a user twice"
            );
        }
        pages += 1;
        let total = answer.body["totalResults"].as_u64().unwrap();
        start += resources.len() as u64;
        if resources.is_empty() || start > total {
            break;
        }
    }
    assert!(pages >= 2, "{tag}: {pages} pages");
}

/// `Schema_Discoverability_Test` (in part): `/Schemas` lists the User and Group schemas with
/// attributes, and the attributes the tests write are among them.
async fn schema_discoverability(client: &EntraClient, tag: &str) {
    let answer = client
        .send(reqwest::Method::GET, "/Schemas", None)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{tag}: {}", answer.body);
    let resources = answer.body["Resources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let attrs = |id: &str| -> Vec<String> {
        resources
            .iter()
            .find(|r| r["id"] == id)
            .and_then(|r| r["attributes"].as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|a| a["name"].as_str())
                    .map(str::to_lowercase)
                    .collect()
            })
            .unwrap_or_default()
    };
    let user = attrs("urn:ietf:params:scim:schemas:core:2.0:User");
    for a in [
        "username",
        "displayname",
        "title",
        "name",
        "emails",
        "active",
    ] {
        assert!(
            user.contains(&a.to_string()),
            "{tag}: User lacks {a}: {user:?}"
        );
    }
    let group = attrs("urn:ietf:params:scim:schemas:core:2.0:Group");
    for a in ["displayname", "members"] {
        assert!(
            group.contains(&a.to_string()),
            "{tag}: Group lacks {a}: {group:?}"
        );
    }
    let enterprise = attrs(ENTERPRISE);
    for a in ["department", "manager", "employeenumber"] {
        assert!(
            enterprise.contains(&a.to_string()),
            "{tag}: enterprise lacks {a}"
        );
    }
}

/// `SCIM_User_Update_Test`: single-valued attributes replaced by path, read back equal.
async fn user_update(client: &EntraClient, tag: &str) {
    let id = create(client, &format!("update-{tag}@contoso.example")).await;
    let changes = [
        ("displayName", json!("Updated Name")),
        ("title", json!("Principal")),
        ("nickName", json!("upd")),
        ("userType", json!("Employee")),
        ("preferredLanguage", json!("de-DE")),
        ("name.familyName", json!("Updated")),
    ];
    let ops = changes
        .iter()
        .map(|(p, v)| json!({"op": "replace", "path": p, "value": v}))
        .collect();
    patch(client, &id, ops, &format!("{tag}: user update")).await;
    let user = get(client, &id).await;
    for (path, value) in &changes {
        let got = path.split('.').fold(&user, |v, part| &v[part]);
        assert_eq!(got, value, "{tag}: {path} in {user}");
    }
}

/// `SCIM_Group_Create_Test`, `SCIM_Group_Update_Test` and `SCIM_Group_Pagination_Test`.
async fn groups(client: &EntraClient, tag: &str) {
    let create_group = |name: String| async move {
        let answer = client
            .send(
                reqwest::Method::POST,
                "/Groups",
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": name,
                    "members": []
                })),
            )
            .await
            .unwrap();
        assert!([200, 201].contains(&answer.status), "{}", answer.body);
        assert_eq!(answer.body["displayName"], name.as_str());
        answer.body["id"].as_str().unwrap().to_string()
    };
    let id = create_group(format!("Validation {tag}")).await;
    let body = json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "displayName", "value": format!("Renamed {tag}")}
    ]});
    let answer = client
        .send(reqwest::Method::PATCH, &format!("/Groups/{id}"), Some(body))
        .await
        .unwrap();
    assert!([200, 204].contains(&answer.status), "{}", answer.body);
    let answer = client
        .send(reqwest::Method::GET, &format!("/Groups/{id}"), None)
        .await
        .unwrap();
    assert_eq!(answer.body["displayName"], format!("Renamed {tag}"));
    for n in 0..11 {
        create_group(format!("Page {n} {tag}")).await;
    }
    let mut start = 1;
    for page in 0..3u64 {
        let answer = client
            .send(
                reqwest::Method::GET,
                &format!("/Groups?startIndex={start}&count=5"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["startIndex"], page * 5 + 1, "{}", answer.body);
        start += answer.body["Resources"].as_array().map_or(0, Vec::len) as u64;
    }
    assert_eq!(start, 13, "{tag}: 12 groups over 3 pages");
}

#[tokio::test]
async fn microsofts_scim_compliance_tests_pass_in_both_dialects() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("ms-validation").await.unwrap();
    let kube = plane.client().await.unwrap();
    let mut stack = Stack::start(plane, StackOptions::new(&ns)).await.unwrap();
    let dirs: Api<ScimDirectory> = Api::namespaced(kube.clone(), &ns);
    for (name, dialect) in [
        ("legacy", Dialect::Legacy),
        ("compliant", Dialect::Compliant),
    ] {
        dirs.create(
            &PostParams::default(),
            &ScimDirectory::new(name, ScimDirectorySpec::default()),
        )
        .await
        .unwrap();
        let (_, token) = ready_directory(&kube, &ns, name, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", stack.logs()));
        let client = EntraClient::new(&stack.base_url(&ns, name), &token, dialect);
        for _ in 0..100 {
            if client.test_connection().await.unwrap().status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        schema_discoverability(&client, name).await;
        user_update(&client, name).await;
        groups(&client, name).await;
        null_update(&client, name).await;
        update_manager(&client, name).await;
        user_pagination(&client, name).await;
    }
    assert!(stack.server.is_running());
}
