//! Symbolic links made over SFTP (OpenSSH `sftp`'s `ln -s` and `symlink`): allowed
//! when they lead somewhere inside the home, stored relative, and harmless even when
//! the tree around them moves.

use std::path::{Path, PathBuf};

use crate::sshd::{assert_ok, sftp_rsftpd, text};
use crate::util::{TestServer, TestUser};

fn link_on_disk(home: &Path, link: &str) -> PathBuf {
    std::fs::read_link(home.join(link)).unwrap_or_else(|err| panic!("{link}: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_that_stay_inside_are_made_relative_and_work() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let home = server.home("alice");
    std::fs::create_dir(home.join("docs")).unwrap();
    std::fs::write(home.join("docs/a.txt"), b"the text").unwrap();
    let local = tempfile::tempdir().unwrap();
    let batch = format!(
        "ln -s /docs/a.txt abs\n\
         ln -s docs/a.txt rel\n\
         mkdir d\n\
         symlink ../docs/a.txt d/up\n\
         ln -s /docs d/folder\n\
         get abs {0}/abs\n\
         get d/up {0}/up\n\
         get d/folder/a.txt {0}/through\n\
         ls -l\n",
        local.path().display()
    );
    let out = sftp_rsftpd(&server, "alice", &batch).await;
    assert_ok(&out, "sftp ln -s");
    assert_eq!(link_on_disk(&home, "abs"), PathBuf::from("docs/a.txt"));
    assert_eq!(link_on_disk(&home, "rel"), PathBuf::from("docs/a.txt"));
    assert_eq!(link_on_disk(&home, "d/up"), PathBuf::from("../docs/a.txt"));
    assert_eq!(link_on_disk(&home, "d/folder"), PathBuf::from("../docs"));
    for name in ["abs", "up", "through"] {
        assert_eq!(
            std::fs::read(local.path().join(name)).unwrap(),
            b"the text",
            "{name}"
        );
    }
    let listing = text(&out.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with('l') && l.ends_with("abs")),
        "{listing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_that_lead_out_or_clash_are_refused() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let home = server.home("alice");
    std::fs::create_dir(home.join("docs")).unwrap();
    for (batch, name) in [
        ("ln -s ../../etc/passwd esc\n", "esc"),
        ("ln -s ../x docs/../esc2\n", "esc2"),
        ("ln -s docs/../../x esc3\n", "esc3"),
        ("ln -s x docs\n", "docs"),
        ("ln -s /docs none/l\n", "none"),
    ] {
        let out = sftp_rsftpd(&server, "alice", batch).await;
        assert!(!out.status.success(), "{batch} was accepted");
        if name != "docs" {
            assert!(
                std::fs::symlink_metadata(home.join(name)).is_err(),
                "{batch} left {name}"
            );
        }
    }
    assert!(home.join("docs").is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_moved_so_that_it_would_lead_out_cannot_be_followed() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let home = server.home("alice");
    // Beside the home, where a link two levels up from /b would land.
    std::fs::write(home.join("../x"), b"not alice's").unwrap();
    std::fs::write(home.join("x"), b"alice's").unwrap();
    let local = tempfile::tempdir().unwrap();
    let made = sftp_rsftpd(
        &server,
        "alice",
        "mkdir a\nmkdir a/b\nln -s ../../x a/b/l\nrename a/b b\n",
    )
    .await;
    assert_ok(&made, "make the link, then move its folder up");
    assert_eq!(link_on_disk(&home, "b/l"), PathBuf::from("../../x"));
    let got = sftp_rsftpd(
        &server,
        "alice",
        &format!("get b/l {}/l\n", local.path().display()),
    )
    .await;
    assert!(!got.status.success(), "a link leading out was followed");
    assert!(!local.path().join("l").exists());
}
