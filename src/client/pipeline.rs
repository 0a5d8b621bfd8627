//! Uploads of many small files over one rsftp session without a round trip per file.
//!
//! Sent one by one, a small file costs three round trips (`stat`, `put`, the verdict)
//! for a few bytes of data. A batch of small files instead takes two, whatever its
//! length, because rsftp/1 answers pipelined requests in order:
//!
//! 1. `md5 <path>` of every file, back to back, then the answers: a file the server has
//!    already, with the same size and MD5, is up to date and is not sent;
//! 2. `put <path> <size> -`, `from 0`, the bytes and `done <md5>` of every other file,
//!    back to back, then the answers: `have`, then the server's MD5 of what it published,
//!    compared with ours, so every file is still verified.
//!
//! Each file is read once, into memory, and hashed there; that is why only files of up
//! to [`SMALL_FILE`] bytes go this way. A put the server refuses (quota, a bad name, a
//! busy path) is answered with its error; the server then meets our `from` line out of
//! place and, as data follows it, closes the channel (see docs/PROTOCOL.md). It has
//! touched none of the files after the refused one, so the caller opens a new session
//! and sends them again: [`Batch::outcomes`] says which files have an answer.

use std::io::Read;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncWrite};

use super::ClientError;
use super::rsftp::RsftpClient;
use super::transfer::{Check, TransferReport};
use crate::protocol::{Md5Answer, Md5Digest, PutAnswer, PutDone, Request};

/// The largest file that goes in a batch: read into memory whole.
pub const SMALL_FILE: u64 = 64 * 1024;
/// The most files in one batch. Every answer of a batch waits for its last request, so
/// a bound keeps the first answers (and the progress shown) coming.
pub const BATCH_FILES: usize = 64;
/// The most bytes in one batch: well inside the SSH window, so the requests of a batch
/// go out without waiting for the server to read them.
pub const BATCH_BYTES: u64 = 1 << 20;

/// A small file, read and hashed, ready to go in a batch.
pub struct SmallFile {
    pub remote: String,
    pub data: Vec<u8>,
    pub md5: Md5Digest,
}

/// Reads local files of at most [`SMALL_FILE`] bytes into memory and hashes them, on
/// one blocking thread. `None` for a file that has grown past that since it was planned:
/// it is sent the ordinary way.
pub async fn read_small(
    paths: Vec<PathBuf>,
) -> Result<Vec<Result<Option<(Vec<u8>, Md5Digest)>, ClientError>>, ClientError> {
    tokio::task::spawn_blocking(move || paths.iter().map(|path| read_one(path)).collect())
        .await
        .map_err(|join| ClientError::Protocol(format!("worker failed: {join}")))
}

fn read_one(path: &Path) -> Result<Option<(Vec<u8>, Md5Digest)>, ClientError> {
    let local_error = |source| ClientError::Local {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(local_error)?;
    let mut data = Vec::new();
    file.take(SMALL_FILE + 1)
        .read_to_end(&mut data)
        .map_err(local_error)?;
    if data.len() as u64 > SMALL_FILE {
        return Ok(None);
    }
    let mut hasher = Md5::new();
    hasher.update(&data);
    Ok(Some((data, Md5Digest::from_hasher(hasher))))
}

/// What became of a batch.
pub struct Batch {
    /// One per file, in order: its result, or `None` if the session ended before the
    /// server answered for it (it was not touched; send it again on a new session).
    pub outcomes: Vec<Option<Result<TransferReport, ClientError>>>,
    /// Why the session can take no more requests, if it cannot: a refused put closes it,
    /// and so does a broken connection.
    pub closed: Option<ClientError>,
}

/// Uploads `files` with two round trips in all; see the module docs.
pub async fn put_batch<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RsftpClient<S>,
    files: &[SmallFile],
) -> Batch {
    let mut batch = Batch {
        outcomes: files.iter().map(|_| None).collect(),
        closed: None,
    };
    let up_to_date = match ask_md5s(client, files).await {
        Ok(up_to_date) => up_to_date,
        Err(err) => {
            batch.closed = Some(err);
            return batch;
        }
    };
    for (i, file) in files.iter().enumerate() {
        if up_to_date[i] {
            batch.outcomes[i] = Some(Ok(report(file, true, false)));
        }
    }

    // All puts go out before any answer is read. If the server closes the channel on a
    // refusal while we are still writing, the writes fail: the answers to what went out
    // before are waiting to be read all the same.
    let mut sent = Vec::new();
    for (i, file) in files.iter().enumerate() {
        if up_to_date[i] {
            continue;
        }
        if let Err(err) = queue_put(client, file).await {
            batch.closed = Some(err);
            break;
        }
        sent.push(i);
    }
    if batch.closed.is_none()
        && let Err(err) = client.flush().await
    {
        batch.closed = Some(err);
    }

    for i in sent {
        let file = &files[i];
        match read_put_answers(client, file).await {
            Answer::Done(result) => batch.outcomes[i] = Some(result),
            Answer::Refused(err) => {
                batch.outcomes[i] = Some(Err(err));
                // The server answers our `from` line, which it met out of place, and
                // closes the channel; what it says then adds nothing. Read to the end,
                // so that the channel is closed before a new one is asked for.
                for _ in 0..2 {
                    if client.status().await.is_err_and(|e| e.code().is_none()) {
                        break;
                    }
                }
                batch.closed = Some(ClientError::Protocol(
                    "the server closed the session after a refused upload".into(),
                ));
                break;
            }
            Answer::Lost(err) => {
                batch.closed = Some(err);
                break;
            }
        }
    }
    batch
}

/// Round one: the server's MD5 of each file, all asked at once. `true` where the server
/// has exactly our bytes.
async fn ask_md5s<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RsftpClient<S>,
    files: &[SmallFile],
) -> Result<Vec<bool>, ClientError> {
    for file in files {
        let request = Request::Md5 {
            path: file.remote.clone(),
            range: None,
        };
        client.queue(&request, &[]).await?;
    }
    client.flush().await?;
    let mut same = Vec::with_capacity(files.len());
    for file in files {
        match client.status().await {
            Ok(words) => {
                let answer = Md5Answer::from_words(&words)
                    .map_err(|err| ClientError::Protocol(format!("unexpected reply: {err}")))?;
                same.push(answer.len == file.data.len() as u64 && answer.digest == file.md5);
            }
            // Not there, a directory, a bad name: the put says what it is.
            Err(ClientError::Remote { .. }) => same.push(false),
            Err(err) => return Err(err),
        }
    }
    Ok(same)
}

/// `put <path> <size> -`, `from 0`, the data and `done <md5>`, queued. The MD5 goes in
/// `done`, not on the put line, so the server never answers `uptodate`, which would
/// leave our `from` line out of place.
async fn queue_put<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RsftpClient<S>,
    file: &SmallFile,
) -> Result<(), ClientError> {
    let put = Request::Put {
        path: file.remote.clone(),
        size: file.data.len() as u64,
        md5: None,
    };
    client.queue(&put, &[]).await?;
    client.queue(&Request::From(0), &file.data).await?;
    client.queue(&Request::Done(file.md5), &[]).await
}

/// How the server answered one put of a batch.
enum Answer {
    /// It took the data: published and verified, or refused after the data (a checksum
    /// that does not match), with the session still in step.
    Done(Result<TransferReport, ClientError>),
    /// It refused the put before the data; the session is about to close.
    Refused(ClientError),
    /// The session ended before a full answer: nothing is known of this file.
    Lost(ClientError),
}

async fn read_put_answers<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut RsftpClient<S>,
    file: &SmallFile,
) -> Answer {
    let held = match client.status().await {
        Ok(words) => match PutAnswer::from_words(&words) {
            Ok(PutAnswer::Have { offset, .. }) => offset,
            // Not asked for (the put line said `-`), and our `from` is now out of place.
            Ok(PutAnswer::UpToDate) => {
                return Answer::Refused(ClientError::Protocol(
                    "the server answered `uptodate` to a put without an MD5".into(),
                ));
            }
            Err(err) => return Answer::Lost(ClientError::Protocol(format!("bad reply: {err}"))),
        },
        Err(err @ ClientError::Remote { .. }) => return Answer::Refused(err),
        Err(err) => return Answer::Lost(err),
    };
    match client.status().await {
        Ok(words) => match PutDone::from_words(&words) {
            Ok(done) if done.md5 == file.md5 => Answer::Done(Ok(report(file, false, held > 0))),
            Ok(done) => Answer::Done(Err(ClientError::Checksum {
                path: file.remote.clone(),
                expected: file.md5,
                actual: done.md5,
            })),
            Err(err) => Answer::Lost(ClientError::Protocol(format!("bad reply: {err}"))),
        },
        // A refusal after the data (`checksum`) leaves the session in step; one that
        // closes it shows as the end of the stream at the next file's answer.
        Err(err @ ClientError::Remote { .. }) => Answer::Done(Err(err)),
        Err(err) => Answer::Lost(err),
    }
}

/// The report of a file that is there, verified by the server's MD5 matching ours.
fn report(file: &SmallFile, up_to_date: bool, restarted: bool) -> TransferReport {
    let size = file.data.len() as u64;
    TransferReport {
        size,
        resumed_from: if up_to_date { size } else { 0 },
        transferred: if up_to_date { 0 } else { size },
        md5: file.md5,
        // The server held part of an earlier upload of this path; it went again whole.
        restarted,
        up_to_date,
        check: Check::md5(file.md5),
        unchecked_prefix: false,
    }
}
