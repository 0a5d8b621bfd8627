//! `put -r` and `mirror -R` of many small files: they go in pipelined batches, and
//! still every file arrives whole and MD5-verified, and one the server refuses is
//! reported while the others land.

use std::path::Path;

use crate::client_support::{ClientHome, expect_status, run};
use crate::util::{TestServer, TestUser, data, md5_hex};

/// A tree of `count` small files (0 bytes to 64 KiB, most of 4 KiB) in three folders,
/// and one of 200 KB that goes the ordinary way. Returns the files, relative to `root`.
fn small_tree(root: &Path, count: usize) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for i in 0..count {
        let dir = ["", "a/", "a/b/"][i % 3];
        let len = match i % 50 {
            0 => 0,
            1 => 64 * 1024,
            2 => 1,
            _ => 4096,
        };
        files.push((format!("{dir}f{i:04}.bin"), data(len, i as u64)));
    }
    files.push(("a/big.bin".to_owned(), data(200_000, 9999)));
    for (rel, bytes) in &files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    files
}

fn lines_with(text: &str, word: &str) -> usize {
    text.lines().filter(|l| l.contains(word)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_small_files_arrive_whole_and_verified() {
    let server = TestServer::start(&[TestUser::new("alice", "100MiB")]).await;
    let client = ClientHome::new();
    let tree = client.work.join("tree");
    let files = small_tree(&tree, 400);

    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["put", "-r", "tree"]);
    let (out, err) = expect_status(&run(cmd).await, 0);
    assert!(err.is_empty(), "{err}");
    assert_eq!(lines_with(&out, "verified md5 "), files.len(), "{out}");
    assert!(
        out.contains(&format!("put: {} files, ", files.len())),
        "{out}"
    );
    assert!(out.contains("all verified"), "{out}");
    let up = server.home("alice").join("tree");
    for (rel, bytes) in &files {
        let there = std::fs::read(up.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(md5_hex(&there), md5_hex(bytes), "{rel}");
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("tree/{rel} -> /tree/{rel}: ")))
            .unwrap_or_else(|| panic!("no line for {rel}: {out}"));
        assert!(
            line.ends_with(&format!("verified md5 {}", md5_hex(bytes))),
            "{line}"
        );
    }

    // The same tree again: the server has every file, and says so file by file.
    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["put", "-r", "-j", "2", "tree"]);
    let (out, _) = expect_status(&run(cmd).await, 0);
    assert_eq!(
        lines_with(&out, "already up to date, verified md5 "),
        files.len(),
        "{out}"
    );

    // A mirror sends only what changed, the same way.
    std::fs::write(tree.join("a/f0001.bin"), b"changed").unwrap();
    std::fs::write(tree.join("new.bin"), data(5000, 5)).unwrap();
    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["mirror", "-R", "tree", "/tree"]);
    let (out, _) = expect_status(&run(cmd).await, 0);
    assert!(out.contains("mirror: 2 files copied"), "{out}");
    assert!(out.contains("all verified"), "{out}");
    assert_eq!(std::fs::read(up.join("a/f0001.bin")).unwrap(), b"changed");
    assert_eq!(std::fs::read(up.join("new.bin")).unwrap(), data(5000, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_name_in_a_batch_is_reported_and_the_others_land() {
    let server = TestServer::start(&[TestUser::new("alice", "100MiB")]).await;
    let client = ClientHome::new();
    let tree = client.work.join("tree");
    let files = small_tree(&tree, 150);
    // Two refusals in the middle of the batches: a name with a control byte, and a
    // remote folder where a file should go.
    std::fs::write(tree.join("a/bad\u{1}name.bin"), b"refused").unwrap();
    // (`/up` is there, so the tree goes into `/up/tree`.)
    std::fs::create_dir_all(server.home("alice").join("up/tree/f0060.bin")).unwrap();

    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["put", "-r", "-j", "2", "tree", "/up"]);
    let (out, err) = expect_status(&run(cmd).await, 1);
    assert!(
        err.contains("name.bin: bad path: a NUL or control character"),
        "{err}"
    );
    assert_eq!(lines_with(&err, "f0060.bin"), 1, "{out}\n{err}");
    let total = files.len() + 1;
    assert!(
        err.contains(&format!("put: 2 of {total} files failed")),
        "{out}\n{err}"
    );
    assert_eq!(lines_with(&out, "verified md5 "), files.len() - 1, "{out}");
    let up = server.home("alice").join("up/tree");
    for (rel, bytes) in &files {
        if rel == "f0060.bin" {
            assert!(up.join(rel).is_dir());
            continue;
        }
        let there = std::fs::read(up.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(md5_hex(&there), md5_hex(bytes), "{rel}");
    }

    // A mirror into a new folder meets the same name, and says so.
    let mut cmd = client.rsftp(&server, "alice");
    cmd.args(["mirror", "-R", "tree", "/copy"]);
    let (out, err) = expect_status(&run(cmd).await, 1);
    assert!(
        err.contains("/copy/a/bad\\x01name.bin\": bad path: a NUL or control character"),
        "{err}"
    );
    assert!(
        err.contains(&format!("mirror: 1 of {total} entries failed")),
        "{err}"
    );
    assert!(
        out.contains(&format!("mirror: {} files copied", files.len())),
        "{out}"
    );
    assert!(out.contains(" 1 failed"), "{out}");
    let copy = server.home("alice").join("copy");
    for (rel, bytes) in &files {
        let there = std::fs::read(copy.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(md5_hex(&there), md5_hex(bytes), "{rel}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_that_runs_out_partway_fails_the_rest_and_keeps_what_landed() {
    // Room for about half of 200 files of 4 KiB.
    let server = TestServer::start(&[TestUser::new("alice", "420KiB")]).await;
    let client = ClientHome::new();
    let tree = client.work.join("tree");
    std::fs::create_dir(&tree).unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..200u64)
        .map(|i| (format!("f{i:03}.bin"), data(4096, i)))
        .collect();
    for (rel, bytes) in &files {
        std::fs::write(tree.join(rel), bytes).unwrap();
    }

    let mut cmd = client.rsftp(&server, "alice");
    // Eight sessions, as many as the server allows: a session that a refusal closed
    // is replaced while the server may still count it.
    cmd.args(["put", "-r", "-j", "8", "tree", "/up"]);
    let (out, err) = expect_status(&run(cmd).await, 1);
    let landed = lines_with(&out, "verified md5 ");
    let refused = lines_with(&err, "quota exceeded");
    assert!(landed > 50 && landed < 150, "{landed} landed\n{out}\n{err}");
    assert_eq!(landed + refused, files.len(), "{out}\n{err}");
    assert!(
        err.contains(&format!("put: {refused} of 200 files failed")),
        "{err}"
    );
    let up = server.home("alice").join("up");
    let mut there = 0;
    for (rel, bytes) in &files {
        if let Ok(got) = std::fs::read(up.join(rel)) {
            assert_eq!(md5_hex(&got), md5_hex(bytes), "{rel}");
            assert!(
                out.contains(&format!("tree/{rel} -> /up/{rel}: ")),
                "{rel}: {out}"
            );
            there += 1;
        } else {
            assert!(
                err.contains(&format!("tree/{rel}: quota exceeded")),
                "{rel}: {err}"
            );
        }
    }
    assert_eq!(there, landed);
}
