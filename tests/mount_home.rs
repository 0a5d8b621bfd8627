//! A home that is its own mount point (a tmpfs on `storage/alice`): its partial uploads
//! wait in `.rsftp-staging` inside it, so uploads work and resume there, and no path
//! reaches that folder, by its name or through a planted link, over rsftp or SFTP.

use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use rsftp::client::{ClientError, PutStart, Quiet, download, upload};
use rsftp::server::Limits;

use crate::full_disk::tmpfs_on;
use crate::util::{TestServer, TestUser, data, md5_hex};

const MIB: usize = 1024 * 1024;
const STAGING: &str = ".rsftp-staging";

/// The partial uploads in the staging folder inside `home`, once they hold `at_least`
/// bytes together (bounded in time).
async fn partials(home: &std::path::Path, at_least: u64) -> Vec<(String, u64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found: Vec<(String, u64)> = std::fs::read_dir(home.join(STAGING))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| {
                        let len = e.metadata().ok()?.len();
                        Some((e.file_name().into_string().ok()?, len))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if found.iter().map(|(_, len)| len).sum::<u64>() >= at_least || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that `what` was refused as the staging folder.
fn reserved<T: std::fmt::Debug>(what: &str, result: Result<T, ClientError>) {
    match result {
        Err(err) => assert!(
            err.to_string()
                .contains("reserved for the server's partial uploads"),
            "{what}: refused, but as {err}"
        ),
        Ok(ok) => panic!("{what}: not refused: {ok:?}"),
    }
}

/// Sends the first `len` bytes of `bytes` as a put of `path`, then drops the connection.
async fn cut_put(server: &TestServer, path: &str, bytes: &[u8], len: usize) {
    let local = tempfile::tempdir().unwrap();
    let part = local.path().join("part");
    std::fs::write(&part, &bytes[..len]).unwrap();
    let (conn, mut c) = server.client("alice").await;
    let start = c.begin_put(path, bytes.len() as u64, None).await.unwrap();
    assert!(
        matches!(start, PutStart::Have { offset: 0, .. }),
        "{start:?}"
    );
    let file = std::fs::File::open(&part).unwrap();
    c.send_from(0, file, len as u64, Md5::new(), |_| {})
        .await
        .unwrap();
    partials(&server.home("alice"), len as u64).await;
    drop(c);
    drop(conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_on_its_own_mount_takes_uploads_and_hides_its_staging_folder() {
    let test = "mount_home::a_home_on_its_own_mount_takes_uploads_and_hides_its_staging_folder";
    let storage = tempfile::tempdir().unwrap();
    let home = storage.path().join("alice");
    std::fs::create_dir(&home).unwrap();
    let Some(tmpfs) = tmpfs_on(test, "32m", Some(&home)).await else {
        return;
    };
    let mut server = TestServer::start_on(
        &[TestUser::new("alice", "1GiB")],
        Limits::default(),
        Some(storage.path().to_owned()),
    )
    .await;
    let local = tempfile::tempdir().unwrap();
    let l = local.path();
    let bytes = data(4 * MIB, 11);
    std::fs::write(l.join("big"), &bytes).unwrap();

    // Cut off halfway: the partial waits inside the home, which lists nothing.
    cut_put(&server, "big", &bytes, 2 * MIB).await;
    let held = partials(&home, 2 * MIB as u64).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].1, 2 * MIB as u64);
    assert!(!home.join("big").exists(), "nothing published yet");
    assert!(
        !server.staging("alice").join(&held[0].0).exists(),
        "not in the staging area outside"
    );
    let (_conn, mut c) = server.client("alice").await;
    assert!(
        c.ls(None).await.unwrap().is_empty(),
        "the staging folder is not listed"
    );
    assert_eq!(
        c.info().await.unwrap().used,
        2 * MIB as u64,
        "the partial counts once"
    );

    // Resumed, and published by a rename inside the home's filesystem.
    let report = upload(&mut c, &l.join("big"), "big", &Quiet).await.unwrap();
    assert_eq!(report.resumed_from, 2 * MIB as u64, "{report:?}");
    assert!(!report.restarted);
    assert_eq!(
        md5_hex(&std::fs::read(home.join("big")).unwrap()),
        md5_hex(&bytes)
    );
    assert!(partials(&home, 0).await.is_empty(), "no partial left");
    download(&mut c, "big", &l.join("back"), false, &Quiet)
        .await
        .unwrap();
    assert_eq!(
        md5_hex(&std::fs::read(l.join("back")).unwrap()),
        md5_hex(&bytes)
    );

    // Another cut put, so the folder holds a partial; and a link an administrator
    // planted to the folder.
    drop((c, _conn));
    cut_put(&server, "second", &bytes, MIB).await;
    let partial = partials(&home, MIB as u64).await.remove(0).0;
    std::os::unix::fs::symlink(STAGING, home.join("s")).unwrap();

    let (_conn, mut c) = server.client("alice").await;
    for name in [STAGING, "s", "./s/../.rsftp-staging"] {
        let inner = format!("{name}/{partial}");
        reserved("stat", c.stat(name).await);
        reserved("ls", c.ls(Some(name)).await);
        reserved("rm", c.rm(name).await);
        reserved("rmdir", c.rmdir(name).await);
        reserved("mv", c.mv(name, "moved").await);
        reserved("mv onto", c.mv("big", name).await);
        reserved("cd", c.cd(name).await);
        reserved("stat in", c.stat(&inner).await);
        reserved("rm in", c.rm(&inner).await);
        reserved("mv out", c.mv(&inner, "stolen").await);
        reserved(
            "get",
            download(&mut c, &inner, &l.join("stolen"), false, &Quiet).await,
        );
        reserved(
            "put",
            upload(&mut c, &l.join("big"), &format!("{name}/x"), &Quiet).await,
        );
        reserved("mkdir in", c.mkdir(&format!("{name}/d")).await);
    }
    let listed: Vec<String> = c
        .ls(Some("/"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(listed, ["big", "s"], "the folder itself is never listed");

    // SFTP goes through the same resolution.
    let conn = server.key_login("alice").await;
    let mut sftp = conn.open_sftp().await.expect("sftp session");
    for name in [STAGING, "s"] {
        let inner = format!("{name}/{partial}");
        assert!(sftp.stat(name).await.is_err(), "sftp stat {name}");
        assert!(sftp.list(name).await.is_err(), "sftp ls {name}");
        assert!(sftp.rmdir(name).await.is_err(), "sftp rmdir {name}");
        assert!(sftp.rename(name, "moved").await.is_err(), "sftp mv {name}");
        assert!(sftp.remove(&inner).await.is_err(), "sftp rm {inner}");
        assert!(
            sftp.download(&inner, 0, |_| Ok(())).await.is_err(),
            "sftp get {inner}"
        );
        let mut source = &b"overwrite"[..];
        assert!(
            sftp.upload(&inner, 0, |buf| std::io::Read::read(&mut source, buf))
                .await
                .is_err(),
            "sftp put {inner}"
        );
    }
    let names: Vec<Vec<u8>> = sftp
        .list("/")
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.filename)
        .collect();
    assert!(
        !names.iter().any(|n| n == STAGING.as_bytes()),
        "sftp lists the folder: {names:?}"
    );

    // All of it left the partial as it was, and a restart counts it once.
    assert_eq!(partials(&home, 0).await, [(partial.clone(), MIB as u64)]);
    drop((c, _conn, sftp, conn));
    server.stop().await;
    server.launch(Limits::default()).await;
    let (_conn, mut c) = server.client("alice").await;
    assert_eq!(
        c.info().await.unwrap().used,
        (5 * MIB + 4096) as u64,
        "big, the partial, and the link, each once"
    );
    drop((c, _conn));
    server.stop().await;
    drop(tmpfs);
}
