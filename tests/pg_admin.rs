//! `rsftpd user ...` and `rsftpd db ...` against a real PostgreSQL: every command, its
//! happy path and its refusals, with the same output as with users.toml; import and
//! export; migrations; and the database password kept out of every message.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::admin::{new_key, rsftpd, succeeded};
use crate::pg_util::{PG_PASSWORD, PgCluster};

/// Where the accounts are, for one run of the script.
enum Store<'a> {
    File,
    Pg(&'a PgCluster),
}

/// Runs `rsftpd user ARGS` with the storage in `root`, on `store`.
async fn user(root: &Path, store: &Store<'_>, args: &[&str], stdin: &str) -> Output {
    let users = root.join("users.toml");
    let storage = root.join("storage");
    let url;
    let mut all = vec!["user"];
    match store {
        Store::File => all.extend(["--users", users.to_str().unwrap()]),
        Store::Pg(cluster) => {
            url = cluster.url();
            all.extend(["--accounts", &url]);
        }
    }
    all.extend(["--storage", storage.to_str().unwrap()]);
    all.extend_from_slice(args);
    rsftpd(&all, stdin.as_bytes()).await
}

/// What a command printed and how it ended, with the paths and the store's name
/// replaced, so that runs on different stores compare.
fn normalized(output: &Output, root: &Path, origin: &str) -> String {
    let text = format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    text.replace(origin, "<accounts>")
        .replace(&root.display().to_string(), "<root>")
}

fn refused(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "should have failed; stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_says_the_same_as_with_users_toml() {
    let cluster = PgCluster::start();
    let keys = tempfile::tempdir().unwrap();
    let (k1, k1_pub) = new_key(keys.path(), "laptop");
    let (_k2, k2_pub) = new_key(keys.path(), "phone");
    let bad = keys.path().join("bad.pub");
    fs::write(&bad, "ssh-ed25519 AAAAnot-a-key x@y\n").unwrap();
    let empty = keys.path().join("empty.pub");
    fs::write(&empty, "# only a comment\n").unwrap();
    let (k1_pub, k2_pub, bad, empty) = (
        k1_pub.to_str().unwrap(),
        k2_pub.to_str().unwrap(),
        bad.to_str().unwrap(),
        empty.to_str().unwrap(),
    );
    let fp1 = k1.fingerprint();
    let script: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "add",
                "alice",
                "--password-stdin",
                "--quota",
                "10MiB",
                "--max-sessions",
                "3",
                "--key",
                k1_pub,
            ],
            "pw\n",
        ),
        (vec!["add", "alice", "--password-stdin"], "pw\n"),
        (vec!["add", "Alice", "--password-stdin"], "pw\n"),
        (vec!["add", "../etc", "--password-stdin"], "pw\n"),
        (
            vec!["add", "bob", "--password-stdin", "--quota", "12 parsecs"],
            "pw\n",
        ),
        (vec!["add", "bob", "--key", bad], ""),
        (vec!["add", "bob", "--key", empty], ""),
        (vec!["add", "bob", "--key", k2_pub, "--quota", "1MiB"], ""),
        (vec!["passwd", "alice", "--password-stdin"], "new\n"),
        (vec!["passwd", "nobody", "--password-stdin"], "new\n"),
        (vec!["quota", "alice", "2.5 GiB", "--max-files", "100"], ""),
        (vec!["quota", "alice", "--", "-5"], ""),
        (vec!["quota", "nobody", "1GiB"], ""),
        (vec!["quota", "alice", "3GiB", "--no-max-files"], ""),
        (vec!["key", "add", "alice", k2_pub], ""),
        (vec!["key", "add", "alice", k1_pub], ""),
        (vec!["key", "add", "nobody", k2_pub], ""),
        (vec!["key", "add", "alice", "-"], "ssh-rsa garbage\n"),
        (vec!["key", "list", "alice"], ""),
        (vec!["key", "rm", "alice", &fp1], ""),
        (vec!["key", "rm", "alice", &fp1], ""),
        (vec!["key", "list", "nobody"], ""),
        (vec!["list"], ""),
        (vec!["show", "alice"], ""),
        (vec!["show", "nobody"], ""),
        (vec!["quota", "bob", "1KiB"], ""),
        (vec!["show", "bob"], ""),
        (vec!["del", "bob", "--purge"], ""),
        (vec!["del", "bob"], ""),
        (vec!["del", "alice"], ""),
        (vec!["list"], ""),
    ];
    let file_root = tempfile::tempdir().unwrap();
    let pg_root = tempfile::tempdir().unwrap();
    let file_origin = file_root.path().join("users.toml").display().to_string();
    let stores = [
        (Store::File, file_root.path(), file_origin),
        (Store::Pg(&cluster), pg_root.path(), cluster.shown()),
    ];
    let mut transcripts = [Vec::new(), Vec::new()];
    for (i, (store, root, origin)) in stores.iter().enumerate() {
        for (args, stdin) in &script {
            // Bob has a file of 3000 bytes (a 4 KiB block) before his quota is cut.
            if args[..] == ["quota", "bob", "1KiB"] {
                fs::write(root.join("storage/bob/f"), vec![0u8; 3000]).unwrap();
            }
            let output = user(root, store, args, stdin).await;
            transcripts[i].push(format!("$ {args:?}\n{}", normalized(&output, root, origin)));
        }
    }
    for (file, pg) in transcripts[0].iter().zip(&transcripts[1]) {
        assert_eq!(file, pg, "users.toml and PostgreSQL differ");
    }
    let all = transcripts[1].join("\n");
    // The script did exercise both outcomes, with the messages of the issue.
    for want in [
        "Added user alice: quota 10 MiB, 1 key, password set",
        "user \"alice\" already exists",
        "only in letter case",
        "quota \"12 parsecs\": unknown unit",
        "bad.pub:1: not a public key line",
        "no user \"nobody\"",
        "already has the key",
        "has no key",
        "OVER QUOTA",
        "Removed their home",
    ] {
        assert!(all.contains(want), "{want:?} not in\n{all}");
    }
    assert!(!all.contains(PG_PASSWORD), "{all}");
    assert_eq!(cluster.psql("SELECT count(*) FROM accounts").trim(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_import_copy_every_account() {
    let cluster = PgCluster::start();
    let root = tempfile::tempdir().unwrap();
    let pg = Store::Pg(&cluster);
    let (_, pub_file) = new_key(root.path(), "k");
    succeeded(
        &user(
            root.path(),
            &pg,
            &["add", "alice", "--password-stdin"],
            "pw\n",
        )
        .await,
    );
    succeeded(
        &user(
            root.path(),
            &pg,
            &[
                "add",
                "bob",
                "--key",
                pub_file.to_str().unwrap(),
                "--quota",
                "1000001",
            ],
            "",
        )
        .await,
    );
    let before = succeeded(&user(root.path(), &pg, &["list"], "").await);
    let exported = root.path().join("exported.toml");
    let out = succeeded(
        &user(
            root.path(),
            &pg,
            &["export", exported.to_str().unwrap()],
            "",
        )
        .await,
    );
    assert!(
        out.starts_with("Exported 2 accounts from postgres://"),
        "{out}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&exported).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The editor's lock file does not stay beside the export.
    let left: Vec<String> = fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "lock files left: {left:?}");
    // The export is a users.toml that the file store reads as the same accounts.
    let file_root = tempfile::tempdir().unwrap();
    fs::copy(&exported, file_root.path().join("users.toml")).unwrap();
    fs::create_dir(file_root.path().join("storage")).unwrap();
    fs::rename(
        root.path().join("storage"),
        file_root.path().join("storage"),
    )
    .unwrap();
    let from_file = succeeded(&user(file_root.path(), &Store::File, &["list"], "").await);
    assert_eq!(from_file, before);
    fs::rename(
        file_root.path().join("storage"),
        root.path().join("storage"),
    )
    .unwrap();

    // Refusals: a file that exists; import into an occupied database, which is all or
    // nothing; import without a database.
    let stderr = refused(
        &user(
            root.path(),
            &pg,
            &["export", exported.to_str().unwrap()],
            "",
        )
        .await,
    );
    assert!(stderr.contains("exists already"), "{stderr}");
    let stderr = refused(
        &user(
            root.path(),
            &pg,
            &["import", exported.to_str().unwrap()],
            "",
        )
        .await,
    );
    assert!(stderr.contains("user \"alice\" already exists"), "{stderr}");
    let stderr = refused(
        &user(
            root.path(),
            &Store::File,
            &["import", exported.to_str().unwrap()],
            "",
        )
        .await,
    );
    assert!(stderr.contains("import needs a database"), "{stderr}");

    for name in ["alice", "bob"] {
        succeeded(&user(root.path(), &pg, &["del", name], "").await);
    }
    cluster.psql("INSERT INTO accounts (name) VALUES ('bob'); INSERT INTO quota VALUES ('bob', 1)");
    refused(
        &user(
            root.path(),
            &pg,
            &["import", exported.to_str().unwrap()],
            "",
        )
        .await,
    );
    assert_eq!(
        cluster.psql("SELECT count(*) FROM accounts").trim(),
        "1",
        "nothing imported"
    );
    succeeded(&user(root.path(), &pg, &["del", "bob"], "").await);
    let out = succeeded(
        &user(
            root.path(),
            &pg,
            &["import", exported.to_str().unwrap()],
            "",
        )
        .await,
    );
    assert!(out.starts_with("Imported 2 accounts from "), "{out}");
    assert_eq!(
        succeeded(&user(root.path(), &pg, &["list"], "").await),
        before
    );
    let stderr = refused(&user(root.path(), &pg, &["import", "/nonexistent.toml"], "").await);
    assert!(stderr.contains("/nonexistent.toml"), "{stderr}");
}

/// Runs `rsftpd ARGS` with extra environment variables.
async fn rsftpd_with_env(args: &[&str], env: &[(&str, String)]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let run = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_rsftpd"))
            .args(&args)
            .envs(env)
            .stdin(Stdio::null())
            .output()
            .expect("rsftpd runs")
    });
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("in time")
        .expect("ran")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_even_from_two_nodes_at_once() {
    let cluster = PgCluster::start();
    let url = cluster.url();
    let args = ["db", "migrate", "--accounts", &url];
    let (a, b) = tokio::join!(rsftpd(&args, b""), rsftpd(&args, b""));
    let (a, b) = (succeeded(&a), succeeded(&b));
    // One applied them, the other found them applied.
    let outputs = format!("{a}{b}");
    assert_eq!(
        outputs.matches("Applied migration 001_accounts.").count(),
        1,
        "{outputs}"
    );
    assert_eq!(
        outputs.matches("is up to date (version 4)").count(),
        1,
        "{outputs}"
    );
    assert_eq!(
        cluster.psql("SELECT string_agg(version || ' ' || name, ',' ORDER BY version) FROM schema_version").trim(),
        "1 accounts,2 nodes,3 uploads,4 quota_settling"
    );
    assert!(!outputs.contains(PG_PASSWORD));

    // A database migrated by a newer rsftpd is left alone.
    cluster.psql("INSERT INTO schema_version (version, name) VALUES (99, 'future')");
    let stderr = refused(&rsftpd(&["db", "migrate", "--accounts", &url], b"").await);
    assert!(
        stderr.contains("has schema version 99, newer than this rsftpd knows (version 4)"),
        "{stderr}"
    );
    let root = tempfile::tempdir().unwrap();
    let stderr = refused(&user(root.path(), &Store::Pg(&cluster), &["list"], "").await);
    assert!(stderr.contains("newer than this rsftpd knows"), "{stderr}");
    let stderr = refused(&rsftpd(&["db", "migrate"], b"").await);
    assert!(stderr.contains("rsftpd db needs a database"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_password_is_never_shown() {
    let cluster = PgCluster::start();
    let root = tempfile::tempdir().unwrap();
    let storage = root.path().join("storage");
    let storage = storage.to_str().unwrap();
    // From a password file, with the URL in the environment.
    let pw = cluster.password_file(root.path());
    let env = [
        ("RSFTPD_ACCOUNTS", cluster.bare_url()),
        ("RSFTPD_ACCOUNTS_PASSWORD_FILE", pw.display().to_string()),
    ];
    let out = rsftpd_with_env(
        &[
            "user",
            "--storage",
            storage,
            "add",
            "alice",
            "--random-password",
        ],
        &env,
    )
    .await;
    let stdout = succeeded(&out);
    assert!(stdout.contains("Added user alice"), "{stdout}");
    let listed = succeeded(&rsftpd_with_env(&["user", "--storage", storage, "list"], &env).await);
    assert!(listed.contains("alice"), "{listed}");
    let help = succeeded(&rsftpd_with_env(&["user", "--help"], &env).await);
    assert!(
        !help.contains(PG_PASSWORD) && !help.contains("127.0.0.1"),
        "{help}"
    );

    // A password file others can read is refused.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o644)).unwrap();
    let stderr = refused(&rsftpd_with_env(&["user", "--storage", storage, "list"], &env).await);
    assert!(stderr.contains("chmod 600"), "{stderr}");

    // Failures name the database without its password.
    for url in [
        format!(
            "postgres://postgres:{PG_PASSWORD}@127.0.0.1:{}/nope?sslmode=disable",
            cluster.port
        ),
        format!(
            "postgres://postgres:{PG_PASSWORD}x@127.0.0.1:{}/postgres?sslmode=disable",
            cluster.port
        ),
        format!(
            "postgres://postgres:{PG_PASSWORD}@127.0.0.1:{}/postgres?sslmode=require",
            cluster.port
        ),
    ] {
        let stderr = refused(
            &rsftpd(
                &["user", "--accounts", &url, "--storage", storage, "list"],
                b"",
            )
            .await,
        );
        assert!(!stderr.contains(PG_PASSWORD), "{stderr}");
        assert!(stderr.starts_with("rsftpd: "), "{stderr}");
    }
    let stderr = refused(&rsftpd(&["user", "--accounts", "users.toml", "list"], b"").await);
    assert!(stderr.contains("expected postgres://"), "{stderr}");
}
