//! The clients, each a fresh process that connects and logs in, so that every timing
//! includes the same setup on both sides: OpenSSH `sftp -b`, the release `rsftp`, and
//! `md5sum`. Also the files they move and the MD5 checks of what arrived.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use md5::{Digest, Md5};

use crate::servers::Server;

/// What every client needs to reach both servers.
pub struct Clients {
    pub dir: PathBuf,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    /// OpenSSH `sftp`, when installed.
    pub sftp: Option<PathBuf>,
    /// `md5sum`, when installed.
    pub md5sum: Option<PathBuf>,
    batches: std::cell::Cell<u64>,
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

impl Clients {
    pub fn new(dir: &Path, key: PathBuf, known_hosts: PathBuf) -> Clients {
        Clients {
            dir: dir.to_owned(),
            key,
            known_hosts,
            sftp: which("sftp"),
            md5sum: which("md5sum"),
            batches: std::cell::Cell::new(0),
        }
    }

    /// An `sftp -b` process for `batch` against `server`, not yet waited for.
    pub fn spawn_sftp(&self, server: &Server, cipher: &str, batch: &str) -> Result<Child, String> {
        let sftp = self.sftp.as_ref().ok_or("no OpenSSH sftp")?;
        let n = self.batches.get();
        self.batches.set(n + 1);
        let file = self.dir.join(format!("batch-{n}"));
        std::fs::write(&file, batch).map_err(|e| e.to_string())?;
        Command::new(sftp)
            .args(["-q", "-b"])
            .arg(&file)
            .args(["-P", &server.port.to_string(), "-c", cipher, "-i"])
            .arg(&self.key)
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .args(["-o", "StrictHostKeyChecking=yes", "-o"])
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .arg(format!("{}@127.0.0.1", server.user))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("run sftp: {e}"))
    }

    /// Runs one `sftp -b` batch to the end; the seconds it took, connecting and logging
    /// in included.
    pub fn sftp(&self, server: &Server, cipher: &str, batch: &str) -> Result<f64, String> {
        let started = Instant::now();
        let child = self.spawn_sftp(server, cipher, batch)?;
        finish(child, &format!("sftp to {}", server.name))?;
        Ok(started.elapsed().as_secs_f64())
    }

    /// Runs the release `rsftp` client with one command; the seconds it took, connecting
    /// and logging in included. It verifies the copy by MD5 itself and fails if it
    /// does not match.
    pub fn rsftp(&self, server: &Server, command: &[&str]) -> Result<f64, String> {
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_rsftp"))
            .args(["-q", "-i"])
            .arg(&self.key)
            .arg("--known-hosts")
            .arg(&self.known_hosts)
            .arg(format!("{}@127.0.0.1:{}", server.user, server.port))
            .args(command)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("run rsftp: {e}"))?;
        finish(child, &format!("rsftp {}", command.join(" ")))?;
        Ok(started.elapsed().as_secs_f64())
    }

    /// `md5sum` of two files at the same time, as on the two ends of a real transfer;
    /// both digests must be `want`. Returns the seconds until both were done.
    pub fn md5sum_both(&self, a: &Path, b: &Path, want: &str) -> Result<f64, String> {
        let md5sum = self.md5sum.as_ref().ok_or("no md5sum")?;
        let started = Instant::now();
        let spawn = |path: &Path| {
            Command::new(md5sum)
                .arg(path)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("run md5sum: {e}"))
        };
        let (first, second) = (spawn(a)?, spawn(b)?);
        let outputs = [first.wait_with_output(), second.wait_with_output()];
        let elapsed = started.elapsed().as_secs_f64();
        for (path, output) in [a, b].into_iter().zip(outputs) {
            let output = output.map_err(|e| format!("md5sum: {e}"))?;
            let text = String::from_utf8_lossy(&output.stdout);
            let got = text.split_whitespace().next().unwrap_or("");
            if got != want {
                return Err(format!("{}: md5sum {got}, want {want}", path.display()));
            }
        }
        Ok(elapsed)
    }
}

/// Waits for a client; its stderr in the error if it failed.
pub fn finish(child: Child, what: &str) -> Result<(), String> {
    let output = child
        .wait_with_output()
        .map_err(|e| format!("{what}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        let said = String::from_utf8_lossy(&output.stderr);
        Err(format!(
            "{what} failed ({}): {}",
            output.status,
            said.trim()
        ))
    }
}

/// Deterministic, incompressible bytes.
fn fill(block: &mut [u8], state: &mut u64) {
    for chunk in block.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

/// Writes `len` bytes made from `seed`; returns their MD5 in hex.
pub fn make_file(path: &Path, len: u64, seed: u64) -> Result<String, String> {
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(path).map_err(|e| format!("create {}: {e}", path.display()))?,
    );
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut block = vec![0u8; 1 << 20];
    let mut hasher = Md5::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        fill(&mut block[..n], &mut state);
        hasher.update(&block[..n]);
        file.write_all(&block[..n]).map_err(|e| e.to_string())?;
        left -= n as u64;
    }
    file.flush().map_err(|e| e.to_string())?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The MD5 of a file, in hex.
pub fn md5_file(path: &Path) -> Result<String, String> {
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut hasher = Md5::new();
    let mut block = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut block).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Checks that `path` holds the bytes whose MD5 is `want`.
pub fn verify(path: &Path, want: &str) -> Result<(), String> {
    let got = md5_file(path)?;
    if got == want {
        Ok(())
    } else {
        Err(format!("{}: MD5 {got}, want {want}", path.display()))
    }
}
