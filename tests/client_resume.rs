//! Interrupted transfers, resumed by the `rsftp` binary: the client is killed half-way
//! (SIGKILL, nothing tidied up), run again, and must say where it resumes, finish with
//! an identical file, and start over when the bytes it would resume from have changed.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::client_support::{
    ClientHome, RUN_LIMIT, big_file, expect_status, run, settled, size_of, wait_while_running,
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

/// Regression for "a put right after a killed one fails": the server holds the upload
/// until it notices the dead connection, and the client waits for it rather than fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_right_after_a_killed_one_waits_for_the_server_and_resumes() {
    let server = TestServer::start(&[TestUser::new("alice", "2GiB")]).await;
    let client = ClientHome::new();
    let local = client.work.join("big.bin");
    big_file(&local, MIB, 9);

    kill_midway(&client, &server, &["put", "big.bin"], || {
        staged_bytes(&server, "alice")
    })
    .await;
    // At once: no waiting here for the server to notice.
    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["put", "big.bin"]);
    let (out, err) = expect_status(&run(cmd).await, 0);
    assert!(!err.contains("already in progress"), "{err}");
    assert!(out.contains("verified md5 "), "{out}");
    same_file(&local, &server.home("alice").join("big.bin"));

    // How soon the server lets go is not in the test's hands; so, to be sure the wait
    // is what saves the put: start the second while the first still runs, and kill the
    // first once the second says it waits.
    let mut first = client.rsftp(&server, "alice");
    first.args(["put", "big.bin", "second.bin"]);
    let mut first = first.spawn().expect("rsftp starts");
    let caught = wait_while_running(&mut first, Duration::from_secs(60), || {
        staged_bytes(&server, "alice") >= KILL_AT
    })
    .await;
    assert!(caught, "the first put should still be running");
    let mut second = client.rsftp(&server, "alice");
    second.args(["put", "big.bin", "second.bin"]);
    let mut second = second.spawn().expect("rsftp starts");
    let mut lines = BufReader::new(second.stdout.take().expect("stdout")).lines();
    let mut out = String::new();
    let waiting = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            out.push_str(&line);
            out.push('\n');
            if line.contains("is already in progress; waiting up to 10s") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(waiting, Ok(true)),
        "the second put should wait for the first: {out}"
    );
    assert!(
        first.try_wait().expect("status").is_none(),
        "the first put was still running"
    );
    first.kill().await.expect("kill");
    let rest = tokio::time::timeout(RUN_LIMIT, async {
        let mut rest = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    })
    .await
    .expect("the second put ends");
    out.push_str(&rest);
    let status = second.wait().await.expect("status");
    assert!(status.success(), "{out}");
    assert!(resumed_at(&out).is_some_and(|at| at > 0), "resumed: {out}");
    assert!(out.contains("verified md5 "), "{out}");
    same_file(&local, &server.home("alice").join("second.bin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_held_by_a_live_upload_fails_after_the_wait() {
    let server = TestServer::start(&[TestUser::new("alice", "2GiB")]).await;
    let client = ClientHome::new();
    std::fs::write(client.work.join("held.bin"), b"the bytes of a held file").unwrap();

    // Another session starts a put of the same file and stays, sending nothing.
    let (_conn, mut holder) = server.client("alice").await;
    holder.begin_put("held.bin", 1 << 20, None).await.unwrap();

    let started = std::time::Instant::now();
    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["put", "held.bin"]);
    let (out, err) = expect_status(&run(cmd).await, 1);
    let waited = started.elapsed();
    assert_eq!(
        out.matches("waiting up to 10s").count(),
        1,
        "says once that it waits: {out}"
    );
    assert!(
        out.contains("held.bin: an upload of /held.bin is already in progress; waiting"),
        "{out}"
    );
    assert_eq!(
        err.trim_end(),
        "rsftp: put: an upload of /held.bin is already in progress"
    );
    assert!(waited >= Duration::from_secs(9), "gave up after {waited:?}");
    assert!(!server.home("alice").join("held.bin").exists());
    drop(holder);
}
