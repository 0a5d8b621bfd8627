//! Hashes the server computes for us over `exec`, for servers that have no rsftp
//! subsystem and so no `md5` request. An OpenSSH server runs coreutils' `md5sum` or
//! `sha256sum` through the user's shell; rsftpd answers those two itself. Which one a
//! server has is learned once per session by hashing empty standard input, and
//! whatever it answers is checked against what that hash must be, so a server that
//! prints something else is never taken for one that hashes.
//!
//! The hash of a prefix (to check before a resume) needs `head -c N FILE | md5sum`, a
//! shell pipe: servers without a shell (rsftpd) cannot answer it, and the caller is told
//! so rather than given a check that did not happen.

use std::fmt;
use std::io::Read;

use md5::{Digest, Md5};
use sha2::Sha256;

use super::ClientError;
use super::connection::Connection;

/// The most a hash command may print: one line per file, one file at a time.
const MAX_OUT: usize = 64 * 1024;
/// How long the probe waits for a server to hash nothing. A server that takes longer
/// (one whose exec never ends) counts as having no hash, rather than hang the login.
const PROBE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A hash a server can compute for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    Md5,
    Sha256,
}

impl HashKind {
    fn program(self) -> &'static str {
        match self {
            HashKind::Md5 => "md5sum",
            HashKind::Sha256 => "sha256sum",
        }
    }

    /// The name people read in a `verified ...` line.
    pub fn name(self) -> &'static str {
        match self {
            HashKind::Md5 => "md5",
            HashKind::Sha256 => "sha256",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            HashKind::Md5 => 32,
            HashKind::Sha256 => 64,
        }
    }
}

/// A file's hash, of one kind, as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHash {
    pub kind: HashKind,
    pub hex: String,
}

impl fmt::Display for FileHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.name(), self.hex)
    }
}

/// Hashes bytes as they pass: always MD5 (for the report), and the server's own kind
/// when that is another.
#[derive(Clone)]
pub struct Hashers {
    pub md5: Md5,
    sha256: Option<Sha256>,
}

impl Hashers {
    pub fn new(kind: Option<HashKind>) -> Hashers {
        Hashers {
            md5: Md5::new(),
            sha256: (kind == Some(HashKind::Sha256)).then(Sha256::new),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        if let Some(sha) = &mut self.sha256 {
            sha.update(data);
        }
    }

    /// The hash of what has passed, of the kind asked for. (MD5 where SHA-256 was not
    /// kept: it then compares unequal with any SHA-256, never equal by mistake.)
    pub fn hash(&self, kind: HashKind) -> FileHash {
        match (kind, &self.sha256) {
            (HashKind::Sha256, Some(sha)) => FileHash {
                kind: HashKind::Sha256,
                hex: hex(&sha.clone().finalize()),
            },
            _ => FileHash {
                kind: HashKind::Md5,
                hex: hex(&self.md5.clone().finalize()),
            },
        }
    }

    /// Hashes `len` bytes of `file` from where it stands.
    pub fn read_from(&mut self, file: &mut std::fs::File, len: u64) -> std::io::Result<()> {
        let mut buf = vec![0u8; 256 * 1024];
        let mut left = len;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = file.read(&mut buf[..want])?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Quotes a word for a POSIX shell (and for rsftpd's exec, which reads the same
/// quotes): inside single quotes, with each `'` written as `'\''`.
pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The hash a `md5sum`/`sha256sum` line starts with, if it is one of `kind`.
fn parse_line(out: &[u8], kind: HashKind) -> Option<String> {
    let text = std::str::from_utf8(out).ok()?;
    let line = text.lines().next()?;
    // coreutils starts the line with `\` when the name had to be escaped.
    let line = line.strip_prefix('\\').unwrap_or(line);
    let hex = line.get(..kind.hex_len())?;
    let rest = &line[kind.hex_len()..];
    (hex.bytes().all(|b| b.is_ascii_hexdigit()) && rest.starts_with(' '))
        .then(|| hex.to_ascii_lowercase())
}

/// Which hash the server computes over exec: MD5 if it can, else SHA-256, else none.
pub async fn probe(conn: &Connection) -> Option<HashKind> {
    for (kind, empty) in [
        (HashKind::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
        (
            HashKind::Sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
    ] {
        let asked = tokio::time::timeout(PROBE_LIMIT, conn.exec(kind.program(), MAX_OUT)).await;
        if let Ok(Ok(out)) = asked
            && out.succeeded()
            && parse_line(&out.stdout, kind).as_deref() == Some(empty)
        {
            return Some(kind);
        }
    }
    None
}

/// The server's hash of the whole file at the absolute path `path`; `None` if it could
/// not give one (the command failed, or printed something else).
pub async fn whole(
    conn: &Connection,
    kind: HashKind,
    path: &str,
) -> Result<Option<FileHash>, ClientError> {
    let command = format!("{} {}", kind.program(), shell_quote(path));
    run(conn, kind, &command).await
}

/// The server's hash of the first `len` bytes of `path`; `None` where the server has no
/// shell to run the pipe in.
pub async fn prefix(
    conn: &Connection,
    kind: HashKind,
    path: &str,
    len: u64,
) -> Result<Option<FileHash>, ClientError> {
    let command = format!("head -c {len} {} | {} -", shell_quote(path), kind.program());
    run(conn, kind, &command).await
}

async fn run(
    conn: &Connection,
    kind: HashKind,
    command: &str,
) -> Result<Option<FileHash>, ClientError> {
    let out = conn.exec(command, MAX_OUT).await?;
    if !out.succeeded() {
        return Ok(None);
    }
    Ok(parse_line(&out.stdout, kind).map(|hex| FileHash { kind, hex }))
}

/// One shell on the server that hashes a file for each path it reads, one answer line
/// per path, so that checking many files costs one process on the server, not one
/// each. Names with a newline cannot be sent this way; [`whole`] takes those.
pub struct HashShell {
    channel: russh::Channel<russh::client::Msg>,
    kind: HashKind,
    pending: Vec<u8>,
}

impl HashShell {
    /// Starts the shell loop; an error if the server runs no shell (rsftpd).
    pub async fn start(conn: &Connection, kind: HashKind) -> Result<HashShell, ClientError> {
        let command = format!(
            "sh -c 'while IFS= read -r f; do {} \"$f\" 2>/dev/null || echo failed; done'",
            kind.program()
        );
        let channel = conn.exec_channel(&command).await?;
        Ok(HashShell {
            channel,
            kind,
            pending: Vec::new(),
        })
    }

    /// The server's hash of `path`; `None` if it could not hash it. An error means the
    /// shell is gone and should not be asked again.
    pub async fn hash(&mut self, path: &str) -> Result<Option<FileHash>, ClientError> {
        if path.contains('\n') {
            return Err(ClientError::Protocol("a name with a newline".into()));
        }
        self.channel
            .data_bytes(format!("{path}\n").into_bytes())
            .await?;
        // Bounded by the channel: a line arrives, or the channel ends.
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Ok(parse_line(&line, self.kind).map(|hex| FileHash {
                    kind: self.kind,
                    hex,
                }));
            }
            if self.pending.len() > MAX_OUT {
                return Err(ClientError::Protocol("a hash line too long".into()));
            }
            match self.channel.wait().await {
                Some(russh::ChannelMsg::Data { data }) => self.pending.extend_from_slice(&data),
                Some(russh::ChannelMsg::Eof | russh::ChannelMsg::Close) | None => {
                    return Err(ClientError::Closed);
                }
                Some(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_coreutils_lines_and_nothing_else() {
        let md5 = "d41d8cd98f00b204e9800998ecf8427e";
        assert_eq!(
            parse_line(format!("{md5}  -\n").as_bytes(), HashKind::Md5).as_deref(),
            Some(md5)
        );
        assert_eq!(
            parse_line(format!("\\{md5}  a\\nb\n").as_bytes(), HashKind::Md5).as_deref(),
            Some(md5)
        );
        assert_eq!(
            parse_line(b"md5sum: x: No such file\n", HashKind::Md5),
            None
        );
        assert_eq!(
            parse_line(format!("{md5}  -").as_bytes(), HashKind::Sha256),
            None
        );
        assert_eq!(parse_line(b"", HashKind::Md5), None);
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("/a b/c"), "'/a b/c'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn hashes_in_the_kind_asked_for() {
        let mut both = Hashers::new(Some(HashKind::Sha256));
        both.update(b"abc");
        assert_eq!(
            both.hash(HashKind::Sha256).hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            both.hash(HashKind::Md5).hex,
            "900150983cd24fb0d6963f7d28e17f72"
        );
        let md5_only = Hashers::new(Some(HashKind::Md5));
        assert_eq!(md5_only.hash(HashKind::Md5).kind, HashKind::Md5);
    }
}
