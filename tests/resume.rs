//! Resumable, verified transfers: a cut-off 64 MiB put resumes from what the server
//! holds, data that does not match its MD5 is never published, and downloads resume
//! from a local `.part` only when its prefix matches.

use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use rsftp::client::{ClientError, PutStart, Quiet, download, partial_path, upload};
use rsftp::protocol::{ErrorCode, Md5Digest};

use crate::util::{TestServer, TestUser, data, md5_hex};

const MIB: usize = 1024 * 1024;

/// Waits until the server's staging area holds `at_least` bytes (bounded in time).
async fn staged_bytes(server: &TestServer, user: &str, at_least: u64) -> u64 {
    let staging = server.staging(user);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held: u64 = std::fs::read_dir(&staging)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        if held >= at_least || Instant::now() > deadline {
            return held;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_cut_off_halfway_resumes_from_what_the_server_holds() {
    let server = TestServer::start(&[TestUser::new("alice", "1GiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("big.bin");
    let bytes = data(64 * MIB, 7);
    std::fs::write(&src, &bytes).unwrap();
    let half = local.path().join("half.bin");
    std::fs::write(&half, &bytes[..32 * MIB]).unwrap();

    // Send only the first half of a 64 MiB put, then drop the connection.
    {
        let (conn, mut c) = server.client("alice").await;
        let start = c
            .begin_put("big.bin", bytes.len() as u64, None)
            .await
            .unwrap();
        assert!(
            matches!(start, PutStart::Have { offset: 0, .. }),
            "{start:?}"
        );
        let file = std::fs::File::open(&half).unwrap();
        c.send_from(0, file, 32 * MIB as u64, Md5::new(), |_| {})
            .await
            .unwrap();
        let held = staged_bytes(&server, "alice", 32 * MIB as u64).await;
        assert_eq!(
            held,
            32 * MIB as u64,
            "the server kept everything it received"
        );
        drop(c);
        drop(conn);
    }
    assert!(
        !server.home("alice").join("big.bin").exists(),
        "nothing published yet"
    );

    // Put again: the server says what it holds, and only the rest travels.
    let (_conn, mut c) = server.client("alice").await;
    let report = upload(&mut c, &src, "big.bin", &Quiet).await.unwrap();
    assert_eq!(report.resumed_from, 32 * MIB as u64, "{report:?}");
    assert_eq!(report.transferred, 32 * MIB as u64);
    assert!(!report.restarted);
    let published = std::fs::read(server.home("alice").join("big.bin")).unwrap();
    assert_eq!(md5_hex(&published), md5_hex(&bytes));
    assert_eq!(report.md5.to_string(), md5_hex(&bytes));
    assert_eq!(
        c.info().await.unwrap().used,
        64 * MIB as u64,
        "no partial left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_file_with_the_same_name_restarts_instead_of_splicing() {
    let server = TestServer::start(&[TestUser::new("alice", "1GiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let old = data(2 * MIB, 1);
    let new = data(2 * MIB, 2);
    let half = local.path().join("old-half");
    std::fs::write(&half, &old[..MIB]).unwrap();
    {
        let (_conn, mut c) = server.client("alice").await;
        c.begin_put("f", old.len() as u64, None).await.unwrap();
        let file = std::fs::File::open(&half).unwrap();
        c.send_from(0, file, MIB as u64, Md5::new(), |_| {})
            .await
            .unwrap();
        staged_bytes(&server, "alice", MIB as u64).await;
    }
    let src = local.path().join("new");
    std::fs::write(&src, &new).unwrap();
    let (_conn, mut c) = server.client("alice").await;
    let report = upload(&mut c, &src, "f", &Quiet).await.unwrap();
    assert!(report.restarted, "{report:?}");
    assert_eq!(report.resumed_from, 0);
    assert_eq!(std::fs::read(server.home("alice").join("f")).unwrap(), new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_that_does_not_match_its_md5_is_not_published() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("f");
    let bytes = data(300_000, 9);
    std::fs::write(&src, &bytes).unwrap();
    let (_conn, mut c) = server.client("alice").await;

    // Declare one MD5 up front, send other bytes.
    let claimed = Md5Digest::of(b"something else entirely");
    let start = c
        .begin_put("f", bytes.len() as u64, Some(claimed))
        .await
        .unwrap();
    assert!(matches!(start, PutStart::Have { offset: 0, .. }));
    let file = std::fs::File::open(&src).unwrap();
    c.send_from(0, file, bytes.len() as u64, Md5::new(), |_| {})
        .await
        .unwrap();
    let err = c.end_put(None).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::Checksum), "{err:?}");
    assert!(!server.home("alice").join("f").exists());
    assert_eq!(
        c.info().await.unwrap().used,
        0,
        "the failed partial is gone"
    );

    // Declared after the data (`done`), the same.
    c.begin_put("f", bytes.len() as u64, None).await.unwrap();
    let file = std::fs::File::open(&src).unwrap();
    c.send_from(0, file, bytes.len() as u64, Md5::new(), |_| {})
        .await
        .unwrap();
    let err = c.end_put(Some(claimed)).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::Checksum));
    assert!(!server.home("alice").join("f").exists());
    assert_eq!(c.pwd().await.unwrap(), "/", "the session is still in step");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_resumes_from_a_matching_part_and_restarts_from_a_stale_one() {
    let server = TestServer::start(&[TestUser::new("alice", "100MiB")]).await;
    let bytes = data(5 * MIB, 4);
    std::fs::write(server.home("alice").join("f"), &bytes).unwrap();
    let local = tempfile::tempdir().unwrap();
    let dest = local.path().join("f");
    let part = partial_path(&dest);
    let (_conn, mut c) = server.client("alice").await;

    std::fs::write(&part, &bytes[..3 * MIB]).unwrap();
    let report = download(&mut c, "f", &dest, false, &Quiet).await.unwrap();
    assert_eq!(
        (report.resumed_from, report.transferred),
        (3 * MIB as u64, 2 * MIB as u64)
    );
    assert!(!report.restarted);
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    assert!(!part.exists());

    // A .part that is not a prefix of the remote file is thrown away, not spliced.
    std::fs::remove_file(&dest).unwrap();
    let mut stale = bytes[..MIB].to_vec();
    stale[100] ^= 0xff;
    std::fs::write(&part, &stale).unwrap();
    let report = download(&mut c, "f", &dest, false, &Quiet).await.unwrap();
    assert!(report.restarted, "{report:?}");
    assert_eq!(report.transferred, 5 * MIB as u64);
    assert_eq!(md5_hex(&std::fs::read(&dest).unwrap()), md5_hex(&bytes));

    // A .part longer than the file restarts too.
    std::fs::remove_file(&dest).unwrap();
    std::fs::write(&part, data(6 * MIB, 5)).unwrap();
    let report = download(&mut c, "f", &dest, false, &Quiet).await.unwrap();
    assert!(report.restarted);
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);

    // A missing remote file leaves no local debris.
    let err = download(&mut c, "nope", &local.path().join("nope"), false, &Quiet)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Remote {
                code: ErrorCode::NotFound,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!partial_path(&local.path().join("nope")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_shutdown_mid_upload_leaves_it_resumable() {
    let mut server = TestServer::start(&[TestUser::new("alice", "1GiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("f");
    let bytes = data(16 * MIB, 3);
    std::fs::write(&src, &bytes).unwrap();
    let half = local.path().join("half");
    std::fs::write(&half, &bytes[..8 * MIB]).unwrap();
    let (conn, mut c) = server.client("alice").await;
    c.begin_put("f", bytes.len() as u64, None).await.unwrap();
    let file = std::fs::File::open(&half).unwrap();
    c.send_from(0, file, 8 * MIB as u64, Md5::new(), |_| {})
        .await
        .unwrap();
    staged_bytes(&server, "alice", 8 * MIB as u64).await;

    server.stop().await;
    drop(c);
    drop(conn);
    server.launch(rsftp::server::Limits::default()).await;

    let (_conn, mut c) = server.client("alice").await;
    let report = upload(&mut c, &src, "f", &Quiet).await.unwrap();
    assert_eq!(report.resumed_from, 8 * MIB as u64, "{report:?}");
    assert_eq!(
        std::fs::read(server.home("alice").join("f")).unwrap(),
        bytes
    );
}
