//! The server-wide memory budget for buffered request and reply data, and each
//! connection's account of what its front ends hold.
//!
//! Every connection gets a fair share of the budget: the budget divided by the
//! connections logged in now, never less than [`MIN_SHARE`]. Its front ends (SFTP,
//! rsftp, SCP, directory handles) charge what they buffer to the connection's
//! [`ConnectionAccount`] through [`Charge`] guards, which give the bytes back when
//! dropped. Charging is a few atomic additions; nothing here takes a lock on the way of
//! the data.
//!
//! What is charged, and what it does:
//!
//! - **Queued** bytes are requests received and not yet started: SFTP's unparsed input,
//!   upload chunks on their way to disk. Past half the share ([`ConnectionAccount::paused`])
//!   the connection's socket is no longer read ([`ThrottledStream`]) until they drain.
//!   Queued bytes always drain without the peer's help (requests start, chunks reach the
//!   disk), so the pause always ends.
//! - **In-flight** bytes are requests started and replies not yet sent. They never pause
//!   the socket: a reply waits for the peer's window adjust, which arrives through the
//!   socket, so pausing it for replies would deadlock an honest downloader. Instead a
//!   front end starts no new request while the in-flight and held bytes use half the
//!   share; what is then not started stays queued, and that is what pauses the socket.
//!   One request may always run, so a connection never stops for good. What the
//!   session has written and the socket has not yet taken is in flight too (the
//!   [`ThrottledStream`]'s outbound buffer), so that a peer which reads only after its
//!   own write is taken never leaves the session waiting to write instead of reading.
//! - **Transit** bytes are an SFTP channel's data that the SSH library has taken off the
//!   socket and queued for the channel, not yet taken by its front end ([`Transit`]).
//!   They count as queued: under load that queue is where a flood waits.
//! - **Held** bytes are buffers that live as long as a handle: an open directory's read
//!   buffer. They count toward the in-flight half; past it a new one is refused.
//!
//! Since russh grants channel window as data arrives rather than as it is consumed, one
//! channel cannot be held back on its own: the whole connection is.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};

use tokio::sync::Notify;

use crate::storage::stream;

mod throttle;
mod upload;

pub use throttle::{READ_AHEAD, ThrottledStream};
pub use upload::receive;

/// The default budget: 512 MiB. See `docs/OPERATIONS.md` ("Memory").
pub const DEFAULT_BUDGET: usize = 512 * 1024 * 1024;

/// The least share of a connection, however many there are: enough that a request of
/// the largest size and its reply can run, and that a downloader's small READ requests
/// and window adjusts are always read.
pub const MIN_SHARE: usize = 1024 * 1024;

/// What an rsftp or SCP download holds while it runs: the file reader's chunks in
/// flight and the one being written.
pub const DOWNLOAD_PIPELINE: usize = 5 * stream::CHUNK;

/// A reply this small starts whatever is in flight: status replies, which a front end
/// bounds by the number of its requests in flight instead. Otherwise replies waiting for
/// the peer's window would keep an upload's writes from starting, and those writes,
/// queued, keep the socket paused: the window adjust would never be read.
pub const SMALL_REPLY: usize = 16 * 1024;

/// What an open directory handle holds: the C library's directory read buffer.
pub const DIR_HANDLE: usize = 32 * 1024;

/// The whole server's budget, and how many connections share it.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    open: AtomicUsize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit: limit.max(MIN_SHARE),
            open: AtomicUsize::new(0),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A new connection's account; it counts toward the shares once [`admitted`].
    ///
    /// [`admitted`]: ConnectionAccount::admit
    pub fn account(self: &Arc<Self>) -> Arc<ConnectionAccount> {
        Arc::new(ConnectionAccount {
            budget: Arc::clone(self),
            admitted: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
            transit: AtomicIsize::new(0),
            in_flight: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            reader_paused: AtomicBool::new(false),
            resume: Arc::new(Notify::new()),
            room: Notify::new(),
            room_waiters: AtomicUsize::new(0),
        })
    }

    /// One connection's share now.
    pub fn share(&self) -> usize {
        let open = self.open.load(Ordering::Relaxed).max(1);
        (self.limit / open).max(MIN_SHARE)
    }

    /// Connections logged in, sharing the budget.
    pub fn connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// What a charge is for; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Queued,
    InFlight,
    Held,
}

/// What one connection's front ends hold now.
#[derive(Debug)]
pub struct ConnectionAccount {
    budget: Arc<MemoryBudget>,
    admitted: AtomicBool,
    queued: AtomicUsize,
    /// Signed: a front end may take data before its arrival is counted.
    transit: AtomicIsize,
    in_flight: AtomicUsize,
    held: AtomicUsize,
    /// Set by the socket reader while it waits for queued bytes to drain.
    reader_paused: AtomicBool,
    resume: Arc<Notify>,
    /// Woken when in-flight or held bytes are given back, if anyone waits.
    room: Notify,
    room_waiters: AtomicUsize,
}

impl ConnectionAccount {
    /// Counts this connection toward the shares (once it has logged in), until dropped.
    pub fn admit(&self) {
        if !self.admitted.swap(true, Ordering::AcqRel) {
            self.budget.open.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Half this connection's share: where queued bytes pause the socket, and what
    /// in-flight and held bytes together may use.
    pub fn half_share(&self) -> usize {
        self.budget.share() / 2
    }

    /// The bytes charged now, as (queued, in flight, held).
    pub fn usage(&self) -> (usize, usize, usize) {
        (
            self.queued.load(Ordering::Acquire),
            self.in_flight.load(Ordering::Acquire),
            self.held.load(Ordering::Acquire),
        )
    }

    /// Whether the socket should not be read now: too many requests wait to start.
    pub fn paused(&self) -> bool {
        let transit = self.transit.load(Ordering::SeqCst).max(0) as usize;
        self.queued.load(Ordering::SeqCst) + transit > self.half_share()
    }

    /// A counter for one channel's data in transit; see [`Transit`].
    pub fn transit(self: &Arc<Self>) -> Arc<Transit> {
        Arc::new(Transit {
            account: Arc::clone(self),
            bytes: AtomicIsize::new(0),
        })
    }

    /// Wakes the socket reader if it waits and the account is no longer over.
    fn drained(&self) {
        if self.reader_paused.load(Ordering::SeqCst) && !self.paused() {
            self.reader_paused.store(false, Ordering::SeqCst);
            self.resume.notify_waiters();
        }
    }

    fn counter(&self, kind: Kind) -> &AtomicUsize {
        match kind {
            Kind::Queued => &self.queued,
            Kind::InFlight => &self.in_flight,
            Kind::Held => &self.held,
        }
    }

    /// Charges `bytes` whatever the account holds: for what has already arrived, or is
    /// bounded by its front end.
    pub fn charge(self: &Arc<Self>, kind: Kind, bytes: usize) -> Charge {
        self.counter(kind).fetch_add(bytes, Ordering::AcqRel);
        Charge {
            account: Arc::clone(self),
            kind,
            bytes: AtomicUsize::new(bytes),
        }
    }

    /// Charges `bytes` in flight (or held) if they fit in half the share with what is
    /// in flight and held already. An in-flight charge also fits when nothing is in
    /// flight, so that one request can always run, and when it is at most
    /// [`SMALL_REPLY`], so that an upload's writes still start while downloads wait for
    /// the peer's window.
    pub fn try_charge(self: &Arc<Self>, kind: Kind, bytes: usize) -> Option<Charge> {
        let limit = self.half_share();
        let counter = self.counter(kind);
        let other = match kind {
            Kind::InFlight => &self.held,
            Kind::Held => &self.in_flight,
            Kind::Queued => return Some(self.charge(kind, bytes)),
        };
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                let total = now + other.load(Ordering::Acquire) + bytes;
                let always = kind == Kind::InFlight && (now == 0 || bytes <= SMALL_REPLY);
                (total <= limit || always).then_some(now + bytes)
            })
            .ok()?;
        Some(Charge {
            account: Arc::clone(self),
            kind,
            bytes: AtomicUsize::new(bytes),
        })
    }

    /// Charges `bytes` in flight once they fit; see [`try_charge`](Self::try_charge).
    pub async fn charge_when_room(self: &Arc<Self>, bytes: usize) -> Charge {
        if let Some(charge) = self.try_charge(Kind::InFlight, bytes) {
            return charge;
        }
        // Counted before the last look, so that a release after it wakes us; releases
        // take Notify's lock only while someone waits.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.room_waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.room_waiters);
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if let Some(charge) = self.try_charge(Kind::InFlight, bytes) {
                return charge;
            }
            room.await;
        }
    }

    fn release(&self, kind: Kind, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.counter(kind).fetch_sub(bytes, Ordering::SeqCst);
        match kind {
            Kind::Queued => self.drained(),
            Kind::InFlight | Kind::Held => {
                if self.room_waiters.load(Ordering::SeqCst) > 0 {
                    self.room.notify_waiters();
                }
            }
        }
    }
}

impl Drop for ConnectionAccount {
    fn drop(&mut self) {
        if self.admitted.load(Ordering::Acquire) {
            self.budget.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Bytes charged to an account, given back when dropped. It can grow and shrink as
/// what it stands for does.
#[derive(Debug)]
pub struct Charge {
    account: Arc<ConnectionAccount>,
    kind: Kind,
    bytes: AtomicUsize,
}

impl Charge {
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    pub fn grow(&self, bytes: usize) {
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
        self.account
            .counter(self.kind)
            .fetch_add(bytes, Ordering::AcqRel);
    }

    /// Gives back up to `bytes` of the charge.
    pub fn shrink(&self, bytes: usize) {
        let taken = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                Some(now - bytes.min(now))
            })
            .map_or(0, |before| bytes.min(before));
        self.account.release(self.kind, taken);
    }

    /// Makes the charge `bytes`, growing or shrinking it.
    pub fn set(&self, bytes: usize) {
        let now = self.bytes();
        if bytes > now {
            self.grow(bytes - now);
        } else {
            self.shrink(now - bytes);
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let bytes = *self.bytes.get_mut();
        self.account.release(self.kind, bytes);
    }
}

/// One channel's data between the socket and its front end: the SSH handler counts it
/// as it arrives, the front end as it takes it; what is left when both let go is given
/// back.
#[derive(Debug)]
pub struct Transit {
    account: Arc<ConnectionAccount>,
    bytes: AtomicIsize,
}

impl Transit {
    pub fn arrived(&self, bytes: usize) {
        let bytes = bytes as isize;
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
        self.account.transit.fetch_add(bytes, Ordering::SeqCst);
    }

    pub fn taken(&self, bytes: usize) {
        let bytes = bytes as isize;
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.account.transit.fetch_sub(bytes, Ordering::SeqCst);
        self.account.drained();
    }
}

impl Drop for Transit {
    fn drop(&mut self) {
        let left = *self.bytes.get_mut();
        self.account.transit.fetch_sub(left, Ordering::SeqCst);
        self.account.drained();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::stream::ChunkSink;
    use std::time::Duration;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn shares_divide_the_budget_among_admitted_connections_with_a_floor() {
        let budget = MemoryBudget::new(64 * MIB);
        let first = budget.account();
        assert_eq!(budget.share(), 64 * MIB);
        first.admit();
        first.admit();
        assert_eq!(budget.connections(), 1);
        let others: Vec<_> = (0..3).map(|_| budget.account()).collect();
        others.iter().for_each(|a| a.admit());
        assert_eq!(budget.share(), 16 * MIB);
        let many: Vec<_> = (0..100).map(|_| budget.account()).collect();
        many.iter().for_each(|a| a.admit());
        assert_eq!(budget.share(), MIN_SHARE);
        drop(many);
        drop(others);
        assert_eq!(budget.share(), 64 * MIB);
    }

    #[test]
    fn queued_bytes_pause_and_drain_in_flight_bytes_never_pause() {
        let budget = MemoryBudget::new(8 * MIB);
        let account = budget.account();
        account.admit();
        let replies = account.charge(Kind::InFlight, 100 * MIB);
        assert!(!account.paused(), "replies never pause the socket");
        let queued = account.charge(Kind::Queued, 4 * MIB);
        assert!(!account.paused());
        queued.grow(1);
        assert!(account.paused());
        queued.shrink(1);
        assert!(!account.paused());
        drop(queued);
        drop(replies);
        assert_eq!(account.usage(), (0, 0, 0));
    }

    #[test]
    fn in_flight_room_is_half_the_share_but_one_request_always_fits() {
        let budget = MemoryBudget::new(8 * MIB);
        let account = budget.account();
        let big = account.try_charge(Kind::InFlight, 16 * MIB);
        assert!(big.is_some(), "the first request runs whatever its size");
        let reply = SMALL_REPLY + 1;
        assert!(account.try_charge(Kind::InFlight, reply).is_none());
        let status = account.try_charge(Kind::InFlight, SMALL_REPLY);
        assert!(status.is_some(), "a status reply always starts");
        drop((big, status));
        let held = account.try_charge(Kind::Held, 3 * MIB).unwrap();
        assert!(
            account.try_charge(Kind::Held, 2 * MIB).is_none(),
            "held is refused past half"
        );
        let first = account.try_charge(Kind::InFlight, MIB).unwrap();
        assert!(account.try_charge(Kind::InFlight, reply).is_none());
        first.set(10);
        assert!(account.try_charge(Kind::InFlight, reply).is_some());
        drop(held);
        assert_eq!(account.usage(), (0, 10, 0));
        drop(first);
        assert_eq!(account.usage(), (0, 0, 0));
    }

    #[test]
    fn data_in_transit_pauses_until_taken_even_if_taken_first() {
        let budget = MemoryBudget::new(2 * MIB);
        let account = budget.account();
        let transit = account.transit();
        transit.taken(100);
        assert!(!account.paused(), "taken before counted is no credit");
        transit.arrived(100);
        transit.arrived(MIB + 1);
        assert!(account.paused());
        transit.taken(MIB + 1);
        assert!(!account.paused());
        transit.arrived(2 * MIB);
        drop(transit);
        assert!(
            !account.paused(),
            "a closed channel gives back what it held"
        );
    }

    #[tokio::test]
    async fn an_upload_charges_its_whole_chunks_until_written() {
        struct Slow(std::sync::mpsc::Receiver<()>);
        impl ChunkSink for Slow {
            type Error = ();
            fn write_chunk(&mut self, _: &[u8]) -> Result<(), ()> {
                let _ = self.0.recv();
                Ok(())
            }
        }
        let budget = MemoryBudget::new(64 * MIB);
        let account = budget.account();
        let (go, wait) = std::sync::mpsc::channel();
        let data = vec![7u8; 3 * stream::CHUNK];
        let receiving = {
            let account = Arc::clone(&account);
            tokio::spawn(async move {
                let mut input = &data[..];
                let len = input.len() as u64;
                receive(
                    &account,
                    &mut input,
                    len,
                    Slow(wait),
                    Duration::from_secs(60),
                    |_| {},
                )
                .await
            })
        };
        // The writer holds the first chunk; the second is read ahead and charged; the
        // third stays in the input until the writer is free (the one being filled is
        // not charged).
        let mut charged = 0;
        for _ in 0..100 {
            charged = account.usage().0;
            if charged == stream::CHUNK {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(account.usage().0, stream::CHUNK);
        assert_eq!(charged, stream::CHUNK);
        for _ in 0..3 {
            go.send(()).unwrap();
        }
        let (_, written) = receiving.await.unwrap().unwrap();
        assert!(written.is_ok());
        assert_eq!(account.usage(), (0, 0, 0));
    }

    #[tokio::test]
    async fn a_write_blocked_through_a_pause_reads_ahead_once_it_is_over() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let budget = MemoryBudget::new(2 * MIB);
        let account = budget.account();
        // A pipe that holds 64 KiB each way. The peer writes 200 KiB before it reads,
        // and we write more than the outbound buffer holds (the share and the slack):
        // without reading ahead, both wait for ever.
        let (mut peer, ours) = tokio::io::duplex(64 * 1024);
        let mut ours = ThrottledStream::new(ours, Arc::clone(&account));
        let len = 2 * MIB + throttle::OUTBOUND_SLACK + MIB;
        let peer_side = tokio::spawn(async move {
            peer.write_all(&[1u8; 200 * 1024]).await.unwrap();
            let mut got = vec![0u8; len];
            peer.read_exact(&mut got).await.unwrap();
            got
        });
        let queued = account.charge(Kind::Queued, 2 * MIB);
        let writing = tokio::spawn(async move {
            ours.write_all(&vec![2u8; len]).await.unwrap();
            ours.flush().await.unwrap();
            ours
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            !writing.is_finished(),
            "paused: the peer waits to write, and we too"
        );
        let (_, in_flight, _) = account.usage();
        assert!(
            in_flight > 2 * MIB,
            "the outbound buffer is charged: {in_flight}"
        );
        drop(queued);
        let mut ours = tokio::time::timeout(std::time::Duration::from_secs(5), writing)
            .await
            .expect("the write goes out once the pause is over")
            .unwrap();
        // What the outbound buffer still holds goes out as the stream is read; the
        // peer hangs up once it has it all, which ends our read.
        let mut back = Vec::new();
        let (got, read) = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            tokio::join!(peer_side, ours.read_to_end(&mut back))
        })
        .await
        .expect("the rest goes out while we read");
        read.unwrap();
        assert!(got.unwrap().iter().all(|&b| b == 2));
        assert_eq!(back.len(), 200 * 1024, "what was read ahead, then the end");
        assert!(back.iter().all(|&b| b == 1), "in order");
        assert_eq!(
            account.usage(),
            (0, 0, 0),
            "the outbound charge is given back"
        );
    }

    #[tokio::test]
    async fn a_write_the_peer_does_not_read_yet_does_not_keep_the_session_from_reading() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let budget = MemoryBudget::new(2 * MIB);
        let account = budget.account();
        let (mut peer, ours) = tokio::io::duplex(64 * 1024);
        let mut ours = ThrottledStream::new(ours, Arc::clone(&account));
        // The peer does not read before its own write is taken; ours fits the buffer.
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            ours.write_all(&vec![3u8; MIB]).await.unwrap();
            ours.flush().await.unwrap();
        })
        .await
        .expect("the session goes on at once");
        assert_eq!(account.usage().1, MIB - 64 * 1024, "charged in flight");
        // A request with a large reply does not start while it is held.
        assert!(account.try_charge(Kind::InFlight, 255 * 1024).is_none());
        let peer_side = tokio::spawn(async move {
            peer.write_all(&[4u8; 300 * 1024]).await.unwrap();
            let mut got = vec![0u8; MIB];
            peer.read_exact(&mut got).await.unwrap();
            got
        });
        // The peer hangs up once it has our write, which ends our read.
        let mut back = Vec::new();
        let (got, read) = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            tokio::join!(peer_side, ours.read_to_end(&mut back))
        })
        .await
        .expect("we read while our write waits, and it goes out from the reads");
        read.unwrap();
        assert_eq!(back.len(), 300 * 1024);
        assert!(back.iter().all(|&b| b == 4));
        assert!(got.unwrap().iter().all(|&b| b == 3));
        assert_eq!(account.usage(), (0, 0, 0));
    }

    #[tokio::test]
    async fn a_paused_stream_reads_again_once_queued_bytes_drain() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let budget = MemoryBudget::new(2 * MIB);
        let account = budget.account();
        let (mut near, far) = tokio::io::duplex(1024);
        let mut throttled = ThrottledStream::new(far, Arc::clone(&account));
        near.write_all(b"hello").await.unwrap();
        let queued = account.charge(Kind::Queued, 2 * MIB);
        let mut buf = [0u8; 5];
        let read = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            throttled.read_exact(&mut buf),
        )
        .await;
        assert!(read.is_err(), "no data while paused");
        let reading = tokio::spawn(async move {
            let mut buf = [0u8; 5];
            throttled.read_exact(&mut buf).await.map(|_| buf)
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        drop(queued);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), reading)
            .await
            .expect("woken")
            .unwrap()
            .unwrap();
        assert_eq!(&got, b"hello");
    }
}
