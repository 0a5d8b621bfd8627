//! Running the shell three ways: interactively with line editing, history and
//! completion; a script (`-b FILE`), which stops at the first failure; and one command
//! given on the command line.
//!
//! Each command runs to the end on the tokio runtime while this thread waits, so the
//! line editor, prompts and scripts stay plain blocking code.
//!
//! Nothing typed is lost, as with OpenSSH `sftp`: lines pasted at once, or typed while a
//! command and its progress bar run, all run afterwards, in order. Three things see to
//! it. The line editor keeps what it read past the end of a line for the next one
//! (rustyline's `buffer-redux`; without it each line's read-ahead was dropped). A paste
//! arrives as typed keys, each Enter ending a line, not as one bracketed block. And the
//! terminal keeps its input queue when Ctrl-C stops a command, and does not echo what
//! is typed over the progress bar ([`KeepTypedAhead`]).

use std::io::BufRead;
use std::path::Path;

use rustix::termios::{self, LocalModes, OptionalActions, Termios};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{CompletionType, Config, Editor};
use tokio::runtime::Handle;

use super::{Flow, Shell, ShellError, ShellHelper, explain};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every command that had to succeed did.
    Success,
    /// A command failed, or the session was lost.
    Failure,
    /// Whoever read our output stopped reading (`rsftp host ls | head`): not an error.
    OutputClosed,
}

/// The command word of a line, for error messages.
fn command_name(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or("")
}

/// Runs one line. In the interactive shell, Ctrl-C stops the command (the session is
/// then reopened) instead of ending the program.
fn execute(
    shell: &mut Shell,
    handle: &Handle,
    line: &str,
    interruptible: bool,
) -> Result<Flow, ShellError> {
    if interruptible {
        handle.block_on(async {
            tokio::select! {
                result = shell.run_line(line) => result,
                _ = tokio::signal::ctrl_c() => Err(ShellError::Interrupted),
            }
        })
    } else {
        handle.block_on(shell.run_line(line))
    }
}

/// Reports a failed command, and reopens the session if the failure broke it. Returns
/// `false` if there is no session left to go on with.
fn report(shell: &mut Shell, handle: &Handle, context: &str, err: &ShellError) -> bool {
    shell.printer().warn(&format!("{context}{err}"));
    if !err.breaks_session() {
        return true;
    }
    match handle.block_on(shell.reopen()) {
        Ok(()) => {
            if matches!(err, ShellError::Interrupted) {
                shell
                    .printer()
                    .warn("what was transferred is kept; run the same command again to resume");
            }
            true
        }
        Err(lost) => {
            shell
                .printer()
                .warn(&format!("rsftp: the session is lost: {}", explain(&lost)));
            false
        }
    }
}

fn output_outcome(err: &std::io::Error) -> Outcome {
    if err.kind() == std::io::ErrorKind::BrokenPipe {
        Outcome::OutputClosed
    } else {
        eprintln!("rsftp: cannot write output: {err}");
        Outcome::Failure
    }
}

/// The interactive shell. `history` is the file that keeps command lines between runs.
pub fn interactive(
    shell: &mut Shell,
    handle: &Handle,
    helper: ShellHelper,
    history: Option<&Path>,
) -> Outcome {
    let config = Config::builder()
        .bracketed_paste(false)
        .history_ignore_space(true)
        .completion_type(CompletionType::List)
        .auto_add_history(false);
    let config = match config.max_history_size(1000) {
        Ok(config) => config.build(),
        Err(_) => Config::default(),
    };
    let mut editor: Editor<ShellHelper, DefaultHistory> = match Editor::with_config(config) {
        Ok(editor) => editor,
        Err(err) => {
            eprintln!("rsftp: cannot start the line editor: {err}");
            return Outcome::Failure;
        }
    };
    editor.set_helper(Some(helper));
    let _keep = KeepTypedAhead::new();
    if let Some(path) = history {
        prepare_history_file(path);
        let _ = editor.load_history(path);
    }
    // Bounded by the person: the loop ends on exit, Ctrl-D or a lost session.
    loop {
        let prompt = shell.prompt();
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => return Outcome::Success,
            Err(err) => {
                eprintln!("rsftp: cannot read a command: {err}");
                return Outcome::Failure;
            }
        };
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line.as_str());
        if let Some(path) = history {
            let _ = editor.append_history(path);
        }
        match execute(shell, handle, trimmed, true) {
            Ok(Flow::Exit) => return Outcome::Success,
            Ok(Flow::Continue) => {}
            Err(ShellError::Output(err)) => return output_outcome(&err),
            Err(err) => {
                let context = format!("{}: ", command_name(trimmed));
                if !report(shell, handle, &context, &err) {
                    return Outcome::Failure;
                }
            }
        }
    }
}

/// Sets the terminal up, for as long as it lives, to keep what is typed while a command
/// runs. NOFLSH: without it, the Ctrl-C that stops a transfer makes the kernel throw
/// away every line typed ahead of it. No ECHO: the terminal would print those lines
/// over the progress bar, and they show anyway, each at its prompt, when they run. The
/// line editor saves and restores the terminal's mode around each line it reads, so
/// this mode holds while commands run; the mode from before is put back at the end.
struct KeepTypedAhead {
    saved: Option<Termios>,
}

impl KeepTypedAhead {
    fn new() -> KeepTypedAhead {
        let saved = termios::tcgetattr(std::io::stdin()).ok();
        if let Some(saved) = &saved {
            let mut keep = saved.clone();
            keep.local_modes |= LocalModes::NOFLSH;
            keep.local_modes -= LocalModes::ECHO;
            // Without this mode the shell still works; only Ctrl-C loses typed-ahead lines.
            let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &keep);
        }
        KeepTypedAhead { saved }
    }
}

impl Drop for KeepTypedAhead {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, saved);
        }
    }
}

/// Creates the history file readable by its owner only: command lines name files.
fn prepare_history_file(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path);
}

/// Runs a script: one command a line; blank lines and lines starting with `#` are
/// skipped. It stops at the first failure, unless that line starts with `-`.
pub fn script(shell: &mut Shell, handle: &Handle, input: &mut dyn BufRead, name: &str) -> Outcome {
    for (index, line) in input.lines().enumerate() {
        let line = match line {
            Ok(line) => line,
            Err(err) => {
                eprintln!("rsftp: {name}: {err}");
                return Outcome::Failure;
            }
        };
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (may_fail, command) = match trimmed.strip_prefix('-') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, trimmed),
        };
        match execute(shell, handle, command, false) {
            Ok(Flow::Exit) => return Outcome::Success,
            Ok(Flow::Continue) => {}
            Err(ShellError::Output(err)) => return output_outcome(&err),
            Err(err) => {
                let context = format!("rsftp: {name}:{}: {}: ", index + 1, command_name(command));
                if !report(shell, handle, &context, &err) || !may_fail {
                    return Outcome::Failure;
                }
            }
        }
    }
    Outcome::Success
}

/// Writes a command-line argument as one shell word. Glob characters and backslashes
/// keep their meaning, so `rsftp host get '*.log'` matches on the server.
fn quote_arg(arg: &str) -> String {
    if arg.is_empty() {
        return "''".to_owned();
    }
    let mut out = String::with_capacity(arg.len());
    for c in arg.chars() {
        if matches!(c, ' ' | '\t' | '\'' | '"') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Runs one command given as arguments (`rsftp host put a.bin /in/`).
pub fn one_shot(shell: &mut Shell, handle: &Handle, args: &[String]) -> Outcome {
    let line: Vec<String> = args.iter().map(|a| quote_arg(a)).collect();
    let line = line.join(" ");
    match execute(shell, handle, &line, false) {
        Ok(_) => Outcome::Success,
        Err(ShellError::Output(err)) => output_outcome(&err),
        Err(err) => {
            shell
                .printer()
                .warn(&format!("rsftp: {}: {err}", command_name(&line)));
            Outcome::Failure
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::words::split_line;
    use super::*;

    #[test]
    fn arguments_stay_whole_and_keep_their_patterns() {
        let args = ["put", "my file.txt", "/in/", "*.log", "it's", ""];
        let line: Vec<String> = args.iter().map(|a| quote_arg(a)).collect();
        let words = split_line(&line.join(" ")).unwrap();
        let texts: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, args);
        assert_eq!(words[3].pattern.as_deref(), Some("*.log"));
    }
}
