//! `scp -t`: the client sends files, and with `-r` folders, into the home.
//!
//! Each file goes through the storage core's upload machinery: its whole size is
//! reserved from the `C` line before we answer it, the bytes land in a partial, and the
//! partial is published only after the last byte and the sender's final OK. Anything
//! else (a refusal of the sender, a write error, the connection breaking) deletes the
//! partial and gives its space back.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::info;

use super::{Control, Peer, Reply, Stop, Transfer, error_text, parse_control};
use crate::server::budget;
use crate::server::logging::LogText;
use crate::storage::stream::ChunkSink;
use crate::storage::{EntryKind, StorageError, Upload, UploadStart, VirtualPath};

/// A folder entered with `D`, left again with `E`.
struct Entered {
    path: VirtualPath,
    times: Option<Times>,
}

#[derive(Clone, Copy)]
struct Times {
    mtime: u64,
}

/// Receives everything the client sends for `target`.
pub(super) async fn receive<R, W>(
    t: &mut Transfer,
    peer: &mut Peer<R, W>,
    target: &str,
    must_be_dir: bool,
) -> Result<(), Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let started = Instant::now();
    let target = match VirtualPath::resolve(&VirtualPath::root(), target) {
        Ok(path) => path,
        Err(err) => {
            t.log("put", target, 0, started, Some(&err.to_string()));
            return Err(peer.fatal(&format!("{target}: {}", error_text(&err))).await);
        }
    };
    let probe = target.clone();
    let target_is_dir = matches!(
        t.blocking(move |home| home.stat(&probe)).await,
        Ok(entry) if entry.kind == EntryKind::Dir
    );
    if must_be_dir && !target_is_dir {
        t.log("put", target.as_str(), 0, started, Some("not a directory"));
        return Err(peer
            .fatal(&format!("{}: Not a directory", target.as_str()))
            .await);
    }
    peer.ok().await?;

    let mut entered: Vec<Entered> = Vec::new();
    let mut times = None;
    loop {
        let Some(line) = peer.line().await? else {
            // The sender is done.
            return Ok(());
        };
        let control = match parse_control(&line) {
            Ok(control) => control,
            Err(err) => {
                // Never followed: the records after a line we cannot trust could be
                // anything.
                t.log("scp", "", 0, Instant::now(), Some(&err.to_string()));
                return Err(peer.fatal(&format!("protocol error: {err}")).await);
            }
        };
        match control {
            Control::Warning(message) => {
                // The sender could not send something; it goes on with the rest.
                t.errors += 1;
                info!(message = %LogText(&message), "scp sender reported a problem");
            }
            Control::Fatal(message) => {
                info!(message = %LogText(&message), "scp sender stopped the transfer");
                return Err(Stop::Fatal);
            }
            Control::Times { mtime, .. } => {
                times = Some(Times { mtime });
                peer.ok().await?;
            }
            Control::End => {
                let Some(dir) = entered.pop() else {
                    return Err(peer.fatal("protocol error: E outside a folder").await);
                };
                if let (true, Some(times)) = (t.preserve, dir.times) {
                    let path = dir.path.clone();
                    if let Err(err) = t
                        .blocking(move |home| home.set_mtime(&path, system_time(times)?))
                        .await
                    {
                        t.errors += 1;
                        peer.warn(&error_text(&err)).await?;
                        continue;
                    }
                }
                peer.ok().await?;
            }
            Control::Dir { mode, name } => {
                if !t.recursive {
                    return Err(peer
                        .fatal("protocol error: received a folder without -r")
                        .await);
                }
                let times = times.take();
                let started = Instant::now();
                let made = match place(&target, target_is_dir, &entered, &name) {
                    Ok(path) => {
                        let dir = path.clone();
                        let preserve = t.preserve;
                        t.blocking(move |home| make_dir(home, &dir, preserve.then_some(mode)))
                            .await
                            .map(|()| path)
                    }
                    Err(err) => Err(err),
                };
                match made {
                    Ok(path) => {
                        t.log("mkdir", path.as_str(), 0, started, None);
                        entered.push(Entered { path, times });
                        peer.ok().await?;
                    }
                    Err(err) => {
                        // The sender skips the folder's contents and its `E`.
                        t.errors += 1;
                        t.log("mkdir", &name, 0, started, Some(&err.to_string()));
                        peer.warn(&error_text(&err)).await?;
                    }
                }
            }
            Control::File { mode, size, name } => {
                let times = times.take();
                let path = place(&target, target_is_dir, &entered, &name);
                receive_file(t, peer, path, &name, mode, size, times).await?;
            }
        }
    }
}

/// Where a received name goes: inside the folder last entered, inside the target if it
/// is a folder, or (a single file to a new name) the target itself.
fn place(
    target: &VirtualPath,
    target_is_dir: bool,
    entered: &[Entered],
    name: &str,
) -> Result<VirtualPath, StorageError> {
    match entered.last() {
        Some(dir) => dir.path.join(name),
        None if target_is_dir => target.join(name),
        None => Ok(target.clone()),
    }
}

/// Creates the folder unless it is there already; with a mode, sets it.
fn make_dir(
    home: &crate::storage::HomeDir,
    path: &VirtualPath,
    mode: Option<u32>,
) -> Result<(), StorageError> {
    match home.stat(path) {
        Ok(entry) if entry.kind == EntryKind::Dir => {}
        Ok(_) => return Err(StorageError::NotADirectory { path: path.clone() }),
        Err(StorageError::NotFound { .. }) => home.mkdir(path)?,
        Err(err) => return Err(err),
    }
    match mode {
        Some(mode) => home.set_permissions(path, mode),
        None => Ok(()),
    }
}

fn system_time(times: Times) -> Result<SystemTime, StorageError> {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(times.mtime))
        .ok_or(StorageError::BadPath {
            reason: "the modification time is out of range",
        })
}

/// One `C` record: answer it, take its bytes, and publish them or leave nothing.
async fn receive_file<R, W>(
    t: &mut Transfer,
    peer: &mut Peer<R, W>,
    path: Result<VirtualPath, StorageError>,
    name: &str,
    mode: u32,
    size: u64,
    times: Option<Times>,
) -> Result<(), Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let started = Instant::now();
    let begun = match path {
        Ok(path) => {
            t.blocking(move |home| match home.begin_upload(&path, size, None)? {
                UploadStart::Ready(mut upload) => {
                    // SCP cannot resume: whatever an earlier attempt left is discarded.
                    upload.start_from(0)?;
                    Ok(upload)
                }
                // Only an upload that names an expected MD5 can be up to date.
                UploadStart::UpToDate => Err(StorageError::Invalid {
                    path,
                    reason: "unexpected upload state",
                }),
            })
            .await
        }
        Err(err) => Err(err),
    };
    let upload = match begun {
        Ok(upload) => upload,
        Err(err) => {
            // Refused before any data: the sender skips this file's bytes.
            t.errors += 1;
            t.log("put", name, 0, started, Some(&err.to_string()));
            return peer.warn(&error_text(&err)).await;
        }
    };
    let path = upload.path().clone();
    let pending = Pending(Some(upload));
    peer.ok().await?;
    let activity = peer.activity.clone();
    let received = budget::receive(
        &t.account,
        &mut peer.reader,
        size,
        pending,
        peer.stall,
        |_| activity.touch(),
    )
    .await;
    let (pending, written) = match received {
        Ok(received) => received,
        Err(err) if err.kind() == std::io::ErrorKind::TimedOut => {
            // The partial goes (SCP cannot resume), and the sender hears why.
            t.log("put", path.as_str(), 0, started, Some(&err.to_string()));
            return Err(peer.fatal(&format!("{}: {err}", path.as_str())).await);
        }
        Err(_) => {
            t.log("put", path.as_str(), 0, started, Some("connection lost"));
            return Err(Stop::Gone);
        }
    };
    // The sender's last word on the file: `\0` when it read all of it without error.
    let refused = match peer.line_or_byte().await? {
        None => {
            t.log("put", path.as_str(), 0, started, Some("connection lost"));
            return Err(Stop::Gone);
        }
        Some(Reply::Ok) => None,
        Some(Reply::Line(line)) => match parse_control(&line) {
            Ok(Control::Warning(message)) => Some(message),
            Ok(Control::Fatal(message)) => {
                t.log("put", path.as_str(), 0, started, Some(&message));
                return Err(Stop::Fatal);
            }
            Ok(_) | Err(_) => {
                t.log("put", path.as_str(), 0, started, Some("protocol error"));
                return Err(peer
                    .fatal("protocol error: expected the end of a file")
                    .await);
            }
        },
    };
    if let Some(message) = refused {
        t.errors += 1;
        t.log("put", path.as_str(), 0, started, Some(&message));
        let _ = t
            .blocking(move |_| {
                pending.discard();
                Ok(())
            })
            .await;
        // The sender has said what went wrong and waits for an answer all the same;
        // nothing is published.
        return peer.ok().await;
    }
    let preserve = t.preserve;
    let target = path.clone();
    let result = t
        .blocking(move |home| {
            if let Err(err) = written {
                pending.discard();
                return Err(err);
            }
            let replaced = match home.stat(&target) {
                Ok(entry) if entry.kind == EntryKind::File => Some(entry.mode()),
                _ => None,
            };
            pending.set_permissions(published_mode(mode, preserve, replaced))?;
            pending.publish()?;
            if let (true, Some(times)) = (preserve, times) {
                home.set_mtime(&target, system_time(times)?)?;
            }
            Ok(())
        })
        .await;
    match result {
        Ok(()) => {
            t.log("put", path.as_str(), size, started, None);
            peer.ok().await
        }
        Err(err) => {
            t.errors += 1;
            t.log("put", path.as_str(), 0, started, Some(&err.to_string()));
            peer.warn(&error_text(&err)).await
        }
    }
}

/// The permission bits a received file is published with. With `-p`, the mode of the
/// `C` line. Without, as OpenSSH's scp sink under the usual umask of 022: a new file
/// takes the `C` line's mode less write for group and others, and always keeps read
/// and write for its owner, the server; a file it replaces keeps its mode.
fn published_mode(sent: u32, preserve: bool, replaced: Option<u32>) -> u32 {
    match (preserve, replaced) {
        (true, _) => sent & 0o777,
        (false, Some(old)) => old & 0o777,
        (false, None) => (sent & 0o755) | 0o600,
    }
}

/// An upload that is deleted, and its space given back, unless it is published.
struct Pending(Option<Upload>);

impl Pending {
    fn set_permissions(&self, mode: u32) -> Result<(), StorageError> {
        match self.0.as_ref() {
            Some(upload) => upload.set_permissions(mode),
            None => Ok(()),
        }
    }

    fn publish(mut self) -> Result<(), StorageError> {
        match self.0.take() {
            Some(upload) => upload.publish_unverified(),
            None => Ok(()),
        }
    }
}

impl Pending {
    /// Deletes the partial now, on this (blocking) thread.
    fn discard(mut self) {
        if let Some(upload) = self.0.take() {
            abandon(upload);
        }
    }
}

fn abandon(upload: Upload) {
    let path = upload.path().clone();
    if let Err(err) = upload.abandon() {
        tracing::warn!(path = %path, error = %err, "could not delete a failed upload's partial");
    }
}

impl ChunkSink for Pending {
    type Error = StorageError;

    fn write_chunk(&mut self, data: &[u8]) -> Result<(), StorageError> {
        match self.0.as_mut() {
            Some(upload) => upload.write(data),
            None => Ok(()),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(upload) = self.0.take() else { return };
        // Off the reactor when there is one: a broken connection drops this there.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || abandon(upload))),
            Err(_) => abandon(upload),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::published_mode;

    #[test]
    fn modes_without_p_are_masked_like_openssh_and_stay_usable() {
        assert_eq!(published_mode(0o755, false, None), 0o755);
        assert_eq!(published_mode(0o777, false, None), 0o755);
        assert_eq!(published_mode(0o4666, false, None), 0o644);
        assert_eq!(published_mode(0o000, false, None), 0o600);
        assert_eq!(published_mode(0o755, false, Some(0o100640)), 0o640);
        assert_eq!(published_mode(0o4755, true, Some(0o100640)), 0o755);
        assert_eq!(published_mode(0o000, true, None), 0o000);
    }
}
