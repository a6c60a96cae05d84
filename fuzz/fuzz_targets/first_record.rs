#![no_main]
//! The check of the peer's first TLS record after a go-ahead.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    starttls::fuzzing::first_record(data);
});
