//! The transfer engine: whole-file downloads and uploads that resume and verify.
//!
//! Downloads go to `<name>.part` beside the destination and are renamed into place only
//! after the MD5 of the whole file matches the server's. Before either direction resumes,
//! the MD5 of the shared prefix is compared, so a different file with the same name is
//! never spliced onto old bytes. Every byte is read once: hashing rides along with the
//! transfer on a blocking thread.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncWrite};

use super::ClientError;
use super::exec_hash::{FileHash, HashKind};
use super::rsftp::{PutStart, RsftpClient};
use crate::protocol::{ErrorCode, Md5Digest};
use crate::storage::stream::{ChunkSink, hash_range};

/// Hears how a transfer goes; the shell draws a progress bar from it. It is `Sync`, so
/// that a transfer holding `&dyn Progress` can run in a spawned task.
pub trait Progress: Send + Sync {
    /// The transfer starts: `total` bytes in all, of which `done` are already there.
    fn begin(&self, _total: u64, _done: u64) {}
    /// `bytes` more have moved.
    fn advance(&self, _bytes: u64) {}
    /// An earlier partial transfer of `held` bytes did not match the source and is being
    /// thrown away; the transfer starts from 0 instead.
    fn restarting(&self, _held: u64) {}
    /// Another upload to `remote` holds it on the server (typically one whose client was
    /// just killed, until the server notices); the upload waits up to `limit` for it.
    fn waiting(&self, _remote: &str, _limit: Duration) {}
    /// A transfer resumes after `held` bytes that could not be compared with the source:
    /// the server offers no hash to compare them with.
    fn unchecked_prefix(&self, _held: u64) {}
}

/// What the other side confirmed about a finished transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Its hash of the whole file matched ours.
    Verified(FileHash),
    /// The server offers no hash: nothing was checked.
    NoHash,
    /// The server has a hash command, but it failed on this file: nothing was checked.
    HashFailed,
}

impl Check {
    /// An rsftp server's verdict, which is always an MD5.
    pub fn md5(md5: Md5Digest) -> Check {
        Check::Verified(FileHash {
            kind: HashKind::Md5,
            hex: md5.to_string(),
        })
    }

    /// How the end of a transfer line reads: `verified md5 ...` or why not.
    pub fn describe(&self) -> String {
        match self {
            Check::Verified(hash) => format!("verified {hash}"),
            Check::NoHash => "not verified (server offers no hash)".to_owned(),
            Check::HashFailed => "not verified (the server could not hash it)".to_owned(),
        }
    }
}

/// How long an upload waits for the server to release a path that another upload holds.
/// The server notices a dead connection within a second or so; a live upload that holds
/// the path longer than this is someone else's, and the put fails.
pub const BUSY_WAIT: Duration = Duration::from_secs(10);

/// How often the server is asked again while an upload waits.
const BUSY_POLL: Duration = Duration::from_millis(200);

/// No progress reports.
pub struct Quiet;

impl Progress for Quiet {}

/// What a finished transfer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferReport {
    /// The file's size.
    pub size: u64,
    /// Bytes that were already there and did not travel.
    pub resumed_from: u64,
    /// Bytes that travelled.
    pub transferred: u64,
    /// The verified MD5 of the whole file.
    pub md5: Md5Digest,
    /// An earlier partial transfer was found but did not match, and was started over.
    pub restarted: bool,
    /// Nothing needed to travel: the destination already had this file.
    pub up_to_date: bool,
    /// What the other side confirmed.
    pub check: Check,
    /// The transfer resumed after bytes that could not be checked against the source.
    pub unchecked_prefix: bool,
}

/// The local partial file of a download of `dest`.
pub fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(OsString::from).unwrap_or_default();
    name.push(".part");
    dest.with_file_name(name)
}

fn local_error(path: &Path, source: std::io::Error) -> ClientError {
    ClientError::Local {
        path: path.to_owned(),
        source,
    }
}

/// Appends received bytes to the partial file and hashes them.
struct PartSink {
    file: File,
    hasher: Md5,
}

impl ChunkSink for PartSink {
    type Error = std::io::Error;
    fn write_chunk(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all(data)?;
        self.hasher.update(data);
        Ok(())
    }
}

/// Runs blocking local file work off the reactor.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ClientError> + Send + 'static,
) -> Result<T, ClientError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| ClientError::Protocol(format!("worker failed: {join}")))?
}

/// Downloads `remote` to `dest`, resuming from `dest.part` if one is there. Refuses to
/// replace an existing `dest` unless `force`.
pub async fn download<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RsftpClient<S>,
    remote: &str,
    dest: &Path,
    force: bool,
    progress: &dyn Progress,
) -> Result<TransferReport, ClientError> {
    if !force && dest.exists() {
        return Err(ClientError::LocalExists(dest.to_owned()));
    }
    let part = partial_path(dest);
    // What we hold already, and its MD5, read once; the hasher carries on from there.
    let held_path = part.clone();
    let (file, held, hasher) = blocking(move || {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&held_path)
            .map_err(|err| local_error(&held_path, err))?;
        let held = file
            .metadata()
            .map_err(|err| local_error(&held_path, err))?
            .len();
        let mut hasher = Md5::new();
        hash_range(&file, 0, held, &mut hasher).map_err(|err| local_error(&held_path, err))?;
        file.flush().map_err(|err| local_error(&held_path, err))?;
        Ok((file, held, hasher))
    })
    .await?;

    let mut restarted = false;
    let prefix = (held > 0).then(|| Md5Digest::from_hasher(hasher.clone()));
    let (file, hasher, offset, n, size) = match client.begin_get(remote, held, prefix).await {
        Ok((n, size)) => (file, hasher, held, n, size),
        Err(err)
            if held > 0
                && matches!(
                    err.code(),
                    Some(ErrorCode::Mismatch | ErrorCode::BadRequest)
                ) =>
        {
            // Our partial is not a prefix of this file (changed, or now shorter): start over.
            restarted = true;
            progress.restarting(held);
            file.set_len(0).map_err(|e| local_error(&part, e))?;
            let (n, size) = client.begin_get(remote, 0, None).await?;
            (file, Md5::new(), 0, n, size)
        }
        Err(err) => {
            if held == 0 {
                let _ = std::fs::remove_file(&part);
            }
            return Err(err);
        }
    };

    progress.begin(size, offset);
    let sink = PartSink { file, hasher };
    let (sink, written) = client
        .receive_into(n, sink, |bytes| progress.advance(bytes))
        .await?;
    let server_md5 = client.end_get().await?;
    written.map_err(|err| local_error(&part, err))?;
    let ours = Md5Digest::from_hasher(sink.hasher);
    if ours != server_md5 {
        let _ = std::fs::remove_file(&part);
        return Err(ClientError::Checksum {
            path: remote.to_owned(),
            expected: server_md5,
            actual: ours,
        });
    }
    let file = sink.file;
    let final_path = dest.to_owned();
    blocking(move || {
        file.sync_all().map_err(|err| local_error(&part, err))?;
        std::fs::rename(&part, &final_path).map_err(|err| local_error(&final_path, err))
    })
    .await?;
    Ok(TransferReport {
        size,
        resumed_from: offset,
        transferred: n,
        md5: ours,
        restarted,
        up_to_date: false,
        check: Check::md5(ours),
        unchecked_prefix: false,
    })
}

/// Uploads `local` to `remote`, resuming what the server already holds of it.
pub async fn upload<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RsftpClient<S>,
    local: &Path,
    remote: &str,
    progress: &dyn Progress,
) -> Result<TransferReport, ClientError> {
    let path = local.to_owned();
    let file = blocking(move || File::open(&path).map_err(|err| local_error(&path, err))).await?;
    let size = file
        .metadata()
        .map_err(|err| local_error(local, err))?
        .len();

    // Only when the server has a file of the same size is it worth hashing ours first,
    // to learn whether it is the same file; otherwise hash while sending.
    let same_size = matches!(client.stat(remote).await, Ok(entry) if entry.size == size);
    let known_md5 = if same_size {
        let (file, path) = (
            file.try_clone().map_err(|e| local_error(local, e))?,
            local.to_owned(),
        );
        Some(
            blocking(move || {
                let mut hasher = Md5::new();
                hash_range(&file, 0, size, &mut hasher).map_err(|err| local_error(&path, err))?;
                Ok(Md5Digest::from_hasher(hasher))
            })
            .await?,
        )
    } else {
        None
    };

    let start = begin_put_when_free(client, remote, size, known_md5, progress).await?;
    let (offset, server_prefix) = match start {
        PutStart::UpToDate => {
            progress.begin(size, size);
            return Ok(TransferReport {
                size,
                resumed_from: size,
                transferred: 0,
                // Only answered when we sent it.
                md5: known_md5.unwrap_or_else(Md5Digest::empty),
                restarted: false,
                up_to_date: true,
                check: Check::md5(known_md5.unwrap_or_else(Md5Digest::empty)),
                unchecked_prefix: false,
            });
        }
        PutStart::Have { offset, prefix_md5 } => (offset, prefix_md5),
    };

    // Compare the prefix the server holds with ours before going on from it.
    let (hasher, start, restarted) = if offset > 0 && offset <= size {
        let (file, path) = (
            file.try_clone().map_err(|e| local_error(local, e))?,
            local.to_owned(),
        );
        let hasher = blocking(move || {
            let mut hasher = Md5::new();
            hash_range(&file, 0, offset, &mut hasher).map_err(|err| local_error(&path, err))?;
            Ok(hasher)
        })
        .await?;
        if Md5Digest::from_hasher(hasher.clone()) == server_prefix {
            (hasher, offset, false)
        } else {
            progress.restarting(offset);
            (Md5::new(), 0, true)
        }
    } else {
        if offset > 0 {
            progress.restarting(offset);
        }
        (Md5::new(), 0, offset > 0)
    };

    progress.begin(size, start);
    let hasher = client
        .send_from(start, file, size - start, hasher, |bytes| {
            progress.advance(bytes)
        })
        .await?;
    let ours = Md5Digest::from_hasher(hasher);
    let done = if known_md5.is_some() {
        None
    } else {
        Some(ours)
    };
    let verified = client.end_put(done).await?;
    if verified != ours {
        return Err(ClientError::Checksum {
            path: remote.to_owned(),
            expected: ours,
            actual: verified,
        });
    }
    Ok(TransferReport {
        size,
        resumed_from: start,
        transferred: size - start,
        md5: ours,
        restarted,
        up_to_date: false,
        check: Check::md5(ours),
        unchecked_prefix: false,
    })
}

/// Starts an upload, waiting up to [`BUSY_WAIT`] (and saying so, once) while the server
/// answers that another upload of the same path is in progress.
async fn begin_put_when_free<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RsftpClient<S>,
    remote: &str,
    size: u64,
    md5: Option<Md5Digest>,
    progress: &dyn Progress,
) -> Result<PutStart, ClientError> {
    let deadline = tokio::time::Instant::now() + BUSY_WAIT;
    let mut told = false;
    // Bounded by the deadline: at most BUSY_WAIT / BUSY_POLL tries.
    loop {
        match client.begin_put(remote, size, md5).await {
            Err(err)
                if err.code() == Some(&ErrorCode::Busy)
                    && tokio::time::Instant::now() + BUSY_POLL <= deadline =>
            {
                if !told {
                    progress.waiting(remote, BUSY_WAIT);
                    told = true;
                }
                tokio::time::sleep(BUSY_POLL).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked when the tests build: a transfer can run in a task of its own.
    #[allow(dead_code)]
    fn transfers_can_be_spawned(mut client: RsftpClient<tokio::net::TcpStream>) {
        tokio::spawn(async move {
            upload(&mut client, Path::new("f"), "f", &Quiet).await?;
            download(&mut client, "f", Path::new("f"), false, &Quiet).await
        });
    }
}
