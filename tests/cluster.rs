//! Two `rsftpd` nodes sharing one PostgreSQL (accounts, upload states) and one
//! S3-compatible store (homes): an rsftp upload begun on node a, which is then killed
//! with SIGKILL, resumes on node b from the last part a saved, sending only the rest,
//! to an MD5-identical object that was never visible before it was complete; and
//! failed logins through node a ban the address on node b too.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};
use rsftp::auth::Secret;
use rsftp::client::{Connection, HostKeyCheck, NewHostKey, PutStart, Quiet, upload};
use rsftp::storage::object::PART_SIZE;
use tokio::process::{Child, Command};

use crate::admin::{rsftpd, succeeded};
use crate::pg_util::PgCluster;
use crate::s3_util::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};
use crate::util::{Client, data, md5_hex};

const MIB: usize = 1 << 20;
const PASSWORD: &str = "cluster password";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// One node: its own folder (logs, local state), the cluster's host key.
struct Node {
    child: Child,
    port: u16,
    dir: PathBuf,
}

/// What every node of the test cluster shares.
struct Cluster {
    dir: tempfile::TempDir,
    pg: PgCluster,
    s3: S3Server,
}

impl Cluster {
    async fn start() -> Cluster {
        let cluster = Cluster {
            dir: tempfile::tempdir().unwrap(),
            pg: PgCluster::start(),
            s3: S3Server::start(),
        };
        let scratch = cluster.dir.path().join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        let url = cluster.pg.url();
        succeeded(
            &rsftpd(
                &[
                    "user",
                    "--accounts",
                    &url,
                    "--storage",
                    scratch.to_str().unwrap(),
                    "add",
                    "alice",
                    "--password-stdin",
                ],
                format!("{PASSWORD}\n").as_bytes(),
            )
            .await,
        );
        cluster
    }

    /// Starts node `name`, and waits until it serves.
    async fn node(&self, name: &str) -> Node {
        self.node_with(name, &[]).await
    }

    /// [`Cluster::node`], with `extra` arguments.
    async fn node_with(&self, name: &str, extra: &[&str]) -> Node {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("stderr"))
            .unwrap();
        let keys = self.dir.path().join("keys");
        let child = Command::new(env!("CARGO_BIN_EXE_rsftpd"))
            .current_dir(&dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--keys", keys.to_str().unwrap(), "--logs", "logs"])
            .args(["--accounts", &self.pg.url()])
            .args(["--storage", &format!("s3://{BUCKET}/team")])
            .args([
                "--s3-endpoint",
                &self.s3.endpoint(),
                "--s3-region",
                "us-east-1",
            ])
            .args(["--s3-path-style", "--s3-state-dir", "s3-state"])
            .args(extra)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("rsftpd starts");
        let mut node = Node { child, port, dir };
        let started = Instant::now();
        let host_key = keys.join("ssh_host_ed25519_key.pub");
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
            node.dir.join("known_hosts"),
            format!("[127.0.0.1]:{port} {public}"),
        )
        .unwrap();
        node
    }

    /// The parts saved in PostgreSQL for alice's uploads, once there are at least
    /// `at_least` (bounded).
    async fn saved_parts(&self, at_least: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let parts: usize = self
                .pg
                .psql(
                    "SELECT coalesce(sum(cardinality(parts)), 0) FROM upload_states \
                     WHERE account = 'alice'",
                )
                .trim()
                .parse()
                .unwrap();
            if parts >= at_least || Instant::now() > deadline {
                return parts;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Node {
    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// A connection as alice from `127.0.0.<last>`, not logged in yet; `None` if the
    /// node closes it before SSH starts.
    async fn try_connection_from(&self, last: u8) -> Option<Connection> {
        let check = HostKeyCheck {
            known_hosts: self.dir.join("known_hosts"),
            new_key: NewHostKey::Refuse,
        };
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
        Connection::connect_from(source, "127.0.0.1", self.port, "alice", check)
            .await
            .ok()
    }

    async fn connection_from(&self, last: u8) -> Connection {
        self.try_connection_from(last).await.expect("connect")
    }

    /// Whether alice's right password logs in from `127.0.0.<last>`.
    async fn logs_in_from(&self, last: u8) -> bool {
        let Some(mut conn) = self.try_connection_from(last).await else {
            return false;
        };
        let answer = tokio::time::timeout(
            Duration::from_secs(60),
            conn.login_password(&Secret::new(PASSWORD)),
        )
        .await
        .expect("an answer within a minute");
        matches!(answer, Ok(true))
    }

    /// Every log file of the node, in one string.
    fn log(&self) -> String {
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

    /// Waits (bounded) until one log line holds all of `what`.
    async fn wait_for_log(&self, what: &[&str]) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if self
                .log()
                .lines()
                .any(|line| what.iter().all(|w| line.contains(w)))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{what:?} not logged within 10 s:\n{}", self.log());
    }

    async fn client(&self) -> (Connection, Client) {
        client_of(self.connection_from(1).await).await
    }

    /// No state was kept on this node's own disk.
    fn kept_nothing_locally(&self) -> bool {
        std::fs::read_dir(self.dir.join("s3-state/uploads"))
            .map(|mut entries| entries.next().is_none())
            .unwrap_or(true)
    }
}

/// Logs alice in on `conn` and opens rsftp.
async fn client_of(mut conn: Connection) -> (Connection, Client) {
    assert!(
        conn.login_password(&Secret::new(PASSWORD))
            .await
            .expect("login"),
        "password login of alice"
    );
    let client = conn.open_rsftp().await.expect("open rsftp");
    (conn, client)
}

/// Begins an upload of `bytes` as `name` on `node`, sends its first `sent` bytes and
/// waits until `parts` parts are saved in the database.
async fn begin_on(
    cluster: &Cluster,
    node: &Node,
    local: &Path,
    name: &str,
    bytes: &[u8],
    sent: usize,
    parts: usize,
) -> tokio::task::JoinHandle<(Client, Connection)> {
    let (conn, c) = node.client().await;
    begin_with(cluster, conn, c, local, name, bytes, sent, parts).await
}

/// [`begin_on`], on a client already logged in.
#[allow(clippy::too_many_arguments)]
async fn begin_with(
    cluster: &Cluster,
    conn: Connection,
    mut c: Client,
    local: &Path,
    name: &str,
    bytes: &[u8],
    sent: usize,
    parts: usize,
) -> tokio::task::JoinHandle<(Client, Connection)> {
    let first = local.join(format!("{name}.first"));
    std::fs::write(&first, &bytes[..sent]).unwrap();
    let start = c.begin_put(name, bytes.len() as u64, None).await.unwrap();
    assert!(
        matches!(start, PutStart::Have { offset: 0, .. }),
        "{start:?}"
    );
    let file = std::fs::File::open(&first).unwrap();
    let sending = tokio::spawn(async move {
        let _ = c.send_from(0, file, sent as u64, Md5::new(), |_| {}).await;
        (c, conn)
    });
    assert_eq!(
        cluster.saved_parts(parts).await,
        parts,
        "{parts} parts saved before the kill"
    );
    sending
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_begun_on_a_killed_node_resumes_on_another() {
    let cluster = Cluster::start().await;
    let mut a = cluster.node("a").await;
    let b = cluster.node("b").await;
    let local = tempfile::tempdir().unwrap();
    let bytes = data(3 * PART_SIZE as usize + 1234, 21);
    let src = local.path().join("big.bin");
    std::fs::write(&src, &bytes).unwrap();

    let sending = begin_on(
        &cluster,
        &a,
        local.path(),
        "big.bin",
        &bytes,
        2 * PART_SIZE as usize + MIB,
        2,
    )
    .await;
    assert!(cluster.s3.object("team/alice/big.bin").is_none());
    a.child.kill().await.expect("SIGKILL node a");
    let _ = tokio::time::timeout(Duration::from_secs(10), sending).await;
    assert!(
        cluster.s3.object("team/alice/big.bin").is_none(),
        "nothing under the key after the kill"
    );

    let (_conn, mut c) = b.client().await;
    let report = upload(&mut c, &src, "big.bin", &Quiet).await.unwrap();
    assert_eq!(report.resumed_from, 2 * PART_SIZE, "{report:?}");
    assert_eq!(report.transferred, bytes.len() as u64 - 2 * PART_SIZE);
    assert_eq!(report.md5.to_string(), md5_hex(&bytes));
    let stored = cluster.s3.object("team/alice/big.bin").expect("published");
    assert_eq!(md5_hex(&stored), md5_hex(&bytes));
    assert_eq!(cluster.saved_parts(0).await, 0, "the saved state is gone");
    assert!(a.kept_nothing_locally() && b.kept_nothing_locally());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_state_in_the_database_is_not_spliced_onto() {
    let cluster = Cluster::start().await;
    let mut a = cluster.node("a").await;
    let b = cluster.node("b").await;
    let local = tempfile::tempdir().unwrap();
    let bytes = data(2 * PART_SIZE as usize + 99, 22);
    let src = local.path().join("f.bin");
    std::fs::write(&src, &bytes).unwrap();

    let sending = begin_on(
        &cluster,
        &a,
        local.path(),
        "f.bin",
        &bytes,
        PART_SIZE as usize + MIB,
        1,
    )
    .await;
    a.child.kill().await.expect("SIGKILL node a");
    let _ = tokio::time::timeout(Duration::from_secs(10), sending).await;
    cluster
        .pg
        .psql("UPDATE upload_states SET md5_state = 'zz' WHERE account = 'alice'");

    let (_conn, mut c) = b.client().await;
    let start = c.begin_put("f.bin", bytes.len() as u64, None).await;
    assert!(
        !matches!(start, Ok(PutStart::Have { offset, .. }) if offset > 0),
        "resumed from a damaged state: {start:?}"
    );
    assert!(
        cluster.s3.object("team/alice/f.bin").is_none(),
        "nothing published"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_through_one_node_ban_the_address_on_the_other() {
    let cluster = Cluster::start().await;
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    assert!(b.logs_in_from(7).await, "not banned before");

    // The default policy bans an address after 10 failures: two connections of five
    // wrong passwords, all through node a.
    for _ in 0..2 {
        let mut conn = a.connection_from(7).await;
        for _ in 0..5 {
            let answer = tokio::time::timeout(
                Duration::from_secs(60),
                conn.login_password(&Secret::new("a guess")),
            )
            .await
            .expect("an answer within a minute");
            assert!(!matches!(answer, Ok(true)), "a guess logged in");
        }
    }
    a.wait_for_log(&["peer banned on every node", "127.0.0.7"])
        .await;
    b.wait_for_log(&["peer banned by another node", "127.0.0.7"])
        .await;
    assert_eq!(
        cluster
            .pg
            .psql("SELECT count(*) FROM login_failures WHERE peer = '127.0.0.7' AND banned_until > now()")
            .trim(),
        "1"
    );
    // Refused on node b even with the right password; another address still logs in.
    assert!(!b.logs_in_from(7).await, "banned on node b");
    b.wait_for_log(&["connection refused: peer banned", "127.0.0.7"])
        .await;
    assert!(b.logs_in_from(8).await, "only that address is banned");
}

/// HAProxy (docs/haproxy.cfg, with `send-proxy-v2`) in front of two nodes.
struct Balanced {
    cluster: Cluster,
    nodes: Vec<Node>,
    haproxy: std::process::Child,
    front: u16,
    known_hosts: PathBuf,
}

impl Drop for Balanced {
    fn drop(&mut self) {
        let _ = self.haproxy.kill();
        let _ = self.haproxy.wait();
    }
}

impl Balanced {
    async fn start() -> Balanced {
        let cluster = Cluster::start().await;
        let proxy = ["--proxy-from", "127.0.0.1/32"];
        let nodes = vec![
            cluster.node_with("a", &proxy).await,
            cluster.node_with("b", &proxy).await,
        ];
        let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
        let front = free_port();
        let cfg = cluster.dir.path().join("haproxy.cfg");
        std::fs::write(
            &cfg,
            crate::balancer::haproxy_config(front, &ports, Some("send-proxy-v2")),
        )
        .unwrap();
        let haproxy = std::process::Command::new(crate::balancer::HAPROXY)
            .arg("-f")
            .arg(&cfg)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(cluster.dir.path().join("haproxy.stderr")).unwrap())
            .spawn()
            .expect("haproxy starts");
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", front))
            .await
            .is_err()
        {
            assert!(started.elapsed() < Duration::from_secs(30), "no HAProxy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let public =
            std::fs::read_to_string(cluster.dir.path().join("keys/ssh_host_ed25519_key.pub"))
                .unwrap();
        let known_hosts = cluster.dir.path().join("known_hosts");
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{front} {public}")).unwrap();
        Balanced {
            cluster,
            nodes,
            haproxy,
            front,
            known_hosts,
        }
    }

    /// Alice, logged in through the balancer from `127.0.0.<last>`.
    async fn client_from(&self, last: u8) -> (Connection, Client) {
        let check = HostKeyCheck {
            known_hosts: self.known_hosts.clone(),
            new_key: NewHostKey::Refuse,
        };
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
        let conn = Connection::connect_from(source, "127.0.0.1", self.front, "alice", check)
            .await
            .expect("connect through HAProxy");
        client_of(conn).await
    }

    /// The node that logged alice in from `127.0.0.<last>` (each node logs the
    /// client's address, as the PROXY header names it).
    async fn node_of(&self, last: u8) -> usize {
        let peer = format!("127.0.0.{last}:");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            for (i, node) in self.nodes.iter().enumerate() {
                if node
                    .log()
                    .lines()
                    .any(|l| l.contains("login accepted") && l.contains(&peer))
                {
                    return i;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no node logged the login from {peer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_haproxy_an_upload_resumes_on_the_node_left_after_a_kill() {
    if !crate::balancer::have_haproxy() {
        return;
    }
    let mut balanced = Balanced::start().await;
    let local = tempfile::tempdir().unwrap();
    let bytes = data(3 * PART_SIZE as usize + 777, 23);
    let src = local.path().join("via.bin");
    std::fs::write(&src, &bytes).unwrap();

    let (conn, c) = balanced.client_from(3).await;
    let carrier = balanced.node_of(3).await;
    let sending = begin_with(
        &balanced.cluster,
        conn,
        c,
        local.path(),
        "via.bin",
        &bytes,
        2 * PART_SIZE as usize + MIB,
        2,
    )
    .await;
    balanced.nodes[carrier]
        .child
        .kill()
        .await
        .expect("SIGKILL the carrying node");
    let _ = tokio::time::timeout(Duration::from_secs(10), sending).await;
    assert!(balanced.cluster.s3.object("team/alice/via.bin").is_none());

    // The same address again: HAProxy retries the dead node's refusal on the other.
    let (_conn, mut c) = balanced.client_from(3).await;
    let report = upload(&mut c, &src, "via.bin", &Quiet).await.unwrap();
    assert_eq!(report.resumed_from, 2 * PART_SIZE, "{report:?}");
    assert_eq!(report.transferred, bytes.len() as u64 - 2 * PART_SIZE);
    let stored = balanced
        .cluster
        .s3
        .object("team/alice/via.bin")
        .expect("published");
    assert_eq!(md5_hex(&stored), md5_hex(&bytes));
    let other = &balanced.nodes[1 - carrier];
    assert!(
        other
            .log()
            .lines()
            .filter(|l| l.contains("login accepted") && l.contains("127.0.0.3:"))
            .count()
            >= 1,
        "the resume was served by the other node"
    );
}

/// Waits (bounded) until `bans` says `peer`'s ban is `wanted`.
async fn ban_becomes(bans: &rsftp::auth::postgres::PgBans, peer: IpAddr, wanted: bool) -> bool {
    use rsftp::auth::SharedBans as _;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if bans.banned_for(peer, Instant::now()).is_some() == wanted {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_bans_count_across_nodes_expire_and_forget_on_success() {
    use rsftp::auth::postgres::{PgBans, Target, connect_and_migrate};
    use rsftp::auth::{SharedBans as _, ThrottlePolicy};
    let pg = PgCluster::start();
    let target = Target::parse(&pg.url(), None).unwrap();
    connect_and_migrate(&target).await.unwrap();
    let policy = ThrottlePolicy {
        max_failures: 3,
        window: Duration::from_secs(600),
        ban: Duration::from_secs(2),
    };
    let one = PgBans::open(&target, policy).await.unwrap();
    let two = PgBans::open(&target, policy).await.unwrap();
    let (peer, other) = (
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)),
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10)),
    );
    let failures = |p: IpAddr| {
        pg.psql(&format!(
            "SELECT coalesce(max(failures), 0) FROM login_failures WHERE peer = '{p}'"
        ))
        .trim()
        .parse::<u32>()
        .unwrap()
    };
    let wait_failures = |p: IpAddr, n: u32| {
        let failures = &failures;
        async move {
            let started = Instant::now();
            while failures(p) != n && started.elapsed() < Duration::from_secs(10) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            failures(p)
        }
    };

    // Two failures through one node, one through the other: banned on both.
    one.record_failure(peer);
    one.record_failure(peer);
    assert_eq!(wait_failures(peer, 2).await, 2);
    assert!(two.banned_for(peer, Instant::now()).is_none());
    two.record_failure(peer);
    assert!(
        ban_becomes(&two, peer, true).await,
        "banned where it struck"
    );
    assert!(
        ban_becomes(&one, peer, true).await,
        "banned on the other node"
    );
    assert!(one.banned_for(other, Instant::now()).is_none());
    // Failures while banned are not counted; a login does not lift the ban.
    one.record_failure(peer);
    one.record_success(peer);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(failures(peer), 3);
    // The ban ends on time, and the next failure starts a new count.
    assert!(ban_becomes(&one, peer, false).await, "the ban ends");
    assert!(ban_becomes(&two, peer, false).await, "the ban ends");
    two.record_failure(peer);
    assert_eq!(wait_failures(peer, 1).await, 1);

    // A success forgets failures that did not ban.
    one.record_failure(other);
    assert_eq!(wait_failures(other, 1).await, 1);
    one.record_success(other);
    assert_eq!(wait_failures(other, 0).await, 0);
}
