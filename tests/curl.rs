//! curl's sftp:// (libssh2) against rsftpd: upload, download and a listing, and the
//! failures it must report.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::real_clients::{assert_failure, assert_success, host_key_fingerprint, run_client};
use crate::sshd::text;
use crate::util::{PASSWORD, TestServer, TestUser, data};

/// The server's host key as curl's `--hostpubmd5` wants it: 32 hex digits.
fn host_key_md5(server: &TestServer) -> String {
    let fingerprint = host_key_fingerprint(server, "md5");
    let hex = fingerprint
        .strip_prefix("MD5:")
        .unwrap_or_else(|| panic!("an MD5 fingerprint: {fingerprint:?}"));
    hex.replace(':', "")
}

/// Fails the test, loudly, when this curl was built without SFTP.
async fn require_sftp_support(dir: &Path) {
    let version = run_client(
        "curl",
        &["--version".into()],
        &[],
        dir,
        Duration::from_secs(30),
    )
    .await;
    let said = text(&version.stdout);
    assert!(
        said.lines()
            .any(|l| l.starts_with("Protocols:") && l.split_whitespace().any(|p| p == "sftp")),
        "this curl has no sftp:// support (it needs libssh2 or libssh; Debian's curl has it): {said}"
    );
}

async fn curl(server: &TestServer, dir: &Path, args: &[&str]) -> Output {
    let mut all: Vec<String> = [
        "--silent",
        "--show-error",
        "--connect-timeout",
        "10",
        "--hostpubmd5",
        &host_key_md5(server),
        "--user",
        &format!("alice:{PASSWORD}"),
    ]
    .map(String::from)
    .to_vec();
    all.extend(args.iter().map(|a| a.to_string()));
    let home = dir.join(".curl-home");
    std::fs::create_dir_all(&home).unwrap();
    run_client(
        "curl",
        &all,
        &[("HOME", home.display().to_string())],
        dir,
        Duration::from_secs(120),
    )
    .await
}

fn url(server: &TestServer, path: &str) -> String {
    format!("sftp://127.0.0.1:{}/{path}", server.addr.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_download_and_list() {
    let server = TestServer::start(&[TestUser::new("alice", "100MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    require_sftp_support(local.path()).await;
    let content = data(5 * 1024 * 1024 + 17, 3);
    std::fs::write(local.path().join("up.bin"), &content).unwrap();

    let up = curl(
        &server,
        local.path(),
        &[
            "--ftp-create-dirs",
            "--upload-file",
            "up.bin",
            &url(&server, "in%20here/up.bin"),
        ],
    )
    .await;
    assert_success(&up, "curl upload");
    assert!(std::fs::read(server.home("alice").join("in here/up.bin")).unwrap() == content);

    let down = curl(
        &server,
        local.path(),
        &["--output", "down.bin", &url(&server, "in%20here/up.bin")],
    )
    .await;
    assert_success(&down, "curl download");
    assert!(std::fs::read(local.path().join("down.bin")).unwrap() == content);

    std::fs::write(server.home("alice").join("in here/second.txt"), b"2").unwrap();
    let list = curl(&server, local.path(), &[&url(&server, "in%20here/")]).await;
    assert_success(&list, "curl listing");
    let listing = text(&list.stdout);
    let names: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert!(names.contains(&"up.bin"), "{listing}");
    assert!(names.contains(&"second.txt"), "{listing}");
    let size = content.len().to_string();
    assert!(
        listing
            .lines()
            .any(|l| l.ends_with("up.bin") && l.split_whitespace().any(|w| w == size)),
        "size {size} in {listing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_quota_missing_files_and_paths_outside_the_home_fail() {
    let server = TestServer::start(&[TestUser::new("alice", "1MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    require_sftp_support(local.path()).await;
    let secret = server.root().join("secret.txt");
    std::fs::write(&secret, b"server secret").unwrap();
    std::os::unix::fs::symlink(&secret, server.home("alice").join("escape")).unwrap();
    std::fs::write(local.path().join("big.bin"), data(3 * 1024 * 1024, 8)).unwrap();

    let up = curl(
        &server,
        local.path(),
        &["--upload-file", "big.bin", &url(&server, "big.bin")],
    )
    .await;
    assert_failure(&up, "curl upload over the quota");

    for path in ["nosuch.txt", "../../secret.txt", "escape"] {
        let down = curl(
            &server,
            local.path(),
            // --path-as-is: send `..` to the server instead of resolving it here.
            &["--path-as-is", "--output", "got", &url(&server, path)],
        )
        .await;
        assert_failure(&down, &format!("curl download of {path}"));
        let got = std::fs::read(local.path().join("got")).unwrap_or_default();
        assert!(!text(&got).contains("server secret"), "{path} leaked");
    }
    // The same login still works for what is there.
    std::fs::write(server.home("alice").join("mine.txt"), b"mine").unwrap();
    let down = curl(&server, local.path(), &[&url(&server, "mine.txt")]).await;
    assert_success(&down, "curl download of a file that is there");
    assert_eq!(down.stdout, b"mine");
}
