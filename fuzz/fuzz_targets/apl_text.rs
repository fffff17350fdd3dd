//! Fuzz target: APL record text (RFC 3123 presentation format), as a DNS answer or a config
//! file gives it. Parsing never panics; what parses prints back to text that parses to
//! the same record, and builds service prefixes and a slice table or a clear error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_ssa::{Apl, ServicePrefixes, SliceMap};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(apl) = Apl::parse(text) else {
        return;
    };
    let again = Apl::parse(&apl.to_string()).expect("printed APL parses");
    assert_eq!(again, apl);
    if let Ok(s) = ServicePrefixes::new(&apl) {
        let _ = SliceMap::new(s.prefixes(), 8, 4);
    }
});
