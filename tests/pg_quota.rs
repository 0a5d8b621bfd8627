//! The quota of a cluster, exact across nodes: two `rsftpd` processes that share one
//! PostgreSQL and one storage root never together let a user pass their quota; a
//! killed node's reservation comes back; uploads that need space are refused while the
//! database is away, and those already reserved finish; `rsftpd db reconcile` puts a
//! drifted ledger right, and leaves alone an account with an upload in flight.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};
use rsftp::client::{PutStart, Quiet, upload};

use crate::admin::rsftpd;
use crate::pg_nodes::{Cluster, DEADLINE, Node, PASSWORD, admin, two_nodes};
use crate::pg_util::PgCluster;
use crate::util::{Client, data, disk_usage};

const MIB: u64 = 1 << 20;

async fn add_with_quota(c: &Cluster, name: &str, quota: &str) {
    admin(
        &c.pg,
        &c.storage,
        &["add", name, "--password-stdin", "--quota", quota],
        &format!("{PASSWORD}\n"),
    )
    .await;
    c.a.wait_for_log(&format!("added={name}")).await;
    c.b.wait_for_log(&format!("added={name}")).await;
}

async fn client(node: &Node, user: &str) -> (rsftp::client::Connection, Client) {
    let conn = node.logs_in(user).await.expect("login");
    let client = conn.open_rsftp().await.expect("rsftp");
    (conn, client)
}

/// The ledger's `used` and `reserved` for `user`.
fn ledger(pg: &PgCluster, user: &str) -> (u64, u64) {
    let row = pg.psql(&format!(
        "SELECT used || ' ' || reserved FROM quota WHERE account = '{user}'"
    ));
    let mut numbers = row.split_whitespace().map(|n| n.parse::<u64>().unwrap());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

/// What `user`'s home and partial uploads cost on disk, by the quota rule.
fn on_disk(c: &Cluster, user: &str) -> u64 {
    let staging = c.storage.join(".partials").join(user);
    let partials = if staging.exists() {
        disk_usage(&staging)
    } else {
        0
    };
    disk_usage(&c.storage.join(user)) + partials
}

/// Waits until the ledger has settled: nothing reserved, and `used` what the disk holds.
async fn settled(c: &Cluster, user: &str) -> (u64, u64) {
    let started = Instant::now();
    loop {
        let (used, reserved) = ledger(&c.pg, user);
        let disk = on_disk(c, user);
        if reserved == 0 && used == disk {
            return (used, disk);
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the ledger says {used} used and {reserved} reserved; the disk holds {disk}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn local_file(dir: &Path, name: &str, len: u64, seed: u64) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data(len as usize, seed)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_uploads_over_two_nodes_never_pass_the_quota_and_the_ledger_equals_the_disk() {
    let c = two_nodes().await;
    add_with_quota(&c, "alice", "10MiB").await;
    let local = tempfile::tempdir().unwrap();
    let (a, b) = (Arc::new(c.a), Arc::new(c.b));
    // 20 uploads of 1 MiB, half through each node, all at once: 20 MiB for a quota of
    // 10 MiB.
    let tries: Vec<_> = (0..20u64)
        .map(|i| {
            let node = Arc::clone(if i % 2 == 0 { &a } else { &b });
            let path = local_file(local.path(), &format!("f{i}"), MIB, i);
            tokio::spawn(async move {
                let (conn, mut client) = client(&node, "alice").await;
                let sent = upload(&mut client, &path, &format!("f{i}.bin"), &Quiet).await;
                drop(conn);
                sent.map(|_| ()).map_err(|e| e.to_string())
            })
        })
        .collect();
    let (mut landed, mut refused) = (0u64, 0);
    for attempt in tries {
        match tokio::time::timeout(Duration::from_secs(120), attempt)
            .await
            .expect("an upload hung")
            .unwrap()
        {
            Ok(()) => landed += 1,
            Err(err) => {
                assert!(err.contains("quota exceeded"), "{err}");
                refused += 1;
            }
        }
    }
    let c = Cluster {
        a: Arc::into_inner(a).unwrap(),
        b: Arc::into_inner(b).unwrap(),
        ..c
    };
    assert!(landed * MIB <= 10 * MIB, "{landed} uploads of 1 MiB landed");
    assert!(landed >= 5, "only {landed} landed, {refused} refused");
    assert_eq!(landed + refused, 20);
    let (used, disk) = settled(&c, "alice").await;
    assert_eq!(used, landed * MIB);
    assert_eq!(disk, used);
    eprintln!("{landed} of 20 uploads landed, {refused} refused by the quota");

    // What is left fits, exactly, and not a byte more, through either node.
    let free = 10 * MIB - used;
    if free > 0 {
        let path = local_file(local.path(), "rest", free, 99);
        let (_conn, mut client) = client(&c.b, "alice").await;
        upload(&mut client, &path, "rest.bin", &Quiet)
            .await
            .expect("the rest fits");
    }
    let path = local_file(local.path(), "one", 1, 98);
    let (_conn, mut client) = client(&c.a, "alice").await;
    let err = upload(&mut client, &path, "one.bin", &Quiet)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("quota exceeded"), "{err}");
    assert_eq!(settled(&c, "alice").await.0, 10 * MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lowered_quota_holds_from_the_next_write_on_every_node() {
    let c = two_nodes().await;
    add_with_quota(&c, "alice", "10MiB").await;
    let local = tempfile::tempdir().unwrap();
    // Node a took a chunk of 8 MiB for this; what it did not need goes back as it settles,
    // or at once when the limit changes.
    let path = local_file(local.path(), "first", MIB, 1);
    let (_conn_a, mut on_a) = client(&c.a, "alice").await;
    upload(&mut on_a, &path, "first.bin", &Quiet).await.unwrap();
    let (_conn_b, mut on_b) = client(&c.b, "alice").await;

    let reloads = |node: &Node| {
        node.log()
            .matches("accounts reloaded from PostgreSQL")
            .count()
    };
    let before = (reloads(&c.a), reloads(&c.b));
    admin(&c.pg, &c.storage, &["quota", "alice", "1MiB"], "").await;
    let started = Instant::now();
    while reloads(&c.a) == before.0 || reloads(&c.b) == before.1 {
        assert!(
            started.elapsed() < DEADLINE,
            "the change did not reach both nodes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let small = local_file(local.path(), "small", 4096, 2);
    for (node, client) in [("a", &mut on_a), ("b", &mut on_b)] {
        let err = upload(client, &small, "small.bin", &Quiet)
            .await
            .expect_err(&format!("an upload over the lowered quota on node {node}"))
            .to_string();
        assert!(err.contains("quota exceeded"), "node {node}: {err}");
    }
    // Raised again, the space is there at once.
    admin(&c.pg, &c.storage, &["quota", "alice", "2MiB"], "").await;
    let started = Instant::now();
    while upload(&mut on_b, &small, "small.bin", &Quiet)
        .await
        .is_err()
    {
        assert!(started.elapsed() < DEADLINE, "a raised quota did not apply");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_reservation_expires_and_the_space_comes_back() {
    let c = two_nodes().await;
    add_with_quota(&c, "alice", "8MiB").await;
    let local = tempfile::tempdir().unwrap();
    // Node a holds 6 MiB for an upload that it is killed in the middle of.
    let (conn, mut held) = client(&c.a, "alice").await;
    let start = held.begin_put("big.bin", 6 * MIB, None).await.unwrap();
    assert!(
        matches!(start, PutStart::Have { offset: 0, .. }),
        "{start:?}"
    );
    let first = local_file(local.path(), "first", MIB, 1);
    let file = std::fs::File::open(&first).unwrap();
    held.send_from(0, file, MIB, Md5::new(), |_| {})
        .await
        .unwrap();
    assert!(
        ledger(&c.pg, "alice").1 >= 5 * MIB,
        "{:?}",
        ledger(&c.pg, "alice")
    );
    let big = local_file(local.path(), "other", 4 * MIB, 2);
    let (_conn_b, mut other) = client(&c.b, "alice").await;
    let err = upload(&mut other, &big, "other.bin", &Quiet)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("quota exceeded"), "{err}");

    let mut a = c.a;
    a.child.kill().expect("SIGKILL node a");
    a.child.wait().expect("reap");
    drop((held, conn));
    // Within the lease time and a heartbeat, its reservation is given back.
    let started = Instant::now();
    let bound = rsftp::auth::postgres::LEASE + rsftp::auth::postgres::HEARTBEAT + DEADLINE;
    let mut landed = false;
    for _ in 0..60 {
        if upload(&mut other, &big, "other.bin", &Quiet).await.is_ok() {
            landed = true;
            break;
        }
        if started.elapsed() > bound {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(landed, "node a's reservation never expired:\n{}", c.b.log());
    eprintln!(
        "a killed node's reservation came back after {:?}",
        started.elapsed()
    );
    // Node b settles what it wrote within a second or so; node a's unsettled bytes, if
    // any, wait for a reconcile.
    let started = Instant::now();
    loop {
        let (used, reserved) = ledger(&c.pg, "alice");
        if reserved == 0 {
            assert!((4 * MIB..=8 * MIB).contains(&used), "{used} used");
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{used} used, {reserved} reserved"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_database_new_uploads_are_refused_and_reserved_ones_finish() {
    let c = two_nodes().await;
    add_with_quota(&c, "alice", "100MiB").await;
    let local = tempfile::tempdir().unwrap();
    let (_conn, mut kept) = client(&c.b, "alice").await;
    // A login needs the database: the second session is opened before it goes.
    let (_conn2, mut other) = client(&c.b, "alice").await;
    let bytes = data(2 * MIB as usize, 5);
    let whole = local.path().join("whole");
    std::fs::write(&whole, &bytes).unwrap();
    // Its space is reserved when the put is accepted, before any data.
    let start = kept.begin_put("kept.bin", 2 * MIB, None).await.unwrap();
    assert!(
        matches!(start, PutStart::Have { offset: 0, .. }),
        "{start:?}"
    );

    c.pg.stop();
    // A new upload needs a reservation the node cannot get.
    let big = local_file(local.path(), "big", 20 * MIB, 6);
    let err = upload(&mut other, &big, "big.bin", &Quiet)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("quota ledger is unavailable"), "{err}");
    c.b.wait_for_log("upload refused: no reservation").await;
    // The one already reserved finishes.
    let file = std::fs::File::open(&whole).unwrap();
    let hasher = kept
        .send_from(0, file, 2 * MIB, Md5::new(), |_| {})
        .await
        .unwrap();
    let done = Some(rsftp::protocol::Md5Digest::from_hasher(hasher));
    if let Err(err) = kept.end_put(done).await {
        panic!("a reserved upload did not finish: {err}\n{}", c.b.log());
    }
    assert_eq!(
        std::fs::read(c.storage.join("alice/kept.bin")).unwrap(),
        bytes
    );

    // Back again: uploads go on by themselves, and the ledger settles.
    c.pg.resume();
    let started = Instant::now();
    loop {
        match upload(&mut other, &big, "big.bin", &Quiet).await {
            Ok(_) => break,
            Err(err) => assert!(
                started.elapsed() < DEADLINE * 3,
                "no upload after the database came back: {err}\n{}",
                c.b.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (used, _) = settled(&c, "alice").await;
    assert_eq!(used, 22 * MIB);
    assert_eq!(
        c.b.log().matches("cannot settle the quota ledger").count(),
        1,
        "one line while the database is away, not one a second"
    );
    c.b.wait_for_log("quota ledger settled again").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_reconcile_corrects_drift_and_skips_an_account_in_flight() {
    let c = two_nodes().await;
    add_with_quota(&c, "alice", "100MiB").await;
    add_with_quota(&c, "bob", "100MiB").await;
    let local = tempfile::tempdir().unwrap();
    let path = local_file(local.path(), "f", 3 * MIB + 1, 7);
    for user in ["alice", "bob"] {
        let (_conn, mut client) = client(&c.a, user).await;
        upload(&mut client, &path, "f.bin", &Quiet).await.unwrap();
    }
    assert_eq!(settled(&c, "alice").await.0, 3 * MIB + 4096);
    // Drift, as after a node was killed before it settled what it wrote.
    c.pg.psql("UPDATE quota SET used = 12345");
    // Bob has an upload in flight on node b.
    let (_conn, mut bobs) = client(&c.b, "bob").await;
    bobs.begin_put("g.bin", MIB, None).await.unwrap();

    let url = c.pg.url();
    let storage = c.storage.to_str().unwrap();
    let args = ["db", "reconcile", "--accounts", &url, "--storage", storage];
    let out = rsftpd(&args, b"").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("alice: the ledger said 12.1 KiB used, the home holds 3 MiB: corrected"),
        "{stdout}"
    );
    assert!(
        stdout.contains("bob: skipped, an upload is in flight"),
        "{stdout}"
    );
    assert!(stdout.contains("1 corrected, 0 not checked"), "{stdout}");
    assert_eq!(ledger(&c.pg, "alice").0, 3 * MIB + 4096);
    assert_eq!(ledger(&c.pg, "bob").0, 12345);

    // Refused: no database given, and one that does not answer.
    let out = rsftpd(&["db", "reconcile", "--storage", storage], b"").await;
    assert!(!out.status.success());
    c.pg.stop();
    let out = rsftpd(&args, b"").await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach the accounts"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
