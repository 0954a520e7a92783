//! The server's request decoding, as far as the protocol crate carries it: request body bytes ->
//! JSON -> SCIM resource (User or Group, every Entra dialect) -> the form the server stores ->
//! read back -> response body. Never panics; every accepted body stores and reloads identically
//! (twice: the stored form is a fixed point), validates, and renders as JSON equal to its value.
//!
//! First byte: bit 0 picks User/Group; bits 1-2 pick POST (create), PUT (replace with membership
//! delta, as the server does), POST `.search` or PATCH. The rest is the body, exactly as the
//! server reads it (`serde_json::from_slice`). The server's own mapping to the ScimUser/ScimGroup
//! `.status` (scim-server/src/convert.rs, included from the binary crate) is exercised too: a
//! stored status reloads and is a fixed point. Not reached: the HTTP layer (body cap, JSON depth
//! pre-check, headers).
#![no_main]

use libfuzzer_sys::fuzz_target;

// The server crate is a binary; its status mapping is pure (protocol and CRD types only).
#[path = "../../../src/convert.rs"]
#[allow(dead_code)]
mod convert;
use scim_protocol::patch::replace_with_delta;
use scim_protocol::schema::ResourceKind;
use scim_protocol::{ListQuery, Meta, PatchRequest, Resource, validate_create};
use serde_json::{Value, json};

fn existing(kind: ResourceKind) -> Resource {
    let v = match kind {
        ResourceKind::User => json!({"id": "u1", "userName": "bjensen", "active": true,
            "name": {"givenName": "B", "familyName": "J"},
            "emails": [{"value": "b@x.org", "type": "work", "primary": true}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": "m"}},
            "urn:ietf:params:scim:schemas:extension:Custom:2.0:User": {"k": "v"}}),
        ResourceKind::Group => json!({"id": "g1", "displayName": "g",
            "members": [{"value": "u1"}, {"value": "g2", "type": "Group"}]}),
    };
    Resource::from_stored(kind, &v).expect("fixture is valid")
}

/// What the server does with an accepted resource before it stores it, then reading it back
/// and rendering the response.
fn store_and_reload(mut r: Resource, kind: ResourceKind) {
    assert_eq!(r.kind(), kind);
    r.validate().expect("an accepted resource validates");
    let _ = r.uniqueness_keys();
    let _ = r.members();
    drop(r.take_password());
    r.strip_server_attributes();
    r.set_id("2819c223-7f76-453a-919d-413861904646");
    let stored = r.to_json();
    stored_status_is_a_fixed_point(&r, kind);
    let back = Resource::from_stored(kind, &stored).expect("the stored form reloads");
    assert_eq!(back.attributes(), r.attributes(), "reload of {stored}");
    back.validate().expect("the reloaded resource validates");
    assert_eq!(back.to_json(), stored, "the stored form is a fixed point");
    let mut out = back;
    out.set_meta(&Meta {
        created: "2026-11-25T00:00:00Z".into(),
        last_modified: "2026-11-25T00:00:01Z".into(),
        version: "1".into(),
        location: "https://scim.example/scim/v2/Users/2819c223".into(),
    });
    let text = out.to_json_string();
    let parsed: Value = serde_json::from_str(&text).expect("the response body is JSON");
    assert_eq!(parsed, out.to_json(), "to_json_string and to_json agree");
}

/// The server writes `convert::status_json` into the object and reads it back with
/// `convert::resource_from_status` (the watch cache does). A refusal is a 400 for the client;
/// an accepted status must reload, keep its timestamps, and store again unchanged.
fn stored_status_is_a_fixed_point(r: &Resource, kind: ResourceKind) {
    let (created, modified) = ("2026-11-25T00:00:00Z", "2026-11-25T00:00:01Z");
    let Ok(status) = convert::status_json(r, created, modified) else {
        return;
    };
    let (back, c, m) =
        convert::resource_from_status(kind, &status).expect("a stored status reloads");
    assert_eq!((c.as_str(), m.as_str()), (created, modified));
    let again = convert::status_json(&back, &c, &m).expect("a reloaded status stores again");
    assert_eq!(again, status, "the stored status is a fixed point");
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let kind = if sel & 1 == 0 {
        ResourceKind::User
    } else {
        ResourceKind::Group
    };
    match (sel >> 1) & 3 {
        0 => {
            if let Ok(r) = validate_create(kind, &v) {
                store_and_reload(r, kind);
            }
        }
        1 => {
            let old = existing(kind);
            if let Ok(out) = replace_with_delta(&old, &v) {
                if kind == ResourceKind::User {
                    assert!(out.membership.is_empty());
                }
                store_and_reload(out.resource, kind);
            }
        }
        2 => {
            let _ = ListQuery::from_search_body(&v);
        }
        _ => {
            let old = existing(kind);
            if let Ok(req) = PatchRequest::parse(&v)
                && let Ok(out) = req.apply(&old)
            {
                if kind == ResourceKind::User {
                    assert!(out.membership.is_empty());
                }
                store_and_reload(out.resource, kind);
            }
        }
    }
});
