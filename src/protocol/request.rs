//! Requests: one line of text from client to server.

use std::fmt;

use super::words::{quote, split};
use super::{Md5Digest, ParseError};

/// The most bytes that one `write` may carry. A longer one cannot be trusted.
pub const MAX_WRITE: u64 = 64 * 1024 * 1024;

/// The largest size, offset or length on the wire: what a signed 64-bit file offset holds.
pub const MAX_NUMBER: u64 = i64::MAX as u64;

/// One rsftp/1 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Pwd,
    Cd(Option<String>),
    Ls(Option<String>),
    Stat(String),
    Mkdir(String),
    Rmdir(String),
    Rm(String),
    Mv {
        from: String,
        to: String,
    },
    Info,
    Md5 {
        path: String,
        range: Option<(u64, u64)>,
    },
    Read {
        path: String,
        offset: u64,
        len: u64,
    },
    /// Followed on the wire by `len` raw bytes.
    Write {
        path: String,
        offset: u64,
        len: u64,
    },
    Get {
        path: String,
        offset: u64,
        prefix_md5: Option<Md5Digest>,
    },
    /// `md5` is `None` when the client gives it after the data, in [`Request::Done`].
    Put {
        path: String,
        size: u64,
        md5: Option<Md5Digest>,
    },
    /// Inside a `put`: where the client starts sending.
    From(u64),
    /// Inside a `put`: the MD5 of the whole file, after the data.
    Done(Md5Digest),
    Help,
    Quit,
}

impl Request {
    /// Parses one request line (without its newline).
    pub fn parse(line: &[u8]) -> Result<Request, ParseError> {
        let words = split(line)?;
        let Some((command, args)) = words.split_first() else {
            return Err(ParseError::Empty);
        };
        let mut args = Args {
            command: command.as_str(),
            rest: args,
        };
        let request = match command.as_str() {
            "pwd" => Request::Pwd,
            "cd" => Request::Cd(args.optional()),
            "ls" => Request::Ls(args.optional()),
            "stat" => Request::Stat(args.text()?),
            "mkdir" => Request::Mkdir(args.text()?),
            "rmdir" => Request::Rmdir(args.text()?),
            "rm" => Request::Rm(args.text()?),
            "mv" => Request::Mv {
                from: args.text()?,
                to: args.text()?,
            },
            "info" => Request::Info,
            "md5" => {
                let path = args.text()?;
                let range = match args.optional_number()? {
                    None => None,
                    Some(offset) => Some((offset, args.number()?)),
                };
                Request::Md5 { path, range }
            }
            "read" => Request::Read {
                path: args.text()?,
                offset: args.number()?,
                len: args.number()?,
            },
            "write" => Request::Write {
                path: args.text()?,
                offset: args.number()?,
                len: args.number()?,
            },
            "get" => {
                let path = args.text()?;
                let offset = args.optional_number()?.unwrap_or(0);
                let prefix_md5 = match args.optional() {
                    None => None,
                    Some(text) => Some(args.digest(&text)?),
                };
                Request::Get {
                    path,
                    offset,
                    prefix_md5,
                }
            }
            "put" => {
                let path = args.text()?;
                let size = args.number()?;
                let md5 = match args.text()?.as_str() {
                    "-" => None,
                    text => Some(args.digest(text)?),
                };
                Request::Put { path, size, md5 }
            }
            "from" => Request::From(args.number()?),
            "done" => {
                let text = args.text()?;
                Request::Done(args.digest(&text)?)
            }
            "help" => {
                // `help <command>` is accepted; the server answers with the whole list.
                args.optional();
                Request::Help
            }
            "quit" | "exit" => Request::Quit,
            // Echo only the start of what may be a long line of garbage.
            _ => {
                return Err(ParseError::UnknownCommand(
                    command.chars().take(64).collect(),
                ));
            }
        };
        args.finish()?;
        Ok(request)
    }

    /// The command word, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Pwd => "pwd",
            Request::Cd(_) => "cd",
            Request::Ls(_) => "ls",
            Request::Stat(_) => "stat",
            Request::Mkdir(_) => "mkdir",
            Request::Rmdir(_) => "rmdir",
            Request::Rm(_) => "rm",
            Request::Mv { .. } => "mv",
            Request::Info => "info",
            Request::Md5 { .. } => "md5",
            Request::Read { .. } => "read",
            Request::Write { .. } => "write",
            Request::Get { .. } => "get",
            Request::Put { .. } => "put",
            Request::From(_) => "from",
            Request::Done(_) => "done",
            Request::Help => "help",
            Request::Quit => "quit",
        }
    }
}

/// Encodes the request as one line, newline included.
impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name();
        match self {
            Request::Pwd | Request::Info | Request::Help | Request::Quit => writeln!(f, "{name}"),
            Request::Cd(path) | Request::Ls(path) => match path {
                Some(path) => writeln!(f, "{name} {}", quote(path)),
                None => writeln!(f, "{name}"),
            },
            Request::Stat(path)
            | Request::Mkdir(path)
            | Request::Rmdir(path)
            | Request::Rm(path) => {
                writeln!(f, "{name} {}", quote(path))
            }
            Request::Mv { from, to } => writeln!(f, "mv {} {}", quote(from), quote(to)),
            Request::Md5 { path, range } => match range {
                Some((offset, len)) => writeln!(f, "md5 {} {offset} {len}", quote(path)),
                None => writeln!(f, "md5 {}", quote(path)),
            },
            Request::Read { path, offset, len } | Request::Write { path, offset, len } => {
                writeln!(f, "{name} {} {offset} {len}", quote(path))
            }
            Request::Get {
                path,
                offset,
                prefix_md5,
            } => match prefix_md5 {
                Some(md5) => writeln!(f, "get {} {offset} {md5}", quote(path)),
                None => writeln!(f, "get {} {offset}", quote(path)),
            },
            Request::Put { path, size, md5 } => match md5 {
                Some(md5) => writeln!(f, "put {} {size} {md5}", quote(path)),
                None => writeln!(f, "put {} {size} -", quote(path)),
            },
            Request::From(start) => writeln!(f, "from {start}"),
            Request::Done(md5) => writeln!(f, "done {md5}"),
        }
    }
}

/// The arguments of one request, taken in order.
struct Args<'a> {
    command: &'a str,
    rest: &'a [String],
}

impl Args<'_> {
    fn optional(&mut self) -> Option<String> {
        let (first, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(first.clone())
    }

    fn text(&mut self) -> Result<String, ParseError> {
        self.optional()
            .ok_or(ParseError::MissingArgument(self.command.to_owned()))
    }

    fn optional_number(&mut self) -> Result<Option<u64>, ParseError> {
        self.optional().map(|text| parse_number(&text)).transpose()
    }

    fn number(&mut self) -> Result<u64, ParseError> {
        let text = self.text()?;
        parse_number(&text)
    }

    fn digest(&self, text: &str) -> Result<Md5Digest, ParseError> {
        text.parse()
            .map_err(|_| ParseError::BadDigest(text.to_owned()))
    }

    fn finish(self) -> Result<(), ParseError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(ParseError::TooManyArguments(self.command.to_owned()))
        }
    }
}

/// Parses a wire number: plain decimal digits, at most [`MAX_NUMBER`].
pub fn parse_number(text: &str) -> Result<u64, ParseError> {
    let bad = || ParseError::BadNumber(text.to_owned());
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<u64>() {
        Ok(n) if n <= MAX_NUMBER => Ok(n),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md5(s: &str) -> Md5Digest {
        s.parse().unwrap()
    }

    #[test]
    fn every_request_round_trips() {
        let digest = md5("b1946ac92492d2347c6235b4d2611184");
        let requests = [
            Request::Pwd,
            Request::Cd(None),
            Request::Cd(Some("my dir".into())),
            Request::Ls(None),
            Request::Ls(Some("/a".into())),
            Request::Stat("a\"b".into()),
            Request::Mkdir("x".into()),
            Request::Rmdir("x".into()),
            Request::Rm("x".into()),
            Request::Mv {
                from: "a".into(),
                to: "b c".into(),
            },
            Request::Info,
            Request::Md5 {
                path: "f".into(),
                range: None,
            },
            Request::Md5 {
                path: "f".into(),
                range: Some((5, 10)),
            },
            Request::Read {
                path: "f".into(),
                offset: 1,
                len: 2,
            },
            Request::Write {
                path: "f".into(),
                offset: 3,
                len: 4,
            },
            Request::Get {
                path: "f".into(),
                offset: 0,
                prefix_md5: None,
            },
            Request::Get {
                path: "f".into(),
                offset: 9,
                prefix_md5: Some(digest),
            },
            Request::Put {
                path: "f".into(),
                size: 6,
                md5: Some(digest),
            },
            Request::Put {
                path: "f".into(),
                size: 6,
                md5: None,
            },
            Request::From(7),
            Request::Done(digest),
            Request::Help,
            Request::Quit,
        ];
        for request in requests {
            let line = request.to_string();
            assert!(line.ends_with('\n'));
            let parsed = Request::parse(line.trim_end_matches('\n').as_bytes()).unwrap();
            assert_eq!(parsed, request, "{line:?}");
        }
    }

    #[test]
    fn rejects_unknown_commands_and_bad_arguments() {
        assert_eq!(
            Request::parse(b"frobnicate"),
            Err(ParseError::UnknownCommand("frobnicate".into()))
        );
        assert_eq!(Request::parse(b"   "), Err(ParseError::Empty));
        assert_eq!(
            Request::parse(b"rm"),
            Err(ParseError::MissingArgument("rm".into()))
        );
        assert_eq!(
            Request::parse(b"pwd now"),
            Err(ParseError::TooManyArguments("pwd".into()))
        );
        assert_eq!(
            Request::parse(b"read f -1 2"),
            Err(ParseError::BadNumber("-1".into()))
        );
        assert!(Request::parse(b"read f +1 2").is_err());
        assert!(Request::parse(b"read f 99999999999999999999 2").is_err());
        assert!(Request::parse(b"read f 9223372036854775808 2").is_err());
        assert!(Request::parse(b"md5 f 1").is_err());
        assert!(Request::parse(b"put f 1 nothex").is_err());
        assert!(Request::parse(b"get f 0 abc").is_err());
        assert!(Request::parse(b"\xff\xfe\x00garbage").is_err());
    }

    #[test]
    fn accepts_exit_and_help_with_a_topic() {
        assert_eq!(Request::parse(b"exit"), Ok(Request::Quit));
        assert_eq!(Request::parse(b"help get"), Ok(Request::Help));
    }
}
