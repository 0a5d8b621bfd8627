//! The test harness: a real `rsftpd` on 127.0.0.1:0 in this process, with its own
//! temporary users.toml, storage and host key, and clients that log in over real SSH.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rsftp::auth::{Secret, hash_password};
use rsftp::client::{Connection, HostKeyCheck, NewHostKey, RsftpClient};
use rsftp::server::{Limits, Server, Settings};
use rsftp::storage::object::ObjectStoreConfig;
use russh::ChannelStream;
use russh::client::Msg;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub type Client = RsftpClient<ChannelStream<Msg>>;

/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// A user to create: name, quota, and whether to give them a key.
pub struct TestUser {
    pub name: &'static str,
    pub quota: &'static str,
    pub max_sessions: Option<u32>,
}

impl TestUser {
    pub fn new(name: &'static str, quota: &'static str) -> TestUser {
        TestUser {
            name,
            quota,
            max_sessions: None,
        }
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    /// Close sessions idle this long (the server's default if `None`).
    pub idle_timeout: Option<Duration>,
    pub dir: TempDir,
    /// Where the homes live: `storage` in `dir`, or a folder the test chose.
    pub storage: PathBuf,
    pub known_hosts: PathBuf,
    /// Homes on an object store rather than in `storage` (which then keeps upload states).
    pub object_store: Option<ObjectStoreConfig>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Each test user's private key, written where `ssh -i` can use it.
pub fn key_path(dir: &Path, user: &str) -> PathBuf {
    dir.join(format!("{user}_ed25519"))
}

impl TestServer {
    pub async fn start(users: &[TestUser]) -> TestServer {
        TestServer::start_with(users, Limits::default()).await
    }

    pub async fn start_with(users: &[TestUser], limits: Limits) -> TestServer {
        TestServer::start_on(users, limits, None).await
    }

    /// Starts with the homes in `storage` (such as a small filesystem the test mounted)
    /// rather than in the server's temporary folder.
    pub async fn start_on(
        users: &[TestUser],
        limits: Limits,
        storage: Option<PathBuf>,
    ) -> TestServer {
        TestServer::start_full(users, limits, storage, None).await
    }

    /// Starts with the homes on an object store.
    pub async fn start_on_object_store(users: &[TestUser], store: ObjectStoreConfig) -> TestServer {
        TestServer::start_full(users, Limits::default(), None, Some(store)).await
    }

    async fn start_full(
        users: &[TestUser],
        limits: Limits,
        storage: Option<PathBuf>,
        object_store: Option<ObjectStoreConfig>,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut toml = String::from("# test accounts\n");
        let hash = hash_password(&Secret::new(PASSWORD)).expect("hash");
        for user in users {
            let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("key");
            let path = key_path(dir.path(), user.name);
            key.write_openssh_file(&path, LineEnding::LF)
                .expect("write key");
            let public = key.public_key().to_openssh().expect("public key");
            toml.push_str(&format!(
                "\n[users.{}]\npassword = \"{}\"\nkeys = [\"{} {}@test\"]\nquota = \"{}\"\n",
                user.name,
                hash.as_str(),
                public,
                user.name,
                user.quota
            ));
            if let Some(n) = user.max_sessions {
                toml.push_str(&format!("max_sessions = {n}\n"));
            }
        }
        std::fs::write(dir.path().join("users.toml"), toml).expect("users.toml");
        // rsftpd refuses a users file that others can read.
        std::fs::set_permissions(
            dir.path().join("users.toml"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod users.toml");
        let mut server = TestServer {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            idle_timeout: None,
            known_hosts: dir.path().join("known_hosts"),
            storage: storage.unwrap_or_else(|| dir.path().join("storage")),
            object_store,
            dir,
            shutdown: None,
            task: None,
        };
        server.launch(limits).await;
        server
    }

    fn settings(&self, limits: Limits) -> Settings {
        let defaults = Settings::default();
        Settings {
            idle_timeout: self.idle_timeout.unwrap_or(defaults.idle_timeout),
            listen: self.addr,
            users_file: self.dir.path().join("users.toml"),
            storage_dir: self.storage.clone(),
            object_store: self.object_store.clone(),
            keys_dir: self.dir.path().join("keys"),
            limits,
            ..defaults
        }
    }

    /// Starts (or restarts) the server on the same port, files and host key.
    pub async fn launch(&mut self, limits: Limits) {
        let prepared = Server::prepare(self.settings(limits)).expect("server prepares");
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("bind");
        self.addr = listener.local_addr().expect("addr");
        let public = std::fs::read_to_string(self.dir.path().join("keys/ssh_host_ed25519_key.pub"))
            .expect("host key");
        std::fs::write(
            &self.known_hosts,
            format!("[127.0.0.1]:{} {}", self.addr.port(), public),
        )
        .expect("known_hosts");
        let (tx, rx) = oneshot::channel();
        self.shutdown = Some(tx);
        self.task = Some(tokio::spawn(async move {
            let _ = prepared
                .server
                .run(listener, async {
                    let _ = rx.await;
                })
                .await;
        }));
    }

    /// Stops the server the way Ctrl-C does, and waits for it.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The real path of a user's home, for planting things on disk.
    pub fn home(&self, user: &str) -> PathBuf {
        self.storage.join(user)
    }

    /// The real path of a user's staging folder, where their partial uploads wait,
    /// outside their home.
    pub fn staging(&self, user: &str) -> PathBuf {
        self.storage.join(".partials").join(user)
    }

    /// What a user's home and partial uploads cost on disk by the quota rule.
    pub fn used_on_disk(&self, user: &str) -> u64 {
        let staging = self.staging(user);
        let partials = if staging.exists() {
            disk_usage(&staging)
        } else {
            0
        };
        disk_usage(&self.home(user)) + partials
    }

    pub fn host_key_check(&self) -> HostKeyCheck {
        HostKeyCheck {
            known_hosts: self.known_hosts.clone(),
            new_key: NewHostKey::Refuse,
        }
    }

    /// An SSH connection, not logged in yet.
    pub async fn connection(&self, user: &str) -> Connection {
        Connection::connect("127.0.0.1", self.addr.port(), user, self.host_key_check())
            .await
            .expect("connect")
    }

    /// Logs in with the password and opens the rsftp subsystem.
    pub async fn client(&self, user: &str) -> (Connection, Client) {
        let mut conn = self.connection(user).await;
        assert!(
            conn.login_password(&Secret::new(PASSWORD))
                .await
                .expect("login"),
            "password login of {user}"
        );
        let client = conn.open_rsftp().await.expect("open rsftp");
        (conn, client)
    }

    /// Logs in with the user's key.
    pub async fn key_login(&self, user: &str) -> Connection {
        let mut conn = self.connection(user).await;
        let key = rsftp::client::load_key(&key_path(self.root(), user), None).expect("key");
        assert!(
            conn.login_key(key).await.expect("key login"),
            "key login of {user}"
        );
        conn
    }

    /// Arguments for OpenSSH's `ssh`, `sftp` or `scp` to reach this server as `user` with
    /// their key, non-interactively.
    pub fn openssh_args(&self, user: &str, port_flag: &str) -> Vec<String> {
        vec![
            port_flag.to_owned(),
            self.addr.port().to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "IdentityAgent=none".into(),
            "-o".into(),
            "ConnectTimeout=10".into(),
            "-o".into(),
            format!("User={user}"),
            "-i".into(),
            key_path(self.root(), user).display().to_string(),
            "-F".into(),
            "/dev/null".into(),
        ]
    }

    /// Runs `ssh ... -s rsftp` as `user` with `input` on stdin.
    pub async fn ssh_subsystem(&self, user: &str, input: &[u8]) -> Output {
        let mut args = self.openssh_args(user, "-p");
        args.extend(["-s".into(), "127.0.0.1".into(), "rsftp".into()]);
        run_with_input("ssh", &args, input).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs a program with `input` on stdin, bounded in time.
pub async fn run_with_input(program: &str, args: &[String], input: &[u8]) -> Output {
    let program = program.to_owned();
    let args = args.to_vec();
    let input = input.to_vec();
    let run = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new(&program)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {program}: {err}"));
        let mut stdin = child.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let output = child.wait_with_output().expect("wait");
        let _ = writer.join();
        output
    });
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("command finished in time")
        .expect("command ran")
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

pub fn md5_hex(bytes: &[u8]) -> String {
    rsftp::protocol::Md5Digest::of(bytes).to_string()
}

/// The rsftp subsystem as raw bytes, for sending what our client never would.
pub struct Raw {
    reader: tokio::io::BufReader<tokio::io::ReadHalf<ChannelStream<Msg>>>,
    writer: tokio::io::WriteHalf<ChannelStream<Msg>>,
    _conn: Connection,
}

impl Raw {
    pub async fn open(server: &TestServer, user: &str) -> Raw {
        let mut conn = server.connection(user).await;
        assert!(conn.login_password(&Secret::new(PASSWORD)).await.unwrap());
        let stream = conn.open_subsystem("rsftp").await.expect("subsystem");
        let (read, writer) = tokio::io::split(stream);
        let mut raw = Raw {
            reader: tokio::io::BufReader::new(read),
            writer,
            _conn: conn,
        };
        let greeting = raw.line().await;
        assert!(greeting.starts_with("OK rsftp/1 "), "{greeting}");
        raw
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.writer.write_all(bytes).await.expect("send");
        self.writer.flush().await.expect("flush");
    }

    /// The next line, or "" at the end of the stream.
    pub async fn line(&mut self) -> String {
        use tokio::io::AsyncBufReadExt;
        let mut line = Vec::new();
        let read = tokio::time::timeout(
            Duration::from_secs(30),
            self.reader.read_until(b'\n', &mut line),
        )
        .await
        .expect("a reply in time");
        read.expect("read");
        String::from_utf8_lossy(&line)
            .trim_end_matches('\n')
            .to_owned()
    }

    /// Sends one request line and returns the status line.
    pub async fn ask(&mut self, request: &str) -> String {
        self.send(format!("{request}\n").as_bytes()).await;
        self.line().await
    }
}

/// Alice and Bob, 10 MiB each: two users whose sessions must not affect each other.
pub async fn two_users() -> TestServer {
    TestServer::start(&[
        TestUser::new("alice", "10MiB"),
        TestUser::new("bob", "10MiB"),
    ])
    .await
}

/// What the entries under `dir` (not `dir` itself) cost by the quota rule: a file its
/// length rounded up to 4 KiB, a folder or a link 4 KiB. Written out again here,
/// rather than calling the server's rule, so that a change to the rule shows.
pub fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            total += 4096 + disk_usage(&entry.path());
        } else if kind.is_file() {
            total += entry.metadata().unwrap().len().div_ceil(4096) * 4096;
        } else {
            total += 4096;
        }
    }
    total
}
