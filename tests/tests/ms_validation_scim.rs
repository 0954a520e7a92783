//! Microsoft's gallery validation suite for SCIM apps, ported: the Logic App in
//! AzureAD/SCIMReferenceCode, `Microsoft.SCIM.LogicAppValidationTemplate/StandardLogicApp/`, whose
//! `SCIM-Validation-Test-Overview.md` lists 25 tests. Each function below is one of them, named as
//! the overview names it, with the requests and checks of its workflow (`UserTests_Workflow.json`,
//! `GroupTests_Workflow.json`, `SCIMTests_Workflow.json`):
//!
//! - the user and group tests make Entra's provisioning engine act (through Microsoft Graph) and
//!   then check the SCIM endpoint; here [`EntraClient`] sends what the engine sends, in the
//!   tenant's dialect, and the workflow's SCIM checks follow;
//! - the SCIM tests are the Logic App's own direct requests, replayed as they are. Where the
//!   workflow has a verbose (one op per attribute) and a batched form (path-less `replace`), the
//!   legacy tenant gets the first and the `aadOptscim062020` tenant the second.
//!
//! Every test runs once per dialect, in a tenant (ScimDirectory) per dialect; the run prints a
//! result table as the Logic App's `Final_TestResults` does and fails naming the failed tests.
//! Checks of Microsoft's hosted validator that the Logic App lacks (case-insensitive filters,
//! `excludedAttributes=members`, duplicate 409) run as extra rows. `Validate_Credentials_Test` is
//! in `oauth_client_credentials.rs`, `Federated_Identity_Test` in
//! `workload_identity_federation.rs`; docs/entra-id.md lists where each test runs.
//!
//! Over 600 lines on purpose: one file per Microsoft suite, so that the table of its tests,
//! the Entra mapping they read and the workflows' ways of reading attributes stay together.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::Api;
use kube::api::PostParams;
use kube_scim_crds::{ScimDirectory, ScimDirectorySpec};
use kube_scim_tests::ControlPlane;
use kube_scim_tests::entra::{Answer, Dialect, ENTERPRISE, EntraClient, EntraUser, urlencode};
use kube_scim_tests::stack::{Stack, StackOptions};
use reqwest::Method;
use serde_json::{Map, Value, json};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const MANAGER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager";

/// A target attribute's kind in Entra's provisioning schema (what the workflows branch on).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Boolean,
    Reference,
}

/// The target attributes of Entra's default user mapping for a non-gallery SCIM app (Microsoft
/// Learn, "Tutorial: Develop and plan provisioning for a SCIM endpoint", default user attribute
/// mapping): what the Logic App's initialization reads as `targetDirectoryUserAttributes` and
/// `sourceToTargetLookup` when the admin keeps the defaults.
const USER_TARGETS: &[(&str, Kind)] = &[
    ("userName", Kind::String),
    ("active", Kind::Boolean),
    ("displayName", Kind::String),
    ("title", Kind::String),
    ("emails[type eq \"work\"].value", Kind::String),
    ("preferredLanguage", Kind::String),
    ("name.givenName", Kind::String),
    ("name.familyName", Kind::String),
    ("name.formatted", Kind::String),
    ("addresses[type eq \"work\"].formatted", Kind::String),
    ("addresses[type eq \"work\"].streetAddress", Kind::String),
    ("addresses[type eq \"work\"].locality", Kind::String),
    ("addresses[type eq \"work\"].region", Kind::String),
    ("addresses[type eq \"work\"].postalCode", Kind::String),
    ("addresses[type eq \"work\"].country", Kind::String),
    ("phoneNumbers[type eq \"work\"].value", Kind::String),
    ("phoneNumbers[type eq \"mobile\"].value", Kind::String),
    ("phoneNumbers[type eq \"fax\"].value", Kind::String),
    ("externalId", Kind::String),
    (
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
        Kind::String,
    ),
    (
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        Kind::String,
    ),
    (MANAGER, Kind::Reference),
];

/// The target attributes of Entra's default group mapping.
const GROUP_TARGETS: &[(&str, Kind)] = &[
    ("displayName", Kind::String),
    ("externalId", Kind::String),
    ("members", Kind::Reference),
];

/// One Entra tenant of the run: its client (Tenant URL, token, dialect) and its name.
struct Tenant {
    entra: EntraClient,
    tag: &'static str,
}

impl Tenant {
    /// The workflow's verbose PATCH form (one op per attribute) or the batched one.
    fn verbose(&self) -> bool {
        self.entra.dialect == Dialect::Legacy
    }
}

type TestFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type Test = (&'static str, fn(Arc<Tenant>) -> TestFuture);

/// The Logic App's tests in the overview's order (two are elsewhere, see the module doc), then
/// the hosted validator's extra checks.
fn tests() -> Vec<Test> {
    vec![
        ("Create_User_Test", |t| Box::pin(create_user(t))),
        ("Update_User_Test", |t| Box::pin(update_user(t))),
        ("Disable_User_Test", |t| Box::pin(disable_user(t))),
        ("Delete_User_Test", |t| Box::pin(delete_user(t))),
        ("User_Update_Manager_Test", |t| {
            Box::pin(user_update_manager(t))
        }),
        ("Restore_User_Test", |t| Box::pin(restore_user(t))),
        ("POD_User_Test", |t| Box::pin(pod_user(t))),
        ("Create_Group_Test", |t| Box::pin(create_group(t))),
        ("Update_Group_Test", |t| Box::pin(update_group(t))),
        ("Delete_Group_Test", |t| Box::pin(delete_group(t))),
        ("Group_Update_Add_Member_Test", |t| {
            Box::pin(group_add_member(t))
        }),
        ("Group_Update_Remove_Member_Test", |t| {
            Box::pin(group_remove_member(t))
        }),
        ("POD_Group_Test", |t| Box::pin(pod_group(t))),
        ("Restore_Group_Test", |t| Box::pin(restore_group(t))),
        ("Schema_Discoverability_Test", |t| {
            Box::pin(schema_discoverability(t))
        }),
        ("SCIM_Null_Update_Test", |t| Box::pin(scim_null_update(t))),
        ("SCIM_User_Create_Test", |t| Box::pin(scim_user_create(t))),
        ("SCIM_User_Update_Test", |t| Box::pin(scim_user_update(t))),
        ("SCIM_Group_Create_Test", |t| Box::pin(scim_group_create(t))),
        ("SCIM_Group_Update_Test", |t| Box::pin(scim_group_update(t))),
        ("SCIM_User_Pagination_Test", |t| {
            Box::pin(pagination(t, "Users"))
        }),
        ("SCIM_Group_Pagination_Test", |t| {
            Box::pin(pagination(t, "Groups"))
        }),
        ("SCIM_Update_Manager_Test", |t| {
            Box::pin(scim_update_manager(t))
        }),
        ("Hosted_Filters_Case_Insensitive", |t| {
            Box::pin(filters_case_insensitive(t))
        }),
        ("Hosted_Excluded_Attributes_Members", |t| {
            Box::pin(excluded_attributes_members(t))
        }),
        ("Hosted_Duplicate_Conflict", |t| {
            Box::pin(duplicate_conflict(t))
        }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Helpers: requests and reading attributes the way the workflows do.

/// The Logic App's `substring(guid(), 0, 8)`.
fn guid8() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

async fn send(t: &Tenant, method: Method, path: &str, body: Option<Value>) -> Answer {
    t.entra
        .send(method.clone(), path, body)
        .await
        .unwrap_or_else(|e| panic!("{} {method} {path}: {e:#}", t.tag))
}

/// A POST the workflow accepts (200 or 201 with an `id`); returns the resource.
async fn post(t: &Tenant, resource: &str, body: Value) -> Value {
    let answer = send(t, Method::POST, &format!("/{resource}"), Some(body)).await;
    assert!(
        [200, 201].contains(&answer.status)
            && answer.body["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{}: POST /{resource}: {} {}",
        t.tag,
        answer.status,
        answer.body
    );
    answer.body
}

fn id_of(resource: &Value) -> String {
    resource["id"].as_str().expect("id").to_string()
}

/// GET of one resource, 200.
async fn get(t: &Tenant, path: &str) -> Value {
    let answer = send(t, Method::GET, path, None).await;
    assert_eq!(answer.status, 200, "{}: GET {path}: {}", t.tag, answer.body);
    answer.body
}

/// A PATCH the workflows accept (200 or 204).
async fn patch(t: &Tenant, path: &str, operations: Vec<Value>, case: &str) {
    let body = json!({"schemas": [PATCH_OP], "Operations": operations});
    let answer = send(t, Method::PATCH, path, Some(body.clone())).await;
    assert!(
        [200, 204].contains(&answer.status),
        "{}: {case}: PATCH {path} {body}: {} {}",
        t.tag,
        answer.status,
        answer.body
    );
}

/// `GET /{resource}?filter=<attribute> eq "<value>"`: the ListResponse.
async fn filter_eq(t: &Tenant, resource: &str, attribute: &str, value: &str) -> Value {
    get(
        t,
        &format!(
            "/{resource}?filter={}",
            urlencode(&format!("{attribute} eq \"{value}\""))
        ),
    )
    .await
}

fn resources(list: &Value) -> Vec<Value> {
    list["Resources"].as_array().cloned().unwrap_or_default()
}

/// The workflows' reading of a target attribute: `a[type eq "t"].s` from the element of that
/// type (types compared case-insensitively), `urn:...:a` from the extension object, `a.b` from
/// the complex attribute, else the top-level attribute; `null` when absent.
fn read_target(resource: &Value, target: &str) -> Value {
    if let Some((parent, rest)) = target.split_once('[') {
        let ty = rest.split('"').nth(1).unwrap_or_default();
        let sub = target.rsplit('.').next().unwrap_or_default();
        resource[parent]
            .as_array()
            .and_then(|list| {
                list.iter().find(|e| {
                    e["type"]
                        .as_str()
                        .is_some_and(|x| x.eq_ignore_ascii_case(ty))
                })
            })
            .map(|e| e[sub].clone())
            .unwrap_or(Value::Null)
    } else if target.starts_with("urn:") {
        let (urn, attribute) = target.rsplit_once(':').unwrap();
        resource[urn][attribute].clone()
    } else if let Some((parent, sub)) = target.split_once('.') {
        resource[parent][sub].clone()
    } else {
        resource[target].clone()
    }
}

/// Writes a target attribute into a POST body as the Logic App's body builder does: typed
/// elements of multi-valued attributes (the first one `primary`), extension objects, complex
/// attributes.
fn write_target(body: &mut Value, target: &str, value: Value) {
    if let Some((parent, rest)) = target.split_once('[') {
        let ty = rest.split('"').nth(1).unwrap_or_default();
        let sub = target.rsplit('.').next().unwrap_or_default();
        if !body[parent].is_array() {
            body[parent] = json!([]);
        }
        let list = body[parent].as_array_mut().unwrap();
        let at = match list.iter().position(|e| e["type"] == ty) {
            Some(at) => at,
            None => {
                list.push(json!({"type": ty, "primary": list.is_empty()}));
                list.len() - 1
            }
        };
        list[at][sub] = value;
    } else if target.starts_with("urn:") {
        let (urn, attribute) = target.rsplit_once(':').unwrap();
        body[urn][attribute] = value;
    } else if let Some((parent, sub)) = target.split_once('.') {
        body[parent][sub] = value;
    } else {
        body[target] = value;
    }
}

/// A plausible value for a string target (what Entra's source attributes would hold).
fn sample(target: &str) -> Value {
    let g = guid8();
    if target.starts_with("emails") {
        json!(format!("test{g}@contoso.example"))
    } else if target.starts_with("phoneNumbers") {
        json!("+1 555 0100")
    } else if target == "preferredLanguage" {
        json!("en-US")
    } else {
        json!(format!("Test{g}"))
    }
}

/// `scimUserBody` of the Logic App's initialization: every mapped string attribute with a value,
/// `active`, and a fresh `externalId`, for `user_name`.
fn scim_user_body(user_name: &str) -> Value {
    let mut body = json!({
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "userName": user_name,
        "active": true,
        "externalId": uuid::Uuid::new_v4().to_string(),
    });
    for (target, kind) in USER_TARGETS {
        if *kind == Kind::String && !["userName", "externalId"].contains(target) {
            write_target(&mut body, target, sample(target));
        }
    }
    body
}

fn scim_group_body(display_name: &str) -> Value {
    json!({
        "schemas": [GROUP_SCHEMA],
        "displayName": display_name,
        "externalId": uuid::Uuid::new_v4().to_string(),
    })
}

/// The workflows' PATCH bodies: verbose, one `replace` per attribute; batched, the value-path
/// (`[`) ones as ops and all others as one path-less `replace` whose keys are paths.
fn replace_ops(changes: &[(&str, Value)], verbose: bool) -> Vec<Value> {
    if verbose {
        return changes
            .iter()
            .map(|(path, value)| json!({"op": "replace", "path": path, "value": value}))
            .collect();
    }
    let mut ops: Vec<Value> = changes
        .iter()
        .filter(|(path, _)| path.contains('['))
        .map(|(path, value)| json!({"op": "replace", "path": path, "value": value}))
        .collect();
    let batch: Map<String, Value> = changes
        .iter()
        .filter(|(path, _)| !path.contains('['))
        .map(|(path, value)| (path.to_string(), value.clone()))
        .collect();
    if !batch.is_empty() {
        ops.push(json!({"op": "replace", "value": batch}));
    }
    ops
}

/// A user of the test tenant as Entra's default mappings present it; `prefix` as the Logic
/// App's test names (`lacreate`, `laupdate`, ...).
fn entra_user(prefix: &str) -> EntraUser {
    let g = guid8();
    EntraUser {
        object_id: uuid::Uuid::new_v4().to_string(),
        upn: format!("{prefix}{g}@contoso.example"),
        given_name: "Val".into(),
        surname: prefix.into(),
        display_name: format!("{prefix}{g}"),
        job_title: Some("Engineer".into()),
        mail: Some(format!("{prefix}{g}@contoso.example")),
        mobile: Some("+1 555 0100".into()),
        employee_id: Some(g),
        department: Some("R&D".into()),
        ..Default::default()
    }
}

/// Entra's engine: match, then create (POST) or link; returns the SCIM id.
async fn provision(t: &Tenant, user: &EntraUser) -> String {
    t.entra
        .provision_user(user, None)
        .await
        .unwrap_or_else(|e| panic!("{}: provisioning {}: {e:#}", t.tag, user.upn))
}

async fn provision_group(t: &Tenant, name: &str) -> String {
    t.entra
        .provision_group(name, &uuid::Uuid::new_v4().to_string())
        .await
        .unwrap_or_else(|e| panic!("{}: provisioning group {name}: {e:#}", t.tag))
}

/// The workflows' check after a provisioning action: `GET /Users?filter=userName eq "..."`.
async fn user_on_scim(t: &Tenant, user_name: &str) -> Vec<Value> {
    resources(&filter_eq(t, "Users", "userName", user_name).await)
}

async fn group_on_scim(t: &Tenant, display_name: &str) -> Value {
    filter_eq(t, "Groups", "displayName", display_name).await
}

fn member_ids(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|m| m["value"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn manager_value(user: &Value) -> Value {
    let manager = &user[ENTERPRISE]["manager"];
    if manager.is_null() {
        user["manager"]["value"].clone()
    } else {
        manager["value"].clone()
    }
}

fn blank(v: &Value) -> bool {
    v.is_null() || v.as_str().is_some_and(str::is_empty)
}

// ---------------------------------------------------------------------------------------------
// User provisioning tests (UserTests_Workflow): Entra's engine acts, then the SCIM checks.

/// Create_User_Test: the user is not there, Entra creates it, `filter=userName eq` finds it.
async fn create_user(t: Arc<Tenant>) {
    let user = entra_user("lacreate");
    assert!(user_on_scim(&t, &user.upn).await.is_empty());
    let id = provision(&t, &user).await;
    let found = user_on_scim(&t, &user.upn).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["id"], id.as_str());
}

/// Update_User_Test: mapped attributes changed in Entra (jobTitle, department, surname, mail)
/// reach the SCIM endpoint; every updated value matches.
async fn update_user(t: Arc<Tenant>) {
    let user = entra_user("laupdate");
    let id = provision(&t, &user).await;
    let department = format!("{ENTERPRISE}:department");
    let changes: Vec<(&str, Value)> = vec![
        ("title", json!("Principal Engineer")),
        (&department, json!("Operations")),
        ("name.familyName", json!("Updated")),
        (
            "emails[type eq \"work\"].value",
            json!("updated@contoso.example"),
        ),
    ];
    t.entra.update_user(&id, &changes).await.unwrap();
    let found = user_on_scim(&t, &user.upn).await;
    assert_eq!(found.len(), 1);
    for (target, value) in &changes {
        assert_eq!(
            &read_target(&found[0], target),
            value,
            "{target}: {}",
            found[0]
        );
    }
}

/// Disable_User_Test: `accountEnabled=false` in Entra; the filter shows `active: false`.
async fn disable_user(t: Arc<Tenant>) {
    let user = entra_user("ladis");
    let id = provision(&t, &user).await;
    t.entra.set_active(&id, false).await.unwrap();
    let found = user_on_scim(&t, &user.upn).await;
    assert_eq!(found.len(), 1, "a disabled user is still found");
    assert_eq!(found[0]["active"], json!(false), "{}", found[0]);
}

/// Delete_User_Test (optional): soft delete then purge in Entra end in a DELETE; the user is
/// gone (`totalResults` 0, and 404 by id).
async fn delete_user(t: Arc<Tenant>) {
    let user = entra_user("ladel");
    let id = provision(&t, &user).await;
    t.entra.set_active(&id, false).await.unwrap();
    t.entra.delete("Users", &id).await.unwrap();
    let list = filter_eq(&t, "Users", "userName", &user.upn).await;
    assert_eq!(list["totalResults"], 0, "{list}");
    let gone = send(&t, Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(gone.status, 404, "{}", gone.body);
}

/// User_Update_Manager_Test: manager assigned, changed, removed in Entra, in the dialect's
/// shapes (legacy: `manager` with a `$ref`/`value` list and a `Remove` with a value list;
/// compliant: the enterprise URN with the bare id, and a `remove` without value).
async fn user_update_manager(t: Arc<Tenant>) {
    let id = provision(&t, &entra_user("lamgrinit")).await;
    let first = provision(&t, &entra_user("lamgr")).await;
    let second = provision(&t, &entra_user("lamgrnew")).await;
    for (phase, manager) in [("assign", &first), ("change", &second)] {
        t.entra.set_manager(&id, manager).await.unwrap();
        let user = get(&t, &format!("/Users/{id}")).await;
        assert_eq!(manager_value(&user), manager.as_str(), "{phase}: {user}");
    }
    let remove = match t.entra.dialect {
        Dialect::Legacy => {
            json!({"op": "Remove", "path": MANAGER, "value": [{"$ref": null, "value": second}]})
        }
        Dialect::Compliant => json!({"op": "remove", "path": MANAGER}),
    };
    t.entra.patch_user(&id, vec![remove]).await.unwrap();
    let user = get(&t, &format!("/Users/{id}")).await;
    assert!(blank(&manager_value(&user)), "remove: {user}");
}

/// Restore_User_Test: provisioned; unassigned (Entra disables: the user is found with
/// `active: false`); re-assigned (Entra matches the same user and enables it): found, active,
/// and with the same id.
async fn restore_user(t: Arc<Tenant>) {
    let user = entra_user("larestore");
    let original = provision(&t, &user).await;
    t.entra.set_active(&original, false).await.unwrap();
    let found = user_on_scim(&t, &user.upn).await;
    assert_eq!(found.len(), 1, "deprovisioned, still found");
    assert_eq!(found[0]["active"], json!(false));
    let matched = provision(&t, &user).await;
    assert_eq!(matched, original, "re-assignment links the same user");
    t.entra.set_active(&matched, true).await.unwrap();
    let found = user_on_scim(&t, &user.upn).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["active"], json!(true));
    assert_eq!(found[0]["id"], original.as_str(), "identity link preserved");
}

/// POD_User_Test: provisioning on demand always speaks the legacy dialect, whatever the Tenant
/// URL says; the user (and its manager) are there without a cycle.
async fn pod_user(t: Arc<Tenant>) {
    let on_demand = Tenant {
        entra: t.entra.with_dialect(Dialect::Legacy),
        tag: t.tag,
    };
    let manager = provision(&on_demand, &entra_user("lapodmgr")).await;
    let user = entra_user("lapod");
    let id = on_demand
        .entra
        .provision_user(&user, Some(&manager))
        .await
        .unwrap();
    let found = user_on_scim(&t, &user.upn).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], id.as_str());
    assert_eq!(manager_value(&found[0]), manager.as_str());
}

// ---------------------------------------------------------------------------------------------
// Group provisioning tests (GroupTests_Workflow).

/// Create_Group_Test: the group (a name with parentheses, as the Logic App's) is created and
/// found by `filter=displayName eq`.
async fn create_group(t: Arc<Tenant>) {
    let name = format!("LACreateGroup-({})", guid8());
    let id = provision_group(&t, &name).await;
    let found = resources(&group_on_scim(&t, &name).await);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["id"], id.as_str());
}

/// Update_Group_Test: a rename in Entra; the new displayName is found, the old one not.
async fn update_group(t: Arc<Tenant>) {
    let name = format!("LAUpdateGroup-{}", guid8());
    let id = provision_group(&t, &name).await;
    let renamed = format!("{name}-renamed");
    t.entra.rename_group(&id, &renamed).await.unwrap();
    let found = resources(&group_on_scim(&t, &renamed).await);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], id.as_str());
    assert_eq!(group_on_scim(&t, &name).await["totalResults"], 0);
}

/// Delete_Group_Test (optional): DELETE; `totalResults` 0 afterwards.
async fn delete_group(t: Arc<Tenant>) {
    let name = format!("LADeleteGroup-{}", guid8());
    let id = provision_group(&t, &name).await;
    t.entra.delete("Groups", &id).await.unwrap();
    assert_eq!(group_on_scim(&t, &name).await["totalResults"], 0);
    let gone = send(&t, Method::GET, &format!("/Groups/{id}"), None).await;
    assert_eq!(gone.status, 404, "{}", gone.body);
}

/// A group with two provisioned members, as both member tests start.
async fn group_with_members(t: &Tenant) -> (String, String, String) {
    let first = provision(t, &entra_user("lamem1")).await;
    let second = provision(t, &entra_user("lamem2")).await;
    let group = provision_group(t, &format!("LAMemberGroup-{}", guid8())).await;
    t.entra
        .add_members(&group, &[first.clone(), second.clone()])
        .await
        .unwrap();
    (group, first, second)
}

/// Group_Update_Add_Member_Test: members added (one PATCH, as Entra batches) are members;
/// adding an existing member again succeeds (no 409).
async fn group_add_member(t: Arc<Tenant>) {
    let (group, first, second) = group_with_members(&t).await;
    let mut expected = vec![first.clone(), second];
    expected.sort();
    assert_eq!(
        member_ids(&get(&t, &format!("/Groups/{group}")).await),
        expected
    );
    t.entra.add_members(&group, &[first]).await.unwrap();
    assert_eq!(
        member_ids(&get(&t, &format!("/Groups/{group}")).await),
        expected
    );
}

/// Group_Update_Remove_Member_Test: the removed member is gone and only that one (the legacy
/// `Remove` with a value list must not empty the group); removing it again is a no-op.
async fn group_remove_member(t: Arc<Tenant>) {
    let (group, first, second) = group_with_members(&t).await;
    for _ in 0..2 {
        t.entra
            .remove_members(&group, std::slice::from_ref(&first))
            .await
            .unwrap();
        assert_eq!(
            member_ids(&get(&t, &format!("/Groups/{group}")).await),
            vec![second.clone()]
        );
    }
}

/// POD_Group_Test: on demand (legacy dialect): the group and its members, without a cycle.
async fn pod_group(t: Arc<Tenant>) {
    let on_demand = Tenant {
        entra: t.entra.with_dialect(Dialect::Legacy),
        tag: t.tag,
    };
    let member = provision(&on_demand, &entra_user("lapodmem")).await;
    let name = format!("LAPodGroup-{}", guid8());
    let group = provision_group(&on_demand, &name).await;
    on_demand
        .entra
        .add_members(&group, std::slice::from_ref(&member))
        .await
        .unwrap();
    let found = resources(&group_on_scim(&t, &name).await);
    assert_eq!(found.len(), 1);
    assert_eq!(member_ids(&found[0]), vec![member]);
}

/// Restore_Group_Test (optional): unassigned (Entra deletes the group: gone), re-assigned
/// (Entra matches by displayName, finds nothing, creates it again: back).
async fn restore_group(t: Arc<Tenant>) {
    let name = format!("LARestoreGroup-{}", guid8());
    let id = provision_group(&t, &name).await;
    t.entra.delete("Groups", &id).await.unwrap();
    assert_eq!(group_on_scim(&t, &name).await["totalResults"], 0);
    let again = provision_group(&t, &name).await;
    let found = resources(&group_on_scim(&t, &name).await);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], again.as_str());
}

// ---------------------------------------------------------------------------------------------
// SCIM compliance tests (SCIMTests_Workflow): the Logic App's direct requests.

/// The Logic App's flattening of a schema's attributes into target names: `manager`/`members`
/// as is; complex multi-valued `a[type eq "<canonical>"].<sub>` for every canonical `type` value
/// and sub-attribute but `type`/`primary`, or `a[primary eq "True"].<sub>` without canonical
/// values; complex single-valued `a.<sub>` for simple sub-attributes; other non-references
/// as is.
fn flatten(attributes: &[Value]) -> Vec<String> {
    let mut names = Vec::new();
    for a in attributes {
        let name = a["name"].as_str().unwrap_or_default();
        let subs = a["subAttributes"].as_array().cloned().unwrap_or_default();
        let sub_name = |s: &Value| s["name"].as_str().unwrap_or_default().to_string();
        if name == "manager" || name == "members" {
            names.push(name.to_string());
        } else if a["type"] == "complex" && a["multiValued"] == true {
            let canonical = subs
                .iter()
                .find(|s| s["name"] == "type")
                .and_then(|s| s["canonicalValues"].as_array().cloned())
                .unwrap_or_default();
            if canonical.is_empty() {
                for s in subs.iter().filter(|s| s["name"] != "primary") {
                    names.push(format!("{name}[primary eq \"True\"].{}", sub_name(s)));
                }
            } else {
                for value in &canonical {
                    let value = value.as_str().unwrap_or_default();
                    for s in subs
                        .iter()
                        .filter(|s| s["name"] != "type" && s["name"] != "primary")
                    {
                        names.push(format!("{name}[type eq \"{value}\"].{}", sub_name(s)));
                    }
                }
            }
        } else if a["type"] == "complex" {
            for s in subs
                .iter()
                .filter(|s| s["type"] != "complex" && s["type"] != "reference")
            {
                names.push(format!("{name}.{}", sub_name(s)));
            }
        } else if a["type"] != "reference" {
            names.push(name.to_string());
        }
    }
    names
}

/// Target names missing from the flattened names (`id` aside), compared case-insensitively
/// as the Logic App's `|`-joined lookup string does.
fn missing(targets: &[(&str, Kind)], flattened: &[String]) -> Vec<String> {
    let lookup = format!("|{}|", flattened.join("|")).to_lowercase();
    targets
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| *name != "id" && !lookup.contains(&format!("|{}|", name.to_lowercase())))
        .map(String::from)
        .collect()
}

/// Schema_Discoverability_Test: `/Schemas` answers 200 with resources, and every target
/// attribute of Entra's user and group mappings is discoverable in it (core attributes
/// flattened, extension attributes as `<schema id>:<name>`). Beyond the workflow: the
/// resource types and the service provider configuration Entra and the hosted validator read.
async fn schema_discoverability(t: Arc<Tenant>) {
    let schemas = get(&t, "/Schemas").await;
    let all = resources(&schemas);
    assert!(!all.is_empty(), "{schemas}");
    let attributes = |id: &str| -> Vec<Value> {
        all.iter()
            .find(|s| s["id"] == id)
            .and_then(|s| s["attributes"].as_array().cloned())
            .unwrap_or_default()
    };
    let mut user = flatten(&attributes(USER_SCHEMA));
    for extension in all
        .iter()
        .filter(|s| s["id"] != USER_SCHEMA && s["id"] != GROUP_SCHEMA)
    {
        let id = extension["id"].as_str().unwrap_or_default();
        for a in extension["attributes"].as_array().into_iter().flatten() {
            user.push(format!("{id}:{}", a["name"].as_str().unwrap_or_default()));
        }
    }
    let group = flatten(&attributes(GROUP_SCHEMA));
    assert!(
        !group.is_empty(),
        "/Schemas did not return Group schema. Group provisioning is mandatory."
    );
    let (missing_user, missing_group) =
        (missing(USER_TARGETS, &user), missing(GROUP_TARGETS, &group));
    assert!(
        missing_user.is_empty() && missing_group.is_empty(),
        "Missing user attrs: {missing_user:?} | Missing group attrs: {missing_group:?}\nflattened user: {user:?}\nflattened group: {group:?}"
    );

    let types = get(&t, "/ResourceTypes").await;
    let types = resources(&types);
    for (name, endpoint, schema) in [
        ("User", "/Users", USER_SCHEMA),
        ("Group", "/Groups", GROUP_SCHEMA),
    ] {
        let rt = types
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no {name} resource type: {types:?}"));
        assert_eq!(rt["endpoint"], endpoint, "{rt}");
        assert_eq!(rt["schema"], schema, "{rt}");
        assert_eq!(
            get(&t, &format!("/ResourceTypes/{name}")).await["name"],
            name
        );
    }
    let user_type = types.iter().find(|r| r["name"] == "User").unwrap();
    assert!(
        user_type["schemaExtensions"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["schema"] == ENTERPRISE)),
        "{user_type}"
    );
    for id in [USER_SCHEMA, ENTERPRISE, GROUP_SCHEMA] {
        assert_eq!(get(&t, &format!("/Schemas/{id}")).await["id"], id);
    }
    let config = get(&t, "/ServiceProviderConfig").await;
    assert_eq!(config["patch"]["supported"], true, "{config}");
    assert_eq!(config["filter"]["supported"], true, "{config}");
    assert!(
        config["filter"]["maxResults"]
            .as_u64()
            .is_some_and(|n| n >= 5),
        "{config}"
    );
    assert!(
        config["authenticationSchemes"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{config}"
    );
}

/// SCIM_Null_Update_Test: a user with every mapped attribute; phase 1 PATCHes every optional
/// mapped attribute (not references, `userName`, `active`, `externalId`, `roles`, or attributes
/// `/Schemas` marks required) to `""`: each reads back empty or absent; phase 2 PATCHes them to
/// `null`: each non-value-path one reads back absent.
async fn scim_null_update(t: Arc<Tenant>) {
    let created = post(
        &t,
        "Users",
        scim_user_body(&format!("scnull{}@contoso.example", guid8())),
    )
    .await;
    let id = id_of(&created);
    let path = format!("/Users/{id}");
    get(&t, &path).await;
    let schemas = resources(&get(&t, "/Schemas").await);
    let required: Vec<String> = schemas
        .iter()
        .filter(|s| s["id"] == USER_SCHEMA || s["id"] == ENTERPRISE)
        .flat_map(|s| s["attributes"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["required"] == true)
        .filter_map(|a| a["name"].as_str().map(String::from))
        .collect();
    let targets: Vec<&str> = USER_TARGETS
        .iter()
        .filter(|(_, kind)| *kind != Kind::Reference)
        .map(|(name, _)| *name)
        .filter(|name| !["userName", "active", "externalId", "roles"].contains(name))
        .filter(|name| {
            let top = if name.starts_with("urn:") {
                name.rsplit(':').next().unwrap()
            } else {
                name.split(['[', '.']).next().unwrap()
            };
            !required.iter().any(|r| r == top)
        })
        .collect();
    assert!(targets.len() > 10, "{targets:?}");

    for (phase, value) in [("empty string", json!("")), ("null", Value::Null)] {
        let changes: Vec<(&str, Value)> = targets.iter().map(|p| (*p, value.clone())).collect();
        patch(&t, &path, replace_ops(&changes, t.verbose()), phase).await;
        let user = get(&t, &path).await;
        for target in &targets {
            let got = read_target(&user, target);
            if value.is_null() {
                // The workflow verifies value paths only in phase 1.
                if !target.contains('[') {
                    assert!(got.is_null(), "{phase}: {target} is {got}: {user}");
                }
            } else {
                assert!(blank(&got), "{phase}: {target} is {got}: {user}");
            }
        }
    }
    t.entra.delete("Users", &id).await.unwrap();
}

/// SCIM_User_Create_Test: a well-formed POST; 200/201, an id, the same userName back.
async fn scim_user_create(t: Arc<Tenant>) {
    let user_name = format!("lascuser{}@contoso.example", guid8());
    let created = post(&t, "Users", scim_user_body(&user_name)).await;
    assert_eq!(created["userName"], user_name.as_str(), "{created}");
    t.entra.delete("Users", &id_of(&created)).await.unwrap();
}

/// SCIM_User_Update_Test: every single-valued, writable, non-reference mapped attribute but
/// `active` (so `userName` and `externalId` too) replaced by a fresh `upd-` value; the GET
/// shows each (a value path: the attribute's JSON contains the value).
async fn scim_user_update(t: Arc<Tenant>) {
    let created = post(
        &t,
        "Users",
        scim_user_body(&format!("lasupduser{}@contoso.example", guid8())),
    )
    .await;
    let path = format!("/Users/{}", id_of(&created));
    let changes: Vec<(&str, Value)> = USER_TARGETS
        .iter()
        .filter(|(name, kind)| {
            *kind == Kind::String && !["active", "groups", "roles"].contains(name)
        })
        .map(|(name, _)| (*name, json!(format!("upd-{}", guid8()))))
        .collect();
    patch(&t, &path, replace_ops(&changes, t.verbose()), "user update").await;
    let user = get(&t, &path).await;
    let mismatches: Vec<String> = changes
        .iter()
        .filter(|(target, sent)| {
            let sent = sent.as_str().unwrap();
            if let Some((parent, _)) = target.split_once('[') {
                !user[parent].to_string().contains(sent)
            } else {
                read_target(&user, target).as_str() != Some(sent)
            }
        })
        .map(|(target, sent)| format!("{target}: sent {sent}, got {}", read_target(&user, target)))
        .collect();
    assert!(mismatches.is_empty(), "{mismatches:#?}\n{user}");
    t.entra.delete("Users", &id_of(&user)).await.unwrap();
}

/// SCIM_Group_Create_Test: a POST of a group; 200/201, an id, the same displayName back.
async fn scim_group_create(t: Arc<Tenant>) {
    let name = format!("LASCDirectGroup-{}", guid8());
    let created = post(&t, "Groups", scim_group_body(&name)).await;
    assert_eq!(created["displayName"], name.as_str(), "{created}");
    t.entra.delete("Groups", &id_of(&created)).await.unwrap();
}

/// SCIM_Group_Update_Test: the group's single-valued, non-reference mapped attributes
/// (`displayName`, `externalId`) replaced, one op each; the GET shows them.
async fn scim_group_update(t: Arc<Tenant>) {
    let created = post(
        &t,
        "Groups",
        scim_group_body(&format!("LASUpdGroup-{}", guid8())),
    )
    .await;
    let path = format!("/Groups/{}", id_of(&created));
    let changes: Vec<(&str, Value)> = GROUP_TARGETS
        .iter()
        .filter(|(_, kind)| *kind == Kind::String)
        .map(|(name, _)| (*name, json!(format!("upd-{}", guid8()))))
        .collect();
    patch(&t, &path, replace_ops(&changes, true), "group update").await;
    let group = get(&t, &path).await;
    for (attribute, sent) in &changes {
        assert_eq!(&group[attribute], sent, "{attribute}: {group}");
    }
    t.entra.delete("Groups", &id_of(&group)).await.unwrap();
}

/// SCIM_User_Pagination_Test and SCIM_Group_Pagination_Test (optional): at least 11 resources
/// (created five at a time as the Logic App does), then pages of `count=5` from
/// `startIndex=1`, the next at `startIndex + len(Resources)` while that is within
/// `totalResults` (at most 10 pages): every page 200 with `startIndex` = page * 5 + 1, at least
/// two pages. Beyond the workflow: no resource on two pages. The created ones are deleted.
async fn pagination(t: Arc<Tenant>, resource: &'static str) {
    let first = format!("/{resource}?startIndex=1&count=5");
    let total = get(&t, &first).await["totalResults"].as_u64().unwrap_or(0);
    let created: Vec<String> = futures::stream::iter(0..11u64.saturating_sub(total))
        .map(|_| {
            let body = if resource == "Users" {
                scim_user_body(&format!("lapage{}@contoso.example", guid8()))
            } else {
                scim_group_body(&format!("PagGroup {}", guid8()))
            };
            let t = t.clone();
            async move { id_of(&post(&t, resource, body).await) }
        })
        .buffer_unordered(5)
        .collect()
        .await;
    let mut url = first;
    let mut pages = 0u64;
    let mut seen = std::collections::BTreeSet::new();
    while pages < 10 && !url.is_empty() {
        let answer = send(&t, Method::GET, &url, None).await;
        assert_eq!(answer.status, 200, "{url}: {}", answer.body);
        let page = &answer.body;
        assert_eq!(page["startIndex"], pages * 5 + 1, "{url}: {page}");
        let items = resources(page);
        assert!(items.len() <= 5, "{url}: {} resources", items.len());
        for r in &items {
            assert!(seen.insert(id_of(r)), "{url}: {} on two pages", r["id"]);
        }
        pages += 1;
        let start = page["startIndex"].as_u64().unwrap_or(1);
        let next = start + items.len() as u64;
        url = if !items.is_empty() && next <= page["totalResults"].as_u64().unwrap_or(0) {
            format!("/{resource}?startIndex={next}&count=5")
        } else {
            String::new()
        };
    }
    assert!(pages >= 2, "{pages} pages");
    for id in created {
        t.entra.delete(resource, &id).await.unwrap();
    }
}

/// SCIM_Update_Manager_Test: set (`Add`, the manager id as a bare string on the enterprise
/// URN), change (`replace`, bare string), remove (`replace` with `""`), each read back.
async fn scim_update_manager(t: Arc<Tenant>) {
    let mut ids = Vec::new();
    for who in ["scmgr-user-", "scmgr-mgr-", "scmgr-mgr2-"] {
        let body = scim_user_body(&format!("{who}{}@contoso.example", guid8()));
        ids.push(id_of(&post(&t, "Users", body).await));
    }
    let path = format!("/Users/{}", ids[0]);
    for (phase, op, expected) in [
        (
            "set",
            json!({"op": "Add", "path": MANAGER, "value": ids[1]}),
            Some(&ids[1]),
        ),
        (
            "change",
            json!({"op": "replace", "path": MANAGER, "value": ids[2]}),
            Some(&ids[2]),
        ),
        (
            "remove",
            json!({"op": "replace", "path": MANAGER, "value": ""}),
            None,
        ),
    ] {
        patch(&t, &path, vec![op], phase).await;
        let user = get(&t, &path).await;
        match expected {
            Some(id) => assert_eq!(manager_value(&user), id.as_str(), "{phase}: {user}"),
            None => assert!(blank(&manager_value(&user)), "{phase}: {user}"),
        }
    }
    for id in ids {
        t.entra.delete("Users", &id).await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Checks of Microsoft's hosted validator that the Logic App does not make.

/// Filters: the attribute name and a case-insensitive attribute's value in any case; an
/// unknown value answers an empty list (200, never 404).
async fn filters_case_insensitive(t: Arc<Tenant>) {
    let user = entra_user("lafilter");
    let id = provision(&t, &user).await;
    for (attribute, value) in [
        ("userName", user.upn.to_uppercase()),
        ("USERNAME", user.upn.to_lowercase()),
        ("externalId", user.object_id.clone()),
        ("emails.value", user.mail.clone().unwrap().to_uppercase()),
    ] {
        let found = resources(&filter_eq(&t, "Users", attribute, &value).await);
        assert_eq!(found.len(), 1, "{attribute} eq {value}: {found:?}");
        assert_eq!(found[0]["id"], id.as_str());
    }
    let none = filter_eq(&t, "Users", "userName", &format!("nobody{}", guid8())).await;
    assert_eq!(none["totalResults"], 0);
    assert_eq!(none["Resources"], json!([]), "{none}");
}

/// Groups read with `excludedAttributes=members`, by filter and by id: no `members`.
async fn excluded_attributes_members(t: Arc<Tenant>) {
    let (group, ..) = group_with_members(&t).await;
    let by_id = get(&t, &format!("/Groups/{group}?excludedAttributes=members")).await;
    assert!(by_id.get("members").is_none(), "{by_id}");
    assert!(!by_id["displayName"].is_null(), "{by_id}");
    let name = by_id["displayName"].as_str().unwrap().to_string();
    let list = get(
        &t,
        &format!(
            "/Groups?filter={}&excludedAttributes=members",
            urlencode(&format!("displayName eq \"{name}\""))
        ),
    )
    .await;
    let found = resources(&list);
    assert_eq!(found.len(), 1, "{list}");
    assert!(found[0].get("members").is_none(), "{list}");
}

/// A second user with the same userName (in another case) and a second group with the same
/// displayName: 409 with `scimType: uniqueness` in a SCIM error.
async fn duplicate_conflict(t: Arc<Tenant>) {
    let user_name = format!("ladup{}@contoso.example", guid8());
    post(&t, "Users", scim_user_body(&user_name)).await;
    let group = format!("LADupGroup-{}", guid8());
    post(&t, "Groups", scim_group_body(&group)).await;
    for (resource, body) in [
        ("Users", scim_user_body(&user_name.to_uppercase())),
        ("Groups", scim_group_body(&group)),
    ] {
        let answer = send(&t, Method::POST, &format!("/{resource}"), Some(body)).await;
        assert_eq!(answer.status, 409, "{resource}: {}", answer.body);
        assert_eq!(answer.body["scimType"], "uniqueness", "{}", answer.body);
        assert_eq!(
            answer.body["schemas"],
            json!([ERROR_SCHEMA]),
            "{}",
            answer.body
        );
    }
}

// ---------------------------------------------------------------------------------------------

/// How long one test may take (the Logic App's own limits are minutes per step).
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs every test against one tenant, one after the other (pagination counts what the others
/// left), each in a task of its own so a failure is reported with its name and the rest still
/// run.
async fn run(tenant: Tenant) -> Vec<(&'static str, Result<(), String>)> {
    let tenant = Arc::new(tenant);
    let mut results = Vec::new();
    for (name, test) in tests() {
        let task = tokio::spawn(tokio::time::timeout(TEST_TIMEOUT, test(tenant.clone())));
        let outcome = match task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(format!("not finished within {TEST_TIMEOUT:?}")),
            Err(e) => Err(match e.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into()),
                Err(e) => e.to_string(),
            }),
        };
        results.push((name, outcome));
    }
    results
}

#[tokio::test]
async fn microsofts_validation_suite_passes_in_both_dialects() {
    let plane = ControlPlane::shared();
    let ns = plane.namespace("ms-validation").await.unwrap();
    let kube = plane.client().await.unwrap();
    let mut stack = Stack::start(plane, StackOptions::new(&ns)).await.unwrap();
    let dirs: Api<ScimDirectory> = Api::namespaced(kube.clone(), &ns);
    let mut table = String::from("test | legacy | aadOptscim062020\n");
    let mut rows: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut failures = Vec::new();
    for (tag, dialect) in [
        ("legacy", Dialect::Legacy),
        ("compliant", Dialect::Compliant),
    ] {
        dirs.create(
            &PostParams::default(),
            &ScimDirectory::new(tag, ScimDirectorySpec::default()),
        )
        .await
        .unwrap();
        let (_, token) = stack.ready_directory(&kube, &ns, tag).await;
        let entra = EntraClient::new(&stack.base_url(&ns, tag), &token, dialect);
        for _ in 0..100 {
            if entra.test_connection().await.unwrap().status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (i, (name, outcome)) in run(Tenant { entra, tag }).await.into_iter().enumerate() {
            if rows.len() <= i {
                rows.push((name, Vec::new()));
            }
            rows[i]
                .1
                .push(if outcome.is_ok() { "PASSED" } else { "FAILED" });
            if let Err(why) = outcome {
                failures.push(format!("{name} ({tag}): {why}"));
            }
        }
    }
    for (name, results) in &rows {
        table.push_str(&format!("{name} | {}\n", results.join(" | ")));
    }
    println!("{table}");
    assert!(
        failures.is_empty(),
        "{} of Microsoft's validation tests failed:\n{table}\n{}\n{}",
        failures.len(),
        failures.join("\n\n"),
        stack.logs()
    );
    assert!(stack.server.is_running());
}
