//! Resource validation, PUT, queries, projection, discovery, ETags and error rendering.

use scim_protocol::discovery;
use scim_protocol::patch::replace_with_delta;
use scim_protocol::schema::{ENTERPRISE_USER_SCHEMA, ResourceKind};
use scim_protocol::{
    ListQuery, MemberRef, Precondition, Resource, ScimError, SortOrder, check_if_match,
    check_if_none_match, etag, parse_etag, validate_create, validate_replace,
};
use serde_json::{Value, json};

/// Microsoft's "Create User" request from the Entra SCIM tutorial.
fn entra_create_user_body() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
        "active": true,
        "emails": [{"primary": true, "type": "work",
                    "value": "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": []
    })
}

#[test]
fn entra_create_user() {
    let r = validate_create(ResourceKind::User, &entra_create_user_body()).unwrap();
    assert_eq!(
        r.user_name(),
        Some("Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1")
    );
    assert_eq!(
        r.external_id(),
        Some("0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef")
    );
    assert_eq!(r.active(), Some(true));
    assert!(r.attributes().get("meta").is_none()); // client meta ignored
    assert!(r.attributes().get("roles").is_none()); // empty = unassigned
    assert_eq!(
        r.work_email(),
        Some("Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com")
    );
}

#[test]
fn entra_create_user_legacy_and_odd_shapes() {
    let r = validate_create(
        ResourceKind::User,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0User",
                        "not a urn"],
            "id": "client-chosen",
            "UserName": "A@contoso.com",
            "Active": "True",
            "displayName": null,
            "title": null,
            "groups": [{"value": "g1"}],
            "password": "p@ss",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": [{"value": "m1"}], "department": null},
            "urn:ietf:params:scim:schemas:extension:CustomExt:2.0:User:badge": "B-7",
            "someUnknownAttribute": "ignored"
        }),
    )
    .unwrap();
    let mut r = r;
    assert_eq!(r.user_name(), Some("A@contoso.com"));
    assert_eq!(r.active(), Some(true));
    assert_eq!(r.id(), None);
    assert!(r.attributes().get("groups").is_none());
    assert!(r.attributes().get("someUnknownAttribute").is_none());
    assert_eq!(r.manager_id(), Some("m1"));
    assert_eq!(r.take_password().as_deref(), Some("p@ss"));
    let j = r.to_json();
    assert_eq!(
        j["urn:ietf:params:scim:schemas:extension:CustomExt:2.0:User"]["badge"],
        json!("B-7")
    );
    assert!(j.get("password").is_none());
}

#[test]
fn entra_create_group_with_adscim_schema() {
    let g = validate_create(
        ResourceKind::Group,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group",
                        "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "displayName",
            "meta": {"resourceType": "Group"},
            "members": []
        }),
    )
    .unwrap();
    assert_eq!(g.display_name(), Some("displayName"));
    assert_eq!(
        g.to_json()["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:Group"])
    );
}

#[test]
fn create_validation_errors() {
    let table: &[(ResourceKind, Value, &str)] = &[
        (ResourceKind::User, json!({}), "userName"),
        (ResourceKind::User, json!({"userName": null}), "userName"),
        (ResourceKind::Group, json!({"members": []}), "displayName"),
        (
            ResourceKind::User,
            json!({"userName": 5}),
            "must be a string",
        ),
        (
            ResourceKind::User,
            json!({"userName": "a", "active": "yes"}),
            "boolean",
        ),
        (
            ResourceKind::User,
            json!({"userName": "a", "emails": 5}),
            "object",
        ),
        (
            ResourceKind::User,
            json!({"userName": "a", "name": ["a", "b"]}),
            "single-valued",
        ),
        (
            ResourceKind::User,
            json!({"userName": "a", "emails": [{"value": "a", "primary": true}, {"value": "b", "primary": true}]}),
            "primary",
        ),
        (
            ResourceKind::Group,
            json!({"displayName": "g", "members": [{"value": "x", "type": "Robot"}]}),
            "one of",
        ),
        (
            ResourceKind::User,
            json!({"userName": "a", "password": 7}),
            "password",
        ),
        (ResourceKind::User, json!([1, 2]), "JSON object"),
    ];
    for (k, body, needle) in table {
        let e = validate_create(*k, body).unwrap_err();
        assert!(e.detail().contains(needle), "{body}: {e}");
        assert_eq!(e.status(), 400);
    }
}

#[test]
fn put_replaces_and_keeps_server_attributes() {
    let mut r = validate_create(ResourceKind::User, &entra_create_user_body()).unwrap();
    r.set_id("u1");
    r.set_groups(&[MemberRef::new("g1")]);
    let new = validate_replace(
        &r,
        &json!({"userName": "new", "id": "ignored", "groups": []}),
    )
    .unwrap();
    assert_eq!(new.id(), Some("u1"));
    assert_eq!(new.user_name(), Some("new"));
    assert!(new.attributes().get("emails").is_none());
    assert_eq!(new.attributes()["groups"][0]["value"], json!("g1"));

    let mut g = validate_create(ResourceKind::Group, &json!({"displayName": "g"})).unwrap();
    g.set_id("g1");
    let out = replace_with_delta(
        &g,
        &json!({"displayName": "g", "members": [{"value": "a"}]}),
    )
    .unwrap();
    assert!(out.membership.replace_all);
    assert_eq!(out.membership.apply_to(["z"]), vec!["a"]);
}

fn users() -> Vec<Resource> {
    ["carol", "Alice", "bob", "dave"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut r = validate_create(
                ResourceKind::User,
                &json!({"userName": n, "displayName": n.to_uppercase(), "active": i % 2 == 0,
                        "emails": [{"value": format!("{n}@x.org"), "type": "work"}],
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "D"}}),
            )
            .unwrap();
            r.set_id(format!("id{i}"));
            r
        })
        .collect()
}

#[test]
fn entra_test_connection_empty_list() {
    let q = ListQuery::from_query_pairs([
        (
            "filter",
            r#"userName eq "00aa00aa-bb11-cc22-dd33-44ee44ee44ee""#,
        ),
        ("aadOptscim062020", ""),
    ])
    .unwrap();
    let out = q.run(ResourceKind::User, &users(), 100).unwrap();
    assert_eq!(
        out,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
               "totalResults": 0, "itemsPerPage": 0, "startIndex": 1, "Resources": []})
    );
}

#[test]
fn list_sort_page_project() {
    let all = users();
    let q = ListQuery::from_query_pairs([
        ("sortBy", "userName"),
        ("sortOrder", "descending"),
        ("startIndex", "2"),
        ("count", "2"),
        ("attributes", "userName,emails.value"),
    ])
    .unwrap();
    let out = q.run(ResourceKind::User, &all, 100).unwrap();
    assert_eq!(out["totalResults"], json!(4));
    assert_eq!(out["itemsPerPage"], json!(2));
    assert_eq!(out["startIndex"], json!(2));
    let names: Vec<&str> = out["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userName"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["carol", "bob"]);
    let first = &out["Resources"][0];
    assert_eq!(first["emails"], json!([{"value": "carol@x.org"}]));
    assert!(first.get("displayName").is_none());
    assert!(first.get("id").is_some());
    assert_eq!(
        first["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
    );

    // count above the maximum is clamped; count=0 returns only the total
    let q = ListQuery::from_query_pairs([("count", "1000")]).unwrap();
    assert_eq!(
        q.run(ResourceKind::User, &all, 3).unwrap()["itemsPerPage"],
        json!(3)
    );
    let q = ListQuery::from_query_pairs([("count", "0"), ("startIndex", "-5")]).unwrap();
    let out = q.run(ResourceKind::User, &all, 3).unwrap();
    assert_eq!(
        (
            out["totalResults"].clone(),
            out["itemsPerPage"].clone(),
            out["startIndex"].clone()
        ),
        (json!(4), json!(0), json!(1))
    );

    // excludedAttributes (Entra: groups with excludedAttributes=members)
    let q = ListQuery::from_query_pairs([(
        "excludedAttributes",
        "emails,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department,id",
    )])
    .unwrap();
    let r = q.project(&all[0]);
    assert!(r.get("emails").is_none());
    assert!(r.get(ENTERPRISE_USER_SCHEMA).is_none());
    assert_eq!(
        r["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
    );
    assert!(r.get("id").is_some()); // returned: always
    assert!(r.get("userName").is_some());

    // ascending sort is case-insensitive for userName
    let q = ListQuery::from_query_pairs([("sortBy", "userName")]).unwrap();
    let out = q.run(ResourceKind::User, &all, 10).unwrap();
    let names: Vec<&str> = out["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userName"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["Alice", "bob", "carol", "dave"]);
    assert_eq!(q.sort_order, SortOrder::Ascending);
}

#[test]
fn excluded_attributes_match_names_in_any_case_and_sub_attributes() {
    let all = users();
    let q = ListQuery::from_query_pairs([(
        "excludedAttributes",
        "EMAILS.TYPE,DisplayName,URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:Department",
    )])
    .unwrap();
    for r in &all {
        let p = q.project(r);
        assert_eq!(p, q.project_into(r.clone()));
        let name = r.attributes()["userName"].as_str().unwrap();
        assert_eq!(p["emails"], json!([{"value": format!("{name}@x.org")}]));
        assert!(p.get("displayName").is_none());
        // The extension, left empty, goes with its schema URI.
        assert!(p.get(ENTERPRISE_USER_SCHEMA).is_none());
        assert_eq!(
            p["schemas"],
            json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
        );
        assert_eq!(p["userName"], json!(name));
    }
    // With `attributes` too: what it selects, less what is excluded.
    let q = ListQuery::from_query_pairs([
        ("attributes", "emails,userName"),
        ("excludedAttributes", "Emails.Type"),
    ])
    .unwrap();
    let p = q.project_into(all[0].clone());
    assert_eq!(p["emails"], json!([{"value": "carol@x.org"}]));
    assert_eq!(p["userName"], json!("carol"));
    assert!(p.get("displayName").is_none());
}

#[test]
fn search_body_rfc_example() {
    let q = ListQuery::from_search_body(&json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "attributes": ["displayName", "userName"],
        "excludedAttributes": [],
        "filter": "displayName sw \"smith\"",
        "startIndex": 1,
        "count": 10
    }))
    .unwrap();
    assert_eq!(q.count, Some(10));
    assert_eq!(q.attributes.len(), 2);
    assert!(q.filter.is_some());
    assert!(ListQuery::from_search_body(&json!({"schemas": ["x"]})).is_err());
}

#[test]
fn query_errors() {
    for (k, v, t) in [
        ("filter", "userName eq", "invalidFilter"),
        ("count", "ten", "invalidValue"),
        ("sortOrder", "sideways", "invalidValue"),
        ("attributes", "emails[type eq \"work\"]", "invalidPath"),
        ("filter", "password eq \"x\"", "sensitive"),
    ] {
        let e = ListQuery::from_query_pairs([(k, v)]).unwrap_err();
        assert_eq!(e.scim_type(), Some(t), "{k}={v}");
    }
}

#[test]
fn error_json_shape() {
    let e = ScimError::Uniqueness("userName 'bjensen' is already taken".into());
    assert_eq!(
        e.to_json(),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "409",
               "scimType": "uniqueness", "detail": "userName 'bjensen' is already taken"})
    );
    let nf = ScimError::NotFound("Resource 2819c223 not found".into());
    assert_eq!(nf.status(), 404);
    assert!(nf.to_json().get("scimType").is_none());
    for (e, s) in [
        (ScimError::TooMany("x".into()), "tooMany"),
        (ScimError::InvalidVers("x".into()), "invalidVers"),
        (ScimError::Sensitive("x".into()), "sensitive"),
        (ScimError::NoTarget("x".into()), "noTarget"),
    ] {
        assert_eq!(e.to_json()["scimType"], json!(s));
    }
}

#[test]
fn etags_and_preconditions() {
    assert_eq!(etag("42"), "W/\"42\"");
    assert_eq!(parse_etag("W/\"42\""), Some("42"));
    assert_eq!(parse_etag("\"42\""), Some("42"));
    check_if_match(None, Some("42")).unwrap();
    check_if_match(Some("W/\"42\""), Some("42")).unwrap();
    check_if_match(Some("W/\"1\", W/\"42\""), Some("42")).unwrap();
    check_if_match(Some("*"), Some("42")).unwrap();
    assert_eq!(
        check_if_match(Some("W/\"41\""), Some("42"))
            .unwrap_err()
            .status(),
        412
    );
    assert_eq!(check_if_match(Some("*"), None).unwrap_err().status(), 412);
    assert_eq!(
        check_if_none_match(Some("W/\"42\""), Some("42"), true).unwrap(),
        Precondition::NotModified
    );
    assert_eq!(
        check_if_none_match(Some("W/\"41\""), Some("42"), true).unwrap(),
        Precondition::Proceed
    );
    assert_eq!(
        check_if_none_match(Some("*"), Some("42"), false)
            .unwrap_err()
            .status(),
        412
    );
    let mut r = validate_create(ResourceKind::User, &json!({"userName": "a"})).unwrap();
    r.set_meta(&scim_protocol::Meta {
        version: "7".into(),
        ..Default::default()
    });
    assert_eq!(r.version_etag(), Some("W/\"7\""));
}

#[test]
fn discovery_documents() {
    let spc = discovery::service_provider_config("https://h/scim/", 100);
    assert_eq!(spc["patch"]["supported"], json!(true));
    assert_eq!(spc["bulk"]["supported"], json!(false));
    assert_eq!(spc["filter"]["maxResults"], json!(100));
    assert_eq!(
        spc["meta"]["location"],
        json!("https://h/scim/ServiceProviderConfig")
    );
    let rts = discovery::resource_types("https://h/scim");
    assert_eq!(rts["totalResults"], json!(2));
    assert_eq!(
        rts["Resources"][0]["schemaExtensions"][0]["schema"],
        json!(ENTERPRISE_USER_SCHEMA)
    );
    let schemas = discovery::schemas("https://h/scim");
    assert_eq!(schemas["totalResults"], json!(3));
    let user = &schemas["Resources"][0];
    let attrs = user["attributes"].as_array().unwrap();
    let emails = attrs.iter().find(|a| a["name"] == "emails").unwrap();
    assert_eq!(emails["multiValued"], json!(true));
    assert!(
        emails["subAttributes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "value")
    );
    let user_name = attrs.iter().find(|a| a["name"] == "userName").unwrap();
    assert_eq!(user_name["caseExact"], json!(false));
    assert_eq!(user_name["uniqueness"], json!("server"));
    let pw = attrs.iter().find(|a| a["name"] == "password").unwrap();
    assert_eq!(pw["returned"], json!("never"));
    // The server refuses a second group with one displayName; the schema says so.
    let named = |list: &Value, name: &str| -> Value {
        let items = list.as_array().unwrap();
        items.iter().find(|i| i["name"] == name).unwrap().clone()
    };
    let group = named(&schemas["Resources"], "Group");
    let display = named(&group["attributes"], "displayName");
    assert_eq!(display["uniqueness"], json!("server"));
    assert!(discovery::schema_by_id("urn:ietf:params:scim:schemas:core:2.0:group", "h").is_some());
    assert!(discovery::resource_type_by_name("user", "h").is_some());
    // Microsoft's Schema_Discoverability_Test looks for every mapped target attribute, Entra's
    // default `externalId` too: listed in the core schemas (RFC 7643 §3.1 allows it), once,
    // and not in the extension; `id` and `meta` stay unlisted.
    for resource in schemas["Resources"].as_array().unwrap() {
        let names: Vec<&str> = resource["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["name"].as_str())
            .collect();
        let external = names.iter().filter(|n| **n == "externalId").count();
        let core = resource["id"] != json!(ENTERPRISE_USER_SCHEMA);
        assert_eq!(external, usize::from(core), "{}: {names:?}", resource["id"]);
        assert!(
            !names.contains(&"id") && !names.contains(&"meta"),
            "{names:?}"
        );
    }
    let external = named(&group["attributes"], "externalId");
    assert_eq!(external["caseExact"], json!(true));
    assert_eq!(external["mutability"], json!("readWrite"));
}

#[test]
fn stored_round_trip() {
    let mut r = validate_create(ResourceKind::User, &entra_create_user_body()).unwrap();
    r.set_id("x");
    r.set_meta(&scim_protocol::Meta {
        version: "1".into(),
        ..Default::default()
    });
    let back = Resource::from_stored(ResourceKind::User, &r.to_json()).unwrap();
    assert_eq!(back.attributes(), r.attributes());
    back.validate().unwrap();
}

#[test]
fn serialize_matches_to_json() {
    let mut r = validate_create(ResourceKind::User, &entra_create_user_body()).unwrap();
    r.set_id("x");
    let text = r.to_json_string();
    assert!(text.starts_with("{\"schemas\":"));
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), r.to_json());
}

/// RFC 7644 §3.3 (create), §3.5.1 (replace), §3.4.2.4 / §3.9 (paging, attributes).
#[test]
fn rfc7644_create_replace_retrieve_examples() {
    let mut u = validate_create(
        ResourceKind::User,
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "bjensen", "externalId": "bjensen",
                "name": {"formatted": "Ms. Barbara J Jensen III", "familyName": "Jensen", "givenName": "Barbara"}}),
    )
    .unwrap();
    u.set_id("2819c223-7f76-453a-919d-413861904646");
    u.set_meta(&scim_protocol::Meta {
        created: "2011-08-01T21:32:44.882Z".into(),
        last_modified: "2011-08-01T21:32:44.882Z".into(),
        version: "e180ee84f0671b1".into(),
        location: "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646".into(),
    });
    let j = u.to_json();
    assert_eq!(j["meta"]["version"], json!("W/\"e180ee84f0671b1\""));
    assert_eq!(j["meta"]["resourceType"], json!("User"));

    let put = validate_replace(
        &u,
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "id": "2819c223-7f76-453a-919d-413861904646",
                "userName": "bjensen", "externalId": "bjensen",
                "name": {"formatted": "Ms. Barbara J Jensen III", "familyName": "Jensen",
                         "givenName": "Barbara", "middleName": "Jane"},
                "roles": [],
                "emails": [{"value": "bjensen@example.com"}, {"value": "babs@jensen.org"}]}),
    )
    .unwrap();
    assert_eq!(put.emails(), vec!["bjensen@example.com", "babs@jensen.org"]);
    assert_eq!(put.attributes()["name"]["middleName"], json!("Jane"));
    assert_eq!(put.attributes()["meta"], u.attributes()["meta"]);

    // GET /Users/{id}?attributes=userName → schemas, id, userName only
    let q = ListQuery::from_query_pairs([("attributes", "userName")]).unwrap();
    let p = q.project(&u);
    let mut keys: Vec<&String> = p.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, vec!["id", "schemas", "userName"]);

    // GET /Groups?filter=displayName eq "Employees" with paging
    let groups: Vec<Resource> = (0..25)
        .map(|i| {
            let mut g = validate_create(
                ResourceKind::Group,
                &json!({"displayName": if i % 5 == 0 { "Employees" } else { "Other" }}),
            )
            .unwrap();
            g.set_id(format!("g{i}"));
            g
        })
        .collect();
    let q = ListQuery::from_query_pairs([
        ("filter", r#"displayName eq "Employees""#),
        ("startIndex", "1"),
        ("count", "10"),
    ])
    .unwrap();
    let out = q.run(ResourceKind::Group, &groups, 100).unwrap();
    assert_eq!(out["totalResults"], json!(5));
    assert_eq!(out["itemsPerPage"], json!(5));
}
