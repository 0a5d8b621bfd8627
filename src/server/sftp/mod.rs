//! The `sftp` subsystem: SFTP v3 over one SSH channel, for OpenSSH `sftp` and `scp`,
//! paramiko, rclone, WinSCP and the like. See `docs/SFTP.md`.
//!
//! # Layout
//!
//! - `protocol::sftp` (here `codec`): the wire format, both directions; no I/O.
//! - `ops`: what each request does to the home, through the storage core (blocking).
//! - `handles`: open files and directories, and the per-connection cap on them.
//! - `order`: which requests may run at the same time, and which wait.
//! - `longname`: the `ls -l` line beside each name.
//! - `inbox`: cutting the channel's bytes into packets, and decoding them.
//! - `writer`: replies in request order, small ones gathered into one write.
//! - here: the loop that reads the channel and dispatches requests.
//!
//! # The loop, and why it never stops reading
//!
//! russh grants the peer more window as soon as data arrives, and its session loop
//! blocks when a channel's queue of incoming messages is full. A subsystem that stops
//! reading its channel while it waits to write therefore wedges the whole connection:
//! the window adjustments that would let it write sit behind the data it does not read.
//! So three parts run at once:
//!
//! - the **dispatch loop** (this task) drains the channel into a reassembly buffer at
//!   all times, cuts packets out of it, and starts each request, as long as the
//!   requests in flight stay under [`MAX_IN_FLIGHT`] and [`MAX_IN_FLIGHT_BYTES`] and
//!   the connection's memory account has room for the reply. Over that, it stops
//!   cutting packets (not reading the channel) until replies go out.
//!
//! # Memory
//!
//! Everything the loop holds is charged to the connection's account (see
//! [`budget`](crate::server::budget)): the channel's data from the moment russh takes
//! it off the socket, the unparsed bytes and a request's packet until it has run as
//! *queued*, its reply from its start until it is written as *in flight*.
//! When a peer sends faster than its requests start, the queued bytes pass half the
//! connection's share and the connection's socket is no longer read: the peer is
//! slowed, not cut off. Replies never pause the socket (they wait for the peer's window
//! adjusts, which come through it); they only keep new requests from starting. Status
//! replies start whatever is in flight, so an upload on one channel is never stuck
//! behind downloads waiting for their window on another. Unparsed bytes past
//! [`MAX_BUFFERED`] cannot happen while that throttle works; they close the channel as
//! a last resort.
//! - **requests** run on blocking threads, concurrently where that cannot change a
//!   result (see `order`), and each hands back its reply through a one-shot channel.
//! - the **writer** task owns the write side. It takes the replies in request order, so
//!   every client sees its answers in the order it asked, and coalesces small ones into
//!   one channel packet.

mod convert;
mod handles;
mod inbox;
mod longname;
mod ops;
mod order;
mod writer;

/// The SFTP wire format, which lives in `protocol`.
use crate::protocol::sftp as codec;

use std::sync::Arc;
use std::time::Duration;

use russh::server::Msg;
use russh::{Channel, ChannelMsg};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{Instrument, Span, debug, info};

use codec::StatusCode;
use codec::{BadPacket, Incoming, MAX_PACKET, Request};
pub use handles::ConnectionHandles;
use inbox::{Frame, Inbox, decode};
use ops::Session;
use order::{Access, Sequencer};
use writer::{Permits, Queued, Reply, write_replies};

use super::activity::Activity;
use crate::server::budget::{Charge, ConnectionAccount, Kind, Transit};
use crate::server::oplog::OpLog;
use crate::storage::HomeDir;

/// Requests started and not yet answered, per session.
pub const MAX_IN_FLIGHT: usize = 128;
/// Bytes those requests may hold (their packets and their replies), per session.
pub const MAX_IN_FLIGHT_BYTES: usize = 32 * 1024 * 1024;
/// Bytes received and not yet cut into requests, past which the channel is closed: a
/// last resort, twice what the memory throttle lets a connection queue at most.
pub const MAX_BUFFERED: usize = 128 * 1024 * 1024;
/// How long the end of a session waits for replies still being written.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The extensions we implement, as the VERSION reply announces them.
const EXTENSIONS: &[(&str, &str)] = &[
    ("posix-rename@openssh.com", "1"),
    ("statvfs@openssh.com", "2"),
    ("fstatvfs@openssh.com", "2"),
    ("fsync@openssh.com", "1"),
    ("limits@openssh.com", "1"),
    ("expand-path@openssh.com", "1"),
    ("users-groups-by-id@openssh.com", "1"),
];

/// Serves one SFTP session on `channel` until the client closes it, then sends EOF, an
/// exit status and closes the channel. Every piece of data received touches `activity`;
/// what is buffered is charged to the connection's memory account, and `transit` holds
/// what russh queued for the channel and the loop has not taken yet.
pub async fn serve(
    channel: Channel<Msg>,
    home: HomeDir,
    user: String,
    handles: ConnectionHandles,
    oplog: Arc<OpLog>,
    activity: Activity,
    transit: Arc<Transit>,
) {
    let (mut reader, writer) = channel.split();
    let (queue, replies) = mpsc::unbounded_channel();
    let writer_task = tokio::spawn(write_replies(writer, replies).in_current_span());
    let account = Arc::clone(handles.account());
    let mut dispatch = Dispatch {
        transit: Arc::clone(&transit),
        queued: account.charge(Kind::Queued, 0),
        account,
        session: Arc::new(Session::new(home, user, handles, oplog)),
        queue,
        count: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        bytes: Arc::new(Semaphore::new(MAX_IN_FLIGHT_BYTES)),
        sequencer: Sequencer::default(),
        initialized: false,
    };
    let end = dispatch.run(&mut reader, &activity).await;
    let user = dispatch.session.user().to_owned();
    // No more requests: the writer ends once every reply is out.
    drop(dispatch);
    let exit_status = match end {
        End::Gone => {
            writer_task.abort();
            debug!(user = %user, "sftp channel closed by the client");
            return;
        }
        End::Finished => 0,
        End::Refused(reason) => {
            info!(user = %user, proto = "sftp", reason, "sftp channel closed");
            1
        }
    };
    // Keep draining the channel while the last replies go out, so they can.
    let finished = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let mut writer_task = writer_task;
        loop {
            tokio::select! {
                done = &mut writer_task => return done.ok(),
                msg = reader.wait() => {
                    // Whatever still comes is thrown away; the channel's end stops us.
                    if let Some(ChannelMsg::Data { data }) = &msg {
                        transit.taken(data.len());
                    }
                    msg.as_ref()?;
                }
            }
        }
    })
    .await;
    if let Ok(Some(writer)) = finished {
        let _ = writer.eof().await;
        // OpenSSH reports a missing exit status as a failure.
        let _ = writer.exit_status(exit_status).await;
        let _ = writer.close().await;
    }
}

/// How the dispatch loop ended.
enum End {
    /// The client sent EOF and every request was started.
    Finished,
    /// The client closed the channel, or the connection went away.
    Gone,
    /// We close the channel: framing is lost, or the peer does not read its replies.
    Refused(&'static str),
}

struct Dispatch {
    /// This channel's data not yet taken off its queue.
    transit: Arc<Transit>,
    account: Arc<ConnectionAccount>,
    /// The unparsed bytes and the packet cut out and not yet started.
    queued: Charge,
    session: Arc<Session>,
    queue: mpsc::UnboundedSender<Queued>,
    count: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    sequencer: Sequencer,
    initialized: bool,
}

impl Dispatch {
    async fn run(&mut self, reader: &mut russh::ChannelReadHalf, activity: &Activity) -> End {
        let mut inbox = Inbox::default();
        let mut eof = false;
        // A packet cut out and decoded, waiting for room in flight.
        let mut waiting: Option<Head> = None;
        loop {
            // Start every request there is room for.
            loop {
                if waiting.is_none() {
                    match inbox.next() {
                        Frame::Incomplete => break,
                        Frame::Packet(packet) => {
                            let len = packet.len();
                            let incoming = decode(packet);
                            let reply = reply_bound(&incoming);
                            waiting = Some(Head {
                                incoming,
                                len,
                                reply,
                            });
                        }
                        Frame::TooLarge { len, kind, id } => {
                            debug!(len, ?kind, "sftp packet over the limit");
                            if let Some(id) = id {
                                let message = format!(
                                    "packet of {len} bytes is over the {MAX_PACKET}-byte limit; closing"
                                );
                                self.answer_last(
                                    id,
                                    codec::status(id, StatusCode::BadMessage, &message),
                                );
                            }
                            return End::Refused("packet over the size limit");
                        }
                        Frame::Garbled => return End::Refused("garbled packet framing"),
                    }
                }
                let Some(head) = &waiting else { break };
                let Some(permits) = self.try_permits(head) else {
                    break;
                };
                if let Some(head) = waiting.take()
                    && let Err(reason) = self.start(head, permits)
                {
                    return End::Refused(reason);
                }
            }
            self.queued
                .set(inbox.unparsed() + waiting.as_ref().map_or(0, |head| head.len));
            if eof && waiting.is_none() {
                return End::Finished;
            }
            tokio::select! {
                msg = reader.wait(), if !eof => match msg {
                    Some(ChannelMsg::Data { data }) => {
                        activity.touch();
                        inbox.push(&data);
                        self.queued.grow(data.len());
                        self.transit.taken(data.len());
                        if inbox.unparsed() > MAX_BUFFERED {
                            return End::Refused("the client sends requests without reading replies");
                        }
                    }
                    Some(ChannelMsg::Eof) => eof = true,
                    Some(ChannelMsg::Close) | None => return End::Gone,
                    Some(_) => {}
                },
                permits = self.permits(waiting.as_ref()), if waiting.is_some() => {
                    if let Some(head) = waiting.take()
                        && let Err(reason) = self.start(head, permits)
                    {
                        return End::Refused(reason);
                    }
                }
            }
        }
    }

    fn try_permits(&self, head: &Head) -> Option<Permits> {
        let count = Arc::clone(&self.count).try_acquire_owned().ok()?;
        let bytes = Arc::clone(&self.bytes)
            .try_acquire_many_owned(head.cost())
            .ok()?;
        let reply = self.account.try_charge(Kind::InFlight, head.reply)?;
        Some(Permits {
            _count: count,
            _bytes: bytes,
            reply,
        })
    }

    async fn permits(&self, head: Option<&Head>) -> Permits {
        let Some(head) = head else {
            return std::future::pending().await;
        };
        let count = Arc::clone(&self.count).acquire_owned().await;
        let bytes = Arc::clone(&self.bytes)
            .acquire_many_owned(head.cost())
            .await;
        let (Ok(count), Ok(bytes)) = (count, bytes) else {
            // The semaphores are never closed while the loop runs.
            return std::future::pending().await;
        };
        let reply = self.account.charge_when_room(head.reply).await;
        Permits {
            _count: count,
            _bytes: bytes,
            reply,
        }
    }

    /// Queues a last reply before the channel closes, outside the budget: waiting for
    /// room here would stop the loop from draining the channel.
    fn answer_last(&self, id: u32, bytes: Vec<u8>) {
        self.queue_reply(id, bytes, None);
    }

    fn ready(&self, id: u32, bytes: Vec<u8>, permits: Permits) {
        permits.ran(&bytes);
        self.queue_reply(id, bytes, Some(permits));
    }

    fn queue_reply(&self, id: u32, bytes: Vec<u8>, permits: Option<Permits>) {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Reply { bytes, permits });
        let _ = self.queue.send((id, rx));
    }

    /// Starts one request; `Err` ends the session.
    fn start(&mut self, head: Head, permits: Permits) -> Result<(), &'static str> {
        // The packet stays queued until the request has run.
        let packet = self.account.charge(Kind::Queued, head.len);
        let (id, request) = match head.incoming {
            Ok(Incoming::Init { version }) => {
                if self.initialized {
                    return Err("a second SSH_FXP_INIT");
                }
                self.initialized = true;
                debug!(version, "sftp session initialised");
                self.ready(0, codec::version(EXTENSIONS), permits);
                return Ok(());
            }
            Ok(Incoming::Request { id, request }) => (id, request),
            Err(BadPacket {
                id: Some(id),
                kind,
                error,
            }) => {
                let message = format!("malformed request (type {kind}): {error}");
                let ops = self.session.ops();
                ops.log("?", "", 0, std::time::Instant::now(), Some(&message));
                self.ready(
                    id,
                    codec::status(id, StatusCode::BadMessage, &message),
                    permits,
                );
                return Ok(());
            }
            Err(BadPacket { id: None, .. }) => return Err("a packet too short for a request id"),
        };
        if !self.initialized {
            let message = "SSH_FXP_INIT must come first";
            self.ready(id, codec::status(id, StatusCode::Failure, message), permits);
            return Ok(());
        }
        let access = access(&request);
        if access == Access::Free {
            let reply = self.session.execute(id, request);
            self.ready(id, reply, permits);
            return Ok(());
        }
        let (deps, finish) = self.sequencer.next(access);
        let (tx, rx) = oneshot::channel();
        let _ = self.queue.send((id, rx));
        let session = Arc::clone(&self.session);
        let span = Span::current();
        tokio::spawn(async move {
            order::wait_all(deps).await;
            let work =
                tokio::task::spawn_blocking(move || span.in_scope(|| session.execute(id, request)));
            let bytes = match work.await {
                Ok(bytes) => bytes,
                Err(_) => codec::status(id, StatusCode::Failure, "internal error"),
            };
            drop(finish);
            drop(packet);
            permits.ran(&bytes);
            let _ = tx.send(Reply {
                bytes,
                permits: Some(permits),
            });
        });
        Ok(())
    }
}

/// Which requests this one must wait for, and which must wait for it.
fn access(request: &Request) -> Access<'_> {
    match request {
        Request::Read { handle, .. } | Request::Fstat { handle } | Request::Fstatvfs { handle } => {
            Access::Shared(handle)
        }
        Request::Write { handle, .. }
        | Request::Close { handle }
        | Request::Fsetstat { handle, .. }
        | Request::Fsync { handle }
        | Request::Readdir { handle } => Access::Exclusive(handle),
        Request::Open { .. }
        | Request::Lstat { .. }
        | Request::Stat { .. }
        | Request::Setstat { .. }
        | Request::Opendir { .. }
        | Request::Remove { .. }
        | Request::Mkdir { .. }
        | Request::Rmdir { .. }
        | Request::Rename { .. }
        | Request::PosixRename { .. }
        | Request::Readlink { .. }
        | Request::Statvfs { .. } => Access::Barrier,
        // No I/O at all: textual paths, fixed numbers, refusals.
        Request::Realpath { .. }
        | Request::ExpandPath { .. }
        | Request::UsersGroupsById { .. }
        | Request::Limits
        | Request::Symlink { .. }
        | Request::Hardlink { .. }
        | Request::UnknownExtension { .. }
        | Request::Unknown { .. } => Access::Free,
    }
}

/// A packet cut out and decoded, not yet started.
struct Head {
    incoming: Result<Incoming, BadPacket>,
    /// The packet's length.
    len: usize,
    /// The most its reply can be.
    reply: usize,
}

impl Head {
    /// What the request holds of the channel's in-flight bytes: its packet and reply.
    fn cost(&self) -> u32 {
        // At most 2 * MAX_PACKET: far below the limit, which it must never pass.
        (self.len + self.reply) as u32
    }
}

fn reply_bound(incoming: &Result<Incoming, BadPacket>) -> usize {
    match incoming {
        Ok(Incoming::Request { request, .. }) => request.reply_bound(),
        Ok(Incoming::Init { .. }) | Err(_) => 1024,
    }
}
