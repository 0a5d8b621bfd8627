//! Session limits, globally and per user, with a clear refusal.

use rsftp::server::Limits;

use crate::util::{TestServer, TestUser};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_limit_holds_and_other_users_still_get_in() {
    let server = TestServer::start(&[
        TestUser {
            name: "alice",
            quota: "10MiB",
            max_sessions: Some(2),
        },
        TestUser::new("bob", "10MiB"),
    ])
    .await;
    let (_a1, mut one) = server.client("alice").await;
    let (_a2, mut two) = server.client("alice").await;
    let mut third = server.connection("alice").await;
    // The credentials are right; the session is refused after login, with a reason.
    let _ = third
        .login_password(&rsftp::auth::Secret::new(crate::util::PASSWORD))
        .await;
    assert!(
        third.open_rsftp().await.is_err(),
        "a third alice session was admitted"
    );
    let (_b, mut bob) = server.client("bob").await;
    assert_eq!(bob.pwd().await.unwrap(), "/");
    assert_eq!(one.pwd().await.unwrap(), "/");
    assert_eq!(two.pwd().await.unwrap(), "/");

    // Once one ends, there is room again.
    drop(one);
    drop(_a1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut conn = server.connection("alice").await;
        let _ = conn
            .login_password(&rsftp::auth::Secret::new(crate::util::PASSWORD))
            .await;
        if conn.open_rsftp().await.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_limit_holds_with_a_message_openssh_shows() {
    let limits = Limits {
        max_sessions: 2,
        ..Limits::default()
    };
    let server = TestServer::start_with(
        &[
            TestUser::new("alice", "10MiB"),
            TestUser::new("bob", "10MiB"),
        ],
        limits,
    )
    .await;
    let (_a, mut alice) = server.client("alice").await;
    let (_b, mut bob) = server.client("bob").await;
    let output = server.ssh_subsystem("bob", b"pwd\n").await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("too many sessions on this server (2)"),
        "ssh said: {stderr}"
    );
    assert_eq!(alice.pwd().await.unwrap(), "/");
    assert_eq!(bob.pwd().await.unwrap(), "/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_time_out() {
    let mut server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    server.stop().await;
    server.idle_timeout = Some(std::time::Duration::from_secs(1));
    server.launch(Limits::default()).await;
    let (_conn, mut busy) = server.client("alice").await;
    let (_idle_conn, mut idle) = server.client("alice").await;
    // Keep one session busy past the timeout; leave the other alone.
    for _ in 0..8 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        assert_eq!(busy.pwd().await.unwrap(), "/");
    }
    assert!(idle.pwd().await.is_err(), "the idle session was not closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_per_connection_are_capped_and_unclaimed_ones_closed() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let (conn, _first) = server.client("alice").await;
    // Up to eight channels at once on one connection, the first included.
    let mut open = Vec::new();
    for _ in 0..7 {
        open.push(conn.open_rsftp().await.expect("a channel within the cap"));
    }
    assert!(
        conn.open_rsftp().await.is_err(),
        "a ninth channel was opened"
    );
    // An unknown subsystem is refused, and its channel does not count against the cap.
    drop(open.pop());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(conn.open_subsystem("nope").await.is_err());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut again = conn
        .open_rsftp()
        .await
        .expect("the refused channel freed its place");
    assert_eq!(again.pwd().await.unwrap(), "/");
}
