//! The only commands `exec` runs: `md5sum`, `sha1sum`, `sha256sum` and `sha512sum`,
//! of files in the home or of standard input, so that a script can check a transfer
//! with nothing but `ssh`, and so that rclone finds the hashes it probes for. No shell
//! is ever run: the command line is split into words with simple shell-like quoting,
//! and each word names a file, resolved in the user's view like every other path. The
//! output matches GNU coreutils, so it can be compared with a local `md5sum` line for
//! line.

use std::sync::Arc;
use std::time::Instant;

use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelReadHalf};
use tokio::sync::oneshot;

use super::activity::Activity;
use super::op::{self, Fault, Ops};
use super::oplog::OpLog;
use crate::storage::{HashAlgorithm, Hasher, HomeDir, StorageError, VirtualPath};

/// Files named by one command, at most.
const MAX_FILES: usize = 1024;
/// The name coreutils gives standard input, as an argument and in its output.
const STDIN: &str = "-";

/// The algorithm a hash command computes.
fn algorithm_of(program: &str) -> Option<HashAlgorithm> {
    Some(match program {
        "md5sum" => HashAlgorithm::Md5,
        "sha1sum" => HashAlgorithm::Sha1,
        "sha256sum" => HashAlgorithm::Sha256,
        "sha512sum" => HashAlgorithm::Sha512,
        _ => return None,
    })
}

/// The command that computes `algorithm`.
fn program_of(algorithm: HashAlgorithm) -> &'static str {
    match algorithm {
        HashAlgorithm::Md5 => "md5sum",
        HashAlgorithm::Sha1 => "sha1sum",
        HashAlgorithm::Sha256 => "sha256sum",
        HashAlgorithm::Sha512 => "sha512sum",
    }
}

/// A hash command, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct HashCommand {
    pub algorithm: HashAlgorithm,
    /// In order; `-` is standard input, which an empty argument list also means.
    pub files: Vec<String>,
}

impl HashCommand {
    /// Parses the arguments after the program name, as coreutils reads them.
    fn parse(algorithm: HashAlgorithm, args: &[String]) -> Parsed {
        let name = program_of(algorithm);
        let mut files = Vec::new();
        let mut options_done = false;
        for word in args {
            if !options_done && word == "--" {
                options_done = true;
            } else if !options_done && word.starts_with('-') && word != STDIN {
                return Parsed::Bad(format!(
                    "{name}: option {word} is not supported here; give only file names"
                ));
            } else {
                files.push(word.clone());
            }
        }
        if files.is_empty() {
            files.push(STDIN.to_owned());
        }
        if files.len() > MAX_FILES {
            return Parsed::Bad(format!("{name}: at most {MAX_FILES} files at once"));
        }
        Parsed::Hash(HashCommand { algorithm, files })
    }

    fn reads_stdin(&self) -> bool {
        self.files.iter().any(|f| f == STDIN)
    }
}

/// What an exec request asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a command we run at all.
    NotOurs,
    /// One of ours, but not in a form we accept; the message says why.
    Bad(String),
    Hash(HashCommand),
    /// Legacy SCP: see [`super::scp`].
    Scp(super::scp::ScpCommand),
}

/// Why a command line could not be split into words.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("unterminated quote")]
    Unterminated,
    #[error("`{0}` is shell syntax, and no shell runs here; quote it, or name each file")]
    ShellSyntax(char),
}

impl Parsed {
    pub fn from_command(command: &[u8]) -> Parsed {
        let Ok(command) = std::str::from_utf8(command) else {
            return Parsed::NotOurs;
        };
        let words = match split_words(command) {
            Ok(words) => words,
            // Only say more than "no commands" if it was meant for us.
            Err(err) => {
                let first = command.split_whitespace().next().unwrap_or("");
                return match Parsed::from_words(&[first.to_owned()]) {
                    Parsed::NotOurs => Parsed::NotOurs,
                    Parsed::Bad(_) | Parsed::Hash(_) | Parsed::Scp(_) => {
                        Parsed::Bad(format!("{first}: {err}"))
                    }
                };
            }
        };
        Parsed::from_words(&words)
    }

    /// One arm per program we run; everything else is not ours.
    fn from_words(words: &[String]) -> Parsed {
        let Some((program, args)) = words.split_first() else {
            return Parsed::NotOurs;
        };
        if program == "scp" {
            return match super::scp::ScpCommand::from_words(args) {
                Ok(scp) => Parsed::Scp(scp),
                Err(message) => Parsed::Bad(message),
            };
        }
        if let Some(algorithm) = algorithm_of(program) {
            return HashCommand::parse(algorithm, args);
        }
        Parsed::NotOurs
    }
}

/// Splits a command line as a POSIX shell would split simple words: blanks separate,
/// `'...'` is literal, `"..."` is literal but for `\"`, `\\`, `\$` and `` \` ``, and a
/// backslash outside quotes escapes the next character. Anything that would make a
/// shell do more (`;`, `|`, `$`, globs, ...) is refused rather than taken literally.
pub fn split_words(line: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(SplitError::Unterminated),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err(SplitError::Unterminated),
                        },
                        Some(c @ ('$' | '`')) => return Err(SplitError::ShellSyntax(c)),
                        Some(c) => w.push(c),
                        None => return Err(SplitError::Unterminated),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err(SplitError::Unterminated),
            },
            ';' | '|' | '&' | '<' | '>' | '(' | ')' | '$' | '`' | '*' | '?' | '[' | '~' | '{'
            | '}' => return Err(SplitError::ShellSyntax(c)),
            '#' if word.is_none() => break,
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(w) = word {
        words.push(w);
    }
    Ok(words)
}

/// One output line for a file that hashed, as coreutils writes it: a name with a
/// backslash or a newline is escaped, and the line then starts with `\`.
pub fn hash_line(hex: &str, name: &str) -> String {
    if name.contains(['\\', '\n', '\r']) {
        let escaped = name
            .replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('\r', "\\r");
        format!("\\{hex}  {escaped}\n")
    } else {
        format!("{hex}  {name}\n")
    }
}

/// A file name in an error message, quoted as coreutils does when it needs quoting:
/// control characters leave the quotes as `$'\n'`.
fn quote_name(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "_-./+,:@%^=".contains(c));
    if plain {
        name.to_owned()
    } else if name.chars().any(char::is_control) {
        // coreutils opens with an empty quote when the name starts with a control byte.
        let mut out = if name.starts_with(char::is_control) {
            String::from("''")
        } else {
            String::new()
        };
        let mut quoted = false;
        for c in name.chars() {
            if c.is_control() {
                if quoted {
                    out.push('\'');
                    quoted = false;
                }
                match c {
                    '\n' => out.push_str("$'\\n'"),
                    '\t' => out.push_str("$'\\t'"),
                    '\r' => out.push_str("$'\\r'"),
                    c => out.push_str(&format!("$'\\{:03o}'", u32::from(c))),
                }
            } else {
                if !quoted {
                    out.push('\'');
                    quoted = true;
                }
                match c {
                    '\'' => out.push_str("'\\''"),
                    c => out.push(c),
                }
            }
        }
        if quoted {
            out.push('\'');
        }
        out
    } else if !name.contains('\'') {
        format!("'{name}'")
    } else if !name.contains(['"', '$', '`', '\\']) {
        format!("\"{name}\"")
    } else {
        format!("'{}'", name.replace('\'', "'\\''"))
    }
}

/// The coreutils wording of why a file could not be hashed, from the error's class
/// (and the reason a refusal gives).
fn error_text(err: &StorageError) -> String {
    let refusal = op::classify(err);
    match (refusal.fault, err) {
        (_, StorageError::Denied { reason, .. }) => format!("Permission denied ({reason})"),
        (_, StorageError::BadPath { reason }) => format!("Invalid argument ({reason})"),
        (Fault::NotFound, _) => "No such file or directory".into(),
        (Fault::IsADirectory, _) => "Is a directory".into(),
        (Fault::NotADirectory, _) => "Not a directory".into(),
        (Fault::Io, _) => "Input/output error".into(),
        _ => refusal.message,
    }
}

/// Hashes one file, streaming; returns the hex digest and the bytes read.
fn hash_file(
    home: &HomeDir,
    path: &VirtualPath,
    algorithm: HashAlgorithm,
) -> Result<(String, u64), StorageError> {
    let (digest, bytes) = home.hash_range(path, algorithm, 0, u64::MAX)?;
    Ok((hex(&digest), bytes))
}

/// Reads the channel to its end, so that it never fills and stalls the connection.
/// When `algorithm` is given, what came before EOF is hashed and sent on `digest`, as
/// soon as EOF arrives.
async fn read_stdin(
    mut reader: ChannelReadHalf,
    algorithm: Option<HashAlgorithm>,
    digest: oneshot::Sender<(String, u64)>,
    activity: Activity,
) {
    let mut hasher = algorithm.map(Hasher::new);
    let mut digest = Some(digest);
    let mut bytes = 0u64;
    while let Some(msg) = reader.wait().await {
        activity.touch();
        match msg {
            ChannelMsg::Data { data } => {
                if let Some(hasher) = hasher.as_mut() {
                    hasher.update(&data);
                    bytes += data.len() as u64;
                }
            }
            ChannelMsg::Eof => {
                if let (Some(hasher), Some(digest)) = (hasher.take(), digest.take()) {
                    let _ = digest.send((hasher.hex(), bytes));
                }
            }
            _ => {}
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs a hash command on `channel`: a line on stdout per file, a line on stderr per
/// file that could not be hashed, then exit status 0, or 1 if any could not. Input and
/// each answer touch `activity`.
pub async fn run(
    channel: Channel<Msg>,
    command: HashCommand,
    home: HomeDir,
    oplog: Arc<OpLog>,
    activity: Activity,
) {
    let ops = Ops::new(home, oplog, "exec");
    let (reader, writer) = channel.split();
    let algorithm = command.algorithm;
    let (digest_tx, digest_rx) = oneshot::channel();
    let stdin_algorithm = command.reads_stdin().then_some(algorithm);
    let stdin = tokio::spawn(read_stdin(
        reader,
        stdin_algorithm,
        digest_tx,
        activity.clone(),
    ));
    // Standard input is read once; a second `-` finds it at its end, as in coreutils.
    let mut stdin_digest = Some(digest_rx);
    let name = program_of(algorithm);
    let mut failed = false;
    for file in command.files {
        let started = Instant::now();
        let sent = if file == STDIN {
            let digest = match stdin_digest.take() {
                Some(rx) => rx.await.ok(),
                None => Some((Hasher::new(algorithm).hex(), 0)),
            };
            match digest {
                Some((hex, bytes)) => {
                    ops.log(name, STDIN, bytes, started, None);
                    writer.data_bytes(hash_line(&hex, STDIN).into_bytes()).await
                }
                // The channel ended before its EOF: there is nobody left to answer.
                None => break,
            }
        } else {
            let arg = file.clone();
            let result = ops
                .blocking(move |home| {
                    let path = op::resolve_from_root(&arg)?;
                    let (hex, bytes) = hash_file(home, &path, algorithm)?;
                    Ok((path, hex, bytes))
                })
                .await;
            match result {
                Ok(Ok((path, hex, bytes))) => {
                    ops.log(name, path.as_str(), bytes, started, None);
                    writer.data_bytes(hash_line(&hex, &file).into_bytes()).await
                }
                Ok(Err(err)) => {
                    failed = true;
                    let text = error_text(&err);
                    let error = err.to_string();
                    ops.log(name, &file, 0, started, Some(&error));
                    let line = format!("{name}: {}: {}\n", quote_name(&file), text);
                    writer.extended_data_bytes(1, line.into_bytes()).await
                }
                Err(_) => {
                    failed = true;
                    let line = format!("{name}: {}: internal error\n", quote_name(&file));
                    writer.extended_data_bytes(1, line.into_bytes()).await
                }
            }
        };
        activity.touch();
        if sent.is_err() {
            stdin.abort();
            return;
        }
    }
    let _ = writer.exit_status(u32::from(failed)).await;
    let _ = writer.eof().await;
    let _ = writer.close().await;
    // The reader ends when the channel does.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), stdin).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split_words(line).unwrap()
    }

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(words("md5sum a b"), ["md5sum", "a", "b"]);
        assert_eq!(
            words("  md5sum\t'a b'  \"c d\" e\\ f"),
            ["md5sum", "a b", "c d", "e f"]
        );
        assert_eq!(
            words(r#"x "a\"b" 'it'\''s' "back\\slash" "\n""#),
            ["x", "a\"b", "it's", "back\\slash", "\\n"]
        );
        assert_eq!(words("x ''"), ["x", ""]);
        assert_eq!(words("x a#b # comment"), ["x", "a#b"]);
        assert_eq!(words(r"x a\\b"), ["x", r"a\b"]);
        assert_eq!(words("x '*' \"?\""), ["x", "*", "?"]);
    }

    #[test]
    fn rejects_shell_syntax_and_bad_quoting() {
        assert_eq!(split_words("x 'a"), Err(SplitError::Unterminated));
        assert_eq!(split_words("x \"a"), Err(SplitError::Unterminated));
        assert_eq!(split_words("x a\\"), Err(SplitError::Unterminated));
        for bad in [
            "x; rm -rf /",
            "x | y",
            "x $(id)",
            "x `id`",
            "x *.txt",
            "x > f",
            "x ~/f",
            "x \"$HOME\"",
        ] {
            assert!(
                matches!(split_words(bad), Err(SplitError::ShellSyntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_hash_commands_are_ours() {
        assert_eq!(Parsed::from_command(b"cat /etc/passwd"), Parsed::NotOurs);
        assert_eq!(Parsed::from_command(b"md5sumx f"), Parsed::NotOurs);
        assert_eq!(Parsed::from_command(b"\xff"), Parsed::NotOurs);
        assert_eq!(Parsed::from_command(b"ls; md5sum f"), Parsed::NotOurs);
        assert_eq!(
            Parsed::from_command(b"sha256sum -- -f a"),
            Parsed::Hash(HashCommand {
                algorithm: HashAlgorithm::Sha256,
                files: vec!["-f".into(), "a".into()]
            })
        );
        for (command, algorithm) in [
            (&b"md5sum"[..], HashAlgorithm::Md5),
            (b"sha1sum", HashAlgorithm::Sha1),
            (b"sha256sum -", HashAlgorithm::Sha256),
            (b"  sha512sum  ", HashAlgorithm::Sha512),
        ] {
            assert_eq!(
                Parsed::from_command(command),
                Parsed::Hash(HashCommand {
                    algorithm,
                    files: vec!["-".into()]
                })
            );
        }
        assert_eq!(
            Parsed::from_command(br#"sha1sum "/dir/a b.txt" - c\ d"#),
            Parsed::Hash(HashCommand {
                algorithm: HashAlgorithm::Sha1,
                files: vec!["/dir/a b.txt".into(), "-".into(), "c d".into()]
            })
        );
        assert_eq!(Parsed::from_command(b"sha384sum f"), Parsed::NotOurs);
        assert_eq!(Parsed::from_command(b""), Parsed::NotOurs);
        assert!(matches!(
            Parsed::from_command(b"sha512sum 'a"),
            Parsed::Bad(_)
        ));
        assert!(matches!(
            Parsed::from_command(b"md5sum -c sums"),
            Parsed::Bad(_)
        ));
        assert!(matches!(
            Parsed::from_command(b"md5sum *.txt"),
            Parsed::Bad(_)
        ));
    }

    #[test]
    fn lines_and_errors_as_coreutils_writes_them() {
        let hex = "9dd4e461268c8034f5c8564e155c67a6";
        assert_eq!(hash_line(hex, "a b"), format!("{hex}  a b\n"));
        assert_eq!(hash_line(hex, r"a\b"), format!("\\{hex}  a\\\\b\n"));
        assert_eq!(quote_name("nosuch"), "nosuch");
        assert_eq!(quote_name("sp ace"), "'sp ace'");
        assert_eq!(quote_name("it's"), "\"it's\"");
        assert_eq!(hash_line(hex, "a\nb"), format!("\\{hex}  a\\nb\n"));
        assert_eq!(hash_line(hex, "a\rb"), format!("\\{hex}  a\\rb\n"));
        // What coreutils 9.1 prints for these names.
        assert_eq!(quote_name("n\nx"), "'n'$'\\n''x'");
        assert_eq!(quote_name("\tit's"), "''$'\\t''it'\\''s'");
        assert_eq!(quote_name("a\u{1}"), "'a'$'\\001'");
    }
}
