//! Inputs found by the fuzzers, kept as tests so they stay fixed.

use scim_protocol::schema::ResourceKind;
use scim_protocol::{PatchRequest, Resource, validate_create};
use serde_json::{Value, json};

fn reload_same(r: &Resource) {
    let back = Resource::from_stored(r.kind(), &r.to_json()).unwrap();
    assert_eq!(back.attributes(), r.attributes());
    back.validate().unwrap();
}

/// patch_apply: an unknown extension URN whose last segment is not `User`/`Group` was split
/// differently when the stored form was reloaded, so the patched resource did not validate.
#[test]
fn unknown_urn_without_resource_suffix_patch() {
    let base = validate_create(ResourceKind::User, &json!({"userName": "bjensen"})).unwrap();
    let req = PatchRequest::parse(&json!({"Operations": [{"op": "replace", "value": {
        "name.givenName": "x",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:sarUem:nager": "m2",
        "emails[type eq \"work\"].value": "n@x"}}]}))
    .unwrap();
    let out = req.apply(&base).unwrap();
    out.resource.validate().unwrap();
    reload_same(&out.resource);
}

/// resource_parse: same root cause on POST (`urn:...:enterprise:1.0:hemas`).
#[test]
fn unknown_urn_with_dotted_segment_create() {
    let body: Value = serde_json::from_str(r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"a","active":"True","emails":[{"value":"a@b","type":"work","primary":true}],"urn:ietf:params:scim:schemas:extension:enterprise:1.0:hemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"meta":{}}"#).unwrap();
    let r = validate_create(ResourceKind::User, &body).unwrap();
    reload_same(&r);
}

/// resource_parse: a key starting with `urn` followed by a multi-byte character panicked on a
/// byte slice that was not a char boundary.
#[test]
fn multibyte_after_urn_prefix() {
    for key in ["urnƔetf:params:scim", "urnŖ", "urn", "ur", "ŖŖ:x"] {
        let r = validate_create(
            ResourceKind::User,
            &json!({"userName": "a", key: {"k": "v"}}),
        )
        .unwrap();
        reload_same(&r);
        let req = PatchRequest::parse(&json!({"Operations": [{"op": "add", "value": {key: "v"}}]}))
            .unwrap();
        let _ = req.apply(&r);
    }
}

/// resource_parse: malformed URN keys (empty segments, odd characters, too few segments) were
/// stored under keys that read back differently. They are now ignored on input.
#[test]
fn malformed_urn_keys_are_ignored_and_round_trip() {
    let body: Value = serde_json::from_str(
        r#"{"userName":"a",
        "urn:ietf:params:scie:schemas:extefsion:enrise::.00Usep":{"manager":[{"value":"m"}]},
        "urn:ietf:x>User":{"manager":[{"value":"m"}]},
        "urn:ietfsarp:eserName":"a",
        "urn:ise:1.0]sUer":{"m":1},
        "urn:iet:2U.ser":{"m":1},
        "urn:ietf:paramUesr":{"m":1},
        "urn:ietf:params:scim:schemas:extension:enterprise:1.0:User":{"manager":[{"value":"m"}]},
        "urn:ietf:params:scim:schemas:extension:C:2.0:User:k":"v"}"#,
    )
    .unwrap();
    let r = validate_create(ResourceKind::User, &body).unwrap();
    reload_same(&r);
    let keys: Vec<&String> = r.attributes().keys().collect();
    assert_eq!(
        keys,
        vec![
            "urn:ietf:params:scim:schemas:extension:C:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:1.0:User",
            "userName"
        ]
    );
    let bad = PatchRequest::parse(
        &json!({"Operations": [{"op": "add", "path": "urn:x:y", "value": "v"}]}),
    )
    .unwrap()
    .apply(&r)
    .unwrap_err();
    assert_eq!(bad.scim_type(), Some("invalidPath"));
}
