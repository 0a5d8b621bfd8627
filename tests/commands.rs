//! Every rsftp/1 command through our client library: a happy path and a refusal each.

use rsftp::client::ClientError;
use rsftp::protocol::{EntryType, ErrorCode, Md5Digest};

use crate::util::{TestServer, TestUser, data, md5_hex};

fn code(err: ClientError) -> ErrorCode {
    match err {
        ClientError::Remote { code, .. } => code,
        other => panic!("expected a refusal from the server, got {other:?}"),
    }
}

async fn alice() -> TestServer {
    TestServer::start(&[TestUser::new("alice", "10MiB")]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pwd_and_cd() {
    let server = alice().await;
    std::fs::create_dir(server.home("alice").join("docs")).unwrap();
    std::fs::write(server.home("alice").join("file"), b"x").unwrap();
    let (_conn, mut c) = server.client("alice").await;
    assert_eq!(c.pwd().await.unwrap(), "/");
    assert_eq!(c.cd("docs").await.unwrap(), "/docs");
    assert_eq!(c.pwd().await.unwrap(), "/docs");
    assert_eq!(c.cd("..").await.unwrap(), "/");
    assert_eq!(
        code(c.cd("missing").await.unwrap_err()),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(c.cd("file").await.unwrap_err()),
        ErrorCode::NotADirectory
    );
    assert_eq!(c.pwd().await.unwrap(), "/", "a failed cd stays put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_and_stat() {
    let server = alice().await;
    let home = server.home("alice");
    std::fs::create_dir(home.join("docs")).unwrap();
    std::fs::write(home.join("a b.txt"), b"hello").unwrap();
    let (_conn, mut c) = server.client("alice").await;
    let entries = c.ls(None).await.unwrap();
    let names: Vec<_> = entries
        .iter()
        .map(|e| (e.kind, e.name.as_str(), e.size))
        .collect();
    assert_eq!(names[0], (EntryType::File, "a b.txt", 5));
    assert_eq!(names[1].0, EntryType::Dir);
    assert_eq!(names[1].1, "docs");
    assert_eq!(entries.len(), 2, "only what the user made: {names:?}");
    assert!(c.ls(Some("docs")).await.unwrap().is_empty());
    assert_eq!(
        code(c.ls(Some("nope")).await.unwrap_err()),
        ErrorCode::NotFound
    );

    let entry = c.stat("a b.txt").await.unwrap();
    assert_eq!(
        (entry.kind, entry.size, entry.name.as_str()),
        (EntryType::File, 5, "/a b.txt")
    );
    assert!(entry.mtime > 1_600_000_000);
    assert_eq!(code(c.stat("nope").await.unwrap_err()), ErrorCode::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mkdir_rmdir_rm_mv() {
    let server = alice().await;
    let home = server.home("alice");
    let (_conn, mut c) = server.client("alice").await;
    c.mkdir("d").await.unwrap();
    assert!(home.join("d").is_dir());
    assert_eq!(code(c.mkdir("d").await.unwrap_err()), ErrorCode::Exists);
    assert_eq!(
        code(c.mkdir("no/such").await.unwrap_err()),
        ErrorCode::NotFound
    );

    c.write("d/f", 0, b"data").await.unwrap();
    assert_eq!(code(c.rmdir("d").await.unwrap_err()), ErrorCode::NotEmpty);
    assert_eq!(code(c.rm("d").await.unwrap_err()), ErrorCode::IsADirectory);
    assert_eq!(code(c.rm("nope").await.unwrap_err()), ErrorCode::NotFound);
    assert_eq!(
        code(c.rmdir("nope").await.unwrap_err()),
        ErrorCode::NotFound
    );

    c.write("g", 0, b"other").await.unwrap();
    c.mv("d/f", "g").await.unwrap();
    assert_eq!(
        std::fs::read(home.join("g")).unwrap(),
        b"data",
        "mv replaces the target"
    );
    assert_eq!(
        code(c.mv("d/f", "h").await.unwrap_err()),
        ErrorCode::NotFound
    );
    c.mkdir("d/sub").await.unwrap();
    assert_eq!(
        code(c.mv("d", "d/sub/d").await.unwrap_err()),
        ErrorCode::BadRequest,
        "a folder into itself"
    );
    c.rmdir("d/sub").await.unwrap();
    c.rm("g").await.unwrap();
    c.rmdir("d").await.unwrap();
    assert!(!home.join("d").exists() && !home.join("g").exists());
    assert_eq!(
        c.info().await.unwrap().used,
        0,
        "removing gives the space back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_reports_the_quota() {
    let server = alice().await;
    let (_conn, mut c) = server.client("alice").await;
    let before = c.info().await.unwrap();
    assert_eq!(
        (before.used, before.limit, before.free),
        (0, 10 << 20, 10 << 20)
    );
    // A file counts its size rounded up to 4 KiB.
    c.write("f", 0, &[7u8; 1000]).await.unwrap();
    let after = c.info().await.unwrap();
    assert_eq!((after.used, after.free), (4096, (10 << 20) - 4096));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_read_and_write() {
    let server = alice().await;
    let (_conn, mut c) = server.client("alice").await;
    let bytes = data(100_000, 1);
    c.write("f", 0, &bytes[..60_000]).await.unwrap();
    c.write("f", 60_000, &bytes[60_000..]).await.unwrap();
    let (whole, n) = c.md5("f", None).await.unwrap();
    assert_eq!((whole.to_string(), n), (md5_hex(&bytes), 100_000));
    let (part, n) = c.md5("f", Some((10, 20))).await.unwrap();
    assert_eq!((part, n), (Md5Digest::of(&bytes[10..30]), 20));
    let (tail, n) = c.md5("f", Some((99_990, 1000))).await.unwrap();
    assert_eq!(
        (tail, n),
        (Md5Digest::of(&bytes[99_990..]), 10),
        "clamped at the end"
    );

    assert_eq!(c.read("f", 5, 10).await.unwrap(), &bytes[5..15]);
    assert_eq!(c.read("f", 99_995, 100).await.unwrap(), &bytes[99_995..]);
    assert!(c.read("f", 200_000, 10).await.unwrap().is_empty());

    assert_eq!(
        code(c.md5("nope", None).await.unwrap_err()),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(c.read("nope", 0, 1).await.unwrap_err()),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(c.write("no/dir/f", 0, b"x").await.unwrap_err()),
        ErrorCode::NotFound
    );
    // A refused write's bytes were still consumed: the session is in step.
    assert_eq!(c.pwd().await.unwrap(), "/");
    assert_eq!(
        code(c.write("/", 0, b"x").await.unwrap_err()),
        ErrorCode::IsADirectory
    );
    assert_eq!(c.pwd().await.unwrap(), "/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_whole_at_an_offset_and_refused() {
    let server = alice().await;
    let bytes = data(700_000, 2);
    std::fs::write(server.home("alice").join("f"), &bytes).unwrap();
    let local = tempfile::tempdir().unwrap();
    let (_conn, mut c) = server.client("alice").await;

    let dest = local.path().join("f");
    let report = rsftp::client::download(&mut c, "f", &dest, false, &rsftp::client::Quiet)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    assert_eq!(report.md5.to_string(), md5_hex(&bytes));
    assert_eq!(report.transferred, 700_000);

    // At an offset, with the prefix's MD5: only the rest comes, then the whole file's MD5.
    let prefix = Md5Digest::of(&bytes[..300_000]);
    let (n, size) = c.begin_get("f", 300_000, Some(prefix)).await.unwrap();
    assert_eq!((n, size), (400_000, 700_000));
    let sink = Collect(Vec::new());
    let (sink, ok) = c.receive_into(n, sink, |_| {}).await.unwrap();
    ok.unwrap();
    assert_eq!(sink.0, &bytes[300_000..]);
    assert_eq!(c.end_get().await.unwrap().to_string(), md5_hex(&bytes));

    let wrong = Md5Digest::of(b"not the prefix");
    assert_eq!(
        code(c.begin_get("f", 300_000, Some(wrong)).await.unwrap_err()),
        ErrorCode::Mismatch
    );
    assert_eq!(
        code(c.begin_get("f", 700_001, None).await.unwrap_err()),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(c.begin_get("nope", 0, None).await.unwrap_err()),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(c.begin_get("/", 0, None).await.unwrap_err()),
        ErrorCode::IsADirectory
    );

    // An existing local file is not replaced without force.
    let err = rsftp::client::download(&mut c, "f", &dest, false, &rsftp::client::Quiet)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::LocalExists(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_publishes_verified_and_knows_when_up_to_date() {
    let server = alice().await;
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("src.bin");
    let bytes = data(1_000_000, 3);
    std::fs::write(&src, &bytes).unwrap();
    let (_conn, mut c) = server.client("alice").await;

    let report = rsftp::client::upload(&mut c, &src, "dst.bin", &rsftp::client::Quiet)
        .await
        .unwrap();
    assert_eq!(report.md5.to_string(), md5_hex(&bytes));
    assert!(!report.up_to_date);
    assert_eq!(
        std::fs::read(server.home("alice").join("dst.bin")).unwrap(),
        bytes
    );

    let again = rsftp::client::upload(&mut c, &src, "dst.bin", &rsftp::client::Quiet)
        .await
        .unwrap();
    assert!(again.up_to_date, "{again:?}");
    assert_eq!(again.transferred, 0);

    assert_eq!(
        code(
            rsftp::client::upload(&mut c, &src, "no/dir/x", &rsftp::client::Quiet)
                .await
                .unwrap_err()
        ),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(
            rsftp::client::upload(&mut c, &src, "/", &rsftp::client::Quiet)
                .await
                .unwrap_err()
        ),
        ErrorCode::IsADirectory
    );
    assert_eq!(c.pwd().await.unwrap(), "/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_and_quit() {
    let server = alice().await;
    let (_conn, mut c) = server.client("alice").await;
    let help = c.help().await.unwrap();
    for command in [
        "pwd", "cd", "ls", "stat", "mkdir", "mv", "info", "md5", "read", "write", "get", "put",
    ] {
        assert!(
            help.iter().any(|l| l.contains(command)),
            "help mentions {command}"
        );
    }
    c.quit().await.unwrap();
}

/// Collects received bytes in memory.
struct Collect(Vec<u8>);

impl rsftp::storage::stream::ChunkSink for Collect {
    type Error = std::convert::Infallible;
    fn write_chunk(&mut self, data: &[u8]) -> Result<(), Self::Error> {
        self.0.extend_from_slice(data);
        Ok(())
    }
}
