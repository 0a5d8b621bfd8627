//! The `sftp` subsystem with OpenSSH's own `sftp`, side by side with OpenSSH's server.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rsftp::auth::Secret;
use rsftp::server::Limits;

use crate::sshd::{Sshd, assert_ok, sftp_batch, sftp_rsftpd, text};
use crate::util::{PASSWORD, TestServer, TestUser, data, md5_hex};

/// What legitimately differs between two servers' `sftp` output: the absolute path of
/// the start folder (OpenSSH shows its real path, rsftpd shows `/`), and in `ls -l`
/// lines the owner, the group and the date. Mode, link count, size and name are kept.
fn normalise(output: &str, root: &str) -> String {
    let output = output.replace(&format!("{root}/"), "/").replace(root, "/");
    output
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let is_entry = fields.len() >= 9
                && fields[0].len() == 10
                && fields[0].starts_with(['-', 'd', 'l', 'c', 'b', 'p', 's']);
            if is_entry {
                format!(
                    "{} {} {} {}",
                    fields[0],
                    fields[1],
                    fields[4],
                    fields[8..].join(" ")
                )
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_get_round_trip() {
    let server = TestServer::start(&[TestUser::new("alice", "100MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let big = data(3 * 1024 * 1024 + 123, 1);
    std::fs::write(local.path().join("big.bin"), &big).unwrap();
    std::fs::write(local.path().join("empty"), b"").unwrap();
    let l = local.path().display();
    let output = sftp_rsftpd(
        &server,
        "alice",
        &format!(
            "put {l}/big.bin\nput {l}/empty\nget big.bin {l}/back.bin\nget empty {l}/back.empty\n"
        ),
    )
    .await;
    assert_ok(&output, "sftp put/get");
    assert_eq!(
        std::fs::read(server.home("alice").join("big.bin")).unwrap(),
        big
    );
    assert_eq!(std::fs::read(local.path().join("back.bin")).unwrap(), big);
    assert_eq!(std::fs::read(local.path().join("back.empty")).unwrap(), b"");
    // The data went in place, not through the staging area. A file counts its size
    // rounded up to 4 KiB; the empty one nothing.
    let used = {
        let (_conn, mut c) = server.client("alice").await;
        c.info().await.unwrap().used
    };
    assert_eq!(used, big.len().div_ceil(4096) as u64 * 4096);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_commands_give_the_same_results_as_openssh() {
    let server = TestServer::start(&[TestUser::new("alice", "100MiB")]).await;
    let sshd = Sshd::start();
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("a.txt"), b"hello\n").unwrap();
    std::fs::write(local.path().join("b.bin"), data(70_000, 2)).unwrap();
    let l = local.path().display();
    let batch = format!(
        "pwd\nmkdir d\nmkdir d/e\nput {l}/a.txt a.txt\nput {l}/b.bin d/b.bin\n\
         chmod 640 a.txt\nls -l\nls -l d\nls -l a.txt\nls\n\
         rename a.txt d/a2.txt\nls -l d\n\
         -rename d/b.bin d/e\n-rmdir d\n-rm nosuch\n-mkdir d\n-ls nosuch\n-cd nosuch\n\
         -get nosuch {l}/nothing\n\
         cd d\npwd\nget a2.txt {l}/back-REPLACE.txt\ncd ..\n\
         rm d/a2.txt\nrm d/b.bin\nrmdir d/e\nrmdir d\nls -l\n"
    );
    let ours = sftp_rsftpd(&server, "alice", &batch.replace("REPLACE", "ours")).await;
    let theirs = sftp_batch(
        &sshd.openssh_args("-P"),
        &batch.replace("REPLACE", "theirs"),
    )
    .await;
    let root = sshd.root().display().to_string();
    assert_ok(&ours, "sftp -> rsftpd");
    assert_ok(&theirs, "sftp -> sshd");
    let (ours_out, theirs_out) = (text(&ours.stdout), text(&theirs.stdout));
    assert_eq!(
        normalise(&ours_out, &root),
        normalise(&theirs_out.replace("theirs", "ours"), &root),
        "stdout differs:\nours:\n{ours_out}\ntheirs:\n{theirs_out}"
    );
    let (ours_err, theirs_err) = (text(&ours.stderr), text(&theirs.stderr));
    assert_eq!(
        normalise(&ours_err, &root),
        normalise(&theirs_err, &root),
        "stderr differs:\nours:\n{ours_err}\ntheirs:\n{theirs_err}"
    );
    assert_eq!(
        std::fs::read(local.path().join("back-ours.txt")).unwrap(),
        std::fs::read(local.path().join("back-theirs.txt")).unwrap()
    );
    // Nothing left behind on either side.
    assert_eq!(std::fs::read_dir(server.home("alice")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(sshd.root()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn df_shows_the_quota_in_the_same_layout_as_openssh() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let sshd = Sshd::start();
    std::fs::write(server.home("alice").join("f"), data(2 * 1024 * 1024, 1)).unwrap();
    // A fresh start computes usage from disk.
    let mut server = server;
    server.stop().await;
    server.launch(Limits::default()).await;
    let ours = sftp_rsftpd(&server, "alice", "df -h\ndf\n").await;
    let theirs = sftp_batch(&sshd.openssh_args("-P"), "df -h\ndf\n").await;
    assert_ok(&ours, "df -> rsftpd");
    assert_ok(&theirs, "df -> sshd");
    let (ours, theirs) = (text(&ours.stdout), text(&theirs.stdout));
    let lines: Vec<&str> = ours.lines().collect();
    let their_lines: Vec<&str> = theirs.lines().collect();
    assert_eq!(lines.len(), their_lines.len(), "{ours}\n{theirs}");
    // The same headings; the numbers are the quota's, not the disk's.
    assert_eq!(lines[1], their_lines[1]);
    assert_eq!(lines[4], their_lines[4]);
    let sizes: Vec<&str> = lines[2].split_whitespace().collect();
    // Size, used, available, and free counting what root alone may use: none here.
    assert_eq!(sizes[..4], ["10.0MB", "2.0MB", "8.0MB", "8.0MB"], "{ours}");
    assert_eq!(sizes[4], "20%");
    let kib: Vec<&str> = lines[5].split_whitespace().collect();
    assert_eq!(kib[..3], ["10240", "2048", "8192"], "{ours}");
}

/// Starts `sftp -b` in the background, and kills it once `grown` says the copy has
/// started but not finished.
async fn run_and_kill_midway(
    args: Vec<String>,
    batch: String,
    grown: impl Fn() -> u64,
    total: u64,
) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), batch).unwrap();
    let mut all = args;
    all.extend([
        "-b".into(),
        file.path().display().to_string(),
        "127.0.0.1".into(),
    ]);
    let mut child = Command::new("sftp")
        .args(&all)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run sftp");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let size = grown();
        if size >= 4 * 1024 * 1024 {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("sftp ended ({status}) before the copy could be cut; size {size}");
        }
        assert!(Instant::now() < deadline, "the copy never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let cut = grown();
    assert!(
        cut < total,
        "the copy finished before it was cut ({cut} bytes)"
    );
}

/// Waits until `size` stops changing (the server finishing requests it already had).
async fn settle(size: impl Fn() -> u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = size();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = size();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reput_and_reget_finish_transfers_cut_off_by_killing_the_client() {
    let server = TestServer::start(&[TestUser::new("alice", "1GiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let total = 192 * 1024 * 1024;
    let big = data(total, 7);
    let src = local.path().join("big.bin");
    std::fs::write(&src, &big).unwrap();
    let want = md5_hex(&big);
    drop(big);
    let remote = server.home("alice").join("big.bin");
    let args = server.openssh_args("alice", "-P");

    // Upload, killed midway; then `reput` sends the rest.
    let remote_len = || file_len(&remote);
    run_and_kill_midway(
        args.clone(),
        format!("put {} big.bin\n", src.display()),
        remote_len,
        total as u64,
    )
    .await;
    let held = settle(remote_len).await;
    assert!(held > 0 && held < total as u64, "{held}");
    let output = sftp_rsftpd(
        &server,
        "alice",
        &format!("reput {} big.bin\n", src.display()),
    )
    .await;
    assert_ok(&output, "reput");
    assert_eq!(md5_hex(&std::fs::read(&remote).unwrap()), want);

    // Download, killed midway; then `reget` fetches the rest.
    let dest = local.path().join("back.bin");
    let local_len = || file_len(&dest);
    run_and_kill_midway(
        args,
        format!("get big.bin {}\n", dest.display()),
        local_len,
        total as u64,
    )
    .await;
    let output = sftp_rsftpd(
        &server,
        "alice",
        &format!("reget big.bin {}\n", dest.display()),
    )
    .await;
    assert_ok(&output, "reget");
    assert_eq!(md5_hex(&std::fs::read(&dest).unwrap()), want);

    // `put -a` appends to what is there, like reput.
    std::fs::write(local.path().join("part"), &data(1000, 9)[..400]).unwrap();
    let whole = local.path().join("whole");
    std::fs::write(&whole, data(1000, 9)).unwrap();
    let output = sftp_rsftpd(
        &server,
        "alice",
        &format!(
            "put {} p\nput -a {} p\n",
            local.path().join("part").display(),
            whole.display()
        ),
    )
    .await;
    assert_ok(&output, "put -a");
    assert_eq!(
        std::fs::read(server.home("alice").join("p")).unwrap(),
        data(1000, 9)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_quota_stops_partway_and_keeps_what_fit() {
    let server = TestServer::start(&[TestUser::new("alice", "1MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    let big = data(3 * 1024 * 1024, 3);
    std::fs::write(local.path().join("big"), &big).unwrap();
    let output = sftp_rsftpd(
        &server,
        "alice",
        &format!("put {}/big big\n", local.path().display()),
    )
    .await;
    assert!(!output.status.success(), "the put should fail");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("Failure"), "{stderr}");
    // SFTP writes in place: the bytes that fitted stay, a prefix of the file.
    let kept = std::fs::read(server.home("alice").join("big")).unwrap();
    assert!(
        !kept.is_empty() && kept.len() <= 1024 * 1024,
        "{}",
        kept.len()
    );
    assert_eq!(kept[..], big[..kept.len()]);
    let (_conn, mut c) = server.client("alice").await;
    let info = c.info().await.unwrap();
    assert_eq!(info.used, kept.len().div_ceil(4096) as u64 * 4096);
    assert!(info.used <= info.limit);
    // Deleting gives the space back.
    let output = sftp_rsftpd(&server, "alice", "rm big\n").await;
    assert_ok(&output, "rm");
    assert_eq!(c.info().await.unwrap().used, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_uploading_at_once_cannot_pass_the_quota_together() {
    let server = TestServer::start(&[TestUser::new("alice", "1MiB")]).await;
    let local = tempfile::tempdir().unwrap();
    for name in ["a", "b"] {
        std::fs::write(local.path().join(name), data(700 * 1024, 4)).unwrap();
    }
    let l = local.path().display();
    let (put_a, put_b) = (format!("put {l}/a a\n"), format!("put {l}/b b\n"));
    let (one, two) = tokio::join!(
        sftp_rsftpd(&server, "alice", &put_a),
        sftp_rsftpd(&server, "alice", &put_b)
    );
    assert!(
        !(one.status.success() && two.status.success()),
        "both uploads succeeded"
    );
    // Each file counts its size rounded up to 4 KiB.
    let on_disk: u64 = ["a", "b"]
        .iter()
        .map(|n| file_len(&server.home("alice").join(n)).div_ceil(4096) * 4096)
        .sum();
    assert!(on_disk <= 1024 * 1024, "{on_disk} bytes on disk");
    let (_conn, mut c) = server.client("alice").await;
    let info = c.info().await.unwrap();
    assert_eq!(info.used, on_disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_counts_once_whichever_subsystems_it_opens() {
    let server = TestServer::start(&[TestUser {
        name: "alice",
        quota: "10MiB",
        max_sessions: Some(1),
    }])
    .await;
    let mut conn = server.connection("alice").await;
    assert!(conn.login_password(&Secret::new(PASSWORD)).await.unwrap());
    let mut rsftp = conn.open_rsftp().await.expect("rsftp on the connection");
    let sftp = conn
        .open_subsystem("sftp")
        .await
        .expect("sftp on the same connection");
    let mut raw = crate::sftp_raw::RawSftp::from_stream(sftp);
    raw.init().await;
    assert_eq!(raw.realpath(1, "x/..").await, "/");
    assert_eq!(rsftp.pwd().await.unwrap(), "/");
    // A second connection is a second session: over the limit.
    let output = sftp_rsftpd(&server, "alice", "pwd\n").await;
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("too many sessions for alice (1)"),
        "{}",
        text(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_links_cannot_be_made_and_partials_are_out_of_reach() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    std::fs::write(server.home("alice").join("f"), b"x").unwrap();
    std::fs::write(server.staging("alice").join("p"), b"partial").unwrap();
    let output = sftp_rsftpd(
        &server,
        "alice",
        "-ln -s f link\n-ln f hard\nls -la\n-ls /.partials\n-get /.partials/alice/p /dev/null\n",
    )
    .await;
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    // A symbolic link to a file inside is fine (see tests/symlinks.rs); a hard link is not.
    assert_eq!(
        std::fs::read_link(server.home("alice").join("link")).unwrap(),
        std::path::PathBuf::from("f")
    );
    assert!(!server.home("alice").join("hard").exists());
    // What the server answered, without the commands that sftp echoes.
    let answers: Vec<&str> = stdout.lines().filter(|l| !l.starts_with("sftp>")).collect();
    assert!(answers.iter().all(|l| !l.contains("partial")), "{stdout}");
    assert!(stdout.contains(" f\n"), "{stdout}");
    assert!(stderr.contains("\"/.partials\" not found"), "{stderr}");
    assert!(
        stderr.contains("\"/.partials/alice/p\" not found"),
        "{stderr}"
    );
}
