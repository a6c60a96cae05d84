#![no_main]
//! A resolver's answer to a TLSA query, as the DANE stub resolver reads it.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    starttls::fuzzing::dns_answer(data);
});
