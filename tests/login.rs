//! Logging in: passwords and keys that work, and every way of being refused.

use std::time::{Duration, Instant};

use rsftp::auth::{Secret, ThrottlePolicy};
use rsftp::server::Limits;
use russh::keys::{Algorithm, PrivateKey};

use crate::util::{PASSWORD, TestServer, TestUser};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_key_logins_work() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let (_conn, mut client) = server.client("alice").await;
    assert_eq!(client.pwd().await.unwrap(), "/");

    let conn = server.key_login("alice").await;
    let mut client = conn.open_rsftp().await.unwrap();
    assert_eq!(client.pwd().await.unwrap(), "/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_unknown_user_and_wrong_key_are_refused_alike() {
    let server = TestServer::start(&[
        TestUser::new("alice", "10MiB"),
        TestUser::new("bob", "10MiB"),
    ])
    .await;

    let started = Instant::now();
    let mut conn = server.connection("alice").await;
    assert!(!conn.login_password(&Secret::new("wrong")).await.unwrap());
    let wrong_password = started.elapsed();

    let started = Instant::now();
    let mut conn = server.connection("mallory").await;
    assert!(!conn.login_password(&Secret::new(PASSWORD)).await.unwrap());
    let unknown_user = started.elapsed();

    // Bob's key is a real key, just not alice's; a fresh key is known to no one.
    let bob_key =
        rsftp::client::load_key(&crate::util::key_path(server.root(), "bob"), None).unwrap();
    let mut conn = server.connection("alice").await;
    assert!(!conn.login_key(bob_key).await.unwrap());
    let stranger = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    let mut conn = server.connection("alice").await;
    assert!(!conn.login_key(stranger).await.unwrap());

    // Every refusal waits out the same rejection time, so none answers early.
    for elapsed in [wrong_password, unknown_user] {
        assert!(
            elapsed >= Duration::from_millis(900),
            "refused after {elapsed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_keeps_failing_is_banned() {
    let limits = Limits {
        throttle: ThrottlePolicy {
            max_failures: 3,
            window: Duration::from_secs(600),
            ban: Duration::from_secs(600),
        },
        ..Limits::default()
    };
    let server = TestServer::start_with(&[TestUser::new("alice", "10MiB")], limits).await;
    for _ in 0..3 {
        let mut conn = server.connection("alice").await;
        assert!(!conn.login_password(&Secret::new("wrong")).await.unwrap());
        conn.close().await.unwrap();
    }
    // The failures are counted as the connections end; then the peer is turned away
    // before the SSH handshake, whatever it would have sent.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = rsftp::client::Connection::connect(
            "127.0.0.1",
            server.addr.port(),
            "alice",
            server.host_key_check(),
        )
        .await;
        if attempt.is_err() {
            break;
        }
        assert!(Instant::now() < deadline, "the peer was not banned");
        drop(attempt);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
