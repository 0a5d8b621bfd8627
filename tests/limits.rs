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

/// A bare russh client, for opening channels that never ask for anything.
struct BareClient {
    host_key: russh::keys::PublicKey,
}

impl russh::client::Handler for BareClient {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.key_data() == self.host_key.key_data()
            }
            russh::keys::PublicKeyOrCertificate::Certificate(_) => false,
        })
    }
}

async fn bare_login(server: &TestServer, user: &str) -> russh::client::Handle<BareClient> {
    let public = std::fs::read_to_string(server.root().join("keys/ssh_host_ed25519_key.pub"))
        .expect("host key");
    let host_key = russh::keys::PublicKey::from_openssh(public.trim()).expect("host key");
    let config = std::sync::Arc::new(russh::client::Config::default());
    let mut handle = russh::client::connect(config, server.addr, BareClient { host_key })
        .await
        .expect("connect");
    let auth = handle
        .authenticate_password(user, crate::util::PASSWORD)
        .await
        .expect("login");
    assert!(auth.success(), "password login of {user}");
    handle
}

/// Whether the server closed `channel` within `limit`.
async fn closed_within(
    channel: &mut russh::Channel<russh::client::Msg>,
    limit: std::time::Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, channel.wait()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(russh::ChannelMsg::Close)) => return true,
            Ok(Some(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclaimed_channels_are_closed_so_rounds_of_them_cannot_pass_the_cap() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let handle = bare_login(&server, "alice").await;
    let mut earlier: Vec<russh::Channel<russh::client::Msg>> = Vec::new();
    for round in 0..3 {
        let mut this_round = Vec::new();
        for _ in 0..8 {
            match handle.channel_open_session().await {
                Ok(channel) => this_round.push(channel),
                Err(err) => panic!("round {round}: a channel within the cap refused: {err}"),
            }
        }
        assert!(
            handle.channel_open_session().await.is_err(),
            "round {round}: a ninth channel was opened"
        );
        // The earlier rounds' channels must all have been closed by now.
        for (n, channel) in earlier.iter_mut().enumerate() {
            assert!(
                closed_within(channel, std::time::Duration::from_secs(1)).await,
                "round {round}: an earlier unclaimed channel ({n}) is still open"
            );
        }
        earlier = this_round;
        if round < 2 {
            // Past the claim time, with room for a slow machine.
            tokio::time::sleep(std::time::Duration::from_secs(11)).await;
            for channel in &mut earlier {
                assert!(
                    closed_within(channel, std::time::Duration::from_secs(10)).await,
                    "round {round}: an unclaimed channel was not closed"
                );
            }
        }
    }
}
