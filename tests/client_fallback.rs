//! The `rsftp` binary against a server without the rsftp subsystem: a private OpenSSH
//! sshd, spoken to over SFTP. The same commands, scripts and exit statuses; transfers
//! checked by the server's `md5sum` over exec, or said plainly to be unchecked where
//! the server offers no hash.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::client_shell::Tmux;
use crate::client_support::{
    ClientHome, big_file, expect_status, run, settled, size_of, wait_while_running,
};
use crate::sshd::Sshd;
use crate::util::{data, md5_hex};

/// Big enough that a debug build takes seconds over it, so the kill lands mid-way.
const MIB: usize = 192;
/// Kill once this much has arrived.
const KILL_AT: u64 = 8 << 20;

/// `rsftp` logged in to `sshd` with its key, in the client's working directory.
pub fn rsftp_on(sshd: &Sshd, client: &ClientHome) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rsftp"));
    cmd.current_dir(&client.work)
        .env("HOME", client.home())
        .env("USER", sshd.user())
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("RSFTP_PASSWORD")
        .arg(format!("{}@127.0.0.1:{}", sshd.user(), sshd.port))
        .arg("-i")
        .arg(sshd.client_key())
        .arg("--known-hosts")
        .arg(client.home().join("known_hosts"))
        .arg("--accept-new-host-key")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs `rsftp -b` with `script` against `sshd`; the exit status must be `code`.
async fn script(sshd: &Sshd, client: &ClientHome, script: &str, code: i32) -> (String, String) {
    std::fs::write(client.work.join("script"), script).unwrap();
    let mut cmd = rsftp_on(sshd, client);
    cmd.args(["-b", "script"]);
    expect_status(&run(cmd).await, code)
}

/// Starts `rsftp` with `args`, waits until `grown` reports at least [`KILL_AT`] bytes,
/// and kills it (SIGKILL: nothing is tidied up).
async fn kill_midway(sshd: &Sshd, client: &ClientHome, args: &[&str], grown: impl Fn() -> u64) {
    let mut cmd = rsftp_on(sshd, client);
    cmd.args(args);
    let mut child = cmd.spawn().expect("rsftp starts");
    let caught =
        wait_while_running(&mut child, Duration::from_secs(60), || grown() >= KILL_AT).await;
    child.kill().await.expect("kill");
    assert!(
        caught,
        "still running after {KILL_AT} bytes (grown to {})",
        grown()
    );
}

/// The bytes-already-there count from a `resuming at ...` line.
fn resumed_at(out: &str) -> Option<u64> {
    let line = out.lines().find(|l| l.contains(": resuming at "))?;
    let count = line.split('(').nth(1)?.split(' ').next()?;
    count.parse().ok()
}

fn md5_file(path: &Path) -> String {
    md5_hex(&std::fs::read(path).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_against_openssh_puts_lists_gets_moves_and_removes() {
    let sshd = Sshd::start();
    let root = sshd.root();
    let client = ClientHome::new();
    let bytes = data(300_000, 1);
    std::fs::write(client.work.join("data.bin"), &bytes).unwrap();
    let md5 = md5_hex(&bytes);
    let (out, _) = script(
        &sshd,
        &client,
        "mkdir in\n\
         put data.bin in/\n\
         ls -l in\n\
         get in/data.bin copy.bin\n\
         mkdir in/sub\n\
         mv in/data.bin in/sub\n\
         cd in\n\
         ls sub\n\
         mv sub/data.bin renamed.bin\n\
         ls\n\
         rm renamed.bin\n\
         rmdir sub\n\
         ls\n\
         cd\n\
         pwd\n",
        0,
    )
    .await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("data.bin -> in/data.bin: 293 KiB")
            && lines[0].ends_with(&format!("verified md5 {md5}")),
        "{out}"
    );
    let fields: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(fields[..2], ["f", "300000"], "{out}");
    assert_eq!(fields[3], "data.bin", "{out}");
    assert!(
        lines[2].starts_with("in/data.bin -> copy.bin: 293 KiB")
            && lines[2].ends_with(&format!("verified md5 {md5}")),
        "{out}"
    );
    assert_eq!(lines[3], "data.bin", "moved into the folder: {out}");
    assert_eq!(lines[4..6], ["renamed.bin", "sub"], "{out}");
    // The empty listing prints nothing; cd with no folder goes back to the start.
    let start = std::fs::canonicalize(&root).unwrap();
    assert_eq!(lines[6..], [start.display().to_string()], "{out}");
    assert_eq!(std::fs::read(client.work.join("copy.bin")).unwrap(), bytes);
    assert!(root.join("in").is_dir());
    assert_eq!(std::fs::read_dir(root.join("in")).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_against_openssh_fail_the_script_and_name_their_cause() {
    let sshd = Sshd::start();
    let client = ClientHome::new();
    std::fs::create_dir(sshd.root().join("d")).unwrap();
    std::fs::write(sshd.root().join("d/f"), b"x").unwrap();
    let (out, err) = script(&sshd, &client, "pwd\nget nope\npwd\n", 1).await;
    assert_eq!(out.lines().count(), 1, "stopped after line 2: {out}");
    assert!(err.contains("script:2: get: "), "{err}");
    assert!(err.to_lowercase().contains("no such file"), "{err}");
    let (_, err) = script(
        &sshd,
        &client,
        "-rmdir d\n-rm d\n-mkdir nowhere/x\n-info\ncd nowhere\n",
        1,
    )
    .await;
    assert!(err.contains("script:1: rmdir: "), "{err}");
    assert!(err.contains("script:2: rm: is a directory"), "{err}");
    assert!(err.contains("script:3: mkdir: "), "{err}");
    assert!(
        err.contains("script:4: info: the server speaks plain SFTP"),
        "{err}"
    );
    assert!(err.contains("script:5: cd: "), "{err}");
    assert!(sshd.root().join("d/f").exists(), "nothing was removed");
    // get never replaces a local file that differs.
    std::fs::write(client.work.join("f"), b"mine").unwrap();
    let (_, err) = script(&sshd, &client, "get d/f\n", 1).await;
    assert!(err.contains("f exists; use -f to replace it"), "{err}");
    assert_eq!(std::fs::read(client.work.join("f")).unwrap(), b"mine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_put_to_openssh_resumes_after_a_checked_prefix() {
    let sshd = Sshd::start();
    let client = ClientHome::new();
    let local = client.work.join("big.bin");
    big_file(&local, MIB, 7);
    let remote = sshd.root().join("big.bin");
    kill_midway(&sshd, &client, &["put", "big.bin"], || size_of(&remote)).await;
    let held = settled(|| size_of(&remote)).await;
    assert!(held >= KILL_AT && held < (MIB as u64) << 20, "held {held}");

    let mut cmd = rsftp_on(&sshd, &client);
    cmd.args(["put", "big.bin"]);
    let (out, _) = expect_status(&run(cmd).await, 0);
    assert_eq!(resumed_at(&out), Some(held), "says where it resumes: {out}");
    assert!(!out.contains("prefix not checked"), "{out}");
    assert!(
        out.contains(&format!("verified md5 {}", md5_file(&local))),
        "{out}"
    );
    assert_eq!(md5_file(&remote), md5_file(&local));

    // The same file again: the server's hash says it is there already.
    let mut cmd = rsftp_on(&sshd, &client);
    cmd.args(["put", "big.bin"]);
    let (out, _) = expect_status(&run(cmd).await, 0);
    assert!(out.contains("already up to date, verified md5"), "{out}");

    // A remote file whose bytes are not the start of ours is not continued.
    std::fs::write(&remote, data(1 << 20, 99)).unwrap();
    let mut cmd = rsftp_on(&sshd, &client);
    cmd.args(["put", "big.bin"]);
    let (out, _) = expect_status(&run(cmd).await, 0);
    assert!(
        out.contains("differ from this file; starting over from 0"),
        "{out}"
    );
    assert!(out.contains(", started over, verified md5"), "{out}");
    assert_eq!(md5_file(&remote), md5_file(&local));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_get_from_openssh_resumes_after_a_checked_prefix() {
    let sshd = Sshd::start();
    let client = ClientHome::new();
    let remote = sshd.root().join("big.bin");
    big_file(&remote, MIB, 8);
    let local = client.work.join("big.bin");
    let part = client.work.join("big.bin.part");
    kill_midway(&sshd, &client, &["get", "big.bin"], || size_of(&part)).await;
    let held = settled(|| size_of(&part)).await;
    assert!(
        !local.exists(),
        "nothing under the final name before it is verified"
    );

    let mut cmd = rsftp_on(&sshd, &client);
    cmd.args(["get", "big.bin"]);
    let (out, _) = expect_status(&run(cmd).await, 0);
    assert_eq!(resumed_at(&out), Some(held), "says where it resumes: {out}");
    assert!(
        out.contains(&format!("verified md5 {}", md5_file(&remote))),
        "{out}"
    );
    assert!(!part.exists());
    assert_eq!(md5_file(&local), md5_file(&remote));

    // A .part whose bytes are not the start of the file is not continued.
    std::fs::remove_file(&local).unwrap();
    std::fs::write(&part, data(1 << 20, 98)).unwrap();
    let mut cmd = rsftp_on(&sshd, &client);
    cmd.args(["get", "big.bin"]);
    let (out, _) = expect_status(&run(cmd).await, 0);
    assert!(
        out.contains("differ from this file; starting over from 0"),
        "{out}"
    );
    assert_eq!(md5_file(&local), md5_file(&remote));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_no_hash_is_never_claimed_to_have_checked() {
    // Every exec runs the SFTP server instead of a command: no md5sum, no sha256sum.
    let sshd = Sshd::start_with("ForceCommand internal-sftp -d %START%\n");
    let client = ClientHome::new();
    let bytes = data(2 << 20, 4);
    std::fs::write(client.work.join("a.bin"), &bytes).unwrap();
    // Half of it is there already, as an interrupted upload leaves it.
    std::fs::write(sshd.root().join("a.bin"), &bytes[..1 << 20]).unwrap();
    let (out, _) = script(&sshd, &client, "put a.bin\nget a.bin b.bin\n", 0).await;
    assert!(
        !out.contains("verified md5") && !out.contains("verified sha256"),
        "{out}"
    );
    assert!(
        out.contains("could not be checked against this file (the server offers no hash"),
        "{out}"
    );
    assert!(
        out.contains(
            ", resumed at 1 MiB (prefix not checked), not verified (server offers no hash)"
        ),
        "{out}"
    );
    let got = out
        .lines()
        .find(|l| l.starts_with("a.bin -> b.bin: "))
        .unwrap_or("");
    assert!(
        got.ends_with("not verified (server offers no hash)"),
        "{out}"
    );
    assert_eq!(std::fs::read(sshd.root().join("a.bin")).unwrap(), bytes);
    assert_eq!(std::fs::read(client.work.join("b.bin")).unwrap(), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interactive_shell_against_openssh() {
    assert!(
        Tmux::available(),
        "tmux is not installed: run ./scripts/test, which installs it"
    );
    let sshd = Sshd::start();
    let client = ClientHome::new();
    std::fs::create_dir(sshd.root().join("docs")).unwrap();
    let bytes = data(3 << 20, 6);
    std::fs::write(client.work.join("a.bin"), &bytes).unwrap();
    let command = format!(
        "cd '{work}' && HOME='{home}' SSH_AUTH_SOCK= '{bin}' {user}@127.0.0.1:{port} -i '{key}' \
         --known-hosts '{home}/known_hosts' --accept-new-host-key; echo RSFTP-EXIT=$?; sleep 60",
        work = client.work.display(),
        home = client.home().display(),
        bin = env!("CARGO_BIN_EXE_rsftp"),
        user = sshd.user(),
        port = sshd.port,
        key = sshd.client_key().display(),
    );
    let tmux = Tmux::start(client.home(), &command);
    let long = Duration::from_secs(30);
    let start = std::fs::canonicalize(sshd.root()).unwrap();
    let prompt = format!("rsftp:{}>", start.display());
    let screen = tmux
        .wait_for(long, "the prompt", |s| s.trim_end().ends_with(&prompt))
        .await;
    assert!(
        screen.contains("SFTP: the server has no rsftp; transfers are checked by its md5sum"),
        "{screen}"
    );
    // Completion lists over a second SFTP session.
    tmux.keys(&["cd do", "Tab"]);
    tmux.wait_for(long, "completion", |s| s.contains("cd docs/"))
        .await;
    tmux.keys(&["Enter"]);
    let in_docs = format!("rsftp:{}/docs>", start.display());
    tmux.command(&in_docs, "put a.bin").await;
    tmux.wait_for(long, "the upload", |s| {
        s.contains(&format!("verified md5 {}", md5_hex(&bytes)))
    })
    .await;
    tmux.command(&in_docs, "ls -l").await;
    tmux.wait_for(long, "the listing", |s| {
        s.lines()
            .any(|l| l.starts_with("f      3145728 ") && l.ends_with(" a.bin"))
    })
    .await;
    tmux.command(&in_docs, "exit").await;
    let end = tmux
        .wait_for(long, "the exit", |s| s.contains("RSFTP-EXIT="))
        .await;
    assert!(end.contains("RSFTP-EXIT=0"), "{end}");
    assert_eq!(
        std::fs::read(sshd.root().join("docs/a.bin")).unwrap(),
        bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shell_on_openssh_hashes_file_after_file() {
    use rsftp::client::exec_hash::{HashKind, HashShell};
    use rsftp::client::{HostKeyCheck, NewHostKey, load_key};
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let check = HostKeyCheck {
        known_hosts: dir.path().join("known_hosts"),
        new_key: NewHostKey::Accept,
    };
    let mut conn = rsftp::client::Connection::connect("127.0.0.1", sshd.port, sshd.user(), check)
        .await
        .unwrap();
    assert!(
        conn.login_key(load_key(&sshd.client_key(), None).unwrap())
            .await
            .unwrap()
    );
    let mut shell = HashShell::start(&conn, HashKind::Md5)
        .await
        .expect("a shell");
    for (i, name) in ["a", "it's here", "b c"].iter().enumerate() {
        let path = sshd.root().join(name);
        std::fs::write(&path, data(1000 + i, i as u64)).unwrap();
        let hash = shell.hash(&path.display().to_string()).await.unwrap();
        assert_eq!(
            hash.map(|h| h.hex),
            Some(md5_hex(&data(1000 + i, i as u64))),
            "{name}"
        );
    }
    // A file it cannot hash is said to be so, and the shell goes on.
    let missing = sshd.root().join("missing").display().to_string();
    assert_eq!(shell.hash(&missing).await.unwrap(), None);
    let again = shell
        .hash(&sshd.root().join("a").display().to_string())
        .await
        .unwrap();
    assert_eq!(again.map(|h| h.hex), Some(md5_hex(&data(1000, 0))));
}
