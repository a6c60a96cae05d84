#![no_main]
//! The server side of mysql's pre-TLS dialog against arbitrary peer bytes.
use libfuzzer_sys::fuzz_target;
use starttls::Protocol;

fuzz_target!(|data: &[u8]| {
    starttls::fuzzing::server_dialog(Protocol::Mysql, data);
});
