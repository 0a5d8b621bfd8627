//! Two `rsftpd` processes sharing one PostgreSQL and one storage root: changes reach
//! the other node at once, a deleted user's session there ends, and the database going
//! away (at start, or while running) is handled as documented.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rsftp::auth::Secret;
use rsftp::client::{Connection, HostKeyCheck, NewHostKey};

use crate::admin::{rsftpd, succeeded};
use crate::pg_util::{PG_PASSWORD, PgCluster};

pub(crate) const DEADLINE: Duration = Duration::from_secs(10);
pub(crate) const PASSWORD: &str = "node password";

/// One `rsftpd` child with its own host key and logs, and the shared storage.
pub(crate) struct Node {
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) dir: PathBuf,
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(dir: &Path, storage: &Path, url: &str, port: u16) -> Child {
    spawn_with(dir, storage, url, port, &[])
}

pub(crate) fn spawn_with(
    dir: &Path,
    storage: &Path,
    url: &str,
    port: u16,
    extra: &[&str],
) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("stderr"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_rsftpd"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--storage", storage.to_str().unwrap()])
        .args(["--keys", dir.join("keys").to_str().unwrap()])
        .args(["--logs", dir.join("logs").to_str().unwrap()])
        .args(["--accounts", url])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("rsftpd starts")
}

impl Node {
    /// Waits until a started node serves.
    pub(crate) async fn wait(child: Child, port: u16, dir: &Path) -> Node {
        let mut node = Node {
            child,
            port,
            dir: dir.to_owned(),
        };
        let started = Instant::now();
        // The port is taken before the host key is made: wait for both.
        let host_key = dir.join("keys/ssh_host_ed25519_key.pub");
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
            || !host_key.exists()
        {
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("rsftpd exited with {status}: {}", node.stderr());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "rsftpd did not listen"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let public = std::fs::read_to_string(&host_key).unwrap();
        std::fs::write(
            dir.join("known_hosts"),
            format!("[127.0.0.1]:{port} {public}"),
        )
        .unwrap();
        node
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// Every log file of the node, in one string.
    pub(crate) fn log(&self) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(self.dir.join("logs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
        text
    }

    /// Waits until the log holds `what`; returns how long that took.
    pub(crate) async fn wait_for_log(&self, what: &str) -> Duration {
        let started = Instant::now();
        for _ in 0..500 {
            if self.log().contains(what) {
                return started.elapsed();
            }
            if started.elapsed() > DEADLINE {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{what:?} not logged within {DEADLINE:?}:\n{}", self.log());
    }

    async fn connection(&self, user: &str) -> Connection {
        let check = HostKeyCheck {
            known_hosts: self.dir.join("known_hosts"),
            new_key: NewHostKey::Refuse,
        };
        Connection::connect("127.0.0.1", self.port, user, check)
            .await
            .expect("connect")
    }

    /// Whether a password login of `user` is accepted.
    pub(crate) async fn logs_in(&self, user: &str) -> Option<Connection> {
        let mut conn = self.connection(user).await;
        match conn.login_password(&Secret::new(PASSWORD)).await {
            Ok(true) => Some(conn),
            _ => None,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rsftpd user ...` on the cluster's database and the shared storage.
pub(crate) async fn admin(
    cluster: &PgCluster,
    storage: &Path,
    args: &[&str],
    stdin: &str,
) -> String {
    let url = cluster.url();
    let mut all = vec![
        "user",
        "--accounts",
        &url,
        "--storage",
        storage.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    succeeded(&rsftpd(&all, stdin.as_bytes()).await)
}

async fn add(cluster: &PgCluster, storage: &Path, name: &str) {
    admin(
        cluster,
        storage,
        &["add", name, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    )
    .await;
}

pub(crate) struct Cluster {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) pg: PgCluster,
    pub(crate) storage: PathBuf,
    pub(crate) a: Node,
    pub(crate) b: Node,
}

pub(crate) async fn two_nodes() -> Cluster {
    two_nodes_with(&[]).await
}

async fn two_nodes_with(extra: &[&str]) -> Cluster {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    std::fs::create_dir(&storage).unwrap();
    let url = pg.url();
    let mut nodes = Vec::new();
    for name in ["a", "b"] {
        let port = free_port();
        let dir = dir.path().join(name);
        let child = spawn_with(&dir, &storage, &url, port, extra);
        nodes.push(Node::wait(child, port, &dir).await);
    }
    let (b, a) = (nodes.pop().unwrap(), nodes.pop().unwrap());
    Cluster {
        _dir: dir,
        pg,
        storage,
        a,
        b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_added_through_one_node_logs_in_on_the_other() {
    let c = two_nodes().await;
    // Added with node a's tools: node b hears of it by NOTIFY. Waiting for its log line
    // rather than trying logins keeps failed logins (and a ban) out of the test.
    add(&c.pg, &c.storage, "alice").await;
    let took = c.b.wait_for_log("added=alice").await;
    eprintln!("an account added reached the other node in {took:?}");
    let conn = c.b.logs_in("alice").await.expect("alice logs in on node b");
    conn.close().await.ok();
    assert!(c.a.logs_in("alice").await.is_some(), "and on node a");

    // Straight in SQL: a quota and a new password, seen by both.
    c.pg.psql("UPDATE quota SET limit_bytes = 4096 WHERE account = 'alice'");
    c.b.wait_for_log("accounts reloaded from PostgreSQL users=1 added= removed=")
        .await;
    // SIGHUP reads the database again at once, and says so.
    let reloads = |node: &Node| {
        node.log()
            .matches("accounts reloaded from PostgreSQL")
            .count()
    };
    let before = reloads(&c.b);
    let hangup = Command::new("kill")
        .args(["-HUP", &c.b.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(hangup.success(), "kill -HUP node b");
    c.b.wait_for_log("SIGHUP: reloading the accounts from PostgreSQL")
        .await;
    let started = Instant::now();
    while reloads(&c.b) == before && started.elapsed() < DEADLINE {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        reloads(&c.b) > before,
        "no reload after SIGHUP:\n{}",
        c.b.log()
    );
    // The reload lines name the database, never a users file that this node does not use.
    assert!(!c.b.log().contains("users file"), "{}", c.b.log());
    let conn = c.b.logs_in("alice").await.expect("login");
    let mut client = conn.open_rsftp().await.expect("rsftp");
    assert_eq!(client.info().await.unwrap().limit, 4096);
    let refused = client.write("big", 0, &vec![7u8; 64 << 10]).await;
    assert!(refused.is_err(), "a 64 KiB write passes a 4 KiB quota");
    drop(client);
    conn.close().await.ok();

    // The same accounts exported to a users.toml, served by a node of their own: logins
    // read a cache either way. Measured side by side, never asserted.
    let exported = c.storage.parent().unwrap().join("exported.toml");
    admin(
        &c.pg,
        &c.storage,
        &["export", exported.to_str().unwrap()],
        "",
    )
    .await;
    let file_node = FileNode::start(
        &c.storage.parent().unwrap().join("f"),
        &c.storage,
        &exported,
    )
    .await;
    let (mut with_pg, mut with_file) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..5 {
        for (node, total) in [(&c.b, &mut with_pg), (&file_node, &mut with_file)] {
            let started = Instant::now();
            let conn = node.logs_in("alice").await.expect("login");
            *total += started.elapsed();
            conn.close().await.ok();
        }
    }
    eprintln!(
        "password login: {:?} with PostgreSQL, {:?} with users.toml (mean of 5)",
        with_pg / 5,
        with_file / 5
    );
}

/// A node on a users.toml, for comparison.
struct FileNode;

impl FileNode {
    async fn start(dir: &Path, storage: &Path, users: &Path) -> Node {
        std::fs::create_dir_all(dir).unwrap();
        let log = std::fs::File::create(dir.join("stderr")).unwrap();
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_rsftpd"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--storage", storage.to_str().unwrap()])
            .args(["--keys", dir.join("keys").to_str().unwrap()])
            .args(["--logs", dir.join("logs").to_str().unwrap()])
            .args(["--users", users.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("rsftpd starts");
        Node::wait(child, port, dir).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_users_session_on_the_other_node_ends() {
    let c = two_nodes().await;
    add(&c.pg, &c.storage, "alice").await;
    add(&c.pg, &c.storage, "bob").await;
    c.b.wait_for_log("added=bob").await;
    let conn = c.b.logs_in("alice").await.expect("login");
    let mut client = conn.open_rsftp().await.expect("rsftp");
    let bob = c.b.logs_in("bob").await.expect("login");
    let mut bobs = bob.open_rsftp().await.expect("rsftp");
    assert_eq!(client.pwd().await.unwrap(), "/");

    admin(&c.pg, &c.storage, &["del", "alice"], "").await;
    let started = Instant::now();
    let mut ended = false;
    for _ in 0..100 {
        if client.pwd().await.is_err() {
            ended = true;
            break;
        }
        if started.elapsed() > DEADLINE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ended,
        "alice's session on node b still works:\n{}",
        c.b.log()
    );
    assert!(c.b.log().contains("sessions_ended=1"), "{}", c.b.log());
    // Bob's goes on; alice cannot come back, on either node.
    assert_eq!(bobs.pwd().await.unwrap(), "/");
    assert!(c.a.logs_in("alice").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_at_start_stops_start_up() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let url = pg.url();
    pg.stop();
    let mut child = spawn(
        &dir.path().join("a"),
        &dir.path().join("storage"),
        &url,
        free_port(),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "rsftpd kept running"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(dir.path().join("a/stderr")).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot start: the accounts are in PostgreSQL at {}: cannot connect to PostgreSQL at",
            pg.shown()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(PG_PASSWORD), "{stderr}");
    assert!(!dir.path().join("a/users.toml").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_postgres_refuses_new_logins_until_it_is_back() {
    let c = two_nodes().await;
    add(&c.pg, &c.storage, "alice").await;
    c.b.wait_for_log("added=alice").await;
    let conn = c.b.logs_in("alice").await.expect("login");
    let mut client = conn.open_rsftp().await.expect("rsftp");

    c.pg.stop();
    c.b.wait_for_log("lost the connection to PostgreSQL").await;
    assert!(
        c.b.logs_in("alice").await.is_none(),
        "a login without the database"
    );
    c.b.wait_for_log("login refused: the accounts are unavailable")
        .await;
    // The session that was in goes on.
    assert_eq!(client.pwd().await.unwrap(), "/");

    c.pg.resume();
    c.b.wait_for_log("PostgreSQL is back").await;
    assert!(c.b.logs_in("alice").await.is_some(), "{}", c.b.log());
    c.a.wait_for_log("PostgreSQL is back").await;
    assert!(c.a.logs_in("alice").await.is_some(), "{}", c.a.log());
    assert!(!c.b.log().contains(PG_PASSWORD) && !c.b.stderr().contains(PG_PASSWORD));
}

/// An SSH session that logged in and was let in (its subsystem answers), held open.
async fn let_in(
    node: &Node,
    user: &str,
) -> Option<(
    Connection,
    rsftp::client::RsftpClient<russh::ChannelStream<russh::client::Msg>>,
)> {
    let conn = node.logs_in(user).await?;
    let mut client = conn.open_rsftp().await.ok()?;
    client.pwd().await.ok()?;
    Some((conn, client))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_fifty_logins_over_two_nodes_lets_exactly_the_limit_in() {
    // Every connection gets a startup slot: the limit under test is the session limit.
    let c = two_nodes_with(&["--max-startups", "100", "--max-startups-per-peer", "32"]).await;
    admin(
        &c.pg,
        &c.storage,
        &["add", "alice", "--password-stdin", "--max-sessions", "5"],
        &format!("{PASSWORD}\n"),
    )
    .await;
    c.a.wait_for_log("added=alice").await;
    c.b.wait_for_log("added=alice").await;
    let (a, b) = (std::sync::Arc::new(c.a), std::sync::Arc::new(c.b));
    let tries: Vec<_> = (0..50)
        .map(|i| {
            let node = std::sync::Arc::clone(if i % 2 == 0 { &a } else { &b });
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_secs(60), let_in(&node, "alice"))
                    .await
                    .ok()
                    .flatten()
            })
        })
        .collect();
    let mut held = Vec::new();
    for attempt in tries {
        if let Some(session) = attempt.await.unwrap() {
            held.push(session);
        }
    }
    // A refusal's log line may land a moment after the client saw the door shut.
    let count_refusals = || {
        a.log().matches("too many sessions for alice").count()
            + b.log().matches("too many sessions for alice").count()
    };
    let waiting = std::time::Instant::now();
    let mut refusals = count_refusals();
    while refusals < 45 && waiting.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        refusals = count_refusals();
    }
    assert_eq!(
        held.len(),
        5,
        "{refusals} refused\n{}\n{}",
        a.log(),
        b.log()
    );
    assert_eq!(refusals, 45, "every other login was refused by the limit");
    assert_eq!(c.pg.psql("SELECT count(*) FROM session_leases").trim(), "5");
    // Closed sessions give their slots back, on every node.
    for (conn, client) in held {
        drop(client);
        conn.close().await.ok();
    }
    let started = Instant::now();
    while c.pg.psql("SELECT count(*) FROM session_leases").trim() != "0" {
        assert!(started.elapsed() < DEADLINE, "leases were not given back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again: Vec<_> = [&a, &b, &a, &b, &a]
        .iter()
        .map(|n| let_in(n, "alice"))
        .collect();
    let mut back = Vec::new();
    for attempt in again {
        back.push(attempt.await.expect("a freed slot"));
    }
    assert!(let_in(&b, "alice").await.is_none(), "a sixth session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_sessions_stop_counting_when_its_lease_lapses() {
    let c = two_nodes().await;
    admin(
        &c.pg,
        &c.storage,
        &["add", "alice", "--password-stdin", "--max-sessions", "2"],
        &format!("{PASSWORD}\n"),
    )
    .await;
    c.a.wait_for_log("added=alice").await;
    c.b.wait_for_log("added=alice").await;
    let held = [
        let_in(&c.a, "alice").await.expect("first"),
        let_in(&c.a, "alice").await.expect("second"),
    ];
    assert!(let_in(&c.b, "alice").await.is_none(), "a third session");
    let mut a = c.a;
    a.child.kill().expect("SIGKILL node a");
    a.child.wait().expect("reap");
    drop(held);
    // Its leases are not renewed: within the lease time (30 s) and a heartbeat, the
    // slots are free on node b.
    let started = Instant::now();
    let mut back = None;
    for _ in 0..40 {
        if let Some(session) = let_in(&c.b, "alice").await {
            back = Some(session);
            break;
        }
        if started.elapsed() > rsftp::auth::postgres::LEASE + DEADLINE {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        back.is_some(),
        "node a's leases did not lapse:\n{}",
        c.b.log()
    );
    eprintln!(
        "a killed node's sessions stopped counting after {:?}",
        started.elapsed()
    );
}
