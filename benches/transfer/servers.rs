//! The two servers under test, each a child process on its own loopback port: a private
//! OpenSSH `sshd` (own host key and config, key login, `internal-sftp`, no PAM) and the
//! release `rsftpd`. Both are stopped by pid when dropped. What they cost is read from
//! `/proc`: CPU time from `/proc/PID/stat`, memory from `/proc/PID/status` and
//! `smaps_rollup`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey};

/// One server: where it listens, who logs in, and where the files it receives land.
pub struct Server {
    /// "sshd" or "rsftpd".
    pub name: &'static str,
    child: Child,
    pub port: u16,
    pub user: String,
    /// The directory that `sftp` batches `cd` into: the server's view of `disk`.
    pub remote_dir: String,
    /// The same directory on this machine's disk, for checking what arrived.
    pub disk: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Our own child, by its pid; sshd's per-connection processes end with it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The remote path of `name` in the benchmark's directory.
    pub fn remote(&self, name: &str) -> String {
        if self.remote_dir.ends_with('/') {
            format!("{}{name}", self.remote_dir)
        } else {
            format!("{}/{name}", self.remote_dir)
        }
    }

    /// CPU seconds the server has used, its own and those of every child it has reaped
    /// (utime + stime + cutime + cstime). sshd forks a process pair per connection and
    /// reaps it when the connection ends, so once [`Server::settle`] has seen no
    /// children left, this counts all of sshd's work; rsftpd is one process.
    pub fn cpu_seconds(&self) -> f64 {
        let Some(fields) = stat_fields(self.pid()) else {
            return 0.0;
        };
        let ticks: u64 = (11..=14)
            .filter_map(|i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
            .sum();
        ticks as f64 / clock_ticks()
    }

    /// Waits (up to 10 s) until the server has no child processes left, so that the
    /// connections that just ended are counted in [`Server::cpu_seconds`].
    pub fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !descendants(self.pid()).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory of the server in bytes: `VmRSS` of the process itself, the sum of
    /// `VmRSS` over its descendants, and the sum of their `Pss` (shared pages divided
    /// among the processes that share them).
    pub fn memory(&self) -> (u64, u64, u64) {
        let own = status_kib(self.pid(), "VmRSS:") * 1024;
        let kids = descendants(self.pid());
        let rss = kids.iter().map(|&p| status_kib(p, "VmRSS:") * 1024).sum();
        let pss = kids.iter().map(|&p| pss_kib(p) * 1024).sum();
        (own, rss, pss)
    }
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0)
}

/// The fields of `/proc/PID/stat` after the command name: index 0 is the state, 1 the
/// parent, 11..=14 utime, stime, cutime, cstime.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// Every process below `pid`, found by walking the parents in `/proc/*/stat`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = stat_fields(p).and_then(|f| f.get(1)?.parse::<u32>().ok()) {
                parents.push((p, ppid));
            }
        }
    }
    let mut found = vec![pid];
    let mut at = 0;
    while at < found.len() {
        let parent = found[at];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        at += 1;
    }
    found.remove(0);
    found
}

pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn wait_for_port(child: &mut Child, port: u16, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited at start: {status}"));
        }
        if Instant::now() > deadline {
            return Err(format!("{what} did not listen on port {port} in 30 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn private(path: &Path) -> Result<(), String> {
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// The benchmark's login key, in OpenSSH's format, and its public half.
pub fn make_key(path: &Path) -> Result<String, String> {
    let key =
        PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).map_err(|e| e.to_string())?;
    key.write_openssh_file(path, LineEnding::LF)
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    key.public_key().to_openssh().map_err(|e| e.to_string())
}

/// Starts `rsftpd` in `dir` with one account, `bench`, and limits wide enough for
/// `sessions` at once. Appends its host key to `known_hosts`.
pub fn start_rsftpd(
    dir: &Path,
    public_key: &str,
    sessions: usize,
    known_hosts: &Path,
) -> Result<Server, String> {
    let port = free_port()?;
    let users = dir.join("users.toml");
    std::fs::write(
        &users,
        format!("[users.bench]\nkeys = [\"{public_key}\"]\nquota = \"1000GiB\"\n"),
    )
    .map_err(|e| e.to_string())?;
    private(&users)?;
    let wide = (sessions + 100).to_string();
    let log = std::fs::File::create(dir.join("rsftpd.stderr")).map_err(|e| e.to_string())?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_rsftpd"))
        .current_dir(dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--users", "users.toml", "--storage", "storage"])
        .args(["--keys", "keys", "--logs", "logs"])
        .args(["--max-sessions", &wide, "--max-startups", &wide])
        .args(["--max-startups-per-peer", &wide, "--max-waiting", &wide])
        .args(["--max-waiting-per-peer", &wide])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("start rsftpd: {e}"))?;
    if let Err(e) = wait_for_port(&mut child, port, "rsftpd") {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    let server = Server {
        name: "rsftpd",
        child,
        port,
        user: "bench".into(),
        remote_dir: "/".into(),
        disk: dir.join("storage/bench"),
    };
    let host = std::fs::read_to_string(dir.join("keys/ssh_host_ed25519_key.pub"))
        .map_err(|e| format!("rsftpd host key: {e}"))?;
    append_known_host(known_hosts, port, host.trim())?;
    std::fs::create_dir_all(&server.disk).map_err(|e| e.to_string())?;
    Ok(server)
}

fn append_known_host(known_hosts: &Path, port: u16, key: &str) -> Result<(), String> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(known_hosts)
        .map_err(|e| e.to_string())?;
    // Only the key type and data: no comment.
    let key: Vec<&str> = key.split_whitespace().take(2).collect();
    writeln!(file, "[127.0.0.1]:{port} {}", key.join(" ")).map_err(|e| e.to_string())
}

/// Starts a private `sshd -D` in `dir`, or says why it cannot.
pub fn start_sshd(dir: &Path, public_key: &str, known_hosts: &Path) -> Result<Server, String> {
    let sshd = ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .ok_or("no sshd (install openssh-server)")?;
    let port = free_port()?;
    let host_key = dir.join("sshd_host_key");
    let host_public = make_key(&host_key)?;
    let authorized = dir.join("authorized_keys");
    std::fs::write(&authorized, format!("{public_key}\n")).map_err(|e| e.to_string())?;
    let home = dir.join("sshd-files");
    std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PidFile {}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             Ciphers aes128-gcm@openssh.com,chacha20-poly1305@openssh.com\n\
             MaxStartups 2000\nMaxSessions 10\nUseDNS no\nLogLevel ERROR\n\
             Subsystem sftp internal-sftp\n",
            host_key.display(),
            authorized.display(),
            dir.join("sshd.pid").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    // sshd insists on its privilege-separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let log = std::fs::File::create(dir.join("sshd.stderr")).map_err(|e| e.to_string())?;
    let mut child = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("start sshd: {e}"))?;
    if let Err(e) = wait_for_port(&mut child, port, "sshd") {
        let _ = child.kill();
        let _ = child.wait();
        let said = std::fs::read_to_string(dir.join("sshd.stderr")).unwrap_or_default();
        return Err(format!("{e}: {}", said.trim()));
    }
    append_known_host(known_hosts, port, &host_public)?;
    Ok(Server {
        name: "sshd",
        child,
        port,
        user: current_user(),
        remote_dir: home.display().to_string(),
        disk: home,
    })
}

fn current_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            let out = Command::new("id").arg("-un").output().ok()?;
            Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
        .unwrap_or_else(|| "root".into())
}
