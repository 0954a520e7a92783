//! Hot paths of an Entra provisioning cycle: the lookup filter, a user PATCH, serializing a user.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use scim_protocol::schema::ResourceKind;
use scim_protocol::{Filter, Meta, PatchRequest, Resource, validate_create};
use serde_json::json;

fn entra_user() -> Resource {
    let mut r = validate_create(
        ResourceKind::User,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
            "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1@contoso.com",
            "active": true,
            "displayName": "Test User",
            "title": "Engineer",
            "emails": [{"primary": true, "type": "work", "value": "test.user@contoso.com"}],
            "phoneNumbers": [{"type": "work", "value": "+1 555 0100"}, {"type": "mobile", "value": "+1 555 0101"}],
            "name": {"formatted": "Test User", "familyName": "User", "givenName": "Test"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "100009", "department": "Human Resources US",
                "manager": {"value": "97c0abe1-14f7-417b-951c-bc8e2a17f200"}
            }
        }),
    )
    .unwrap();
    r.set_id("2819c223-7f76-453a-919d-413861904646");
    r.set_meta(&Meta {
        created: "2026-01-23T04:56:22Z".into(),
        last_modified: "2026-05-13T04:42:34Z".into(),
        version: "123456".into(),
        location: "https://scim.example.com/Users/2819c223-7f76-453a-919d-413861904646".into(),
    });
    r
}

fn benches(c: &mut Criterion) {
    let filter = r#"userName eq "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1@contoso.com""#;
    c.bench_function("filter_parse_entra_username_eq", |b| {
        b.iter(|| Filter::parse(black_box(filter)).unwrap())
    });
    let user = entra_user();
    let parsed = Filter::parse(filter).unwrap();
    c.bench_function("filter_match_entra_username_eq", |b| {
        b.iter(|| black_box(&parsed).matches(black_box(&user)))
    });

    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updated@contoso.com"},
            {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
             "value": [{"$ref": null, "value": "0cf6d2f1-6a46-4a7e-a0a1-111111111111"}]}
        ]
    });
    c.bench_function("patch_parse_and_apply_entra_user", |b| {
        b.iter(|| {
            PatchRequest::parse(black_box(&body))
                .unwrap()
                .apply(black_box(&user))
                .unwrap()
        })
    });

    c.bench_function("serialize_user_to_string", |b| {
        b.iter(|| black_box(&user).to_json_string())
    });
    c.bench_function("serialize_user_via_value", |b| {
        b.iter(|| serde_json::to_string(&black_box(&user).to_json()).unwrap())
    });
}

criterion_group!(hot, benches);
criterion_main!(hot);
