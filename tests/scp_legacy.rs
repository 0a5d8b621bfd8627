//! The legacy SCP protocol over exec (`scp -t`, `scp -f`), as OpenSSH's `scp -O` and
//! PuTTY's `pscp -scp` speak it, and as a hand-driven channel can abuse it.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::scp::tree;
use crate::sshd::{assert_ok, text};
use crate::util::{TestServer, TestUser, data, run_with_input};

/// OpenSSH `scp -O` (the legacy protocol) as alice, with her key.
pub async fn scp(server: &TestServer, args: &[&str]) -> std::process::Output {
    let mut all = server.openssh_args("alice", "-P");
    all.push("-O".into());
    all.extend(args.iter().map(|a| (*a).to_owned()));
    run_with_input("scp", &all, b"").await
}

/// `ssh host <command>` with `input` on stdin: a hand-driven SCP channel.
pub async fn exec(server: &TestServer, command: &str, input: &[u8]) -> std::process::Output {
    let mut args = server.openssh_args("alice", "-p");
    args.extend(["127.0.0.1".into(), command.into()]);
    run_with_input("ssh", &args, input).await
}

fn s(path: &Path) -> String {
    path.display().to_string()
}

/// The files in alice's staging area for partial uploads.
fn partials(server: &TestServer) -> Vec<String> {
    match std::fs::read_dir(server.staging("alice")) {
        Ok(dir) => dir
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Waits (10 s at most) until alice has no partial upload left.
async fn no_partials_left(server: &TestServer) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if partials(server).is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_o_copies_files_with_spaces_both_ways() {
    let server = TestServer::start(&[TestUser::new("alice", "100MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let l = local.path();
    let big = data(5 * 1024 * 1024 + 7, 1);
    std::fs::write(l.join("big file.bin"), &big).unwrap();
    std::fs::write(l.join("empty"), b"").unwrap();
    std::fs::write(l.join("one"), b"1").unwrap();
    std::fs::create_dir(server.home("alice").join("in box")).unwrap();

    // Several files into a folder whose name has a space, quoted for the remote side
    // as legacy scp needs.
    let output = scp(
        &server,
        &[
            &s(&l.join("big file.bin")),
            &s(&l.join("empty")),
            &s(&l.join("one")),
            "127.0.0.1:\"in box\"",
        ],
    )
    .await;
    assert_ok(&output, "scp -O upload");
    let inbox = server.home("alice").join("in box");
    assert_eq!(std::fs::read(inbox.join("big file.bin")).unwrap(), big);
    assert_eq!(std::fs::read(inbox.join("empty")).unwrap(), b"");
    assert_eq!(std::fs::read(inbox.join("one")).unwrap(), b"1");
    // One file to a new name.
    let output = scp(&server, &[&s(&l.join("one")), "127.0.0.1:renamed"]).await;
    assert_ok(&output, "scp -O upload to a new name");
    assert_eq!(
        std::fs::read(server.home("alice").join("renamed")).unwrap(),
        b"1"
    );
    assert!(partials(&server).is_empty());

    let down = l.join("down");
    std::fs::create_dir(&down).unwrap();
    // Escaped for the remote side, so that the client's check of the name sent back
    // (a pattern match on the last component) matches too.
    let output = scp(&server, &["127.0.0.1:in\\ box/big\\ file.bin", &s(&down)]).await;
    assert_ok(&output, "scp -O download");
    assert_eq!(std::fs::read(down.join("big file.bin")).unwrap(), big);
    let output = scp(&server, &["127.0.0.1:/renamed", &s(&down.join("r"))]).await;
    assert_ok(&output, "scp -O download to a new name");
    assert_eq!(std::fs::read(down.join("r")).unwrap(), b"1");
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

fn set_mtime(path: &Path, secs: u64) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

/// Every entry under `root` with its modification time, to the second.
fn mtimes(root: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = tree(root)
        .into_iter()
        .map(|(name, _)| {
            let secs = mtime(&root.join(name.trim_end_matches('/')))
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            (name, secs)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_o_r_copies_trees_both_ways_and_p_keeps_mtimes() {
    let server = TestServer::start(&[TestUser::new("alice", "100MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("my tree");
    std::fs::create_dir_all(src.join("sub dir/deeper")).unwrap();
    std::fs::create_dir_all(src.join("empty dir")).unwrap();
    std::fs::write(src.join("top file.txt"), b"top\n").unwrap();
    std::fs::write(src.join("sub dir/one.bin"), data(300_000, 2)).unwrap();
    std::fs::write(src.join("sub dir/deeper/two words"), data(70_000, 3)).unwrap();
    std::fs::write(src.join("sub dir/deeper/zero"), b"").unwrap();
    for (i, name) in [
        "top file.txt",
        "sub dir/one.bin",
        "sub dir/deeper/two words",
        "sub dir/deeper/zero",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&src.join(name), 1_500_000_000 + i as u64 * 1000);
    }

    // Without -p: the tree arrives byte for byte.
    let output = scp(&server, &["-r", &s(&src), "127.0.0.1:plain"]).await;
    assert_ok(&output, "scp -O -r upload");
    assert_eq!(tree(&server.home("alice").join("plain")), tree(&src));
    let back = local.path().join("plain back");
    let output = scp(&server, &["-r", "127.0.0.1:plain", &s(&back)]).await;
    assert_ok(&output, "scp -O -r download");
    assert_eq!(tree(&back), tree(&src));

    // With -p, the modification times too (folders last, as their files change them).
    let now = SystemTime::now();
    for dir in ["sub dir/deeper", "sub dir", "empty dir", ""] {
        let file = std::fs::File::open(src.join(dir)).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_400_000_000))
            .unwrap();
    }
    let output = scp(&server, &["-r", "-p", &s(&src), "127.0.0.1:"]).await;
    assert_ok(&output, "scp -O -r -p upload");
    let uploaded = server.home("alice").join("my tree");
    assert_eq!(tree(&uploaded), tree(&src));
    assert_eq!(mtimes(&uploaded), mtimes(&src));
    assert!(mtime(&uploaded) < now);

    let back = local.path().join("p back");
    std::fs::create_dir(&back).unwrap();
    let output = scp(&server, &["-r", "-p", "127.0.0.1:my\\ tree", &s(&back)]).await;
    assert_ok(&output, "scp -O -r -p download");
    assert_eq!(tree(&back.join("my tree")), tree(&src));
    assert_eq!(mtimes(&back.join("my tree")), mtimes(&src));

    // A single file with -p, both ways.
    let one = local.path().join("single");
    std::fs::write(&one, b"single").unwrap();
    set_mtime(&one, 1_234_567_890);
    let output = scp(&server, &["-p", &s(&one), "127.0.0.1:single"]).await;
    assert_ok(&output, "scp -O -p upload");
    assert_eq!(mtime(&server.home("alice").join("single")), mtime(&one));
    let output = scp(&server, &["-p", "127.0.0.1:single", &s(&back.join("s"))]).await;
    assert_ok(&output, "scp -O -p download");
    assert_eq!(mtime(&back.join("s")), mtime(&one));

    // Without -r, a folder is refused, and the client says why.
    let output = scp(&server, &["127.0.0.1:plain", &s(&back.join("nope"))]).await;
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("not a regular file"),
        "{}",
        text(&output.stderr)
    );
    assert!(!back.join("nope").exists());
}

/// The host key's SHA256 fingerprint, as `pscp -hostkey` takes it.
fn host_fingerprint(server: &TestServer) -> String {
    let public =
        std::fs::read_to_string(server.root().join("keys/ssh_host_ed25519_key.pub")).unwrap();
    russh::keys::PublicKey::from_openssh(public.trim())
        .unwrap()
        .fingerprint(russh::keys::HashAlg::Sha256)
        .to_string()
}

async fn pscp(server: &TestServer, ppk: &Path, args: &[&str]) -> std::process::Output {
    let mut all: Vec<String> = [
        "-scp",
        "-batch",
        "-noagent",
        "-P",
        &server.addr.port().to_string(),
        "-i",
        &s(ppk),
        "-hostkey",
        &host_fingerprint(server),
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    all.extend(args.iter().map(|a| (*a).to_owned()));
    run_with_input("pscp", &all, b"").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pscp_scp_copies_files_and_trees_both_ways() {
    let server = TestServer::start(&[TestUser::new("alice", "100MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let l = local.path();
    let ppk = l.join("alice.ppk");
    let key = crate::util::key_path(server.root(), "alice");
    let converted = std::process::Command::new("puttygen")
        .args([&s(&key), "-O", "private", "-o", &s(&ppk)])
        .output()
        .unwrap();
    assert_ok(&converted, "puttygen");

    let big = data(3 * 1024 * 1024 + 5, 4);
    std::fs::write(l.join("big.bin"), &big).unwrap();
    let output = pscp(
        &server,
        &ppk,
        &[&s(&l.join("big.bin")), "alice@127.0.0.1:up.bin"],
    )
    .await;
    assert_ok(&output, "pscp -scp upload");
    assert_eq!(
        std::fs::read(server.home("alice").join("up.bin")).unwrap(),
        big
    );
    let output = pscp(
        &server,
        &ppk,
        &["alice@127.0.0.1:up.bin", &s(&l.join("down.bin"))],
    )
    .await;
    assert_ok(&output, "pscp -scp download");
    assert_eq!(std::fs::read(l.join("down.bin")).unwrap(), big);

    let src = l.join("tree");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("a/one"), data(10_000, 5)).unwrap();
    std::fs::write(src.join("a/b/two"), b"two").unwrap();
    let output = pscp(&server, &ppk, &["-r", &s(&src), "alice@127.0.0.1:t"]).await;
    assert_ok(&output, "pscp -scp -r upload");
    assert_eq!(tree(&server.home("alice").join("t")), tree(&src));
    let output = pscp(
        &server,
        &ppk,
        &["-r", "alice@127.0.0.1:t", &s(&l.join("t2"))],
    )
    .await;
    assert_ok(&output, "pscp -scp -r download");
    assert_eq!(tree(&l.join("t2")), tree(&src));

    // A refusal reaches pscp and its exit status.
    let output = pscp(
        &server,
        &ppk,
        &["alice@127.0.0.1:nosuch", &s(&l.join("nosuch"))],
    )
    .await;
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("no such file"),
        "{}",
        text(&output.stderr)
    );
    assert!(!l.join("nosuch").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_o_cannot_reach_outside_the_home() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let home = server.home("alice");
    // Outside the home, next to it: what a way out would reach.
    let outside = server.root().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"secret").unwrap();
    std::os::unix::fs::symlink(&outside, home.join("out")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", home.join("passwd")).unwrap();
    std::fs::create_dir(home.join("d")).unwrap();
    std::fs::write(home.join("d/ok"), b"ok").unwrap();
    std::os::unix::fs::symlink(&outside, home.join("d/out")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", home.join("d/passwd")).unwrap();
    let local = tempfile::tempdir().unwrap();
    let l = local.path();
    std::fs::write(l.join("f"), b"evil").unwrap();

    // Downloads.
    let outside_victim = s(&outside.join("victim"));
    for remote in [
        "../../etc/passwd",
        "/etc/passwd",
        "../../outside/victim",
        outside_victim.as_str(),
        "out/victim",
        "passwd",
    ] {
        let dest = l.join("stolen");
        let output = scp(&server, &[&format!("127.0.0.1:{remote}"), &s(&dest)]).await;
        assert!(!output.status.success(), "{remote}");
        assert!(!dest.exists(), "{remote}");
    }
    let output = scp(&server, &["-r", "127.0.0.1:d", &s(&l.join("d"))]).await;
    assert!(!output.status.success());
    assert_eq!(tree(&l.join("d")), [("ok".to_owned(), b"ok".to_vec())]);

    // Uploads.
    for remote in [
        "../../outside/victim",
        outside_victim.as_str(),
        "out",
        "out/victim",
        "out/new",
        "passwd",
    ] {
        let output = scp(&server, &[&s(&l.join("f")), &format!("127.0.0.1:{remote}")]).await;
        assert!(!output.status.success(), "{remote}");
        assert!(!text(&output.stderr).is_empty(), "{remote}");
    }
    // `..` stops at the home's root, as in a chroot: this names `/outside` in the home.
    let output = scp(&server, &[&s(&l.join("f")), "127.0.0.1:../../outside"]).await;
    assert_ok(&output, "scp -O upload to ../../outside");
    assert_eq!(std::fs::read(home.join("outside")).unwrap(), b"evil");
    let output = scp(&server, &["-r", &s(l), "127.0.0.1:out"]).await;
    assert!(!output.status.success());
    assert_eq!(tree(&outside), [("victim".to_owned(), b"secret".to_vec())]);
    assert_eq!(std::fs::read(home.join("d/ok")).unwrap(), b"ok");
    assert!(partials(&server).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_quota_is_refused_before_data_and_failures_leave_nothing() {
    let server = TestServer::start(&[TestUser::new("alice", "1MiB")]).await;
    let home = server.home("alice");
    let local = tempfile::tempdir().unwrap();
    let l = local.path();
    std::fs::write(l.join("too big"), data(2 * 1024 * 1024, 6)).unwrap();
    let output = scp(&server, &[&s(&l.join("too big")), "127.0.0.1:"]).await;
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("quota exceeded"),
        "{}",
        text(&output.stderr)
    );
    assert!(!home.join("too big").exists());
    assert!(partials(&server).is_empty());
    assert_eq!(server.used_on_disk("alice"), 0);

    // Cut off half way: nothing is published, and the partial and its space are gone.
    let mut input = b"C0644 800000 cut\n".to_vec();
    input.extend_from_slice(&data(400_000, 7));
    let output = exec(&server, "scp -t /", &input).await;
    assert!(!output.status.success());
    assert!(!home.join("cut").exists());
    assert!(no_partials_left(&server).await, "{:?}", partials(&server));
    // The sender gives up after the data: not published either.
    let mut input = b"C0644 5 gaveup\nhello\x01scp: gaveup: read error\n".to_vec();
    input.extend_from_slice(b"C0644 5 next\nworld\0");
    let output = exec(&server, "scp -t /", &input).await;
    assert_eq!(output.stdout, b"\0\0\0\0\0", "{}", text(&output.stderr));
    assert!(!home.join("gaveup").exists());
    assert_eq!(std::fs::read(home.join("next")).unwrap(), b"world");
    assert!(no_partials_left(&server).await);
    std::fs::remove_file(home.join("next")).unwrap();

    // All the space is back: a file of nearly the whole quota fits.
    let fits = data(1_000_000, 8);
    std::fs::write(l.join("fits"), &fits).unwrap();
    let output = scp(&server, &[&s(&l.join("fits")), "127.0.0.1:"]).await;
    assert_ok(&output, "upload after failures");
    assert_eq!(std::fs::read(home.join("fits")).unwrap(), fits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_driven_sink_follows_good_lines_and_refuses_bad_ones() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let home = server.home("alice");

    let output = exec(&server, "scp -t /", b"C0644 5 hand.txt\nhello\0").await;
    assert_eq!(output.stdout, b"\0\0\0", "{}", text(&output.stderr));
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(std::fs::read(home.join("hand.txt")).unwrap(), b"hello");

    let output = exec(
        &server,
        "scp -p -t /",
        b"T1234567890 0 1234567890 0\nC0640 5 timed\nhello\0",
    )
    .await;
    assert_eq!(output.stdout, b"\0\0\0\0", "{}", text(&output.stderr));
    let timed = home.join("timed");
    assert_eq!(
        mtime(&timed),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_234_567_890)
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&timed).unwrap().permissions().mode() & 0o777,
        0o640
    );

    let before = tree(&home);
    for bad in [
        &b"C0644 5 ../evil"[..],
        b"C0644 5 ../../../../tmp/evil",
        b"C0644 5 /etc/evil",
        b"C0644 5 a/b",
        b"C0644 5 .",
        b"C0644 5 ..",
        b"C0644 5 ",
        b"C0644 5",
        b"C644 5 x",
        b"C0944 5 x",
        b"C0644 -5 x",
        b"C0644 99999999999999999999 x",
        b"C0644 5x x",
        b"D0755 0 ..",
        b"D0755 0 dir",
        b"T1 0 2",
        b"E",
        b"X",
        b"",
    ] {
        let mut input = bad.to_vec();
        input.extend_from_slice(b"\nhello\0C0644 5 after\nhello\0");
        let output = exec(&server, "scp -t /", &input).await;
        let shown = String::from_utf8_lossy(bad);
        assert!(
            output.stdout.starts_with(b"\0\x02scp: protocol error"),
            "{shown}: {:?}",
            text(&output.stdout)
        );
        assert_eq!(output.stdout.last(), Some(&b'\n'), "{shown}");
        assert_eq!(output.status.code(), Some(1), "{shown}");
        assert_eq!(tree(&home), before, "{shown}");
    }
    // Also inside a folder, with -r.
    let output = exec(
        &server,
        "scp -r -t /",
        b"D0755 0 dir\nC0644 5 ../evil\nhello\0",
    )
    .await;
    assert!(
        output.stdout.starts_with(b"\0\0\x02scp: protocol error"),
        "{:?}",
        text(&output.stdout)
    );
    assert!(!home.join("evil").exists());
    // A line longer than any control line is refused without being read whole.
    let mut long = b"C0644 5 ".to_vec();
    long.extend(std::iter::repeat_n(b'n', 100_000));
    long.push(b'\n');
    let output = exec(&server, "scp -t /", &long).await;
    assert!(output.stdout.starts_with(b"\0\x02scp: protocol error"));
    // Refused commands get a plain error, not a transfer.
    let output = exec(&server, "scp -t a b", b"").await;
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(partials(&server).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_o_sends_the_whole_home_and_needs_a_folder_for_several_files() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let home = server.home("alice");
    std::fs::create_dir(home.join("d")).unwrap();
    std::fs::write(home.join("d/f"), b"f").unwrap();
    std::fs::write(home.join("top"), b"top").unwrap();
    let local = tempfile::tempdir().unwrap();
    let l = local.path();

    // Several files need a folder (the client sends -d): a new name is refused.
    std::fs::write(l.join("a"), b"a").unwrap();
    std::fs::write(l.join("b"), b"b").unwrap();
    let output = scp(
        &server,
        &["-v", &s(&l.join("a")), &s(&l.join("b")), "127.0.0.1:nodir"],
    )
    .await;
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("nodir: Not a directory"),
        "{}",
        text(&output.stderr)
    );
    assert!(!home.join("nodir").exists());

    // The home itself, by the empty path or `/`: everything in it, in a folder named
    // after the user.
    let output = scp(&server, &["-r", "127.0.0.1:", &s(&l.join("all"))]).await;
    assert_ok(&output, "scp -O -r of the home");
    assert_eq!(tree(&l.join("all")), tree(&home));
    let output = scp(&server, &["-r", "127.0.0.1:/", &s(l)]).await;
    assert_ok(&output, "scp -O -r of /");
    assert_eq!(tree(&l.join("alice")), tree(&home));
}

/// Starts OpenSSH `scp -O` as alice without waiting, so a test can act while it runs;
/// it is killed if dropped.
fn spawn_scp(server: &TestServer, args: &[&str]) -> tokio::process::Child {
    let mut all = server.openssh_args("alice", "-P");
    all.push("-O".into());
    all.extend(args.iter().map(|a| (*a).to_owned()));
    tokio::process::Command::new("scp")
        .args(&all)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run scp")
}

/// Waits (60 s at most) for a started scp to end.
async fn finished(child: tokio::process::Child) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("scp finished in time")
        .expect("scp ran")
}

/// Waits (20 s at most) until `path` holds at least one byte.
async fn has_bytes(path: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_o_download_stops_with_an_error_when_the_file_cannot_be_read_to_its_end() {
    let server = TestServer::start(&[TestUser::new("alice", "100MiB")]).await;
    let home = server.home("alice");
    let local = tempfile::tempdir().unwrap();
    let whole = data(24 * 1024 * 1024, 9);
    std::fs::write(home.join("shrinks.bin"), &whole).unwrap();
    let down = local.path().join("shrinks.bin");
    // Slowed to 2 MB/s, so the file is cut short on disk long before the server has
    // read it all: its reads past the new end fail.
    let child = spawn_scp(
        &server,
        &["-l", "16000", "127.0.0.1:shrinks.bin", &s(&down)],
    );
    assert!(has_bytes(&down).await, "the download started");
    std::fs::File::options()
        .write(true)
        .open(home.join("shrinks.bin"))
        .unwrap()
        .set_len(0)
        .unwrap();
    let output = finished(child).await;
    assert!(!output.status.success(), "scp failed");
    // What arrived is the file's own bytes, cut short: none made up.
    let got = std::fs::read(&down).unwrap();
    assert!(got.len() < whole.len(), "{} bytes", got.len());
    assert!(
        got == whole[..got.len()],
        "the bytes that arrived are the file's"
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("shrinks.bin: read error after"),
        "the reason is shown: {stderr}"
    );

    // A file that reads to its end still comes down whole.
    std::fs::write(home.join("whole.bin"), &whole[..1000]).unwrap();
    let output = scp(
        &server,
        &["127.0.0.1:whole.bin", &s(&local.path().join("w"))],
    )
    .await;
    assert_ok(&output, "scp -O download");
    assert_eq!(
        std::fs::read(local.path().join("w")).unwrap(),
        &whole[..1000]
    );
}

/// Waits (20 s at most) until alice's staging area holds a partial with bytes in it.
async fn a_partial_has_bytes(server: &TestServer) -> bool {
    let staging = server.staging("alice");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let held = std::fs::read_dir(&staging)
            .map(|dir| {
                dir.flatten()
                    .any(|e| e.metadata().is_ok_and(|m| m.len() > 0))
            })
            .unwrap_or(false);
        if held {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_o_upload_that_cannot_be_published_is_reported_and_leaves_nothing() {
    let server = TestServer::start(&[TestUser::new("alice", "100MiB")]).await;
    let home = server.home("alice");
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("late");
    std::fs::write(&file, data(8 * 1024 * 1024, 10)).unwrap();
    // Slowed to 2 MB/s; a folder takes the name while the bytes flow, so the final
    // rename fails.
    let child = spawn_scp(&server, &["-l", "16000", &s(&file), "127.0.0.1:late"]);
    assert!(a_partial_has_bytes(&server).await, "the upload started");
    std::fs::create_dir(home.join("late")).unwrap();
    let output = finished(child).await;
    assert!(!output.status.success(), "scp failed");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("scp: "), "the client is told: {stderr}");
    assert!(home.join("late").is_dir(), "the folder is left alone");
    assert!(no_partials_left(&server).await, "{:?}", partials(&server));
    let (_conn, mut c) = server.client("alice").await;
    assert_eq!(
        c.info().await.unwrap().used,
        0,
        "the partial's space is back"
    );

    // With the name free, the same upload lands.
    std::fs::remove_dir(home.join("late")).unwrap();
    let output = scp(&server, &[&s(&file), "127.0.0.1:late"]).await;
    assert_ok(&output, "scp -O upload");
    assert_eq!(
        std::fs::read(home.join("late")).unwrap(),
        std::fs::read(&file).unwrap()
    );
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_o_without_p_gives_new_files_the_sent_mode_masked_like_openssh() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let home = server.home("alice");
    let local = tempfile::tempdir().unwrap();
    let l = local.path();
    // Local mode, and what the new file gets: less write for group and others, and
    // never less than read and write for the server.
    let cases = [
        ("private", 0o600, 0o600),
        ("script", 0o755, 0o755),
        ("open", 0o777, 0o755),
        ("readonly", 0o444, 0o644),
        ("nothing", 0o000, 0o600),
    ];
    for (name, mode, _) in cases {
        std::fs::write(l.join(name), name).unwrap();
        chmod(&l.join(name), mode);
    }
    let mut args: Vec<String> = cases.iter().map(|(name, ..)| s(&l.join(name))).collect();
    args.push("127.0.0.1:".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = scp(&server, &args).await;
    assert_ok(&output, "scp -O upload");
    for (name, _, expected) in cases {
        assert_eq!(std::fs::read(home.join(name)).unwrap(), name.as_bytes());
        assert_eq!(mode_of(&home.join(name)), expected, "{name}");
    }

    // A file that is replaced keeps its own mode, as with OpenSSH's scp.
    chmod(&home.join("private"), 0o640);
    std::fs::write(l.join("private"), b"new").unwrap();
    chmod(&l.join("private"), 0o777);
    let output = scp(&server, &[&s(&l.join("private")), "127.0.0.1:"]).await;
    assert_ok(&output, "scp -O upload over a file");
    assert_eq!(std::fs::read(home.join("private")).unwrap(), b"new");
    assert_eq!(mode_of(&home.join("private")), 0o640);

    // With -p the sent mode is applied as it is.
    let output = scp(&server, &["-p", &s(&l.join("private")), "127.0.0.1:"]).await;
    assert_ok(&output, "scp -O -p upload");
    assert_eq!(mode_of(&home.join("private")), 0o777);
    assert!(partials(&server).is_empty());
}
