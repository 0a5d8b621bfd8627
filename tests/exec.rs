//! `ssh host md5sum ...` (and `sha1sum`, `sha256sum`, `sha512sum`): the only commands
//! rsftpd runs, with output that matches coreutils run in the home on the same names
//! or on the same standard input.

use std::process::{Command, Stdio};

use crate::sshd::text;
use crate::util::{TestServer, TestUser, data, run_with_input};

const PROGRAMS: [&str; 4] = ["md5sum", "sha1sum", "sha256sum", "sha512sum"];

async fn ssh(server: &TestServer, command: &str) -> std::process::Output {
    ssh_with_input(server, command, b"").await
}

async fn ssh_with_input(server: &TestServer, command: &str, input: &[u8]) -> std::process::Output {
    let mut args = server.openssh_args("alice", "-p");
    args.extend(["127.0.0.1".into(), command.into()]);
    run_with_input("ssh", &args, input).await
}

fn local(program: &str, dir: &std::path::Path, names: &[&str]) -> std::process::Output {
    local_with_input(program, dir, names, b"")
}

/// coreutils itself, run in `dir` with `input` on stdin.
fn local_with_input(
    program: &str,
    dir: &std::path::Path,
    names: &[&str],
    input: &[u8],
) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(program)
        .current_dir(dir)
        .args(names)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run coreutils");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().expect("coreutils finishes")
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
    for program in PROGRAMS {
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

/// rclone finds the hash commands by running them with nothing on stdin, and expects
/// coreutils' answer for empty input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_input_is_hashed_like_coreutils() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let home = server.home("alice");
    std::fs::write(home.join("a"), b"file a").unwrap();
    let big = data(5 * 1024 * 1024 + 3, 7);
    for program in PROGRAMS {
        for (args, input) in [
            (&[][..], &b""[..]),
            (&[][..], b"some input\n"),
            (&["-"][..], &big[..]),
            (&["a", "-", "a"][..], b"between"),
            // Standard input is read once: the second `-` finds it at its end.
            (&["-", "-"][..], b"twice?"),
            (&["--", "-"][..], b"after --"),
        ] {
            let command = [&[program][..], args].concat().join(" ");
            let remote = ssh_with_input(&server, &command, input).await;
            let expected = local_with_input(program, &home, args, input);
            assert!(expected.status.success(), "{command}");
            assert_eq!(
                text(&remote.stdout),
                text(&expected.stdout),
                "{command}: {}",
                text(&remote.stderr)
            );
            assert_eq!(remote.status.code(), Some(0), "{command}");
        }
    }
    // Exactly what rclone compares against.
    let probe = ssh(&server, "md5sum").await;
    assert_eq!(text(&probe.stdout), "d41d8cd98f00b204e9800998ecf8427e  -\n");
    let probe = ssh(&server, "sha1sum").await;
    assert_eq!(
        text(&probe.stdout),
        "da39a3ee5e6b4b0d3255bfef95601890afd80709  -\n"
    );
}

/// The quoting rclone (backslashes) and OpenSSH users (quotes) send for awkward names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_quoted_as_clients_send_them_hash_like_coreutils() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let home = server.home("alice");
    std::fs::create_dir_all(home.join("dir/sub dir")).unwrap();
    let names = [
        "dir/a b.txt",
        "dir/sub dir/it's (1) & $x.txt",
        "dir/back\\slash",
        "dir/ünïcødé  two  spaces",
    ];
    for (i, name) in names.iter().enumerate() {
        std::fs::write(home.join(name), data(1000 + i, i as u64)).unwrap();
    }
    let forms = [
        // rclone 1.60: a backslash before every character that is not plainly safe.
        r#"md5sum /dir/a\ b.txt"#,
        r#"md5sum "/dir/a b.txt""#,
        r#"md5sum '/dir/a b.txt'"#,
        r#"md5sum /dir/sub\ dir/it\'s\ \(1\)\ \&\ \$x.txt"#,
        r#"md5sum "/dir/sub dir/it's (1) & \$x.txt""#,
        r#"md5sum '/dir/back\slash'"#,
        r#"md5sum /dir/back\\slash"#,
        r#"md5sum "/dir/ünïcødé  two  spaces""#,
    ];
    let local_names = [0, 0, 0, 1, 1, 2, 2, 3];
    for (form, &index) in forms.iter().zip(&local_names) {
        for program in PROGRAMS {
            let command = form.replacen("md5sum", program, 1);
            let remote = ssh(&server, &command).await;
            // Run in the home with the name relative; rclone's names start at `/`.
            let expected = local(program, &home, &[names[index]]);
            assert_eq!(
                text(&remote.stdout).replacen("  /dir/", "  dir/", 1),
                text(&expected.stdout),
                "{command}: {}",
                text(&remote.stderr)
            );
            assert_eq!(remote.status.code(), Some(0), "{command}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_is_reported_like_coreutils_and_the_others_still_hashed() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let home = server.home("alice");
    std::fs::write(home.join("a"), b"a").unwrap();
    std::fs::write(home.join("b"), b"b").unwrap();
    std::fs::create_dir(home.join("dir")).unwrap();
    for program in PROGRAMS {
        let remote = ssh(
            &server,
            &format!("{program} a nosuch b dir 'sp ace' \"it's\""),
        )
        .await;
        let expected = local(
            program,
            &home,
            &["a", "nosuch", "b", "dir", "sp ace", "it's"],
        );
        assert_eq!(remote.status.code(), Some(1));
        assert_eq!(expected.status.code(), Some(1));
        assert_eq!(text(&remote.stdout), text(&expected.stdout));
        assert_eq!(text(&remote.stderr), text(&expected.stderr));
    }
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
        "sha1sum rel",
        "sha512sum ../secret.txt",
        "sha1sum /../../secret.txt",
        "md5sum ../.partials/alice/x",
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
        (
            "cat a",
            "rsftpd runs no commands but md5sum, sha1sum, sha256sum, sha512sum and scp",
        ),
        ("md5sum a; cat a", "shell syntax"),
        ("md5sum *", "shell syntax"),
        ("md5sum $(id)", "shell syntax"),
        ("md5sum 'a", "unterminated quote"),
        ("md5sum -c sums", "not supported"),
        ("sha1sum -c sums", "not supported"),
        ("sha512sum --tag a", "not supported"),
        ("sha384sum a", "rsftpd runs no commands"),
        ("md5 -r a", "rsftpd runs no commands"),
        ("sha1sum a && cat a", "shell syntax"),
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
