//! PATCH path parser (and plain attribute paths): never panics; paths print back identically,
//! within the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_protocol::filter::{MAX_FILTER_LEN, MAX_PRINT_EXPANSION, parse_path, parse_plain_path};
use scim_protocol::patch::parse_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = parse_path(s) {
        let printed = p.to_string();
        assert!(
            printed.len() <= MAX_FILTER_LEN,
            "{} bytes printed",
            printed.len()
        );
        assert!(
            printed.len() <= MAX_PRINT_EXPANSION * s.len(),
            "{printed} from {s:?}"
        );
        assert_eq!(parse_path(&printed).expect("printed path must parse"), p);
    }
    if let Ok(p) = parse_plain_path(s) {
        assert_eq!(
            parse_plain_path(&p.to_string()).expect("printed plain path must parse"),
            p
        );
    }
    let _ = parse_target(s);
});
