//! The client's SFTP session, for servers without the rsftp subsystem: against a
//! private OpenSSH sshd and against rsftpd, the same calls, the same results.

use rsftp::client::{ClientError, Connection, HostKeyCheck, NewHostKey, SftpClient, load_key};
use rsftp::protocol::ErrorCode;
use russh::ChannelStream;
use russh::client::Msg;

use crate::sshd::Sshd;
use crate::util::{PASSWORD, TestServer, TestUser, data, md5_hex};

type Session = SftpClient<ChannelStream<Msg>>;

async fn on_sshd(sshd: &Sshd, known_hosts: &std::path::Path) -> (Connection, Session) {
    let check = HostKeyCheck {
        known_hosts: known_hosts.to_owned(),
        new_key: NewHostKey::Accept,
    };
    let mut conn = Connection::connect("127.0.0.1", sshd.port, sshd.user(), check)
        .await
        .expect("connect to sshd");
    let key = load_key(&sshd.client_key(), None).expect("client key");
    assert!(conn.login_key(key).await.expect("key login"), "key refused");
    let sftp = conn.open_sftp().await.expect("sftp on sshd");
    (conn, sftp)
}

async fn on_rsftpd(server: &TestServer) -> (Connection, Session) {
    let mut conn = server.connection("alice").await;
    let password = rsftp::auth::Secret::new(PASSWORD);
    assert!(conn.login_password(&password).await.expect("login"));
    let sftp = conn.open_sftp().await.expect("sftp on rsftpd");
    (conn, sftp)
}

async fn get(sftp: &mut Session, path: &str, offset: u64) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    sftp.download(path, offset, |chunk| {
        out.extend_from_slice(chunk);
        Ok(())
    })
    .await?;
    Ok(out)
}

async fn put(sftp: &mut Session, path: &str, offset: u64, bytes: &[u8]) -> u64 {
    let mut rest = bytes;
    sftp.upload(path, offset, |buf| {
        let n = buf.len().min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        Ok(n)
    })
    .await
    .expect("upload")
}

/// The same session of calls on either server; `under` is where the files land.
async fn exercise(sftp: &mut Session, under: &std::path::Path) {
    assert!(!sftp.realpath(".").await.unwrap().is_empty());
    // A few MiB, not a multiple of the chunk, pipelined both ways.
    let big = data(3 * 1024 * 1024 + 12345, 7);
    assert_eq!(put(sftp, "big.bin", 0, &big).await, big.len() as u64);
    assert_eq!(
        md5_hex(&std::fs::read(under.join("big.bin")).unwrap()),
        md5_hex(&big)
    );
    assert_eq!(
        sftp.stat("big.bin").await.unwrap().size,
        Some(big.len() as u64)
    );
    assert_eq!(
        md5_hex(&get(sftp, "big.bin", 0).await.unwrap()),
        md5_hex(&big)
    );
    // Resume both ways: the rest from an offset.
    let tail = get(sftp, "big.bin", 1_000_000).await.unwrap();
    assert_eq!(tail, &big[1_000_000..]);
    put(sftp, "half.bin", 0, &big[..2_000_000]).await;
    put(sftp, "half.bin", 2_000_000, &big[2_000_000..]).await;
    assert_eq!(
        md5_hex(&std::fs::read(under.join("half.bin")).unwrap()),
        md5_hex(&big)
    );
    // Folders, listings, renames, removals.
    sftp.mkdir("d").await.unwrap();
    sftp.rename("half.bin", "d/whole.bin").await.unwrap();
    let mut names: Vec<String> = sftp
        .list("d")
        .await
        .unwrap()
        .into_iter()
        .map(|n| String::from_utf8_lossy(&n.filename).into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["whole.bin"]);
    // A rename onto an existing file replaces it, as mv does.
    sftp.rename("big.bin", "d/whole.bin").await.unwrap();
    assert!(!under.join("big.bin").exists());
    sftp.remove("d/whole.bin").await.unwrap();
    sftp.rmdir("d").await.unwrap();
    // Refusals: a missing file, a missing folder, a folder that is not empty.
    let missing = get(sftp, "nope", 0).await.unwrap_err();
    assert_eq!(missing.code(), Some(&ErrorCode::NotFound), "{missing}");
    assert!(sftp.list("nowhere").await.is_err());
    sftp.mkdir("full").await.unwrap();
    put(sftp, "full/f", 0, b"x").await;
    assert!(sftp.rmdir("full").await.is_err());
    assert!(under.join("full/f").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sftp_session_works_against_openssh() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let (_conn, mut sftp) = on_sshd(&sshd, &dir.path().join("known_hosts")).await;
    assert!(sftp.has_extension("posix-rename@openssh.com"));
    exercise(&mut sftp, &sshd.root()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sftp_session_works_against_rsftpd_within_its_confinement_and_quota() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let (_conn, mut sftp) = on_rsftpd(&server).await;
    exercise(&mut sftp, &server.home("alice")).await;
    // Traversal stays inside, and the quota holds.
    let err = get(&mut sftp, "../../../etc/passwd", 0).await.unwrap_err();
    assert_eq!(err.code(), Some(&ErrorCode::NotFound), "{err}");
    let mut rest = &data(11 * 1024 * 1024, 3)[..];
    let over = sftp
        .upload("over.bin", 0, |buf| {
            let n = buf.len().min(rest.len());
            buf[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            Ok(n)
        })
        .await
        .unwrap_err();
    assert!(over.to_string().contains("quota"), "{over}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_stopped_on_our_side_leaves_the_session_usable() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    std::fs::write(server.home("alice").join("f"), data(2 * 1024 * 1024, 5)).unwrap();
    let (_conn, mut sftp) = on_rsftpd(&server).await;
    // The local side fails after the first chunk, with many READs in flight.
    let mut taken = 0;
    let err = sftp
        .download("f", 0, |chunk| {
            taken += chunk.len();
            if taken > 64 * 1024 {
                return Err(std::io::Error::other("local disk full"));
            }
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("local disk full"), "{err}");
    // Likewise a source that fails part-way through an upload.
    let mut given = 0;
    let err = sftp
        .upload("g", 0, |buf| {
            given += 1;
            if given > 3 {
                return Err(std::io::Error::other("local read failed"));
            }
            buf.fill(1);
            Ok(buf.len())
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("local read failed"), "{err}");
    // The replies still in flight were read: the next calls get their own answers.
    assert_eq!(sftp.stat("f").await.unwrap().size, Some(2 * 1024 * 1024));
    assert_eq!(get(&mut sftp, "f", 0).await.unwrap().len(), 2 * 1024 * 1024);
}
