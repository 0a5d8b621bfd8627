//! The legacy SCP protocol's control lines, parsed and encoded. No I/O: a pure function
//! of one line's bytes, so that a fuzz target can call it as it is.
//!
//! A line is one of:
//! - `C<mode> <size> <name>`: a file of `size` bytes follows;
//! - `D<mode> <size> <name>`: enter a folder (the size is sent, and ignored);
//! - `E`: leave the folder;
//! - `T<mtime> <usec> <atime> <usec>`: times for the next `C` or `D`;
//! - `\x01<message>` (a warning) or `\x02<message>` (fatal), from either side.
//!
//! `<mode>` is exactly four octal digits. Names are one component: never empty, `.`,
//! `..`, containing `/`, NUL or another control character, nor over 255 bytes, so that
//! a name can never lead anywhere but into the folder being written.

/// The longest control line accepted, without its newline. Names are at most 255 bytes;
/// the rest leaves room for messages.
pub const MAX_LINE: usize = 4096;

/// The longest name accepted, in bytes (the usual `NAME_MAX`).
pub const MAX_NAME: usize = 255;

/// The largest size or time accepted: what fits in a signed 64-bit `off_t`/`time_t`.
const MAX_NUMBER: u64 = i64::MAX as u64;

/// One control line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// `C`: a file follows, `size` bytes of it.
    File { mode: u32, size: u64, name: String },
    /// `D`: the following records are inside this folder, up to the matching `E`.
    Dir { mode: u32, name: String },
    /// `E`: the end of the folder last entered.
    End,
    /// `T`: the modification and access times, in Unix seconds, of the next `C` or `D`.
    Times { mtime: u64, atime: u64 },
    /// `\x01`: the peer reports a problem and goes on.
    Warning(String),
    /// `\x02`: the peer reports a problem and stops.
    Fatal(String),
}

/// Why a control line was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    #[error("empty control line")]
    Empty,
    #[error("control line longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("unknown control record type {0:#04x}")]
    UnknownType(u8),
    #[error("bad mode: expected four octal digits")]
    BadMode,
    #[error("bad size")]
    BadSize,
    #[error("bad time")]
    BadTime,
    #[error("fields not delimited by one space")]
    BadDelimiter,
    #[error("unexpected bytes after the record")]
    Trailing,
    #[error("unexpected file name: {0}")]
    BadName(&'static str),
}

/// Parses one control line, given without its terminating `\n`.
pub fn parse_control(line: &[u8]) -> Result<Control, ControlError> {
    if line.len() > MAX_LINE {
        return Err(ControlError::TooLong);
    }
    let (&kind, rest) = line.split_first().ok_or(ControlError::Empty)?;
    match kind {
        b'C' => {
            let (mode, size, name) = parse_entry(rest)?;
            Ok(Control::File { mode, size, name })
        }
        b'D' => {
            let (mode, _size, name) = parse_entry(rest)?;
            Ok(Control::Dir { mode, name })
        }
        b'E' if rest.is_empty() => Ok(Control::End),
        b'E' => Err(ControlError::Trailing),
        b'T' => parse_times(rest),
        0x01 => Ok(Control::Warning(message_text(rest))),
        0x02 => Ok(Control::Fatal(message_text(rest))),
        other => Err(ControlError::UnknownType(other)),
    }
}

impl Control {
    /// The line on the wire, newline included. A message's own newlines become spaces,
    /// since a newline would end the line early.
    pub fn encode(&self) -> Vec<u8> {
        let text = match self {
            Control::File { mode, size, name } => format!("C{:04o} {size} {name}", mode & 0o7777),
            Control::Dir { mode, name } => format!("D{:04o} 0 {name}", mode & 0o7777),
            Control::End => "E".to_owned(),
            Control::Times { mtime, atime } => format!("T{mtime} 0 {atime} 0"),
            Control::Warning(message) => format!("\x01{}", one_line(message)),
            Control::Fatal(message) => format!("\x02{}", one_line(message)),
        };
        let mut line = text.into_bytes();
        line.push(b'\n');
        line
    }
}

fn one_line(message: &str) -> String {
    message.replace(['\n', '\r'], " ")
}

/// A message from the peer: for a log line only, never a name, so invalid UTF-8 is
/// shown replaced rather than refused.
fn message_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `<mode> <size> <name>` after a `C` or `D`.
fn parse_entry(rest: &[u8]) -> Result<(u32, u64, String), ControlError> {
    let (mode_digits, rest) = rest.split_at_checked(4).ok_or(ControlError::BadMode)?;
    let mut mode = 0u32;
    for &digit in mode_digits {
        if !(b'0'..=b'7').contains(&digit) {
            return Err(ControlError::BadMode);
        }
        mode = (mode << 3) | u32::from(digit - b'0');
    }
    let rest = rest.strip_prefix(b" ").ok_or(ControlError::BadDelimiter)?;
    let (size, rest) = take_number(rest).ok_or(ControlError::BadSize)?;
    let name = rest.strip_prefix(b" ").ok_or(ControlError::BadDelimiter)?;
    Ok((mode, size, parse_name(name)?))
}

fn parse_name(bytes: &[u8]) -> Result<String, ControlError> {
    let name = std::str::from_utf8(bytes).map_err(|_| ControlError::BadName("not UTF-8"))?;
    match name {
        "" => Err(ControlError::BadName("empty")),
        "." | ".." => Err(ControlError::BadName("not a single name")),
        _ if name.contains('/') => Err(ControlError::BadName("contains /")),
        _ if name.chars().any(char::is_control) => {
            Err(ControlError::BadName("contains a control character"))
        }
        _ if name.len() > MAX_NAME => Err(ControlError::BadName("longer than 255 bytes")),
        _ => Ok(name.to_owned()),
    }
}

/// `<mtime> <usec> <atime> <usec>` after a `T`, and nothing more.
fn parse_times(rest: &[u8]) -> Result<Control, ControlError> {
    let (mtime, rest) = take_number(rest).ok_or(ControlError::BadTime)?;
    let rest = rest.strip_prefix(b" ").ok_or(ControlError::BadDelimiter)?;
    let rest = take_micros(rest)?;
    let rest = rest.strip_prefix(b" ").ok_or(ControlError::BadDelimiter)?;
    let (atime, rest) = take_number(rest).ok_or(ControlError::BadTime)?;
    let rest = rest.strip_prefix(b" ").ok_or(ControlError::BadDelimiter)?;
    if !take_micros(rest)?.is_empty() {
        return Err(ControlError::Trailing);
    }
    Ok(Control::Times { mtime, atime })
}

fn take_micros(bytes: &[u8]) -> Result<&[u8], ControlError> {
    match take_number(bytes) {
        Some((usec, rest)) if usec < 1_000_000 => Ok(rest),
        _ => Err(ControlError::BadTime),
    }
}

/// Leading decimal digits (at least one, no sign) and what follows them; `None` if there
/// are none or the number passes [`MAX_NUMBER`].
fn take_number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut value = 0u64;
    for &digit in &bytes[..digits] {
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    (value <= MAX_NUMBER).then_some((value, &bytes[digits..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(mode: u32, size: u64, name: &str) -> Control {
        Control::File {
            mode,
            size,
            name: name.into(),
        }
    }

    #[test]
    fn parses_every_record_type() {
        assert_eq!(
            parse_control(b"C0644 12 a b.txt"),
            Ok(file(0o644, 12, "a b.txt"))
        );
        assert_eq!(parse_control(b"C7777 0 x"), Ok(file(0o7777, 0, "x")));
        assert_eq!(
            parse_control(b"C0600 9223372036854775807 big"),
            Ok(file(0o600, i64::MAX as u64, "big"))
        );
        assert_eq!(
            parse_control(b"D0755 0 dir name"),
            Ok(Control::Dir {
                mode: 0o755,
                name: "dir name".into()
            })
        );
        assert_eq!(parse_control(b"E"), Ok(Control::End));
        assert_eq!(
            parse_control(b"T1700000000 0 1700000001 999999"),
            Ok(Control::Times {
                mtime: 1_700_000_000,
                atime: 1_700_000_001
            })
        );
        assert_eq!(
            parse_control(b"\x01scp: a: No such file"),
            Ok(Control::Warning("scp: a: No such file".into()))
        );
        assert_eq!(
            parse_control(b"\x02fatal"),
            Ok(Control::Fatal("fatal".into()))
        );
        // Names may hold anything a single name may: spaces, dots, quotes, UTF-8.
        for name in ["..a", "a..", ".hidden", "it's", "\u{e9}t\u{e9}", " lead"] {
            let line = format!("C0644 1 {name}");
            assert_eq!(parse_control(line.as_bytes()), Ok(file(0o644, 1, name)));
        }
    }

    #[test]
    fn every_record_round_trips() {
        for control in [
            file(0o644, 0, "a"),
            file(0o7777, u64::MAX >> 1, "sp ace"),
            Control::Dir {
                mode: 0o700,
                name: "d".into(),
            },
            Control::End,
            Control::Times { mtime: 1, atime: 2 },
            Control::Warning("w".into()),
            Control::Fatal("f".into()),
        ] {
            let line = control.encode();
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(parse_control(&line[..line.len() - 1]), Ok(control));
        }
        assert_eq!(
            Control::Warning("two\nlines".into()).encode(),
            b"\x01two lines\n"
        );
    }

    #[test]
    fn rejects_bad_modes() {
        for line in [
            &b"C644 1 a"[..],
            b"C06444 1 a",
            b"C0648 1 a",
            b"C-644 1 a",
            b"C",
            b"C064",
            b"Cabcd 1 a",
            b"D07x5 0 d",
        ] {
            assert!(
                matches!(
                    parse_control(line),
                    Err(ControlError::BadMode | ControlError::BadDelimiter)
                ),
                "{line:?}"
            );
        }
    }

    #[test]
    fn rejects_bad_sizes() {
        for line in [
            &b"C0644  1 a"[..],
            b"C0644 -1 a",
            b"C0644 +1 a",
            b"C0644 x a",
            b"C0644 9223372036854775808 a",
            b"C0644 99999999999999999999999 a",
            b"C0644 1",
            b"C0644 1a b",
            b"C0644 ",
        ] {
            assert!(
                matches!(
                    parse_control(line),
                    Err(ControlError::BadSize | ControlError::BadDelimiter)
                ),
                "{line:?}"
            );
        }
    }

    #[test]
    fn rejects_names_that_could_lead_elsewhere() {
        let long = format!("C0644 1 {}", "n".repeat(256));
        for line in [
            &b"C0644 1 "[..],
            b"C0644 1 .",
            b"C0644 1 ..",
            b"C0644 1 ../etc/passwd",
            b"C0644 1 /etc/passwd",
            b"C0644 1 a/b",
            b"C0644 1 a/",
            b"C0644 1 a\0b",
            b"C0644 1 a\rb",
            b"C0644 1 \xff",
            b"D0755 0 ..",
            b"D0755 0 a/b",
            b"D0755 0 .",
            long.as_bytes(),
        ] {
            assert!(
                matches!(parse_control(line), Err(ControlError::BadName(_))),
                "{line:?}"
            );
        }
        let longest = format!("C0644 1 {}", "n".repeat(255));
        assert!(parse_control(longest.as_bytes()).is_ok());
    }

    #[test]
    fn rejects_bad_times_and_trailing_bytes() {
        for line in [
            &b"T"[..],
            b"T1 0 2",
            b"T1 0 2 ",
            b"T1 1000000 2 0",
            b"T1 0 2 1000000",
            b"T-1 0 2 0",
            b"Tx 0 2 0",
            b"T1 0 2 0 ",
            b"T1 0 2 0x",
            b"T1  0 2 0",
            b"T99999999999999999999 0 2 0",
            b"E ",
            b"Ex",
        ] {
            assert!(parse_control(line).is_err(), "{line:?}");
        }
    }

    #[test]
    fn rejects_unknown_empty_and_overlong_lines() {
        assert_eq!(parse_control(b""), Err(ControlError::Empty));
        assert_eq!(parse_control(b"X"), Err(ControlError::UnknownType(b'X')));
        assert_eq!(parse_control(b"\0"), Err(ControlError::UnknownType(0)));
        assert_eq!(
            parse_control(b"c0644 1 a"),
            Err(ControlError::UnknownType(b'c'))
        );
        let long = vec![b'\x01'; MAX_LINE + 1];
        assert_eq!(parse_control(&long), Err(ControlError::TooLong));
    }
}
