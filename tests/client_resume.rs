//! Interrupted transfers, resumed by the `rsftp` binary: the client is killed half-way
//! (SIGKILL, nothing tidied up), run again, and must say where it resumes, finish with
//! an identical file, and start over when the bytes it would resume from have changed.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::client_support::{
    ClientHome, big_file, expect_status, run, settled, size_of, wait_while_running,
};
use crate::util::{TestServer, TestUser};

/// Big enough that a debug build takes seconds over it, so the kill lands mid-way.
const MIB: usize = 192;
/// Kill once this much has arrived.
const KILL_AT: u64 = 8 << 20;

/// The server's partial uploads of `user`: the files in their staging folder.
fn staged_bytes(server: &TestServer, user: &str) -> u64 {
    let staging = server.staging(user);
    std::fs::read_dir(staging)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Starts `rsftp` with `args`, waits until `grown` reports at least [`KILL_AT`] bytes,
/// and kills it.
async fn kill_midway(
    client: &ClientHome,
    server: &TestServer,
    args: &[&str],
    grown: impl Fn() -> u64,
) {
    let mut cmd = client.rsftp(server, "alice");
    cmd.args(args);
    let mut child = cmd.spawn().expect("rsftp starts");
    let caught =
        wait_while_running(&mut child, Duration::from_secs(60), || grown() >= KILL_AT).await;
    child.kill().await.expect("kill");
    assert!(
        caught,
        "the transfer should still be running after {KILL_AT} bytes (grown to {})",
        grown()
    );
}

/// The bytes-already-there count from a `resuming at ...` line.
fn resumed_at(out: &str) -> Option<u64> {
    let line = out.lines().find(|l| l.contains(": resuming at "))?;
    let count = line.split('(').nth(1)?.split(' ').next()?;
    count.parse().ok()
}

fn same_file(a: &Path, b: &Path) {
    let (a_bytes, b_bytes) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert!(
        a_bytes == b_bytes,
        "{} and {} differ",
        a.display(),
        b.display()
    );
}

/// Changes the first bytes of a file in place.
fn scribble(path: &PathBuf) {
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.write_all(b"not the same bytes").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_put_resumes_and_a_changed_file_starts_over() {
    let server = TestServer::start(&[TestUser::new("alice", "2GiB")]).await;
    let client = ClientHome::new();
    let local = client.work.join("big.bin");
    big_file(&local, MIB, 7);

    kill_midway(&client, &server, &["put", "big.bin"], || {
        staged_bytes(&server, "alice")
    })
    .await;
    // The server notices the connection is gone, writes what it got, and frees the file.
    let held = settled(|| staged_bytes(&server, "alice")).await;
    assert!(held >= KILL_AT && held < (MIB as u64) << 20, "held {held}");

    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["put", "big.bin"]);
    let (out, _) = expect_status(&run(cmd).await, 0);
    assert_eq!(resumed_at(&out), Some(held), "says where it resumes: {out}");
    assert!(out.contains(", resumed at "), "{out}");
    assert!(out.contains("verified md5 "), "{out}");
    same_file(&local, &server.home("alice").join("big.bin"));

    // Again, but the local file changes before the resume: the server's prefix no
    // longer matches, so the upload starts from 0 rather than splice old onto new.
    std::fs::remove_file(server.home("alice").join("big.bin")).unwrap();
    kill_midway(&client, &server, &["put", "big.bin"], || {
        staged_bytes(&server, "alice")
    })
    .await;
    settled(|| staged_bytes(&server, "alice")).await;
    scribble(&local);
    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["put", "big.bin"]);
    let (out, _) = expect_status(&run(cmd).await, 0);
    assert!(
        out.contains("differ from this file; starting over from 0"),
        "{out}"
    );
    assert!(!out.contains("resuming at"), "{out}");
    assert!(out.contains(", started over, verified md5 "), "{out}");
    same_file(&local, &server.home("alice").join("big.bin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_get_resumes_and_a_changed_part_starts_over() {
    let server = TestServer::start(&[TestUser::new("alice", "2GiB")]).await;
    let client = ClientHome::new();
    let remote = server.home("alice").join("big.bin");
    big_file(&remote, MIB, 8);
    let local = client.work.join("big.bin");
    let part = client.work.join("big.bin.part");

    kill_midway(&client, &server, &["get", "big.bin"], || size_of(&part)).await;
    let held = settled(|| size_of(&part)).await;
    assert!(
        !local.exists(),
        "nothing appears under the final name before it is verified"
    );

    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["get", "big.bin"]);
    let (out, _) = expect_status(&run(cmd).await, 0);
    assert_eq!(resumed_at(&out), Some(held), "says where it resumes: {out}");
    assert!(out.contains("verified md5 "), "{out}");
    assert!(!part.exists(), "the .part became the file");
    same_file(&remote, &local);

    // A .part whose bytes are not the start of the file is not continued.
    std::fs::remove_file(&local).unwrap();
    kill_midway(&client, &server, &["get", "big.bin"], || size_of(&part)).await;
    settled(|| size_of(&part)).await;
    scribble(&part);
    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["get", "big.bin"]);
    let (out, _) = expect_status(&run(cmd).await, 0);
    assert!(
        out.contains("differ from this file; starting over from 0"),
        "{out}"
    );
    assert!(!out.contains("resuming at"), "{out}");
    same_file(&remote, &local);
}
