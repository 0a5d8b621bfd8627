//! A real `rsftpd` on the object store, killed with SIGKILL in the middle of an rsftp
//! upload and started again: nothing was ever visible under the final key before the
//! upload completed, and the upload resumes from the last part saved to an
//! MD5-identical object.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};
use rsftp::client::{PutStart, Quiet, upload};
use rsftp::storage::object::{PART_SIZE, UploadState};
use tokio::process::{Child, Command};

use crate::s3_util::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};
use crate::util::{TestServer, TestUser, data, md5_hex};

const MIB: usize = 1 << 20;

/// `rsftpd` on the files of `root`, with the homes under `team/` on `s3`.
fn spawn(root: &Path, port: u16, s3: &S3Server) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("stderr"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_rsftpd"))
        .current_dir(root)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--users", "users.toml", "--keys", "keys"])
        .args(["--storage", &format!("s3://{BUCKET}/team")])
        .args(["--s3-endpoint", &s3.endpoint(), "--s3-region", "us-east-1"])
        .args(["--s3-path-style", "--s3-state-dir", "s3-state"])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("rsftpd starts")
}

async fn wait_listening(server: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(server.addr).await.is_err() {
        assert!(Instant::now() < deadline, "rsftpd did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The parts saved for alice's uploads, once there are at least `at_least` (bounded).
async fn saved_parts(root: &Path, at_least: usize) -> usize {
    let dir = root.join("s3-state/uploads/alice");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let parts: usize = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    // Not the state being written aside before its rename.
                    .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .filter_map(|text| toml::from_str::<UploadState>(&text).ok())
                    .map(|state| state.parts.len())
                    .sum()
            })
            .unwrap_or(0);
        if parts >= at_least || Instant::now() > deadline {
            return parts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_resumes_the_upload_and_published_nothing_before() {
    let s3 = S3Server::start();
    // The users file and host key of a test server, then a real daemon on them.
    let mut server = TestServer::start(&[TestUser::new("alice", "1GiB")]).await;
    server.stop().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let root = server.root().to_owned();
    let public = std::fs::read_to_string(root.join("keys/ssh_host_ed25519_key.pub")).unwrap();
    std::fs::write(&server.known_hosts, format!("[127.0.0.1]:{port} {public}")).unwrap();
    server.addr.set_port(port);
    let mut daemon = spawn(&root, port, &s3);
    wait_listening(&server).await;

    let local = tempfile::tempdir().unwrap();
    let bytes = data(3 * PART_SIZE as usize + 1234, 11);
    let src = local.path().join("big.bin");
    std::fs::write(&src, &bytes).unwrap();
    let first = local.path().join("first.bin");
    std::fs::write(&first, &bytes[..2 * PART_SIZE as usize + MIB]).unwrap();

    let (conn, mut c) = server.client("alice").await;
    let start = c
        .begin_put("big.bin", bytes.len() as u64, None)
        .await
        .unwrap();
    assert!(
        matches!(start, PutStart::Have { offset: 0, .. }),
        "{start:?}"
    );
    let file = std::fs::File::open(&first).unwrap();
    let sending = tokio::spawn(async move {
        let _ = c
            .send_from(0, file, 2 * PART_SIZE + MIB as u64, Md5::new(), |_| {})
            .await;
        (c, conn)
    });
    assert_eq!(
        saved_parts(&root, 2).await,
        2,
        "two parts saved before the kill"
    );
    assert!(
        s3.object("team/alice/big.bin").is_none(),
        "nothing under the key yet"
    );

    daemon.kill().await.expect("SIGKILL rsftpd");
    let _ = tokio::time::timeout(Duration::from_secs(10), sending).await;
    assert!(
        s3.object("team/alice/big.bin").is_none(),
        "nothing under the key after the kill"
    );

    let mut daemon = spawn(&root, port, &s3);
    wait_listening(&server).await;
    let (_conn, mut c) = server.client("alice").await;
    // The parts held count against the quota from the start.
    assert!(c.info().await.unwrap().used >= 2 * PART_SIZE);
    let report = upload(&mut c, &src, "big.bin", &Quiet).await.unwrap();
    assert_eq!(report.resumed_from, 2 * PART_SIZE, "{report:?}");
    assert_eq!(report.transferred, bytes.len() as u64 - 2 * PART_SIZE);
    assert_eq!(report.md5.to_string(), md5_hex(&bytes));
    let stored = s3.object("team/alice/big.bin").expect("published");
    assert_eq!(md5_hex(&stored), md5_hex(&bytes));
    assert_eq!(saved_parts(&root, 0).await, 0, "the saved state is gone");
    assert_eq!(
        c.info().await.unwrap().used,
        (bytes.len() as u64).div_ceil(4096) * 4096
    );
    daemon.kill().await.expect("stop rsftpd");
    // The secret key is in the daemon's environment, never in its output or logs.
    let mut logged = std::fs::read_to_string(root.join("stderr")).unwrap_or_default();
    for entry in std::fs::read_dir(root.join("logs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        logged.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    assert!(logged.contains("alice"), "the logs were read");
    assert!(!logged.contains(SECRET_KEY));
}
