//! Uploads through the budget: their chunks charged from the read that takes them off
//! the channel until they are on disk.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};

use super::{ConnectionAccount, Kind};
use crate::storage::stream::{self, ChunkSink};

/// [`stream::receive`] with the upload's chunks charged as queued from the read that
/// takes them off the channel until they are on disk.
///
/// The chunk still being filled is not charged: it waits for more data from the
/// socket, so charging it could pause the socket that would complete it. It is one
/// [`stream::CHUNK`] per upload at most, a fixed buffer of the channel.
pub async fn receive<R, S>(
    account: &Arc<ConnectionAccount>,
    input: &mut R,
    len: u64,
    sink: S,
    stall: Duration,
    progress: impl FnMut(u64),
) -> io::Result<(S, Result<(), S::Error>)>
where
    R: AsyncRead + Unpin + ?Sized,
    S: ChunkSink,
{
    let meter = Arc::new(UploadMeter {
        account: Arc::clone(account),
        read: AtomicUsize::new(0),
        written: AtomicUsize::new(0),
        charged: AtomicUsize::new(0),
    });
    let mut input = Metered {
        inner: input,
        meter: Arc::clone(&meter),
    };
    let sink = Unmetered { inner: sink, meter };
    let (sink, result) = stream::receive(&mut input, len, sink, stall, progress).await?;
    Ok((sink.inner, result))
}

/// An upload's bytes read and written, and what of them is charged: all but the chunk
/// being filled.
struct UploadMeter {
    account: Arc<ConnectionAccount>,
    read: AtomicUsize,
    written: AtomicUsize,
    charged: AtomicUsize,
}

impl UploadMeter {
    /// Brings the charge to what is read and not written, less one chunk. Each side
    /// counts its bytes before calling this, so the last call sees both counts.
    fn settle(&self) {
        loop {
            let charged = self.charged.load(Ordering::SeqCst);
            let read = self.read.load(Ordering::SeqCst);
            let written = self.written.load(Ordering::SeqCst);
            let target = read.saturating_sub(written).saturating_sub(stream::CHUNK);
            if self
                .charged
                .compare_exchange(charged, target, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                if target > charged {
                    self.account
                        .queued
                        .fetch_add(target - charged, Ordering::SeqCst);
                } else {
                    self.account.release(Kind::Queued, charged - target);
                }
                return;
            }
        }
    }
}

impl Drop for UploadMeter {
    fn drop(&mut self) {
        let charged = *self.charged.get_mut();
        self.account.release(Kind::Queued, charged);
    }
}

/// Counts what is read.
struct Metered<'a, R: ?Sized> {
    inner: &'a mut R,
    meter: Arc<UploadMeter>,
}

impl<R: AsyncRead + Unpin + ?Sized> AsyncRead for Metered<'_, R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut *self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.meter.read.fetch_add(read, Ordering::SeqCst);
            self.meter.settle();
        }
        polled
    }
}

/// Counts what is written.
struct Unmetered<S> {
    inner: S,
    meter: Arc<UploadMeter>,
}

impl<S: ChunkSink> ChunkSink for Unmetered<S> {
    type Error = S::Error;

    fn write_chunk(&mut self, data: &[u8]) -> Result<(), S::Error> {
        let written = self.inner.write_chunk(data);
        self.meter.written.fetch_add(data.len(), Ordering::SeqCst);
        self.meter.settle();
        written
    }
}
