//! The client library: connect over SSH, check the host key, log in, speak rsftp/1, and
//! move whole files with resume and MD5 verification. The `rsftp` shell and the tests
//! are built on it.
//!
//! - `connection`, `rsftp`, [`transfer`]: the SSH connection, the protocol, whole files.
//! - [`target`]: `[user@]host[:port]` and the defaults.
//! - [`login`]: keys, the agent, then a password; [`prompt`] asks at the terminal.
//! - [`progress`]: the shell's output and its progress bars.
//! - [`shell`]: the `rsftp` shell: commands, completion, scripts.

mod connection;
pub mod login;
pub mod progress;
pub mod prompt;
mod rsftp;
mod sftp;
pub mod shell;
pub mod target;
pub mod transfer;

use std::path::PathBuf;

pub use connection::{
    AskHostKey, Connection, HostKeyCheck, NewHostKey, known_hosts_name, load_key,
};
pub use rsftp::{PutStart, RsftpClient};
pub use sftp::SftpClient;
pub use transfer::{Progress, Quiet, TransferReport, download, partial_path, upload};

use crate::protocol::{ErrorCode, Md5Digest};

/// Everything that can go wrong on the client side, each with its cause named.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("cannot connect to {host}: {source}")]
    Connect {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the host key of {host} is not known (fingerprint {fingerprint}); \
         accept it with --accept-new-host-key or add it to known_hosts"
    )]
    HostKeyUnknown { host: String, fingerprint: String },
    #[error(
        "WARNING: THE HOST KEY OF {host} HAS CHANGED (now {fingerprint}; known_hosts line \
         {line} says otherwise). Someone may be intercepting the connection. Refusing to connect."
    )]
    HostKeyChanged {
        host: String,
        fingerprint: String,
        line: usize,
    },
    #[error("host key check failed: {0}")]
    HostKeyCheck(String),
    #[error("authentication failed")]
    AuthFailed,
    #[error("key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("the server refused the {0} subsystem")]
    Subsystem(String),
    #[error("{message}")]
    Remote { code: ErrorCode, message: String },
    #[error("MD5 mismatch for {path}: expected {expected}, got {actual}")]
    Checksum {
        path: String,
        expected: Md5Digest,
        actual: Md5Digest,
    },
    #[error("{0} exists; use -f to replace it")]
    LocalExists(PathBuf),
    #[error("{path}: {source}")]
    Local {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("the server closed the connection")]
    Closed,
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("SSH error: {0}")]
    Ssh(#[from] russh::Error),
}
