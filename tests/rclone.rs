//! rclone (Debian's 1.60) against rsftpd: sync up, check by hash, hash listings that
//! match coreutils, copy back down, about; and the failures it must report.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use tempfile::TempDir;

use crate::real_clients::{
    TREE, assert_failure, assert_same_tree, assert_success, make_tree, run_client,
};
use crate::sshd::text;
use crate::util::{TestServer, TestUser, data, key_path};

/// rclone with a remote `rs:` for `user`, configured only through the environment and
/// a config file of its own: the user's real rclone config is never read or written.
pub struct Rclone {
    home: TempDir,
    envs: Vec<(&'static str, String)>,
}

impl Rclone {
    pub fn new(server: &TestServer, user: &str) -> Rclone {
        let home = tempfile::tempdir().expect("rclone home");
        let config = home.path().join("rclone.conf");
        std::fs::write(&config, "").expect("rclone.conf");
        let envs = vec![
            ("HOME", home.path().display().to_string()),
            ("XDG_CONFIG_HOME", home.path().display().to_string()),
            ("XDG_CACHE_HOME", home.path().display().to_string()),
            ("RCLONE_CONFIG", config.display().to_string()),
            ("RCLONE_CONFIG_RS_TYPE", "sftp".into()),
            ("RCLONE_CONFIG_RS_HOST", "127.0.0.1".into()),
            ("RCLONE_CONFIG_RS_PORT", server.addr.port().to_string()),
            ("RCLONE_CONFIG_RS_USER", user.to_owned()),
            (
                "RCLONE_CONFIG_RS_KEY_FILE",
                key_path(server.root(), user).display().to_string(),
            ),
            (
                "RCLONE_CONFIG_RS_KNOWN_HOSTS_FILE",
                server.known_hosts.display().to_string(),
            ),
            // No ssh-agent: the key file alone.
            ("SSH_AUTH_SOCK", String::new()),
        ];
        Rclone { home, envs }
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        // Fail at once rather than retrying for minutes.
        all.extend(
            [
                "--retries",
                "1",
                "--low-level-retries",
                "1",
                "--contimeout",
                "10s",
            ]
            .map(String::from),
        );
        run_client(
            "rclone",
            &all,
            &self.envs,
            self.home.path(),
            Duration::from_secs(300),
        )
        .await
    }
}

/// `md5sum`'s or `sha1sum`'s lines for every file under `root`, relative, sorted: what
/// `rclone md5sum` prints, in coreutils' own words.
fn coreutils_sums(program: &str, root: &Path) -> Vec<String> {
    let names: Vec<String> = crate::real_clients::tree_of(root)
        .into_iter()
        .filter(|(_, content)| content.is_some())
        .map(|(name, _)| name.display().to_string())
        .collect();
    let output = std::process::Command::new(program)
        .current_dir(root)
        .args(&names)
        .output()
        .expect("coreutils");
    assert!(output.status.success());
    sorted_lines(&output.stdout)
}

fn sorted_lines(bytes: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = text(bytes).lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_check_hashes_copy_back_and_about() {
    let server = TestServer::start(&[TestUser::new("alice", "200MiB")]).await;
    let rclone = Rclone::new(&server, "alice");
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("source");
    make_tree(&source, TREE);
    let source_arg = source.display().to_string();

    let sync = rclone.run(&["sync", &source_arg, "rs:backup"]).await;
    assert_success(&sync, "rclone sync");
    assert_same_tree(&source, &server.home("alice").join("backup"));

    // check compares by hash: it must find a hash in common and no difference.
    let check = rclone
        .run(&["check", "-vv", &source_arg, "rs:backup"])
        .await;
    assert_success(&check, "rclone check");
    let said = text(&check.stderr);
    assert!(said.contains("0 differences found"), "{said}");
    assert!(
        said.contains(&format!("{} matching files", TREE.len())),
        "{said}"
    );
    assert!(!said.contains("No common hash"), "{said}");
    assert!(!said.contains("hash unsupported"), "{said}");
    assert!(
        said.contains("md5 = "),
        "check did not compare hashes: {said}"
    );

    // A byte changed on the server, same size and time: only a hash can see it.
    let victim = server.home("alice").join("backup/edge/32768.bin");
    let mut bytes = std::fs::read(&victim).unwrap();
    let modified = std::fs::metadata(&victim).unwrap().modified().unwrap();
    bytes[20_000] ^= 0xff;
    std::fs::write(&victim, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    let check = rclone.run(&["check", &source_arg, "rs:backup"]).await;
    assert_failure(&check, "rclone check of a changed file");
    let said = text(&check.stderr);
    assert!(said.contains("1 differences found"), "{said}");
    assert!(said.contains("edge/32768.bin"), "{said}");
    bytes[20_000] ^= 0xff;
    std::fs::write(&victim, &bytes).unwrap();

    for (command, program) in [("md5sum", "md5sum"), ("sha1sum", "sha1sum")] {
        let sums = rclone.run(&[command, "rs:backup"]).await;
        assert_success(&sums, command);
        assert_eq!(
            sorted_lines(&sums.stdout),
            coreutils_sums(program, &source),
            "rclone {command}"
        );
    }

    let back = local.path().join("back");
    let copy = rclone
        .run(&["copy", "rs:backup", &back.display().to_string()])
        .await;
    assert_success(&copy, "rclone copy back down");
    assert_same_tree(&source, &back);

    let about = rclone.run(&["about", "--json", "rs:"]).await;
    assert_success(&about, "rclone about");
    let json = text(&about.stdout);
    let total: u64 = 200 * 1024 * 1024;
    assert!(json.contains(&format!("\"total\": {total}")), "{json}");
    // What the tree costs by the quota rule: its files and folders, in 4 KiB blocks.
    let used = server.used_on_disk("alice");
    let free_line = format!("\"free\": {}", (total - used) / 1024 * 1024);
    assert!(json.contains(&free_line), "want {free_line}: {json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_quota_fails_and_says_why() {
    let server = TestServer::start(&[TestUser::new("alice", "1MiB")]).await;
    let rclone = Rclone::new(&server, "alice");
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("big.bin"), data(3 * 1024 * 1024, 4)).unwrap();
    std::fs::write(local.path().join("small.txt"), b"fits").unwrap();
    // One file at a time, the small one first: in parallel, the big one could take the
    // whole quota before the small one is written, and both would fail.
    let copy = rclone
        .run(&[
            "copy",
            &local.path().display().to_string(),
            "rs:up",
            "--transfers",
            "1",
            "--order-by",
            "size,ascending",
        ])
        .await;
    assert_failure(&copy, "rclone copy over the quota");
    let said = text(&copy.stderr);
    assert!(said.contains("quota exceeded"), "{said}");
    assert_eq!(
        std::fs::read(server.home("alice").join("up/small.txt")).unwrap(),
        b"fits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_files_and_paths_outside_the_home_fail() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let secret = server.root().join("secret.txt");
    std::fs::write(&secret, b"server secret").unwrap();
    std::os::unix::fs::symlink(&secret, server.home("alice").join("escape")).unwrap();
    std::fs::write(server.home("alice").join("mine.txt"), b"mine").unwrap();
    let rclone = Rclone::new(&server, "alice");

    let cat = rclone.run(&["cat", "rs:mine.txt"]).await;
    assert_success(&cat, "rclone cat of a file that is there");
    assert_eq!(cat.stdout, b"mine");
    for remote in [
        "rs:nosuch.txt",
        "rs:../secret.txt",
        "rs:/../../secret.txt",
        "rs:escape",
    ] {
        let cat = rclone.run(&["cat", remote]).await;
        assert_failure(&cat, &format!("rclone cat {remote}"));
        assert!(
            !text(&cat.stdout).contains("server secret"),
            "{remote} leaked"
        );
    }
    let local = tempfile::tempdir().unwrap();
    let copy = rclone
        .run(&[
            "copyto",
            "rs:nosuch.txt",
            &local.path().join("x").display().to_string(),
        ])
        .await;
    assert_failure(&copy, "rclone copyto of a missing file");
    assert!(!local.path().join("x").exists());
}
