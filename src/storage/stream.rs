//! Moving bulk data between an async byte stream and a file without blocking the reactor.
//!
//! File I/O and MD5 run on a blocking thread; the async side only moves buffers. A small
//! bounded queue between the two keeps both busy at once, so a transfer streams at the
//! speed of the slower side with no round trip per chunk.

use std::io;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// The size of one buffer in flight.
pub const CHUNK: usize = 256 * 1024;

/// Buffers in flight between the file thread and the channel.
const QUEUE: usize = 4;

/// How long one write may make no progress before the peer counts as gone. A peer that
/// stops reading (or floods us while we write, which over SSH stalls the connection)
/// must not hold a session and its task for ever.
pub const WRITE_STALL: Duration = Duration::from_secs(120);

/// Writes all of `data`, or fails with `TimedOut` after [`WRITE_STALL`] without progress.
pub async fn write_all_or_stall<W: AsyncWrite + Unpin + ?Sized>(
    out: &mut W,
    data: &[u8],
) -> io::Result<()> {
    match tokio::time::timeout(WRITE_STALL, out.write_all(data)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer stopped reading",
        )),
    }
}

/// Hashes `len` bytes of `file` from `offset` into `hasher`, on the calling (blocking)
/// thread. Used to pick up a whole-file MD5 where a resumed download starts.
pub fn hash_range(file: &std::fs::File, offset: u64, len: u64, hasher: &mut Md5) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK.min(len as usize)];
    let mut pos = offset;
    let end = offset + len;
    while pos < end {
        let want = CHUNK.min((end - pos) as usize);
        file.read_exact_at(&mut buf[..want], pos)?;
        hasher.update(&buf[..want]);
        pos += want as u64;
    }
    Ok(())
}

/// Writes `len` bytes of `file` from `offset` to `out`, hashing them into `hasher` in the
/// same pass if one is given. A file that shrinks under us is an error: the caller has
/// promised `len` bytes and must not send fewer.
pub async fn send_file<W: AsyncWrite + Unpin + ?Sized>(
    out: &mut W,
    file: std::fs::File,
    offset: u64,
    len: u64,
    mut hasher: Option<Md5>,
    mut progress: impl FnMut(u64),
) -> io::Result<Option<Md5>> {
    let (tx, mut rx) = mpsc::channel::<io::Result<Vec<u8>>>(QUEUE);
    let reader = tokio::task::spawn_blocking(move || {
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let want = CHUNK.min((end - pos) as usize);
            let mut buf = vec![0u8; want];
            if let Err(err) = file.read_exact_at(&mut buf, pos) {
                let _ = tx.blocking_send(Err(err));
                return None;
            }
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(&buf);
            }
            if tx.blocking_send(Ok(buf)).is_err() {
                // The channel side gave up; nothing more to do.
                return None;
            }
            pos += want as u64;
        }
        hasher
    });
    let mut sent = 0u64;
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk?;
        write_all_or_stall(out, &chunk).await?;
        sent += chunk.len() as u64;
        progress(chunk.len() as u64);
    }
    let hasher = reader.await.map_err(io::Error::other)?;
    if sent != len {
        return Err(io::Error::other("file reader stopped early"));
    }
    Ok(hasher)
}

/// Somewhere received bytes go, in order, on a blocking thread.
pub trait ChunkSink: Send + 'static {
    type Error: Send + 'static;
    fn write_chunk(&mut self, data: &[u8]) -> Result<(), Self::Error>;
}

/// Reads exactly `len` bytes from `input` and hands them to `sink`. If the sink fails,
/// the rest is still read and thrown away, so the byte stream keeps its framing; the
/// sink's first error comes back beside it. An error reading `input` (the peer went
/// away) comes back as `Err`, and the sink is dropped.
pub async fn receive<R, S>(
    input: &mut R,
    len: u64,
    sink: S,
    mut progress: impl FnMut(u64),
) -> io::Result<(S, Result<(), S::Error>)>
where
    R: AsyncRead + Unpin + ?Sized,
    S: ChunkSink,
{
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    let writer = tokio::task::spawn_blocking(move || {
        let mut sink = sink;
        let mut result = Ok(());
        while let Some(chunk) = rx.blocking_recv() {
            if result.is_ok() {
                result = sink.write_chunk(&chunk);
            }
        }
        (sink, result)
    });
    let mut remaining = len;
    let mut read_result = Ok(());
    while remaining > 0 {
        let mut buf = vec![0u8; CHUNK.min(remaining as usize)];
        // Fill the buffer with plain reads rather than read_exact: if the peer goes
        // away mid-chunk, the bytes that did arrive must still reach the file.
        let mut filled = 0;
        while filled < buf.len() {
            match input.read(&mut buf[filled..]).await {
                Ok(0) => {
                    read_result = Err(io::ErrorKind::UnexpectedEof.into());
                    break;
                }
                Ok(n) => filled += n,
                Err(err) => {
                    read_result = Err(err);
                    break;
                }
            }
        }
        buf.truncate(filled);
        remaining -= filled as u64;
        if filled > 0 {
            progress(filled as u64);
            if tx.send(buf).await.is_err() {
                read_result = Err(io::Error::other("file writer stopped"));
            }
        }
        if read_result.is_err() {
            break;
        }
    }
    drop(tx);
    // Everything received so far reaches the disk before we look at the outcome, so an
    // upload cut off here can resume from all of it.
    let (sink, result) = writer.await.map_err(io::Error::other)?;
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
