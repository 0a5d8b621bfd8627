//! The wire formats: rsftp/1 (request lines, quoting, status lines and entry lines), the
//! PROXY protocol header a balancer sends ([`proxy`]), and,
//! in [`sftp`], SFTP v3 in both directions.
//!
//! This module parses and encodes; it touches no socket and no file. `docs/PROTOCOL.md`
//! is the reference for rsftp/1, `docs/SFTP.md` for what we speak of SFTP.

mod answers;
mod digest;
pub mod proxy;
mod reply;
mod request;
pub mod sftp;
pub mod time;
pub mod transport;
mod words;

pub use answers::{GetAnswer, GetDone, Md5Answer, PutAnswer, PutDone, ReadAnswer};
pub use digest::{BadDigest, Md5Digest};
pub use reply::{EntryLine, EntryType, ErrorCode, QuotaInfo, Status};
pub use request::{MAX_NUMBER, MAX_WRITE, Request, parse_number};
pub use words::{quote, quote_name, split};

/// The protocol's name and version, as the greeting gives it.
pub const VERSION: &str = "rsftp/1";

/// The longest request line the server reads, newline excluded.
pub const MAX_LINE: usize = 16 * 1024;

/// Why a line could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("empty request")]
    Empty,
    #[error("unknown command: {0}")]
    UnknownCommand(String),
    #[error("{0}: missing argument")]
    MissingArgument(String),
    #[error("{0}: too many arguments")]
    TooManyArguments(String),
    #[error("not a number: {0}")]
    BadNumber(String),
    #[error("not an MD5 digest (32 hex digits): {0}")]
    BadDigest(String),
    #[error("control character in request")]
    ControlByte,
    #[error("request is not UTF-8")]
    NotUtf8,
    #[error("{0}")]
    Syntax(&'static str),
}

impl ParseError {
    /// The error code a server answers this with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ParseError::UnknownCommand(_) => ErrorCode::UnknownCommand,
            _ => ErrorCode::BadRequest,
        }
    }
}
