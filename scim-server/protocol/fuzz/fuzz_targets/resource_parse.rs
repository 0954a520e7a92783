//! POST/PUT validation and stored-resource loading: never panics; what validates serializes
//! and reloads identically; projection of it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_protocol::schema::ResourceKind;
use scim_protocol::{ListQuery, Resource, validate_create, validate_replace};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let kind = if sel & 1 == 0 {
        ResourceKind::User
    } else {
        ResourceKind::Group
    };
    if let Ok(r) = validate_create(kind, &body) {
        let back = Resource::from_stored(kind, &r.to_json()).expect("reload");
        assert_eq!(back.attributes(), r.attributes());
        back.validate().expect("valid");
        let _ = validate_replace(&r, &body).expect("a valid create body is a valid replace body");
        let q = ListQuery::from_query_pairs([
            ("attributes", "userName,emails.value,name"),
            ("excludedAttributes", "members"),
        ])
        .expect("query");
        let _ = q.project(&r);
    }
    let _ = Resource::from_stored(kind, &body);
});
