//! The client library: connect over SSH, check the host key, log in, speak rsftp/1, and
//! move whole files with resume and MD5 verification. The `rsftp` shell and the tests
//! are built on it.
//!
//! - `connection`, `rsftp`, [`transfer`]: the SSH connection, the protocol, whole files.
//! - [`pipeline`]: many small uploads in a few round trips, not a few per file.
//! - `sftp`, `sftp_session`, `sftp_transfer`, [`exec_hash`]: the same over plain SFTP
//!   for servers without rsftp, checked by the server's `md5sum` where it has one.
//! - `remote`: [`Remote`], either kind of session behind one set of methods.
//! - [`mirror`]: what `mirror` does, decided from two listings.
//! - [`target`]: `[user@]host[:port]` and the defaults.
//! - [`login`]: keys, the agent, then a password; [`prompt`] asks at the terminal.
//! - [`progress`]: the shell's output and its progress bars.
//! - [`shell`]: the `rsftp` shell: commands, completion, scripts.

mod connection;
pub mod exec_hash;
pub mod login;
pub mod mirror;
pub mod pipeline;
pub mod progress;
pub mod prompt;
mod remote;
mod rsftp;
mod sftp;
mod sftp_session;
mod sftp_transfer;
pub mod shell;
pub mod target;
pub mod transfer;

use std::path::PathBuf;

pub use connection::{
    AskHostKey, Connection, ExecOutput, HostKeyCheck, NewHostKey, known_hosts_name, load_key,
};
pub use remote::{Remote, local_hash};
pub use rsftp::{PutStart, RsftpClient};
pub use sftp::SftpClient;
pub use sftp_session::SftpSession;
pub use transfer::{Check, Progress, Quiet, TransferReport, download, partial_path, upload};

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
    #[error("{} mismatch for {path}: the server has {}, we have {}", .ours.kind.name(), .server.hex, .ours.hex)]
    HashMismatch {
        path: String,
        server: exec_hash::FileHash,
        ours: exec_hash::FileHash,
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
