//! The writer side of an SFTP channel: replies in request order, small ones gathered
//! into one channel write, each holding its request's places in the limits until it is
//! out.

use russh::ChannelWriteHalf;
use russh::server::Msg;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use super::codec::{self, StatusCode};
use crate::server::budget::Charge;

/// Small replies are gathered into channel writes of about this size.
const COALESCE: usize = 64 * 1024;

/// One reply on its way to the writer, with the in-flight budget it holds.
pub(super) struct Reply {
    pub(super) bytes: Vec<u8>,
    pub(super) permits: Option<Permits>,
}

/// What a started request holds until its reply is written: its places in the
/// channel's limits, and its reply's charge on the connection's account.
pub(super) struct Permits {
    pub(super) _count: OwnedSemaphorePermit,
    pub(super) _bytes: OwnedSemaphorePermit,
    pub(super) reply: Charge,
}

impl Permits {
    /// Once the request has run: what is left is its reply, of this size.
    pub(super) fn ran(&self, reply: &[u8]) {
        self.reply.set(reply.len());
    }
}

/// A reply in request order: its id (to answer if the request's task died), and where
/// it will come from.
pub(super) type Queued = (u32, oneshot::Receiver<Reply>);

enum Pending {
    Waiting(Queued),
    Ready(Reply),
}

/// Writes replies in request order, gathering small ones, until the dispatch loop is
/// gone and every reply is out; returns the write side for EOF and close.
pub(super) async fn write_replies(
    writer: ChannelWriteHalf<Msg>,
    mut queue: mpsc::UnboundedReceiver<Queued>,
) -> ChannelWriteHalf<Msg> {
    let mut held: Option<Pending> = None;
    loop {
        let first = match held.take() {
            Some(Pending::Ready(reply)) => reply,
            Some(Pending::Waiting(queued)) => receive(queued).await,
            None => match queue.recv().await {
                Some(queued) => receive(queued).await,
                None => break,
            },
        };
        let mut batch = first.bytes;
        let mut permits = vec![first.permits];
        while batch.len() < COALESCE {
            let Ok((id, mut rx)) = queue.try_recv() else {
                break;
            };
            let reply = match rx.try_recv() {
                Ok(reply) => reply,
                Err(oneshot::error::TryRecvError::Empty) => {
                    held = Some(Pending::Waiting((id, rx)));
                    break;
                }
                Err(oneshot::error::TryRecvError::Closed) => {
                    held = Some(Pending::Waiting((id, rx)));
                    break;
                }
            };
            if batch.len() + reply.bytes.len() > COALESCE {
                held = Some(Pending::Ready(reply));
                break;
            }
            batch.extend_from_slice(&reply.bytes);
            permits.push(reply.permits);
        }
        if writer.data_bytes(batch).await.is_err() {
            break;
        }
        drop(permits);
    }
    writer
}

/// The reply for one queued request; a request whose task died is answered with a
/// failure, so the client never waits for an id forever.
async fn receive((id, rx): Queued) -> Reply {
    match rx.await {
        Ok(reply) => reply,
        Err(_) => Reply {
            bytes: codec::status(id, StatusCode::Failure, "internal error"),
            // Its budget went with the task.
            permits: None,
        },
    }
}
