//! Replies: status lines (`OK ...` / `ERR <code> <message>`), entry lines and `info`.

use std::fmt;

use super::ParseError;
use super::request::parse_number;
use super::words::{quote_name, split};

/// The stable error codes of rsftp/1. Unknown codes from a newer peer are kept as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    BadRequest,
    UnknownCommand,
    TooLong,
    BadPath,
    NotFound,
    Exists,
    NotADirectory,
    IsADirectory,
    NotEmpty,
    Denied,
    Quota,
    Checksum,
    Mismatch,
    Busy,
    TooLarge,
    Timeout,
    Io,
    Other(String),
}

impl ErrorCode {
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::UnknownCommand => "unknown-command",
            ErrorCode::TooLong => "too-long",
            ErrorCode::BadPath => "bad-path",
            ErrorCode::NotFound => "not-found",
            ErrorCode::Exists => "exists",
            ErrorCode::NotADirectory => "not-a-directory",
            ErrorCode::IsADirectory => "is-a-directory",
            ErrorCode::NotEmpty => "not-empty",
            ErrorCode::Denied => "denied",
            ErrorCode::Quota => "quota",
            ErrorCode::Checksum => "checksum",
            ErrorCode::Mismatch => "mismatch",
            ErrorCode::Busy => "busy",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Io => "io",
            ErrorCode::Other(code) => code,
        }
    }

    pub fn parse(text: &str) -> ErrorCode {
        match text {
            "bad-request" => ErrorCode::BadRequest,
            "unknown-command" => ErrorCode::UnknownCommand,
            "too-long" => ErrorCode::TooLong,
            "bad-path" => ErrorCode::BadPath,
            "not-found" => ErrorCode::NotFound,
            "exists" => ErrorCode::Exists,
            "not-a-directory" => ErrorCode::NotADirectory,
            "is-a-directory" => ErrorCode::IsADirectory,
            "not-empty" => ErrorCode::NotEmpty,
            "denied" => ErrorCode::Denied,
            "quota" => ErrorCode::Quota,
            "checksum" => ErrorCode::Checksum,
            "mismatch" => ErrorCode::Mismatch,
            "busy" => ErrorCode::Busy,
            "too-large" => ErrorCode::TooLarge,
            "timeout" => ErrorCode::Timeout,
            "io" => ErrorCode::Io,
            other => ErrorCode::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// `OK` and the words after it, unquoted.
    Ok(Vec<String>),
    Err {
        code: ErrorCode,
        message: String,
    },
}

impl Status {
    /// Parses one status line (without its newline).
    pub fn parse(line: &[u8]) -> Result<Status, ParseError> {
        if let Some(rest) = line.strip_prefix(b"ERR ") {
            let text = std::str::from_utf8(rest).map_err(|_| ParseError::NotUtf8)?;
            let (code, message) = text.split_once(' ').unwrap_or((text, ""));
            return Ok(Status::Err {
                code: ErrorCode::parse(code),
                message: message.to_owned(),
            });
        }
        let words = split(line)?;
        match words.split_first() {
            Some((first, rest)) if first == "OK" => Ok(Status::Ok(rest.to_vec())),
            _ => Err(ParseError::Syntax("a status line starts with OK or ERR")),
        }
    }

    /// Encodes an error line. Control characters in the message become spaces, so a
    /// message can never break framing.
    pub fn error_line(code: &ErrorCode, message: &str) -> String {
        let clean: String = message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        format!("ERR {code} {clean}\n")
    }
}

/// The type of a directory entry, as one letter on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    Dir,
    File,
    Symlink,
    Other,
}

impl EntryType {
    pub fn letter(self) -> char {
        match self {
            EntryType::Dir => 'd',
            EntryType::File => 'f',
            EntryType::Symlink => 'l',
            EntryType::Other => 'o',
        }
    }
}

/// One entry of `ls` or the answer of `stat`: `<type> <size> <mtime> <name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryLine {
    pub kind: EntryType,
    pub size: u64,
    pub mtime: i64,
    pub name: String,
}

impl EntryLine {
    /// Encodes the entry's words (no newline); `name` is the raw name on disk.
    pub fn encode(kind: EntryType, size: u64, mtime: i64, name: &[u8]) -> String {
        format!("{} {size} {mtime} {}", kind.letter(), quote_name(name))
    }

    /// Parses the four words of an entry.
    pub fn from_words(words: &[String]) -> Result<EntryLine, ParseError> {
        let [kind, size, mtime, name] = words else {
            return Err(ParseError::Syntax("an entry has four words"));
        };
        let kind = match kind.as_str() {
            "d" => EntryType::Dir,
            "f" => EntryType::File,
            "l" => EntryType::Symlink,
            "o" => EntryType::Other,
            _ => return Err(ParseError::Syntax("unknown entry type")),
        };
        Ok(EntryLine {
            kind,
            size: parse_number(size)?,
            mtime: mtime
                .parse()
                .map_err(|_| ParseError::BadNumber(mtime.clone()))?,
            name: name.clone(),
        })
    }

    /// Parses one entry line (without its newline).
    pub fn parse(line: &[u8]) -> Result<EntryLine, ParseError> {
        EntryLine::from_words(&split(line)?)
    }
}

/// The answer of `info`: the user's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaInfo {
    pub used: u64,
    pub limit: u64,
    pub free: u64,
}

impl QuotaInfo {
    pub fn encode(&self) -> String {
        format!("used={} limit={} free={}", self.used, self.limit, self.free)
    }

    pub fn from_words(words: &[String]) -> Result<QuotaInfo, ParseError> {
        let mut info = QuotaInfo {
            used: 0,
            limit: 0,
            free: 0,
        };
        let mut seen = 0;
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let slot = match key {
                "used" => &mut info.used,
                "limit" => &mut info.limit,
                "free" => &mut info.free,
                // Newer servers may say more; what we do not know we skip.
                _ => continue,
            };
            *slot = parse_number(value)?;
            seen += 1;
        }
        if seen == 3 {
            Ok(info)
        } else {
            Err(ParseError::Syntax("info needs used=, limit= and free="))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_round_trip() {
        assert_eq!(
            Status::parse(b"OK 3 \"my file\""),
            Ok(Status::Ok(vec!["3".into(), "my file".into()]))
        );
        assert_eq!(Status::parse(b"OK"), Ok(Status::Ok(vec![])));
        let line = Status::error_line(&ErrorCode::NotFound, "no such file: /a\nb");
        assert_eq!(line, "ERR not-found no such file: /a b\n");
        assert_eq!(
            Status::parse(line.trim_end().as_bytes()),
            Ok(Status::Err {
                code: ErrorCode::NotFound,
                message: "no such file: /a b".into()
            })
        );
    }

    #[test]
    fn keeps_unknown_error_codes() {
        let status = Status::parse(b"ERR shiny-new thing").unwrap();
        assert_eq!(
            status,
            Status::Err {
                code: ErrorCode::Other("shiny-new".into()),
                message: "thing".into()
            }
        );
        for code in [
            ErrorCode::Quota,
            ErrorCode::TooLarge,
            ErrorCode::Timeout,
            ErrorCode::Other("x".into()),
        ] {
            assert_eq!(ErrorCode::parse(code.as_str()), code);
        }
    }

    #[test]
    fn rejects_lines_that_are_not_status_lines() {
        assert!(Status::parse(b"HELLO").is_err());
        assert!(Status::parse(b"").is_err());
        assert!(Status::parse(b"ERR \xff").is_err());
    }

    #[test]
    fn entry_lines_round_trip() {
        let line = EntryLine::encode(EntryType::File, 12, 1_700_000_000, b"a b.txt");
        assert_eq!(line, "f 12 1700000000 \"a b.txt\"");
        let entry = EntryLine::parse(line.as_bytes()).unwrap();
        assert_eq!(entry.name, "a b.txt");
        assert_eq!(entry.kind, EntryType::File);
        assert!(EntryLine::parse(b"x 1 2 n").is_err());
        assert!(EntryLine::parse(b"f 1 2").is_err());
    }

    #[test]
    fn info_round_trips() {
        let info = QuotaInfo {
            used: 1,
            limit: 10,
            free: 9,
        };
        let words: Vec<String> = info.encode().split(' ').map(String::from).collect();
        assert_eq!(QuotaInfo::from_words(&words), Ok(info));
        assert!(QuotaInfo::from_words(&["used=1".into()]).is_err());
    }
}
