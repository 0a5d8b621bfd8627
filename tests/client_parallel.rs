//! `-j N`: several files at once over several sessions of one connection, for `put -r`,
//! `get -r` and patterns. Every file arrives whole and verified; one that fails does not
//! stop the others and is reported at the end.

use crate::client_support::{ClientHome, expect_status, run};
use crate::util::{TestServer, TestUser, data, md5_hex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_files_at_once_both_ways_and_one_failure_stops_no_other() {
    let server = TestServer::start(&[TestUser::new("alice", "3MiB")]).await;
    let client = ClientHome::new();
    let tree = client.work.join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    for i in 0..12u64 {
        let dir = if i % 2 == 0 {
            tree.clone()
        } else {
            tree.join("sub")
        };
        std::fs::write(
            dir.join(format!("f{i:02}.bin")),
            data(40_000 + i as usize, i),
        )
        .unwrap();
    }
    // This one does not fit in the quota; in the middle, so files go on after it.
    std::fs::write(tree.join("f05-big.bin"), data(4 << 20, 77)).unwrap();

    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["put", "-r", "-j", "3", "tree", "/up"]);
    let (out, err) = expect_status(&run(cmd).await, 1);
    assert!(err.contains("f05-big.bin: quota exceeded"), "{err}");
    assert!(err.contains("put: 1 of 13 files failed"), "{err}");
    assert_eq!(out.matches("verified md5 ").count(), 12, "{out}");
    let up = server.home("alice").join("up");
    for i in 0..12u64 {
        let rel = if i % 2 == 0 {
            format!("f{i:02}.bin")
        } else {
            format!("sub/f{i:02}.bin")
        };
        assert_eq!(
            md5_hex(&std::fs::read(up.join(&rel)).unwrap()),
            md5_hex(&data(40_000 + i as usize, i)),
            "{rel}"
        );
    }
    assert!(!up.join("f05-big.bin").exists());

    // And back, four at once (the default), by pattern and by tree.
    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["get", "-r", "/up", "back"]);
    let (out, _) = expect_status(&run(cmd).await, 0);
    assert!(out.contains("get: 12 files, "), "{out}");
    assert!(out.contains("all verified"), "{out}");
    std::fs::create_dir(client.work.join("flat")).unwrap();
    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["get", "-j8", "/up/*.bin", "flat"]);
    let (out, _) = expect_status(&run(cmd).await, 0);
    assert!(out.contains("get: 6 files, "), "{out}");
    for i in (0..12u64).step_by(2) {
        let name = format!("f{i:02}.bin");
        assert_eq!(
            std::fs::read(client.work.join("back").join(&name)).unwrap(),
            data(40_000 + i as usize, i)
        );
        assert_eq!(
            std::fs::read(client.work.join("flat").join(&name)).unwrap(),
            data(40_000 + i as usize, i)
        );
    }

    // A -j that is not a count is refused before anything moves.
    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["get", "-j", "0", "-r", "/up", "none"]);
    let (_, err) = expect_status(&run(cmd).await, 1);
    assert!(
        err.contains("-j 0: give a number of files at once from 1 to 16"),
        "{err}"
    );
    assert!(!client.work.join("none").exists());
}
