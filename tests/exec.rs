//! `ssh host md5sum ...` and `ssh host sha256sum ...`: the only commands rsftpd runs,
//! with output that matches coreutils run in the home on the same names.

use std::process::Command;

use crate::sshd::text;
use crate::util::{TestServer, TestUser, data, run_with_input};

async fn ssh(server: &TestServer, command: &str) -> std::process::Output {
    let mut args = server.openssh_args("alice", "-p");
    args.extend(["127.0.0.1".into(), command.into()]);
    run_with_input("ssh", &args, b"").await
}

fn local(program: &str, dir: &std::path::Path, names: &[&str]) -> std::process::Output {
    Command::new(program)
        .current_dir(dir)
        .args(names)
        .output()
        .expect("run coreutils")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_match_coreutils_run_in_the_home() {
    let server = TestServer::start(&[TestUser::new("alice", "100MiB")]).await;
    let home = server.home("alice");
    std::fs::create_dir(home.join("d")).unwrap();
    std::fs::write(home.join("a.txt"), b"hello\n").unwrap();
    std::fs::write(home.join("sp ace.txt"), b"space").unwrap();
    std::fs::write(home.join("d/big.bin"), data(3 * 1024 * 1024 + 1, 1)).unwrap();
    std::fs::write(home.join("back\\slash"), b"odd name").unwrap();
    std::fs::write(home.join("it's"), b"quote").unwrap();
    std::fs::write(home.join("empty"), b"").unwrap();
    let names = [
        "a.txt",
        "sp ace.txt",
        "d/big.bin",
        "back\\slash",
        "it's",
        "empty",
    ];
    let quoted = r#"a.txt 'sp ace.txt' d/big.bin 'back\slash' "it's" empty"#;
    for program in ["md5sum", "sha256sum"] {
        let remote = ssh(&server, &format!("{program} {quoted}")).await;
        let expected = local(program, &home, &names);
        assert!(expected.status.success());
        assert_eq!(
            text(&remote.stdout),
            text(&expected.stdout),
            "{program}: {}",
            text(&remote.stderr)
        );
        assert_eq!(remote.status.code(), Some(0));
        assert!(remote.stderr.is_empty(), "{}", text(&remote.stderr));
    }
    // Leading `/` is the home, and `--` ends options.
    let remote = ssh(&server, "md5sum -- /a.txt").await;
    let expected = local("md5sum", &home, &["a.txt"]);
    assert_eq!(
        text(&remote.stdout).replace("/a.txt", "a.txt"),
        text(&expected.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_is_reported_like_coreutils_and_the_others_still_hashed() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let home = server.home("alice");
    std::fs::write(home.join("a"), b"a").unwrap();
    std::fs::write(home.join("b"), b"b").unwrap();
    std::fs::create_dir(home.join("dir")).unwrap();
    let remote = ssh(&server, "md5sum a nosuch b dir").await;
    let expected = local("md5sum", &home, &["a", "nosuch", "b", "dir"]);
    assert_eq!(remote.status.code(), Some(1));
    assert_eq!(expected.status.code(), Some(1));
    assert_eq!(text(&remote.stdout), text(&expected.stdout));
    assert_eq!(text(&remote.stderr), text(&expected.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_outside_the_home_are_not_hashed() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let home = server.home("alice");
    let secret = server.root().join("secret.txt");
    std::fs::write(&secret, b"secret").unwrap();
    std::os::unix::fs::symlink(&secret, home.join("abs")).unwrap();
    std::os::unix::fs::symlink("../../secret.txt", home.join("rel")).unwrap();
    let secret_md5 = crate::util::md5_hex(b"secret");
    for command in [
        "md5sum /etc/passwd",
        "md5sum ../../../../etc/passwd",
        "md5sum abs",
        "md5sum rel",
        "sha256sum abs",
        "md5sum .rsftp-partial/x",
    ] {
        let output = ssh(&server, command).await;
        assert_eq!(output.status.code(), Some(1), "{command}");
        assert!(
            output.stdout.is_empty(),
            "{command}: {}",
            text(&output.stdout)
        );
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("No such file or directory") || stderr.contains("Permission denied"),
            "{command}: {stderr}"
        );
        assert!(!stderr.contains(&secret_md5));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_commands_and_shell_syntax_are_refused() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    std::fs::write(server.home("alice").join("a"), b"a").unwrap();
    for (command, says) in [
        ("cat a", "rsftpd runs no commands but md5sum and sha256sum"),
        ("md5sum a; cat a", "shell syntax"),
        ("md5sum *", "shell syntax"),
        ("md5sum $(id)", "shell syntax"),
        ("md5sum 'a", "unterminated quote"),
        ("md5sum -c sums", "not supported"),
        ("md5sum", "name at least one file"),
    ] {
        let output = ssh(&server, command).await;
        assert_eq!(output.status.code(), Some(1), "{command}");
        assert!(output.stdout.is_empty(), "{command}");
        assert!(
            text(&output.stderr).contains(says),
            "{command}: {}",
            text(&output.stderr)
        );
    }
}
