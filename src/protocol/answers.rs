//! The success replies of the transfer commands, typed: what follows `OK` in the answer
//! to `md5`, `read`, `get` and `put`. Each encodes the words the server sends and
//! parses the words a client reads, so the two ends cannot drift apart.

use super::ParseError;
use super::digest::Md5Digest;
use super::request::parse_number;

/// `md5`: the digest and how many bytes it covers (`OK <md5> <n>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Md5Answer {
    pub digest: Md5Digest,
    pub len: u64,
}

/// `read`: how many bytes follow the status line (`OK <n>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadAnswer {
    pub len: u64,
}

/// `get`, first line: the bytes that follow, and the file's size (`OK <n> <size>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetAnswer {
    pub len: u64,
    pub size: u64,
}

/// `get`, last line: the MD5 of the whole file (`OK <md5>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetDone {
    pub md5: Md5Digest,
}

/// `put`, first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutAnswer {
    /// The file already has exactly these bytes (`OK uptodate`): nothing is sent.
    UpToDate,
    /// The server holds `offset` bytes of this upload already, whose MD5 is
    /// `prefix_md5` (`OK have <offset> <md5>`); the client goes on from there.
    Have { offset: u64, prefix_md5: Md5Digest },
}

/// `put`, last line: the published file's MD5 and size (`OK <md5> <size>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutDone {
    pub md5: Md5Digest,
    pub size: u64,
}

/// The words of a reply, for exactly `n` of them.
fn exactly<'a, const N: usize>(
    words: &'a [String],
    what: &str,
) -> Result<[&'a str; N], ParseError> {
    let found: Vec<&str> = words.iter().map(String::as_str).collect();
    found.try_into().map_err(|found: Vec<&str>| {
        if found.len() < N {
            ParseError::MissingArgument(what.to_owned())
        } else {
            ParseError::TooManyArguments(what.to_owned())
        }
    })
}

fn md5(word: &str) -> Result<Md5Digest, ParseError> {
    word.parse()
        .map_err(|_| ParseError::BadDigest(word.to_owned()))
}

impl Md5Answer {
    pub fn encode(&self) -> String {
        format!("{} {}", self.digest, self.len)
    }

    pub fn from_words(words: &[String]) -> Result<Md5Answer, ParseError> {
        let [digest, len] = exactly(words, "md5 reply")?;
        Ok(Md5Answer {
            digest: md5(digest)?,
            len: parse_number(len)?,
        })
    }
}

impl ReadAnswer {
    pub fn encode(&self) -> String {
        self.len.to_string()
    }

    pub fn from_words(words: &[String]) -> Result<ReadAnswer, ParseError> {
        let [len] = exactly(words, "read reply")?;
        Ok(ReadAnswer {
            len: parse_number(len)?,
        })
    }
}

impl GetAnswer {
    pub fn encode(&self) -> String {
        format!("{} {}", self.len, self.size)
    }

    pub fn from_words(words: &[String]) -> Result<GetAnswer, ParseError> {
        let [len, size] = exactly(words, "get reply")?;
        Ok(GetAnswer {
            len: parse_number(len)?,
            size: parse_number(size)?,
        })
    }
}

impl GetDone {
    pub fn encode(&self) -> String {
        self.md5.to_string()
    }

    pub fn from_words(words: &[String]) -> Result<GetDone, ParseError> {
        let [digest] = exactly(words, "end of get")?;
        Ok(GetDone { md5: md5(digest)? })
    }
}

impl PutAnswer {
    pub fn encode(&self) -> String {
        match self {
            PutAnswer::UpToDate => "uptodate".to_owned(),
            PutAnswer::Have { offset, prefix_md5 } => format!("have {offset} {prefix_md5}"),
        }
    }

    pub fn from_words(words: &[String]) -> Result<PutAnswer, ParseError> {
        match words.first().map(String::as_str) {
            Some("uptodate") => {
                exactly::<1>(words, "put reply")?;
                Ok(PutAnswer::UpToDate)
            }
            Some("have") => {
                let [_, offset, prefix] = exactly(words, "put reply")?;
                Ok(PutAnswer::Have {
                    offset: parse_number(offset)?,
                    prefix_md5: md5(prefix)?,
                })
            }
            _ => Err(ParseError::Syntax(
                "a put reply says `uptodate` or `have <offset> <md5>`",
            )),
        }
    }
}

impl PutDone {
    pub fn encode(&self) -> String {
        format!("{} {}", self.md5, self.size)
    }

    pub fn from_words(words: &[String]) -> Result<PutDone, ParseError> {
        let [digest, size] = exactly(words, "end of put")?;
        Ok(PutDone {
            md5: md5(digest)?,
            size: parse_number(size)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Status;

    /// The words a client reads back from the line the server sends.
    fn sent(encoded: String) -> Vec<String> {
        match Status::parse(format!("OK {encoded}").as_bytes()) {
            Ok(Status::Ok(words)) => words,
            other => panic!("{other:?}"),
        }
    }

    fn words(text: &str) -> Vec<String> {
        text.split(' ').map(str::to_owned).collect()
    }

    const MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

    fn digest() -> Md5Digest {
        MD5.parse().unwrap()
    }

    #[test]
    fn md5_round_trips() {
        let answer = Md5Answer {
            digest: digest(),
            len: 1 << 40,
        };
        assert_eq!(Md5Answer::from_words(&sent(answer.encode())), Ok(answer));
        assert_eq!(answer.encode(), format!("{MD5} {}", 1u64 << 40));
    }

    #[test]
    fn read_and_get_round_trip() {
        let read = ReadAnswer { len: 7 };
        assert_eq!(ReadAnswer::from_words(&sent(read.encode())), Ok(read));
        let get = GetAnswer { len: 3, size: 10 };
        assert_eq!(GetAnswer::from_words(&sent(get.encode())), Ok(get));
        let done = GetDone { md5: digest() };
        assert_eq!(GetDone::from_words(&sent(done.encode())), Ok(done));
    }

    #[test]
    fn put_round_trips() {
        for answer in [
            PutAnswer::UpToDate,
            PutAnswer::Have {
                offset: 0,
                prefix_md5: digest(),
            },
            PutAnswer::Have {
                offset: u64::MAX >> 1,
                prefix_md5: digest(),
            },
        ] {
            assert_eq!(PutAnswer::from_words(&sent(answer.encode())), Ok(answer));
        }
        let done = PutDone {
            md5: digest(),
            size: 5,
        };
        assert_eq!(PutDone::from_words(&sent(done.encode())), Ok(done));
    }

    #[test]
    fn rejects_missing_and_extra_words() {
        assert_eq!(
            Md5Answer::from_words(&words(MD5)),
            Err(ParseError::MissingArgument("md5 reply".into()))
        );
        assert_eq!(
            GetAnswer::from_words(&words("1 2 3")),
            Err(ParseError::TooManyArguments("get reply".into()))
        );
        assert_eq!(
            ReadAnswer::from_words(&[]),
            Err(ParseError::MissingArgument("read reply".into()))
        );
        assert_eq!(
            PutAnswer::from_words(&words("have 3")),
            Err(ParseError::MissingArgument("put reply".into()))
        );
        assert_eq!(
            PutAnswer::from_words(&words("uptodate now")),
            Err(ParseError::TooManyArguments("put reply".into()))
        );
    }

    #[test]
    fn rejects_bad_numbers_and_digests() {
        assert!(matches!(
            GetAnswer::from_words(&words("-1 2")),
            Err(ParseError::BadNumber(_))
        ));
        assert_eq!(
            PutDone::from_words(&words("abc 2")),
            Err(ParseError::BadDigest("abc".into()))
        );
        assert!(matches!(
            PutAnswer::from_words(&words("maybe")),
            Err(ParseError::Syntax(_))
        ));
    }
}
