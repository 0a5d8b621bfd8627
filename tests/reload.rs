//! Live reload: a running server picks up `users.toml` changes, made by `rsftpd user`
//! or by hand, without a restart; a broken file keeps the last good configuration.
//! Also the cleanup of stale partial uploads, and the real binary serving.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rsftp::auth::{Secret, ThrottlePolicy};
use rsftp::client::{ClientError, Connection, HostKeyCheck, NewHostKey, Quiet};
use rsftp::protocol::ErrorCode;
use rsftp::server::Limits;

use crate::admin::{new_key, rsftpd, succeeded, user_command};
use crate::util::{PASSWORD, TestServer, TestUser, data, key_path};

/// How long a change may take to reach the server: a check every second, plus a
/// failed login's rejection delay, with room to spare on a slow machine.
const LIMIT: Duration = Duration::from_secs(15);

/// Waits until `$check` is true, checking every 100 ms, at most 150 times and for at
/// most [`LIMIT`]; on failure shows `$context` (a `String`), if given.
macro_rules! eventually {
    ($what:expr, $check:expr) => {
        eventually!($what, $check, String::new())
    };
    ($what:expr, $check:expr, $context:expr) => {{
        let started = Instant::now();
        let mut done = false;
        for _ in 0..150 {
            if $check {
                done = true;
                break;
            }
            if started.elapsed() > LIMIT {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            done,
            "{} did not happen within {:?}\n{}",
            $what, LIMIT, $context
        );
    }};
}

/// Polling logins fail until the change arrives; they must not get the tests banned.
fn lenient() -> Limits {
    Limits {
        throttle: ThrottlePolicy {
            max_failures: 10_000,
            window: Duration::from_secs(60),
            ban: Duration::from_secs(1),
        },
        ..Limits::default()
    }
}

async fn start(users: &[TestUser]) -> TestServer {
    TestServer::start_with(users, lenient()).await
}

async fn password_login(server: &TestServer, user: &str, password: &str) -> bool {
    let mut conn = server.connection(user).await;
    conn.login_password(&Secret::new(password))
        .await
        .unwrap_or(false)
}

async fn key_login(server: &TestServer, user: &str, key_file: &Path) -> Option<Connection> {
    let mut conn = server.connection(user).await;
    let key = rsftp::client::load_key(key_file, None).expect("key");
    conn.login_key(key).await.ok()?.then_some(conn)
}

fn code(err: ClientError) -> ErrorCode {
    match err {
        ClientError::Remote { code, .. } => code,
        other => panic!("expected a refusal from the server, got {other:?}"),
    }
}

fn users_file(server: &TestServer) -> PathBuf {
    server.root().join("users.toml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_user_can_log_in_at_once() {
    let server = start(&[TestUser::new("alice", "10MiB")]).await;
    // Where the harness looks for bob's key when OpenSSH logs in as him.
    let key_file = key_path(server.root(), "bob");
    let (_, pub_file) = new_key(
        server.root(),
        key_file.file_name().unwrap().to_str().unwrap(),
    );
    succeeded(
        &user_command(
            server.root(),
            &[
                "add",
                "bob",
                "--key",
                pub_file.to_str().unwrap(),
                "--password-stdin",
            ],
            b"bob's password\n",
        )
        .await,
    );
    let (started, mut session) = (Instant::now(), None);
    eventually!("bob's key login", {
        session = key_login(&server, "bob", &key_file).await;
        session.is_some()
    });
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let conn = session.expect("logged in");
    let mut client = conn.open_rsftp().await.unwrap();
    assert_eq!(client.pwd().await.unwrap(), "/");
    assert_eq!(client.info().await.unwrap().limit, 1 << 30);
    assert!(password_login(&server, "bob", "bob's password").await);
    assert!(!password_login(&server, "bob", PASSWORD).await);
    // OpenSSH too.
    let output = server.ssh_subsystem("bob", b"pwd\n").await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("OK /\n"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_replaces_the_old_one() {
    let server = start(&[TestUser::new("alice", "10MiB")]).await;
    let (_conn, mut open) = server.client("alice").await;
    succeeded(
        &user_command(
            server.root(),
            &["passwd", "alice", "--password-stdin"],
            b"a new password\n",
        )
        .await,
    );
    eventually!(
        "login with the new password",
        password_login(&server, "alice", "a new password").await
    );
    assert!(!password_login(&server, "alice", PASSWORD).await);
    // A session already open goes on: a password is checked when logging in.
    assert_eq!(open.pwd().await.unwrap(), "/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lowered_quota_refuses_uploads_but_allows_downloads_and_deletes() {
    let server = start(&[TestUser::new("alice", "10MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let (big, small) = (local.path().join("big"), local.path().join("small"));
    let bytes = data(200_000, 7);
    fs::write(&big, &bytes).unwrap();
    fs::write(&small, data(1000, 8)).unwrap();
    let (_conn, mut c) = server.client("alice").await;
    rsftp::client::upload(&mut c, &big, "big", &Quiet)
        .await
        .unwrap();

    let out = succeeded(&user_command(server.root(), &["quota", "alice", "100KiB"], b"").await);
    assert!(
        // 200,000 bytes count 49 blocks of 4 KiB.
        out.contains("alice uses 196 KiB, more than that"),
        "{out}"
    );
    // The open session's ledger changes too.
    eventually!(
        "the new quota in the open session",
        c.info().await.unwrap().limit == 100 << 10
    );
    let err = rsftp::client::upload(&mut c, &small, "small", &Quiet)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert_eq!(code(err), ErrorCode::Quota);
    assert!(
        message.contains("102400"),
        "the numbers are given: {message}"
    );
    assert_eq!(
        code(c.write("in-place", 0, b"x").await.unwrap_err()),
        ErrorCode::Quota
    );
    // A new session has the new quota from the start.
    let (_conn2, mut c2) = server.client("alice").await;
    assert_eq!(c2.info().await.unwrap().limit, 100 << 10);

    let dest = local.path().join("copy");
    rsftp::client::download(&mut c, "big", &dest, false, &Quiet)
        .await
        .unwrap();
    assert_eq!(fs::read(&dest).unwrap(), bytes);
    c.rm("big").await.unwrap();
    assert_eq!(c.info().await.unwrap().used, 0);
    rsftp::client::upload(&mut c2, &small, "small", &Quiet)
        .await
        .unwrap();
    assert_eq!(c.info().await.unwrap().used, 4096, "1000 bytes count 4 KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_user_is_disconnected() {
    let server = start(&[
        TestUser::new("alice", "10MiB"),
        TestUser::new("bob", "10MiB"),
    ])
    .await;
    let (_alice_conn, mut alice) = server.client("alice").await;
    let (_bob_conn, mut bob) = server.client("bob").await;
    fs::write(server.home("alice").join("keep"), b"x").unwrap();
    assert_eq!(alice.pwd().await.unwrap(), "/");

    succeeded(&user_command(server.root(), &["del", "alice"], b"").await);
    let started = Instant::now();
    eventually!("alice's session ending", alice.pwd().await.is_err());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(!password_login(&server, "alice", PASSWORD).await);
    assert!(server.home("alice").join("keep").exists(), "the home stays");
    // Nobody else is touched.
    assert_eq!(bob.pwd().await.unwrap(), "/");

    // Added again after a purge, her usage is measured afresh.
    succeeded(
        &user_command(
            server.root(),
            &["add", "alice", "--password-stdin"],
            b"pw\n",
        )
        .await,
    );
    let mut session = None;
    eventually!("alice back", {
        let mut conn = server.connection("alice").await;
        if conn
            .login_password(&Secret::new("pw"))
            .await
            .unwrap_or(false)
        {
            session = Some(conn);
        }
        session.is_some()
    });
    let mut alice = session.unwrap().open_rsftp().await.unwrap();
    assert_eq!(
        alice.info().await.unwrap().used,
        4096,
        "her old file still counts, as one 4 KiB block"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_keeps_the_last_good_configuration() {
    let server = start(&[TestUser::new("alice", "10MiB")]).await;
    let (_conn, mut open) = server.client("alice").await;
    let good = fs::read_to_string(users_file(&server)).unwrap();

    // Not TOML at all, then a bad value: in neither would alice exist.
    for broken in [
        "this is not toml\n",
        "[users.bob]\nquota = \"12 parsecs\"\n",
    ] {
        fs::write(users_file(&server), broken).unwrap();
        // Longer than a check and a reload take.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(open.pwd().await.unwrap(), "/", "alice's session goes on");
        assert!(password_login(&server, "alice", PASSWORD).await);
        assert!(!password_login(&server, "bob", PASSWORD).await);
    }
    assert_eq!(open.info().await.unwrap().limit, 10 << 20);

    // Fixed: the next good version is loaded.
    let (_, pub_file) = new_key(server.root(), "bob");
    fs::write(users_file(&server), &good).unwrap();
    succeeded(
        &user_command(
            server.root(),
            &["add", "bob", "--key", pub_file.to_str().unwrap()],
            b"",
        )
        .await,
    );
    eventually!(
        "bob's login",
        key_login(&server, "bob", &server.root().join("bob"))
            .await
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_by_hand_are_seen_however_they_are_written() {
    let server = start(&[TestUser::new("alice", "10MiB")]).await;
    let (_conn, mut c) = server.client("alice").await;
    let path = users_file(&server);
    let good = fs::read_to_string(&path).unwrap();
    let with_quota =
        |quota: &str| good.replace("quota = \"10MiB\"", &format!("quota = \"{quota}\""));

    // Written elsewhere and renamed over it, as many editors do.
    let swap = server.root().join(".users.toml.swp");
    fs::write(&swap, with_quota("20MiB")).unwrap();
    fs::rename(&swap, &path).unwrap();
    eventually!(
        "the renamed file",
        c.info().await.unwrap().limit == 20 << 20
    );

    // Rewritten in place with the same length and the same modification time: only
    // the content tells.
    let modified = fs::metadata(&path).unwrap().modified().unwrap();
    fs::write(&path, with_quota("30MiB")).unwrap();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), modified);
    eventually!(
        "the rewritten file",
        c.info().await.unwrap().limit == 30 << 20
    );

    // A keys file changes while users.toml does not.
    let (_, first) = new_key(server.root(), "first");
    let (_, second) = new_key(server.root(), "second");
    let keys_file = server.root().join("alice.keys");
    fs::copy(&first, &keys_file).unwrap();
    fs::write(
        &path,
        good.replace(
            "[users.alice]\n",
            "[users.alice]\nauthorized_keys_file = \"alice.keys\"\n",
        ),
    )
    .unwrap();
    eventually!(
        "login with the key from the keys file",
        key_login(&server, "alice", &server.root().join("first"))
            .await
            .is_some()
    );
    fs::copy(&second, &keys_file).unwrap();
    eventually!(
        "login with the replaced key",
        key_login(&server, "alice", &server.root().join("second"))
            .await
            .is_some()
    );
    assert!(
        key_login(&server, "alice", &server.root().join("first"))
            .await
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_partial_uploads_are_removed() {
    let mut server = start(&[TestUser::new("alice", "10MiB")]).await;
    server.stop().await;
    let staging = server.staging("alice");
    let (stale, fresh) = (staging.join("stale"), staging.join("fresh"));
    fs::write(&stale, vec![1u8; 5000]).unwrap();
    fs::write(&fresh, vec![2u8; 300]).unwrap();
    let eight_days_ago = std::time::SystemTime::now() - Duration::from_secs(8 * 24 * 3600);
    fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(eight_days_ago)
        .unwrap();

    // The server looks at start, then hourly, with the default age of 7 days.
    server.launch(lenient()).await;
    eventually!("the stale partial's removal", !stale.exists());
    assert!(fresh.exists(), "a recent partial stays, to be resumed");
    let (_conn, mut c) = server.client("alice").await;
    assert_eq!(
        c.info().await.unwrap().used,
        4096,
        "its space is given back; the fresh one counts a 4 KiB block"
    );
}

/// The real `rsftpd`, serving from its own folder; killed when dropped.
struct RealServer {
    root: PathBuf,
    child: tokio::process::Child,
    addr: SocketAddr,
}

impl RealServer {
    async fn start(root: &Path, extra: &[&str]) -> RealServer {
        let path = |name: &str| root.join(name).to_str().expect("utf-8").to_owned();
        let mut args: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        for (flag, name) in [
            ("--users", "users.toml"),
            ("--storage", "storage"),
            ("--keys", "keys"),
            ("--logs", "logs"),
        ] {
            args.extend([flag.to_owned(), path(name)]);
        }
        args.extend(["--listen".to_owned(), "127.0.0.1:0".to_owned()]);
        // To files, not pipes: nothing here reads them while the server runs.
        let stdout = root.join("stdout");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rsftpd"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(root.join("stderr")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("rsftpd starts");
        let mut addr = None;
        eventually!("rsftpd listening", {
            let text = fs::read_to_string(&stdout).unwrap_or_default();
            addr = text
                .lines()
                .find_map(|line| line.strip_prefix("rsftpd listening on "))
                .and_then(|rest| rest.split(' ').next())
                .and_then(|addr| addr.parse().ok());
            addr.is_some()
        });
        let addr: SocketAddr = addr.expect("an address");
        let public = fs::read_to_string(root.join("keys/ssh_host_ed25519_key.pub")).unwrap();
        fs::write(
            root.join("known_hosts"),
            format!("[127.0.0.1]:{} {public}", addr.port()),
        )
        .unwrap();
        RealServer {
            root: root.to_owned(),
            child,
            addr,
        }
    }

    async fn password_login(&self, user: &str, password: &str) -> bool {
        let check = HostKeyCheck {
            known_hosts: self.root.join("known_hosts"),
            new_key: NewHostKey::Refuse,
        };
        let mut conn = Connection::connect("127.0.0.1", self.addr.port(), user, check)
            .await
            .expect("connect");
        conn.login_password(&Secret::new(password))
            .await
            .unwrap_or(false)
    }

    /// Everything in the log files so far.
    fn log(&self) -> String {
        let Ok(entries) = fs::read_dir(self.root.join("logs")) else {
            return String::new();
        };
        entries
            .filter_map(|entry| fs::read_to_string(entry.ok()?.path()).ok())
            .collect()
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([name, pid.as_str()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    async fn stop(mut self) {
        self.signal("-TERM");
        let status = tokio::time::timeout(LIMIT, self.child.wait())
            .await
            .expect("rsftpd stops in time")
            .expect("wait");
        assert!(status.success(), "{status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_server_reloads_reports_a_broken_file_and_cleans_partials() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    succeeded(&user_command(root, &["add", "alice", "--password-stdin"], b"pw\n").await);
    let text = fs::read_to_string(root.join("users.toml")).unwrap();
    fs::write(
        root.join("users.toml"),
        text + "\n[users.nologin]\nquota = \"1GiB\"\n",
    )
    .unwrap();
    let partial = root.join("storage/.partials/alice/p");
    fs::write(&partial, b"left over").unwrap();
    // A home as an older rsftpd left it, its partials inside: moved out at start.
    let legacy = root.join("storage/nologin/.rsftp-partial");
    fs::create_dir_all(&legacy).unwrap();
    let old_partial = format!("{}-20", crate::util::md5_hex(b"/old"));
    fs::write(legacy.join(&old_partial), b"half of it").unwrap();

    let server = RealServer::start(root, &["--partial-max-age-hours", "0"]).await;
    assert!(server.password_login("alice", "pw").await);
    eventually!(
        "the migration in the log",
        server.log().contains(
            "INFO rsftp::storage::staging: moved partial uploads from .rsftp-partial in the \
             home to the staging area .partials/nologin user=\"nologin\" moved=1 bytes=10"
        ),
        server.log()
    );
    assert!(!legacy.exists());
    eventually!(
        "the warning about an account nobody can use",
        server.log().contains(
            "WARN rsftpd::admin: user \"nologin\" has no password and no keys, \
             so nobody can log in as them"
        ),
        server.log()
    );
    eventually!("the partial's removal", !partial.exists());
    eventually!(
        "the removal in the log",
        server.log().contains(
            "INFO rsftp::server: removed stale partial uploads user=\"alice\" bytes=4096"
        ),
        server.log()
    );

    // A broken file is logged as an error naming the line, and changes nothing.
    let good = fs::read_to_string(root.join("users.toml")).unwrap();
    fs::write(
        root.join("users.toml"),
        format!("{good}\n[users.bob]\nquota = \"12 parsecs\"\n"),
    )
    .unwrap();
    let broken_line = good.lines().count() + 3;
    eventually!(
        "the error in the log",
        server.log().contains(&format!(
            "ERROR rsftpd::admin: users file not reloaded; keeping the last good configuration \
         file={} error={}:{broken_line}: user \"bob\": quota \"12 parsecs\"",
            root.join("users.toml").display(),
            root.join("users.toml").display(),
        )),
        server.log()
    );
    assert!(server.password_login("alice", "pw").await);
    // `rsftpd user` will not edit it either, until it is fixed.
    let out = user_command(root, &["add", "carol", "--random-password"], b"").await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fix it first"));

    // SIGHUP reloads at once (and is logged); the server goes on.
    server.signal("-HUP");
    eventually!(
        "the SIGHUP in the log",
        server
            .log()
            .contains("rsftpd::admin: SIGHUP: reloading the users file"),
        server.log()
    );
    fs::write(root.join("users.toml"), &good).unwrap();
    succeeded(&user_command(root, &["add", "bob", "--password-stdin"], b"bob\n").await);
    eventually!("bob's login", server.password_login("bob", "bob").await);
    eventually!(
        "the reload in the log",
        server
            .log()
            .contains("users file reloaded users=3 added=bob removed= sessions_ended=0"),
        server.log()
    );

    // The login-failure lines that fail2ban reads (see docs/OPERATIONS.md).
    assert!(!server.password_login("alice", "wrong").await);
    eventually!(
        "the failed login in the log",
        server.log().lines().any(|line| {
            line.contains(" INFO rsftpd::auth: login rejected user=alice peer=127.0.0.1:")
                && line.ends_with(" method=\"password\" result=\"rejected\"")
        }),
        server.log()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_is_the_default_command_and_takes_the_same_flags() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // A first start creates the starter account and prints its password once.
    let server = RealServer::start(
        root,
        &["serve", "--max-sessions", "5", "--idle-timeout", "60"],
    )
    .await;
    let stdout = fs::read_to_string(root.join("stdout")).unwrap();
    let password = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("password: "))
        .unwrap_or_else(|| panic!("no starter password in {stdout}"));
    assert!(server.password_login("demo", password).await);
    server.stop().await;

    let again = RealServer::start(root, &[]).await;
    assert!(again.password_login("demo", password).await);
    again.stop().await;

    let out = rsftpd(&["serve", "--listen", "not an address"], b"").await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'not an address'"));
}
