//! Runtime privileges, through the real `rsftpd` binary: it refuses to start when its
//! host key or users file is open to group or others (unless told to accept that), and
//! it warns when it runs as root over homes that root owns.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey};

use crate::admin::{succeeded, user_command};

const WARNING: &str = "running as root with homes owned by root";

/// How a start of rsftpd ended.
enum Outcome {
    /// It listened (and was then killed); what it wrote to standard error until then.
    Listening { stderr: String },
    /// It exited by itself, without listening.
    Exited { status: ExitStatus, stderr: String },
}

impl Outcome {
    fn refused(self) -> String {
        match self {
            Outcome::Exited { status, stderr } => {
                assert!(!status.success(), "a refusal exits non-zero: {stderr}");
                stderr
            }
            Outcome::Listening { stderr } => panic!("rsftpd started: {stderr}"),
        }
    }

    fn listened(self) -> String {
        match self {
            Outcome::Listening { stderr } => stderr,
            Outcome::Exited { status, stderr } => panic!("rsftpd exited, {status:?}: {stderr}"),
        }
    }
}

/// Runs rsftpd in `root` on 127.0.0.1:0 until it listens (then kills it) or exits, for
/// at most 30 s.
fn start(root: &Path, extra: &[&str]) -> Outcome {
    let stdout = root.join("stdout");
    let stderr = root.join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rsftpd"))
        .current_dir(root)
        .args(["--listen", "127.0.0.1:0", "--users", "users.toml"])
        .args(["--storage", "storage", "--keys", "keys", "--logs", "logs"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("rsftpd starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    for _ in 0..600 {
        if fs::read_to_string(&stdout)
            .unwrap_or_default()
            .contains("rsftpd listening on")
        {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = fs::read_to_string(&stderr).unwrap_or_default();
            return Outcome::Listening { stderr };
        }
        if let Some(status) = child.try_wait().unwrap() {
            let stderr = fs::read_to_string(&stderr).unwrap_or_default();
            return Outcome::Exited { status, stderr };
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("rsftpd neither listened nor exited in time");
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A folder with a users file (one account, alice) and, if `with_key`, a host key, both
/// mode 0600.
fn prepared(with_key: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    fs::write(&users, "[users.alice]\nquota = \"1MiB\"\n").unwrap();
    chmod(&users, 0o600);
    if with_key {
        fs::create_dir(dir.path().join("keys")).unwrap();
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        key.write_openssh_file(host_key(dir.path()), LineEnding::LF)
            .unwrap();
        chmod(&host_key(dir.path()), 0o600);
    }
    dir
}

fn host_key(root: &Path) -> std::path::PathBuf {
    root.join("keys/ssh_host_ed25519_key")
}

#[test]
fn a_users_file_others_can_read_is_refused() {
    let dir = prepared(false);
    chmod(&dir.path().join("users.toml"), 0o644);
    let stderr = start(dir.path(), &[]).refused();
    assert!(
        stderr.contains("users.toml: mode 0644 lets group or others read or write it"),
        "{stderr}"
    );
    assert!(stderr.contains("`chmod 600 users.toml`"), "{stderr}");
    assert!(stderr.contains("--allow-open-permissions"), "{stderr}");
    // Refused before anything was made.
    assert!(!host_key(dir.path()).exists());
    assert!(!dir.path().join("storage/alice").exists());
}

#[test]
fn a_host_key_its_group_can_read_is_refused() {
    let dir = prepared(true);
    chmod(&host_key(dir.path()), 0o640);
    let stderr = start(dir.path(), &[]).refused();
    assert!(
        stderr.contains("keys/ssh_host_ed25519_key: mode 0640 lets group or others"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`chmod 600 keys/ssh_host_ed25519_key`"),
        "{stderr}"
    );
}

#[test]
fn a_link_to_an_open_users_file_is_refused() {
    let dir = prepared(true);
    let real = dir.path().join("real.toml");
    fs::rename(dir.path().join("users.toml"), &real).unwrap();
    chmod(&real, 0o644);
    std::os::unix::fs::symlink("real.toml", dir.path().join("users.toml")).unwrap();
    let stderr = start(dir.path(), &[]).refused();
    let real = fs::canonicalize(&real).unwrap();
    assert!(
        stderr.contains(&format!(
            "users.toml (a link to {}): mode 0644",
            real.display()
        )),
        "{stderr}"
    );
    // The same link to a private file is fine: the link's own mode does not count.
    chmod(&real, 0o600);
    start(dir.path(), &[]).listened();
}

#[test]
fn the_flag_starts_with_open_files_and_says_so() {
    let dir = prepared(true);
    chmod(&dir.path().join("users.toml"), 0o644);
    chmod(&host_key(dir.path()), 0o640);
    let stderr = start(dir.path(), &["--allow-open-permissions"]).listened();
    let warned = |path: &str, mode: &str| {
        stderr.lines().any(|line| {
            line.contains("WARN")
                && line.contains("starting anyway")
                && line.contains(&format!("path={path} mode={mode}"))
        })
    };
    assert!(warned("users.toml", "0644"), "{stderr}");
    assert!(warned("keys/ssh_host_ed25519_key", "0640"), "{stderr}");
}

#[test]
fn private_files_start_and_a_first_start_makes_them_private() {
    let dir = prepared(true);
    let stderr = start(dir.path(), &[]).listened();
    assert!(!stderr.contains("mode 0"), "{stderr}");

    // Nothing prepared: the host key and the starter users file it makes are 0600, so a
    // second start passes the check as well.
    let empty = tempfile::tempdir().unwrap();
    start(empty.path(), &[]).listened();
    for made in [empty.path().join("users.toml"), host_key(empty.path())] {
        let mode = fs::metadata(&made).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", made.display());
    }
    start(empty.path(), &[]).listened();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_commands_work_on_an_open_users_file() {
    let dir = prepared(false);
    chmod(&dir.path().join("users.toml"), 0o644);
    let listed = succeeded(&user_command(dir.path(), &["list"], b"").await);
    assert!(listed.contains("alice"), "{listed}");
}

#[test]
fn running_as_root_over_root_owned_homes_is_warned_about() {
    if !rustix::process::geteuid().is_root() {
        println!("skipped: not running as root, so there is no root warning to see");
        return;
    }
    let dir = prepared(true);
    let stderr = start(dir.path(), &[]).listened();
    let line = stderr
        .lines()
        .find(|line| line.contains(WARNING))
        .unwrap_or_else(|| panic!("no warning: {stderr}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("a compromise of this process reaches every home"),
        "{line}"
    );
    assert!(line.contains("docs/OPERATIONS.md"), "{line}");
    assert!(line.contains("homes=1"), "{line}");

    // Homes owned by a user of their own: no warning.
    std::os::unix::fs::chown(dir.path().join("storage/alice"), Some(65534), Some(65534)).unwrap();
    let stderr = start(dir.path(), &[]).listened();
    assert!(!stderr.contains(WARNING), "{stderr}");
}
