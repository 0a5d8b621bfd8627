//! One SCP control line (`C`, `D`, `E`, `T`, warnings), as the sink and the source read
//! them from the peer, newline removed.
#![no_main]

// Each target uses one of the checks.
#[allow(dead_code)]
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::scp_control(data));
