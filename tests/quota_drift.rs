//! The ledger says what the user's files occupy, through handles on files that were
//! deleted or replaced meanwhile, and uploads of a file whose size changed.

use rsftp::client::{PutStart, Quiet, upload};
use rsftp::protocol::ErrorCode;

use crate::paramiko_sftp::paramiko;
use crate::util::{Raw, TestServer, TestUser, data};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncating_a_deleted_file_through_its_handle_frees_nothing_twice() {
    // Room for two files of 500 bytes, which count a 4 KiB block each.
    let server = TestServer::start(&[TestUser::new("alice", "8KiB")]).await;
    // Once, the delete gave tmp's 500 bytes back and the truncate gave them back again:
    // every round left 500 more bytes on disk than the ledger knew of.
    let lines = paramiko(
        &server,
        r#"
def put(name):
    with s.open(name, "wb", bufsize=0) as f:
        f.write(b"x" * 500)
for i in range(5):
    try:
        put("keep%d" % i)
        put("tmp")
    except IOError as e:
        out(i, "put refused", e.errno)
        continue
    h = s.open("tmp", "r+", bufsize=0)
    s.remove("tmp")
    refused("%d write" % i, h.write, b"y" * 100)
    refused("%d truncate" % i, h.truncate, 0)
    h.close()
out(sorted((a.filename, a.st_size) for a in s.listdir_attr(".") if a.st_size))
"#,
    )
    .await;
    assert_eq!(
        lines,
        [
            "0 write refused 2",
            "0 truncate refused 2",
            "1 put refused None",
            "2 put refused None",
            "3 put refused None",
            "4 put refused None",
            "[('keep0', 500), ('keep1', 500)]",
        ]
    );
    let (_conn, mut c) = server.client("alice").await;
    let info = c.info().await.unwrap();
    assert_eq!(info.used, server.used_on_disk("alice"));
    assert_eq!(info.used, 8192);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_on_a_replaced_file_cannot_change_it() {
    let server = TestServer::start(&[TestUser::new("alice", "10000")]).await;
    let lines = paramiko(
        &server,
        r#"
for name, n in [("a", 500), ("b", 300)]:
    with s.open(name, "wb") as f:
        f.write(b"x" * n)
h = s.open("a", "r+", bufsize=0)
s.posix_rename("b", "a")
refused("write", h.write, b"y" * 5000)
refused("truncate", h.truncate, 0)
h.close()
out("a", s.stat("a").st_size)
"#,
    )
    .await;
    assert_eq!(lines, ["write refused 2", "truncate refused 2", "a 300"]);
    let (_conn, mut c) = server.client("alice").await;
    assert_eq!(c.info().await.unwrap().used, 4096, "300 bytes count 4 KiB");
    assert_eq!(server.used_on_disk("alice"), 4096);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_cut_short_by_a_delete_keeps_nothing_booked() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let (_conn, mut c) = server.client("alice").await;
    let bytes = data(2_000_000, 1);
    let mut raw = Raw::open(&server, "alice").await;
    raw.send(b"write f 0 2000000\n").await;
    raw.send(&bytes[..1_000_000]).await;
    // Wait until some of it is on disk, then delete the file under the write.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while c.info().await.unwrap().used == 0 {
        assert!(std::time::Instant::now() < deadline, "nothing written");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    c.rm("f").await.unwrap();
    raw.send(&bytes[1_000_000..]).await;
    // The rest is refused, not booked against a file nobody can see.
    assert_eq!(
        raw.line().await,
        "ERR not-found deleted or replaced since it was opened: /f"
    );
    assert_eq!(raw.ask("pwd").await, "OK /", "the session goes on");
    assert!(c.ls(None).await.unwrap().is_empty());
    assert_eq!(c.info().await.unwrap().used, 0);
    assert_eq!(server.used_on_disk("alice"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_at_a_new_size_frees_the_partial_left_at_the_old_one() {
    // Room for one file of up to 4 KiB: the old partial and the new file cannot both fit.
    let server = TestServer::start(&[TestUser::new("alice", "4KiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("f");
    {
        // `put f` of 900 bytes, cut off after 800.
        let (_conn, mut c) = server.client("alice").await;
        let start = c.begin_put("f", 900, None).await.unwrap();
        assert!(matches!(start, PutStart::Have { offset: 0, .. }));
        std::fs::write(&file, data(800, 1)).unwrap();
        let handle = std::fs::File::open(&file).unwrap();
        c.send_from(0, handle, 800, md5::Md5::default(), |_| {})
            .await
            .unwrap();
    }
    let (_conn, mut c) = server.client("alice").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while c.info().await.unwrap().used != 4096 {
        assert!(
            std::time::Instant::now() < deadline,
            "the partial never landed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // The file changed to 901 bytes. The 800 held for the old size are hidden from the
    // user, who could neither see nor delete them; they must not block the new upload.
    std::fs::write(&file, data(901, 2)).unwrap();
    let uploaded = loop {
        match upload(&mut c, &file, "f", &Quiet).await {
            // The broken session may not have let go of the path yet.
            Err(err) if err.code() == Some(&ErrorCode::Busy) => {
                assert!(std::time::Instant::now() < deadline, "still busy");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            other => break other,
        }
    };
    uploaded.unwrap();
    let listed: Vec<_> = c
        .ls(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.size))
        .collect();
    assert_eq!(listed, [("f".to_owned(), 901)]);
    assert_eq!(c.info().await.unwrap().used, 4096);
    assert_eq!(server.used_on_disk("alice"), 4096);
}
