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
