//! Bad input gets a clear error, the session goes on, and nobody else notices.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{Raw, TestServer, TestUser, data, two_users};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_lines_get_an_error_and_the_session_goes_on() {
    let server = two_users().await;
    let mut alice = Raw::open(&server, "alice").await;
    let mut bob = Raw::open(&server, "bob").await;
    for (line, code) in [
        (&b"frobnicate"[..], "ERR unknown-command"),
        (b"", "ERR bad-request"),
        (b"rm", "ERR bad-request"),
        (b"pwd extra", "ERR bad-request"),
        (b"read f -1 2", "ERR bad-request"),
        (b"read f 99999999999999999999999 1", "ERR bad-request"),
        (b"get f 0 nothex", "ERR bad-request"),
        (b"stat \"unterminated", "ERR bad-request"),
        (b"stat a\"b", "ERR bad-request"),
        (b"stat \xff\xfe", "ERR bad-request"),
        (b"stat a\x07b", "ERR bad-request"),
        (b"\x00\x01\x02\x03", "ERR bad-request"),
        (b"done d41d8cd98f00b204e9800998ecf8427e", "ERR bad-request"),
    ] {
        let mut request = line.to_vec();
        request.push(b'\n');
        alice.send(&request).await;
        let reply = alice.line().await;
        assert!(reply.starts_with(code), "{line:?} got {reply:?}");
        assert_eq!(alice.ask("pwd").await, "OK /", "after {line:?}");
    }
    assert_eq!(
        bob.ask("pwd").await,
        "OK /",
        "another user's session is unaffected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_long_lines_and_binary_garbage_are_refused_without_harm() {
    let server = two_users().await;
    let mut alice = Raw::open(&server, "alice").await;
    let mut bob = Raw::open(&server, "bob").await;

    // A line far over the 16 KiB limit, sent in one go: one error, nothing allocated.
    let mut long = b"stat ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    long.push(b'\n');
    alice.send(&long).await;
    let reply = alice.line().await;
    assert!(reply.starts_with("ERR too-long"), "{reply}");
    assert_eq!(alice.ask("pwd").await, "OK /");

    // A megabyte of binary garbage with a few newlines in it: an error per line.
    let mut garbage = data(1024 * 1024, 42);
    for byte in garbage.iter_mut() {
        if *byte == b'\n' {
            *byte = b'x';
        }
    }
    for i in [1000, 400_000, 900_000] {
        garbage[i] = b'\n';
    }
    garbage.push(b'\n');
    alice.send(&garbage).await;
    for _ in 0..4 {
        let reply = alice.line().await;
        assert!(reply.starts_with("ERR "), "{reply:?}");
    }
    assert_eq!(alice.ask("pwd").await, "OK /");
    assert_eq!(bob.ask("pwd").await, "OK /");
    // Pipelined requests are answered in order.
    alice.send(b"mkdir p\ncd p\npwd\ncd /\nrmdir p\n").await;
    for expected in ["OK", "OK /p", "OK /p", "OK /", "OK"] {
        assert_eq!(alice.line().await, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_too_large_to_trust_ends_only_that_channel() {
    let server = two_users().await;
    let mut alice = Raw::open(&server, "alice").await;
    let mut bob = Raw::open(&server, "bob").await;
    let reply = alice.ask("write f 0 99999999999").await;
    assert!(reply.starts_with("ERR too-large"), "{reply}");
    assert_eq!(alice.line().await, "", "the channel is closed");
    assert!(!server.home("alice").join("f").exists());

    // A put whose `from` line is not one loses framing: that channel ends too.
    let mut alice = Raw::open(&server, "alice").await;
    let reply = alice.ask("put g 10 -").await;
    assert!(reply.starts_with("OK have 0 "), "{reply}");
    let reply = alice.ask("hello there").await;
    assert!(reply.starts_with("ERR bad-request"), "{reply}");
    assert_eq!(alice.line().await, "");

    assert_eq!(bob.ask("pwd").await, "OK /");
    let (_conn, mut fresh) = server.client("alice").await;
    assert_eq!(fresh.pwd().await.unwrap(), "/", "alice can still log in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_ssh_closes_that_connection_only() {
    let server = two_users().await;
    let mut bob = Raw::open(&server, "bob").await;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    socket.write_all(&data(64 * 1024, 1)).await.unwrap();
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "the server hung up on garbage");
    assert_eq!(bob.ask("pwd").await, "OK /");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_pipelined_after_a_refused_put_is_never_run_as_requests() {
    let server = TestServer::start(&[TestUser::new("alice", "100B")]).await;
    // A put the quota refuses, with its `from`, data and `done` sent without waiting, the
    // way a script pipes it: the data holds lines that would be requests.
    let mut alice = Raw::open(&server, "alice").await;
    alice
        .send(b"put big 1000 -\nfrom 0\nmkdir pwned\nrm x\ndone d41d8cd98f00b204e9800998ecf8427e\n")
        .await;
    assert!(alice.line().await.starts_with("ERR quota"));
    assert!(alice.line().await.starts_with("ERR bad-request"));
    assert_eq!(alice.line().await, "", "the channel is closed");
    assert!(
        !server.home("alice").join("pwned").exists(),
        "data ran as a request"
    );

    // The same after `uptodate`.
    std::fs::write(server.home("alice").join("h"), b"hello\n").unwrap();
    let mut alice = Raw::open(&server, "alice").await;
    alice
        .send(b"put h 6 b1946ac92492d2347c6235b4d2611184\nfrom 0\nmkdir pwned\n")
        .await;
    assert_eq!(alice.line().await, "OK uptodate");
    assert!(alice.line().await.starts_with("ERR bad-request"));
    assert_eq!(alice.line().await, "");
    assert!(!server.home("alice").join("pwned").exists());

    // And after a `write` line that does not parse, whose length is unknown.
    let mut alice = Raw::open(&server, "alice").await;
    alice
        .send(b"write f 0 99999999999999999999999\nmkdir pwned\n")
        .await;
    assert!(alice.line().await.starts_with("ERR bad-request"));
    assert_eq!(alice.line().await, "");
    assert!(!server.home("alice").join("pwned").exists());
}
