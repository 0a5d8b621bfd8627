//! Issue 8, item 6: no client can flood the log. Metadata reads are counted per session
//! and summed up in one line at its end, while every change and every transfer keeps its
//! own line; and the log files rotate by size and are kept to a number. Run on a real
//! `rsftpd` child process writing real log files.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rsftp::auth::Secret;

use crate::memory::Daemon;
use crate::scp_legacy::{exec, scp};
use crate::sftp_raw::{ATTRS, RawSftp, STATUS, body, frame, string};
use crate::util::{PASSWORD, TestUser, data};

const STAT: u8 = 17;
const MKDIR: u8 = 14;
const WRITE: u8 = 6;
const CLOSE: u8 = 4;
/// SSH_FXF_WRITE | SSH_FXF_CREAT | SSH_FXF_TRUNC.
const CREATE: u32 = 0x02 | 0x08 | 0x10;

/// Every log file under `dir`, oldest name first, as (name, text).
fn log_files(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    (name, std::fs::read_to_string(e.path()).unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The whole log once a line containing every `|`-separated part of `needle` is in it,
/// or as it is after 20 s.
pub(crate) async fn log_with(dir: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text: String = log_files(dir).into_iter().map(|(_, text)| text).collect();
        if has(&text, needle) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn has(log: &str, needle: &str) -> bool {
    log.lines()
        .any(|l| needle.split('|').all(|part| l.contains(part)))
}

pub(crate) fn count(log: &str, needle: &str) -> usize {
    log.lines()
        .filter(|l| needle.split('|').all(|part| l.contains(part)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_sftp_stats_add_one_summary_line_not_one_a_request() {
    let daemon = Daemon::start(&[TestUser::new("alice", "1GiB")], &[]).await;
    let logs = daemon.server.root().join("logs");
    let mut conn = daemon.server.connection("alice").await;
    assert!(conn.login_password(&Secret::new(PASSWORD)).await.unwrap());
    let mut sftp = RawSftp::from_stream(conn.open_subsystem("sftp").await.unwrap());
    sftp.init().await;

    // A change and an upload: each keeps its own line.
    let no_attrs = 0u32.to_be_bytes();
    sftp.send(&frame(MKDIR, &body(1, &[&string(b"/made"), &no_attrs])))
        .await;
    assert_eq!(sftp.status(1).await.0, 0);
    let handle = sftp.open_file(2, "/made/up.bin", CREATE).await;
    let bytes = data(10_000, 8);
    sftp.send(&frame(
        WRITE,
        &body(3, &[&string(&handle), &0u64.to_be_bytes(), &string(&bytes)]),
    ))
    .await;
    assert_eq!(sftp.status(3).await.0, 0);
    sftp.send(&frame(CLOSE, &body(4, &[&string(&handle)])))
        .await;
    assert_eq!(sftp.status(4).await.0, 0);

    // The flood: thousands of STATs pipelined in one go, two of which fail.
    const STATS: u32 = 3000;
    let mut flood = Vec::new();
    for id in 0..STATS {
        let path: &[u8] = if id % 1500 == 7 { b"/missing" } else { b"/" };
        flood.extend(frame(STAT, &body(100 + id, &[&string(path)])));
    }
    sftp.send(&flood).await;
    let mut failed = 0;
    for _ in 0..STATS {
        let reply = sftp.reply().await;
        match reply.kind {
            ATTRS => {}
            STATUS => failed += 1,
            other => panic!("unexpected reply {other}"),
        }
    }
    assert_eq!(failed, 2);
    sftp.finish().await;
    conn.close().await.unwrap();

    let log = log_with(&logs, "metadata reads:|ended=true").await;
    // Standard error carries the same events, written before the file's copy is.
    let stderr = std::fs::read_to_string(daemon.server.root().join("stderr")).unwrap();
    assert_eq!(count(&stderr, "op=\"stat\""), 0, "{stderr}");
    assert_eq!(count(&stderr, "metadata reads: stat=3000 failed=2"), 1);
    assert!(has(&stderr, "op=\"mkdir\" path=\"/made\""), "{stderr}");
    assert_eq!(count(&log, "op=\"stat\""), 0, "no line a stat:\n{log}");
    let lines = log.lines().count();
    assert!(lines < 40, "{lines} lines for {STATS} stats:\n{log}");
    assert_eq!(
        count(
            &log,
            "metadata reads: stat=3000 failed=2 user=alice|ended=true"
        ),
        1,
        "one summary at the session's end, with the exact counts:\n{log}"
    );
    assert!(
        has(
            &log,
            "user=alice proto=\"sftp\" op=\"mkdir\" path=\"/made\"|result=\"ok\""
        ),
        "{log}"
    );
    assert!(
        has(
            &log,
            "proto=\"sftp\" op=\"open\" path=\"/made/up.bin\"|result=\"ok\""
        ),
        "{log}"
    );
    assert!(
        has(
            &log,
            "proto=\"sftp\" op=\"write\" path=\"/made/up.bin\" bytes=10000|result=\"ok\""
        ),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsftp_reads_on_several_channels_are_counted_together_and_changes_logged() {
    let daemon = Daemon::start(&[TestUser::new("alice", "1GiB")], &[]).await;
    let logs = daemon.server.root().join("logs");
    let mut conn = daemon.server.connection("alice").await;
    assert!(conn.login_password(&Secret::new(PASSWORD)).await.unwrap());

    // One channel pipelines reads, as `printf 'stat /\n...' | ssh -s rsftp` would.
    let stream = conn.open_subsystem("rsftp").await.unwrap();
    let (read, mut write) = tokio::io::split(stream);
    let mut read = tokio::io::BufReader::new(read);
    let mut lines = Vec::new();
    let mut next_line = async || {
        use tokio::io::AsyncBufReadExt;
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(30), read.read_line(&mut line))
            .await
            .expect("a reply in time")
            .expect("read");
        line
    };
    assert!(next_line().await.starts_with("OK rsftp/1"));
    const STATS: usize = 2000;
    let mut flood = "stat /\n".repeat(STATS);
    flood.push_str("pwd\nstat /nope\n");
    {
        use tokio::io::AsyncWriteExt;
        write.write_all(flood.as_bytes()).await.unwrap();
        write.flush().await.unwrap();
    }
    for _ in 0..STATS + 2 {
        lines.push(next_line().await);
    }
    assert!(
        lines[..STATS].iter().all(|l| l.starts_with("OK d ")),
        "{lines:?}"
    );
    assert_eq!(lines[STATS], "OK /\n");
    assert!(lines[STATS + 1].starts_with("ERR not-found"), "{lines:?}");

    // Another channel of the same connection makes changes and uploads.
    let mut client = conn.open_rsftp().await.unwrap();
    client.mkdir("made").await.unwrap();
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("up.bin");
    std::fs::write(&src, data(5000, 9)).unwrap();
    // An upload first asks for the file's stat, which fails here: it is new.
    rsftp::client::upload(&mut client, &src, "/made/up.bin", &rsftp::client::Quiet)
        .await
        .unwrap();
    assert_eq!(client.ls(Some("/made")).await.unwrap().len(), 1);
    assert!(client.rm("/nope").await.is_err());
    client.quit().await.unwrap();
    drop((read, write));
    conn.close().await.unwrap();

    let log = log_with(&logs, "metadata reads:|ended=true").await;
    assert_eq!(count(&log, "op=\"stat\""), 0, "{log}");
    assert!(log.lines().count() < 40, "{log}");
    assert_eq!(
        count(
            &log,
            "metadata reads: stat=2002 ls=1 pwd=1 failed=2 user=alice|ended=true"
        ),
        1,
        "{log}"
    );
    assert!(
        has(
            &log,
            "user=alice proto=\"rsftp\" op=\"mkdir\" path=\"/made\"|result=\"ok\""
        ),
        "{log}"
    );
    assert!(
        has(
            &log,
            "proto=\"rsftp\" op=\"put\" path=\"/made/up.bin\" bytes=5000|result=\"ok\""
        ),
        "{log}"
    );
    // A failed change is still a change.
    assert!(
        has(&log, "proto=\"rsftp\" op=\"rm\"|result=\"error\""),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_uploads_and_hash_commands_keep_their_lines() {
    let daemon = Daemon::start(&[TestUser::new("alice", "1GiB")], &[]).await;
    let logs = daemon.server.root().join("logs");
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("up.bin");
    std::fs::write(&src, data(3000, 4)).unwrap();
    let out = scp(
        &daemon.server,
        &[&src.display().to_string(), "127.0.0.1:/up.bin"],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let out = exec(&daemon.server, "md5sum /up.bin /missing", b"").await;
    assert!(!out.status.success(), "{out:?}");

    let log = log_with(&logs, "op=\"md5sum\" path=\"/missing\"").await;
    assert!(
        has(
            &log,
            "user=alice proto=\"scp\" op=\"put\" path=\"/up.bin\" bytes=3000|result=\"ok\""
        ),
        "{log}"
    );
    assert!(
        has(
            &log,
            "proto=\"exec\" op=\"md5sum\" path=\"/up.bin\" bytes=3000|result=\"ok\""
        ),
        "{log}"
    );
    assert!(
        has(
            &log,
            "proto=\"exec\" op=\"md5sum\" path=\"/missing\"|result=\"error\""
        ),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_files_rotate_at_their_size_and_only_the_newest_are_kept() {
    let args = ["--log-max-size", "4KiB", "--log-keep", "3"];
    let daemon = Daemon::start(&[TestUser::new("alice", "1GiB")], &args).await;
    let logs = daemon.server.root().join("logs");
    let (conn, mut client) = daemon.server.client("alice").await;
    // About 150 bytes a line: some 20 KiB in all, five files or more.
    for n in 0..130 {
        client.mkdir(&format!("d{n:03}")).await.unwrap();
    }
    client.quit().await.unwrap();
    conn.close().await.unwrap();

    let log = log_with(&logs, "op=\"mkdir\" path=\"/d129\"").await;
    assert!(has(&log, "op=\"mkdir\" path=\"/d129\""), "{log}");
    let files = log_files(&logs);
    let names: Vec<_> = files.iter().map(|(name, _)| name.as_str()).collect();
    assert!(files.len() <= 3, "{names:?}");
    assert!(
        names.iter().all(|n| n.starts_with("rsftpd.log.")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.split('.').count() == 4),
        "rotated by size within the day: {names:?}"
    );
    for (name, text) in &files {
        assert!(text.len() <= 4096, "{name} has {} bytes", text.len());
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{name} ends mid-line"
        );
    }
    assert!(
        !has(&log, "op=\"mkdir\" path=\"/d000\""),
        "the oldest file was deleted"
    );
}

#[test]
fn rotation_settings_that_make_no_sense_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        ["--log-max-size", "1KiB"],
        ["--log-max-size", "lots"],
        ["--log-keep", "0"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_rsftpd"))
            .current_dir(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Refused as a bad value of a known flag, not as an unknown flag.
        assert!(
            stderr.contains(&format!("invalid value '{}' for '{}", args[1], args[0])),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing created"
    );
}
