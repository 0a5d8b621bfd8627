//! OpenSSH's own server as a reference: a private `sshd` on 127.0.0.1 whose SFTP
//! sessions start in a temporary folder, so a test can run the same client commands
//! against it and against rsftpd and compare. Also the OpenSSH client calls both share.
//!
//! sshd must be installed (`/usr/sbin/sshd`, Debian's openssh-server): without it these
//! tests fail and say so, rather than pass having compared nothing.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::util::{TestServer, run_with_input};

pub const SSHD: &str = "/usr/sbin/sshd";

/// A private OpenSSH server. Stopped when dropped.
pub struct Sshd {
    pub port: u16,
    dir: TempDir,
    child: Child,
    user: String,
}

impl Sshd {
    /// Starts sshd with `Subsystem sftp internal-sftp -d <start dir>`, logging in the
    /// current user with a key made for it.
    pub fn start() -> Sshd {
        Sshd::start_with("")
    }

    /// Like [`Sshd::start`], with `extra` lines at the end of sshd_config; `%START%` in
    /// them stands for the folder SFTP sessions start in.
    pub fn start_with(extra: &str) -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install openssh-server to compare with OpenSSH's own server"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let keygen = |path: &Path| {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path)
                .stdin(Stdio::null())
                .status()
                .expect("run ssh-keygen");
            assert!(status.success(), "ssh-keygen failed");
        };
        keygen(&dir.path().join("host_key"));
        keygen(&dir.path().join("client_key"));
        std::fs::copy(
            dir.path().join("client_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys");
        let start = dir.path().join("root");
        std::fs::create_dir(&start).expect("start dir");
        let extra = extra.replace("%START%", &start.display().to_string());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n\
                 AuthorizedKeysFile {authorized}\nPidFile {pid}\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 Subsystem sftp internal-sftp -d {start}\n{extra}",
                host_key = dir.path().join("host_key").display(),
                authorized = dir.path().join("authorized_keys").display(),
                pid = dir.path().join("sshd.pid").display(),
                start = start.display(),
            ),
        )
        .expect("sshd_config");
        // sshd wants its privilege-separation directory to exist.
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("sshd.log")).expect("sshd.log"),
            ))
            .spawn()
            .expect("start sshd");
        let user = current_user();
        let mut sshd = Sshd {
            port,
            dir,
            child,
            user,
        };
        sshd.wait_ready();
        sshd
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "sshd exited with {status}: {}",
                    std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "sshd did not start in time");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where SFTP sessions start: the counterpart of a user's home.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The user that logs in, and the private key it logs in with.
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// Options for `ssh`, `sftp` or `scp` to log in here with the key, non-interactively.
    pub fn openssh_args(&self, port_flag: &str) -> Vec<String> {
        client_args(
            port_flag,
            self.port,
            &self.user,
            &self.dir.path().join("client_key"),
            Path::new("/dev/null"),
            "StrictHostKeyChecking=no",
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn client_args(
    port_flag: &str,
    port: u16,
    user: &str,
    key: &Path,
    known_hosts: &Path,
    strict: &str,
) -> Vec<String> {
    let mut args: Vec<String> = vec![port_flag.into(), port.to_string()];
    for option in [
        format!("UserKnownHostsFile={}", known_hosts.display()),
        strict.to_owned(),
        "BatchMode=yes".into(),
        "IdentitiesOnly=yes".into(),
        "IdentityAgent=none".into(),
        "ConnectTimeout=10".into(),
        "LogLevel=ERROR".into(),
        format!("User={user}"),
    ] {
        args.push("-o".into());
        args.push(option);
    }
    args.extend([
        "-i".into(),
        key.display().to_string(),
        "-F".into(),
        "/dev/null".into(),
    ]);
    args
}

/// Runs `sftp -b` with `batch` against 127.0.0.1 with the given options.
pub async fn sftp_batch(args: &[String], batch: &str) -> Output {
    let file = tempfile::NamedTempFile::new().expect("batch file");
    std::fs::write(file.path(), batch).expect("write batch");
    let mut all = args.to_vec();
    all.extend([
        "-b".into(),
        file.path().display().to_string(),
        "127.0.0.1".into(),
    ]);
    run_with_input("sftp", &all, b"").await
}

/// `sftp -b` against rsftpd as `user`.
pub async fn sftp_rsftpd(server: &TestServer, user: &str, batch: &str) -> Output {
    sftp_batch(&server.openssh_args(user, "-P"), batch).await
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that an OpenSSH client run succeeded, showing what it said if not.
pub fn assert_ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}
