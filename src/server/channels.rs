//! The channels of one connection: how many may be open, how long one may wait to be
//! claimed by a subsystem or command, and the guard that keeps a running one counted.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::server::{Msg, Session};
use russh::{Channel, ChannelId};
use tracing::{Instrument, Span};

/// Channels open on one connection at once; each runs a task, so a peer may not open
/// thousands.
pub(super) const MAX_CHANNELS: usize = 8;

/// How long an opened channel may wait for its subsystem or command. Until then nobody
/// reads it, and over SSH a channel nobody reads can stall the whole connection.
pub(super) const CHANNEL_CLAIM_TIME: Duration = Duration::from_secs(10);

/// The channels of one connection: every one still open, and those of them not yet
/// given a subsystem or command.
#[derive(Default)]
pub(super) struct Channels {
    /// Accepted and not yet closed (by the peer, or by us once its work is done).
    pub(super) open: HashSet<ChannelId>,
    /// Open, but nobody reads them yet.
    pub(super) pending: HashMap<ChannelId, Channel<Msg>>,
}

pub(super) type SharedChannels = Arc<Mutex<Channels>>;

pub(super) fn lock_channels(channels: &SharedChannels) -> std::sync::MutexGuard<'_, Channels> {
    // Only ids and handles inside; a panic elsewhere cannot leave them inconsistent.
    channels.lock().unwrap_or_else(|p| p.into_inner())
}

/// Closes a channel nobody will read, so that it stops counting against the peer and
/// its data is no longer accepted.
pub(super) fn close_unclaimed(channels: &SharedChannels, id: ChannelId) {
    let channel = {
        let mut channels = lock_channels(channels);
        let channel = channels.pending.remove(&id);
        if channel.is_some() {
            channels.open.remove(&id);
        }
        channel
    };
    if let Some(channel) = channel {
        tokio::spawn(async move {
            let _ = channel.close().await;
        });
    }
}

/// Takes a pending channel to run something on it; the returned guard keeps it counted
/// as open until dropped, after the work on it is done.
pub(super) fn claim(channels: &SharedChannels, id: ChannelId) -> Option<(Channel<Msg>, Running)> {
    let channel = lock_channels(channels).pending.remove(&id)?;
    Some((
        channel,
        Running {
            channels: Arc::clone(channels),
            id,
        },
    ))
}

/// One running channel; dropping it, once the work on the channel is over and the
/// channel closed with it, frees the place.
pub(super) struct Running {
    channels: SharedChannels,
    id: ChannelId,
}

impl Drop for Running {
    fn drop(&mut self) {
        lock_channels(&self.channels).open.remove(&self.id);
    }
}

/// Claims channel `id` and answers the request that named it: failure if it cannot be
/// claimed (it closed, or something already runs on it), success if it can. Then runs
/// what `start` makes of the channel in a task of its own, inside `span`, and keeps the
/// channel counted as open until that task ends.
pub(super) fn run_on<F>(
    channels: &SharedChannels,
    id: ChannelId,
    session: &mut Session,
    span: Span,
    start: impl FnOnce(Channel<Msg>) -> F,
) -> Result<(), russh::Error>
where
    F: Future<Output = ()> + Send + 'static,
{
    let Some((channel, running)) = claim(channels, id) else {
        session.channel_failure(id)?;
        return Ok(());
    };
    session.channel_success(id)?;
    let work = start(channel);
    tokio::spawn(
        async move {
            work.await;
            drop(running);
        }
        .instrument(span),
    );
    Ok(())
}
