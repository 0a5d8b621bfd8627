//! lftp (over OpenSSH's `ssh`, as lftp's sftp:// always runs) against rsftpd: `mirror -R`
//! up and `mirror` back, `mirror --continue` after lftp is killed mid-file, and the
//! failures it must report.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::real_clients::{
    TREE, assert_failure, assert_same_tree, assert_success, make_tree, run_client,
};
use crate::sshd::text;
use crate::util::{TestServer, TestUser, data, key_path, md5_hex};

/// The lftp script prologue that reaches `user` on `server` with their key only.
fn open(server: &TestServer, user: &str) -> String {
    open_through(server, user, "ssh")
}

/// As [`open`], with `ssh` run as `program` (a wrapper that takes ssh's arguments).
fn open_through(server: &TestServer, user: &str, program: &str) -> String {
    let ssh = format!(
        "{program} -a -x -F /dev/null -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes \
         -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none -o ConnectTimeout=10 \
         -i {}",
        server.known_hosts.display(),
        key_path(server.root(), user).display()
    );
    // cmd:fail-exit: the first failed command ends the script with a failure.
    format!(
        "set cmd:fail-exit yes; set net:max-retries 1; set net:reconnect-interval-base 1; \
         set sftp:connect-program \"{ssh}\"; open -u {user}, -p {} sftp://127.0.0.1; ",
        server.addr.port()
    )
}

/// Runs `lftp -c` with `script` in `dir`, with a HOME of its own.
async fn lftp(dir: &Path, script: &str) -> Output {
    let home = dir.join(".lftp-home");
    std::fs::create_dir_all(&home).unwrap();
    run_client(
        "lftp",
        &["-c".into(), script.into()],
        &[("HOME", home.display().to_string())],
        dir,
        Duration::from_secs(300),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_up_and_back_down() {
    let server = TestServer::start(&[TestUser::new("alice", "200MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("source");
    make_tree(&source, TREE);
    let up = lftp(
        local.path(),
        &format!(
            "{}mirror -R {} /backup",
            open(&server, "alice"),
            source.display()
        ),
    )
    .await;
    assert_success(&up, "lftp mirror -R");
    assert_same_tree(&source, &server.home("alice").join("backup"));

    let back = local.path().join("back");
    let down = lftp(
        local.path(),
        &format!(
            "{}mirror /backup {}",
            open(&server, "alice"),
            back.display()
        ),
    )
    .await;
    assert_success(&down, "lftp mirror");
    assert_same_tree(&source, &back);
}

/// Waits (60 s at most) until `path` holds at least `bytes`; returns what it holds.
async fn grows_to(path: &Path, bytes: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while Instant::now() < deadline {
        seen = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if seen >= bytes {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen
}

/// The size of `path` once it has stopped changing for half a second (bounded): the
/// server may still write what was in flight when its client was killed.
async fn settled_size(path: &Path) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if now == last {
            break;
        }
        last = now;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_continue_after_lftp_is_killed_mid_file() {
    let server = TestServer::start(&[TestUser::new("alice", "200MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("source");
    std::fs::create_dir(&source).unwrap();
    let content = data(20 * 1024 * 1024, 77);
    std::fs::write(source.join("big.bin"), &content).unwrap();
    std::fs::write(source.join("small.txt"), b"small").unwrap();
    // lftp continues only onto a target newer than its source: the partial it leaves
    // is written now, so the source must be older, as a file being backed up is.
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(source.join("big.bin"))
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();

    // Slowed down so that it is surely still sending when it is killed.
    let script = format!(
        "{}set net:limit-rate 1M; mirror -R {} /up",
        open(&server, "alice"),
        source.display()
    );
    let home = local.path().join(".lftp-home");
    std::fs::create_dir_all(&home).unwrap();
    let mut child = std::process::Command::new("lftp")
        .args(["-c", &script])
        .env("HOME", &home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group, so that its ssh dies with it.
        .process_group(0)
        .spawn()
        .expect("run lftp");
    let partial = server.home("alice").join("up/big.bin");
    let seen = grows_to(&partial, 1024 * 1024).await;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status()
        .expect("kill");
    assert!(killed.success());
    let _ = child.wait();
    assert!(seen >= 1024 * 1024, "no partial upload after 60 s");
    // SFTP writes in place: the partial is the target itself, cut short.
    let left = settled_size(&partial).await;
    assert!(
        left < content.len() as u64,
        "killed after the whole file ({left} bytes)"
    );
    assert!(std::fs::read(&partial).unwrap() == content[..left as usize]);

    // The second run goes through a wrapper that counts what lftp sends to the server:
    // the SFTP stream carries every byte written, so a resume sends less than the file.
    let sent = local.path().join("sent");
    let wrapper = local.path().join("counting-ssh");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\ntee -a {} | ssh \"$@\"\n", sent.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let resume = lftp(
        local.path(),
        &format!(
            "{}mirror -R --continue -v {} /up",
            open_through(&server, "alice", &wrapper.display().to_string()),
            source.display()
        ),
    )
    .await;
    assert_success(&resume, "lftp mirror -R --continue");
    let said = text(&resume.stdout);
    assert!(
        !said.contains("Removing old file"),
        "lftp started over: {said}"
    );
    let final_file = std::fs::read(&partial).unwrap();
    assert_eq!(md5_hex(&final_file), md5_hex(&content), "the same MD5");
    assert_same_tree(&source, &server.home("alice").join("up"));
    let sent = std::fs::metadata(&sent).unwrap().len();
    let rest = content.len() as u64 - left;
    assert!(
        sent >= rest && sent < content.len() as u64,
        "the resume sent {sent} bytes: the rest is {rest}, the file {}",
        content.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_quota_missing_files_and_paths_outside_the_home_fail() {
    let server = TestServer::start(&[TestUser::new("alice", "1MiB")]).await;
    let secret = server.root().join("secret.txt");
    std::fs::write(&secret, b"server secret").unwrap();
    std::os::unix::fs::symlink(&secret, server.home("alice").join("escape")).unwrap();
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("big.bin"), data(3 * 1024 * 1024, 5)).unwrap();

    let put = lftp(
        local.path(),
        &format!("{}put big.bin", open(&server, "alice")),
    )
    .await;
    assert_failure(&put, "lftp put over the quota");
    let said = text(&put.stderr);
    assert!(said.contains("quota exceeded"), "{said}");
    // SFTP writes in place: what fitted stays until it is deleted, which gives the
    // space back for what fits.
    std::fs::write(local.path().join("small.txt"), b"fits").unwrap();
    let put = lftp(
        local.path(),
        &format!("{}rm big.bin; put small.txt", open(&server, "alice")),
    )
    .await;
    assert_success(&put, "lftp put of a file that fits");
    assert_eq!(
        std::fs::read(server.home("alice").join("small.txt")).unwrap(),
        b"fits"
    );
    for (remote, says) in [
        ("nosuch.txt", "no such file"),
        ("../../secret.txt", "no such file"),
        ("/../secret.txt", "no such file"),
        ("escape", "leads outside the home"),
    ] {
        let get = lftp(
            local.path(),
            &format!("{}get {remote} -o got", open(&server, "alice")),
        )
        .await;
        assert_failure(&get, &format!("lftp get {remote}"));
        let said = text(&get.stderr);
        assert!(said.contains(says), "{remote}: {said}");
        let got = std::fs::read(local.path().join("got")).unwrap_or_default();
        assert!(got.is_empty(), "{remote} gave {} bytes", got.len());
    }
}
