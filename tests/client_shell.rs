//! The interactive shell in a real pseudo-terminal (tmux): completion, a progress bar
//! that shows while a file moves and is gone when it is done, the verified line, and
//! history kept for the next run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::client_support::{ClientHome, big_file};
use crate::util::{TestServer, TestUser, key_path, md5_hex};

/// A tmux server of our own (its own socket), with one session running `command`.
struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn start(dir: &Path, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: dir.join("tmux.sock"),
        };
        let status = tmux
            .cmd()
            .args([
                "new-session",
                "-d",
                "-x",
                "200",
                "-y",
                "50",
                "-s",
                "rsftp",
                command,
            ])
            .status()
            .expect("tmux runs");
        assert!(status.success(), "tmux new-session");
        tmux
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S").arg(&self.socket);
        cmd
    }

    fn keys(&self, keys: &[&str]) {
        let status = self
            .cmd()
            .args(["send-keys", "-t", "rsftp"])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    fn screen(&self) -> String {
        let output = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "rsftp"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Polls the screen every 20 ms, for at most `limit`, until `ready` accepts it.
    async fn wait_for(&self, limit: Duration, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < limit,
                "waited {limit:?} for {what}; the screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Types a command once the prompt `prompt` is the last thing on the screen.
    async fn command(&self, prompt: &str, line: &str) {
        self.wait_for(Duration::from_secs(30), prompt, |s| {
            s.trim_end().ends_with(prompt.trim_end())
        })
        .await;
        self.keys(&[line, "Enter"]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_session_in_a_terminal() {
    // scripts/test installs tmux; without it this test cannot run, and must not pass.
    assert!(
        Tmux::available(),
        "tmux is not installed: run ./scripts/test, which installs it"
    );
    let server = TestServer::start(&[TestUser::new("alice", "1GiB")]).await;
    std::fs::create_dir(server.home("alice").join("docs")).unwrap();
    std::fs::write(server.home("alice").join("hello.txt"), b"hello").unwrap();
    let client = ClientHome::new();
    let local = client.work.join("big.bin");
    big_file(&local, 128, 11);
    let md5 = md5_hex(&std::fs::read(&local).unwrap());

    let command = format!(
        "cd '{work}' && HOME='{home}' SSH_AUTH_SOCK= '{bin}' alice@127.0.0.1:{port} -i '{key}' \
         --known-hosts '{known}'; echo RSFTP-EXIT=$?; sleep 60",
        work = client.work.display(),
        home = client.home().display(),
        bin = env!("CARGO_BIN_EXE_rsftp"),
        port = server.addr.port(),
        key = key_path(server.root(), "alice").display(),
        known = server.known_hosts.display(),
    );
    let tmux = Tmux::start(client.home(), &command);
    let long = Duration::from_secs(60);

    tmux.command("rsftp:/>", "ls").await;
    tmux.wait_for(long, "the listing", |s| {
        s.contains("docs/") && s.contains("hello.txt")
    })
    .await;

    // Completion of a remote directory name.
    tmux.wait_for(long, "the prompt", |s| s.trim_end().ends_with("rsftp:/>"))
        .await;
    tmux.keys(&["cd do", "Tab"]);
    tmux.wait_for(long, "completion", |s| s.contains("cd docs/"))
        .await;
    tmux.keys(&["Enter"]);

    tmux.command("rsftp:/docs>", "put big.bin").await;
    let bar = tmux
        .wait_for(long, "a progress bar", |s| {
            s.lines()
                .any(|l| l.starts_with("big.bin ") && l.contains("MiB/s") && l.contains("ETA"))
                || s.contains("verified md5")
        })
        .await;
    assert!(
        !bar.contains("verified md5"),
        "the bar was never seen:\n{bar}"
    );
    let done = tmux
        .wait_for(long, "the upload to finish", |s| s.contains("verified md5"))
        .await;
    assert!(
        done.contains("big.bin -> /docs/big.bin: 128 MiB in "),
        "{done}"
    );
    assert!(done.contains(&format!("verified md5 {md5}")), "{done}");
    assert!(!done.contains("ETA"), "the bar is cleared:\n{done}");

    tmux.command("rsftp:/docs>", "get big.bin copy.bin").await;
    tmux.wait_for(long, "the download", |s| {
        s.contains("big.bin -> copy.bin: 128 MiB in ")
    })
    .await;
    tmux.command("rsftp:/docs>", "info").await;
    tmux.wait_for(long, "the quota", |s| {
        s.contains("quota: used 128 MiB of 1 GiB (12%), free 896 MiB")
    })
    .await;
    tmux.command("rsftp:/docs>", "get nope").await;
    tmux.wait_for(long, "an error", |s| {
        s.contains("get: no such file or directory: /docs/nope")
    })
    .await;
    tmux.command("rsftp:/docs>", "exit").await;
    let end = tmux
        .wait_for(long, "the exit", |s| s.contains("RSFTP-EXIT="))
        .await;
    assert!(end.contains("RSFTP-EXIT=0"), "{end}");

    assert_eq!(
        md5_hex(&std::fs::read(client.work.join("copy.bin")).unwrap()),
        md5
    );
    let history = std::fs::read_to_string(client.home().join(".rsftp_history")).unwrap();
    assert!(history.contains("put big.bin"), "{history}");
}
