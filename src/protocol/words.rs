//! Splitting a request line into words, and quoting words for the wire.
//!
//! A word is bare (UTF-8 without space, tab, `"`, `\` or control characters) or quoted
//! between double quotes with the escapes `\\ \" \n \r \t \xHH`.

use std::borrow::Cow;

use super::ParseError;

/// Splits one line (without its newline) into words, undoing quotes.
///
/// A quoted word may decode to bytes that are not UTF-8 (through `\xHH`); such a word is
/// refused here, because every argument of rsftp/1 is text.
pub fn split(line: &[u8]) -> Result<Vec<String>, ParseError> {
    let mut words = Vec::new();
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b' ' | b'\t' => i += 1,
            b'"' => {
                let (word, next) = quoted(line, i + 1)?;
                words.push(word);
                i = next;
                if i < line.len() && !matches!(line[i], b' ' | b'\t') {
                    return Err(ParseError::Syntax("a closing quote must end its word"));
                }
            }
            _ => {
                let start = i;
                while i < line.len() && !matches!(line[i], b' ' | b'\t') {
                    match line[i] {
                        b'"' | b'\\' => {
                            return Err(ParseError::Syntax("quote a word that contains \" or \\"));
                        }
                        b if is_control(b) => return Err(ParseError::ControlByte),
                        _ => i += 1,
                    }
                }
                let word = std::str::from_utf8(&line[start..i]).map_err(|_| ParseError::NotUtf8)?;
                words.push(word.to_owned());
            }
        }
    }
    Ok(words)
}

/// Decodes a quoted word whose body starts at `start`; returns it and the index after
/// the closing quote.
fn quoted(line: &[u8], start: usize) -> Result<(String, usize), ParseError> {
    let mut out = Vec::new();
    let mut i = start;
    loop {
        let Some(&b) = line.get(i) else {
            return Err(ParseError::Syntax("unterminated quote"));
        };
        i += 1;
        match b {
            b'"' => break,
            b'\\' => {
                let Some(&esc) = line.get(i) else {
                    return Err(ParseError::Syntax("unterminated escape"));
                };
                i += 1;
                out.push(match esc {
                    b'\\' => b'\\',
                    b'"' => b'"',
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'x' => {
                        let hex = line
                            .get(i..i + 2)
                            .and_then(|h| std::str::from_utf8(h).ok())
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                            .ok_or(ParseError::Syntax("\\x takes two hex digits"))?;
                        i += 2;
                        hex
                    }
                    _ => return Err(ParseError::Syntax("unknown escape")),
                });
            }
            b if is_control(b) => return Err(ParseError::ControlByte),
            b => out.push(b),
        }
    }
    let word = String::from_utf8(out).map_err(|_| ParseError::NotUtf8)?;
    Ok((word, i))
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// Quotes `word` for the wire if it needs it; a plain word is returned as it is.
pub fn quote(word: &str) -> Cow<'_, str> {
    let bare = !word.is_empty()
        && word
            .bytes()
            .all(|b| !is_control(b) && !matches!(b, b' ' | b'\t' | b'"' | b'\\'));
    if bare {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(quote_bytes(word.as_bytes()))
    }
}

/// Quotes arbitrary bytes (a file name on disk that may not be UTF-8) losslessly.
pub fn quote_name(name: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(name) {
        Ok(text) => quote(text),
        Err(_) => Cow::Owned(quote_bytes(name)),
    }
}

fn quote_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    let mut rest = bytes;
    while !rest.is_empty() {
        // Copy valid UTF-8 runs as text and escape the bytes between them.
        let (valid, invalid) = match std::str::from_utf8(rest) {
            Ok(all) => (all, &[][..]),
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                // The prefix was just checked to be valid UTF-8.
                (std::str::from_utf8(good).unwrap_or_default(), bad)
            }
        };
        for c in valid.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                }
                c => out.push(c),
            }
        }
        if let Some((&bad, tail)) = invalid.split_first() {
            out.push_str(&format!("\\x{bad:02x}"));
            rest = tail;
        } else {
            rest = &[];
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_bare_and_quoted_words() {
        assert_eq!(split(b"ls").unwrap(), ["ls"]);
        assert_eq!(split(b"  mv\ta  b ").unwrap(), ["mv", "a", "b"]);
        assert_eq!(
            split(br#"mv "my file.txt" "say \"hi\"\n\x41""#).unwrap(),
            ["mv", "my file.txt", "say \"hi\"\nA"]
        );
        assert_eq!(split(br#"cd """#).unwrap(), ["cd", ""]);
        assert_eq!(split("cd Été".as_bytes()).unwrap(), ["cd", "Été"]);
        assert!(split(b"").unwrap().is_empty());
    }

    #[test]
    fn rejects_malformed_words() {
        assert_eq!(
            split(b"cd \"open"),
            Err(ParseError::Syntax("unterminated quote"))
        );
        assert!(split(b"cd a\"b").is_err());
        assert!(split(b"cd \"a\"b").is_err());
        assert!(split(b"cd \"\\q\"").is_err());
        assert!(split(b"cd \"\\x4\"").is_err());
        assert_eq!(split(b"cd a\x00b"), Err(ParseError::ControlByte));
        assert_eq!(split(b"cd \"a\x1bb\""), Err(ParseError::ControlByte));
        assert_eq!(split(b"cd \xff\xfe"), Err(ParseError::NotUtf8));
        assert_eq!(split(b"cd \"\\xff\""), Err(ParseError::NotUtf8));
    }

    #[test]
    fn quotes_only_when_needed_and_round_trips() {
        assert_eq!(quote("docs/a.txt"), "docs/a.txt");
        assert_eq!(quote("Été"), "Été");
        for word in [
            "",
            "a b",
            "tab\there",
            "q\"uote",
            "back\\slash",
            "nl\n",
            "\u{1}x",
        ] {
            let quoted = quote(word);
            assert!(quoted.starts_with('"'), "{word:?} should be quoted");
            let line = format!("cd {quoted}");
            assert_eq!(split(line.as_bytes()).unwrap(), ["cd", word]);
        }
    }

    #[test]
    fn quotes_names_that_are_not_utf8() {
        assert_eq!(quote_name(b"ok"), "ok");
        assert_eq!(quote_name(b"bad\xffname"), r#""bad\xffname""#);
    }
}
