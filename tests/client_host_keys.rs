//! Host keys in the `rsftp` binary: an unknown key is refused unless accepted (and is
//! then remembered, in a form OpenSSH reads too); a changed key is always refused.

use russh::keys::{Algorithm, PrivateKey};

use crate::client_support::{ClientHome, expect_status, run};
use crate::util::{TestServer, TestUser, key_path};

async fn alice() -> TestServer {
    TestServer::start(&[TestUser::new("alice", "10MiB")]).await
}

/// `rsftp` for alice with her key and the given known_hosts file, running `pwd`.
fn pwd(
    client: &ClientHome,
    server: &TestServer,
    known_hosts: &std::path::Path,
) -> tokio::process::Command {
    let mut cmd = client.bare(server, "alice");
    cmd.arg("-i")
        .arg(key_path(server.root(), "alice"))
        .arg("--known-hosts")
        .arg(known_hosts);
    cmd
}

fn host_fingerprint(server: &TestServer) -> String {
    let public =
        std::fs::read_to_string(server.root().join("keys/ssh_host_ed25519_key.pub")).unwrap();
    russh::keys::PublicKey::from_openssh(public.trim())
        .unwrap()
        .fingerprint(russh::keys::HashAlg::Sha256)
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_is_refused_without_consent() {
    let server = alice().await;
    let client = ClientHome::new();
    let known_hosts = client.home().join("known_hosts");

    let mut cmd = pwd(&client, &server, &known_hosts);
    cmd.arg("pwd");
    let (out, err) = expect_status(&run(cmd).await, 255);
    assert_eq!(out, "");
    assert!(
        err.contains(&format!("[127.0.0.1]:{} is not known", server.addr.port())),
        "{err}"
    );
    assert!(
        err.contains(&host_fingerprint(&server)),
        "shows the fingerprint: {err}"
    );
    assert!(err.contains("--accept-new-host-key"), "{err}");
    assert!(!known_hosts.exists() || std::fs::read(&known_hosts).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_key_is_remembered_where_openssh_finds_it_too() {
    let server = alice().await;
    let client = ClientHome::new();
    // Start from nothing known; the harness's own file is what OpenSSH will read later.
    std::fs::write(&server.known_hosts, "").unwrap();

    let mut cmd = pwd(&client, &server, &server.known_hosts);
    cmd.args(["--accept-new-host-key", "pwd"]);
    let (out, err) = expect_status(&run(cmd).await, 0);
    assert_eq!(out, "/\n");
    assert!(err.contains("trusting the new host key"), "{err}");
    assert!(err.contains(&host_fingerprint(&server)), "{err}");
    let remembered = std::fs::read_to_string(&server.known_hosts).unwrap();
    let line = format!("[127.0.0.1]:{} ssh-ed25519 ", server.addr.port());
    assert!(
        remembered.lines().any(|l| l.starts_with(&line)),
        "{remembered}"
    );

    // Next time it is simply known.
    let mut cmd = pwd(&client, &server, &server.known_hosts);
    cmd.arg("pwd");
    let (out, err) = expect_status(&run(cmd).await, 0);
    assert_eq!((out.as_str(), err.as_str()), ("/\n", ""));

    // And the line is one OpenSSH accepts with StrictHostKeyChecking=yes: it would not
    // get as far as the greeting otherwise.
    let output = server.ssh_subsystem("alice", b"pwd\n").await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("OK rsftp/1 ") && text.contains("\nOK /\n"),
        "{text} {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_key_is_refused_loudly_even_when_accepting_new_ones() {
    let server = alice().await;
    let client = ClientHome::new();
    let impostor = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    let known_hosts = client.home().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{} {}\n",
            server.addr.port(),
            impostor.public_key().to_openssh().unwrap()
        ),
    )
    .unwrap();
    let before = std::fs::read(&known_hosts).unwrap();

    for accept in [false, true] {
        let mut cmd = pwd(&client, &server, &known_hosts);
        if accept {
            cmd.arg("--accept-new-host-key");
        }
        cmd.arg("pwd");
        let (out, err) = expect_status(&run(cmd).await, 255);
        assert_eq!(out, "");
        assert!(err.contains("HOST KEY OF [127.0.0.1]"), "{err}");
        assert!(err.contains("HAS CHANGED"), "{err}");
        assert!(err.contains(&host_fingerprint(&server)), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }
    assert_eq!(
        std::fs::read(&known_hosts).unwrap(),
        before,
        "known_hosts untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_type_on_record_counts_as_changed() {
    let server = alice().await;
    let client = ClientHome::new();
    // known_hosts holds an ECDSA key for the server, which shows its ed25519 key.
    let keygen_dir = tempfile::tempdir().unwrap();
    let key_file = keygen_dir.path().join("k");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ecdsa", "-N", "", "-f"])
        .arg(&key_file)
        .status()
        .unwrap();
    assert!(status.success());
    let ecdsa = std::fs::read_to_string(key_file.with_extension("pub")).unwrap();
    let known_hosts = client.home().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {}", server.addr.port(), ecdsa.trim()),
    )
    .unwrap();
    let mut cmd = pwd(&client, &server, &known_hosts);
    cmd.args(["--accept-new-host-key", "pwd"]);
    let (out, err) = expect_status(&run(cmd).await, 255);
    assert_eq!(out, "");
    assert!(err.contains("HAS CHANGED"), "{err}");
}
