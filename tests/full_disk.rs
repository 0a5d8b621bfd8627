//! A full disk: the homes sit on an 8 MiB tmpfs, and uploads run into ENOSPC long before
//! any quota. Every front end says the disk is full, nothing corrupt is published, the
//! ledger stays equal to the disk, other users go on (downloads included), and the same
//! rsftp upload resumes once space is freed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rsftp::client::{Quiet, download, upload};
use rsftp::server::Limits;
use tempfile::TempDir;

use crate::scp_legacy::scp;
use crate::sshd::{sftp_rsftpd, text};
use crate::util::{TestServer, TestUser, data, md5_hex};

const MIB: usize = 1024 * 1024;

/// Set in the environment of this test binary when it runs again inside
/// `unshare -rm`, where an unprivileged user may mount a tmpfs.
const IN_NAMESPACE: &str = "RSFTP_TEST_IN_MOUNT_NAMESPACE";

/// A small tmpfs, unmounted (and its mount point removed, if made for it) when dropped.
pub(crate) struct Tmpfs {
    path: PathBuf,
    _made: Option<TempDir>,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` on the existing folder `on`, or on a new temporary one.
    fn mount(size: &str, on: Option<&Path>) -> Result<Tmpfs, String> {
        let (path, made) = match on {
            Some(on) => (on.to_owned(), None),
            None => {
                let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
                (dir.path().to_owned(), Some(dir))
            }
        };
        // A home is private to its user, as the server would have made it.
        let options = match on {
            Some(_) => format!("size={size},mode=0700"),
            None => format!("size={size}"),
        };
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(&path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                text(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { path, _made: made })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a test that panicked with the server up): detach it now, the
            // kernel frees it once the last handle closes.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// A tmpfs for `test` to run on: mounted here when we may (root), or else `None` once
/// `test` has run, and passed, again in a user and mount namespace of its own. Panics
/// when neither works: a full disk must not go untested without anyone noticing.
async fn tmpfs_for(test: &str, size: &str) -> Option<Tmpfs> {
    tmpfs_on(test, size, None).await
}

/// [`tmpfs_for`], mounted on the existing folder `on` if given, as a home that is its
/// own mount point is.
pub(crate) async fn tmpfs_on(test: &str, size: &str, on: Option<&Path>) -> Option<Tmpfs> {
    let why = match Tmpfs::mount(size, on) {
        Ok(tmpfs) => return Some(tmpfs),
        Err(why) => why,
    };
    if std::env::var_os(IN_NAMESPACE).is_some() {
        panic!("cannot mount a tmpfs even inside `unshare -rm`: {why}");
    }
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = tokio::process::Command::new("unshare");
    child
        .arg("-rm")
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_NAMESPACE, "1")
        .kill_on_drop(true);
    let status = tokio::time::timeout(Duration::from_secs(120), child.status())
        .await
        .unwrap_or_else(|_| panic!("{test} inside `unshare -rm` took over 120 s"));
    match status {
        Ok(status) if status.success() => None,
        Ok(status) => panic!(
            "cannot mount a tmpfs here ({why}), and inside `unshare -rm` {test} failed or \
             the namespace could not be made ({status}); see the output above"
        ),
        Err(err) => {
            panic!("cannot mount a tmpfs here ({why}), and cannot run `unshare -rm`: {err}")
        }
    }
}

/// Asserts that what a client reported says the disk is full.
fn says_disk_full(what: &str, message: &str) {
    assert!(
        message.to_lowercase().contains("no space left"),
        "{what} should say the disk is full, said: {message}"
    );
}

/// The quota ledger's usage of `user`, as the server reports it.
async fn reported(server: &TestServer, user: &str) -> u64 {
    let (_conn, mut c) = server.client(user).await;
    c.info().await.expect("info").used
}

async fn ledger_equals_disk(server: &TestServer, when: &str) {
    for user in ["alice", "bob"] {
        assert_eq!(
            reported(server, user).await,
            server.used_on_disk(user),
            "{user}'s ledger against the disk {when}"
        );
    }
}

fn staged(server: &TestServer, user: &str) -> Vec<PathBuf> {
    std::fs::read_dir(server.staging(user))
        .map(|dir| dir.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_uploads_clearly_and_they_resume_once_space_is_freed() {
    let test = "full_disk::a_full_disk_fails_uploads_clearly_and_they_resume_once_space_is_freed";
    let Some(tmpfs) = tmpfs_for(test, "8m").await else {
        return;
    };
    // Quotas far above the disk, so only the disk can say no.
    let mut server = TestServer::start_on(
        &[TestUser::new("alice", "1GiB"), TestUser::new("bob", "1GiB")],
        Limits::default(),
        Some(tmpfs.path().join("storage")),
    )
    .await;
    let local = tempfile::tempdir().unwrap();
    let l = local.path();
    let keep = data(MIB, 1);
    let filler = data(5 * MIB, 2);
    let big = data(3 * MIB, 3);
    let small = data(MIB, 4);
    for (name, bytes) in [
        ("keep", &keep),
        ("filler", &filler),
        ("big", &big),
        ("small", &small),
    ] {
        std::fs::write(l.join(name), bytes).unwrap();
    }

    // Bob keeps a file; alice fills most of the rest.
    let (bob_conn, mut bob) = server.client("bob").await;
    upload(&mut bob, &l.join("keep"), "keep", &Quiet)
        .await
        .expect("bob's upload fits");
    let (alice_conn, mut alice) = server.client("alice").await;
    upload(&mut alice, &l.join("filler"), "filler", &Quiet)
        .await
        .expect("the filler fits");

    // rsftp: 3 MiB into the 2 MiB left.
    let err = upload(&mut alice, &l.join("big"), "big", &Quiet)
        .await
        .expect_err("the disk is full");
    says_disk_full("rsftp put", &err.to_string());
    assert!(
        !server.home("alice").join("big").exists(),
        "nothing published under the final name"
    );
    let partials = staged(&server, "alice");
    assert_eq!(partials.len(), 1, "one partial kept: {partials:?}");
    let held = std::fs::read(&partials[0]).unwrap();
    assert!(
        !held.is_empty() && held.len() < big.len(),
        "the partial holds what fitted: {} bytes",
        held.len()
    );
    assert_eq!(held[..], big[..held.len()], "and exactly that");
    ledger_equals_disk(&server, "after the rsftp put").await;

    // Everyone else goes on: bob lists, and downloads his file intact.
    let names: Vec<String> = bob
        .ls(None)
        .await
        .expect("bob lists")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["keep"]);
    let back = l.join("keep.back");
    download(&mut bob, "keep", &back, false, &Quiet)
        .await
        .expect("bob downloads while the disk is full");
    assert_eq!(md5_hex(&std::fs::read(&back).unwrap()), md5_hex(&keep));

    // SFTP, OpenSSH's client: it fails, though SFTP v3 has no code for a full disk and
    // OpenSSH shows only the code ("Failure"), never the server's message.
    let output = sftp_rsftpd(
        &server,
        "alice",
        &format!("put {} sftp-put\n", l.join("small").display()),
    )
    .await;
    assert!(!output.status.success(), "sftp put should fail");
    assert!(text(&output.stderr).contains("Failure"), "{output:?}");
    // SFTP writes in place: what fitted is a prefix, and the message on the wire, as
    // our SFTP session shows it, says why.
    let kept = std::fs::read(server.home("alice").join("sftp-put")).unwrap();
    assert_eq!(kept[..], small[..kept.len()]);
    assert!(kept.len() < small.len());
    let conn = server.key_login("alice").await;
    let mut sftp = conn.open_sftp().await.expect("sftp session");
    let mut source = &small[..];
    let err = sftp
        .upload("sftp-put", 0, |buf| std::io::Read::read(&mut source, buf))
        .await
        .expect_err("the disk is full");
    says_disk_full("SFTP write", &err.to_string());
    sftp.remove("sftp-put")
        .await
        .expect("remove the SFTP prefix");
    ledger_equals_disk(&server, "after the SFTP put").await;

    // Legacy SCP: the sink's error line reaches the user, and nothing is published.
    let output = scp(
        &server,
        &[
            "-q",
            &l.join("small").display().to_string(),
            "127.0.0.1:scp-put",
        ],
    )
    .await;
    assert!(!output.status.success(), "scp -O should fail");
    says_disk_full("scp -O", &text(&output.stderr));
    assert!(!server.home("alice").join("scp-put").exists());
    assert_eq!(staged(&server, "alice").len(), 1, "only the rsftp partial");
    ledger_equals_disk(&server, "after the SCP put").await;

    // Space freed: the same upload resumes from the partial to an identical file.
    alice.rm("filler").await.expect("delete the filler");
    let report = upload(&mut alice, &l.join("big"), "big", &Quiet)
        .await
        .expect("the upload resumes once there is room");
    assert_eq!(report.resumed_from, held.len() as u64, "{report:?}");
    assert!(!report.restarted);
    let published = std::fs::read(server.home("alice").join("big")).unwrap();
    assert_eq!(md5_hex(&published), md5_hex(&big));
    assert!(staged(&server, "alice").is_empty(), "no partial left");
    ledger_equals_disk(&server, "after the resumed put").await;

    drop((alice, bob, sftp, conn, alice_conn, bob_conn));
    server.stop().await;
    drop(tmpfs);
}
