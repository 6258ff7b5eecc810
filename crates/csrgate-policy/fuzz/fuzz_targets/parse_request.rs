//! Arbitrary bytes as `spec.request` (PEM): never a panic, never a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = csrgate_policy::parse_request(data);
});
