//! Several `rsftpd` nodes behind HAProxy (`/usr/sbin/haproxy`, TCP mode, health checks
//! on the SSH banner): two child nodes share one storage folder, one users file and one
//! host key. Logins and transfers go through the balancer; with `send-proxy-v2` and
//! `--proxy-from` the nodes log the real client; a forged PROXY header is refused; a
//! killed node's share goes to the other within seconds; SIGTERM drains.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rsftp::auth::Secret;
use rsftp::client::{Connection, HostKeyCheck, NewHostKey, Quiet, download, upload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{PASSWORD, TestServer, TestUser, data, md5_hex};

pub(crate) const HAPROXY: &str = "/usr/sbin/haproxy";
const CLIENT: [u8; 4] = [127, 0, 0, 2];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether HAProxy is here; scripts/test installs it. Without it the tests say so and
/// pass, as the other tests of optional tools do.
pub(crate) fn have_haproxy() -> bool {
    let found = Path::new(HAPROXY).exists();
    if !found {
        eprintln!("skipped: {HAPROXY} is not installed (scripts/test installs it)");
    }
    found
}

/// A child process, killed (by its pid) and reaped when dropped.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([name, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {name}");
    }

    /// Waits (bounded) for the process to exit.
    async fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Waits (bounded) until the log has `needle`.
    async fn log_with(&self, needle: &str) -> String {
        self.log_with_times(needle, 1).await
    }

    /// The log once it holds `needle` `times` times, or after 10 s, whichever is first:
    /// a line may land a moment after the client saw its connection close.
    async fn log_with_times(&self, needle: &str, times: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.matches(needle).count() >= times || Instant::now() > deadline {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An `rsftpd` node on the files of `root`, with its own log folder and stderr file.
async fn node(root: &Path, name: &str, port: u16, extra: &[&str]) -> Process {
    let log = root.join(format!("{name}.stderr"));
    let child = Command::new(env!("CARGO_BIN_EXE_rsftpd"))
        .current_dir(root)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--users",
            "users.toml",
            "--storage",
            "storage",
            "--keys",
            "keys",
        ])
        .args(["--logs", &format!("logs-{name}")])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("rsftpd starts");
    let process = Process { child, log };
    wait_listening(port).await;
    process
}

async fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The HAProxy config of the tests: docs/haproxy.cfg with these ports, logging nowhere,
/// and round robin (so that a test knows which node comes next).
pub(crate) fn haproxy_config(front: u16, nodes: &[u16], proxy: Option<&str>) -> String {
    let doc = include_str!("../docs/haproxy.cfg");
    let mut cfg = String::new();
    let mut changed = 0;
    for line in doc.lines() {
        let line = match line.trim() {
            "log /dev/log local0" => String::new(),
            "bind :2222" => format!("    bind 127.0.0.1:{front}"),
            "balance leastconn" => "    balance roundrobin".to_owned(),
            server if server.starts_with("server ") => continue,
            _ => {
                cfg.push_str(line);
                cfg.push('\n');
                continue;
            }
        };
        changed += 1;
        cfg.push_str(&line);
        cfg.push('\n');
    }
    assert_eq!(changed, 3, "docs/haproxy.cfg changed shape:\n{doc}");
    for (i, port) in nodes.iter().enumerate() {
        cfg.push_str(&format!(
            "    server node{i} 127.0.0.1:{port} check inter 1s fall 2 rise 1{}\n",
            proxy.map(|p| format!(" {p}")).unwrap_or_default()
        ));
    }
    cfg
}

/// Two nodes on one set of files, and HAProxy in front of them.
struct Cluster {
    server: TestServer,
    nodes: Vec<Process>,
    node_ports: Vec<u16>,
    haproxy: Process,
    front: u16,
}

impl Cluster {
    /// With `proxy` (`send-proxy` or `send-proxy-v2`), HAProxy sends that header and the
    /// nodes trust 127.0.0.1 for it.
    async fn start(proxy: Option<&str>, extra: &[&str]) -> Cluster {
        let mut server = TestServer::start(&[TestUser::new("alice", "1GiB")]).await;
        server.stop().await;
        let root = server.root().to_owned();
        let mut args: Vec<&str> = extra.to_vec();
        if proxy.is_some() {
            args.extend(["--proxy-from", "127.0.0.1/32"]);
        }
        let node_ports = vec![free_port(), free_port()];
        let mut nodes = Vec::new();
        for (name, port) in ["a", "b"].iter().zip(&node_ports) {
            nodes.push(node(&root, name, *port, &args).await);
        }
        let front = free_port();
        let cfg = root.join("haproxy.cfg");
        std::fs::write(&cfg, haproxy_config(front, &node_ports, proxy)).unwrap();
        let log = root.join("haproxy.log");
        let child = Command::new(HAPROXY)
            .arg("-f")
            .arg(&cfg)
            .arg("-db")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(root.join("haproxy.stderr")).unwrap())
            .spawn()
            .expect("haproxy starts");
        let haproxy = Process { child, log };
        wait_listening(front).await;
        // One host key for all: the balancer's address and each node's share one line.
        let public = std::fs::read_to_string(root.join("keys/ssh_host_ed25519_key.pub")).unwrap();
        let known: String = std::iter::once(front)
            .chain(node_ports.iter().copied())
            .map(|port| format!("[127.0.0.1]:{port} {public}"))
            .collect();
        std::fs::write(&server.known_hosts, known).unwrap();
        server.addr.set_port(front);
        Cluster {
            server,
            nodes,
            node_ports,
            haproxy,
            front,
        }
    }

    fn check(&self) -> HostKeyCheck {
        HostKeyCheck {
            known_hosts: self.server.known_hosts.clone(),
            new_key: NewHostKey::Refuse,
        }
    }

    /// Logs in as alice through the balancer (or to `port`), from the address `source`.
    async fn login(&self, port: u16, source: IpAddr) -> Result<Connection, String> {
        let mut conn = Connection::connect_from(source, "127.0.0.1", port, "alice", self.check())
            .await
            .map_err(|err| err.to_string())?;
        match conn.login_password(&Secret::new(PASSWORD)).await {
            Ok(true) => Ok(conn),
            Ok(false) => Err("password refused".into()),
            Err(err) => Err(err.to_string()),
        }
    }

    /// Logs in from the client's address through the balancer until every node has
    /// logged a login (bounded): a node that a health check found slow under load may
    /// be skipped for a round. Returns the sessions, held open.
    async fn logins_on_every_node(&self) -> Vec<Connection> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut held = Vec::new();
        for _ in 0..20 {
            let conn = self.login(self.front, CLIENT.into()).await.unwrap();
            conn.open_subsystem("rsftp").await.unwrap();
            held.push(conn);
            let on_every_node = (0..self.nodes.len()).all(|node| self.logins_on(node) > 0);
            if (held.len() >= self.nodes.len() && on_every_node) || Instant::now() > deadline {
                break;
            }
        }
        held
    }

    fn logins_on(&self, node: usize) -> usize {
        self.nodes[node].log().matches("login accepted").count()
    }
}

/// Sends `bytes` and waits (bounded) for the peer to close; returns what it sent back.
async fn send_and_wait_close(stream: &mut tokio::net::TcpStream, bytes: &[u8]) -> Vec<u8> {
    let _ = stream.write_all(bytes).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the connection was not closed");
    got
}

async fn connect_from(source: IpAddr, port: u16) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_and_transfers_through_the_balancer_reach_both_nodes() {
    if !have_haproxy() {
        return;
    }
    let cluster = Cluster::start(None, &[]).await;
    let local = tempfile::tempdir().unwrap();
    let bytes = data(3 * 1024 * 1024, 14);
    let src = local.path().join("up.bin");
    std::fs::write(&src, &bytes).unwrap();
    // Round robin: four sessions, two on each node, all on the same files.
    for i in 0..4 {
        let conn = cluster
            .login(cluster.front, IpAddr::from([127, 0, 0, 1]))
            .await
            .unwrap_or_else(|err| panic!("login {i} through the balancer: {err}"));
        let mut c = rsftp::client::RsftpClient::start(conn.open_subsystem("rsftp").await.unwrap())
            .await
            .unwrap();
        let name = format!("f{i}");
        let up = upload(&mut c, &src, &name, &Quiet).await.unwrap();
        assert_eq!(up.md5.to_string(), md5_hex(&bytes));
        // The file the other node wrote a moment ago is there for this one.
        if i > 0 {
            let dest = local.path().join(format!("down{i}"));
            download(&mut c, &format!("f{}", i - 1), &dest, false, &Quiet)
                .await
                .unwrap();
            assert_eq!(std::fs::read(&dest).unwrap(), bytes);
        }
    }
    assert_eq!(cluster.logins_on(0), 2, "{}", cluster.nodes[0].log());
    assert_eq!(cluster.logins_on(1), 2, "{}", cluster.nodes[1].log());
    // Without --proxy-from the nodes see the balancer, and the health checks stay quiet.
    assert!(cluster.nodes[0].log().contains("peer=127.0.0.1:"));
    assert!(!cluster.nodes[0].log().contains("PROXY"));
    // A wrong password through the balancer is still refused.
    let mut conn = Connection::connect("127.0.0.1", cluster.front, "alice", cluster.check())
        .await
        .unwrap();
    assert!(!conn.login_password(&Secret::new("wrong")).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_send_proxy_v2_the_nodes_see_the_real_client_and_refuse_forgeries() {
    if !have_haproxy() {
        return;
    }
    let cluster = Cluster::start(Some("send-proxy-v2"), &[]).await;
    let _held = cluster.logins_on_every_node().await;
    for node in &cluster.nodes {
        let log = node.log_with("login accepted").await;
        let line = log
            .lines()
            .find(|l| l.contains("login accepted"))
            .unwrap_or_else(|| panic!("no login line: {log}"));
        assert!(line.contains("peer=127.0.0.2:"), "{line}");
        // The health checks (v2 LOCAL headers) are neither refused nor logged.
        assert!(!log.contains("connection refused"), "{log}");
    }

    // A client that goes to a node directly and names another address is refused...
    let node = cluster.node_ports[0];
    let mut forged = connect_from(CLIENT.into(), node).await;
    let got = send_and_wait_close(
        &mut forged,
        b"PROXY TCP4 192.0.2.99 127.0.0.1 5555 22\r\nSSH-2.0-forger\r\n",
    )
    .await;
    assert!(!String::from_utf8_lossy(&got).contains("192.0.2.99"));
    let log = cluster.nodes[0]
        .log_with("PROXY header from an address not in --proxy-from")
        .await;
    assert!(
        log.contains("peer=127.0.0.2:") && log.contains("not in --proxy-from"),
        "{log}"
    );
    assert!(!log.contains("192.0.2.99"), "{log}");
    // ...a v2 header the same...
    let mut v2 = connect_from(CLIENT.into(), node).await;
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    header.extend_from_slice(&[192, 0, 2, 98, 127, 0, 0, 1, 0x15, 0xb3, 0, 22]);
    send_and_wait_close(&mut v2, &header).await;
    let log = cluster.nodes[0]
        .log_with_times("not in --proxy-from", 2)
        .await;
    assert_eq!(log.matches("not in --proxy-from").count(), 2, "{log}");
    // ...while the same client without a header logs in directly.
    cluster.login(node, CLIENT.into()).await.unwrap();
    // A connection from the balancer's own address without a header is refused too.
    let mut bare = connect_from([127, 0, 0, 1].into(), node).await;
    send_and_wait_close(&mut bare, b"SSH-2.0-OpenSSH_9.2\r\n").await;
    let log = cluster.nodes[0]
        .log_with("bad or missing PROXY header")
        .await;
    assert!(log.contains("no PROXY header"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_logins_go_to_the_other_within_seconds() {
    if !have_haproxy() {
        return;
    }
    let mut cluster = Cluster::start(Some("send-proxy-v2"), &[]).await;
    cluster.nodes[0].child.kill().unwrap();
    cluster.nodes[0].child.wait().unwrap();
    let killed = Instant::now();
    let before = cluster.logins_on(1);
    // Within 10 s, four logins in a row succeed, every one of them on the survivor.
    let mut in_a_row = 0;
    while in_a_row < 4 {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "logins still fail 10 s after the kill; haproxy: {}",
            cluster.haproxy.log()
        );
        match cluster.login(cluster.front, CLIENT.into()).await {
            Ok(_) => in_a_row += 1,
            Err(_) => {
                in_a_row = 0;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let log = cluster.nodes[1].log_with("login accepted").await;
    assert!(cluster.logins_on(1) >= before + 4, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_node_a_transfer_finishes_and_it_exits_0() {
    if !have_haproxy() {
        return;
    }
    let mut cluster = Cluster::start(Some("send-proxy-v2"), &["--drain-timeout", "4"]).await;
    let node = cluster.node_ports[0];
    // One session that will move a file, one that will sit idle through the drain.
    let busy = cluster.login(node, CLIENT.into()).await.unwrap();
    let _idle = cluster.login(node, CLIENT.into()).await.unwrap();
    let mut c = rsftp::client::RsftpClient::start(busy.open_subsystem("rsftp").await.unwrap())
        .await
        .unwrap();
    let signalled = Instant::now();
    cluster.nodes[0].signal("-TERM");
    // The node stops taking connections at once...
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", node))
        .await
        .is_ok()
    {
        assert!(Instant::now() < deadline, "the draining node still accepts");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and the balancer sends new logins to the other node...
    let via = cluster.login(cluster.front, CLIENT.into()).await;
    assert!(via.is_ok(), "{:?}", via.err());
    // ...while the session that was there moves a file from start to end.
    let local = tempfile::tempdir().unwrap();
    let bytes = data(4 * 1024 * 1024, 15);
    let src = local.path().join("up.bin");
    std::fs::write(&src, &bytes).unwrap();
    let report = upload(&mut c, &src, "drained.bin", &Quiet).await.unwrap();
    assert_eq!(report.md5.to_string(), md5_hex(&bytes));
    c.quit().await.unwrap();
    drop(busy);
    // The idle session is cut at the drain timeout, and the node exits 0.
    let status = cluster.nodes[0]
        .exit_within(Duration::from_secs(20))
        .await
        .expect("the node exits after draining");
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(3),
        "cut before the drain timeout"
    );
    let log = cluster.nodes[0].log();
    assert!(log.contains("draining"), "{log}");
    assert!(log.contains("drain over") && log.contains("cut=1"), "{log}");
    assert_eq!(
        std::fs::read(cluster.server.home("alice").join("drained.bin")).unwrap(),
        bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_send_proxy_v1_the_nodes_see_the_real_client_too() {
    if !have_haproxy() {
        return;
    }
    let cluster = Cluster::start(Some("send-proxy"), &[]).await;
    let _held = cluster.logins_on_every_node().await;
    for node in &cluster.nodes {
        let log = node.log_with("login accepted").await;
        let line = log
            .lines()
            .find(|l| l.contains("login accepted"))
            .unwrap_or_else(|| panic!("no login line: {log}"));
        assert!(line.contains("peer=127.0.0.2:"), "{line}");
        assert!(!log.contains("connection refused"), "{log}");
    }
    // A wrong password through the balancer counts against the client, not the balancer.
    let mut conn = Connection::connect_from(
        CLIENT.into(),
        "127.0.0.1",
        cluster.front,
        "alice",
        cluster.check(),
    )
    .await
    .unwrap();
    assert!(!conn.login_password(&Secret::new("wrong")).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = cluster.nodes[0].log() + &cluster.nodes[1].log();
        if log.contains("login rejected") || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let rejected = log
        .lines()
        .find(|l| l.contains("login rejected"))
        .unwrap_or_else(|| panic!("no rejection: {log}"));
    assert!(rejected.contains("peer=127.0.0.2:"), "{rejected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_cuts_the_drain_short() {
    if !have_haproxy() {
        return;
    }
    let mut cluster = Cluster::start(None, &["--drain-timeout", "60"]).await;
    let _idle = cluster
        .login(cluster.node_ports[0], CLIENT.into())
        .await
        .unwrap();
    cluster.nodes[0].signal("-TERM");
    cluster.nodes[0].log_with("draining").await;
    // Still draining: the idle session holds it open for a minute.
    assert!(
        cluster.nodes[0]
            .exit_within(Duration::from_millis(500))
            .await
            .is_none(),
        "exited before the drain timeout with a session open"
    );
    cluster.nodes[0].signal("-TERM");
    let status = cluster.nodes[0]
        .exit_within(Duration::from_secs(15))
        .await
        .expect("a second SIGTERM ends the drain");
    assert!(status.success(), "{status:?}");
    let log = cluster.nodes[0].log();
    assert!(
        log.contains("drain cut short") && log.contains("cut=1"),
        "{log}"
    );
}
