//! Arbitrary bytes into the option-area, MPTCP-option and packet parsers; whatever parses must
//! serialize back to the same bytes (see `emptcp_wire::fuzzing::check_roundtrip`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    emptcp_wire::fuzzing::check_roundtrip(data);
});
