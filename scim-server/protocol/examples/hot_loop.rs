//! Hot paths of an Entra provisioning cycle: the lookup filter, a user PATCH, serializing a user.

use scim_protocol::schema::ResourceKind;
use scim_protocol::{Filter, Meta, PatchRequest, Resource, validate_create};
use serde_json::json;
use std::hint::black_box;

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

fn main() {
    let which = std::env::args().nth(1).unwrap();
    let n: u32 = std::env::args().nth(2).unwrap().parse().unwrap();
    let user = entra_user();
    let filter = r#"userName eq "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1@contoso.com""#;
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
    for _ in 0..n {
        match which.as_str() {
            "filter" => {
                black_box(Filter::parse(black_box(filter)).unwrap());
            }
            "patch" => {
                black_box(
                    PatchRequest::parse(black_box(&body))
                        .unwrap()
                        .apply(black_box(&user))
                        .unwrap(),
                );
            }
            "ser" => {
                black_box(black_box(&user).to_json_string());
            }
            _ => {}
        }
    }
}
