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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_in_as_one_user_does_not_wipe_failures_against_another() {
    let limits = Limits {
        throttle: ThrottlePolicy {
            max_failures: 5,
            window: Duration::from_secs(600),
            ban: Duration::from_secs(600),
        },
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
    // Guess bob's password, then log in as alice on the same connection, twice over.
    for _ in 0..2 {
        let mut conn = server.connection("bob").await;
        assert!(!conn.login_password(&Secret::new("guess-1")).await.unwrap());
        assert!(!conn.login_password(&Secret::new("guess-2")).await.unwrap());
        let _ = conn.close().await;
        let _ = server.client("alice").await;
    }
    // The fifth failure bans the peer, although it logged in twice in between.
    let mut conn = server.connection("bob").await;
    assert!(!conn.login_password(&Secret::new("guess-3")).await.unwrap());
    let refused = rsftp::client::Connection::connect(
        "127.0.0.1",
        server.addr.port(),
        "alice",
        server.host_key_check(),
    )
    .await;
    assert!(refused.is_err(), "the guesses were forgiven by a login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_dropped_and_one_over_the_peer_cap_waits() {
    let limits = Limits {
        startups: rsftp::server::StartupLimits {
            per_peer: 2,
            ..Default::default()
        },
        login_grace: Duration::from_secs(2),
        ..Limits::default()
    };
    let server = TestServer::start_with(&[TestUser::new("alice", "10MiB")], limits).await;
    // Two connections from one address that never speak hold that address's slots...
    let mut first = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...so a third from it waits: no banner yet.
    let mut third = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte))
            .await
            .is_err(),
        "a third connection from the same address got a slot"
    );
    drop(third);
    // Another address on this machine still gets in.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(server.addr).await.unwrap();
    let banner = tokio::time::timeout(Duration::from_secs(10), other.read(&mut byte)).await;
    assert!(matches!(banner, Ok(Ok(1))), "127.0.0.2 got no banner");
    drop(other);
    // A real client over the cap waits, and gets in once the silent ones are gone after
    // the grace time.
    let started = Instant::now();
    let (_conn, mut c) = tokio::time::timeout(Duration::from_secs(30), server.client("alice"))
        .await
        .expect("the waiting client got in");
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert_eq!(c.pwd().await.unwrap(), "/");
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), first.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "a silent connection outlived the grace time"
    );
    let _ = tokio::time::timeout(Duration::from_secs(10), second.read_to_end(&mut buf)).await;
}
