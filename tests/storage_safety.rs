//! What a user's tree can do to the server: a tree deep enough to pass `PATH_MAX`, one
//! that cannot be measured, races on permissions, handles on renamed files, links into
//! the staging area. The server must start and serve whatever a user made.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::admin::{succeeded, user_command};
use crate::paramiko_sftp::paramiko;
use crate::util::{TestServer, TestUser};

/// Makes `levels` nested folders named `n` on disk, as an administrator, or a tree made
/// before depths were bounded, could have.
fn deep_chain_on_disk(top: &Path, levels: usize) {
    let chain: std::path::PathBuf = std::iter::repeat_n("n", levels).collect();
    std::fs::create_dir_all(top.join(chain)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_past_path_max_does_not_keep_the_server_from_starting() {
    let mut server = TestServer::start(&[TestUser::new("alice", "1MiB")]).await;
    // The repro: 16 levels of 255-byte names, 4,096 bytes in all, through SFTP.
    let lines = paramiko(
        &server,
        r#"
p = ""
for i in range(16):
    above = p
    p += "/" + "A" * 255
    s.mkdir(p)
with s.open(above + "/f", "wb") as f:
    f.write(b"x" * 1000)
out("made", len(p))
# Nesting past 128 levels is refused, by mkdir and by rename.
s.chdir("/")
q = ""
for i in range(128):
    q += "/d"
    s.mkdir(q)
try:
    s.mkdir(q + "/d")
    out("mkdir 129 ALLOWED")
except IOError as e:
    out("mkdir 129 refused", e)
s.mkdir("/t")
s.mkdir("/t/u")
refused("rename deeper", s.rename, "/t", q[:-2] + "/t")
s.rename("/t/u", q[:-2] + "/u")
out("rename to the bottom")
"#,
    )
    .await;
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0], "made 4096");
    assert!(
        lines[1].starts_with("mkdir 129 refused not possible for /d/d/")
            && lines[1].ends_with(": folders may nest at most 128 levels deep"),
        "{lines:?}"
    );
    assert_eq!(
        lines[2..],
        ["rename deeper refused None", "rename to the bottom"]
    );

    server.stop().await;
    // It starts, and serves, with usage measured from disk.
    server.launch(rsftp::server::Limits::default()).await;
    let (_conn, mut c) = server.client("alice").await;
    // One 4 KiB block each by the quota rule: 16 long folders, the file in them, 128
    // folders `d`, and `/t` with the folder moved out of it.
    assert_eq!(c.info().await.unwrap().used, (16 + 1 + 128 + 2) * 4096);
    let lines = paramiko(
        &server,
        r#"
with s.open("/after", "wb") as f:
    f.write(b"y" * 10)
out(s.stat("/after").st_size)
"#,
    )
    .await;
    assert_eq!(lines, ["10"]);
    // The admin tool measures it too.
    let shown = succeeded(&user_command(server.root(), &["show", "alice"], b"").await);
    // The same 147 blocks and one more for `/after`: 148 × 4 KiB.
    assert!(shown.contains("usage      592 KiB of 1 MiB"), "{shown}");
    assert!(shown.contains("files      148 "), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_that_cannot_be_measured_refuses_writes_and_stops_nobody_else() {
    let mut server =
        TestServer::start(&[TestUser::new("alice", "1MiB"), TestUser::new("bob", "1MiB")]).await;
    std::fs::write(server.home("alice").join("kept"), b"12345").unwrap();
    server.stop().await;
    // Deeper than any scan descends: an administrator's doing, or a tree made before
    // depths were bounded.
    deep_chain_on_disk(&server.home("alice"), 300);
    server.launch(rsftp::server::Limits::default()).await;

    // Bob is served as ever.
    let (_bob, mut b) = server.client("bob").await;
    b.mkdir("/mine").await.unwrap();
    // Alice can log in and read, but not write, with a clear reason.
    let lines = paramiko(
        &server,
        r#"
with s.open("/kept", "rb") as f:
    out(f.read())
try:
    with s.open("/new", "wb") as f:
        f.write(b"z")
    out("write ALLOWED")
except IOError as e:
    out("write refused", e)
refused("mkdir", s.mkdir, "/x")
"#,
    )
    .await;
    assert_eq!(lines[0], "b'12345'");
    assert!(
        lines[1].starts_with("write refused") && lines[1].contains("could not be measured"),
        "{lines:?}"
    );
    assert_eq!(lines[2], "mkdir refused 13");
    assert!(!server.home("alice").join("new").exists());
    let shown = succeeded(&user_command(server.root(), &["show", "alice"], b"").await);
    assert!(
        shown.contains("UNKNOWN: the home cannot be measured (folders nest deeper than 256"),
        "{shown}"
    );
    let listed = succeeded(&user_command(server.root(), &["list"], b"").await);
    assert!(listed.contains("bob"), "{listed}");

    // The administrator prunes the tree; alice's next login measures it again.
    let top = server.home("alice").join("n");
    std::fs::remove_dir_all(&top).unwrap();
    let lines = paramiko(
        &server,
        r#"
with s.open("/new", "wb") as f:
    f.write(b"z" * 7)
out("written")
"#,
    )
    .await;
    assert_eq!(lines, ["written"]);
    let (_conn, mut c) = server.client("alice").await;
    // `/kept` and `/new`, one block each.
    assert_eq!(c.info().await.unwrap().used, 2 * 4096);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_measures_a_failed_home_again() {
    let mut server = TestServer::start(&[TestUser::new("alice", "1MiB")]).await;
    server.stop().await;
    deep_chain_on_disk(&server.home("alice"), 300);
    server.launch(rsftp::server::Limits::default()).await;
    let (_conn, mut c) = server.client("alice").await;
    assert!(c.mkdir("/x").await.is_err());
    std::fs::remove_dir_all(server.home("alice").join("n")).unwrap();
    // Any change to users.toml reloads it, as SIGHUP does; the live session sees it.
    let users = server.root().join("users.toml");
    let mut text = std::fs::read_to_string(&users).unwrap();
    text.push_str("\n# touched\n");
    std::fs::write(&users, text).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if c.mkdir("/x").await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no rescan after a reload");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

mod race {
    use crate::sftp_raw::{ATTRS, RawSftp, STATUS, body, frame, string};

    const STAT: u8 = 17;
    const PERMISSIONS: u32 = 0x4;

    /// The permission bits STAT reports for `path`, or the status code it failed with.
    pub async fn mode(sftp: &mut RawSftp, id: u32, path: &str) -> Result<u32, u32> {
        sftp.send(&frame(STAT, &body(id, &[&string(path.as_bytes())])))
            .await;
        let reply = sftp.reply().await;
        assert_eq!(reply.id, id);
        if reply.kind == STATUS {
            return Err(reply.code());
        }
        assert_eq!(reply.kind, ATTRS, "{reply:?}");
        let word = |at: usize| u32::from_be_bytes(reply.rest[at..at + 4].try_into().unwrap());
        let flags = word(0);
        let mut at = 4;
        if flags & 0x1 != 0 {
            at += 8;
        }
        if flags & 0x2 != 0 {
            at += 8;
        }
        assert!(flags & PERMISSIONS != 0, "{reply:?}");
        Ok(word(at))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setstat_racing_renames_never_leaves_a_folder_unusable() {
    use crate::sftp_raw::{body, frame, string};
    use race::mode;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let server = TestServer::start(&[TestUser::new("alice", "1MiB")]).await;
    std::fs::create_dir(server.home("alice").join("D")).unwrap();
    std::fs::write(server.home("alice").join("D/inside"), b"kept").unwrap();
    std::fs::write(server.home("alice").join("X"), b"file").unwrap();
    const CHMODDERS: usize = 6;
    let deadline = Instant::now() + Duration::from_secs(15);
    let done = Arc::new(AtomicBool::new(false));

    let mut chmodders = Vec::new();
    for _ in 0..CHMODDERS {
        let mut sftp = crate::sftp_raw::RawSftp::open(&server, "alice").await;
        sftp.init().await;
        let done = Arc::clone(&done);
        chmodders.push(tokio::spawn(async move {
            // Many requests in flight, so the server always has one about to run.
            const BATCH: u32 = 32;
            let attrs = [0x4u32.to_be_bytes(), 0u32.to_be_bytes()].concat();
            let mut id = 0;
            while !done.load(Ordering::Relaxed) && id < 1_000_000 {
                let mut batch = Vec::new();
                for n in 1..=BATCH {
                    batch.extend(frame(9, &body(id + n, &[&string(b"/X"), &attrs])));
                }
                sftp.send(&batch).await;
                for n in 1..=BATCH {
                    sftp.status(id + n).await;
                }
                id += BATCH;
            }
        }));
    }
    let mut renamer = crate::sftp_raw::RawSftp::open(&server, "alice").await;
    renamer.init().await;
    let mut id = 0;
    let mut rounds = 0;
    let mut worst = None;
    while Instant::now() < deadline && rounds < 20_000 {
        rounds += 1;
        // One round in flight at once: the renames run back to back on the server.
        let mut batch = Vec::new();
        let steps = [("/X", "/F"), ("/D", "/X"), ("/X", "/D"), ("/F", "/X")];
        for (n, (from, to)) in (1..).zip(steps) {
            let request = body(id + n, &[&string(from.as_bytes()), &string(to.as_bytes())]);
            batch.extend(frame(18, &request));
        }
        renamer.send(&batch).await;
        for (n, (from, to)) in (1..).zip(steps) {
            assert_eq!(renamer.status(id + n).await.0, 0, "{from} -> {to}");
        }
        id += 5;
        let folder = mode(&mut renamer, id, "/D").await.expect("stat /D");
        if folder & 0o700 != 0o700 {
            worst = Some(folder);
            break;
        }
    }
    done.store(true, Ordering::Relaxed);
    for task in chmodders {
        task.await.unwrap();
    }
    assert_eq!(
        worst, None,
        "the folder lost its owner's rights after {rounds} rounds"
    );
    // Both channels raced for real: the file did get mode 000.
    id += 1;
    assert_eq!(mode(&mut renamer, id, "/X").await.map(|m| m & 0o777), Ok(0));
    assert_eq!(
        std::fs::read(server.home("alice").join("D/inside")).unwrap(),
        b"kept"
    );
}

/// FSETSTAT changes the file its handle is open on, not whatever has the name now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsetstat_changes_the_open_file_not_the_path() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let server = TestServer::start(&[TestUser::new("alice", "1MiB")]).await;
    let lines = paramiko(
        &server,
        r#"
with s.open("/p", "wb") as f:
    f.write(b"first")
h = s.open("/p", "r+")
s.rename("/p", "/q")
with s.open("/p", "wb") as f:
    f.write(b"second")
h.chmod(0o600)
h.utime((1000000000, 1000000000))
h.close()
out("done")
"#,
    )
    .await;
    assert_eq!(lines, ["done"]);
    let home = server.home("alice");
    let q = std::fs::metadata(home.join("q")).unwrap();
    assert_eq!(std::fs::read(home.join("q")).unwrap(), b"first");
    assert_eq!(q.permissions().mode() & 0o777, 0o600);
    assert_eq!(q.mtime(), 1_000_000_000);
    let p = std::fs::metadata(home.join("p")).unwrap();
    assert_eq!(std::fs::read(home.join("p")).unwrap(), b"second");
    assert_ne!(p.permissions().mode() & 0o777, 0o600);
    assert_ne!(p.mtime(), 1_000_000_000);
}
