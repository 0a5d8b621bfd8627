//! The interactive shell in a real pseudo-terminal (tmux): completion, a progress bar
//! that shows while a file moves and is gone when it is done, the verified line, and
//! history kept for the next run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::client_support::{ClientHome, big_file};
use crate::util::{TestServer, TestUser, key_path, md5_hex};

/// The size of the file uploaded while lines are typed ahead: big enough that the
/// upload is still running when they are typed.
const TYPED_AHEAD_MIB: usize = 200;

/// A tmux server of our own (its own socket), with one session running `command`.
pub struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    pub fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    pub fn start(dir: &Path, command: &str) -> Tmux {
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

    pub fn keys(&self, keys: &[&str]) {
        let status = self
            .cmd()
            .args(["send-keys", "-t", "rsftp"])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    pub fn screen(&self) -> String {
        let output = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "rsftp"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The screen and what has scrolled off it.
    fn all_text(&self) -> String {
        let output = self
            .cmd()
            .args(["capture-pane", "-p", "-S", "-", "-t", "rsftp"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Polls the screen every 20 ms, for at most `limit`, until `ready` accepts it.
    pub async fn wait_for(
        &self,
        limit: Duration,
        what: &str,
        ready: impl Fn(&str) -> bool,
    ) -> String {
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
    pub async fn command(&self, prompt: &str, line: &str) {
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

/// The shell line that runs `rsftp` as alice in the client's working directory, then
/// prints its exit status and stays, so the screen can still be read.
fn shell_command(server: &TestServer, client: &ClientHome) -> String {
    format!(
        "cd '{work}' && HOME='{home}' SSH_AUTH_SOCK= '{bin}' alice@127.0.0.1:{port} -i '{key}' \
         --known-hosts '{known}'; echo RSFTP-EXIT=$?; sleep 60",
        work = client.work.display(),
        home = client.home().display(),
        bin = env!("CARGO_BIN_EXE_rsftp"),
        port = server.addr.port(),
        key = key_path(server.root(), "alice").display(),
        known = server.known_hosts.display(),
    )
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

    let tmux = Tmux::start(client.home(), &shell_command(&server, &client));
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

/// Whether a line of the screen is exactly `text`.
fn has_line(screen: &str, text: &str) -> bool {
    screen.lines().any(|l| l.trim_end() == text)
}

/// The shell's history file, one command a line.
fn history(client: &ClientHome) -> Vec<String> {
    std::fs::read_to_string(client.home().join(".rsftp_history"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Regression for "typed-ahead and pasted lines are lost": five lines delivered at once,
/// as a paste delivers them, all run, in order (each needs the one before it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pasted_lines_all_run_in_order() {
    assert!(
        Tmux::available(),
        "tmux is not installed: run ./scripts/test, which installs it"
    );
    let server = TestServer::start(&[TestUser::new("alice", "1GiB")]).await;
    let client = ClientHome::new();
    std::fs::create_dir(client.work.join("sub")).unwrap();
    std::fs::write(client.work.join("sub/a.txt"), b"pasted").unwrap();
    let tmux = Tmux::start(client.home(), &shell_command(&server, &client));
    let long = Duration::from_secs(20);
    tmux.wait_for(long, "the prompt", |s| s.trim_end().ends_with("rsftp:/>"))
        .await;

    let lines = ["lcd sub", "mkdir d", "cd d", "put a.txt", "pwd"];
    let mut keys = Vec::new();
    for line in lines {
        keys.extend([line, "Enter"]);
    }
    tmux.keys(&keys);
    let screen = tmux
        .wait_for(long, "all five lines to run", |s| {
            has_line(s, "/d") && s.trim_end().ends_with("rsftp:/d>")
        })
        .await;
    assert!(screen.contains("a.txt -> /d/a.txt: 6 B"), "{screen}");
    assert_eq!(
        std::fs::read(server.home("alice").join("d/a.txt")).unwrap(),
        b"pasted"
    );
    assert_eq!(history(&client), lines, "run once each, in order");

    // A real paste, as a terminal sends it when the program asks for bracketed paste:
    // the lines still run one by one, each at its line end, with no Enter after.
    let status = tmux
        .cmd()
        .args([
            "set-buffer",
            "--",
            "mkdir e\ncd e\nlpwd\nput a.txt b.txt\npwd\n",
        ])
        .status()
        .expect("tmux set-buffer");
    assert!(status.success());
    let status = tmux
        .cmd()
        .args(["paste-buffer", "-p", "-t", "rsftp"])
        .status()
        .expect("tmux paste-buffer");
    assert!(status.success());
    let screen = tmux
        .wait_for(long, "the pasted lines to run", |s| {
            has_line(s, "/d/e") && s.trim_end().ends_with("rsftp:/d/e>")
        })
        .await;
    assert!(
        has_line(&screen, &client.work.join("sub").display().to_string()),
        "{screen}"
    );
    assert_eq!(
        std::fs::read(server.home("alice").join("d/e/b.txt")).unwrap(),
        b"pasted"
    );
    assert_eq!(history(&client).len(), 10);
    tmux.command("rsftp:/d/e>", "exit").await;
    let end = tmux
        .wait_for(long, "the exit", |s| s.contains("RSFTP-EXIT="))
        .await;
    assert!(end.contains("RSFTP-EXIT=0"), "{end}");
}

/// Lines typed while a transfer and its bar run are kept and run after it, in order;
/// Ctrl-C then stops just the transfer, and a line typed before it still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_typed_during_a_transfer_run_after_it() {
    assert!(
        Tmux::available(),
        "tmux is not installed: run ./scripts/test, which installs it"
    );
    let server = TestServer::start(&[TestUser::new("alice", "1GiB")]).await;
    let client = ClientHome::new();
    big_file(&client.work.join("big.bin"), TYPED_AHEAD_MIB, 12);
    let tmux = Tmux::start(client.home(), &shell_command(&server, &client));
    let long = Duration::from_secs(20);
    let bar = |s: &str| {
        s.lines()
            .any(|l| l.starts_with("big.bin ") && l.contains("ETA"))
    };

    tmux.command("rsftp:/>", "put big.bin").await;
    tmux.wait_for(long, "the bar", bar).await;
    tmux.keys(&["mkdir after", "Enter", "cd after", "Enter", "pwd", "Enter"]);
    assert!(
        !tmux.screen().contains("verified md5"),
        "the lines should be typed while the put runs"
    );
    tmux.wait_for(long, "the typed lines to run", |s| {
        has_line(s, "/after") && s.trim_end().ends_with("rsftp:/after>")
    })
    .await;
    let text = tmux.all_text();
    let verified = text.find("big.bin -> /big.bin: ").expect("the put's line");
    let pwd = text.find("\n/after\n").expect("pwd's output");
    assert!(verified < pwd, "the typed lines ran after the put:\n{text}");
    assert!(server.home("alice").join("after").is_dir());

    // Ctrl-C during the next put stops it; the line typed before Ctrl-C is not lost.
    tmux.keys(&["put big.bin /again.bin", "Enter"]);
    tmux.wait_for(long, "the bar", bar).await;
    tmux.keys(&["mkdir late", "Enter"]);
    tmux.keys(&["C-c"]);
    let screen = tmux
        .wait_for(long, "the typed line to run", |s| {
            has_line(s, "rsftp:/after> mkdir late") && s.trim_end().ends_with("rsftp:/after>")
        })
        .await;
    let stopped = screen.find("put: interrupted").expect("the put stopped");
    let note = screen
        .find("run the same command again to resume")
        .expect("the note");
    let late = screen.find("> mkdir late").expect("the typed line");
    assert!(stopped < note && note < late, "{screen}");
    assert!(server.home("alice").join("after/late").is_dir());
    assert!(!server.home("alice").join("again.bin").exists());
    tmux.command("rsftp:/after>", "exit").await;
    let end = tmux
        .wait_for(long, "the exit", |s| s.contains("RSFTP-EXIT="))
        .await;
    assert!(end.contains("RSFTP-EXIT=0"), "{end}");
    assert_eq!(
        history(&client),
        [
            "put big.bin",
            "mkdir after",
            "cd after",
            "pwd",
            "put big.bin /again.bin",
            "mkdir late",
            "exit"
        ]
    );
}
