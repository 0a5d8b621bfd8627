//! `rsftpd user ...`: every command through the real binary, its happy path and its
//! refusals. A refusal exits non-zero, says why, and leaves users.toml as it was.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use rsftp::auth::{AuthorizedKey, Secret, UsersConfig, create_starter_file, verify_password};
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey};
use tempfile::TempDir;

use crate::util::run_with_input;

/// Runs the real `rsftpd` with `args`, `stdin` on its standard input.
pub async fn rsftpd(args: &[&str], stdin: &[u8]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    run_with_input(env!("CARGO_BIN_EXE_rsftpd"), &args, stdin).await
}

/// Runs `rsftpd user ARGS` on the users file and storage folder in `root`.
pub async fn user_command(root: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let users = root.join("users.toml");
    let storage = root.join("storage");
    let mut all = vec![
        "user",
        "--users",
        users.to_str().expect("utf-8 path"),
        "--storage",
        storage.to_str().expect("utf-8 path"),
    ];
    all.extend_from_slice(args);
    rsftpd(&all, stdin).await
}

/// Standard output of a command that must succeed.
pub fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error of a command that must fail.
fn refused(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "should have failed; stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A new key pair in `dir`: returns the public key and the path of its `.pub` file.
pub fn new_key(dir: &Path, name: &str) -> (AuthorizedKey, PathBuf) {
    let private = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("key");
    private
        .write_openssh_file(dir.join(name), LineEnding::LF)
        .expect("write key");
    let line = format!(
        "{} {name}@test",
        private.public_key().to_openssh().expect("public")
    );
    let path = dir.join(format!("{name}.pub"));
    fs::write(&path, format!("{line}\n")).expect("write .pub");
    let key = AuthorizedKey::parse_line(&line)
        .expect("parses")
        .expect("a key");
    (key, path)
}

struct Admin {
    dir: TempDir,
}

impl Admin {
    fn new() -> Admin {
        Admin {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn users_file(&self) -> PathBuf {
        self.root().join("users.toml")
    }

    fn home(&self, user: &str) -> PathBuf {
        self.root().join("storage").join(user)
    }

    /// Where the user's partial uploads wait, outside their home.
    fn staging(&self, user: &str) -> PathBuf {
        self.root().join("storage/.partials").join(user)
    }

    fn text(&self) -> String {
        fs::read_to_string(self.users_file()).expect("users.toml")
    }

    fn config(&self) -> UsersConfig {
        UsersConfig::load(&self.users_file()).expect("users.toml parses")
    }

    async fn run(&self, args: &[&str]) -> Output {
        user_command(self.root(), args, b"").await
    }

    async fn run_with(&self, args: &[&str], stdin: &str) -> Output {
        user_command(self.root(), args, stdin.as_bytes()).await
    }

    /// Runs a command that must fail: checks its message and that nothing changed.
    async fn refuses(&self, args: &[&str], stdin: &str, message: &str) {
        let before = fs::read(self.users_file()).ok();
        let stderr = refused(&self.run_with(args, stdin).await);
        assert!(
            stderr.contains(message),
            "{args:?}: expected {message:?} in {stderr:?}"
        );
        assert!(stderr.starts_with("rsftpd: ") || stderr.starts_with("error: "));
        assert_eq!(
            fs::read(self.users_file()).ok(),
            before,
            "{args:?} changed users.toml"
        );
    }

    async fn add_with_password(&self, name: &str, password: &str) {
        succeeded(
            &self
                .run_with(&["add", name, "--password-stdin"], &format!("{password}\n"))
                .await,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_creates_the_account_and_its_home() {
    let admin = Admin::new();
    let (key, pub_file) = new_key(admin.root(), "alice");
    let out = succeeded(
        &admin
            .run_with(
                &[
                    "add",
                    "alice",
                    "--key",
                    pub_file.to_str().unwrap(),
                    "--password-stdin",
                    "--quota",
                    "10MiB",
                    "--max-sessions",
                    "3",
                ],
                "open sesame\n",
            )
            .await,
    );
    assert!(
        out.starts_with("Added user alice: quota 10 MiB, 1 key, password set; home "),
        "{out}"
    );
    let config = admin.config();
    let alice = config.get("alice").unwrap();
    assert_eq!((alice.quota, alice.max_sessions), (10 << 20, Some(3)));
    assert!(alice.keys.len() == 1 && alice.keys[0].matches(key.public_key()));
    let hash = alice.password_hash.as_ref().unwrap();
    assert!(verify_password(hash, &Secret::new("open sesame")));
    assert!(!admin.text().contains("open sesame"));
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&admin.users_file()), 0o600);
    assert_eq!(mode(&admin.home("alice")), 0o700);

    // A random password is printed once, and works; the default quota is 1 GiB.
    let out = succeeded(&admin.run(&["add", "bob", "--random-password"]).await);
    let password = out
        .lines()
        .find_map(|line| line.strip_prefix("Password for bob (shown once): "))
        .unwrap_or_else(|| panic!("no password in {out:?}"));
    assert_eq!(password.len(), 20);
    let bob = admin.config().get("bob").unwrap().clone();
    assert_eq!(bob.quota, 1 << 30);
    assert!(verify_password(
        bob.password_hash.as_ref().unwrap(),
        &Secret::new(password)
    ));
    assert!(admin.home("bob").is_dir());

    // A key from standard input, and no password.
    let (key, pub_file) = new_key(admin.root(), "carol");
    let out = succeeded(
        &admin
            .run_with(
                &["add", "carol", "--key", "-"],
                &fs::read_to_string(pub_file).unwrap(),
            )
            .await,
    );
    assert!(out.contains("1 key, no password"), "{out}");
    let carol = admin.config().get("carol").unwrap().clone();
    assert!(carol.keys[0].matches(key.public_key()) && carol.password_hash.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_made_by_root_belongs_to_the_owner_of_storage() {
    let admin = Admin::new();
    let storage = admin.root().join("storage");
    fs::create_dir(&storage).unwrap();
    // Only root can give files away; elsewhere there is nothing to check.
    if std::os::unix::fs::chown(&storage, Some(4321), Some(4321)).is_err() {
        return;
    }
    admin.add_with_password("alice", "pw").await;
    use std::os::unix::fs::MetadataExt;
    let home = fs::metadata(admin.home("alice")).unwrap();
    assert_eq!((home.uid(), home.gid()), (4321, 4321));
    // And so are the staging folders for partial uploads that it made on the way.
    for made in [storage.join(".partials"), admin.staging("alice")] {
        let meta = fs::metadata(&made).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (4321, 4321), "{}", made.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_refuses_bad_input_and_changes_nothing() {
    let admin = Admin::new();
    admin.add_with_password("alice", "pw").await;
    // Writes the private key "k" (and "k.pub").
    new_key(admin.root(), "k");
    let bad_key = admin.root().join("bad.pub");
    fs::write(&bad_key, "ssh-ed25519 AAAAnot-a-key x@y\n").unwrap();
    let bad_key = bad_key.to_str().unwrap();
    let private_key = admin.root().join("k");
    let private_key = private_key.to_str().unwrap();

    let cases: [(&[&str], &str, &str); 12] = [
        (
            &["add", "alice", "--random-password"],
            "",
            "user \"alice\" already exists",
        ),
        (
            &["add", "Alice", "--random-password"],
            "",
            "differs from the existing user \"alice\" only in letter case",
        ),
        (
            &["add", "../etc", "--random-password"],
            "",
            "user name \"../etc\" must not start with '.' or '-'",
        ),
        (
            &["add", "a/b", "--random-password"],
            "",
            "user name \"a/b\" contains '/'",
        ),
        (
            &["add", "bob", "--random-password", "--quota", "12 parsecs"],
            "",
            "quota \"12 parsecs\": unknown unit \"parsecs\"",
        ),
        (
            &["add", "bob", "--key", bad_key],
            "",
            "bad.pub:1: not a public key line",
        ),
        (
            &["add", "bob", "--key", private_key],
            "",
            "this is a private key; give the public key (the .pub file) instead",
        ),
        (
            &["add", "bob", "--key", "/nonexistent/k.pub"],
            "",
            "cannot open /nonexistent/k.pub",
        ),
        (
            &["add", "bob"],
            "",
            "no way to log in given: use --key FILE, --password-stdin or --random-password",
        ),
        (
            &["add", "bob", "--password-stdin"],
            "\n",
            "the password is empty",
        ),
        (
            &["add", "bob", "--password-stdin", "--key", "-"],
            "pw\n",
            "--password-stdin and --key - cannot both read standard input",
        ),
        (
            &["add", "bob", "--random-password", "--max-sessions", "0"],
            "",
            "invalid value '0' for '--max-sessions <N>'",
        ),
    ];
    for (args, stdin, message) in cases {
        admin.refuses(args, stdin, message).await;
    }
    assert!(!admin.home("bob").exists(), "no home for a refused account");
    // Both ways of giving a password at once is a usage error.
    let stderr = refused(
        &admin
            .run_with(
                &["add", "bob", "--password-stdin", "--random-password"],
                "x\n",
            )
            .await,
    );
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_keeps_the_home_unless_purged() {
    let admin = Admin::new();
    admin.add_with_password("alice", "pw").await;
    admin.add_with_password("bob", "pw").await;
    fs::write(admin.home("alice").join("file"), b"data").unwrap();
    fs::write(admin.home("bob").join("file"), b"data").unwrap();
    for user in ["alice", "bob"] {
        fs::write(admin.staging(user).join("p"), b"partial").unwrap();
    }

    let out = succeeded(&admin.run(&["del", "alice"]).await);
    assert!(out.contains("Deleted user alice"), "{out}");
    assert!(out.contains("was kept; delete it with --purge"), "{out}");
    assert!(admin.config().get("alice").is_none());
    assert!(admin.home("alice").join("file").exists());
    assert!(admin.staging("alice").join("p").exists());

    let out = succeeded(&admin.run(&["del", "bob", "--purge"]).await);
    assert!(out.contains("Removed their home"), "{out}");
    assert!(out.contains("Removed their partial uploads"), "{out}");
    assert!(!admin.home("bob").exists());
    assert!(!admin.staging("bob").exists());
    assert!(admin.staging("alice").join("p").exists());
    assert!(admin.config().is_empty());

    admin
        .refuses(&["del", "alice"], "", "no user \"alice\"")
        .await;
    admin
        .refuses(
            &["del", "../storage", "--purge"],
            "",
            "no user \"../storage\"",
        )
        .await;
    assert!(admin.root().join("storage").is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwd_replaces_the_password() {
    let admin = Admin::new();
    admin.add_with_password("alice", "old password").await;
    let out = succeeded(
        &admin
            .run_with(&["passwd", "alice", "--password-stdin"], "new password\r\n")
            .await,
    );
    assert_eq!(out, "Password of alice changed.\n");
    let alice = admin.config().get("alice").unwrap().clone();
    let hash = alice.password_hash.as_ref().unwrap();
    assert!(verify_password(hash, &Secret::new("new password")));
    assert!(!verify_password(hash, &Secret::new("old password")));

    admin
        .refuses(
            &["passwd", "nobody", "--password-stdin"],
            "pw\n",
            "no user \"nobody\"",
        )
        .await;
    admin
        .refuses(
            &["passwd", "alice"],
            "",
            "standard input is not a terminal to ask on: use --password-stdin",
        )
        .await;
    admin
        .refuses(
            &["passwd", "alice", "--password-stdin"],
            "",
            "the password is empty",
        )
        .await;
    let long = "x".repeat(5000);
    admin
        .refuses(
            &["passwd", "alice", "--password-stdin"],
            &long,
            "the password is longer than 4096 bytes",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_sets_the_size() {
    let admin = Admin::new();
    admin.add_with_password("alice", "pw").await;
    let out = succeeded(&admin.run(&["quota", "alice", "2.5 GiB"]).await);
    assert_eq!(out, "Quota of alice set to 2.5 GiB.\n");
    assert_eq!(admin.config().get("alice").unwrap().quota, 5 << 29);
    assert!(admin.text().contains("quota = \"2.5 GiB\""));

    // Below what the user has: allowed, and said. 3000 bytes count a 4 KiB block.
    fs::write(admin.home("alice").join("f"), vec![0u8; 3000]).unwrap();
    let out = succeeded(&admin.run(&["quota", "alice", "1KiB"]).await);
    assert!(
        out.contains("alice uses 4 KiB, more than that: uploads are refused"),
        "{out}"
    );

    admin
        .refuses(
            &["quota", "alice", "12 parsecs"],
            "",
            "quota \"12 parsecs\": unknown unit \"parsecs\"",
        )
        .await;
    admin
        .refuses(
            &["quota", "alice", "--", "-5"],
            "",
            "quota \"-5\": size cannot be negative",
        )
        .await;
    admin
        .refuses(&["quota", "nobody", "1GiB"], "", "no user \"nobody\"")
        .await;
    admin
        .refuses(
            &["quota", "alice"],
            "",
            "required arguments were not provided",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_added_listed_and_removed() {
    let admin = Admin::new();
    admin.add_with_password("alice", "pw").await;
    let (laptop, laptop_pub) = new_key(admin.root(), "laptop");
    let (phone, phone_pub) = new_key(admin.root(), "phone");
    let (in_file, in_file_pub) = new_key(admin.root(), "desk");

    let out = succeeded(
        &admin
            .run(&["key", "add", "alice", laptop_pub.to_str().unwrap()])
            .await,
    );
    assert_eq!(
        out,
        format!(
            "Added key {} (laptop@test) to alice.\n",
            laptop.fingerprint()
        )
    );
    succeeded(
        &admin
            .run_with(
                &["key", "add", "alice", "-"],
                &fs::read_to_string(&phone_pub).unwrap(),
            )
            .await,
    );
    let keys = admin.config().get("alice").unwrap().keys.clone();
    assert!(keys.len() == 2 && keys[1].matches(phone.public_key()));

    // A key from an authorized_keys_file is listed, but not removed from there.
    fs::copy(&in_file_pub, admin.root().join("alice.keys")).unwrap();
    let text = admin.text().replace(
        "[users.alice]\n",
        "[users.alice]\nauthorized_keys_file = \"alice.keys\"\n",
    );
    fs::write(admin.users_file(), text).unwrap();

    let out = succeeded(&admin.run(&["key", "list", "alice"]).await);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    // In the order the account's fields are written: its keys file first here.
    assert!(
        lines[0].starts_with(&in_file.fingerprint()) && lines[0].ends_with("alice.keys)"),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{}  ssh-ed25519  laptop@test  (",
            laptop.fingerprint()
        )) && lines[1].ends_with("users.toml)"),
        "{out}"
    );
    assert!(
        lines[2].starts_with(&phone.fingerprint()) && lines[2].ends_with("users.toml)"),
        "{out}"
    );

    let out = succeeded(
        &admin
            .run(&["key", "rm", "alice", &laptop.fingerprint()])
            .await,
    );
    assert_eq!(
        out,
        format!(
            "Removed key {} (laptop@test) from alice.\n",
            laptop.fingerprint()
        )
    );
    let keys = admin.config().get("alice").unwrap().keys.clone();
    assert_eq!(keys.len(), 2);
    assert!(!keys.iter().any(|k| k.matches(laptop.public_key())));
    let out = succeeded(&admin.run(&["show", "alice"]).await);
    assert!(out.contains("keys       2\n"), "{out}");

    let bad = admin.root().join("bad.pub");
    fs::write(&bad, "# only a comment\n").unwrap();
    let cases: [(&[&str], &str, String); 7] = [
        (
            &["key", "add", "alice", phone_pub.to_str().unwrap()],
            "",
            format!("user \"alice\" already has the key {}", phone.fingerprint()),
        ),
        (
            &["key", "add", "alice", bad.to_str().unwrap()],
            "",
            "bad.pub: no public key in it".into(),
        ),
        (
            &["key", "add", "alice", "-"],
            "ssh-rsa garbage\n",
            "standard input:1: not a public key line".into(),
        ),
        (
            &["key", "add", "nobody", laptop_pub.to_str().unwrap()],
            "",
            "no user \"nobody\"".into(),
        ),
        (
            &["key", "rm", "alice", &laptop.fingerprint()],
            "",
            format!("user \"alice\" has no key {}", laptop.fingerprint()),
        ),
        (
            &["key", "rm", "alice", &in_file.fingerprint()],
            "",
            format!(
                "the key {} of user \"alice\" comes from {}; remove it from that file",
                in_file.fingerprint(),
                admin.root().join("alice.keys").display()
            ),
        ),
        (&["key", "list", "nobody"], "", "no user \"nobody\"".into()),
    ];
    for (args, stdin, message) in cases {
        admin.refuses(args, stdin, &message).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_show_report_usage_measured_on_disk() {
    let admin = Admin::new();
    admin.add_with_password("alice", "pw").await;
    let (key, pub_file) = new_key(admin.root(), "bob");
    succeeded(
        &admin
            .run(&[
                "add",
                "bob",
                "--key",
                pub_file.to_str().unwrap(),
                "--quota",
                "1MiB",
                "--max-sessions",
                "2",
            ])
            .await,
    );
    // Files and partial uploads count, though partials wait outside the home.
    fs::create_dir(admin.home("bob").join("d")).unwrap();
    fs::write(admin.home("bob").join("d/f"), vec![0u8; 1 << 20]).unwrap();
    fs::write(
        admin.staging("bob").join("x"),
        vec![0u8; (512 << 10) - 4096],
    )
    .unwrap();
    // An account whose home the server has not created yet.
    let text = admin.text() + "\n[users.carol]\nquota = \"5GiB\"\n";
    fs::write(admin.users_file(), text).unwrap();

    let out = succeeded(&admin.run(&["list"]).await);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        rows,
        [
            vec!["NAME", "USED", "QUOTA", "KEYS", "PASSWORD", "SESSIONS"],
            vec!["alice", "0 B", "1 GiB", "0", "yes", "-"],
            vec!["bob", "1.5 MiB", "1 MiB", "1", "no", "2"],
            vec!["carol", "-", "5 GiB", "0", "no", "-"],
        ],
        "{out}"
    );
    assert!(!admin.home("carol").exists(), "list creates nothing");

    let out = succeeded(&admin.run(&["show", "bob"]).await);
    for want in [
        "user       bob\n".to_owned(),
        "usage      1.5 MiB of 1 MiB (150%); OVER QUOTA: uploads are refused\n".to_owned(),
        "password   none (password login refused)\n".to_owned(),
        "sessions   at most 2 at once\n".to_owned(),
        "keys       1\n".to_owned(),
        format!("  {}  ssh-ed25519  bob@test  (", key.fingerprint()),
    ] {
        assert!(out.contains(&want), "{want:?} not in {out}");
    }
    let out = succeeded(&admin.run(&["show", "alice"]).await);
    assert!(
        out.contains("usage      0 B of 1 GiB (0%); 1 GiB free\n")
            && out.contains("password   set\n")
            && out.contains("sessions   the server's limit")
            && out.contains("keys       0\n"),
        "{out}"
    );
    let out = succeeded(&admin.run(&["show", "carol"]).await);
    assert!(out.contains("(not created yet)"), "{out}");

    admin
        .refuses(&["show", "nobody"], "", "no user \"nobody\"")
        .await;
    // A broken file is reported with its line, by every command.
    fs::write(admin.users_file(), "[users.a]\nquota = \"12 parsecs\"\n").unwrap();
    for args in [&["list"][..], &["show", "a"], &["quota", "a", "1GiB"]] {
        admin
            .refuses(args, "", "the accounts file is invalid; fix it first: ")
            .await;
        admin
            .refuses(args, "", "users.toml:2: user \"a\": quota")
            .await;
    }
    fs::remove_file(admin.users_file()).unwrap();
    admin
        .refuses(&["list"], "", "users.toml does not exist")
        .await;
    admin
        .refuses(&["del", "a"], "", "users.toml does not exist")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_survive_every_edit() {
    let admin = Admin::new();
    create_starter_file(&admin.users_file()).unwrap();
    let mut text = admin.text();
    text = text.replace(
        "[users.demo]\n",
        "# the demo account, for trying things out\n[users.demo] # made by rsftpd\n",
    );
    text.push_str("# notes at the end\n");
    fs::write(admin.users_file(), &text).unwrap();
    let comments: Vec<String> = text
        .lines()
        .filter_map(|line| line.find('#').map(|i| line[i..].to_owned()))
        .collect();
    assert!(comments.len() > 30);

    let (key, pub_file) = new_key(admin.root(), "k");
    let steps: [&[&str]; 6] = [
        &["add", "alice", "--random-password"],
        &["quota", "demo", "2GiB"],
        &["key", "add", "demo", pub_file.to_str().unwrap()],
        &["key", "rm", "demo", &key.fingerprint()],
        &["add", "bob", "--key", pub_file.to_str().unwrap()],
        &["del", "alice"],
    ];
    for step in steps {
        succeeded(&admin.run(step).await);
        let now = admin.text();
        for comment in &comments {
            assert!(
                now.contains(comment.as_str()),
                "{step:?} lost {comment:?}:\n{now}"
            );
        }
    }
    let now = admin.text();
    assert!(now.starts_with("# rsftpd accounts.\n"), "{now}");
    assert!(
        now.contains("# the demo account, for trying things out\n[users.demo] # made by rsftpd\n")
    );
    let config = admin.config();
    assert_eq!(config.get("demo").unwrap().quota, 2 << 30);
    assert!(config.get("bob").is_some() && config.get("alice").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_edits_lose_nothing() {
    let admin = Admin::new();
    let (_, pub_file) = new_key(admin.root(), "k");
    let root = admin.root().to_owned();
    let pub_file = pub_file.to_str().unwrap().to_owned();
    let writers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|prefix| {
            let (root, pub_file) = (root.clone(), pub_file.clone());
            tokio::spawn(async move {
                for i in 0..20 {
                    let name = format!("{prefix}{i}");
                    let args = ["add", name.as_str(), "--key", pub_file.as_str()];
                    succeeded(&user_command(&root, &args, b"").await);
                }
            })
        })
        .collect();
    for writer in writers {
        tokio::time::timeout(Duration::from_secs(120), writer)
            .await
            .expect("in time")
            .expect("no panic");
    }
    let config = admin.config();
    assert_eq!(config.len(), 40);
    for prefix in ["a", "b"] {
        for i in 0..20 {
            let name = format!("{prefix}{i}");
            assert!(config.get(&name).is_some(), "{name} was lost");
            assert!(admin.home(&name).is_dir());
        }
    }
    // Only the file and its lock are left: no temporary files.
    let mut names: Vec<String> = fs::read_dir(admin.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("users"))
        .collect();
    names.sort();
    assert_eq!(names, ["users.toml", "users.toml.lock"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_describes_every_command() {
    let help = succeeded(&rsftpd(&["--help"], b"").await);
    for want in [
        "serve",
        "user",
        "--listen",
        "--max-sessions-per-user",
        "--partial-max-age-hours",
    ] {
        assert!(help.contains(want), "{want} not in --help");
    }
    let help = succeeded(&rsftpd(&["user", "--help"], b"").await);
    for want in [
        "add",
        "del",
        "passwd",
        "quota",
        "key",
        "list",
        "show",
        "--users",
        "--storage",
        "Examples:",
    ] {
        assert!(help.contains(want), "{want} not in user --help");
    }
    for command in [
        &["user", "add", "--help"][..],
        &["user", "del", "--help"],
        &["user", "passwd", "--help"],
        &["user", "quota", "--help"],
        &["user", "key", "--help"],
        &["user", "key", "add", "--help"],
        &["user", "key", "rm", "--help"],
        &["user", "key", "list", "--help"],
        &["user", "list", "--help"],
        &["user", "show", "--help"],
        &["serve", "--help"],
    ] {
        let help = succeeded(&rsftpd(command, b"").await);
        assert!(help.contains("Usage: rsftpd"), "{command:?}: {help}");
    }
    let help = succeeded(&rsftpd(&["user", "add", "--help"], b"").await);
    for want in [
        "--key <FILE|->",
        "--password-stdin",
        "--random-password",
        "--quota <SIZE>",
        "[default: 1GiB]",
        "--max-sessions <N>",
    ] {
        assert!(help.contains(want), "{want} not in user add --help");
    }

    // Server flags belong to serving, not to `user`.
    let stderr = refused(&rsftpd(&["--listen", "127.0.0.1:0", "user", "list"], b"").await);
    assert!(stderr.contains("error:"), "{stderr}");
    let stderr = refused(&rsftpd(&["user", "frobnicate"], b"").await);
    assert!(
        stderr.contains("unrecognized subcommand 'frobnicate'"),
        "{stderr}"
    );
}
