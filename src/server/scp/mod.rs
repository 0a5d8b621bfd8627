//! Legacy SCP over exec: `scp -t` (the server receives) and `scp -f` (the server
//! sends), as `scp -O`, PuTTY's `pscp -scp` and older clients run them.
//!
//! No `scp` program runs: the command line is split like the hash commands' and only
//! these forms are accepted. Every name resolves through [`VirtualPath`] into the
//! user's home like any other path, uploads reserve their whole size before any data is
//! written and publish atomically after the last byte and the sender's final OK, and a
//! failed upload leaves nothing behind (SCP cannot resume). Refusals reach the client as
//! SCP error lines, so it prints them; a malformed control line ends the transfer.

mod control;
mod sink;
mod source;

use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::Channel;
use russh::server::Msg;
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncWrite, BufReader};
use tracing::info;

pub use control::{Control, ControlError, MAX_LINE, MAX_NAME, parse_control};

use super::activity::Activity;
use super::budget::ConnectionAccount;
use super::front::Front;
use super::logging::LogText;
use super::op::Ops;
use crate::storage::stream::write_all_or_stall;
use crate::storage::{HomeDir, StorageError, VirtualPath};

/// Paths one `scp -f` may name, at most.
const MAX_SOURCES: usize = 1024;

/// Which way the files go, seen from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Direction {
    /// `-t`: the client sends files to this target.
    Sink { target: String },
    /// `-f`: the server sends these files to the client.
    Source { paths: Vec<String> },
}

/// An `scp` command line, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct ScpCommand {
    pub direction: Direction,
    /// `-r`: folders too.
    pub recursive: bool,
    /// `-p`: modification times (and modes) travel with the files.
    pub preserve: bool,
    /// `-d`: the target must be a folder.
    pub target_is_dir: bool,
}

impl ScpCommand {
    /// Parses the words after `scp`. The error is the one line to show the user.
    pub fn from_words(words: &[String]) -> Result<ScpCommand, String> {
        let (mut sink, mut source) = (false, false);
        let (mut recursive, mut preserve, mut target_is_dir) = (false, false, false);
        let mut operands = Vec::new();
        let mut options_done = false;
        for word in words {
            if options_done || !word.starts_with('-') || word == "-" {
                operands.push(word.clone());
                continue;
            }
            if word == "--" {
                options_done = true;
                continue;
            }
            for flag in word.chars().skip(1) {
                match flag {
                    't' => sink = true,
                    'f' => source = true,
                    'r' => recursive = true,
                    'p' => preserve = true,
                    'd' => target_is_dir = true,
                    // Verbose output is the remote program's own debugging; accepted.
                    'v' => {}
                    other => return Err(format!("scp: option -{other} is not supported here")),
                }
            }
        }
        let direction = match (sink, source) {
            (true, false) => {
                let [target] = <[String; 1]>::try_from(operands)
                    .map_err(|_| "scp: -t takes exactly one target".to_owned())?;
                Direction::Sink { target }
            }
            (false, true) if operands.is_empty() => {
                return Err("scp: -f needs at least one file".into());
            }
            (false, true) if operands.len() > MAX_SOURCES => {
                return Err(format!("scp: at most {MAX_SOURCES} files at once"));
            }
            (false, true) => Direction::Source { paths: operands },
            _ => return Err("scp: give exactly one of -t and -f".into()),
        };
        Ok(ScpCommand {
            direction,
            recursive,
            preserve,
            target_is_dir,
        })
    }
}

/// Runs an SCP transfer on `channel`, then reports its exit status: 0, or 1 if anything
/// failed. Every control line and every chunk of data touches the front's activity
/// clock; a transfer that makes no progress for its stall limit fails; upload chunks are
/// charged to its memory account until they are written, downloads while they go out.
pub(crate) async fn run(
    channel: Channel<Msg>,
    command: ScpCommand,
    home: HomeDir,
    user: String,
    front: Front,
) {
    let (mut read_half, write_half) = channel.split();
    let failed = {
        let mut peer = Peer {
            reader: BufReader::new(read_half.make_reader()),
            writer: write_half.make_writer(),
            activity: front.activity,
            stall: front.stall,
        };
        let mut transfer = Transfer {
            ops: Ops::new(home, front.oplog, "scp"),
            user,
            account: front.account,
            recursive: command.recursive,
            preserve: command.preserve,
            errors: 0,
        };
        let outcome = match command.direction {
            Direction::Sink { target } => {
                sink::receive(&mut transfer, &mut peer, &target, command.target_is_dir).await
            }
            Direction::Source { paths } => source::send(&mut transfer, &mut peer, &paths).await,
        };
        if let Err(Stop::Aborted(message)) = &outcome {
            let line = format!("scp: {message}\n");
            let _ = write_half.extended_data(1, line.as_bytes()).await;
        }
        outcome.is_err() || transfer.errors > 0
    };
    let _ = write_half.exit_status(u32::from(failed)).await;
    let _ = write_half.eof().await;
    let _ = write_half.close().await;
    // Whatever the client still sends is read and dropped until the channel ends, so
    // that it never fills and stalls the connection.
    let drain = async { while read_half.wait().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
}

/// Why a transfer stopped early.
#[derive(Debug)]
enum Stop {
    /// The channel broke or the peer went away.
    Gone,
    /// We refused to go on, and told the peer with a fatal line.
    Fatal,
    /// We stopped in the middle of a file's bytes, where no control line can go: the
    /// message goes to the client's stderr and the channel ends.
    Aborted(String),
}

/// The two directions of the channel.
struct Peer<R, W> {
    reader: BufReader<R>,
    writer: W,
    activity: Activity,
    /// How long a read or write of data may make no progress.
    stall: Duration,
}

/// What the peer answered to one record.
enum Answer {
    Ok,
    /// A warning: this record is skipped, the transfer goes on.
    Warning(String),
}

impl<R: tokio::io::AsyncRead + Unpin, W: AsyncWrite + Unpin> Peer<R, W> {
    async fn send(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        write_all_or_stall(&mut self.writer, bytes, self.stall)
            .await
            .map_err(|_| Stop::Gone)
    }

    async fn ok(&mut self) -> Result<(), Stop> {
        self.send(b"\0").await
    }

    async fn warn(&mut self, message: &str) -> Result<(), Stop> {
        self.send(&Control::Warning(format!("scp: {message}")).encode())
            .await
    }

    /// Tells the peer why we stop, and stops.
    async fn fatal(&mut self, message: &str) -> Stop {
        match self
            .send(&Control::Fatal(format!("scp: {message}")).encode())
            .await
        {
            Ok(()) => Stop::Fatal,
            Err(stop) => stop,
        }
    }

    /// The next control line, without its newline; `None` at a clean end of input.
    async fn line(&mut self) -> Result<Option<Vec<u8>>, Stop> {
        let line = read_line(&mut self.reader).await;
        self.activity.touch();
        line
    }

    /// One answer from the peer: `\0`, or a warning or fatal line.
    async fn answer(&mut self) -> Result<Answer, Stop> {
        let Some(line) = self.line_or_byte().await? else {
            return Err(Stop::Gone);
        };
        match line {
            Reply::Ok => Ok(Answer::Ok),
            Reply::Line(line) => match parse_control(&line) {
                Ok(Control::Warning(message)) => Ok(Answer::Warning(message)),
                Ok(Control::Fatal(message)) => {
                    info!(message = %LogText(&message), "scp peer stopped the transfer");
                    Err(Stop::Fatal)
                }
                Ok(_) | Err(_) => Err(self.fatal("protocol error: expected a reply").await),
            },
        }
    }

    /// A lone `\0`, or a whole line starting with another byte.
    async fn line_or_byte(&mut self) -> Result<Option<Reply>, Stop> {
        let first = match self.reader.fill_buf().await {
            Ok([]) => return Ok(None),
            Ok(buf) => buf[0],
            Err(_) => return Err(Stop::Gone),
        };
        if first == 0 {
            self.reader.consume(1);
            self.activity.touch();
            return Ok(Some(Reply::Ok));
        }
        match self.line().await? {
            Some(line) => Ok(Some(Reply::Line(line))),
            None => Ok(None),
        }
    }
}

enum Reply {
    Ok,
    Line(Vec<u8>),
}

/// Reads one `\n`-terminated line of at most [`MAX_LINE`] bytes, without the newline.
/// Of a longer line only the first `MAX_LINE + 1` bytes are read, never more into
/// memory, and [`parse_control`] refuses them. A line cut off by the end of input counts
/// as the peer going away.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Option<Vec<u8>>, Stop> {
    let mut line = Vec::new();
    loop {
        let buf = match reader.fill_buf().await {
            Ok(buf) => buf,
            Err(_) => return Err(Stop::Gone),
        };
        if buf.is_empty() {
            return if line.is_empty() {
                Ok(None)
            } else {
                Err(Stop::Gone)
            };
        }
        let (taken, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(end) => (end, true),
            None => (buf.len(), false),
        };
        if line.len() + taken > MAX_LINE {
            // One byte over is enough for the parser to refuse it as too long.
            let keep = MAX_LINE + 1 - line.len();
            line.extend_from_slice(&buf[..keep]);
            reader.consume(keep);
            return Ok(Some(line));
        }
        line.extend_from_slice(&buf[..taken]);
        reader.consume(taken + usize::from(done));
        if done {
            return Ok(Some(line));
        }
    }
}

/// The state of one transfer, either way.
struct Transfer {
    /// The user's home and the session's operation log.
    ops: Ops,
    user: String,
    /// Uploads charge their chunks as queued, downloads as in flight.
    account: Arc<ConnectionAccount>,
    recursive: bool,
    preserve: bool,
    /// Files or folders that failed; the exit status is 1 if there were any.
    errors: u32,
}

impl Transfer {
    /// Runs blocking storage work off the reactor.
    async fn blocking<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        F: FnOnce(&HomeDir) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        match self.ops.blocking(work).await {
            Ok(result) => result,
            Err(join) => Err(StorageError::Io {
                path: VirtualPath::root(),
                source: std::io::Error::other(join),
            }),
        }
    }

    fn log(&self, op: &str, path: &str, bytes: u64, started: Instant, error: Option<&str>) {
        self.ops.log(op, path, bytes, started, error);
    }
}

/// What the user reads about a storage error: their view of paths only.
fn error_text(err: &StorageError) -> String {
    super::op::classify(err).message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<ScpCommand, String> {
        let words: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
        ScpCommand::from_words(&words)
    }

    #[test]
    fn parses_what_clients_send() {
        assert_eq!(
            parse(&["-v", "-r", "-p", "-d", "-t", "--", "-dir"]),
            Ok(ScpCommand {
                direction: Direction::Sink {
                    target: "-dir".into()
                },
                recursive: true,
                preserve: true,
                target_is_dir: true,
            })
        );
        assert_eq!(
            parse(&["-prf", "a b", "c"]),
            Ok(ScpCommand {
                direction: Direction::Source {
                    paths: vec!["a b".into(), "c".into()]
                },
                recursive: true,
                preserve: true,
                target_is_dir: false,
            })
        );
        assert!(parse(&["-t", "."]).is_ok());
    }

    #[test]
    fn rejects_other_forms() {
        for bad in [
            &["-t"][..],
            &["-t", "a", "b"],
            &["-f"],
            &["-t", "-f", "a"],
            &["a"],
            &["-x", "-t", "a"],
            &["-S", "prog", "-t", "a"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn reads_lines_within_the_cap() {
        let mut input: &[u8] = b"C0644 1 a\nE\nlast";
        assert_eq!(
            read_line(&mut input).await.unwrap(),
            Some(b"C0644 1 a".to_vec())
        );
        assert_eq!(read_line(&mut input).await.unwrap(), Some(b"E".to_vec()));
        assert!(matches!(read_line(&mut input).await, Err(Stop::Gone)));
        let mut empty: &[u8] = b"";
        assert_eq!(read_line(&mut empty).await.unwrap(), None);
        let long = vec![b'x'; MAX_LINE * 3];
        let mut input: &[u8] = &long;
        let line = read_line(&mut input).await.unwrap().unwrap();
        assert_eq!(parse_control(&line), Err(ControlError::TooLong));
    }
}
