//! Every path stays inside the user's home: traversal, absolute paths, bad bytes,
//! over-long names, and symlinks planted on disk that lead out.

use std::os::unix::fs::symlink;

use crate::util::{Raw, TestServer, TestUser};

async fn server_with_traps() -> TestServer {
    let server = TestServer::start(&[
        TestUser::new("alice", "10MiB"),
        TestUser::new("bob", "10MiB"),
    ])
    .await;
    let alice = server.home("alice");
    let bob = server.home("bob");
    std::fs::write(bob.join("secret.txt"), b"bob's secret").unwrap();
    std::fs::write(server.root().join("outside.txt"), b"server file").unwrap();
    std::fs::create_dir(alice.join("docs")).unwrap();
    std::fs::write(alice.join("docs/mine.txt"), b"alice").unwrap();
    // Links an attacker (or a careless admin) might leave in a home.
    symlink("/etc", alice.join("etc")).unwrap();
    symlink("/etc/passwd", alice.join("passwd")).unwrap();
    symlink("../bob", alice.join("bob")).unwrap();
    symlink("../bob/secret.txt", alice.join("bobs-secret")).unwrap();
    symlink("../../outside.txt", alice.join("outside")).unwrap();
    symlink(&bob, alice.join("bob-abs")).unwrap();
    // And one that stays inside, which keeps working.
    symlink("docs/mine.txt", alice.join("inside")).unwrap();
    server
}

/// Requests and the start of their answers that hold on every storage backend, for a
/// home holding `docs/mine.txt` ("alice") beside a user `bob` who has `secret.txt`.
pub const TRAVERSAL_TABLE: &[(&str, &str)] = &[
    // `..` and absolute paths are read from the home's root, as under chroot.
    ("cd ..", "OK /"),
    ("cd ../../..", "OK /"),
    ("cd /docs/../..", "OK /"),
    ("stat ../../outside.txt", "ERR not-found"),
    ("stat ../../../storage/bob/secret.txt", "ERR not-found"),
    ("stat docs/../../docs/mine.txt", "OK f 5"),
    ("stat \"a\\x00b\"", "ERR bad-path"),
    ("stat \"a\\x01b\"", "ERR bad-path"),
    ("stat \"a\\nb\"", "ERR bad-path"),
    // Partial uploads wait outside the home: no path names them.
    ("ls ../.partials", "ERR not-found"),
    ("stat ../.partials/alice", "ERR not-found"),
];

/// Asks each request of `table` on `raw`, and checks the start of each answer; then that
/// over-long names and paths are refused.
pub async fn assert_confined(raw: &mut Raw, table: &[(&str, &str)]) {
    for (request, expected) in table {
        let reply = raw.ask(request).await;
        assert!(
            reply.starts_with(expected),
            "{request:?} answered {reply:?}, expected {expected:?}"
        );
    }
    let long_name = "n".repeat(256);
    let reply = raw.ask(&format!("mkdir {long_name}")).await;
    assert!(reply.starts_with("ERR bad-path"), "{reply}");
    let long_path = "d/".repeat(2100);
    let reply = raw.ask(&format!("stat {long_path}")).await;
    assert!(reply.starts_with("ERR bad-path"), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_is_clamped_or_refused() {
    let server = server_with_traps().await;
    let mut raw = Raw::open(&server, "alice").await;
    assert_confined(&mut raw, TRAVERSAL_TABLE).await;
    // Through the links planted on disk.
    assert_confined(
        &mut raw,
        &[
            ("stat /etc/passwd", "ERR denied"),
            ("stat ../bob/secret.txt", "ERR denied"),
            ("get /../../../etc/passwd", "ERR denied"),
        ],
    )
    .await;
    // Nothing the refusals touched appeared anywhere.
    assert!(!server.home("alice").join("a\0b").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_out_of_the_home_are_not_followed() {
    let server = server_with_traps().await;
    let mut raw = Raw::open(&server, "alice").await;
    for link in ["etc", "passwd", "bob", "bobs-secret", "outside", "bob-abs"] {
        for request in [
            format!("stat {link}"),
            format!("cd {link}"),
            format!("ls {link}/"),
            format!("get {link}"),
            format!("read {link} 0 10"),
            format!("md5 {link}"),
            format!("put {link}/x 1 -"),
            format!("mkdir {link}/new"),
            format!("write {link}/x 0 0"),
        ] {
            let reply = raw.ask(&request).await;
            assert!(
                reply.starts_with("ERR "),
                "{request:?} must be refused, got {reply:?}"
            );
        }
    }
    // ls shows the links as links, without following them.
    let reply = raw.ask("ls").await;
    assert!(reply.starts_with("OK "), "{reply}");
    let count: usize = reply[3..].parse().unwrap();
    let mut lines = Vec::new();
    for _ in 0..count {
        lines.push(raw.line().await);
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("l ") && l.ends_with(" etc")),
        "{lines:?}"
    );
    // A link that stays inside works.
    let reply = raw.ask("stat inside").await;
    assert!(reply.starts_with("OK f 5 "), "{reply}");
    // And no byte of bob's or the server's leaked into alice's session.
    let reply = raw.ask("read bobs-secret 0 100").await;
    assert!(reply.starts_with("ERR denied"), "{reply}");
    // Removing a link removes the link, not its target.
    assert_eq!(raw.ask("rm bobs-secret").await, "OK");
    assert!(server.home("bob").join("secret.txt").exists());
    // mv cannot move a file out through a link.
    assert!(
        raw.ask("mv docs/mine.txt bob/stolen")
            .await
            .starts_with("ERR ")
    );
    assert!(!server.home("bob").join("stolen").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_never_sees_real_paths() {
    let server = server_with_traps().await;
    let mut raw = Raw::open(&server, "alice").await;
    let root = server.root().display().to_string();
    for request in [
        "pwd",
        "stat etc",
        "get passwd",
        "cd bob",
        "stat nope",
        "ls nope",
    ] {
        let reply = raw.ask(request).await;
        assert!(
            !reply.contains(&root),
            "{request:?} leaked a real path: {reply}"
        );
    }
}
