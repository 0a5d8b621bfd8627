//! Moving bulk data between an async byte stream and a file without blocking the reactor.
//!
//! File I/O and MD5 run on blocking threads, one chunk per short `spawn_blocking` call;
//! the async side waits on the network. A blocking thread is therefore never held while
//! the peer is slow or silent, so stalled transfers cannot use up the blocking pool. One
//! chunk is on the disk side while the next is on the network side, so a transfer
//! streams at the speed of the slower side with no round trip per chunk.

use std::io;
use std::time::Duration;

use md5::Md5;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::hash::md5_range;
pub use super::read::CHUNK;
use super::read::{ReadAt, ReadHandle};

/// How long a transfer may make no progress, either way, before the peer counts as
/// gone: the default of the server's stall limit. A peer that stops reading (or floods
/// us while we write, which over SSH stalls the connection), or stops sending in the
/// middle of an upload, must not hold a session and its task for ever.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Writes all of `data`, or fails with `TimedOut` after `stall` without progress.
pub async fn write_all_or_stall<W: AsyncWrite + Unpin + ?Sized>(
    out: &mut W,
    data: &[u8],
    stall: Duration,
) -> io::Result<()> {
    match tokio::time::timeout(stall, out.write_all(data)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer stopped reading",
        )),
    }
}

/// Hashes `len` bytes of `file` from `offset` into `hasher`, on the calling (blocking)
/// thread; a file that ends first is `UnexpectedEof`. Used to pick up a whole-file MD5
/// where a resumed transfer starts.
pub fn hash_range<R: ReadAt + ?Sized>(
    file: &R,
    offset: u64,
    len: u64,
    hasher: &mut Md5,
) -> io::Result<()> {
    if md5_range(file, offset, len, hasher)? < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file ended early",
        ));
    }
    Ok(())
}

/// What one blocking read of a chunk hands back: the file and hasher to go on with,
/// and the chunk.
type ReadChunk = (ReadHandle, Option<Md5>, io::Result<Vec<u8>>);

/// Reads (and hashes) `want` bytes at `pos` in a short blocking call.
fn read_chunk(
    file: ReadHandle,
    mut hasher: Option<Md5>,
    pos: u64,
    want: usize,
) -> JoinHandle<ReadChunk> {
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; want];
        let read = file.read_exact_at(pos, &mut buf).map(|()| {
            if let Some(hasher) = hasher.as_mut() {
                md5::Digest::update(hasher, &buf);
            }
            buf
        });
        (file, hasher, read)
    })
}

/// Writes `len` bytes of `file` from `offset` to `out`, hashing them into `hasher` in the
/// same pass if one is given. A file that shrinks under us is an error: the caller has
/// promised `len` bytes and must not send fewer. A write that makes no progress for
/// `stall` fails with `TimedOut`.
pub async fn send_file<W: AsyncWrite + Unpin + ?Sized>(
    out: &mut W,
    file: ReadHandle,
    offset: u64,
    len: u64,
    hasher: Option<Md5>,
    stall: Duration,
    mut progress: impl FnMut(u64),
) -> io::Result<Option<Md5>> {
    let end = offset + len;
    let mut pos = offset;
    if len == 0 {
        return Ok(hasher);
    }
    // The next chunk is read while this one goes out.
    let mut reading = read_chunk(file, hasher, pos, CHUNK.min(len as usize));
    loop {
        let (file, hasher, chunk) = reading.await.map_err(io::Error::other)?;
        let chunk = chunk?;
        pos += chunk.len() as u64;
        if pos == end {
            write_all_or_stall(out, &chunk, stall).await?;
            progress(chunk.len() as u64);
            return Ok(hasher);
        }
        reading = read_chunk(file, hasher, pos, CHUNK.min((end - pos) as usize));
        write_all_or_stall(out, &chunk, stall).await?;
        progress(chunk.len() as u64);
    }
}

/// Somewhere received bytes go, in order, on a blocking thread.
pub trait ChunkSink: Send + 'static {
    type Error: Send + 'static;
    fn write_chunk(&mut self, data: &[u8]) -> Result<(), Self::Error>;
}

/// What one blocking write of a chunk hands back: the sink, the outcome of its writes
/// so far, and the buffer for reuse.
type Written<S> = (S, Result<(), <S as ChunkSink>::Error>, Vec<u8>);

/// The sink of [`receive`], with the outcome of its writes so far: idle, or writing one
/// chunk in a short blocking call.
enum SinkState<S: ChunkSink> {
    Idle(S, Result<(), S::Error>),
    Writing(JoinHandle<Written<S>>),
}

impl<S: ChunkSink> SinkState<S> {
    /// Waits for the chunk being written, if any; gives back its buffer for reuse.
    async fn settle(self) -> io::Result<(S, Result<(), S::Error>, Option<Vec<u8>>)> {
        match self {
            SinkState::Idle(sink, result) => Ok((sink, result, None)),
            SinkState::Writing(task) => {
                let (sink, result, buf) = task.await.map_err(io::Error::other)?;
                Ok((sink, result, Some(buf)))
            }
        }
    }

    /// Starts writing `chunk`; after a failed write, the chunk is only dropped.
    fn write(sink: S, result: Result<(), S::Error>, chunk: Vec<u8>) -> SinkState<S> {
        if result.is_err() {
            return SinkState::Idle(sink, result);
        }
        SinkState::Writing(tokio::task::spawn_blocking(move || {
            let mut sink = sink;
            let result = sink.write_chunk(&chunk);
            (sink, result, chunk)
        }))
    }
}

/// Reads exactly `len` bytes from `input` and hands them to `sink`, a full chunk at a
/// time. If the sink fails, the rest is still read and thrown away, so the byte stream
/// keeps its framing; the sink's first error comes back beside it. An error reading
/// `input` (the peer went away, or sent nothing for `stall`: `TimedOut`) comes back as
/// `Err`, after every byte received has reached the sink, and the sink is dropped.
pub async fn receive<R, S>(
    input: &mut R,
    len: u64,
    sink: S,
    stall: Duration,
    mut progress: impl FnMut(u64),
) -> io::Result<(S, Result<(), S::Error>)>
where
    R: AsyncRead + Unpin + ?Sized,
    S: ChunkSink,
{
    let mut state = SinkState::Idle(sink, Ok(()));
    let mut spare: Option<Vec<u8>> = None;
    let mut remaining = len;
    let mut read_result = Ok(());
    while remaining > 0 {
        let mut buf = spare.take().unwrap_or_default();
        buf.resize(CHUNK.min(remaining as usize), 0);
        // Fill the buffer with plain reads rather than read_exact: if the peer goes
        // away mid-chunk, the bytes that did arrive must still reach the file.
        let mut filled = 0;
        while filled < buf.len() {
            match tokio::time::timeout(stall, input.read(&mut buf[filled..])).await {
                Ok(Ok(0)) => {
                    read_result = Err(io::ErrorKind::UnexpectedEof.into());
                    break;
                }
                Ok(Ok(n)) => {
                    filled += n;
                    progress(n as u64);
                }
                Ok(Err(err)) => {
                    read_result = Err(err);
                    break;
                }
                Err(_) => {
                    read_result = Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no data from the peer for {} s", stall.as_secs()),
                    ));
                    break;
                }
            }
        }
        buf.truncate(filled);
        remaining -= filled as u64;
        if filled > 0 {
            // The chunk before this one has had the whole read to reach the disk.
            let (sink, result, old) = state.settle().await?;
            spare = old;
            state = SinkState::write(sink, result, buf);
        }
        if read_result.is_err() {
            break;
        }
    }
    // Everything received so far reaches the disk before we look at the outcome, so an
    // upload cut off here can resume from all of it.
    let (sink, result, _) = state.settle().await?;
    read_result?;
    Ok((sink, result))
}

/// Reads and throws away `len` bytes, to keep framing after a refused `write`.
pub async fn discard<R: AsyncRead + Unpin + ?Sized>(input: &mut R, len: u64) -> io::Result<()> {
    let copied = tokio::io::copy(&mut input.take(len), &mut tokio::io::sink()).await?;
    if copied == len {
        Ok(())
    } else {
        Err(io::ErrorKind::UnexpectedEof.into())
    }
}
