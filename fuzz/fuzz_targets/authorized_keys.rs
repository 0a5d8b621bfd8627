//! The text of an `authorized_keys` file, and each of its lines alone.
#![no_main]

// Each target uses one of the checks.
#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::authorized_keys(data));
