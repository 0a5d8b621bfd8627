//! The load run behind `cargo bench --bench load` and the `load::` integration tests:
//! a real `rsftpd` child process, and many sessions of our client library in this
//! process, all logged in at once, each putting and getting files (mostly small, some
//! large, over rsftp and SFTP) until a deadline, every copy checked by MD5 against its
//! source. The server's resident size is sampled from `/proc` all along.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use rsftp::client::{Connection, HostKeyCheck, NewHostKey, Quiet, download, load_key, upload};
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey};
use tokio::sync::Semaphore;

pub const MIB: u64 = 1024 * 1024;

/// How big a run is.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Sessions logged in at once, each with one channel.
    pub sessions: usize,
    /// Accounts they are spread over.
    pub users: usize,
    /// Every `large_every`-th session moves the large file; the others small ones.
    pub large_every: usize,
    /// Every `sftp_every`-th session speaks SFTP; the others rsftp.
    pub sftp_every: usize,
    pub large: usize,
    /// The small files go from 1 byte up to this.
    pub small_max: usize,
    /// How long the sessions transfer, once all are in.
    pub duration: Duration,
    /// The server's `--memory-budget`.
    pub budget_mib: u64,
}

impl Plan {
    /// The flag's budget, or 1 MiB for each session if that is more.
    pub fn effective_budget(&self) -> u64 {
        (self.budget_mib * MIB).max(self.sessions as u64 * MIB)
    }

    /// 500 sessions for 30 s, one in ten moving 16 MiB.
    pub fn full() -> Plan {
        Plan {
            sessions: 500,
            users: 20,
            large_every: 10,
            sftp_every: 4,
            large: 16 << 20,
            small_max: 64 << 10,
            duration: Duration::from_secs(30),
            budget_mib: 512,
        }
    }

    /// A size for CI: `sessions` sessions for a few seconds, small files.
    pub fn smoke(sessions: usize) -> Plan {
        Plan {
            sessions,
            users: 6,
            large_every: 10,
            sftp_every: 4,
            large: 2 << 20,
            small_max: 16 << 10,
            duration: Duration::from_secs(5),
            budget_mib: 64,
        }
    }
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct Figures {
    /// Sessions that were logged in, all at the same time, before transfers began.
    pub held: usize,
    /// Copies whose MD5, computed here on the bytes that came back, was the source's.
    pub verified: u64,
    /// Bytes put and got.
    pub bytes: u64,
    pub rss_idle: u64,
    pub rss_held: u64,
    /// The highest `VmRSS` sampled, and the kernel's `VmHWM`.
    pub rss_peak: u64,
    pub hwm: u64,
    pub login: Duration,
    pub wall: Duration,
    pub errors: Vec<String>,
}

impl Figures {
    /// The bound on the server's memory: twice its budget, over what it held idle. The
    /// budget is the one the share rule gives: every connection gets 1 MiB at least
    /// (`docs/OPERATIONS.md`, "Memory"), so 500 sessions hold 500 MiB whatever the flag.
    pub fn rss_bound(&self, plan: &Plan) -> u64 {
        self.rss_idle + 2 * plan.effective_budget()
    }

    pub fn print(&self, plan: &Plan) {
        println!("sessions held at once: {} of {}", self.held, plan.sessions);
        println!(
            "copies verified (MD5): {} ({} MiB moved)",
            self.verified,
            self.bytes / MIB
        );
        println!(
            "server RSS: idle {} MiB, all sessions in {} MiB, peak sampled {} MiB, VmHWM {} MiB (bound {} MiB)",
            self.rss_idle / MIB,
            self.rss_held / MIB,
            self.rss_peak / MIB,
            self.hwm / MIB,
            self.rss_bound(plan) / MIB
        );
        println!(
            "wall time: {:.1} s ({:.1} s to log every session in)",
            self.wall.as_secs_f64(),
            self.login.as_secs_f64()
        );
        println!("errors: {}", self.errors.len());
        for error in self.errors.iter().take(20) {
            println!("  {error}");
        }
    }
}

/// Raises the soft limit on open files to the hard one, for this process and the
/// server it starts: 500 sessions are 1,000 sockets here and more files there.
pub fn raise_open_files() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    let _ = setrlimit(Resource::Nofile, raised);
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// A child `rsftpd`, killed when dropped.
pub struct Daemon {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub users: Vec<(String, PrivateKey)>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts `rsftpd` with `users` accounts (`load0`, `load1`, ...), each with a key,
    /// and limits wide enough for `sessions`.
    pub async fn start(users: usize, sessions: usize, budget_mib: u64) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut toml = String::from("# load accounts\n");
        let mut keys = Vec::new();
        for n in 0..users {
            let name = format!("load{n}");
            let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("key");
            let path = dir.path().join(format!("{name}_ed25519"));
            key.write_openssh_file(&path, LineEnding::LF)
                .expect("write key");
            let public = key.public_key().to_openssh().expect("public key");
            toml.push_str(&format!(
                "\n[users.{name}]\nkeys = [\"{public}\"]\nquota = \"100GiB\"\n"
            ));
            keys.push((name, load_key(&path, None).expect("load key")));
        }
        let users_file = dir.path().join("users.toml");
        std::fs::write(&users_file, toml).expect("users.toml");
        std::fs::set_permissions(
            &users_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod users.toml");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let wide = (sessions + 50).to_string();
        let log = std::fs::File::create(dir.path().join("stderr")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_rsftpd"))
            .current_dir(dir.path())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--users", "users.toml", "--storage", "storage"])
            .args(["--keys", "keys", "--logs", "logs"])
            .args(["--max-sessions", &wide, "--max-startups", &wide])
            .args(["--max-startups-per-peer", &wide, "--max-waiting", &wide])
            .args(["--max-waiting-per-peer", &wide])
            .args(["--memory-budget", &format!("{budget_mib}MiB")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("rsftpd starts");
        let daemon = Daemon {
            child,
            dir,
            port,
            users: keys,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "rsftpd did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The port opens a moment before the host key is written: wait for the key too.
        let key = daemon.dir.path().join("keys/ssh_host_ed25519_key.pub");
        let public = loop {
            match std::fs::read_to_string(&key) {
                Ok(public) if public.ends_with('\n') => break public,
                _ => {
                    assert!(Instant::now() < deadline, "rsftpd wrote no host key");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        std::fs::write(daemon.known_hosts(), format!("[127.0.0.1]:{port} {public}"))
            .expect("known_hosts");
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// `VmRSS:` or `VmHWM:` of the server, in bytes; 0 once it is gone.
    pub fn memory(&self, field: &str) -> u64 {
        memory_of(self.pid(), field)
    }

    /// Logs user number `n` in with their key.
    pub async fn login(&self, n: usize) -> Result<Connection, String> {
        let (name, key) = &self.users[n % self.users.len()];
        let check = HostKeyCheck {
            known_hosts: self.known_hosts(),
            new_key: NewHostKey::Refuse,
        };
        let mut conn = Connection::connect("127.0.0.1", self.port, name, check)
            .await
            .map_err(|e| format!("connect as {name}: {e}"))?;
        match conn.login_key(key.clone()).await {
            Ok(true) => Ok(conn),
            Ok(false) => Err(format!("key login of {name} refused")),
            Err(e) => Err(format!("key login of {name}: {e}")),
        }
    }

    /// The real path of user `n`'s home.
    pub fn home(&self, n: usize) -> PathBuf {
        let (name, _) = &self.users[n % self.users.len()];
        self.dir.path().join("storage").join(name)
    }
}

pub fn memory_of(pid: u32, field: &str) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
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

fn md5_of(data: &[u8]) -> String {
    rsftp::protocol::Md5Digest::of(data).to_string()
}

/// One source file: where it is on local disk, its bytes and their MD5.
struct Source {
    path: PathBuf,
    data: Vec<u8>,
    md5: String,
}

fn sources(dir: &Path, plan: &Plan) -> Vec<Source> {
    // Eight small sizes from 1 byte up (0 is a corner case of its own, elsewhere), and
    // the large file last.
    let mut sizes: Vec<usize> = (0..8).map(|i| 1 + (plan.small_max - 1) * i / 7).collect();
    sizes.push(plan.large);
    sizes
        .into_iter()
        .enumerate()
        .map(|(i, len)| {
            let data = bytes(len, 1000 + i as u64);
            let path = dir.join(format!("source{i}.bin"));
            std::fs::write(&path, &data).expect("write a source");
            Source {
                md5: md5_of(&data),
                path,
                data,
            }
        })
        .collect()
}

/// An operation bounded in time, so a stall shows as an error, not a hang.
async fn within<T, E: std::fmt::Display>(
    what: &str,
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer in {} s", limit.as_secs())),
    }
}

enum Front {
    Rsftp(rsftp::client::RsftpClient<russh::ChannelStream<russh::client::Msg>>),
    Sftp(rsftp::client::SftpClient<russh::ChannelStream<russh::client::Msg>>),
}

struct Session {
    n: usize,
    conn: Connection,
    front: Front,
}

const STEP: Duration = Duration::from_secs(120);

async fn open(daemon: &Daemon, plan: &Plan, n: usize) -> Result<Session, String> {
    let conn = within("log in", STEP, async { daemon.login(n).await }).await?;
    let front = if n % plan.sftp_every == plan.sftp_every - 1 {
        Front::Sftp(within("open sftp", STEP, conn.open_sftp()).await?)
    } else {
        Front::Rsftp(within("open rsftp", STEP, conn.open_rsftp()).await?)
    };
    Ok(Session { n, conn, front })
}

/// Counters the sessions share.
#[derive(Default)]
struct Tally {
    verified: AtomicU64,
    bytes: AtomicU64,
}

/// One put and one get of `source` as `remote`, the copy checked; then the file goes.
async fn round(
    session: &mut Session,
    source: &Source,
    remote: &str,
    local: &Path,
) -> Result<(), String> {
    match &mut session.front {
        Front::Rsftp(client) => {
            let put = within(
                &format!("put {remote}"),
                STEP,
                upload(client, &source.path, remote, &Quiet),
            )
            .await?;
            if put.md5.to_string() != source.md5 {
                return Err(format!("put {remote}: server MD5 {}", put.md5));
            }
            let dest = local.join(remote);
            within(
                &format!("get {remote}"),
                STEP,
                download(client, remote, &dest, true, &Quiet),
            )
            .await?;
            let got = tokio::fs::read(&dest)
                .await
                .map_err(|e| format!("read back {remote}: {e}"))?;
            let _ = tokio::fs::remove_file(&dest).await;
            if md5_of(&got) != source.md5 {
                return Err(format!(
                    "get {remote}: {} bytes with MD5 {}, want {} bytes with {}",
                    got.len(),
                    md5_of(&got),
                    source.data.len(),
                    source.md5
                ));
            }
            within(&format!("rm {remote}"), STEP, client.rm(remote)).await?;
        }
        Front::Sftp(client) => {
            let mut at = 0;
            let data = &source.data;
            within(
                &format!("sftp put {remote}"),
                STEP,
                client.upload(remote, 0, |buf| {
                    let n = buf.len().min(data.len() - at);
                    buf[..n].copy_from_slice(&data[at..at + n]);
                    at += n;
                    Ok(n)
                }),
            )
            .await?;
            let mut hasher = Md5::new();
            let mut len = 0usize;
            within(
                &format!("sftp get {remote}"),
                STEP,
                client.download(remote, 0, |chunk| {
                    hasher.update(chunk);
                    len += chunk.len();
                    Ok(())
                }),
            )
            .await?;
            let got = rsftp::protocol::Md5Digest::from_hasher(hasher).to_string();
            if got != source.md5 || len != data.len() {
                return Err(format!(
                    "sftp get {remote}: {len} bytes with MD5 {got}, want {} bytes with {}",
                    data.len(),
                    source.md5
                ));
            }
            within(&format!("sftp rm {remote}"), STEP, client.remove(remote)).await?;
        }
    }
    Ok(())
}

/// Puts and gets until `until`; the first failure ends this session.
async fn work(
    mut session: Session,
    plan: Arc<Plan>,
    sources: Arc<Vec<Source>>,
    local: PathBuf,
    until: Instant,
    tally: Arc<Tally>,
) -> (Session, Result<(), String>) {
    let n = session.n;
    let large = n.is_multiple_of(plan.large_every);
    let mut k = 0usize;
    // Every session makes at least one round, however late it starts.
    loop {
        let source = if large {
            &sources[sources.len() - 1]
        } else {
            &sources[(n + k) % (sources.len() - 1)]
        };
        let remote = format!("s{n}-{k}.bin");
        if let Err(e) = round(&mut session, source, &remote, &local).await {
            return (session, Err(format!("session {n}: {e}")));
        }
        tally.verified.fetch_add(1, Ordering::Relaxed);
        tally
            .bytes
            .fetch_add(2 * source.data.len() as u64, Ordering::Relaxed);
        k += 1;
        if Instant::now() >= until {
            return (session, Ok(()));
        }
    }
}

/// Runs `plan` against a fresh server and returns what it saw. Never panics on what
/// the server does: every failure is one line in [`Figures::errors`].
pub async fn run(plan: Plan) -> Figures {
    let started = Instant::now();
    let mut figures = Figures::default();
    let daemon = Daemon::start(plan.users, plan.sessions, plan.budget_mib).await;
    let local = tempfile::tempdir().expect("temp dir");
    let sources = Arc::new(sources(local.path(), &plan));
    let plan = Arc::new(plan);
    figures.rss_idle = daemon.memory("VmRSS:");

    let sampling = Arc::new(AtomicUsize::new(1));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (sampling, peak, pid) = (Arc::clone(&sampling), Arc::clone(&peak), daemon.pid());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) == 1 {
                peak.fetch_max(memory_of(pid, "VmRSS:"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // Everyone logs in first, 32 at a time, and stays in.
    let logins = Arc::new(Semaphore::new(32));
    let daemon = Arc::new(daemon);
    let opening: Vec<_> = (0..plan.sessions)
        .map(|n| {
            let (logins, daemon, plan) =
                (Arc::clone(&logins), Arc::clone(&daemon), Arc::clone(&plan));
            tokio::spawn(async move {
                let _permit = logins.acquire_owned().await;
                open(&daemon, &plan, n).await
            })
        })
        .collect();
    let mut sessions = Vec::new();
    for (n, opened) in opening.into_iter().enumerate() {
        match opened.await {
            Ok(Ok(session)) => sessions.push(session),
            Ok(Err(e)) => figures.errors.push(format!("session {n}: {e}")),
            Err(e) => figures.errors.push(format!("session {n}: {e}")),
        }
    }
    figures.held = sessions.len();
    figures.login = started.elapsed();
    figures.rss_held = daemon.memory("VmRSS:");

    let tally = Arc::new(Tally::default());
    let until = Instant::now() + plan.duration;
    // The client's transfer futures are not `Send` (they hold a `&dyn Progress`), so
    // they run on this thread; russh runs each connection's own task on the workers.
    let mut done = Vec::new();
    let local_set = tokio::task::LocalSet::new();
    local_set
        .run_until(async {
            let working: Vec<_> = sessions
                .into_iter()
                .map(|session| {
                    tokio::task::spawn_local(work(
                        session,
                        Arc::clone(&plan),
                        Arc::clone(&sources),
                        local.path().to_owned(),
                        until,
                        Arc::clone(&tally),
                    ))
                })
                .collect();
            for worked in working {
                match worked.await {
                    Ok((session, outcome)) => {
                        if let Err(e) = outcome {
                            figures.errors.push(e);
                        }
                        done.push(session);
                    }
                    Err(e) => figures.errors.push(format!("a session's task: {e}")),
                }
            }
        })
        .await;
    // Every session is still there at the end: one more request each, then a clean
    // goodbye.
    for session in done {
        let n = session.n;
        let alive = match session.front {
            Front::Rsftp(mut client) => {
                let pwd = within("pwd", STEP, client.pwd()).await.map(drop);
                pwd.and(within("quit", STEP, client.quit()).await)
            }
            Front::Sftp(mut client) => within("realpath", STEP, client.realpath("."))
                .await
                .map(drop),
        };
        if let Err(e) = alive {
            figures.errors.push(format!("session {n} at the end: {e}"));
        }
        let _ = tokio::time::timeout(STEP, session.conn.close()).await;
    }
    sampling.store(0, Ordering::Relaxed);
    let _ = sampler.await;
    figures.rss_peak = peak.load(Ordering::Relaxed);
    figures.hwm = daemon.memory("VmHWM:");
    figures.verified = tally.verified.load(Ordering::Relaxed);
    figures.bytes = tally.bytes.load(Ordering::Relaxed);
    // Nothing left behind under a final name or in the homes.
    for n in 0..plan.users {
        if let Ok(left) = std::fs::read_dir(daemon.home(n)) {
            let left = left.count();
            if left != 0 {
                figures
                    .errors
                    .push(format!("{left} files left in home {n} after every rm"));
            }
        }
    }
    if figures.hwm.max(figures.rss_peak) > figures.rss_bound(&plan) {
        figures.errors.push(format!(
            "server memory peaked at {} MiB, over the bound of {} MiB",
            figures.hwm.max(figures.rss_peak) / MIB,
            figures.rss_bound(&plan) / MIB
        ));
    }
    figures.wall = started.elapsed();
    figures
}
