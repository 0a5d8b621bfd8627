//! Stalled transfers and idle sessions (issue 8, item 4): a put that stops sending holds
//! no blocking thread and is cut after the stall limit, resumable; a session that only
//! answers SSH keepalives is closed after the idle timeout, ones that keep transferring
//! or asking are not.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rsftp::server::Limits;
use russh::ChannelStream;
use russh::client::Msg;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::memory::Daemon;
use crate::sftp_raw::RawSftp;
use crate::util::{Raw, TestServer, TestUser, data, md5_hex};

/// One rsftp channel with a put that sent 3 of its 1000 bytes and then nothing more.
type StalledPut = BufReader<ChannelStream<Msg>>;

async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> String {
    let mut line = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), reader.read_until(b'\n', &mut line))
        .await
        .expect("a line in time")
        .expect("read");
    String::from_utf8_lossy(&line).trim_end().to_owned()
}

async fn stall_a_put(stream: ChannelStream<Msg>, path: &str) -> StalledPut {
    let mut channel = BufReader::new(stream);
    let greeting = next_line(&mut channel).await;
    assert!(greeting.starts_with("OK rsftp/1 "), "{greeting}");
    let writer = channel.get_mut();
    writer
        .write_all(format!("put {path} 1000 -\n").as_bytes())
        .await
        .unwrap();
    writer.flush().await.unwrap();
    let have = next_line(&mut channel).await;
    assert!(have.starts_with("OK have 0 "), "{have}");
    let writer = channel.get_mut();
    writer.write_all(b"from 0\nabc").await.unwrap();
    writer.flush().await.unwrap();
    channel
}

fn threads(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no thread count in {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_puts_hold_no_threads_and_lock_nobody_out() {
    let attackers = ["mallory", "trudy", "eve"];
    let mut users: Vec<TestUser> = attackers
        .iter()
        .map(|name| TestUser::new(name, "10MiB"))
        .collect();
    users.push(TestUser::new("alice", "10MiB"));
    let daemon = Daemon::start(&users, &[]).await;
    let baseline = threads(daemon.pid());

    // 3 accounts x 2 sessions x 8 channels (the per-connection cap): 48 puts that sent
    // 3 bytes and then went quiet, each on a channel that stays open.
    let (mut held, mut connections) = (Vec::new(), Vec::new());
    for (n, user) in attackers.iter().cycle().take(6).enumerate() {
        let conn = daemon.login(user).await;
        for channel in 0..8 {
            let stream = conn.open_subsystem("rsftp").await.expect("a channel");
            held.push(stall_a_put(stream, &format!("/x{n}-{channel}")).await);
        }
        connections.push(conn);
    }
    // Let any thread that the stalled puts could park get parked.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stalled = threads(daemon.pid());
    assert!(
        stalled < baseline + 32,
        "48 stalled puts took the server from {baseline} to {stalled} threads"
    );

    // Another user logs in with OpenSSH and gets a full put and get through.
    let hello_md5 = md5_hex(b"hello\n");
    let script = format!("put /hello.txt 6 -\nfrom 0\nhello\ndone {hello_md5}\nget /hello.txt\n");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        daemon.server.ssh_subsystem("alice", script.as_bytes()),
    )
    .await
    .expect("another user is served while the puts stall");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("OK {hello_md5} 6\n")),
        "the put: {stdout}"
    );
    assert!(
        stdout.contains(&format!("OK 6 6\nhello\nOK {hello_md5}\n")),
        "the get: {stdout}"
    );
    assert!(threads(daemon.pid()) < baseline + 32);
    drop((held, connections));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_put_is_cut_after_the_stall_limit_and_resumes() {
    let limits = Limits {
        stall_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let server = TestServer::start_with(&[TestUser::new("alice", "10MiB")], limits).await;
    let bytes = data(1000, 4);
    let mut raw = Raw::open(&server, "alice").await;
    let have = raw.ask("put /s.bin 1000 -").await;
    assert!(have.starts_with("OK have 0 "), "{have}");
    let mut first = b"from 0\n".to_vec();
    first.extend_from_slice(&bytes[..3]);
    raw.send(&first).await;
    let sent = Instant::now();
    let cut = raw.line().await;
    assert!(
        cut.starts_with("ERR timeout no data from the peer for 2 s"),
        "{cut}"
    );
    assert!(cut.contains("resume from 3 bytes"), "{cut}");
    assert!(
        sent.elapsed() >= Duration::from_millis(1500),
        "cut before the stall limit"
    );
    assert_eq!(raw.line().await, "", "the channel closes after a stall");

    // The mark is gone and the partial kept: the same put resumes from its 3 bytes.
    let mut raw = Raw::open(&server, "alice").await;
    let whole = md5_hex(&bytes);
    let have = raw.ask(&format!("put /s.bin 1000 {whole}")).await;
    assert_eq!(have, format!("OK have 3 {}", md5_hex(&bytes[..3])));
    let mut rest = b"from 3\n".to_vec();
    rest.extend_from_slice(&bytes[3..]);
    raw.send(&rest).await;
    assert_eq!(raw.line().await, format!("OK {whole} 1000"));
    assert_eq!(
        std::fs::read(server.home("alice").join("s.bin")).unwrap(),
        bytes
    );
}

/// `ssh` (OpenSSH) as `user` with extra options and a remote command or subsystem,
/// stdin and stdout piped; killed if the test ends first.
fn ssh(server: &TestServer, user: &str, options: &[&str], remote: &[&str]) -> Child {
    let mut args = server.openssh_args(user, "-p");
    args.extend(options.iter().map(|o| (*o).to_owned()));
    args.push("127.0.0.1".into());
    args.extend(remote.iter().map(|r| (*r).to_owned()));
    Command::new("ssh")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ssh runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_scp_upload_is_cut_after_the_stall_limit() {
    // The real daemon, so that the flag is covered too.
    let daemon = Daemon::start(
        &[TestUser::new("alice", "10MiB")],
        &["--stall-timeout", "2"],
    )
    .await;
    let server = &daemon.server;
    let mut scp = ssh(server, "alice", &[], &["scp", "-t", "/s.bin"]);
    let mut stdin = scp.stdin.take().unwrap();
    let mut stdout = scp.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    let ready = Duration::from_secs(30);
    tokio::time::timeout(ready, stdout.read_exact(&mut byte))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(byte, [0], "scp -t is ready");
    stdin.write_all(b"C0644 1000 s.bin\n").await.unwrap();
    stdin.flush().await.unwrap();
    tokio::time::timeout(ready, stdout.read_exact(&mut byte))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(byte, [0], "the file is accepted");
    stdin.write_all(b"abc").await.unwrap();
    stdin.flush().await.unwrap();
    let mut reader = BufReader::new(stdout);
    let fatal = next_line(&mut reader).await;
    assert!(
        fatal.starts_with("\u{2}scp: /s.bin: no data from the peer for 2 s"),
        "{fatal:?}"
    );
    let status = tokio::time::timeout(Duration::from_secs(10), scp.wait())
        .await
        .expect("scp ends")
        .unwrap();
    assert!(!status.success());
    assert!(!server.home("alice").join("s.bin").exists());
    drop(stdin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_do_not_keep_a_session_open_but_transfers_and_requests_do() {
    let mut server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    server.stop().await;
    server.idle_timeout = Some(Duration::from_secs(3));
    server
        .launch(Limits {
            stall_timeout: Duration::from_secs(2),
            ..Limits::default()
        })
        .await;

    // Only keepalives, once a second, on a session that opened rsftp and said nothing.
    let keepalives = [
        "-o",
        "ServerAliveInterval=1",
        "-o",
        "ServerAliveCountMax=100",
    ];
    let mut idle = ssh(&server, "alice", &keepalives, &["-s", "rsftp"]);
    let stdin = idle.stdin.take().unwrap();
    let mut stdout = BufReader::new(idle.stdout.take().unwrap());
    let greeting = next_line(&mut stdout).await;
    assert!(greeting.starts_with("OK rsftp/1 "), "{greeting}");
    let greeted = Instant::now();

    // Meanwhile an upload that sends one byte every half second, for 6 seconds.
    let bytes = data(12, 9);
    let busy = {
        let mut raw = Raw::open(&server, "alice").await;
        let bytes = bytes.clone();
        tokio::spawn(async move {
            let have = raw.ask("put /slow.bin 12 -").await;
            assert!(have.starts_with("OK have 0 "), "{have}");
            raw.send(b"from 0\n").await;
            for byte in &bytes {
                tokio::time::sleep(Duration::from_millis(500)).await;
                raw.send(std::slice::from_ref(byte)).await;
            }
            raw.ask(&format!("done {}", md5_hex(&bytes))).await
        })
    };

    // And an SFTP session that asks something every half second, for 6 seconds.
    let asking = {
        let mut sftp = RawSftp::open(&server, "alice").await;
        sftp.init().await;
        tokio::spawn(async move {
            for id in 1..=12 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                assert_eq!(sftp.realpath(id, ".").await, "/");
            }
        })
    };

    let ended = tokio::time::timeout(Duration::from_secs(10), idle.wait()).await;
    assert!(
        ended.is_ok(),
        "a session with only keepalives was still open after 10 s"
    );
    assert!(
        greeted.elapsed() >= Duration::from_secs(2),
        "closed before the idle timeout"
    );
    let done = tokio::time::timeout(Duration::from_secs(30), busy)
        .await
        .expect("the slow upload ends")
        .unwrap();
    assert_eq!(done, format!("OK {} 12", md5_hex(&bytes)));
    tokio::time::timeout(Duration::from_secs(30), asking)
        .await
        .expect("the SFTP requests end")
        .expect("the SFTP session stayed open");
    assert_eq!(
        std::fs::read(server.home("alice").join("slow.bin")).unwrap(),
        bytes
    );
    drop(stdin);
}
