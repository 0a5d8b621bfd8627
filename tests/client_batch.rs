//! The `rsftp` binary in scripts: `-b FILE`, `-b -`, one-shot commands, exit statuses,
//! and errors that name their cause.

use crate::client_support::{ClientHome, expect_status, run, texts};
use crate::util::{PASSWORD, TestServer, TestUser, data, key_path, md5_hex, run_with_input};

async fn alice(quota: &'static str) -> TestServer {
    TestServer::start(&[TestUser::new("alice", quota)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_puts_lists_gets_removes_and_reports_quota() {
    let server = alice("10MiB").await;
    let client = ClientHome::new();
    let bytes = data(300_000, 1);
    std::fs::write(client.work.join("data.bin"), &bytes).unwrap();
    let md5 = md5_hex(&bytes);
    std::fs::write(
        client.work.join("script"),
        "# a comment, then a blank line\n\n\
         mkdir /in\n\
         put data.bin /in/\n\
         ls -l /in\n\
         get /in/data.bin copy.bin\n\
         info\n\
         rm /in/data.bin\n\
         ls /in\n\
         pwd\n",
    )
    .unwrap();
    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["-b", "script"]);
    let (out, err) = expect_status(&run(cmd).await, 0);
    assert!(err.is_empty(), "nothing on stderr: {err}");

    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        lines[0].starts_with("data.bin -> /in/data.bin: 293 KiB"),
        "{out}"
    );
    assert!(lines[0].ends_with(&format!("verified md5 {md5}")), "{out}");
    // ls -l: type, size, ISO-8601 time, name.
    let fields: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(fields[0], "f");
    assert_eq!(fields[1], "300000");
    assert!(
        fields[2].len() == 20 && fields[2].ends_with('Z') && fields[2].as_bytes()[10] == b'T',
        "{}",
        fields[2]
    );
    assert_eq!(fields[3], "data.bin");
    assert!(lines[2].starts_with("/in/data.bin -> copy.bin: 293 KiB"));
    assert!(lines[2].ends_with(&format!("verified md5 {md5}")));
    // 300,000 bytes count 74 blocks of 4 KiB, and the folder one more.
    assert_eq!(lines[3], "quota: used 300 KiB of 10 MiB (2%), free 9.7 MiB");
    assert_eq!(lines[4], "/", "the empty listing prints nothing");

    assert_eq!(std::fs::read(client.work.join("copy.bin")).unwrap(), bytes);
    assert!(!server.home("alice").join("in/data.bin").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_stops_at_the_first_failure_unless_told_not_to() {
    let server = alice("10MiB").await;
    let client = ClientHome::new();
    std::fs::write(client.work.join("fails"), "pwd\nget nope\npwd\n").unwrap();
    std::fs::write(
        client.work.join("shrugs"),
        "pwd\n-get nope\n- rm nope\npwd\n",
    )
    .unwrap();

    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["-b", "fails"]);
    let (out, err) = expect_status(&run(cmd).await, 1);
    assert_eq!(out, "/\n", "the script stopped after line 2");
    assert_eq!(
        err.trim_end(),
        "rsftp: fails:2: get: no such file or directory: /nope"
    );

    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["-b", "shrugs"]);
    let (out, err) = expect_status(&run(cmd).await, 0);
    assert_eq!(out, "/\n/\n");
    assert!(err.contains("shrugs:2: get: no such file"), "{err}");
    assert!(err.contains("shrugs:3: rm: no such file"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_on_standard_input() {
    let server = alice("10MiB").await;
    std::fs::create_dir(server.home("alice").join("docs")).unwrap();
    std::fs::write(server.home("alice").join("docs/a b.txt"), b"hello").unwrap();
    let args: Vec<String> = vec![
        format!("alice@127.0.0.1:{}", server.addr.port()),
        "-i".into(),
        key_path(server.root(), "alice").display().to_string(),
        "--known-hosts".into(),
        server.known_hosts.display().to_string(),
        "-b".into(),
        "-".into(),
    ];
    let output = run_with_input(
        env!("CARGO_BIN_EXE_rsftp"),
        &args,
        b"cd docs\nls\nls 'a b.txt'\nls *.txt\nls -lh\nfrobnicate\npwd\n",
    )
    .await;
    let (out, err) = expect_status(&output, 1);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..3], ["a b.txt", "a b.txt", "a b.txt"]);
    assert!(lines[3].starts_with("f        5 B "), "{out}");
    assert!(lines[3].ends_with(" a b.txt"));
    assert_eq!(lines.len(), 4, "stopped at the unknown command: {out}");
    assert!(
        err.contains("stdin:6: frobnicate: unknown command"),
        "{err}"
    );

    // Standard input that is not a terminal is a script even without -b.
    let output = run_with_input(
        env!("CARGO_BIN_EXE_rsftp"),
        &args[..args.len() - 2],
        b"cd docs\npwd\n",
    )
    .await;
    let (out, _) = expect_status(&output, 0);
    assert_eq!(out, "/docs\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_commands_run_and_exit() {
    let server = alice("10MiB").await;
    let client = ClientHome::new();
    std::fs::create_dir(server.home("alice").join("in")).unwrap();
    let bytes = data(100_000, 2);
    std::fs::write(client.work.join("a.bin"), &bytes).unwrap();

    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["put", "./a.bin", "/in/"]);
    let (out, _) = expect_status(&run(cmd).await, 0);
    assert!(
        out.contains(&format!("verified md5 {}", md5_hex(&bytes))),
        "{out}"
    );
    assert_eq!(
        std::fs::read(server.home("alice").join("in/a.bin")).unwrap(),
        bytes
    );

    // The same file again: nothing to send.
    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["put", "a.bin", "/in/"]);
    let (out, _) = expect_status(&run(cmd).await, 0);
    assert!(out.contains("already up to date"), "{out}");

    // get never replaces a local file that differs, unless -f.
    std::fs::write(client.work.join("b.bin"), b"mine").unwrap();
    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["get", "/in/a.bin", "b.bin"]);
    let (_, err) = expect_status(&run(cmd).await, 1);
    assert!(err.contains("b.bin exists; use -f to replace it"), "{err}");
    assert_eq!(std::fs::read(client.work.join("b.bin")).unwrap(), b"mine");
    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["-q", "get", "-f", "/in/a.bin", "b.bin"]);
    let (out, _) = expect_status(&run(cmd).await, 0);
    assert_eq!(out, "", "quiet");
    assert_eq!(std::fs::read(client.work.join("b.bin")).unwrap(), bytes);
    // ... and an identical one is left alone, happily.
    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["get", "/in/a.bin", "b.bin"]);
    let (out, _) = expect_status(&run(cmd).await, 0);
    assert!(out.contains("already up to date"), "{out}");

    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["rm", "/in/nope"]);
    let (_, err) = expect_status(&run(cmd).await, 1);
    assert_eq!(
        err.trim_end(),
        "rsftp: rm: no such file or directory: /in/nope"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patterns_and_trees_go_both_ways() {
    let server = alice("10MiB").await;
    let client = ClientHome::new();
    let tree = client.work.join("tree");
    std::fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    std::fs::write(tree.join("one.txt"), b"1").unwrap();
    std::fs::write(tree.join("two.txt"), b"22").unwrap();
    std::fs::write(tree.join("skip.log"), b"333").unwrap();
    std::fs::write(tree.join("sub/deeper/three.txt"), b"4444").unwrap();
    std::fs::write(client.work.join("script"), "mkdir /t\nput tree/*.txt /t\nls /t\nput -r tree /copy\nget -r /copy back\nget /t/*.txt\nls /nothing*\n").unwrap();

    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["-b", "script"]);
    let (out, err) = expect_status(&run(cmd).await, 1);
    assert!(
        out.contains("\none.txt\ntwo.txt\n"),
        "the pattern took only .txt files: {out}"
    );
    assert!(
        out.contains("put: 4 files, 10 B, 3 directories, all verified"),
        "{out}"
    );
    assert!(
        out.contains("get: 4 files, 10 B, 3 directories, all verified"),
        "{out}"
    );
    assert!(err.contains("ls: no match for /nothing*"), "{err}");
    let home = server.home("alice");
    assert_eq!(
        std::fs::read(home.join("copy/sub/deeper/three.txt")).unwrap(),
        b"4444"
    );
    assert!(!home.join("t/skip.log").exists());
    assert_eq!(
        std::fs::read(client.work.join("back/sub/deeper/three.txt")).unwrap(),
        b"4444"
    );
    assert_eq!(std::fs::read(client.work.join("two.txt")).unwrap(), b"22");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_their_cause() {
    let mut server =
        TestServer::start(&[TestUser::new("alice", "1MiB"), TestUser::new("bob", "1MiB")]).await;
    let client = ClientHome::new();
    std::fs::write(client.work.join("big.bin"), data(2 << 20, 3)).unwrap();

    // Quota, in human units.
    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["put", "big.bin"]);
    let (_, err) = expect_status(&run(cmd).await, 1);
    assert_eq!(
        err.trim_end(),
        "rsftp: put: quota exceeded: need 2 MiB, free 1 MiB (used 0 B of 1 MiB)"
    );

    // A key the server does not know for this user.
    let mut cmd = client.bare(&server, "alice");
    cmd.arg("-i")
        .arg(key_path(server.root(), "bob"))
        .arg("--known-hosts")
        .arg(&server.known_hosts)
        .arg("pwd");
    let (_, err) = expect_status(&run(cmd).await, 255);
    assert!(
        err.starts_with("rsftp: authentication failed for alice@127.0.0.1 (tried: key "),
        "{err}"
    );

    // No key and no terminal to ask for a password on.
    let mut cmd = client.bare(&server, "alice");
    cmd.arg("--known-hosts").arg(&server.known_hosts).arg("pwd");
    let (_, err) = expect_status(&run(cmd).await, 255);
    assert!(
        err.contains("use --password-file or RSFTP_PASSWORD"),
        "{err}"
    );

    // Passwords for automation: the environment, or a file.
    let mut cmd = client.bare(&server, "alice");
    cmd.env("RSFTP_PASSWORD", PASSWORD)
        .arg("--known-hosts")
        .arg(&server.known_hosts)
        .arg("pwd");
    let (out, _) = expect_status(&run(cmd).await, 0);
    assert_eq!(out, "/\n");
    let secret = client.home().join("password");
    std::fs::write(&secret, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut cmd = client.bare(&server, "bob");
    cmd.arg("--password-file")
        .arg(&secret)
        .arg("--known-hosts")
        .arg(&server.known_hosts)
        .arg("pwd");
    let (out, _) = expect_status(&run(cmd).await, 0);
    assert_eq!(out, "/\n");

    // Nobody listening.
    let port = server.addr.port();
    server.stop().await;
    let mut cmd = client.rsftp(&server, "alice");
    cmd.arg("pwd");
    let (_, err) = expect_status(&run(cmd).await, 255);
    assert_eq!(
        err.trim_end(),
        format!("rsftp: cannot connect to [127.0.0.1]:{port}: Connection refused (os error 111)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_and_usage_errors() {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rsftp"));
    cmd.arg("--help")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let output = run(cmd).await;
    let (out, _) = texts(&output);
    assert!(output.status.success());
    for needle in [
        "[USER@]HOST[:PORT]",
        "--accept-new-host-key",
        "--password-file",
        "-b, --batch",
        "get [-rf] REMOTE [LOCAL]",
        "lcd [PATH]",
        "RSFTP_PASSWORD",
        "Exit status",
    ] {
        assert!(out.contains(needle), "--help mentions {needle}:\n{out}");
    }

    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rsftp"));
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let (_, err) = expect_status(&run(cmd).await, 2);
    assert!(err.contains("no host given"), "{err}");
}

/// `rsftp alice@... mv FROM TO` as a one-shot command: its exit status and stderr.
async fn mv(client: &ClientHome, server: &TestServer, from: &str, to: &str) -> (i32, String) {
    let mut cmd = client.rsftp(server, "alice");
    cmd.args(["mv", from, to]);
    let output = run(cmd).await;
    let (_, err) = texts(&output);
    (
        output.status.code().unwrap_or(-1),
        err.trim_end().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mv_renames_moves_into_folders_and_refuses_the_rest() {
    let server = alice("10MiB").await;
    let client = ClientHome::new();
    let home = server.home("alice");
    std::fs::create_dir_all(home.join("docs/full/inside")).unwrap();
    std::fs::create_dir_all(home.join("folder")).unwrap();
    for (name, text) in [("a.txt", "a"), ("b.txt", "b"), ("c.txt", "new")] {
        std::fs::write(home.join(name), text).unwrap();
    }
    std::fs::write(home.join("docs/c.txt"), "old").unwrap();
    std::fs::create_dir(home.join("docs/x.txt")).unwrap();
    std::fs::write(home.join("x.txt"), "x").unwrap();

    // A rename, then into a folder named with and without a trailing slash.
    assert_eq!(
        mv(&client, &server, "a.txt", "renamed.txt").await,
        (0, "".into())
    );
    assert_eq!(mv(&client, &server, "renamed.txt", "docs").await.0, 0);
    assert_eq!(mv(&client, &server, "b.txt", "/docs/").await.0, 0);
    assert!(!home.join("a.txt").exists() && !home.join("renamed.txt").exists());
    assert_eq!(std::fs::read(home.join("docs/renamed.txt")).unwrap(), b"a");
    assert_eq!(std::fs::read(home.join("docs/b.txt")).unwrap(), b"b");
    // A file already at the final name is replaced, as the help says.
    assert_eq!(mv(&client, &server, "c*", "docs").await.0, 0);
    assert_eq!(std::fs::read(home.join("docs/c.txt")).unwrap(), b"new");
    // A folder moves into a folder, with what it holds.
    assert_eq!(mv(&client, &server, "docs/full", "folder/").await.0, 0);
    assert!(home.join("folder/full/inside").is_dir());

    // Refusals: each leaves x.txt where it is.
    assert_eq!(
        mv(&client, &server, "nope.txt", "docs").await,
        (1, "rsftp: mv: no such file or directory: /nope.txt".into())
    );
    assert_eq!(
        mv(&client, &server, "x.txt", "missing/").await,
        (1, "rsftp: mv: missing/: no such remote folder".into())
    );
    assert_eq!(
        mv(&client, &server, "x.txt", "missing/x.txt").await,
        (
            1,
            "rsftp: mv: no such file or directory: /missing/x.txt".into()
        )
    );
    assert_eq!(
        mv(&client, &server, "x.txt", "docs/c.txt/").await,
        (1, "rsftp: mv: docs/c.txt: not a folder".into())
    );
    // docs/x.txt is a folder: a file does not replace it.
    assert_eq!(
        mv(&client, &server, "x.txt", "docs").await,
        (1, "rsftp: mv: is a directory: /docs/x.txt".into())
    );
    assert_eq!(std::fs::read(home.join("x.txt")).unwrap(), b"x");
    // Folders at the final name: an empty one is replaced, a full one or a file is not.
    std::fs::create_dir_all(home.join("e2/e1")).unwrap();
    std::fs::create_dir_all(home.join("e1")).unwrap();
    std::fs::write(home.join("e1/kept"), "k").unwrap();
    assert_eq!(mv(&client, &server, "e1", "e2").await.0, 0);
    assert_eq!(std::fs::read(home.join("e2/e1/kept")).unwrap(), b"k");
    std::fs::create_dir_all(home.join("e1")).unwrap();
    assert_eq!(
        mv(&client, &server, "e1", "e2").await,
        (1, "rsftp: mv: directory not empty: /e2/e1".into())
    );
    assert_eq!(
        mv(&client, &server, "e1", "x.txt").await,
        (1, "rsftp: mv: not a directory: /x.txt".into())
    );
    assert!(home.join("e1").is_dir());

    // Traversal: `..` stops at the home's top, so neither side can leave it.
    assert_eq!(
        mv(&client, &server, "../../../etc/passwd", "stolen").await,
        (
            1,
            "rsftp: mv: no such file or directory: /etc/passwd".into()
        )
    );
    assert!(!home.join("stolen").exists());
    assert_eq!(
        mv(&client, &server, "x.txt", "../../../tmp/").await,
        (1, "rsftp: mv: ../../../tmp/: no such remote folder".into())
    );
    // A link planted in the home that leads out of it is no way out either.
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), home.join("out")).unwrap();
    let (code, err) = mv(&client, &server, "x.txt", "out/").await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("rsftp: mv: permission denied: /out"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert_eq!(std::fs::read(home.join("x.txt")).unwrap(), b"x");
}
