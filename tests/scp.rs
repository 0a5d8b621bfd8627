//! OpenSSH `scp`, which speaks SFTP by default since OpenSSH 9, against rsftpd.

use std::path::Path;

use crate::sshd::{assert_ok, text};
use crate::util::{TestServer, TestUser, data, run_with_input};

async fn scp(server: &TestServer, args: &[String]) -> std::process::Output {
    let mut all = server.openssh_args("alice", "-P");
    all.extend_from_slice(args);
    run_with_input("scp", &all, b"").await
}

/// Every file and folder under `root`, with the files' bytes, sorted.
pub fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            if path.is_dir() {
                out.push((format!("{name}/"), Vec::new()));
                pending.push(path);
            } else {
                out.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_uploads_and_downloads_files_and_trees() {
    let server = TestServer::start(&[TestUser::new("alice", "100MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let l = local.path();
    let big = data(5 * 1024 * 1024 + 7, 1);
    std::fs::write(l.join("big.bin"), &big).unwrap();

    let output = scp(
        &server,
        &[
            l.join("big.bin").display().to_string(),
            "127.0.0.1:up.bin".into(),
        ],
    )
    .await;
    assert_ok(&output, "scp upload");
    assert_eq!(
        std::fs::read(server.home("alice").join("up.bin")).unwrap(),
        big
    );

    let output = scp(
        &server,
        &[
            "127.0.0.1:up.bin".into(),
            l.join("down.bin").display().to_string(),
        ],
    )
    .await;
    assert_ok(&output, "scp download");
    assert_eq!(std::fs::read(l.join("down.bin")).unwrap(), big);

    // A tree, both ways.
    let src = l.join("tree");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(src.join("top.txt"), b"top\n").unwrap();
    std::fs::write(src.join("a/one.bin"), data(100_000, 2)).unwrap();
    std::fs::write(src.join("a/b/two.bin"), data(300_000, 3)).unwrap();
    std::fs::write(src.join("a/b/zero"), b"").unwrap();
    let output = scp(
        &server,
        &[
            "-r".into(),
            src.display().to_string(),
            "127.0.0.1:copy".into(),
        ],
    )
    .await;
    assert_ok(&output, "scp -r upload");
    assert_eq!(tree(&server.home("alice").join("copy")), tree(&src));

    let back = l.join("back");
    let output = scp(
        &server,
        &[
            "-r".into(),
            "127.0.0.1:copy".into(),
            back.display().to_string(),
        ],
    )
    .await;
    assert_ok(&output, "scp -r download");
    assert_eq!(tree(&back), tree(&src));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_cannot_reach_outside_the_home() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let dest = local.path().join("stolen");
    let output = scp(
        &server,
        &["127.0.0.1:/etc/passwd".into(), dest.display().to_string()],
    )
    .await;
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("No such file"),
        "{}",
        text(&output.stderr)
    );
    assert!(!dest.exists());
    let output = scp(
        &server,
        &[
            "127.0.0.1:../../../../etc/passwd".into(),
            dest.display().to_string(),
        ],
    )
    .await;
    assert!(!output.status.success());
    assert!(!dest.exists());
}
