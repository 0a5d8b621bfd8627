//! `mirror` in the `rsftp` binary: a tree copied both ways, then only what changed;
//! `--delete`, `--dry-run`, `--exclude` and `--checksum`; the refusals; an interrupted
//! mirror run again; and the same against OpenSSH over the SFTP fallback.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::client_fallback::rsftp_on;
use crate::client_support::{
    ClientHome, big_file, expect_status, run, settled, wait_while_running,
};
use crate::sshd::Sshd;
use crate::util::{TestServer, TestUser, data};
use rsftp::auth::format_size;

/// Every file under `dir`, as relative path and bytes, in order.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn same_tree(a: &Path, b: &Path) {
    let (fa, fb) = (files(a), files(b));
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&fa),
        names(&fb),
        "{} and {}",
        a.display(),
        b.display()
    );
    assert!(
        fa == fb,
        "the contents of {} and {} differ",
        a.display(),
        b.display()
    );
}

/// A small tree: three files in two levels, and one `.tmp`.
fn make_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub/deep")).unwrap();
    std::fs::write(dir.join("a.txt"), b"alpha").unwrap();
    std::fs::write(dir.join("sub/b.bin"), data(200_000, 3)).unwrap();
    std::fs::write(dir.join("sub/deep/c.txt"), b"gamma").unwrap();
    std::fs::write(dir.join("scratch.tmp"), b"not wanted").unwrap();
}

/// The summary line a mirror ends with.
fn summary(out: &str) -> &str {
    out.lines()
        .find(|l| l.starts_with("mirror: ") || l.starts_with("mirror (dry run): "))
        .unwrap_or_else(|| panic!("no summary line in:\n{out}"))
}

async fn mirror(
    client: &ClientHome,
    server: &TestServer,
    args: &[&str],
    code: i32,
) -> (String, String) {
    let mut cmd = client.rsftp(server, "alice");
    cmd.arg("mirror").args(args);
    expect_status(&run(cmd).await, code)
}

fn set_mtime(path: &Path, when: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_mirror_copies_then_sends_only_what_changed() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let client = ClientHome::new();
    let remote = server.home("alice").join("tree");
    make_tree(&remote);
    let local = client.work.join("copy");

    let (out, _) = mirror(&client, &server, &["--exclude", "*.tmp", "tree", "copy"], 0).await;
    assert!(
        summary(&out).starts_with(
            "mirror: 3 files copied (195.3 KiB sent), 0 skipped, 0 deleted, 0 failed, in "
        ),
        "{out}"
    );
    assert!(summary(&out).ends_with(", all verified"), "{out}");
    assert_eq!(out.matches("verified md5 ").count(), 3, "{out}");
    std::fs::remove_file(remote.join("scratch.tmp")).unwrap();
    same_tree(&remote, &local);

    // Nothing changed: nothing is sent.
    let (out, _) = mirror(&client, &server, &["tree", "copy"], 0).await;
    assert!(
        summary(&out)
            .starts_with("mirror: 0 files copied (0 B sent), 3 skipped, 0 deleted, 0 failed"),
        "{out}"
    );

    // One file changes on the server, and the local copy has a file of its own.
    std::fs::write(remote.join("sub/b.bin"), data(100_000, 4)).unwrap();
    std::fs::write(local.join("mine.txt"), b"mine").unwrap();
    let (out, _) = mirror(&client, &server, &["tree", "copy"], 0).await;
    assert!(
        summary(&out).starts_with("mirror: 1 files copied (97.7 KiB sent), 2 skipped, 0 deleted"),
        "{out}"
    );
    assert!(local.join("mine.txt").exists(), "kept without --delete");

    // --dry-run with --delete says what it would do, and deletes nothing.
    std::fs::write(remote.join("new.txt"), b"new").unwrap();
    let (out, _) = mirror(
        &client,
        &server,
        &["--delete", "--dry-run", "tree", "copy"],
        0,
    )
    .await;
    assert!(out.contains("would delete copy/mine.txt"), "{out}");
    assert!(
        out.contains("would copy /tree/new.txt -> copy/new.txt (3 B)"),
        "{out}"
    );
    assert!(
        summary(&out).starts_with("mirror (dry run): would copy 1 files (3 B), skip 3, delete 1; 0 failed; nothing was changed"),
        "{out}"
    );
    assert!(local.join("mine.txt").exists() && !local.join("new.txt").exists());

    // --delete for real.
    let (out, _) = mirror(&client, &server, &["--delete", "tree", "copy"], 0).await;
    assert!(
        summary(&out)
            .starts_with("mirror: 1 files copied (3 B sent), 3 skipped, 1 deleted, 0 failed"),
        "{out}"
    );
    same_tree(&remote, &local);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_mirror_and_checksum_comparison() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let client = ClientHome::new();
    let local = client.work.join("tree");
    make_tree(&local);
    let remote = server.home("alice").join("up");

    let (out, _) = mirror(&client, &server, &["-R", "-j", "2", "tree", "/up"], 0).await;
    assert!(summary(&out).starts_with("mirror: 4 files copied"), "{out}");
    assert_eq!(out.matches("verified md5 ").count(), 4, "{out}");
    same_tree(&local, &remote);
    let (out, _) = mirror(&client, &server, &["-R", "tree", "/up"], 0).await;
    assert!(
        summary(&out).starts_with("mirror: 0 files copied (0 B sent), 4 skipped"),
        "{out}"
    );

    // Same size, an old time: only --checksum sees the change.
    let a = local.join("a.txt");
    std::fs::write(&a, b"ALPHA").unwrap();
    set_mtime(&a, SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
    let (out, _) = mirror(&client, &server, &["-R", "tree", "/up"], 0).await;
    assert!(summary(&out).contains("0 files copied"), "{out}");
    let (out, _) = mirror(&client, &server, &["-R", "--checksum", "tree", "/up"], 0).await;
    assert!(
        summary(&out).starts_with("mirror: 1 files copied (5 B sent), 3 skipped"),
        "{out}"
    );
    same_tree(&local, &remote);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_refuses_missing_folders_the_quota_and_conflicting_names() {
    let server = TestServer::start(&[TestUser::new("alice", "1MiB")]).await;
    let client = ClientHome::new();
    // A missing source, either side: nothing is made.
    let (_, err) = mirror(&client, &server, &["nope", "copy"], 1).await;
    assert_eq!(
        err.trim_end(),
        "rsftp: mirror: /nope: no such remote folder"
    );
    assert!(!client.work.join("copy").exists());
    let (_, err) = mirror(&client, &server, &["-R", "nope", "/up"], 1).await;
    assert!(err.contains("nope: no such local folder"), "{err}");
    assert!(!server.home("alice").join("up").exists());
    let (_, err) = mirror(&client, &server, &["--frob", "x"], 1).await;
    assert!(err.contains("unknown option --frob"), "{err}");

    // The quota: what fits goes, what does not fails, and the command fails.
    let local = client.work.join("tree");
    std::fs::create_dir(&local).unwrap();
    std::fs::write(local.join("a-small.txt"), b"small").unwrap();
    std::fs::write(local.join("b-big.bin"), data(2 << 20, 5)).unwrap();
    let (out, err) = mirror(&client, &server, &["-R", "tree", "/up"], 1).await;
    assert!(
        summary(&out)
            .starts_with("mirror: 1 files copied (5 B sent), 0 skipped, 0 deleted, 1 failed"),
        "{out}"
    );
    assert!(
        err.contains("b-big.bin: quota exceeded: need 2 MiB"),
        "{err}"
    );
    assert!(server.home("alice").join("up/a-small.txt").exists());
    assert!(!server.home("alice").join("up/b-big.bin").exists());
    // In a script, the failed mirror stops it.
    std::fs::write(client.work.join("script"), "mirror -R tree /up\npwd\n").unwrap();
    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["-b", "script"]);
    let (out, err) = expect_status(&run(cmd).await, 1);
    assert!(
        err.contains("script:1: mirror: 1 of 2 entries failed"),
        "{err}"
    );
    assert!(!out.lines().any(|l| l == "/"), "the script stopped: {out}");

    // A remote file where the local copy has a folder, and the other way round.
    let remote = server.home("alice").join("tree");
    std::fs::create_dir_all(remote.join("dir")).unwrap();
    std::fs::write(remote.join("dir/inner.txt"), b"i").unwrap();
    std::fs::write(remote.join("x"), b"file").unwrap();
    let copy = client.work.join("copy");
    std::fs::create_dir_all(copy.join("x")).unwrap();
    std::fs::write(copy.join("x/keep"), b"k").unwrap();
    std::fs::write(copy.join("dir"), b"a file").unwrap();
    let (out, err) = mirror(&client, &server, &["--delete", "tree", "copy"], 1).await;
    assert!(
        err.contains("mirror: copy/x: a folder is where a file should be"),
        "{err}"
    );
    assert!(
        err.contains("mirror: copy/dir: a file is where a folder should be"),
        "{err}"
    );
    assert!(summary(&out).contains("2 failed"), "{out}");
    assert_eq!(std::fs::read(copy.join("dir")).unwrap(), b"a file");
    assert_eq!(
        std::fs::read(copy.join("x/keep")).unwrap(),
        b"k",
        "not deleted under a conflict"
    );
    assert!(copy.join("x").is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_mirror_run_again_sends_only_the_rest() {
    let server = TestServer::start(&[TestUser::new("alice", "2GiB")]).await;
    let client = ClientHome::new();
    let local = client.work.join("tree");
    std::fs::create_dir(&local).unwrap();
    for i in 0..20 {
        std::fs::write(local.join(format!("f{i:02}.txt")), data(4096, i)).unwrap();
    }
    // Last in name order, so the small files are done when it is cut off.
    big_file(&local.join("z-big.bin"), 192, 9);
    let staging = server.staging("alice");
    let staged = || -> u64 {
        std::fs::read_dir(&staging)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };
    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["mirror", "-R", "tree", "/up"]);
    let mut child = cmd.spawn().unwrap();
    let caught =
        wait_while_running(&mut child, Duration::from_secs(60), || staged() >= 8 << 20).await;
    child.kill().await.unwrap();
    assert!(caught, "the mirror was still running when cut off");
    let held = settled(staged).await;
    let remote = server.home("alice").join("up");
    let done = std::fs::read_dir(&remote).unwrap().count();
    assert!(!remote.join("z-big.bin").exists());

    let (out, _) = mirror(&client, &server, &["-R", "tree", "/up"], 0).await;
    assert!(out.contains("z-big.bin: resuming at "), "{out}");
    let line = summary(&out);
    assert!(
        line.starts_with(&format!("mirror: {} files copied", 21 - done)),
        "only the files not there yet: {line} ({done} were there)"
    );
    assert!(line.contains(&format!("{done} skipped")), "{line}");
    let big = 192u64 << 20;
    assert!(held > 0 && held < big);
    assert!(
        line.contains(&format!("({} sent)", format_size(big - held))),
        "the {held} bytes already there were not sent again: {line}"
    );
    same_tree(&local, &remote);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_over_the_sftp_fallback_to_openssh() {
    let sshd = Sshd::start();
    let client = ClientHome::new();
    let local = client.work.join("tree");
    make_tree(&local);
    let run_mirror = |args: &'static [&'static str]| {
        let mut cmd = rsftp_on(&sshd, &client);
        cmd.arg("mirror").args(args);
        cmd
    };
    let (out, _) = expect_status(&run(run_mirror(&["-R", "tree", "up"])).await, 0);
    assert!(summary(&out).starts_with("mirror: 4 files copied"), "{out}");
    assert!(summary(&out).ends_with(", all verified"), "{out}");
    same_tree(&local, &sshd.root().join("up"));
    // The times were set over SFTP: nothing to send the second time.
    let (out, _) = expect_status(&run(run_mirror(&["-R", "tree", "up"])).await, 0);
    assert!(
        summary(&out).starts_with("mirror: 0 files copied (0 B sent), 4 skipped"),
        "{out}"
    );
    let (out, _) = expect_status(&run(run_mirror(&["up", "back"])).await, 0);
    assert!(summary(&out).starts_with("mirror: 4 files copied"), "{out}");
    same_tree(&local, &client.work.join("back"));
    let (_, err) = expect_status(&run(run_mirror(&["nope", "x"])).await, 1);
    assert!(err.contains("nope: no such remote folder"), "{err}");
}
