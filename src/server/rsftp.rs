//! The `rsftp` subsystem: one rsftp/1 session over one SSH channel.
//!
//! Requests are read one line at a time and answered in order; replies are flushed only
//! when no further pipelined request is already waiting, so a pipelining client gets its
//! answers in few packets. Every request goes to the session's [`OpLog`] with its user,
//! operation, path, bytes, duration and result. The data requests (`write`, `get`,
//! `put`) are in `transfers`.

mod transfers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use md5::Md5;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter, ReadHalf,
    WriteHalf,
};
use tracing::{info, warn};

use super::activity::Activity;
use super::budget::{self, ConnectionAccount, Kind};
use super::front::Front;
use super::oplog::OpLog;
use super::replies::storage_error_reply;
use crate::protocol::{
    EntryLine, EntryType, ErrorCode, MAX_LINE, Md5Answer, QuotaInfo, ReadAnswer, Request, Status,
    VERSION, quote,
};
use crate::storage::stream::{self, ChunkSink};
use crate::storage::{EntryKind, HomeDir, StorageError, VirtualPath};

/// An `ls` reply goes out in pieces of about this size.
const LS_CHUNK: usize = 64 * 1024;

const HELP: &[&str] = &[
    "pwd                              print the current directory",
    "cd [PATH]                        change directory (no PATH: /)",
    "ls [PATH]                        list: TYPE SIZE MTIME NAME",
    "stat PATH                        describe one file",
    "mkdir PATH | rmdir PATH | rm PATH",
    "mv FROM TO                       rename or move; replaces a file at TO",
    "info                             quota: used, limit, free",
    "md5 PATH [OFFSET LENGTH]         MD5 of a file or of a range",
    "read PATH OFFSET LENGTH          OK N, then N bytes",
    "write PATH OFFSET LENGTH         then LENGTH bytes; in place, not atomic",
    "get PATH [OFFSET [PREFIX-MD5]]   OK N SIZE, N bytes, then OK MD5",
    "put PATH SIZE MD5|-              resumable, verified, atomic; see docs/PROTOCOL.md",
    "help | quit",
];

/// Serves one rsftp/1 session on `stream` until the client quits or goes away, then
/// sends EOF and hands the stream back, so the caller can send an exit status before it
/// closes the channel. Every request and every chunk of data touches the front's
/// activity clock; a transfer that makes no progress for its stall limit fails; what is
/// buffered is charged to its memory account.
pub async fn serve<S>(stream: S, home: HomeDir, user: String, front: Front) -> S
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let mut session = Session {
        conn: Connection {
            reader: BufReader::with_capacity(stream::CHUNK, read),
            writer: BufWriter::with_capacity(stream::CHUNK, write),
            line: Vec::new(),
            activity: front.activity,
            stall: front.stall,
        },
        home,
        cwd: VirtualPath::root(),
        user,
        oplog: front.oplog,
        account: front.account,
    };
    if let Err(err) = session.run().await {
        info!(user = %session.user, error = %err, "rsftp session ended by an I/O error");
    }
    let mut conn = session.conn;
    let _ = conn.flush().await;
    let _ = tokio::time::timeout(conn.stall, conn.writer.shutdown()).await;
    conn.reader.into_inner().unsplit(conn.writer.into_inner())
}

struct Connection<S> {
    reader: BufReader<ReadHalf<S>>,
    writer: BufWriter<WriteHalf<S>>,
    line: Vec<u8>,
    activity: Activity,
    stall: Duration,
}

enum Line {
    Eof,
    TooLong,
    Text,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Reads one line into `self.line`, without its `\n` or `\r\n`. A line over
    /// [`MAX_LINE`] is skipped to its end without being stored.
    async fn read_line(&mut self) -> std::io::Result<Line> {
        self.line.clear();
        let mut too_long = false;
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                // The peer closed mid-line: what we have is not a request.
                return Ok(Line::Eof);
            }
            let newline = available.iter().position(|&b| b == b'\n');
            let chunk = &available[..newline.unwrap_or(available.len())];
            if !too_long && self.line.len() + chunk.len() > MAX_LINE {
                too_long = true;
                self.line.clear();
            }
            if !too_long {
                self.line.extend_from_slice(chunk);
            }
            let used = chunk.len() + usize::from(newline.is_some());
            self.reader.consume(used);
            if newline.is_some() {
                self.activity.touch();
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                return Ok(if too_long { Line::TooLong } else { Line::Text });
            }
        }
    }

    async fn send(&mut self, text: &str) -> std::io::Result<()> {
        stream::write_all_or_stall(&mut self.writer, text.as_bytes(), self.stall).await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match tokio::time::timeout(self.stall, self.writer.flush()).await {
            Ok(result) => result,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    /// Streams `n` bytes of `file` from `offset`, each chunk counting as activity.
    async fn send_file(
        &mut self,
        file: crate::storage::ReadHandle,
        offset: u64,
        n: u64,
        hasher: Option<Md5>,
    ) -> std::io::Result<Option<Md5>> {
        let activity = &self.activity;
        let progress = |_| activity.touch();
        stream::send_file(
            &mut self.writer,
            file,
            offset,
            n,
            hasher,
            self.stall,
            progress,
        )
        .await
    }

    /// Takes `len` data bytes into `sink`, counting them into `received` and as
    /// activity as they arrive, and charging them to `account` until they are written.
    async fn receive<K: ChunkSink>(
        &mut self,
        account: &Arc<ConnectionAccount>,
        len: u64,
        sink: K,
        received: &mut u64,
    ) -> std::io::Result<(K, Result<(), K::Error>)> {
        let activity = &self.activity;
        let progress = |n| {
            *received += n;
            activity.touch();
        };
        budget::receive(account, &mut self.reader, len, sink, self.stall, progress).await
    }

    async fn send_error(&mut self, code: &ErrorCode, message: &str) -> std::io::Result<()> {
        self.send(&Status::error_line(code, message)).await
    }
}

/// How a request failed.
enum Failure {
    /// Answer `ERR` and go on with the next request.
    Reply(ErrorCode, String),
    /// Answer `ERR` and close the channel: framing can no longer be trusted.
    Close(ErrorCode, String),
    /// The channel itself broke.
    Io(std::io::Error),
}

impl From<StorageError> for Failure {
    fn from(err: StorageError) -> Self {
        if let StorageError::Io { source, .. } = &err {
            warn!(error = %source, "storage I/O error");
        }
        let (code, message) = storage_error_reply(&err);
        Failure::Reply(code, message)
    }
}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Self {
        Failure::Io(err)
    }
}

/// What a finished request did, for the log.
#[derive(Default)]
struct Done {
    path: Option<VirtualPath>,
    bytes: u64,
    quit: bool,
}

impl Done {
    fn path(path: VirtualPath) -> Done {
        Done {
            path: Some(path),
            ..Done::default()
        }
    }

    fn transfer(path: VirtualPath, bytes: u64) -> Done {
        Done {
            path: Some(path),
            bytes,
            quit: false,
        }
    }
}

struct Session<S> {
    conn: Connection<S>,
    home: HomeDir,
    cwd: VirtualPath,
    user: String,
    oplog: Arc<OpLog>,
    /// Uploads charge their chunks as queued, downloads and listings as in flight.
    account: Arc<ConnectionAccount>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    async fn run(&mut self) -> std::io::Result<()> {
        self.conn
            .send(&format!(
                "OK {VERSION} rsftpd/{}\n",
                env!("CARGO_PKG_VERSION")
            ))
            .await?;
        loop {
            if self.conn.reader.buffer().is_empty() {
                self.conn.flush().await?;
            }
            match self.conn.read_line().await? {
                Line::Eof => return Ok(()),
                Line::TooLong => {
                    let message = format!("request line longer than {MAX_LINE} bytes");
                    self.log("?", None, 0, Instant::now(), Err(&message));
                    self.conn.send_error(&ErrorCode::TooLong, &message).await?;
                    continue;
                }
                Line::Text => {}
            }
            let started = Instant::now();
            let request = match Request::parse(&self.conn.line) {
                Ok(request) => request,
                Err(err) => {
                    let message = err.to_string();
                    self.log("?", None, 0, started, Err(&message));
                    self.conn.send_error(&err.code(), &message).await?;
                    if carries_data(&self.conn.line) {
                        // Raw bytes follow a `write` or `from` line, and we cannot tell
                        // how many: reading on would run them as requests.
                        return Ok(());
                    }
                    continue;
                }
            };
            let op = request.name();
            // A put cut off with the connection ends in an I/O error; its log line still
            // names the file.
            let put_path = match &request {
                Request::Put { path, .. } => self.resolve(path).ok(),
                _ => None,
            };
            match self.handle(request).await {
                Ok(done) => {
                    self.log(op, done.path.as_ref(), done.bytes, started, Ok(()));
                    if done.quit {
                        return Ok(());
                    }
                }
                Err(Failure::Reply(code, message)) => {
                    self.log(op, None, 0, started, Err(&format!("{code}: {message}")));
                    self.conn.send_error(&code, &message).await?;
                }
                Err(Failure::Close(code, message)) => {
                    self.log(op, None, 0, started, Err(&format!("{code}: {message}")));
                    self.conn.send_error(&code, &message).await?;
                    return Ok(());
                }
                Err(Failure::Io(err)) => {
                    self.log(op, put_path.as_ref(), 0, started, Err(&err.to_string()));
                    return Err(err);
                }
            }
        }
    }

    fn log(
        &self,
        op: &str,
        path: Option<&VirtualPath>,
        bytes: u64,
        started: Instant,
        result: Result<(), &str>,
    ) {
        let path = path.map_or("", |p| p.as_str());
        let elapsed = started.elapsed();
        self.oplog
            .record("rsftp", op, path, bytes, elapsed, result.err());
    }

    fn resolve(&self, input: &str) -> Result<VirtualPath, Failure> {
        Ok(VirtualPath::resolve(&self.cwd, input)?)
    }

    /// Runs blocking storage work off the reactor.
    async fn blocking<T, F>(&self, work: F) -> Result<T, Failure>
    where
        F: FnOnce(&HomeDir) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        let home = self.home.clone();
        match tokio::task::spawn_blocking(move || work(&home)).await {
            Ok(result) => Ok(result?),
            Err(join) => Err(Failure::Io(std::io::Error::other(join))),
        }
    }

    async fn handle(&mut self, request: Request) -> Result<Done, Failure> {
        match request {
            Request::Pwd => {
                self.conn
                    .send(&format!("OK {}\n", quote(self.cwd.as_str())))
                    .await?;
                Ok(Done::path(self.cwd.clone()))
            }
            Request::Cd(path) => {
                let path = self.resolve(path.as_deref().unwrap_or("/"))?;
                let target = path.clone();
                let entry = self.blocking(move |home| home.stat(&target)).await?;
                if entry.kind != EntryKind::Dir {
                    return Err(StorageError::NotADirectory { path }.into());
                }
                self.cwd = path.clone();
                self.conn
                    .send(&format!("OK {}\n", quote(path.as_str())))
                    .await?;
                Ok(Done::path(path))
            }
            Request::Ls(path) => {
                let path = self.resolve(path.as_deref().unwrap_or(""))?;
                let target = path.clone();
                let listing = self
                    .blocking(move |home| home.sorted_listing(&target))
                    .await?;
                let _memory = self.account.charge(Kind::InFlight, listing.held_bytes());
                // Written as it is encoded, never as one reply of the whole directory.
                let mut text = format!("OK {}\n", listing.len());
                for entry in listing.iter() {
                    text.push_str(&EntryLine::encode(
                        entry_type(entry.kind),
                        entry.size,
                        entry.mtime,
                        entry.name,
                    ));
                    text.push('\n');
                    if text.len() >= LS_CHUNK {
                        self.conn.send(&text).await?;
                        text.clear();
                    }
                }
                self.conn.send(&text).await?;
                Ok(Done::path(path))
            }
            Request::Stat(path) => {
                let path = self.resolve(&path)?;
                let target = path.clone();
                let entry = self.blocking(move |home| home.stat(&target)).await?;
                let line = EntryLine::encode(
                    entry_type(entry.kind),
                    entry.size,
                    entry.mtime,
                    path.as_str().as_bytes(),
                );
                self.conn.send(&format!("OK {line}\n")).await?;
                Ok(Done::path(path))
            }
            Request::Mkdir(path) => self.simple(&path, |home, p| home.mkdir(p)).await,
            Request::Rmdir(path) => self.simple(&path, |home, p| home.rmdir(p)).await,
            Request::Rm(path) => self.simple(&path, |home, p| home.remove_file(p)).await,
            Request::Mv { from, to } => {
                let from = self.resolve(&from)?;
                let to = self.resolve(&to)?;
                let source = from.clone();
                self.blocking(move |home| home.rename(&source, &to)).await?;
                self.conn.send("OK\n").await?;
                Ok(Done::path(from))
            }
            Request::Info => {
                let usage = self.home.usage();
                let info = QuotaInfo {
                    used: usage.used,
                    limit: usage.limit,
                    free: usage.free(),
                };
                self.conn.send(&format!("OK {}\n", info.encode())).await?;
                Ok(Done::default())
            }
            Request::Md5 { path, range } => {
                let path = self.resolve(&path)?;
                let target = path.clone();
                let (offset, len) = range.unwrap_or((0, u64::MAX));
                let (digest, n) = self
                    .blocking(move |home| home.md5_range(&target, offset, len))
                    .await?;
                self.conn
                    .send(&ok(Md5Answer { digest, len: n }.encode()))
                    .await?;
                Ok(Done::transfer(path, n))
            }
            Request::Read { path, offset, len } => {
                let path = self.resolve(&path)?;
                let target = path.clone();
                let (file, entry) = self.blocking(move |home| home.open_read(&target)).await?;
                let n = len.min(entry.size.saturating_sub(offset));
                self.conn.send(&ok(ReadAnswer { len: n }.encode())).await?;
                let _memory = self
                    .account
                    .charge(Kind::InFlight, budget::DOWNLOAD_PIPELINE);
                self.conn.send_file(file, offset, n, None).await?;
                Ok(Done::transfer(path, n))
            }
            Request::Write { path, offset, len } => self.write(&path, offset, len).await,
            Request::Get {
                path,
                offset,
                prefix_md5,
            } => self.get(&path, offset, prefix_md5).await,
            Request::Put { path, size, md5 } => self.put(&path, size, md5).await,
            // A `from` outside a put means the client sent data after a put we refused
            // (or found up to date) without waiting for our answer. That data must never
            // be read as requests, so the channel ends here.
            Request::From(_) => Err(Failure::Close(
                ErrorCode::BadRequest,
                "`from` without a put that said `have`; closing, as data may follow".into(),
            )),
            Request::Done(_) => Err(Failure::Reply(
                ErrorCode::BadRequest,
                "done belongs inside a put".into(),
            )),
            Request::Help => {
                let mut text = format!("OK {}\n", HELP.len());
                for line in HELP {
                    text.push_str(line);
                    text.push('\n');
                }
                self.conn.send(&text).await?;
                Ok(Done::default())
            }
            Request::Quit => {
                self.conn.send("OK bye\n").await?;
                Ok(Done {
                    quit: true,
                    ..Done::default()
                })
            }
        }
    }

    /// A request that takes one path, changes something and answers a bare `OK`.
    async fn simple<F>(&mut self, path: &str, work: F) -> Result<Done, Failure>
    where
        F: FnOnce(&HomeDir, &VirtualPath) -> Result<(), StorageError> + Send + 'static,
    {
        let path = self.resolve(path)?;
        let target = path.clone();
        self.blocking(move |home| work(home, &target)).await?;
        self.conn.send("OK\n").await?;
        Ok(Done::path(path))
    }
}

/// The status line of a success, given the words after `OK`.
fn ok(words: String) -> String {
    format!("OK {words}\n")
}

/// Whether a line that did not parse is one that raw bytes follow.
fn carries_data(line: &[u8]) -> bool {
    let word = line
        .split(|b| *b == b' ' || *b == b'\t')
        .find(|w| !w.is_empty())
        .unwrap_or_default();
    word == b"write" || word == b"from"
}

fn entry_type(kind: EntryKind) -> EntryType {
    match kind {
        EntryKind::Dir => EntryType::Dir,
        EntryKind::File => EntryType::File,
        EntryKind::Symlink => EntryType::Symlink,
        EntryKind::Other => EntryType::Other,
    }
}
