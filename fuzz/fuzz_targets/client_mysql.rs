#![no_main]
//! The client side of mysql's pre-TLS dialog against arbitrary peer bytes.
use libfuzzer_sys::fuzz_target;
use starttls::Protocol;

fuzz_target!(|data: &[u8]| {
    starttls::fuzzing::client_dialog(Protocol::Mysql, data);
});
