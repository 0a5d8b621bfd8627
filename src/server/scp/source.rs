//! `scp -f`: the server sends files, and with `-r` folders, to the client.
//!
//! Folders are walked with an explicit stack, each folder read as it is sent, a few
//! entries at a time, so that a large folder is never held whole. A symbolic link
//! inside a tree is sent if it leads to a file in the home, but a link to a folder is
//! not followed, so that a link such as `self -> .` cannot make the walk endless.

use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{Answer, Control, Peer, Stop, Transfer, error_text};
use crate::server::budget::{DOWNLOAD_PIPELINE, Kind};
use crate::server::logging::LogText;
use crate::server::op;
use crate::storage::stream;
use crate::storage::{DirStream, Entry, EntryKind, StorageError, VirtualPath};

/// What is left to do while walking what was asked for.
enum Work {
    /// Send this file or folder. `listed_as_link`: it came from a listing, as a link.
    Visit {
        path: VirtualPath,
        name: String,
        listed_as_link: bool,
    },
    /// Read the next entries of this open folder, and send them.
    List(DirStream),
    /// The folder's contents are sent: close it with `E`.
    Leave,
}

/// Entries read from a folder at a time, off the reactor.
const BATCH: usize = 64;

/// The next entries of `stream`, up to [`BATCH`], and the stream again while there may
/// be more.
fn read_batch(mut stream: DirStream) -> (Vec<Entry>, Option<StorageError>, Option<DirStream>) {
    let mut batch = Vec::new();
    while batch.len() < BATCH {
        match stream.next() {
            Some(Ok(entry)) => batch.push(entry),
            Some(Err(err)) => return (batch, Some(err), None),
            None => return (batch, None, None),
        }
    }
    (batch, None, Some(stream))
}

/// Sends every path named, as the client asked.
pub(super) async fn send<R, W>(
    t: &mut Transfer,
    peer: &mut Peer<R, W>,
    paths: &[String],
) -> Result<(), Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // The receiving side speaks first, to say it is ready.
    note_answer(t, peer).await?;
    for arg in paths {
        let path = match op::resolve_from_root(arg) {
            Ok(path) => path,
            Err(err) => {
                t.errors += 1;
                t.log("get", arg, 0, Instant::now(), Some(&err.to_string()));
                peer.warn(&format!("{arg}: {}", error_text(&err))).await?;
                continue;
            }
        };
        // The home itself has no name of its own in the user's view, and clients refuse
        // `.`: it goes by the user's name, as a home folder would.
        let name = path
            .file_name()
            .map_or_else(|| t.user.clone(), str::to_owned);
        walk(t, peer, path, name).await?;
    }
    Ok(())
}

async fn walk<R, W>(
    t: &mut Transfer,
    peer: &mut Peer<R, W>,
    path: VirtualPath,
    name: String,
) -> Result<(), Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut work = vec![Work::Visit {
        path,
        name,
        listed_as_link: false,
    }];
    while let Some(next) = work.pop() {
        let (path, name, listed_as_link) = match next {
            Work::List(stream) => {
                let dir = stream.path().clone();
                let read = t.blocking(move |_| Ok(read_batch(stream))).await;
                let (batch, failed, rest) =
                    read.unwrap_or_else(|err| (Vec::new(), Some(err), None));
                if let Some(err) = failed {
                    refuse(t, peer, &dir, Instant::now(), &error_text(&err)).await?;
                }
                if let Some(rest) = rest {
                    work.push(Work::List(rest));
                }
                for child in batch.into_iter().rev() {
                    push_child(t, peer, &mut work, &dir, child).await?;
                }
                continue;
            }
            Work::Leave => {
                peer.send(&Control::End.encode()).await?;
                note_answer(t, peer).await?;
                continue;
            }
            Work::Visit {
                path,
                name,
                listed_as_link,
            } => (path, name, listed_as_link),
        };
        let started = Instant::now();
        let probe = path.clone();
        let stat = t.blocking(move |home| home.stat(&probe)).await;
        let Some(entry) = or_refuse(t, peer, &path, started, stat).await? else {
            continue;
        };
        match entry.kind {
            EntryKind::File => send_file(t, peer, &path, &name).await?,
            EntryKind::Dir if !t.recursive => {
                refuse(t, peer, &path, started, "not a regular file").await?;
            }
            EntryKind::Dir if listed_as_link => {
                let why = "a symbolic link to a folder, not followed";
                refuse(t, peer, &path, started, why).await?;
            }
            EntryKind::Dir => {
                let listed = path.clone();
                let opened = t.blocking(move |home| home.open_dir(&listed)).await;
                let Some(stream) = or_refuse(t, peer, &path, started, opened).await? else {
                    continue;
                };
                if !send_times(t, peer, &entry).await? {
                    continue;
                }
                let mode = entry.mode() & 0o777;
                peer.send(&Control::Dir { mode, name }.encode()).await?;
                if !note_answer(t, peer).await? {
                    // The receiver refused the folder: skip its contents.
                    continue;
                }
                t.log("get", path.as_str(), 0, started, None);
                work.push(Work::Leave);
                work.push(Work::List(stream));
            }
            EntryKind::Symlink | EntryKind::Other => {
                refuse(t, peer, &path, started, "not a regular file").await?;
            }
        }
    }
    Ok(())
}

async fn push_child<R, W>(
    t: &mut Transfer,
    peer: &mut Peer<R, W>,
    work: &mut Vec<Work>,
    dir: &VirtualPath,
    child: Entry,
) -> Result<(), Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Some(name) = child.name.to_str() else {
        let why = "a name that is not UTF-8 was skipped";
        return refuse(t, peer, dir, Instant::now(), why).await;
    };
    match dir.join(name) {
        Ok(path) => {
            work.push(Work::Visit {
                path,
                name: name.to_owned(),
                listed_as_link: child.kind == EntryKind::Symlink,
            });
            Ok(())
        }
        Err(err) => refuse(t, peer, dir, Instant::now(), &error_text(&err)).await,
    }
}

/// What storage gave, or `None` once the client is told why `path` is not sent.
async fn or_refuse<T, R, W>(
    t: &mut Transfer,
    peer: &mut Peer<R, W>,
    path: &VirtualPath,
    started: Instant,
    result: Result<T, StorageError>,
) -> Result<Option<T>, Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match result {
        Ok(value) => Ok(Some(value)),
        Err(err) => {
            refuse(t, peer, path, started, &error_text(&err)).await?;
            Ok(None)
        }
    }
}

/// Tells the client that `path` is not sent, and why; the transfer goes on.
async fn refuse<R, W>(
    t: &mut Transfer,
    peer: &mut Peer<R, W>,
    path: &VirtualPath,
    started: Instant,
    why: &str,
) -> Result<(), Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    t.errors += 1;
    t.log("get", path.as_str(), 0, started, Some(why));
    let message = if why.contains(path.as_str()) {
        why.to_owned()
    } else {
        format!("{}: {why}", path.as_str())
    };
    peer.warn(&message).await
}

/// Reads the receiver's answer; a warning counts as an error. Whether it was OK.
async fn note_answer<R, W>(t: &mut Transfer, peer: &mut Peer<R, W>) -> Result<bool, Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match peer.answer().await? {
        Answer::Ok => Ok(true),
        Answer::Warning(message) => {
            t.errors += 1;
            tracing::info!(message = %LogText(&message), "scp receiver reported a problem");
            Ok(false)
        }
    }
}

/// With `-p`, the `T` line before a `C` or `D`. Whether the receiver took it.
async fn send_times<R, W>(
    t: &mut Transfer,
    peer: &mut Peer<R, W>,
    entry: &Entry,
) -> Result<bool, Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if !t.preserve {
        return Ok(true);
    }
    let times = Control::Times {
        mtime: u64::try_from(entry.mtime).unwrap_or(0),
        atime: u64::try_from(entry.atime()).unwrap_or(0),
    };
    peer.send(&times.encode()).await?;
    note_answer(t, peer).await
}

async fn send_file<R, W>(
    t: &mut Transfer,
    peer: &mut Peer<R, W>,
    path: &VirtualPath,
    name: &str,
) -> Result<(), Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let started = Instant::now();
    let target = path.clone();
    let opened = t.blocking(move |home| home.open_read(&target)).await;
    let Some((file, entry)) = or_refuse(t, peer, path, started, opened).await? else {
        return Ok(());
    };
    if !send_times(t, peer, &entry).await? {
        return Ok(());
    }
    let size = entry.size;
    let record = Control::File {
        mode: entry.mode() & 0o777,
        size,
        name: name.to_owned(),
    };
    peer.send(&record.encode()).await?;
    if !note_answer(t, peer).await? {
        t.log(
            "get",
            path.as_str(),
            0,
            started,
            Some("refused by the receiver"),
        );
        return Ok(());
    }
    let mut sent = 0u64;
    let _memory = t.account.charge(Kind::InFlight, DOWNLOAD_PIPELINE);
    let activity = peer.activity.clone();
    let progress = |n| {
        sent += n;
        activity.touch();
    };
    let streamed =
        stream::send_file(&mut peer.writer, file, 0, size, None, peer.stall, progress).await;
    if let Err(err) = &streamed
        && err.kind() == std::io::ErrorKind::TimedOut
    {
        // The receiver stopped reading: there is nobody to tell.
        t.log("get", path.as_str(), sent, started, Some(&err.to_string()));
        return Err(Stop::Gone);
    }
    if let Err(err) = streamed {
        // The receiver takes the next `size - sent` bytes as the file's, whatever they
        // are: made-up bytes would leave it a file of the right size and the wrong
        // content. Only the end of the channel stops it, so the transfer ends here.
        t.errors += 1;
        let why = format!("stopped after {sent} of {size} bytes: {err}");
        t.log("get", path.as_str(), sent, started, Some(&why));
        return Err(Stop::Aborted(format!(
            "{}: read error after {sent} of {size} bytes, transfer stopped",
            path.as_str()
        )));
    }
    peer.ok().await?;
    if note_answer(t, peer).await? {
        t.log("get", path.as_str(), size, started, None);
    } else {
        t.log(
            "get",
            path.as_str(),
            0,
            started,
            Some("refused by the receiver"),
        );
    }
    Ok(())
}
