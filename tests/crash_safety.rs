//! Crash safety (issue 11, item 6): a real `rsftpd` killed with SIGKILL in the middle of
//! ten concurrent uploads and downloads, over rsftp and SFTP, then started again on the
//! same folders. No name holds a partial or corrupt staged upload, every rsftp upload
//! resumes from the bytes the server held to an MD5-identical file, SFTP uploads (in
//! place) complete when run again, and the ledger equals a fresh scan of the disk.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use rsftp::admin::{Admin, Usage, UsersToml};
use rsftp::client::{Connection, PutStart, Quiet, partial_path};
use rsftp::storage::stream::ChunkSink;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::memory::Daemon;
use crate::util::{TestUser, data, md5_hex};

const MIB: usize = 1 << 20;
/// Everything after the kill, and the run up to it, is bounded by this.
const LIMIT: Duration = Duration::from_secs(15);

/// A file to move: its name (also its path at the top of the home), and its contents.
struct Job {
    name: &'static str,
    content: Vec<u8>,
}

impl Job {
    fn new(name: &'static str, mib: usize, seed: u64) -> Job {
        Job {
            name,
            content: data(mib * MIB + 1234, seed),
        }
    }

    fn remote(&self) -> String {
        format!("/{}", self.name)
    }

    fn md5(&self) -> String {
        md5_hex(&self.content)
    }

    /// The partial an rsftp upload of this file is staged in, as OPERATIONS.md names it.
    fn partial(&self, daemon: &Daemon) -> PathBuf {
        let name = format!(
            "{}-{}",
            md5_hex(self.remote().as_bytes()),
            self.content.len()
        );
        daemon.server.staging("alice").join(name)
    }
}

fn len_of(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn md5_of(path: &Path) -> Option<String> {
    std::fs::read(path).ok().map(|bytes| md5_hex(&bytes))
}

/// Writes received bytes to a download's `.part` file, slowly, so that the download is
/// still running when the server is killed.
struct SlowPart(std::fs::File);

impl ChunkSink for SlowPart {
    type Error = std::io::Error;
    fn write_chunk(&mut self, data: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.0.write_all(data)?;
        self.0.flush()?;
        std::thread::sleep(Duration::from_millis(60));
        Ok(())
    }
}

/// OpenSSH's `sftp -b` with one command, at `limit` Kbit/s when given.
fn openssh_sftp(daemon: &Daemon, dir: &Path, command: &str, limit: Option<u32>) -> Child {
    let batch = dir.join(format!("batch-{}", md5_hex(command.as_bytes())));
    std::fs::write(&batch, format!("{command}\n")).unwrap();
    let mut cmd = Command::new("sftp");
    cmd.args(daemon.server.openssh_args("alice", "-P"));
    if let Some(limit) = limit {
        cmd.args(["-l", &limit.to_string()]);
    }
    cmd.arg("-b")
        .arg(&batch)
        .arg("127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().expect("run sftp")
}

/// The usage the running server reports, and the one a fresh scan of the disk finds
/// (by `rsftpd user show`'s code, and by the 4 KiB rule written out in the tests).
async fn ledger_and_scans(daemon: &Daemon) -> (u64, u64, u64) {
    let (_conn, mut client) = login_rsftp(daemon).await;
    let reported = client.info().await.unwrap().used;
    let root = daemon.server.root();
    let admin = Admin::new(
        UsersToml::new(&root.join("users.toml")),
        &root.join("storage"),
    );
    let Usage::Measured { used: scanned, .. } = admin.show("alice").unwrap().usage else {
        panic!("alice's home cannot be measured");
    };
    (reported, scanned, daemon.server.used_on_disk("alice"))
}

async fn login_rsftp(daemon: &Daemon) -> (Connection, crate::util::Client) {
    let conn = daemon.login("alice").await;
    let client = conn.open_rsftp().await.unwrap();
    (conn, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_transfers_loses_nothing_and_everything_resumes() {
    let mut daemon = Daemon::start(&[TestUser::new("alice", "1GiB")], &[]).await;
    let local = daemon.server.root().join("local");
    let home = daemon.server.home("alice");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::create_dir_all(home.join("sub")).unwrap();

    // rsftp uploads that send part of their file and then wait: cut off by the kill.
    let held = [
        Job::new("held-1", 4, 1),
        Job::new("held-2", 3, 2),
        Job::new("sub/held-3", 3, 3),
    ];
    // An rsftp upload at full speed over an older file: published before the kill or not.
    let replace = Job::new("replaced", 4, 4);
    let old = data(MIB, 40);
    std::fs::write(home.join(replace.name), &old).unwrap();
    // SFTP uploads, at 8 Mbit/s: in place, cut off by the kill.
    let sftp_up = [Job::new("sftp-up-1", 4, 5), Job::new("sftp-up-2", 4, 6)];
    // Downloads of files already on the server, over rsftp (slowly) and SFTP (8 Mbit/s).
    let rsftp_down = [Job::new("down-1", 4, 7), Job::new("down-2", 3, 8)];
    let sftp_down = [
        Job::new("sftp-down-1", 4, 9),
        Job::new("sftp-down-2", 4, 10),
    ];
    for job in held.iter().chain([&replace]).chain(&sftp_up) {
        std::fs::write(local.join(job.name.replace('/', "_")), &job.content).unwrap();
    }
    for job in rsftp_down.iter().chain(&sftp_down) {
        std::fs::write(home.join(job.name), &job.content).unwrap();
    }
    let local_of = |job: &Job| local.join(job.name.replace('/', "_"));

    // Ten transfers at once, each on its own connection.
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    for job in &held {
        let (conn, mut client) = login_rsftp(&daemon).await;
        let (remote, size) = (job.remote(), job.content.len() as u64);
        let file = std::fs::File::open(local_of(job)).unwrap();
        tasks.push(tokio::spawn(async move {
            let start = client.begin_put(&remote, size, None).await.unwrap();
            assert!(matches!(start, PutStart::Have { offset: 0, .. }));
            client
                .send_from(0, file, size / 2, Md5::new(), |_| {})
                .await
                .unwrap();
            // The rest never comes: the connection is held until the server dies.
            tokio::time::sleep(LIMIT).await;
            drop(conn);
        }));
    }
    let full_speed = {
        let (conn, mut client) = login_rsftp(&daemon).await;
        let (path, remote) = (local_of(&replace), replace.remote());
        // On a thread of its own: the upload's future is not `Send`.
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let _ = runtime.block_on(rsftp::client::upload(&mut client, &path, &remote, &Quiet));
            drop(conn);
        })
    };
    for job in &rsftp_down {
        let (conn, mut client) = login_rsftp(&daemon).await;
        let (remote, part) = (job.remote(), partial_path(&local.join(job.name)));
        tasks.push(tokio::spawn(async move {
            let (n, _) = client.begin_get(&remote, 0, None).await.unwrap();
            let sink = SlowPart(std::fs::File::create(part).unwrap());
            let _ = client.receive_into(n, sink, |_| {}).await;
            drop(conn);
        }));
    }
    let mut sftp_children: Vec<Child> = Vec::new();
    for job in &sftp_up {
        let command = format!("put {} {}", local_of(job).display(), job.remote());
        sftp_children.push(openssh_sftp(&daemon, &local, &command, Some(8000)));
    }
    for job in &sftp_down {
        let command = format!("get {} {}", job.remote(), local.join(job.name).display());
        sftp_children.push(openssh_sftp(&daemon, &local, &command, Some(8000)));
    }

    // Once every upload has bytes on the server and every download some locally: kill.
    let deadline = Instant::now() + LIMIT;
    loop {
        let uploads_landed = held.iter().all(|j| len_of(&j.partial(&daemon)) > 0)
            && sftp_up.iter().all(|j| len_of(&home.join(j.name)) > 0);
        let downloads_landed = rsftp_down
            .iter()
            .all(|j| len_of(&partial_path(&local.join(j.name))) > 0)
            && sftp_down.iter().all(|j| len_of(&local.join(j.name)) > 0);
        if uploads_landed && downloads_landed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the transfers did not all start in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    daemon.kill();
    for task in tasks {
        task.abort();
    }
    let ended = tokio::time::timeout(LIMIT, full_speed).await;
    assert!(
        ended.is_ok(),
        "the upload did not end after the server died"
    );
    for mut child in sftp_children {
        let status = tokio::time::timeout(LIMIT, child.wait()).await;
        assert!(status.is_ok(), "sftp did not end after the server died");
    }

    // On disk, as the crash left it: no staged upload is partial under its name, the
    // files being downloaded are untouched, SFTP uploads hold a prefix of their file.
    for job in &held {
        assert!(!home.join(job.name).exists(), "{} published", job.name);
    }
    let replaced_now = md5_of(&home.join(replace.name));
    assert!(
        replaced_now == Some(md5_hex(&old)) || replaced_now == Some(replace.md5()),
        "{} is neither the old file nor the new one",
        replace.name
    );
    for job in rsftp_down.iter().chain(&sftp_down) {
        assert_eq!(
            md5_of(&home.join(job.name)),
            Some(job.md5()),
            "{}",
            job.name
        );
    }
    for job in &sftp_up {
        let now = std::fs::read(home.join(job.name)).unwrap();
        assert!(
            job.content.starts_with(&now),
            "{} is not a prefix of its file",
            job.name
        );
    }
    let held_bytes: Vec<u64> = held.iter().map(|j| len_of(&j.partial(&daemon))).collect();
    assert!(held_bytes.iter().all(|&n| n > 0), "{held_bytes:?}");

    daemon.restart().await;
    let (reported, scanned, rule) = ledger_and_scans(&daemon).await;
    assert_eq!((reported, scanned), (rule, rule), "after the restart");

    // Every rsftp upload resumes from what the server held, to the same MD5.
    for (job, &held) in held.iter().zip(&held_bytes) {
        let (_conn, mut client) = login_rsftp(&daemon).await;
        let report = rsftp::client::upload(&mut client, &local_of(job), &job.remote(), &Quiet)
            .await
            .unwrap();
        assert_eq!(
            (report.resumed_from, report.restarted),
            (held, false),
            "{}",
            job.name
        );
        assert_eq!(report.md5.to_string(), job.md5());
        assert_eq!(
            md5_of(&home.join(job.name)),
            Some(job.md5()),
            "{}",
            job.name
        );
    }
    {
        let (_conn, mut client) = login_rsftp(&daemon).await;
        let report =
            rsftp::client::upload(&mut client, &local_of(&replace), &replace.remote(), &Quiet)
                .await
                .unwrap();
        assert!(!report.restarted);
        assert_eq!(md5_of(&home.join(replace.name)), Some(replace.md5()));
    }
    // rsftp downloads resume from their `.part`; SFTP transfers run again to the end.
    for job in &rsftp_down {
        let dest = local.join(job.name);
        let had = len_of(&partial_path(&dest));
        let (_conn, mut client) = login_rsftp(&daemon).await;
        let report = rsftp::client::download(&mut client, &job.remote(), &dest, false, &Quiet)
            .await
            .unwrap();
        assert_eq!(report.resumed_from, had, "{}", job.name);
        assert_eq!(md5_of(&dest), Some(job.md5()), "{}", job.name);
    }
    let sftp_runs = sftp_up
        .iter()
        .map(|job| {
            let put = format!("put {} {}", local_of(job).display(), job.remote());
            (job, put, home.join(job.name))
        })
        .chain(sftp_down.iter().map(|job| {
            let get = format!("get {} {}", job.remote(), local.join(job.name).display());
            (job, get, local.join(job.name))
        }));
    for (job, command, copy) in sftp_runs {
        let out = openssh_sftp(&daemon, &local, &command, None)
            .wait_with_output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(md5_of(&copy), Some(job.md5()), "{}", job.name);
    }

    // Nothing is left staged, and the ledger still equals the disk.
    assert_eq!(
        std::fs::read_dir(daemon.server.staging("alice"))
            .unwrap()
            .count(),
        0
    );
    let (reported, scanned, rule) = ledger_and_scans(&daemon).await;
    assert_eq!((reported, scanned), (rule, rule), "after the resumes");
}
