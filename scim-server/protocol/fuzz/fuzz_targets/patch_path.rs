//! PATCH path parser (and plain attribute paths): never panics; paths print back identically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_protocol::filter::{parse_path, parse_plain_path};
use scim_protocol::patch::parse_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = parse_path(s) {
        let printed = p.to_string();
        assert_eq!(parse_path(&printed).expect("printed path must parse"), p);
    }
    let _ = parse_plain_path(s);
    let _ = parse_target(s);
});
