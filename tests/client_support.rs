//! Running the real `rsftp` binary against the test server: a home and a working
//! directory of its own, the harness's known_hosts, and a time limit on every run.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::util::{TestServer, key_path};

/// The longest any one run of the client may take.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// A person with the `rsftp` client: a home directory (for history and default keys;
/// empty unless a test puts something there) and a directory to work in.
pub struct ClientHome {
    pub home: TempDir,
    pub work: PathBuf,
}

impl ClientHome {
    pub fn new() -> ClientHome {
        let home = tempfile::tempdir().expect("home");
        let work = home.path().join("work");
        std::fs::create_dir(&work).expect("work dir");
        ClientHome { home, work }
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// `rsftp` for `user` on `server`, with nothing but these arguments: no key, no
    /// known_hosts, and an environment that holds no agent and no password.
    pub fn bare(&self, server: &TestServer, user: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rsftp"));
        cmd.current_dir(&self.work)
            .env("HOME", self.home())
            .env("USER", user)
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("RSFTP_PASSWORD")
            .arg(format!("{user}@127.0.0.1:{}", server.addr.port()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// `rsftp` for `user` with their key and the harness's known_hosts.
    pub fn rsftp(&self, server: &TestServer, user: &str) -> Command {
        let mut cmd = self.bare(server, user);
        cmd.arg("-i")
            .arg(key_path(server.root(), user))
            .arg("--known-hosts")
            .arg(&server.known_hosts);
        cmd
    }
}

/// Runs a prepared command to the end, within [`RUN_LIMIT`].
pub async fn run(mut cmd: Command) -> Output {
    let child = cmd.spawn().expect("rsftp starts");
    tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .expect("rsftp finished in time")
        .expect("rsftp ran")
}

/// Standard output and error as text.
pub fn texts(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Panics with everything the client said if it did not exit with `code`.
#[track_caller]
pub fn expect_status(output: &Output, code: i32) -> (String, String) {
    let (out, err) = texts(output);
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit status\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    (out, err)
}

/// Writes a file of `mib` MiB whose every MiB differs (so a spliced or shifted copy
/// cannot pass), quickly enough for a debug build.
pub fn big_file(path: &Path, mib: usize, seed: u64) {
    use std::io::Write;
    let block = crate::util::data(1 << 20, seed);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for i in 0..mib {
        let mut chunk = block.clone();
        chunk[..8].copy_from_slice(&(i as u64).to_le_bytes());
        file.write_all(&chunk).expect("write");
    }
    file.flush().expect("flush");
}

/// The size of a file, or 0 if it is not there (yet).
pub fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Waits, polling every 10 ms for at most `limit`, until `ready` says yes or the child
/// exits. `true` if `ready` said yes while the child still ran.
pub async fn wait_while_running(
    child: &mut Child,
    limit: Duration,
    mut ready: impl FnMut() -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if ready() {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Waits until `measure` gives the same value twice 300 ms apart (a writer has
/// stopped), for at most 10 s; returns that value.
pub async fn settled(mut measure: impl FnMut() -> u64) -> u64 {
    let mut last = measure();
    for _ in 0..33 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = measure();
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("still changing after 10 s: {last}");
}
