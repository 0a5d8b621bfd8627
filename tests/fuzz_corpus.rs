//! Every saved fuzz input, replayed through its parser as an ordinary test, so CI checks
//! the corpora and the crash inputs without building the fuzzer. The checks themselves
//! are the fuzz targets' own (`fuzz/checks.rs`). See docs/FUZZING.md.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

#[path = "../fuzz/checks.rs"]
mod checks;

/// The inputs of one target: its corpus and the crashes found and fixed.
fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for kind in ["corpus", "crashes"] {
        let Ok(dir) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        for entry in dir {
            let path = entry.unwrap().path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Feeds each input to `check`, and fails naming every input that panicked. A target
/// with fewer than `at_least` inputs fails too: a corpus that went missing would
/// otherwise pass having checked nothing.
fn replay(target: &str, at_least: usize, check: fn(&[u8])) {
    let files = inputs(target);
    assert!(
        files.len() >= at_least,
        "fuzz/corpus/{target}: {} inputs, expected at least {at_least}",
        files.len()
    );
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap();
            catch_unwind(AssertUnwindSafe(|| check(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target}: panicked on {failed:#?}");
}

#[test]
fn request_line_corpus() {
    replay("request_line", 30, checks::request_line);
}

#[test]
fn scp_control_corpus() {
    replay("scp_control", 15, checks::scp_control);
}

#[test]
fn sftp_packet_corpus() {
    replay("sftp_packet", 100, checks::sftp_packet);
}

#[test]
fn exec_command_corpus() {
    replay("exec_command", 20, checks::exec_command);
}

#[test]
fn users_toml_corpus() {
    replay("users_toml", 15, checks::users_toml);
}

#[test]
fn authorized_keys_corpus() {
    replay("authorized_keys", 10, checks::authorized_keys);
}

#[test]
fn proxy_header_corpus() {
    replay("proxy_header", 12, checks::proxy_header);
}

/// The replay is only worth something if a panicking check fails it.
#[test]
fn a_panicking_check_fails_the_replay() {
    let caught = catch_unwind(|| {
        replay("request_line", 1, |data| assert!(data.is_empty(), "boom"));
    });
    assert!(caught.is_err());
}

// scp_control: replay fuzz/corpus/scp_control and fuzz/crashes/scp_control here once
// the SCP control-line parser and its target exist.
