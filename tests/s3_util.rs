//! A real S3-compatible server for the tests: `s3s-fs` on a free loopback port, with its
//! own temporary data folder and one bucket, stopped by pid when dropped.
//!
//! `scripts/test` installs `s3s-fs` into `${RSFTP_TOOL_CACHE:-$HOME/.cache/rsftp}/s3s-fs`
//! when it is missing; it is found there, or on `PATH`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const ACCESS_KEY: &str = "rsftp-test-access";
pub const SECRET_KEY: &str = "rsftp-test-secret-0123456789";
pub const BUCKET: &str = "homes";

/// Where `s3s-fs` is: the tool cache first, then `PATH`.
pub fn s3s_fs_binary() -> Option<PathBuf> {
    let cache = std::env::var_os("RSFTP_TOOL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/rsftp")));
    if let Some(cache) = cache {
        let bin = cache.join("s3s-fs/bin/s3s-fs");
        if bin.is_file() {
            return Some(bin);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("s3s-fs"))
        .find(|bin| bin.is_file())
}

/// One running `s3s-fs`.
pub struct S3Server {
    pub addr: SocketAddr,
    /// The data folder: `<data>/<bucket>/<key>`, as the server keeps them.
    pub data: TempDir,
    binary: PathBuf,
    child: Option<Child>,
}

impl S3Server {
    /// Starts `s3s-fs` with an empty bucket [`BUCKET`]; panics, naming the fix, if it is
    /// not installed.
    pub fn start() -> S3Server {
        let binary = s3s_fs_binary().expect(
            "s3s-fs is not installed: run scripts/test, or `cargo install s3s-fs@0.14.1 \
             --locked --features binary --root ~/.cache/rsftp/s3s-fs`",
        );
        let data = tempfile::tempdir().expect("temp dir");
        // s3s-fs keeps a bucket as a folder of its data directory.
        std::fs::create_dir(data.path().join(BUCKET)).expect("bucket");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut server = S3Server {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            data,
            binary,
            child: None,
        };
        server.launch();
        server
    }

    /// The endpoint URL, for `--s3-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The object at `key` as the server stores it, if there is one.
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.data.path().join(BUCKET).join(key)).ok()
    }

    /// Every key in the bucket, sorted (s3s-fs keeps its own files outside the bucket).
    pub fn keys(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let rel = path
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if path.is_dir() {
                    walk(&path, base, out);
                } else {
                    out.push(rel);
                }
            }
        }
        let base = self.data.path().join(BUCKET);
        let mut keys = Vec::new();
        walk(&base, &base, &mut keys);
        keys.sort();
        keys
    }

    /// Starts (or restarts) the server on its port and data folder, and waits until it
    /// accepts connections.
    pub fn launch(&mut self) {
        let child = Command::new(&self.binary)
            .arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(self.addr.port().to_string())
            .arg("--access-key")
            .arg(ACCESS_KEY)
            .arg("--secret-key")
            .arg(SECRET_KEY)
            .arg(self.data.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.addr).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start in 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}
