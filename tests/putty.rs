//! PuTTY's psftp and `pscp -sftp` against rsftpd, logging in with a .ppk key made by
//! puttygen and the host key pinned with `-hostkey`; and the failures they must
//! report.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::real_clients::{assert_failure, assert_success, host_key_fingerprint, run_client};
use crate::sshd::text;
use crate::util::{TestServer, TestUser, data, key_path};

/// What every PuTTY tool needs to reach `user`: port, .ppk key, pinned host key,
/// and no questions.
struct Putty {
    dir: PathBuf,
    args: Vec<String>,
}

impl Putty {
    async fn new(server: &TestServer, user: &str, dir: &Path) -> Putty {
        let ppk = dir.join(format!("{user}.ppk"));
        let convert = run_client(
            "puttygen",
            &[
                key_path(server.root(), user).display().to_string(),
                "-O".into(),
                "private".into(),
                "-o".into(),
                ppk.display().to_string(),
            ],
            &[],
            dir,
            Duration::from_secs(30),
        )
        .await;
        assert_success(&convert, "puttygen");
        let fingerprint = host_key_fingerprint(server, "sha256");
        let args = vec![
            "-batch".into(),
            "-noagent".into(),
            "-P".into(),
            server.addr.port().to_string(),
            "-i".into(),
            ppk.display().to_string(),
            "-hostkey".into(),
            fingerprint,
            "-l".into(),
            user.to_owned(),
        ];
        Putty {
            dir: dir.to_path_buf(),
            args,
        }
    }

    async fn run(&self, program: &str, extra: &[String]) -> Output {
        let mut all = self.args.clone();
        all.extend(extra.iter().cloned());
        let home = self.dir.join(".putty-home");
        std::fs::create_dir_all(&home).unwrap();
        run_client(
            program,
            &all,
            &[("HOME", home.display().to_string())],
            &self.dir,
            Duration::from_secs(120),
        )
        .await
    }

    async fn psftp(&self, batch: &str) -> Output {
        let script = self.dir.join("batch.psftp");
        std::fs::write(&script, batch).unwrap();
        self.run(
            "psftp",
            &[
                "-b".into(),
                script.display().to_string(),
                "127.0.0.1".into(),
            ],
        )
        .await
    }

    async fn pscp(&self, from: &str, to: &str) -> Output {
        self.run("pscp", &["-sftp".into(), from.into(), to.into()])
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_psftp_batch_puts_gets_makes_a_folder_and_renames() {
    let server = TestServer::start(&[TestUser::new("alice", "100MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let putty = Putty::new(&server, "alice", local.path()).await;
    let content = data(3 * 1024 * 1024 + 5, 21);
    std::fs::write(local.path().join("local.bin"), &content).unwrap();
    let run = putty
        .psftp(
            "mkdir \"new folder\"\n\
             put local.bin \"new folder/a.bin\"\n\
             mv \"new folder/a.bin\" \"new folder/b.bin\"\n\
             get \"new folder/b.bin\" back.bin\n",
        )
        .await;
    assert_success(&run, "psftp batch");
    let home = server.home("alice");
    assert!(!home.join("new folder/a.bin").exists());
    assert!(std::fs::read(home.join("new folder/b.bin")).unwrap() == content);
    assert!(std::fs::read(local.path().join("back.bin")).unwrap() == content);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pscp_sftp_up_and_down() {
    let server = TestServer::start(&[TestUser::new("alice", "100MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let putty = Putty::new(&server, "alice", local.path()).await;
    let content = data(2 * 1024 * 1024 + 1, 22);
    std::fs::write(local.path().join("up load.bin"), &content).unwrap();
    std::fs::create_dir(server.home("alice").join("dir")).unwrap();
    let up = putty.pscp("up load.bin", "127.0.0.1:dir/up load.bin").await;
    assert_success(&up, "pscp -sftp up");
    assert!(std::fs::read(server.home("alice").join("dir/up load.bin")).unwrap() == content);
    let down = putty.pscp("127.0.0.1:/dir/up load.bin", "down.bin").await;
    assert_success(&down, "pscp -sftp down");
    assert!(std::fs::read(local.path().join("down.bin")).unwrap() == content);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_quota_missing_files_and_paths_outside_the_home_fail() {
    let server = TestServer::start(&[TestUser::new("alice", "1MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let putty = Putty::new(&server, "alice", local.path()).await;
    let secret = server.root().join("secret.txt");
    std::fs::write(&secret, b"server secret").unwrap();
    std::os::unix::fs::symlink(&secret, server.home("alice").join("escape")).unwrap();
    std::fs::write(local.path().join("big.bin"), data(3 * 1024 * 1024, 23)).unwrap();

    let up = putty.pscp("big.bin", "127.0.0.1:big.bin").await;
    assert_failure(&up, "pscp -sftp over the quota");
    for remote in ["nosuch.txt", "../../secret.txt", "/../secret.txt", "escape"] {
        let down = putty.pscp(&format!("127.0.0.1:{remote}"), "got").await;
        assert_failure(&down, &format!("pscp -sftp {remote}"));
        let got = std::fs::read(local.path().join("got")).unwrap_or_default();
        assert!(!text(&got).contains("server secret"), "{remote} leaked");
    }
    // A batch stops at its first failure, with a failing exit status.
    let run = putty.psftp("get nosuch.txt got\nmkdir after\n").await;
    assert_failure(&run, "psftp batch with a missing file");
    assert!(!server.home("alice").join("after").exists());
    // SFTP writes in place, so the refused upload left what fitted; a folder costs a
    // quota block too, so give that space back first.
    let batch = if server.home("alice").join("big.bin").exists() {
        "rm big.bin\nmkdir after\n"
    } else {
        "mkdir after\n"
    };
    let run = putty.psftp(batch).await;
    assert_success(&run, "psftp batch that works");
    assert!(server.home("alice").join("after").is_dir());
}
