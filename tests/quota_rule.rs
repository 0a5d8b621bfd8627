//! The one quota rule, over real SSH: a file counts its size rounded up to 4 KiB, a
//! folder or a link 4 KiB, on every front end; `max_files` caps the entries; and the
//! ledger equals a fresh scan of the disk after a restart.

use rsftp::client::{ClientError, PutStart, Quiet, upload};
use rsftp::protocol::ErrorCode;

use crate::admin::{succeeded, user_command};
use crate::paramiko_sftp::paramiko;
use crate::util::{TestServer, TestUser, data};

/// The code and message of a refusal from the rsftp subsystem.
fn remote(err: ClientError) -> (ErrorCode, String) {
    match err {
        ClientError::Remote { code, message } => (code, message),
        other => panic!("expected a refusal from the server, got {other:?}"),
    }
}

/// Restarts `server` with `line` added to alice's account (the last one in the file).
async fn restart_with(server: &mut TestServer, line: &str) {
    server.stop().await;
    let users = server.root().join("users.toml");
    let mut text = std::fs::read_to_string(&users).unwrap();
    text.push_str(line);
    std::fs::write(&users, text).unwrap();
    server.launch(rsftp::server::Limits::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_cost_a_block_each_and_the_eleventh_does_not_fit_in_40_kib() {
    let server = TestServer::start(&[TestUser::new("alice", "40KiB")]).await;
    let (_conn, mut c) = server.client("alice").await;
    for i in 0..10 {
        c.mkdir(&format!("d{i}")).await.unwrap();
    }
    let info = c.info().await.unwrap();
    assert_eq!((info.used, info.free), (40_960, 0));

    let (code, message) = remote(c.mkdir("d10").await.unwrap_err());
    assert_eq!(code, ErrorCode::Quota);
    assert_eq!(
        message,
        "quota exceeded: need 4096 bytes, used 40960 of 40960 bytes"
    );
    assert!(!server.home("alice").join("d10").exists());
    // SFTP is held to the same rule, with the same numbers.
    let lines = paramiko(
        &server,
        r#"
try:
    s.mkdir("d10")
    out("mkdir ALLOWED")
except IOError as e:
    out("mkdir refused:", e)
"#,
    )
    .await;
    assert_eq!(
        lines,
        ["mkdir refused: quota exceeded: need 4096 bytes, used 40960 of 40960 bytes"]
    );

    // rmdir gives the block back, whichever front end made the folder.
    c.rmdir("d9").await.unwrap();
    assert_eq!(c.info().await.unwrap().used, 36_864);
    let lines = paramiko(&server, "s.mkdir(\"d10\")\ns.rmdir(\"d8\")\nout(\"ok\")").await;
    assert_eq!(lines, ["ok"]);
    assert_eq!(c.info().await.unwrap().used, 36_864);
    assert_eq!(server.used_on_disk("alice"), 36_864);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_byte_file_counts_4_kib_and_deleting_it_gives_them_back() {
    let server = TestServer::start(&[TestUser::new("alice", "12KiB")]).await;
    let (_conn, mut c) = server.client("alice").await;
    c.write("one", 0, b"x").await.unwrap();
    assert_eq!(c.info().await.unwrap().used, 4096);
    // Up to a whole block, growing costs nothing more; one byte past it costs a block.
    c.write("one", 1, &data(4095, 1)).await.unwrap();
    assert_eq!(c.info().await.unwrap().used, 4096);
    c.write("one", 4096, b"y").await.unwrap();
    assert_eq!(c.info().await.unwrap().used, 8192);

    // The third block is free, but a folder with a file in it needs two.
    c.mkdir("d").await.unwrap();
    assert_eq!(c.info().await.unwrap().used, 12_288);
    let (code, message) = remote(c.write("d/f", 0, b"z").await.unwrap_err());
    assert_eq!(code, ErrorCode::Quota);
    assert_eq!(
        message,
        "quota exceeded: need 4096 bytes, used 12288 of 12288 bytes"
    );
    assert!(!server.home("alice").join("d/f").exists());
    let local = tempfile::tempdir().unwrap();
    let small = local.path().join("small");
    std::fs::write(&small, b"1").unwrap();
    let (code, message) = remote(upload(&mut c, &small, "d/f", &Quiet).await.unwrap_err());
    assert_eq!(code, ErrorCode::Quota);
    assert_eq!(
        message,
        "quota exceeded: need 4096 bytes, used 12288 of 12288 bytes"
    );

    // rm gives the file's blocks back; then a put of one byte and an SFTP write of one
    // byte cost a block each.
    c.rm("one").await.unwrap();
    assert_eq!(c.info().await.unwrap().used, 4096);
    upload(&mut c, &small, "d/f", &Quiet).await.unwrap();
    let lines = paramiko(
        &server,
        r#"
with s.open("g", "wb") as f:
    f.write(b"1")
try:
    with s.open("h", "wb") as f:
        f.write(b"1")
    out("h ALLOWED")
except IOError as e:
    out("h refused:", e)
"#,
    )
    .await;
    assert_eq!(
        lines,
        ["h refused: quota exceeded: need 4096 bytes, used 12288 of 12288 bytes"]
    );
    let info = c.info().await.unwrap();
    assert_eq!(info.used, 12_288);
    assert_eq!(info.used, server.used_on_disk("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_files_refuses_new_entries_on_every_front_end() {
    let mut server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    restart_with(&mut server, "max_files = 3\n").await;
    let (_conn, mut c) = server.client("alice").await;
    c.mkdir("a").await.unwrap();
    c.write("a/f", 0, b"1").await.unwrap();
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("g");
    std::fs::write(&file, data(5000, 1)).unwrap();
    upload(&mut c, &file, "g", &Quiet).await.unwrap();

    let full = "file limit reached: 3 of 3 files, folders and links";
    for refusal in [
        c.mkdir("b").await.unwrap_err(),
        c.write("h", 0, b"1").await.unwrap_err(),
        upload(&mut c, &file, "h", &Quiet).await.unwrap_err(),
    ] {
        assert_eq!(remote(refusal), (ErrorCode::Quota, full.to_owned()));
    }
    let lines = paramiko(
        &server,
        r#"
for what, f in [("mkdir", lambda: s.mkdir("b")), ("open", lambda: s.open("h", "wb").close())]:
    try:
        f()
        out(what, "ALLOWED")
    except IOError as e:
        out(what, "refused:", e)
"#,
    )
    .await;
    assert_eq!(
        lines,
        [
            format!("mkdir refused: {full}"),
            format!("open refused: {full}")
        ]
    );
    assert!(!server.home("alice").join("b").exists());
    assert!(!server.home("alice").join("h").exists());
    // What exists can still be replaced and grown.
    upload(&mut c, &file, "g", &Quiet).await.unwrap();
    c.write("a/f", 1, &data(10_000, 2)).await.unwrap();

    // Deleting gives an entry back.
    c.rm("g").await.unwrap();
    c.mkdir("b").await.unwrap();
    assert_remote_refused(c.mkdir("c").await, full);

    let shown = succeeded(&user_command(server.root(), &["show", "alice"], b"").await);
    assert!(
        shown.contains("files      3 of at most 3; AT THE LIMIT"),
        "{shown}"
    );

    // Raised with `rsftpd user quota`, it applies to the open session within seconds.
    let refused = user_command(
        server.root(),
        &["quota", "alice", "10MiB", "--max-files", "0"],
        b"",
    )
    .await;
    assert!(!refused.status.success());
    let raised = user_command(
        server.root(),
        &["quota", "alice", "10MiB", "--max-files", "4"],
        b"",
    )
    .await;
    assert!(succeeded(&raised).contains("At most 4 files, folders and links."));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Err(err) = c.mkdir("c").await {
        assert_eq!(remote(err).0, ErrorCode::Quota);
        assert!(
            std::time::Instant::now() < deadline,
            "the new limit never applied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_remote_refused(
        c.mkdir("d").await,
        "file limit reached: 4 of 4 files, folders and links",
    );
    let cleared = user_command(
        server.root(),
        &["quota", "alice", "10MiB", "--no-max-files"],
        b"",
    )
    .await;
    assert!(succeeded(&cleared).contains("No limit on files, folders and links."));
    let shown = succeeded(&user_command(server.root(), &["show", "alice"], b"").await);
    assert!(
        shown.contains("files      4 (no limit but the quota)"),
        "{shown}"
    );
}

fn assert_remote_refused(result: Result<(), ClientError>, message: &str) {
    assert_eq!(
        remote(result.unwrap_err()),
        (ErrorCode::Quota, message.to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_equals_a_fresh_scan_after_a_restart() {
    let mut server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("f");
    std::fs::write(&file, data(123_457, 1)).unwrap();
    let before = {
        let (_conn, mut c) = server.client("alice").await;
        c.mkdir("d").await.unwrap();
        c.mkdir("d/e").await.unwrap();
        c.mkdir("gone").await.unwrap();
        c.rmdir("gone").await.unwrap();
        upload(&mut c, &file, "d/e/f", &Quiet).await.unwrap();
        c.write("small", 0, b"x").await.unwrap();
        c.write("empty", 0, b"").await.unwrap();
        c.write("over", 0, &data(9000, 2)).await.unwrap();
        c.mv("small", "over").await.unwrap();
        paramiko(
            &server,
            r#"
with s.open("d/sftp", "wb") as f:
    f.write(b"y" * 5000)
s.mkdir("d/empty")
with s.open("t", "wb") as f:
    f.write(b"z" * 10000)
with s.open("t", "r+") as f:
    f.truncate(10)
s.remove("empty")
"#,
        )
        .await;
        // An abandoned put: its partial counts too.
        let start = c.begin_put("partial", 100_000, None).await.unwrap();
        assert!(matches!(start, PutStart::Have { offset: 0, .. }));
        let half = local.path().join("half");
        std::fs::write(&half, data(50_001, 3)).unwrap();
        let handle = std::fs::File::open(&half).unwrap();
        c.send_from(0, handle, 50_001, md5::Md5::default(), |_| {})
            .await
            .unwrap();
        drop(c);
        let (_conn, mut c) = server.client("alice").await;
        // d, d/e, d/empty: 3 blocks; f: 31; over: 1; d/sftp: 2; t: 1; the partial: 13.
        let expected = (3 + 31 + 1 + 2 + 1 + 13) * 4096;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let info = c.info().await.unwrap();
            if info.used == expected || std::time::Instant::now() > deadline {
                break info;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    assert_eq!(before.used, (3 + 31 + 1 + 2 + 1 + 13) * 4096);
    assert_eq!(before.used, server.used_on_disk("alice"));

    server.stop().await;
    server.launch(rsftp::server::Limits::default()).await;
    let (_conn, mut c) = server.client("alice").await;
    assert_eq!(c.info().await.unwrap(), before);
}
