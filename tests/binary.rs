//! The real `rsftpd` binary: a first start with nothing prepared, logs that record
//! every login and operation without secrets, and a clean stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rsftp::auth::Secret;
use rsftp::client::{Connection, HostKeyCheck, NewHostKey};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts rsftpd in `dir` with its defaults but the port; returns it and its stdout lines
/// up to "listening".
fn start(dir: &std::path::Path, port: u16) -> (Daemon, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rsftpd"))
        .current_dir(dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("rsftpd starts");
    let stdout = child.stdout.take().unwrap();
    let daemon = Daemon(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            let done = line.contains("listening on");
            lines.push(line);
            if done {
                return (daemon, lines);
            }
        }
    }
    panic!("rsftpd did not start: {lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_needs_nothing_and_logs_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (daemon, lines) = start(dir.path(), port);
    let password = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("password: "))
        .unwrap_or_else(|| panic!("no password printed: {lines:?}"))
        .to_owned();
    assert!(password.len() >= 16, "a real random password: {password:?}");
    let key = dir.path().join("keys/ssh_host_ed25519_key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(dir.path().join("users.toml").exists());
    assert!(dir.path().join("storage/demo").is_dir());

    let check = || HostKeyCheck {
        known_hosts: dir.path().join("known_hosts"),
        new_key: NewHostKey::Accept,
    };
    let mut bad = Connection::connect("127.0.0.1", port, "demo", check())
        .await
        .unwrap();
    assert!(
        !bad.login_password(&Secret::new("not the password"))
            .await
            .unwrap()
    );
    let mut conn = Connection::connect("127.0.0.1", port, "demo", check())
        .await
        .unwrap();
    assert!(
        conn.login_password(&Secret::new(password.clone()))
            .await
            .unwrap()
    );
    let mut client = conn.open_rsftp().await.unwrap();
    client.mkdir("made").await.unwrap();
    client.write("made/f", 0, b"12345").await.unwrap();
    assert!(client.stat("missing").await.is_err());
    drop(client);
    conn.close().await.unwrap();
    drop(bad);

    // Give the log writer a moment, then read what it wrote.
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let text: String = std::fs::read_dir(dir.path().join("logs"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect();
        if text.contains("metadata reads:") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let has = |needle: &str| {
        log.lines()
            .any(|l| needle.split('|').all(|part| l.contains(part)))
    };
    assert!(
        has("login rejected|user=demo|peer=127.0.0.1|method=\"password\""),
        "{log}"
    );
    assert!(has("login accepted|user=demo|method=\"password\""), "{log}");
    assert!(
        has("user=demo|op=\"mkdir\"|path=\"/made\"|result=\"ok\""),
        "{log}"
    );
    assert!(has("op=\"write\"|path=\"/made/f\"|bytes=5|ms="), "{log}");
    // A metadata read is counted, not logged on its own, and summed up at the end.
    assert!(
        has("metadata reads: stat=1 failed=1 user=demo|ended=true"),
        "{log}"
    );
    assert!(
        !log.contains(&password) && !log.contains("not the password"),
        "a secret was logged"
    );
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut daemon, _) = start(dir.path(), port);
    let status = Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = daemon.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "rsftpd ignored SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
    // A second start reuses everything and prints no new password.
    let (_again, lines) = start(dir.path(), port);
    assert!(!lines.iter().any(|l| l.contains("password:")), "{lines:?}");
}

#[test]
fn a_busy_port_stops_start_up_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let output = Command::new(env!("CARGO_BIN_EXE_rsftpd"))
        .current_dir(dir.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("password"));
    assert!(!dir.path().join("users.toml").exists());
}
