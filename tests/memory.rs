//! Memory stays bounded whatever a client asks: directory listings are read from the
//! directory as they go out, and handles are capped per connection. Measured on a real
//! `rsftpd` child process, whose resident size is its own.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rsftp::auth::Secret;
use rsftp::client::Connection;

use crate::sftp_raw::{HANDLE, NAME, RawSftp, STATUS, body, frame, string};
use crate::util::{PASSWORD, TestServer, TestUser};

/// A real `rsftpd` on the files of a [`TestServer`] (which is stopped first), so that
/// its memory can be read from `/proc` and it can be killed and started again.
pub struct Daemon {
    child: Child,
    pub server: TestServer,
    extra: Vec<String>,
}

/// Runs `rsftpd` on the files in `root`; its log is appended to `root/stderr`.
fn spawn(root: &std::path::Path, port: u16, extra: &[String]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("stderr"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_rsftpd"))
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
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("rsftpd starts")
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    pub async fn start(users: &[TestUser], extra: &[&str]) -> Daemon {
        let mut server = TestServer::start(users).await;
        server.stop().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let root = server.root().to_owned();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let child = spawn(&root, port, &extra);
        let public = std::fs::read_to_string(root.join("keys/ssh_host_ed25519_key.pub")).unwrap();
        std::fs::write(&server.known_hosts, format!("[127.0.0.1]:{port} {public}")).unwrap();
        server.addr.set_port(port);
        let daemon = Daemon {
            child,
            server,
            extra,
        };
        daemon.wait_listening().await;
        daemon
    }

    async fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(self.server.addr)
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "rsftpd did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the daemon with SIGKILL, as a crash or the OOM killer does, and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL rsftpd");
        self.child.wait().expect("reap rsftpd");
    }

    /// Starts the daemon again, on the same port, files and arguments.
    pub async fn restart(&mut self) {
        self.child = spawn(self.server.root(), self.server.addr.port(), &self.extra);
        self.wait_listening().await;
    }

    /// `VmRSS` or `VmHWM` (the peak) of the daemon, in bytes.
    pub fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap_or_else(|| panic!("no {field} in {status}"));
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap();
        kib * 1024
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss(&self) -> u64 {
        self.memory("VmRSS:")
    }

    pub async fn login(&self, user: &str) -> Connection {
        let mut conn = self.server.connection(user).await;
        assert!(conn.login_password(&Secret::new(PASSWORD)).await.unwrap());
        conn
    }
}

pub const MIB: u64 = 1024 * 1024;

const OPENDIR: u8 = 11;
const READDIR: u8 = 12;
const CLOSE: u8 = 4;

/// Files made straight on disk, with names of `len` bytes.
fn many_files(dir: &std::path::Path, count: usize, len: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let pad = "n".repeat(len - 6);
    for i in 0..count {
        std::fs::File::create(dir.join(format!("{i:06}{pad}"))).unwrap();
    }
}

async fn sftp(conn: &Connection) -> RawSftp {
    let mut sftp = RawSftp::from_stream(conn.open_subsystem("sftp").await.unwrap());
    sftp.init().await;
    sftp
}

/// Reads a directory handle to its end; returns the names.
async fn read_all(sftp: &mut RawSftp, id: &mut u32, handle: &[u8]) -> Vec<Vec<u8>> {
    let mut names = Vec::new();
    for _ in 0..10_000 {
        *id += 1;
        sftp.send(&frame(READDIR, &body(*id, &[&string(handle)])))
            .await;
        let reply = sftp.reply().await;
        assert_eq!(reply.id, *id);
        if reply.kind == STATUS {
            assert_eq!(reply.code(), 1, "EOF: {}", reply.message());
            return names;
        }
        assert_eq!(reply.kind, NAME);
        let count = u32::from_be_bytes(reply.rest[..4].try_into().unwrap());
        let mut at = 4;
        let text = |at: &mut usize| {
            let len = u32::from_be_bytes(reply.rest[*at..*at + 4].try_into().unwrap()) as usize;
            let s = reply.rest[*at + 4..*at + 4 + len].to_vec();
            *at += 4 + len;
            s
        };
        for _ in 0..count {
            names.push(text(&mut at));
            text(&mut at);
            // ATTRS: flags, then size, uid/gid, permissions, times (all ours send).
            at += 4 + 8 + 8 + 4 + 8;
        }
    }
    panic!("the listing did not end");
}

/// 2 channels × 256 OPENDIR on a folder of 30,000 long names: each handle used to hold
/// the whole listing twice (gigabytes in all); now a handle costs a read buffer, and
/// the connection holds 256 handles at most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_opendirs_of_a_large_folder_keep_memory_bounded() {
    let daemon = Daemon::start(&[TestUser::new("alice", "1GiB")], &[]).await;
    many_files(&daemon.server.home("alice").join("many"), 30_000, 200);
    let run = async {
        let conn = daemon.login("alice").await;
        let mut first = sftp(&conn).await;
        let mut second = sftp(&conn).await;
        let baseline = daemon.rss();
        let bound = baseline + 128 * MIB;
        let mut id = 0u32;
        let mut handles = Vec::new();
        let mut refused = Vec::new();
        for channel in [&mut first, &mut second] {
            for _group in 0..16 {
                for _ in 0..16 {
                    id += 1;
                    channel
                        .send(&frame(OPENDIR, &body(id, &[&string(b"/many")])))
                        .await;
                }
                for _ in 0..16 {
                    let reply = channel.reply().await;
                    match reply.kind {
                        HANDLE => handles.push(reply.first_string()),
                        STATUS => refused.push(reply.message()),
                        other => panic!("reply type {other}"),
                    }
                }
                let rss = daemon.rss();
                assert!(
                    rss < bound,
                    "server RSS {} MiB after {} handles (started at {} MiB)",
                    rss / MIB,
                    handles.len(),
                    baseline / MIB
                );
            }
        }
        // The first channel got every handle; the second hit the connection's cap.
        assert_eq!((handles.len(), refused.len()), (256, 256));
        assert!(refused[0].contains("on this connection"), "{}", refused[0]);
        // One handle to its end (30,000 names and the two dots, each once), then one
        // batch from every other handle.
        let mut names = read_all(&mut first, &mut id, &handles[0]).await;
        assert_eq!(names.len(), 30_002);
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 30_002, "each name once");
        for handle in &handles[1..] {
            id += 1;
            first
                .send(&frame(READDIR, &body(id, &[&string(handle)])))
                .await;
        }
        for _ in &handles[1..] {
            assert_eq!(first.reply().await.kind, NAME);
        }
        let rss = daemon.rss();
        eprintln!(
            "512 OPENDIR of 30,000 names: RSS {} MiB -> {} MiB",
            baseline / MIB,
            rss / MIB
        );
        assert!(rss < bound, "server RSS {} MiB after reading", rss / MIB);
        // Closing handles gives their slots back to the connection.
        for handle in &handles[..10] {
            id += 1;
            first
                .send(&frame(CLOSE, &body(id, &[&string(handle)])))
                .await;
            assert_eq!(first.status(id).await.0, 0);
        }
        let mut reopened = 0;
        for _ in 0..11 {
            id += 1;
            second
                .send(&frame(OPENDIR, &body(id, &[&string(b"/many")])))
                .await;
            if second.reply().await.kind == HANDLE {
                reopened += 1;
            }
        }
        assert_eq!(reopened, 10);
        drop((first, second));
        let _ = conn.close().await;
    };
    tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("done in time");
}

/// A folder of 100,000 entries lists through both subsystems, every name once, without
/// the server building the whole listing as entries or as one reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_of_100000_entries_lists_through_both_subsystems() {
    let daemon = Daemon::start(&[TestUser::new("alice", "1GiB")], &[]).await;
    many_files(&daemon.server.home("alice").join("big"), 100_000, 100);
    let run = async {
        let conn = daemon.login("alice").await;
        let mut client = conn.open_rsftp().await.unwrap();
        let baseline = daemon.rss();
        let entries = client.ls(Some("big")).await.unwrap();
        assert_eq!(entries.len(), 100_000);
        assert!(
            entries.windows(2).all(|w| w[0].name < w[1].name),
            "in byte order"
        );
        let mut sftp = sftp(&conn).await;
        sftp.send(&frame(OPENDIR, &body(1, &[&string(b"/big")])))
            .await;
        let reply = sftp.reply().await;
        assert_eq!(reply.kind, HANDLE, "{reply:?}");
        let mut id = 1;
        let mut names = read_all(&mut sftp, &mut id, &reply.first_string()).await;
        assert_eq!(names.len(), 100_002);
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 100_002, "each name once");
        // The listings held at most their compact records: 100,000 entries as `Entry`s
        // and one reply text took over 40 MiB.
        let peak = daemon.memory("VmHWM:");
        eprintln!(
            "100,000 entries: RSS {} MiB, peak {} MiB",
            baseline / MIB,
            peak / MIB
        );
        assert!(
            peak < baseline + 32 * MIB,
            "peak RSS {} MiB, from {} MiB",
            peak / MIB,
            baseline / MIB
        );
        // Refused: a file is not a directory for OPENDIR.
        std::fs::write(daemon.server.home("alice").join("plain"), b"x").unwrap();
        sftp.send(&frame(OPENDIR, &body(99, &[&string(b"/plain")])))
            .await;
        let (code, message) = sftp.status(99).await;
        assert_ne!(code, 0, "{message}");
        drop(sftp);
        drop(client);
        let _ = conn.close().await;
    };
    tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("done in time");
}
