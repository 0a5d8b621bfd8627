//! The throttle: a connection's socket that is not read while its account is over.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::futures::OwnedNotified;

use super::ConnectionAccount;

/// A connection's socket that is not read while its account is [`paused`]: the whole
/// connection, every channel of it, waits until its queued requests have drained.
/// Writing is never held back.
///
/// russh writes inline in its session loop, and so do clients built on it: if both
/// ends wait to write, each for the other to read, neither reads again, even once the
/// pause is over. So while a write cannot go out, up to [`READ_AHEAD`] bytes are read
/// ahead into a buffer of our own, which lets the peer finish its write and go back to
/// reading ours; the session gets them once it reads again (and is not paused).
///
/// [`paused`]: ConnectionAccount::paused
pub struct ThrottledStream<S> {
    inner: S,
    account: Arc<ConnectionAccount>,
    waiting: Option<Pin<Box<OwnedNotified>>>,
    /// Read while a write was blocked, not yet handed on.
    ahead: Vec<u8>,
    ahead_at: usize,
    /// The end of the stream, or an error, met while reading ahead.
    ahead_end: Option<io::Result<()>>,
}

/// What a connection reads ahead, at most, while it cannot write: a fixed buffer of the
/// connection, outside the budget.
pub const READ_AHEAD: usize = 1024 * 1024;

impl<S> ThrottledStream<S> {
    pub fn new(inner: S, account: Arc<ConnectionAccount>) -> ThrottledStream<S> {
        ThrottledStream {
            inner,
            account,
            waiting: None,
            ahead: Vec::new(),
            ahead_at: 0,
            ahead_end: None,
        }
    }
}

impl<S: AsyncRead + Unpin> ThrottledStream<S> {
    /// Reads what has arrived into `ahead`, up to [`READ_AHEAD`].
    fn read_ahead(&mut self, cx: &mut Context<'_>) {
        self.ahead.drain(..self.ahead_at);
        self.ahead_at = 0;
        // While paused, the peer waiting to write is the throttle working; once the
        // pause is over (which wakes us), it must be able to finish.
        if self.account.paused() && self.park(cx) {
            return;
        }
        let mut chunk = [0u8; 16 * 1024];
        while self.ahead_end.is_none() && self.ahead.len() < READ_AHEAD {
            let room = (READ_AHEAD - self.ahead.len()).min(chunk.len());
            let mut buf = ReadBuf::new(&mut chunk[..room]);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => self.ahead_end = Some(Ok(())),
                Poll::Ready(Ok(())) => self.ahead.extend_from_slice(buf.filled()),
                Poll::Ready(Err(err)) => self.ahead_end = Some(Err(err)),
                Poll::Pending => return,
            }
        }
    }

    /// Waits for the end of the pause: `true` if still paused (and `cx` will be woken),
    /// `false` if it is over.
    fn park(&mut self, cx: &mut Context<'_>) -> bool {
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(Arc::clone(&self.account.resume).notified_owned()));
        // Registered before the flag is seen, and the flag before the last look, so a
        // release in between cannot be missed.
        waiting.as_mut().enable();
        if !self.account.reader_paused.swap(true, Ordering::SeqCst) {
            tracing::debug!(
                queued = self.account.queued.load(Ordering::Relaxed),
                share = self.account.budget.share(),
                "connection over its memory share: not reading it"
            );
        }
        if !self.account.paused() {
            self.account.reader_paused.store(false, Ordering::SeqCst);
            self.waiting = None;
            return false;
        }
        match waiting.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.waiting = None;
                false
            }
            Poll::Pending => true,
        }
    }

    /// Hands on what was read ahead, or the end met then; `None` if there is nothing.
    fn take_ahead(&mut self, buf: &mut ReadBuf<'_>) -> Option<io::Result<()>> {
        if self.ahead_at < self.ahead.len() {
            let n = buf.remaining().min(self.ahead.len() - self.ahead_at);
            buf.put_slice(&self.ahead[self.ahead_at..self.ahead_at + n]);
            self.ahead_at += n;
            return Some(Ok(()));
        }
        self.ahead_end.take()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ThrottledStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.account.paused() {
                this.waiting = None;
                if let Some(result) = this.take_ahead(buf) {
                    return Poll::Ready(result);
                }
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            if this.park(cx) {
                return Poll::Pending;
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ThrottledStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if written.is_pending() {
            self.read_ahead(cx);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.inner).poll_flush(cx);
        if flushed.is_pending() {
            self.read_ahead(cx);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if written.is_pending() {
            self.read_ahead(cx);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
