//! Partial uploads wait outside every home, in `storage/.partials/<user>/`: no user path
//! reaches them, even through a link to `.` that an administrator planted (issue 8,
//! item 9); they still resume after a restart and still count toward the quota; and
//! the old in-home staging area `.rsftp-partial` is migrated at start.

use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use rsftp::client::{PutStart, Quiet, upload};
use rsftp::protocol::ErrorCode;

use crate::sshd::{sftp_rsftpd, text};
use crate::util::{Client, TestServer, TestUser, data, md5_hex, run_with_input};

const MIB: usize = 1024 * 1024;

/// The name the server gives the partial of an upload of `path` with `size` bytes.
fn partial_name(path: &str, size: usize) -> String {
    format!("{}-{size}", md5_hex(path.as_bytes()))
}

/// Waits (30 s at most) until alice's usage, as another session sees it, is `at_least`
/// bytes: asked of the server, not of the disk, so it holds wherever partials live.
async fn used_at_least(server: &TestServer, at_least: u64) -> u64 {
    let (_conn, mut c) = server.client("alice").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let used = c.info().await.unwrap().used;
        if used >= at_least || Instant::now() > deadline {
            return used;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends the first `sent` bytes of `bytes` as a put of `path`, then breaks the
/// connection off, leaving a partial upload on the server.
async fn leave_a_partial(server: &TestServer, path: &str, bytes: &[u8], sent: usize) {
    let local = tempfile::tempdir().unwrap();
    let head = local.path().join("head");
    std::fs::write(&head, &bytes[..sent]).unwrap();
    let (conn, mut c) = server.client("alice").await;
    let start = c.begin_put(path, bytes.len() as u64, None).await.unwrap();
    assert!(
        matches!(start, PutStart::Have { offset: 0, .. }),
        "{start:?}"
    );
    let file = std::fs::File::open(&head).unwrap();
    c.send_from(0, file, sent as u64, Md5::new(), |_| {})
        .await
        .unwrap();
    assert_eq!(used_at_least(server, sent as u64).await, sent as u64);
    drop(c);
    drop(conn);
}

async fn error_code(c: &mut Client, path: &str) -> Vec<Option<ErrorCode>> {
    let code = |err: rsftp::client::ClientError| err.code().cloned();
    vec![
        c.ls(Some(path)).await.map(drop).err().and_then(code),
        c.stat(path).await.map(drop).err().and_then(code),
        c.md5(path, None).await.map(drop).err().and_then(code),
        c.read(path, 0, 10).await.map(drop).err().and_then(code),
        c.begin_get(path, 0, None)
            .await
            .map(drop)
            .err()
            .and_then(code),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_item_9_no_path_reaches_a_partial_through_a_link_to_the_home() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    // An administrator (or a restore) planted a link that stays inside: allowed.
    std::os::unix::fs::symlink(".", server.home("alice").join("self")).unwrap();
    std::fs::write(server.home("alice").join("mine.txt"), b"mine").unwrap();
    let bytes = data(2 * MIB, 81);
    leave_a_partial(&server, "/big.bin", &bytes, MIB).await;
    let partial = partial_name("/big.bin", bytes.len());

    let (_conn, mut c) = server.client("alice").await;
    // Listing the home, directly or through the link, shows only what the user made.
    for dir in ["/", "/self", "/self/self"] {
        let mut names: Vec<String> = c
            .ls(Some(dir))
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        names.sort();
        assert_eq!(names, ["mine.txt", "self"], "ls {dir}");
    }
    // Every way to name the old or the new staging area, or the partial in it, finds
    // nothing: it is not under the home at all.
    for path in [
        "/self/.rsftp-partial".to_owned(),
        format!("/self/.rsftp-partial/{partial}"),
        format!("/.rsftp-partial/{partial}"),
        "/self/../.partials".to_owned(),
        format!("../.partials/alice/{partial}"),
        format!("/self/self/../../.partials/alice/{partial}"),
        format!("/{partial}"),
        format!("/self/{partial}"),
    ] {
        let codes = error_code(&mut c, &path).await;
        assert!(
            codes.iter().all(|code| *code == Some(ErrorCode::NotFound)),
            "{path}: {codes:?}"
        );
    }
    // Nor can a user create something that reaches it: a folder of the old name is an
    // ordinary, empty folder of theirs.
    c.mkdir("/self/.rsftp-partial").await.unwrap();
    assert!(c.ls(Some("/.rsftp-partial")).await.unwrap().is_empty());
    c.rmdir("/.rsftp-partial").await.unwrap();

    // The same over SFTP, with OpenSSH's client.
    let output = sftp_rsftpd(
        &server,
        "alice",
        &format!(
            "ls -la /self\n-ls -la /self/.rsftp-partial\n-ls /self/../.partials/alice\n\
             -get /self/.rsftp-partial/{partial} /dev/null\n\
             -get /.partials/alice/{partial} /dev/null\n"
        ),
    )
    .await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    // What the server answered, without the commands that sftp echoes.
    let answers: Vec<&str> = stdout.lines().filter(|l| !l.starts_with("sftp>")).collect();
    assert_eq!(answers.len(), 4, "{stdout}");
    assert!(answers[2].ends_with("/self/mine.txt"), "{stdout}");
    assert!(answers.iter().all(|l| !l.contains("partial")), "{stdout}");
    assert_eq!(stderr.matches("not found").count(), 4, "{stderr}");

    // Nor through the exec commands: a hash, or a download with SCP.
    let reach = format!("/self/.rsftp-partial/{partial}");
    let mut args = server.openssh_args("alice", "-p");
    args.extend(["127.0.0.1".into(), format!("md5sum {reach}")]);
    let output = run_with_input("ssh", &args, b"").await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    let local = tempfile::tempdir().unwrap();
    let copy = local.path().join("copy");
    for legacy in [true, false] {
        let mut args = server.openssh_args("alice", "-P");
        if legacy {
            args.push("-O".into());
        }
        args.extend([format!("127.0.0.1:{reach}"), copy.display().to_string()]);
        let output = run_with_input("scp", &args, b"").await;
        assert!(!output.status.success(), "scp (legacy {legacy}) succeeded");
        assert!(!copy.exists());
    }

    // It is where the server keeps partials, outside the home, untouched: the upload
    // resumes from it.
    assert!(server.staging("alice").join(&partial).is_file());
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("big.bin");
    std::fs::write(&src, &bytes).unwrap();
    let report = upload(&mut c, &src, "big.bin", &Quiet).await.unwrap();
    assert_eq!(report.resumed_from, MIB as u64, "{report:?}");
    assert_eq!(report.md5.to_string(), md5_hex(&bytes));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_counts_toward_the_quota_and_resumes_after_a_restart() {
    let mut server = TestServer::start(&[TestUser::new("alice", "4MiB")]).await;
    let bytes = data(3 * MIB, 82);
    leave_a_partial(&server, "/f.bin", &bytes, MIB).await;
    {
        let (_conn, mut c) = server.client("alice").await;
        assert_eq!(c.info().await.unwrap().used, MIB as u64);
    }

    server.stop().await;
    server.launch(rsftp::server::Limits::default()).await;

    let (_conn, mut c) = server.client("alice").await;
    assert_eq!(
        c.info().await.unwrap().used,
        MIB as u64,
        "measured again from disk, partial included"
    );
    assert_eq!(server.used_on_disk("alice"), MIB as u64);
    // The partial's megabyte leaves 3 MiB: another upload of 3.5 MiB does not fit.
    let err = c
        .begin_put("other.bin", (3 * MIB + MIB / 2) as u64, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::Quota), "{err:?}");

    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("f.bin");
    std::fs::write(&src, &bytes).unwrap();
    let report = upload(&mut c, &src, "f.bin", &Quiet).await.unwrap();
    assert_eq!(report.resumed_from, MIB as u64, "{report:?}");
    assert_eq!(report.transferred, 2 * MIB as u64);
    assert_eq!(report.md5.to_string(), md5_hex(&bytes));
    assert_eq!(
        md5_hex(&std::fs::read(server.home("alice").join("f.bin")).unwrap()),
        md5_hex(&bytes)
    );
    assert_eq!(
        std::fs::read_dir(server.staging("alice")).unwrap().count(),
        0
    );
    assert_eq!(c.info().await.unwrap().used, 3 * MIB as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_staging_area_in_the_home_is_migrated_at_start() {
    let mut server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    server.stop().await;
    // As an older rsftpd left it: partials in the home, no staging folder beside it.
    std::fs::remove_dir(server.staging("alice")).unwrap();
    let legacy = server.home("alice").join(".rsftp-partial");
    std::fs::create_dir(&legacy).unwrap();
    let bytes = data(2 * MIB, 83);
    let partial = partial_name("/old.bin", bytes.len());
    std::fs::write(legacy.join(&partial), &bytes[..MIB]).unwrap();
    // What is not a partial upload stays, as the user's.
    std::fs::write(legacy.join("notes.txt"), b"notes").unwrap();
    server.launch(rsftp::server::Limits::default()).await;

    assert_eq!(
        std::fs::read(server.staging("alice").join(&partial)).unwrap(),
        &bytes[..MIB]
    );
    assert!(!legacy.join(&partial).exists());
    let (_conn, mut c) = server.client("alice").await;
    let names: Vec<String> = c
        .ls(Some("/.rsftp-partial"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["notes.txt"]);
    // The folder and the notes, a block each, and the migrated partial.
    assert_eq!(c.info().await.unwrap().used, (MIB + 2 * 4096) as u64);

    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("old.bin");
    std::fs::write(&src, &bytes).unwrap();
    let report = upload(&mut c, &src, "old.bin", &Quiet).await.unwrap();
    assert_eq!(report.resumed_from, MIB as u64, "{report:?}");
    assert_eq!(report.md5.to_string(), md5_hex(&bytes));

    // Only once: after the next start the old name is just a folder of the user's.
    c.rm("/.rsftp-partial/notes.txt").await.unwrap();
    c.write(&format!("/.rsftp-partial/{partial}"), 0, b"mine")
        .await
        .unwrap();
    drop(c);
    server.stop().await;
    server.launch(rsftp::server::Limits::default()).await;
    let (_conn, mut c) = server.client("alice").await;
    let (digest, len) = c
        .md5(&format!("/.rsftp-partial/{partial}"), None)
        .await
        .unwrap();
    assert_eq!((digest.to_string(), len), (md5_hex(b"mine"), 4));
    assert_eq!(
        std::fs::read_dir(server.staging("alice")).unwrap().count(),
        0
    );
}
