//! Why a shell command failed, and how a failure reads: one line after the command's
//! name, with quota refusals in human units.

use std::io;
use std::path::{Path, PathBuf};

use crate::auth::format_size;
use crate::client::ClientError;
use crate::protocol::ErrorCode;

use super::words::SplitError;

/// Why a command failed. Each reads as one line after the command's name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShellError {
    #[error("{0}")]
    Split(#[from] SplitError),
    #[error("unknown command {0:?}; type help for the list")]
    UnknownCommand(String),
    #[error("unknown option -{flag}; usage: {usage}")]
    UnknownOption { flag: char, usage: &'static str },
    #[error("unknown option --{name}; usage: {usage}")]
    UnknownLongOption { name: String, usage: &'static str },
    #[error("usage: {0}")]
    Usage(&'static str),
    #[error("{}", explain(.0))]
    Client(#[from] ClientError),
    #[error("{}: {source}", .path.display())]
    Local {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no match for {0}")]
    NoMatch(String),
    #[error("{0} is a directory; use -r for it and everything in it")]
    Directory(String),
    #[error("{0}")]
    Refused(String),
    #[error("{failed} of {total} {what} failed")]
    SomeFailed {
        failed: usize,
        total: usize,
        what: &'static str,
    },
    #[error("interrupted")]
    Interrupted,
    #[error("cannot write output: {0}")]
    Output(#[source] io::Error),
}

impl ShellError {
    /// Whether the session can no longer be trusted to be in step with the server (the
    /// channel broke, or a transfer stopped half-way), so it must be reopened.
    pub fn breaks_session(&self) -> bool {
        match self {
            ShellError::Interrupted => true,
            ShellError::Client(err) => !matches!(
                err,
                ClientError::Remote { .. }
                    | ClientError::Checksum { .. }
                    | ClientError::HashMismatch { .. }
                    | ClientError::LocalExists(_)
                    | ClientError::Local { .. }
            ),
            _ => false,
        }
    }

    pub(super) fn local(path: &Path, source: io::Error) -> ShellError {
        ShellError::Local {
            path: path.to_owned(),
            source,
        }
    }
}

/// A client error in words for the person at the shell: the server's message as it is,
/// except a quota refusal, which is given in human units.
pub fn explain(err: &ClientError) -> String {
    match err {
        ClientError::Remote {
            code: ErrorCode::Quota,
            message,
        } => quota_message(message).unwrap_or_else(|| printable(message)),
        ClientError::Remote { message, .. } => printable(message),
        ClientError::Checksum {
            path,
            expected,
            actual,
        } => format!(
            "VERIFICATION FAILED for {path}: MD5 {actual} does not match {expected}; \
             the file was not kept"
        ),
        ClientError::HashMismatch { path, server, ours } => format!(
            "VERIFICATION FAILED for {path}: the server's {} {} does not match ours, {}",
            ours.kind.name(),
            server.hex,
            ours.hex
        ),
        other => other.to_string(),
    }
}

/// A message from the server with any control characters (which could move the
/// cursor or recolour the terminal) turned into spaces.
fn printable(message: &str) -> String {
    message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `quota exceeded: need N bytes, used U of L bytes` in human units, with what is free.
fn quota_message(message: &str) -> Option<String> {
    let rest = message.strip_prefix("quota exceeded: need ")?;
    let (need, rest) = rest.split_once(" bytes, used ")?;
    let (used, rest) = rest.split_once(" of ")?;
    let limit = rest.strip_suffix(" bytes")?;
    let (need, used, limit): (u64, u64, u64) =
        (need.parse().ok()?, used.parse().ok()?, limit.parse().ok()?);
    Some(format!(
        "quota exceeded: need {}, free {} (used {} of {})",
        format_size(need),
        format_size(limit.saturating_sub(used)),
        format_size(used),
        format_size(limit)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_refusals_read_in_human_units() {
        assert_eq!(
            quota_message("quota exceeded: need 1048576 bytes, used 524288 of 1048576 bytes")
                .as_deref(),
            Some("quota exceeded: need 1 MiB, free 512 KiB (used 512 KiB of 1 MiB)")
        );
        assert_eq!(quota_message("quota exceeded: something new"), None);
        let err = ClientError::Remote {
            code: ErrorCode::Quota,
            message: "odd".into(),
        };
        assert_eq!(explain(&err), "odd");
    }

    #[test]
    fn only_broken_sessions_need_reopening() {
        let remote = ShellError::Client(ClientError::Remote {
            code: ErrorCode::NotFound,
            message: "no such file or directory: /x".into(),
        });
        assert!(!remote.breaks_session());
        assert!(ShellError::Client(ClientError::Closed).breaks_session());
        assert!(ShellError::Interrupted.breaks_session());
        assert!(!ShellError::NoMatch("*.x".into()).breaks_session());
    }
}
