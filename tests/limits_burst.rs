//! Bursts of real clients from one address get in; floods of silent connections do not
//! lock anyone out, and end in a ban.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rsftp::server::{Limits, StartupLimits};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::sshd::{assert_ok, sftp_batch, text};
use crate::util::{TestServer, TestUser};

/// A TCP connection to `server` from the loopback address `from`.
async fn connect_from(from: [u8; 4], server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(server).await
}

/// Whether the server greets `stream` with its SSH banner within 10 s (rather than
/// closing it unanswered).
async fn greeted(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut buf)).await;
    matches!(read, Ok(Ok(_))) && &buf == b"SSH-"
}

/// Whether the server closes `stream` within `limit` (it sent its banner, or nothing).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_openssh_sftp_sessions_of_one_user_all_succeed() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    // A client over its address's startup slots waits for the server's banner, so let
    // OpenSSH wait for it as long as a busy machine may need (it takes the first value
    // given for an option, so this one goes first).
    let mut args = vec!["-o".to_owned(), "ConnectTimeout=120".to_owned()];
    args.extend(server.openssh_args("alice", "-P"));
    let runs: Vec<_> = (0..32)
        .map(|n| {
            let args = args.clone();
            tokio::spawn(async move {
                sftp_batch(&args, &format!("mkdir /d{n}\nls /\nrmdir /d{n}\n")).await
            })
        })
        .collect();
    let mut failed = Vec::new();
    for (n, run) in runs.into_iter().enumerate() {
        let output = run.await.unwrap();
        if !output.status.success() {
            failed.push(format!("#{n}: {}", text(&output.stderr)));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 32 sessions failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_silent_connections_from_one_address_do_not_lock_out_another() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let mut silent = Vec::new();
    for _ in 0..200 {
        // Past the waiting caps, the server closes them at once; that is fine.
        if let Ok(stream) = connect_from([127, 0, 0, 2], server.addr).await {
            silent.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let login = tokio::time::timeout(Duration::from_secs(20), server.client("alice")).await;
    let (_conn, mut alice) = login.expect("alice logged in while 127.0.0.2 flooded");
    assert_eq!(alice.pwd().await.unwrap(), "/");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_time_out_quickly_and_end_in_a_ban() {
    let limits = Limits {
        version_grace: Duration::from_secs(1),
        ..Limits::default()
    };
    let server = TestServer::start_with(&[TestUser::new("alice", "10MiB")], limits).await;
    // Ten rounds' worth of silent connections, eight slots at a time.
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(connect_from([127, 0, 0, 3], server.addr).await.unwrap());
    }
    let started = Instant::now();
    for stream in &mut silent {
        assert!(
            closed_within(stream, Duration::from_secs(20)).await,
            "a silent connection outlived the version grace"
        );
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Ten idle timeouts count as ten failed logins: the address is banned now, so a
    // real client from it is turned away...
    let mut late = connect_from([127, 0, 0, 3], server.addr).await.unwrap();
    assert!(!greeted(&mut late).await, "a banned address was served");
    // ...while others are not affected.
    let mut fine = connect_from([127, 0, 0, 5], server.addr).await.unwrap();
    assert!(greeted(&mut fine).await, "another address was not served");
    let (_conn, mut alice) = server.client("alice").await;
    assert_eq!(alice.pwd().await.unwrap(), "/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_is_capped_not_grace_time_and_giving_up_is_no_failure() {
    let grace = Duration::from_secs(3);
    let limits = Limits {
        version_grace: grace,
        login_grace: grace,
        startups: StartupLimits {
            per_peer: 1,
            max_waiting_per_peer: 12,
            ..StartupLimits::default()
        },
        ..Limits::default()
    };
    let server = TestServer::start_with(&[TestUser::new("alice", "10MiB")], limits).await;
    // One silent connection holds 127.0.0.4's only slot.
    let held_at = Instant::now();
    let mut holder = connect_from([127, 0, 0, 4], server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Twelve more wait; a thirteenth is over the waiting cap and closed at once.
    let mut waiting = Vec::new();
    for _ in 0..12 {
        waiting.push(connect_from([127, 0, 0, 4], server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = connect_from([127, 0, 0, 4], server.addr).await.unwrap();
    assert!(
        !greeted(&mut over).await,
        "a connection over the waiting cap was served"
    );
    // Waiting is not on the grace clock: past the grace time, all twelve are still
    // there (one of them has had the holder's slot since it timed out).
    tokio::time::sleep_until((held_at + grace + Duration::from_millis(500)).into()).await;
    for stream in &mut waiting {
        assert!(
            !closed_within(stream, Duration::from_millis(20)).await,
            "a waiting connection was closed"
        );
    }
    assert!(closed_within(&mut holder, Duration::from_secs(10)).await);
    // They all give up. That must not count against the address: a real client from it
    // still logs in, although twelve connections left without a word.
    drop(waiting);
    let mut args = vec!["-o".to_owned(), "ConnectTimeout=60".to_owned()];
    args.extend(server.openssh_args("alice", "-P"));
    args.extend(["-o".to_owned(), "BindAddress=127.0.0.4".to_owned()]);
    let output = sftp_batch(&args, "ls /\n").await;
    assert_ok(&output, "sftp from 127.0.0.4 after its waiters gave up");
}
