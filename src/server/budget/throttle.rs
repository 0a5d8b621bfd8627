//! The throttle: a connection's socket that is not read while its account is over.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::futures::OwnedNotified;

use super::{Charge, ConnectionAccount, Kind};

/// A connection's socket that is not read while its account is [`paused`]: the whole
/// connection, every channel of it, waits until its queued requests have drained.
/// Writing is never held back.
///
/// russh writes inline in its session loop, and so do clients built on it: if both
/// ends wait to write, each for the other to read, neither reads again, even once the
/// pause is over. A client that uploads and downloads at once does just that: its
/// write (upload data, up to a whole window of it at once) waits for the paused server
/// to read, and the server's write (download data) waits for the client to read.
///
/// So what the session writes and the socket does not take at once is kept in an
/// outbound buffer of the connection and sent as the socket takes it, from every read
/// and write; the session goes on as if it had gone out, and reads the peer again as
/// soon as the pause is over, which lets the peer finish its write and read ours. The
/// buffer is charged in flight: while it holds half the share, no request with a large
/// reply starts (see [`ConnectionAccount::try_charge`]), and it never holds more than
/// the whole share. Past that, writes wait, and up to [`READ_AHEAD`] bytes are read
/// ahead into a buffer of our own; the session gets them once it reads again (and is
/// not paused).
///
/// [`paused`]: ConnectionAccount::paused
pub struct ThrottledStream<S> {
    inner: S,
    account: Arc<ConnectionAccount>,
    waiting: Option<Pin<Box<OwnedNotified>>>,
    /// Written by the session, not yet taken by the socket; charged in flight.
    outbound: Vec<u8>,
    outbound_at: usize,
    outbound_charge: Charge,
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
        let outbound_charge = account.charge(Kind::InFlight, 0);
        ThrottledStream {
            inner,
            account,
            waiting: None,
            outbound: Vec::new(),
            outbound_at: 0,
            outbound_charge,
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

impl<S: AsyncWrite + Unpin> ThrottledStream<S> {
    /// Sends what the outbound buffer holds, as far as the socket takes it: `Ready`
    /// once it is empty, `Pending` (and `cx` woken when the socket takes more) if not.
    fn send_outbound(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.outbound_at < self.outbound.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.outbound[self.outbound_at..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.outbound_at += n,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {
                    self.settle_outbound();
                    return Poll::Pending;
                }
            }
        }
        self.outbound.clear();
        self.outbound_at = 0;
        self.settle_outbound();
        Poll::Ready(Ok(()))
    }

    /// Brings the outbound buffer's charge to what it holds, and gives back the room of
    /// a buffer that grew large and is now empty.
    fn settle_outbound(&mut self) {
        if self.outbound_at == self.outbound.len() {
            self.outbound.clear();
            self.outbound_at = 0;
            if self.outbound.capacity() > OUTBOUND_KEPT {
                self.outbound = Vec::new();
            }
        } else if self.outbound_at >= OUTBOUND_KEPT {
            self.outbound.drain(..self.outbound_at);
            self.outbound_at = 0;
        }
        self.outbound_charge
            .set(self.outbound.len() - self.outbound_at);
    }

    /// The most the outbound buffer may hold: the connection's share and
    /// [`OUTBOUND_SLACK`].
    fn outbound_room(&self) -> usize {
        let held = self.outbound.len() - self.outbound_at;
        (self.account.budget.share() + OUTBOUND_SLACK).saturating_sub(held)
    }

    /// Writes `buf` to the socket, or what the socket does not take to the outbound
    /// buffer while it has room.
    fn write_through(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.send_outbound(cx) {
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Ready(Ok(())) => match Pin::new(&mut self.inner).poll_write(cx, buf) {
                Poll::Pending => {}
                done => return done,
            },
            Poll::Pending => {}
        }
        let n = buf.len().min(self.outbound_room());
        if n == 0 {
            return Poll::Pending;
        }
        self.outbound.extend_from_slice(&buf[..n]);
        self.settle_outbound();
        Poll::Ready(Ok(n))
    }
}

/// What the outbound buffer may hold beyond the connection's share: the SSH library's
/// queue of outgoing messages (64 of up to 64 KiB), which holds replies that the front
/// ends have handed over and no longer count, and which the session writes at once.
pub const OUTBOUND_SLACK: usize = 64 * 64 * 1024;

/// An outbound buffer larger than this is given back once empty.
const OUTBOUND_KEPT: usize = 256 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ThrottledStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Whatever the session does next, what it wrote goes on going out.
        if let Poll::Ready(Err(err)) = this.send_outbound(cx) {
            return Poll::Ready(Err(err));
        }
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
        let written = self.write_through(cx, buf);
        if written.is_pending() {
            self.read_ahead(cx);
        }
        written
    }

    /// Ready once the socket has what is not in the outbound buffer: what the buffer
    /// holds goes out from later reads and writes, so the session need not wait for it.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Poll::Ready(Err(err)) = self.send_outbound(cx) {
            return Poll::Ready(Err(err));
        }
        let flushed = Pin::new(&mut self.inner).poll_flush(cx);
        if flushed.is_pending() {
            self.read_ahead(cx);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.send_outbound(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_shutdown(cx),
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                self.read_ahead(cx);
                Poll::Pending
            }
        }
    }
}
