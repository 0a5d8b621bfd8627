//! Guessing one account's password from many addresses: past a threshold, that
//! account's logins slow down for every new source, but not for its owner's address.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use rsftp::auth::{AccountPolicy, Secret};
use rsftp::client::Connection;
use rsftp::server::Limits;

use crate::util::{TestServer, TestUser};

const FIRST_DELAY: Duration = Duration::from_secs(4);

/// One wrong password for `user` from `127.0.0.<last>`; how long the refusal took.
async fn fail_from(server: &TestServer, last: u8, user: &str) -> Duration {
    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
    let check = server.host_key_check();
    let mut conn = Connection::connect_from(source, "127.0.0.1", server.addr.port(), user, check)
        .await
        .expect("connect");
    let started = Instant::now();
    let ok = tokio::time::timeout(
        Duration::from_secs(60),
        conn.login_password(&Secret::new("guess")),
    )
    .await
    .expect("an answer within a minute")
    .expect("login attempt");
    assert!(!ok, "a guess logged in");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_from_many_addresses_slow_the_account_but_not_its_owner() {
    let limits = Limits {
        account_throttle: AccountPolicy {
            threshold: 8,
            window: Duration::from_secs(600),
            first_delay: FIRST_DELAY,
            max_delay: 4 * FIRST_DELAY,
            trust: Duration::from_secs(600),
        },
        ..Limits::default()
    };
    let server = TestServer::start_with(&[TestUser::new("alice", "10MiB")], limits).await;
    // The owner has logged in from 127.0.0.1 before.
    let (conn, _client) = server.client("alice").await;
    conn.close().await.unwrap();

    // One guess each from eight addresses: none of them comes near its own ban.
    let server = std::sync::Arc::new(server);
    let guesses: Vec<_> = (2..=9u8)
        .map(|last| {
            let server = std::sync::Arc::clone(&server);
            tokio::spawn(async move { fail_from(&server, last, "alice").await })
        })
        .collect();
    for guess in guesses {
        guess.await.unwrap();
    }

    // A ninth address now waits out the account's delay before it hears the refusal,
    // well beyond the fixed one-second rejection time.
    let slowed = fail_from(&server, 10, "alice").await;
    assert!(
        slowed >= FIRST_DELAY - Duration::from_millis(500),
        "a new address was refused after only {slowed:?}"
    );

    // The owner's address is exempt: it logs in without the (by now doubled) delay.
    let started = Instant::now();
    let (_conn, mut client) = server.client("alice").await;
    let owner = started.elapsed();
    assert_eq!(client.pwd().await.unwrap(), "/");
    assert!(
        owner < 2 * FIRST_DELAY,
        "the owner waited {owner:?}, as long as a guesser"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_peer_reconnecting_fills_no_log_but_its_ban_is_written() {
    use crate::log_volume::{count, log_with};
    use crate::memory::Daemon;
    use tokio::io::AsyncReadExt;

    let daemon = Daemon::start(&[TestUser::new("alice", "10MiB")], &[]).await;
    let logs = daemon.server.root().join("logs");
    // Ten wrong passwords (the default ban) over two connections.
    for _ in 0..2 {
        let mut conn = daemon.server.connection("alice").await;
        for _ in 0..5 {
            assert!(!conn.login_password(&Secret::new("guess")).await.unwrap());
        }
        let _ = conn.close().await;
    }
    let log = log_with(&logs, "peer banned after repeated login failures").await;
    assert_eq!(
        count(&log, "peer banned after repeated login failures"),
        1,
        "{log}"
    );

    // The banned peer reconnects 60 times; each is closed unanswered.
    const RECONNECTS: usize = 60;
    for _ in 0..RECONNECTS {
        let mut stream = tokio::net::TcpStream::connect(daemon.server.addr)
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "a banned peer was answered"
        );
    }
    // After the rate limit's interval, one more refusal carries the count left out.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let _ = tokio::net::TcpStream::connect(daemon.server.addr).await;
    let refused = "connection refused: peer banned";
    let log = log_with(&logs, &format!("{refused}|suppressed=40")).await;
    assert_eq!(count(&log, refused), 21, "{log}");
    assert_eq!(count(&log, &format!("{refused}|suppressed=40")), 1, "{log}");
    assert_eq!(
        count(&log, "peer banned after repeated login failures"),
        1,
        "{log}"
    );
}
