//! Quotas: refusals that give the numbers, reservations that hold across sessions, and
//! usage that survives a restart.

use rsftp::client::{ClientError, Quiet, upload};
use rsftp::protocol::ErrorCode;

use crate::util::{TestServer, TestUser, data};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_over_the_quota_is_refused_and_nothing_is_published() {
    let server = TestServer::start(&[TestUser::new("alice", "1MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let small = local.path().join("small");
    let big = local.path().join("big");
    std::fs::write(&small, data(300_000, 1)).unwrap();
    std::fs::write(&big, data(800_000, 2)).unwrap();
    let (_conn, mut c) = server.client("alice").await;
    upload(&mut c, &small, "small", &Quiet).await.unwrap();
    let before = c.info().await.unwrap();

    let err = upload(&mut c, &big, "big", &Quiet).await.unwrap_err();
    let ClientError::Remote { code, message } = err else {
        panic!("expected a quota refusal, got {err:?}");
    };
    assert_eq!(code, ErrorCode::Quota);
    // Each file counts its size rounded up to 4 KiB.
    assert_eq!(
        message,
        "quota exceeded: need 802816 bytes, used 303104 of 1048576 bytes"
    );
    assert!(
        !server.home("alice").join("big").exists(),
        "nothing published"
    );
    assert_eq!(c.info().await.unwrap(), before, "usage unchanged");

    // In-place writes are held to the same quota, and refused whole.
    let err = c.write("w", 0, &data(800_000, 3)).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::Quota));
    assert!(
        !server.home("alice").join("w").exists(),
        "a refused write creates nothing"
    );
    assert_eq!(c.info().await.unwrap(), before);
    assert_eq!(c.pwd().await.unwrap(), "/", "the session goes on");

    // Deleting gives the space back, and then it fits.
    c.rm("small").await.unwrap();
    assert_eq!(c.info().await.unwrap().used, 0);
    upload(&mut c, &big, "big", &Quiet).await.unwrap();
    // Replacing a file returns the old copy's space once the new one is published; until
    // then both exist, so the new copy must fit beside the old.
    c.rm("big").await.unwrap();
    upload(&mut c, &small, "s", &Quiet).await.unwrap();
    let smaller = local.path().join("smaller");
    std::fs::write(&smaller, data(200_000, 4)).unwrap();
    upload(&mut c, &smaller, "s", &Quiet).await.unwrap();
    assert_eq!(c.info().await.unwrap().used, 200_704);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_puts_cannot_together_pass_the_quota() {
    let server = TestServer::start(&[TestUser::new("alice", "1MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let a = local.path().join("a");
    let b = local.path().join("b");
    std::fs::write(&a, data(600_000, 1)).unwrap();
    std::fs::write(&b, data(600_000, 2)).unwrap();
    let (_c1, mut one) = server.client("alice").await;
    let (_c2, mut two) = server.client("alice").await;
    // Both reserve before any data flows, so at most one can be admitted.
    let (first, second) = tokio::join!(
        upload(&mut one, &a, "a", &Quiet),
        upload(&mut two, &b, "b", &Quiet)
    );
    let results = [first.is_ok(), second.is_ok()];
    assert_eq!(results.iter().filter(|ok| **ok).count(), 1, "{results:?}");
    let refused = if first.is_err() { first } else { second };
    assert_eq!(refused.unwrap_err().code(), Some(&ErrorCode::Quota));
    let info = one.info().await.unwrap();
    assert_eq!(info.used, 602_112, "600,000 bytes rounded up to 4 KiB");
    assert!(info.used <= info.limit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_after_a_restart_equals_usage_before_it() {
    let mut server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("f");
    std::fs::write(&file, data(1_234_567, 1)).unwrap();
    let before = {
        let (_conn, mut c) = server.client("alice").await;
        upload(&mut c, &file, "f", &Quiet).await.unwrap();
        c.mkdir("d").await.unwrap();
        c.write("d/g", 0, &data(4321, 2)).await.unwrap();
        // A partial upload counts too: start one and abandon it halfway.
        let start = c.begin_put("partial", 100_000, None).await.unwrap();
        assert!(matches!(
            start,
            rsftp::client::PutStart::Have { offset: 0, .. }
        ));
        let half = local.path().join("half");
        std::fs::write(&half, data(50_000, 3)).unwrap();
        let hasher = md5::Md5::default();
        let handle = std::fs::File::open(&half).unwrap();
        c.send_from(0, handle, 50_000, hasher, |_| {})
            .await
            .unwrap();
        drop(c);
        // The server books the partial's bytes as it writes them; wait until it has.
        let (_conn, mut c) = server.client("alice").await;
        // Each size rounded up to 4 KiB, and 4 KiB for the folder.
        let expected = 1_236_992 + 4096 + 8192 + 53_248;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let info = c.info().await.unwrap();
            if info.used == expected || std::time::Instant::now() > deadline {
                break info;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    assert_eq!(before.used, 1_236_992 + 4096 + 8192 + 53_248);

    server.stop().await;
    server.launch(rsftp::server::Limits::default()).await;
    let (_conn, mut c) = server.client("alice").await;
    assert_eq!(c.info().await.unwrap(), before);
}
