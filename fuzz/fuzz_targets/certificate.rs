#![no_main]
//! The reader of a peer certificate's facts (validity, names, hashes).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    starttls::fuzzing::certificate(data);
});
