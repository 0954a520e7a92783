//! PatchOp parsing and application: never panics; a successful PATCH always yields a resource
//! that validates and reloads identically; users never report membership changes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_protocol::schema::ResourceKind;
use scim_protocol::{PatchRequest, Resource};
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    // First byte picks the resource; the rest is the PATCH body.
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let base = if sel & 1 == 0 {
        Resource::from_stored(
            ResourceKind::User,
            &json!({"id": "1", "userName": "bjensen", "active": true, "name": {"givenName": "B"},
                    "emails": [{"value": "a@b.c", "type": "work", "primary": true}, {"value": "x@y.z", "type": "home"}],
                    "phoneNumbers": [{"value": "1", "type": "mobile"}],
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": "m"}, "department": "d"},
                    "urn:ietf:params:scim:schemas:extension:Custom:2.0:User": {"k": "v"}}),
        )
    } else {
        Resource::from_stored(
            ResourceKind::Group,
            &json!({"id": "2", "displayName": "g", "members": [{"value": "a"}, {"value": "b", "type": "Group"}]}),
        )
    }
    .expect("fixture is valid");
    let Ok(req) = PatchRequest::parse(&body) else {
        return;
    };
    if let Ok(out) = req.apply(&base) {
        out.resource
            .validate()
            .expect("patched resource must validate");
        let back = Resource::from_stored(base.kind(), &out.resource.to_json()).expect("reload");
        assert_eq!(back.attributes(), out.resource.attributes());
        if base.kind() == ResourceKind::User {
            assert!(out.membership.is_empty());
        }
    }
});
