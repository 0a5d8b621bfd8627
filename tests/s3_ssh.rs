//! Homes on an object store, over real SSH: rsftp put and get verified, a cut-off put
//! resumed from the last part boundary with only the rest sent, the commands and their
//! refusals, and the confinement table the disk backend passes.

use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};
use rsftp::client::{PutStart, Quiet, download, upload};
use rsftp::protocol::Md5Digest;
use rsftp::storage::object::{ObjectStoreConfig, PART_SIZE, UploadState};

use crate::confinement::{TRAVERSAL_TABLE, assert_confined};
use crate::s3_util::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};
use crate::sshd::{assert_ok, sftp_rsftpd, text};
use crate::util::{Raw, TestServer, TestUser, data, md5_hex, run_with_input};

const MIB: usize = 1024 * 1024;

/// The configuration of homes under `team/` on `s3`.
pub fn store_config(s3: &S3Server) -> ObjectStoreConfig {
    ObjectStoreConfig {
        bucket: BUCKET.to_owned(),
        prefix: "team".to_owned(),
        endpoint: Some(s3.endpoint()),
        region: Some("us-east-1".to_owned()),
        path_style: true,
        access_key_id: Some(ACCESS_KEY.to_owned()),
        secret_access_key: Some(SECRET_KEY.to_owned()),
    }
}

/// An S3 server and an rsftpd whose homes are on it. Fields drop in order: the
/// server before the store.
pub struct OnStore {
    pub server: TestServer,
    pub s3: S3Server,
}

pub async fn on_store(users: &[TestUser]) -> OnStore {
    let s3 = S3Server::start();
    let server = TestServer::start_on_object_store(users, store_config(&s3)).await;
    OnStore { server, s3 }
}

/// The parts of `user`'s uploads saved so far, read from the server's state store
/// until there are at least `at_least` (bounded in time).
async fn saved_parts(server: &TestServer, user: &str, at_least: usize) -> usize {
    let dir = server.storage.join("uploads").join(user);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let parts: usize = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .filter_map(|text| toml::from_str::<UploadState>(&text).ok())
                    .map(|state| state.parts.len())
                    .sum()
            })
            .unwrap_or(0);
        if parts >= at_least || Instant::now() > deadline {
            return parts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_get_are_verified_and_land_under_the_users_prefix() {
    let t = on_store(&[TestUser::new("alice", "1GiB"), TestUser::new("bob", "1GiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let bytes = data(PART_SIZE as usize * 2 + 4321, 3);
    let src = local.path().join("big.bin");
    std::fs::write(&src, &bytes).unwrap();

    let (_conn, mut c) = t.server.client("alice").await;
    c.mkdir("docs").await.unwrap();
    let report = upload(&mut c, &src, "docs/big.bin", &Quiet).await.unwrap();
    assert_eq!(report.md5.to_string(), md5_hex(&bytes));
    assert_eq!(report.transferred, bytes.len() as u64);
    let stored = t.s3.object("team/alice/docs/big.bin").expect("the object");
    assert_eq!(md5_hex(&stored), md5_hex(&bytes));
    // Nothing is left of the multipart upload.
    assert_eq!(saved_parts(&t.server, "alice", 0).await, 0);
    assert_eq!(
        c.stat("docs/big.bin").await.unwrap().size,
        bytes.len() as u64
    );

    let dest = local.path().join("back.bin");
    let got = download(&mut c, "docs/big.bin", &dest, false, &Quiet)
        .await
        .unwrap();
    assert_eq!(got.md5.to_string(), md5_hex(&bytes));
    assert_eq!(md5_hex(&std::fs::read(&dest).unwrap()), md5_hex(&bytes));
    // A range from the middle, as a resumed download asks for.
    let middle = c.read("docs/big.bin", PART_SIZE - 10, 20).await.unwrap();
    assert_eq!(
        middle,
        bytes[PART_SIZE as usize - 10..PART_SIZE as usize + 10]
    );

    // The quota counts the object, rounded up to its blocks, and the folder's marker.
    let used = c.info().await.unwrap().used;
    assert_eq!(used, (bytes.len() as u64).div_ceil(4096) * 4096 + 4096);

    // A get of something missing is refused; bob sees none of alice's files.
    assert!(
        download(&mut c, "nope", &local.path().join("nope"), false, &Quiet)
            .await
            .is_err()
    );
    let (_conn, mut b) = t.server.client("bob").await;
    assert!(b.ls(None).await.unwrap().is_empty());
    assert!(b.stat("docs/big.bin").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_cut_off_resumes_from_the_last_part_and_sends_only_the_rest() {
    let t = on_store(&[TestUser::new("alice", "1GiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let bytes = data(20 * MIB + 1234, 5);
    let src = local.path().join("big.bin");
    std::fs::write(&src, &bytes).unwrap();
    let first = local.path().join("first.bin");
    std::fs::write(&first, &bytes[..12 * MIB]).unwrap();

    {
        let (conn, mut c) = t.server.client("alice").await;
        let start = c
            .begin_put("big.bin", bytes.len() as u64, None)
            .await
            .unwrap();
        assert!(
            matches!(start, PutStart::Have { offset: 0, .. }),
            "{start:?}"
        );
        let file = std::fs::File::open(&first).unwrap();
        c.send_from(0, file, 12 * MIB as u64, Md5::new(), |_| {})
            .await
            .unwrap();
        assert_eq!(saved_parts(&t.server, "alice", 1).await, 1);
        drop(c);
        drop(conn);
    }
    assert!(
        t.s3.object("team/alice/big.bin").is_none(),
        "nothing published yet"
    );

    let (_conn, mut c) = t.server.client("alice").await;
    let report = upload(&mut c, &src, "big.bin", &Quiet).await.unwrap();
    assert_eq!(report.resumed_from, PART_SIZE, "{report:?}");
    assert_eq!(report.transferred, bytes.len() as u64 - PART_SIZE);
    assert!(!report.restarted);
    let stored = t.s3.object("team/alice/big.bin").unwrap();
    assert_eq!(md5_hex(&stored), md5_hex(&bytes));
    assert_eq!(
        c.info().await.unwrap().used,
        (bytes.len() as u64).div_ceil(4096) * 4096
    );
}

/// An rsftp `put` by hand, as a script would send it.
async fn put(raw: &mut Raw, path: &str, bytes: &[u8]) {
    let reply = raw.ask(&format!("put {path} {} -", bytes.len())).await;
    assert!(reply.starts_with("OK have 0"), "{reply}");
    raw.send(b"from 0\n").await;
    raw.send(bytes).await;
    let reply = raw.ask(&format!("done {}", md5_hex(bytes))).await;
    assert_eq!(reply, format!("OK {} {}", md5_hex(bytes), bytes.len()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_their_refusals() {
    let t = on_store(&[TestUser::new("alice", "100MiB")]).await;
    let mut raw = Raw::open(&t.server, "alice").await;
    for (request, expected) in [
        ("mkdir docs", "OK"),
        ("mkdir docs", "ERR exists"),
        ("mkdir nope/deeper", "ERR not-found"),
    ] {
        let reply = raw.ask(request).await;
        assert!(
            reply.starts_with(expected),
            "{request:?} answered {reply:?}"
        );
    }
    put(&mut raw, "docs/a.txt", b"hello").await;
    for (request, expected) in [
        ("stat docs", "OK d 0"),
        ("stat docs/a.txt", "OK f 5"),
        ("rmdir docs", "ERR not-empty"),
        ("mv docs papers", "ERR "),
        ("rm docs", "ERR "),
        ("rmdir docs/a.txt", "ERR "),
        ("mv docs/a.txt b.txt", "OK"),
        ("stat docs/a.txt", "ERR not-found"),
        ("stat b.txt", "OK f 5"),
        // Emptied, the folder made by mkdir stays, and an empty folder moves.
        ("stat docs", "OK d 0"),
        ("mv docs papers", "OK"),
        ("stat docs", "ERR not-found"),
        ("rmdir papers", "OK"),
        ("rmdir papers", "ERR not-found"),
        ("rm b.txt", "OK"),
        ("rm b.txt", "ERR not-found"),
        // What an object store cannot do is refused with a clear message.
        ("write new.txt 0 0", "ERR "),
    ] {
        let reply = raw.ask(request).await;
        assert!(
            reply.starts_with(expected),
            "{request:?} answered {reply:?}"
        );
    }
    let reply = raw.ask("mkdir full").await;
    assert_eq!(reply, "OK");
    put(&mut raw, "full/x", b"x").await;
    let reply = raw.ask("mv full empty").await;
    assert!(
        reply.starts_with("ERR ") && reply.contains("moving a folder that is not empty"),
        "{reply}"
    );
    // ls streams the folder: one entry line each.
    let reply = raw.ask("ls").await;
    assert_eq!(reply, "OK 1", "{reply}");
    let line = raw.line().await;
    assert!(line.starts_with("d ") && line.ends_with(" full"), "{line}");
    assert_eq!(
        t.s3.keys(),
        vec![
            "team/alice/full/.rsftp-folder".to_owned(),
            "team/alice/full/x".to_owned()
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_confinement_table_holds_on_the_object_store() {
    let t = on_store(&[
        TestUser::new("alice", "10MiB"),
        TestUser::new("bob", "10MiB"),
    ])
    .await;
    // Planted as another tool would: objects under each user's prefix, and one beside.
    let bucket = t.s3.data.path().join(BUCKET);
    std::fs::create_dir_all(bucket.join("team/alice/docs")).unwrap();
    std::fs::write(bucket.join("team/alice/docs/mine.txt"), b"alice").unwrap();
    std::fs::create_dir_all(bucket.join("team/bob")).unwrap();
    std::fs::write(bucket.join("team/bob/secret.txt"), b"bob's secret").unwrap();
    std::fs::write(bucket.join("team/outside.txt"), b"not a home").unwrap();

    let mut raw = Raw::open(&t.server, "alice").await;
    assert_confined(&mut raw, TRAVERSAL_TABLE).await;
    assert_confined(
        &mut raw,
        &[
            // Another user's prefix is just a name under alice's own.
            ("stat ../bob/secret.txt", "ERR not-found"),
            ("get /../../bob/secret.txt", "ERR not-found"),
            ("stat ../outside.txt", "ERR not-found"),
            ("stat ..", "OK d"),
            // The folder marker's name is reserved on this backend.
            ("stat .rsftp-folder", "ERR bad-path"),
            ("mkdir docs/.rsftp-folder", "ERR bad-path"),
            ("put .rsftp-folder 1 -", "ERR bad-path"),
        ],
    )
    .await;
    let mut bob = Raw::open(&t.server, "bob").await;
    assert!(bob.ask("stat secret.txt").await.starts_with("OK f 12"));
    assert!(
        bob.ask("stat ../alice/docs/mine.txt")
            .await
            .starts_with("ERR not-found")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_sftp_reads_lists_makes_folders_and_uploads_new_files() {
    let t = on_store(&[TestUser::new("alice", "100MiB")]).await;
    let bucket = t.s3.data.path().join(BUCKET);
    let bytes = data(3 * MIB + 17, 9);
    std::fs::create_dir_all(bucket.join("team/alice")).unwrap();
    std::fs::write(bucket.join("team/alice/f.bin"), &bytes).unwrap();
    let local = tempfile::tempdir().unwrap();
    let dest = local.path().join("f.bin");

    let batch = format!(
        "mkdir /docs\nls -l /\nget /f.bin {}\nrename /docs /papers\nrmdir /papers\n",
        dest.display()
    );
    let output = sftp_rsftpd(&t.server, "alice", &batch).await;
    assert_ok(&output, "sftp -b");
    let listed = text(&output.stdout);
    assert!(
        listed.contains("docs") && listed.contains("f.bin"),
        "{listed}"
    );
    assert_eq!(md5_hex(&std::fs::read(&dest).unwrap()), md5_hex(&bytes));
    assert_eq!(t.s3.keys(), vec!["team/alice/f.bin".to_owned()]);

    // An SFTP upload of a new file streams into a multipart upload of several parts,
    // published at close; it reads back MD5-identical.
    let big = data(20 * MIB + 5, 11);
    let src = local.path().join("up.bin");
    std::fs::write(&src, &big).unwrap();
    let back = local.path().join("back.bin");
    let output = sftp_rsftpd(
        &t.server,
        "alice",
        &format!(
            "put {} /up.bin\nget /up.bin {}\n",
            src.display(),
            back.display()
        ),
    )
    .await;
    assert_ok(&output, "sftp -b put and get");
    assert_eq!(
        md5_hex(&t.s3.object("team/alice/up.bin").unwrap()),
        md5_hex(&big)
    );
    assert_eq!(md5_hex(&std::fs::read(&back).unwrap()), md5_hex(&big));
    // Nothing of the upload is left in the state store once it is published.
    assert_eq!(saved_parts(&t.server, "alice", 0).await, 0);

    // Writing over an existing file is writing in place, which this backend declines;
    // the object stays as it was.
    let small = local.path().join("small.bin");
    std::fs::write(&small, b"hello").unwrap();
    let output = sftp_rsftpd(
        &t.server,
        "alice",
        &format!("put {} /up.bin\n", small.display()),
    )
    .await;
    assert!(!output.status.success());
    assert_eq!(
        md5_hex(&t.s3.object("team/alice/up.bin").unwrap()),
        md5_hex(&big)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sftp_upload_over_quota_is_refused_and_leaves_nothing_under_the_key() {
    let t = on_store(&[TestUser::new("alice", "12MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let big = data(20 * MIB, 12);
    let src = local.path().join("big.bin");
    std::fs::write(&src, &big).unwrap();
    let output = sftp_rsftpd(
        &t.server,
        "alice",
        &format!("put {} /big.bin\n", src.display()),
    )
    .await;
    assert!(!output.status.success(), "{}", text(&output.stdout));
    assert!(t.s3.object("team/alice/big.bin").is_none());
    // Its first whole part is kept, as a partial upload.
    assert_eq!(saved_parts(&t.server, "alice", 1).await, 1);

    // The space the refused upload booked beyond its kept part is given back: a file
    // that fits beside that part still goes up.
    let fits = data(2 * MIB, 13);
    let src = local.path().join("fits.bin");
    std::fs::write(&src, &fits).unwrap();
    let output = sftp_rsftpd(
        &t.server,
        "alice",
        &format!("put {} /fits.bin\n", src.display()),
    )
    .await;
    assert_ok(&output, "sftp -b put after a refusal");
    assert_eq!(
        md5_hex(&t.s3.object("team/alice/fits.bin").unwrap()),
        md5_hex(&fits)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_scp_and_the_hash_commands_work_on_the_object_store() {
    let t = on_store(&[TestUser::new("alice", "100MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let bytes = data(PART_SIZE as usize + 99, 4);
    let src = local.path().join("up.bin");
    std::fs::write(&src, &bytes).unwrap();

    // Legacy SCP stages its upload like rsftp: a multipart upload, published at its end.
    let mut args = t.server.openssh_args("alice", "-P");
    args.extend([
        "-O".into(),
        src.display().to_string(),
        "127.0.0.1:/up.bin".into(),
    ]);
    let output = run_with_input("scp", &args, b"").await;
    assert_ok(&output, "scp -O upload");
    assert_eq!(
        md5_hex(&t.s3.object("team/alice/up.bin").unwrap()),
        md5_hex(&bytes)
    );
    let back = local.path().join("back.bin");
    let mut args = t.server.openssh_args("alice", "-P");
    args.extend([
        "-O".into(),
        "127.0.0.1:/up.bin".into(),
        back.display().to_string(),
    ]);
    assert_ok(&run_with_input("scp", &args, b"").await, "scp -O download");
    assert_eq!(md5_hex(&std::fs::read(&back).unwrap()), md5_hex(&bytes));

    // The hash commands stream the object through ranged reads.
    let mut args = t.server.openssh_args("alice", "-p");
    args.extend(["127.0.0.1".into(), "md5sum -- /up.bin".into()]);
    let output = run_with_input("ssh", &args, b"").await;
    assert_ok(&output, "md5sum");
    assert_eq!(
        text(&output.stdout),
        format!("{}  /up.bin\n", md5_hex(&bytes))
    );
    let mut args = t.server.openssh_args("alice", "-p");
    args.extend(["127.0.0.1".into(), "md5sum -- /nope".into()]);
    assert!(!run_with_input("ssh", &args, b"").await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_dies_mid_upload_fails_the_put_and_the_next_put_resumes() {
    let mut t = on_store(&[TestUser::new("alice", "1GiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let bytes = data(3 * PART_SIZE as usize + 10, 8);
    let src = local.path().join("big.bin");
    std::fs::write(&src, &bytes).unwrap();
    let first = local.path().join("first.bin");
    std::fs::write(&first, &bytes[..PART_SIZE as usize]).unwrap();

    let (_conn, mut c) = t.server.client("alice").await;
    let start = c
        .begin_put("big.bin", bytes.len() as u64, None)
        .await
        .unwrap();
    assert!(
        matches!(start, PutStart::Have { offset: 0, .. }),
        "{start:?}"
    );
    let file = std::fs::File::open(&first).unwrap();
    c.send_from(0, file, PART_SIZE, Md5::new(), |_| {})
        .await
        .unwrap();
    assert_eq!(saved_parts(&t.server, "alice", 1).await, 1);

    // The store goes away: the next part cannot be sent.
    t.s3.kill();
    let began = Instant::now();
    let file = std::fs::File::open(&src).unwrap();
    let rest = bytes.len() as u64 - PART_SIZE;
    let sent = c.send_from(PART_SIZE, file, rest, Md5::new(), |_| {}).await;
    let ended = match sent {
        Err(e) => Err(e),
        Ok(_) => c.end_put(Some(Md5Digest::of(&bytes))).await.map(|_| ()),
    };
    // The server stops taking data when a part cannot be stored; the session then
    // ends the put (today with a framing error rather than `ERR io`).
    ended.expect_err("the put fails while the store is down");
    assert!(began.elapsed() < Duration::from_secs(60));
    drop(c);

    // Back again: the part it holds is offered, and only the rest travels.
    t.s3.launch();
    let (_conn, mut c) = t.server.client("alice").await;
    let report = upload(&mut c, &src, "big.bin", &Quiet).await.unwrap();
    assert_eq!(report.resumed_from, PART_SIZE, "{report:?}");
    assert_eq!(
        md5_hex(&t.s3.object("team/alice/big.bin").unwrap()),
        md5_hex(&bytes)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_writes_out_of_order_are_put_back_in_order_within_the_bound() {
    let t = on_store(&[TestUser::new("alice", "100MiB")]).await;
    let lines = crate::paramiko_sftp::paramiko(
        &t.server,
        r#"
MIB = 1 << 20
def attempt(what, f, *args):
    try:
        f(*args)
        out(what, "ok")
    except IOError as e:
        out(what, "refused", "far ahead" in str(e) or "gap" in str(e) or "not published" in str(e))
# The second MiB first, then the first: put back in order, published at close.
f = s.open("order.bin", "wb", bufsize=0)
f.seek(MIB); f.write(b"b" * MIB)
f.seek(0); f.write(b"a" * MIB)
f.close()
with s.open("order.bin", "rb") as g:
    got = g.read()
out("order", len(got), hashlib.md5(got).hexdigest() == hashlib.md5(b"a" * MIB + b"b" * MIB).hexdigest())
# Beyond the bound: refused, and the upload is not published at close.
f = s.open("far.bin", "wb", bufsize=0)
f.seek(MIB)
attempt("far write", f.write, b"c" * (5 * MIB))
attempt("far close", f.close)
refused("far stat", s.stat, "far.bin")
# A close with a gap left is refused.
f = s.open("gap.bin", "wb", bufsize=0)
f.seek(MIB); f.write(b"d" * 1000)
attempt("gap close", f.close)
refused("gap stat", s.stat, "gap.bin")
"#,
    )
    .await;
    assert_eq!(
        lines,
        [
            "order 2097152 True",
            "far write refused True",
            // paramiko does not report a failed close; nothing was published.
            "far close ok",
            "far stat refused 2",
            "gap close ok",
            "gap stat refused 2",
        ]
    );
    assert_eq!(t.s3.keys(), vec!["team/alice/order.bin".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_copies_to_the_object_store_over_sftp() {
    let t = on_store(&[TestUser::new("alice", "100MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let big = data(PART_SIZE as usize * 2 + 123, 14);
    std::fs::write(local.path().join("big.bin"), &big).unwrap();
    std::fs::write(local.path().join("small.txt"), b"small").unwrap();
    let rclone = crate::rclone::Rclone::new(&t.server, "alice");
    let src = local.path().display().to_string();
    // rclone sets the time after the upload; the store keeps none, so it is told not to.
    let output = rclone
        .run(&["copy", "--sftp-set-modtime=false", &src, "rs:up"])
        .await;
    crate::real_clients::assert_success(&output, "rclone copy");
    assert_eq!(
        md5_hex(&t.s3.object("team/alice/up/big.bin").unwrap()),
        md5_hex(&big)
    );
    assert_eq!(t.s3.object("team/alice/up/small.txt").unwrap(), b"small");
    // Copying onto files that are there with other content writes over them, which this
    // backend declines: rclone reports it, and the objects stay as they were.
    std::fs::write(local.path().join("small.txt"), b"other").unwrap();
    let output = rclone
        .run(&[
            "copy",
            "--sftp-set-modtime=false",
            "--ignore-times",
            &src,
            "rs:up",
        ])
        .await;
    crate::real_clients::assert_failure(&output, "rclone copy over existing files");
    assert_eq!(t.s3.object("team/alice/up/small.txt").unwrap(), b"small");
}
