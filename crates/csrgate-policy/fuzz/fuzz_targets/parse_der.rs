//! Arbitrary bytes as the DER of a certificate request: never a panic, never a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = csrgate_policy::request::parse_der(data);
});
