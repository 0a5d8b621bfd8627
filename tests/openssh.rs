//! OpenSSH's own `ssh` as a client of the rsftp subsystem, the way a person scripts it.

use crate::util::{TestServer, TestUser, md5_hex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printf_pwd_ls_through_ssh_s_works() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    std::fs::write(server.home("alice").join("hello.txt"), b"hello\n").unwrap();
    std::fs::create_dir(server.home("alice").join("docs")).unwrap();
    let output = server.ssh_subsystem("alice", b"pwd\nls\n").await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ssh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("OK rsftp/1 rsftpd/"), "{stdout}");
    assert_eq!(lines[1], "OK /");
    assert_eq!(lines[2], "OK 2");
    assert!(
        lines[3].starts_with("d ") && lines[3].ends_with(" docs"),
        "{stdout}"
    );
    assert!(
        lines[4].starts_with("f 6 ") && lines[4].ends_with(" hello.txt"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_and_get_typed_by_hand_through_ssh_s() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let md5 = md5_hex(b"hello\n");
    let script = format!("put hello.txt 6 -\nfrom 0\nhello\ndone {md5}\nget hello.txt\nquit\n");
    let output = server.ssh_subsystem("alice", script.as_bytes()).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected = format!(
        "OK have 0 d41d8cd98f00b204e9800998ecf8427e\nOK {md5} 6\nOK 6 6\nhello\nOK {md5}\nOK bye\n"
    );
    assert!(stdout.ends_with(&expected), "{stdout}");
    assert_eq!(
        std::fs::read(server.home("alice").join("hello.txt")).unwrap(),
        b"hello\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_and_exec_are_refused_with_a_message() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let mut args = server.openssh_args("alice", "-p");
    args.extend(["127.0.0.1".into(), "cat /etc/passwd".into()]);
    let output = crate::util::run_with_input("ssh", &args, b"").await;
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("rsftpd runs no commands"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_logs_in_with_a_password_too() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    // OpenSSH reads a password only from a terminal or SSH_ASKPASS; give it the latter.
    let askpass = server.root().join("askpass.sh");
    std::fs::write(
        &askpass,
        format!("#!/bin/sh\necho '{}'\n", crate::util::PASSWORD),
    )
    .unwrap();
    std::fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    // BatchMode forbids asking for a password, so turn it off here.
    let mut args: Vec<String> = server
        .openssh_args("alice", "-p")
        .into_iter()
        .map(|a| {
            if a == "BatchMode=yes" {
                "BatchMode=no".into()
            } else {
                a
            }
        })
        .collect();
    args.extend([
        "-o".into(),
        "PubkeyAuthentication=no".into(),
        "-o".into(),
        "PreferredAuthentications=password".into(),
        "-s".into(),
        "127.0.0.1".into(),
        "rsftp".into(),
    ]);
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("ssh")
            .args(&args)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(b"pwd\n")?;
                child.wait_with_output()
            })
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("OK /"),
        "stdout {stdout:?} stderr {:?}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paramiko_logs_in_with_a_password_and_with_a_key() {
    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let script = r#"
import sys, paramiko
port, password, key_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
for how in ("password", "key"):
    t = paramiko.Transport(("127.0.0.1", port))
    if how == "password":
        t.connect(username="alice", password=password)
    else:
        t.connect(username="alice", pkey=paramiko.Ed25519Key.from_private_key_file(key_path))
    ch = t.open_session()
    ch.invoke_subsystem("rsftp")
    ch.sendall(b"pwd\nquit\n")
    data = b""
    while True:
        chunk = ch.recv(4096)
        if not chunk:
            break
        data += chunk
    print(how, data.decode().splitlines()[1])
    t.close()
try:
    t = paramiko.Transport(("127.0.0.1", port))
    t.connect(username="alice", password="wrong")
    print("wrong password accepted")
except paramiko.AuthenticationException:
    print("wrong password refused")
"#;
    let args = vec![
        "-c".to_owned(),
        script.to_owned(),
        server.addr.port().to_string(),
        crate::util::PASSWORD.to_owned(),
        crate::util::key_path(server.root(), "alice")
            .display()
            .to_string(),
    ];
    let output = crate::util::run_with_input("python3", &args, b"").await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout,
        "password OK /\nkey OK /\nwrong password refused\n",
        "paramiko: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
