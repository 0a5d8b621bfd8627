//! What the tests of third-party clients (rclone, lftp, curl, PuTTY) share: running a
//! client binary bounded in time with its own environment, a tree of awkward files to
//! send, and a byte-for-byte comparison of two trees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::sshd::text;
use crate::util::data;

/// Runs `program` in `dir` with `envs` added, and nothing on stdin; kills it if it is
/// still running after `timeout`.
pub async fn run_client(
    program: &str,
    args: &[String],
    envs: &[(&str, String)],
    dir: &Path,
    timeout: Duration,
) -> Output {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in envs {
        command.env(key, value);
    }
    let child = command
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {program} (scripts/test installs it): {err}"));
    tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} still running after {timeout:?}"))
        .expect("wait for the client")
}

/// Panics with everything the client said unless it succeeded.
pub use crate::sshd::assert_ok as assert_success;

/// The server's host key fingerprint as `ssh-keygen -l -E <hash>` prints it
/// (`SHA256:…`, `MD5:…`), for clients that pin a key by its fingerprint.
pub fn host_key_fingerprint(server: &crate::util::TestServer, hash: &str) -> String {
    let public = server.root().join("keys/ssh_host_ed25519_key.pub");
    let output = std::process::Command::new("ssh-keygen")
        .args(["-l", "-E", hash, "-f"])
        .arg(&public)
        .output()
        .expect("ssh-keygen");
    let line = text(&output.stdout);
    line.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("fingerprint in {line:?}"))
        .to_owned()
}

/// Panics unless the client failed.
pub fn assert_failure(output: &Output, what: &str) {
    assert!(
        !output.status.success(),
        "{what} should have failed:\nstdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// The sizes around rclone's old 32 KiB limit, empty and one-byte files, one big file,
/// folders inside folders and names with spaces.
pub const TREE: &[(&str, usize)] = &[
    ("empty", 0),
    ("one byte", 1),
    ("edge/32767.bin", 32 * 1024 - 1),
    ("edge/32768.bin", 32 * 1024),
    ("edge/32769.bin", 32 * 1024 + 1),
    ("deep/er/and deeper/note.txt", 1234),
    ("big files/forty megabytes.bin", 40_000_000),
];

/// Writes `files` (path, length) under `root`, each with its own content.
pub fn make_tree(root: &Path, files: &[(&str, usize)]) {
    for (i, (name, len)) in files.iter().enumerate() {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, data(*len, 100 + i as u64)).expect("write");
    }
}

/// Every regular file under `root` by its relative path, and every folder.
pub fn tree_of(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let relative = path.strip_prefix(root).expect("under root").to_path_buf();
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                out.insert(relative, None);
                walk(root, &path, out);
            } else {
                out.insert(relative, Some(std::fs::read(&path).expect("read")));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Asserts that two trees hold the same folders and the same files, byte for byte.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let (want, got) = (tree_of(expected), tree_of(actual));
    let names = |t: &BTreeMap<PathBuf, Option<Vec<u8>>>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&got), names(&want), "the same names");
    for (name, content) in &want {
        assert!(
            got[name] == *content,
            "{} differs ({:?} bytes, want {:?})",
            name.display(),
            got[name].as_ref().map(Vec::len),
            content.as_ref().map(Vec::len)
        );
    }
}
