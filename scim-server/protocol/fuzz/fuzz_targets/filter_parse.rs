//! Filter parser: never panics; whatever parses prints to a string within the limits (at most
//! `MAX_PRINT_EXPANSION` times the input) that parses back to the same tree, and evaluates
//! without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_protocol::filter::{MAX_FILTER_LEN, MAX_PRINT_EXPANSION};
use scim_protocol::schema::ResourceKind;
use scim_protocol::{Filter, Resource};
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(f) = Filter::parse(s) {
        let printed = f.to_string();
        assert!(
            printed.len() <= MAX_FILTER_LEN,
            "{} bytes printed",
            printed.len()
        );
        assert!(
            printed.len() <= MAX_PRINT_EXPANSION * s.len(),
            "{printed} from {s:?}"
        );
        let again = Filter::parse(&printed).expect("printed filter must parse");
        assert_eq!(again, f, "round trip of {printed}");
        let _ = f.index_hints();
        let _ = f.validate(ResourceKind::User);
        let user = Resource::from_stored(
            ResourceKind::User,
            &json!({"userName": "bjensen", "active": true, "title": "x",
                    "emails": [{"value": "a@b.c", "type": "work", "primary": true}],
                    "meta": {"lastModified": "2011-05-13T04:42:34Z"},
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": "m"}},
                    "urn:ietf:params:scim:schemas:extension:Custom:2.0:User": {"k": [1, "a", {"value": true}]}}),
        )
        .expect("fixture is valid");
        let _ = f.matches(&user);
    }
});
