//! The server-wide memory budget: connections that upload as fast as they can and never
//! read a reply are slowed down by not reading their sockets, so the server's memory
//! stays bounded, while a well-behaved connection beside them still moves data and an
//! honest downloader with many reads in flight is never deadlocked.
//!
//! The smoke version runs in the normal suite; `RSFTP_HEAVY_TESTS=1` floods for longer
//! with larger files.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use crate::memory::{Daemon, MIB};
use crate::sftp_raw::{DATA, RawSftp, STATUS, body, frame, string};
use crate::util::{TestUser, data, md5_hex};

const READ: u8 = 5;
const WRITE: u8 = 6;
/// SSH_FXF_WRITE | SSH_FXF_CREAT | SSH_FXF_TRUNC, and SSH_FXF_READ.
const FOR_WRITING: u32 = 0x02 | 0x08 | 0x10;
const FOR_READING: u32 = 0x01;
/// The largest WRITE data OpenSSH's sftp sends with `limits@openssh.com`.
const CHUNK: usize = 255 * 1024;

const BUDGET_MIB: u64 = 64;

struct Size {
    flooders: usize,
    flood: Duration,
    /// What the well-behaved connection puts and gets.
    transfer: usize,
    /// What the honest downloader reads with many READs in flight.
    download: usize,
}

fn size() -> Size {
    if std::env::var_os("RSFTP_HEAVY_TESTS").is_some() {
        Size {
            flooders: 50,
            flood: Duration::from_secs(60),
            transfer: 32 << 20,
            download: 256 << 20,
        }
    } else {
        Size {
            flooders: 50,
            flood: Duration::from_secs(12),
            transfer: 4 << 20,
            download: 24 << 20,
        }
    }
}

async fn sftp(daemon: &Daemon, user: &str) -> RawSftp {
    let conn = daemon.login(user).await;
    let stream = conn.open_subsystem("sftp").await.expect("sftp subsystem");
    let mut sftp = RawSftp::with_connection(stream, conn);
    sftp.init().await;
    sftp
}

/// One connection that writes WRITE packets until `stop`, never reading a reply; hands
/// the connection back, still open.
async fn flood(
    mut sftp: RawSftp,
    file: Vec<u8>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> RawSftp {
    let chunk = data(CHUNK, 9);
    let mut id = 100u32;
    let mut offset = 0u64;
    while !stop.load(Ordering::Relaxed) {
        id += 1;
        let packet = frame(
            WRITE,
            &body(
                id,
                &[&string(&file), &offset.to_be_bytes(), &string(&chunk)],
            ),
        );
        // A throttled connection blocks here; look at `stop` now and then.
        match tokio::time::timeout(Duration::from_millis(500), sftp.try_send(&packet)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => continue,
        }
        offset += CHUNK as u64;
        sent.fetch_add(CHUNK as u64, Ordering::Relaxed);
    }
    sftp
}

/// Reads `len` bytes of `path` with up to `depth` READs in flight; returns the MD5.
async fn download(sftp: &mut RawSftp, path: &str, len: u64, depth: u32) -> String {
    let handle = sftp.open_file(2, path, FOR_READING).await;
    let request = |id: u32, offset: u64| {
        frame(
            READ,
            &body(
                id,
                &[
                    &string(&handle),
                    &offset.to_be_bytes(),
                    &(CHUNK as u32).to_be_bytes(),
                ],
            ),
        )
    };
    let mut hasher = Md5::new();
    let mut next = 0u64;
    let mut id = 10u32;
    let mut asked = std::collections::VecDeque::new();
    for _ in 0..depth {
        if next < len {
            id += 1;
            sftp.send(&request(id, next)).await;
            asked.push_back((id, next));
            next += CHUNK as u64;
        }
    }
    let mut got = 0u64;
    while let Some((want, offset)) = asked.pop_front() {
        let reply = sftp.reply().await;
        assert_eq!((reply.kind, reply.id), (DATA, want), "{reply:?}");
        let bytes = reply.first_string();
        assert_eq!(offset, got);
        assert_eq!(bytes.len() as u64, CHUNK.min((len - got) as usize) as u64);
        got += bytes.len() as u64;
        hasher.update(&bytes);
        if next < len {
            id += 1;
            sftp.send(&request(id, next)).await;
            asked.push_back((id, next));
            next += CHUNK as u64;
        }
    }
    assert_eq!(got, len);
    rsftp::protocol::Md5Digest::from_hasher(hasher).to_string()
}

/// 50 connections flood WRITEs and never read a reply: the server's RSS stays under
/// twice the budget over its baseline. Beside them, a well-behaved client puts and gets
/// a file with the right MD5, and a downloader with 128 READs in flight finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_connections_are_slowed_and_others_still_move_data() {
    let size = size();
    let daemon = Daemon::start(
        &[
            TestUser::new("alice", "1GiB"),
            TestUser::new("mallory", "512MiB"),
        ],
        &[
            "--memory-budget",
            &format!("{BUDGET_MIB}MiB"),
            "--max-startups",
            "100",
        ],
    )
    .await;
    let big = data(size.download, 5);
    std::fs::write(daemon.server.home("alice").join("big.bin"), &big).unwrap();
    let big_md5 = md5_hex(&big);
    let run = async {
        // Logged in first, so that the baseline holds their sessions.
        let mut floods = Vec::new();
        for i in 0..size.flooders {
            let mut sftp = sftp(&daemon, "mallory").await;
            let handle = sftp.open_file(1, &format!("/flood{i}"), FOR_WRITING).await;
            floods.push((sftp, handle));
        }
        let local = tempfile::tempdir().unwrap();
        let honest = daemon.login("alice").await;
        let mut client = honest.open_rsftp().await.unwrap();
        let mut downloader = sftp(&daemon, "alice").await;
        let baseline = daemon.rss();
        let bound = baseline + 2 * BUDGET_MIB * MIB;

        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let flooders: Vec<_> = floods
            .into_iter()
            .map(|(sftp, handle)| {
                tokio::spawn(flood(sftp, handle, Arc::clone(&stop), Arc::clone(&sent)))
            })
            .collect();

        // The server's RSS, sampled while everything runs.
        let peak = Arc::new(AtomicU64::new(0));
        let sampling = {
            let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
            let pid = daemon.pid();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_of(pid), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let flood_started = Instant::now();
        // Let the flood build up before the others start.
        tokio::time::sleep(size.flood / 4).await;

        // The well-behaved connection: a put and a get, both verified by MD5.
        let src = local.path().join("up.bin");
        let bytes = data(size.transfer, 6);
        std::fs::write(&src, &bytes).unwrap();
        let put = rsftp::client::upload(&mut client, &src, "up.bin", &rsftp::client::Quiet)
            .await
            .expect("put beside the flood");
        assert_eq!(put.md5.to_string(), md5_hex(&bytes));
        let dest = local.path().join("down.bin");
        let got =
            rsftp::client::download(&mut client, "up.bin", &dest, false, &rsftp::client::Quiet)
                .await
                .expect("get beside the flood");
        assert_eq!(got.md5.to_string(), md5_hex(&bytes));
        assert_eq!(std::fs::read(&dest).unwrap(), bytes);

        // The honest downloader, with more READs in flight (128, the server's limit per
        // channel: 32 MiB of replies) than its window lets through: were replies waiting
        // for the window to stop the socket, the window adjusts would never be read.
        let md5 = download(&mut downloader, "/big.bin", big.len() as u64, 128).await;
        assert_eq!(md5, big_md5);

        // Keep flooding for the rest of the time.
        while flood_started.elapsed() < size.flood {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(
                daemon.rss() < bound,
                "server RSS {} MiB past the bound",
                daemon.rss() / MIB
            );
        }
        stop.store(true, Ordering::Relaxed);
        let _ = sampling.await;
        // Kept open, their replies unread, until the figures are in.
        let mut open = Vec::new();
        for flooder in flooders {
            if let Ok(Ok(sftp)) = tokio::time::timeout(Duration::from_secs(10), flooder).await {
                open.push(sftp);
            }
        }
        let peak = peak.load(Ordering::Relaxed);
        eprintln!(
            "{} flooders sent {} MiB in {:?}; server RSS {} MiB at the start, peak {} MiB (bound {} MiB)",
            size.flooders,
            sent.load(Ordering::Relaxed) / MIB,
            size.flood,
            baseline / MIB,
            peak / MIB,
            bound / MIB
        );
        assert!(
            peak < bound,
            "server RSS peaked at {} MiB, over {} MiB (baseline {} MiB + 2 x {BUDGET_MIB} MiB)",
            peak / MIB,
            bound / MIB,
            baseline / MIB
        );
        // The flood did reach the server: this is no test of an idle one.
        assert!(sent.load(Ordering::Relaxed) > 2 * BUDGET_MIB * MIB);
        let _ = client.quit().await;
        let _ = honest.close().await;
        drop(open);
    };
    tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("done in time");
}

/// Refused: a connection whose share is held by open directories gets no more, with a
/// message that says why, and gets them again once it closes some.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_handles_past_the_share_are_refused() {
    const OPENDIR: u8 = 11;
    const CLOSE: u8 = 4;
    const HANDLE: u8 = 102;
    // The smallest budget: 1 MiB for one connection, half of it for 32 KiB handles.
    let daemon = Daemon::start(
        &[TestUser::new("alice", "1GiB")],
        &["--memory-budget", "1MiB"],
    )
    .await;
    let mut sftp = sftp(&daemon, "alice").await;
    let mut handles = Vec::new();
    let mut refused = None;
    for id in 1..=64u32 {
        sftp.send(&frame(OPENDIR, &body(id, &[&string(b"/")])))
            .await;
        let reply = sftp.reply().await;
        match reply.kind {
            HANDLE => handles.push(reply.first_string()),
            STATUS => {
                refused = Some(reply.message());
                break;
            }
            other => panic!("reply type {other}"),
        }
    }
    let message = refused.expect("refused before 64 handles");
    assert!(message.contains("memory share"), "{message}");
    // Half the share is 512 KiB: 32 KiB handles, beside the request's own reply.
    assert!(
        (8..=16).contains(&handles.len()),
        "{} handles",
        handles.len()
    );
    sftp.send(&frame(CLOSE, &body(100, &[&string(&handles[0])])))
        .await;
    assert_eq!(sftp.status(100).await.0, 0);
    sftp.send(&frame(OPENDIR, &body(101, &[&string(b"/")])))
        .await;
    assert_eq!(sftp.reply().await.kind, HANDLE);
}

fn rss_of(pid: u32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Under the smallest budget, one connection uploads on three rsftp channels and
/// downloads over SFTP at once: both ends of it write inline (our client is built on
/// russh too), so while the server does not read the client's upload, the client does
/// not read the server's download. The server's writes must not keep it from reading
/// again once the pause is over, and an upload's chunk being filled must not pause the
/// socket that fills it. Everything finishes, verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_a_download_on_one_connection_finish_under_the_smallest_budget() {
    let daemon = Daemon::start(
        &[TestUser::new("alice", "1GiB")],
        &["--memory-budget", "1MiB"],
    )
    .await;
    let big = data(8 << 20, 11);
    std::fs::write(daemon.server.home("alice").join("big.bin"), &big).unwrap();
    let local = tempfile::tempdir().unwrap();
    let run = async {
        let conn = daemon.login("alice").await;
        let mut puts = Vec::new();
        for i in 0..3u64 {
            let client = conn.open_rsftp().await.unwrap();
            let path = local.path().join(format!("up{i}.bin"));
            let bytes = data(6 << 20, 20 + i);
            std::fs::write(&path, &bytes).unwrap();
            puts.push((client, path, format!("up{i}.bin"), md5_hex(&bytes)));
        }
        let stream = conn.open_subsystem("sftp").await.unwrap();
        let mut downloader = RawSftp::from_stream(stream);
        downloader.init().await;
        let [a, b, c]: [_; 3] = puts.try_into().ok().unwrap();
        let (md5, (), (), ()) = tokio::join!(
            download(&mut downloader, "/big.bin", big.len() as u64, 64),
            put(a),
            put(b),
            put(c)
        );
        assert_eq!(md5, md5_hex(&big));
        drop(downloader);
        let _ = conn.close().await;
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("done in time, no deadlock");
}

async fn put(
    (mut client, path, to, want): (crate::util::Client, std::path::PathBuf, String, String),
) {
    let report = rsftp::client::upload(&mut client, &path, &to, &rsftp::client::Quiet)
        .await
        .expect("put");
    assert_eq!(report.md5.to_string(), want);
}
