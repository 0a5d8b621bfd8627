//! Whole-file transfers over plain SFTP, with resume by size (as `reget` and `reput`
//! do) and with checks only where the server can make them.
//!
//! - A download goes to `<name>.part` and resumes from its size; an upload writes in
//!   place (that is SFTP) and resumes from the remote file's size.
//! - Before resuming, the shared prefix is compared: our hash of it with the server's
//!   (`head -c N | md5sum` over exec; for an upload the remote file is the prefix, so
//!   plain `md5sum` does). A prefix that differs starts the file over. Where the server
//!   cannot hash, the resume goes on and the caller is told that nothing was checked.
//! - After the transfer the server hashes the whole file and it must match ours (made
//!   in the same pass as the data). Where it cannot, the report says so: never a
//!   `verified` without a check.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use md5::Digest;

use super::exec_hash::{self, FileHash, Hashers};
use super::sftp_session::SftpSession;
use super::transfer::{Check, Progress, TransferReport, partial_path};
use super::{ClientError, Connection};
use crate::protocol::{EntryType, ErrorCode, Md5Digest};

fn local_error(path: &Path, source: std::io::Error) -> ClientError {
    ClientError::Local {
        path: path.to_owned(),
        source,
    }
}

/// What the server says of the prefix we hold.
enum Prefix {
    Same,
    Differs,
    Unchecked,
}

/// Compares our hash of the first `len` bytes with the server's.
async fn compare_prefix(
    session: &mut SftpSession,
    conn: &Connection,
    path: &str,
    len: u64,
    remote_size: u64,
    ours: &Hashers,
) -> Result<Prefix, ClientError> {
    let Some(kind) = session.hash_kind() else {
        return Ok(Prefix::Unchecked);
    };
    let theirs = if len == remote_size {
        session.hash_resolved(conn, kind, path).await?
    } else {
        exec_hash::prefix(conn, kind, path, len).await?
    };
    Ok(match theirs {
        Some(theirs) if theirs == ours.hash(kind) => Prefix::Same,
        Some(_) => Prefix::Differs,
        None => Prefix::Unchecked,
    })
}

/// The server's verdict on the whole file.
async fn verify(
    session: &mut SftpSession,
    conn: &Connection,
    path: &str,
    ours: &Hashers,
) -> Result<Check, ClientError> {
    let Some(kind) = session.hash_kind() else {
        return Ok(Check::NoHash);
    };
    let ours = ours.hash(kind);
    match session.hash_resolved(conn, kind, path).await? {
        Some(theirs) if theirs == ours => Ok(Check::Verified(ours)),
        Some(theirs) => Err(ClientError::HashMismatch {
            path: path.to_owned(),
            server: theirs,
            ours,
        }),
        None => Ok(Check::HashFailed),
    }
}

fn md5_of(hashers: &Hashers) -> Md5Digest {
    Md5Digest(hashers.md5.clone().finalize().into())
}

/// Downloads `remote` to `dest` through `dest.part`, resuming from what that holds.
pub async fn download(
    session: &mut SftpSession,
    conn: &Connection,
    remote: &str,
    dest: &Path,
    force: bool,
    progress: &dyn Progress,
) -> Result<TransferReport, ClientError> {
    if !force && dest.exists() {
        return Err(ClientError::LocalExists(dest.to_owned()));
    }
    let path = session.resolve(remote);
    let entry = session.stat(&path).await?;
    if entry.kind == EntryType::Dir {
        return Err(ClientError::Remote {
            code: ErrorCode::IsADirectory,
            message: format!("is a directory: {path}"),
        });
    }
    let size = entry.size;
    let part = partial_path(dest);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&part)
        .map_err(|e| local_error(&part, e))?;
    let held = file.metadata().map_err(|e| local_error(&part, e))?.len();
    let mut hashers = Hashers::new(session.hash_kind());
    if held > 0 && held <= size {
        file.seek(SeekFrom::Start(0))
            .map_err(|e| local_error(&part, e))?;
        hashers
            .read_from(&mut file, held)
            .map_err(|e| local_error(&part, e))?;
    }
    let mut offset = held;
    let mut restarted = false;
    let prefix = if held == 0 {
        Prefix::Same
    } else if held > size {
        Prefix::Differs
    } else {
        compare_prefix(session, conn, &path, held, size, &hashers).await?
    };
    match prefix {
        Prefix::Same => {}
        Prefix::Unchecked => progress.unchecked_prefix(held),
        Prefix::Differs => {
            restarted = true;
            progress.restarting(held);
            file.set_len(0).map_err(|e| local_error(&part, e))?;
            hashers = Hashers::new(session.hash_kind());
            offset = 0;
        }
    }

    progress.begin(size, offset);
    let mut failed_write = None;
    let got = session
        .client
        .download(&path, offset, |chunk| {
            if let Err(err) = file.write_all(chunk) {
                failed_write.get_or_insert_with(|| err.kind());
                return Err(err);
            }
            hashers.update(chunk);
            progress.advance(chunk.len() as u64);
            Ok(())
        })
        .await;
    let got = match (got, failed_write) {
        (Err(ClientError::Io(err)), Some(_)) => return Err(local_error(&part, err)),
        (result, _) => result?,
    };
    file.sync_all().map_err(|e| local_error(&part, e))?;
    let total = offset + got;
    let check = match verify(session, conn, &path, &hashers).await {
        Ok(check) => check,
        Err(err) => {
            let _ = std::fs::remove_file(&part);
            return Err(err);
        }
    };
    std::fs::rename(&part, dest).map_err(|e| local_error(dest, e))?;
    Ok(TransferReport {
        size: total,
        resumed_from: offset,
        transferred: got,
        md5: md5_of(&hashers),
        restarted,
        up_to_date: false,
        check,
        unchecked_prefix: matches!(prefix, Prefix::Unchecked),
    })
}

/// Uploads `local` to `remote`, resuming from the size of what is there.
pub async fn upload(
    session: &mut SftpSession,
    conn: &Connection,
    local: &Path,
    remote: &str,
    progress: &dyn Progress,
) -> Result<TransferReport, ClientError> {
    let mut file = File::open(local).map_err(|e| local_error(local, e))?;
    let size = file.metadata().map_err(|e| local_error(local, e))?.len();
    let path = session.resolve(remote);
    let held = match session.stat(&path).await {
        Ok(entry) if entry.kind == EntryType::Dir => {
            return Err(ClientError::Remote {
                code: ErrorCode::IsADirectory,
                message: format!("is a directory: {path}"),
            });
        }
        Ok(entry) => Some(entry.size),
        Err(err) if err.code() == Some(&ErrorCode::NotFound) => None,
        Err(err) => return Err(err),
    };
    let kind = session.hash_kind();
    let mut hashers = Hashers::new(kind);
    let (mut start, mut restarted, mut unchecked) = (0, false, false);
    match held {
        // The same size: the same file, if the server can say so.
        Some(held) if held == size && kind.is_some() => {
            hashers
                .read_from(&mut file, size)
                .map_err(|e| local_error(local, e))?;
            if let Prefix::Same = compare_prefix(session, conn, &path, size, held, &hashers).await?
            {
                progress.begin(size, size);
                return Ok(TransferReport {
                    size,
                    resumed_from: size,
                    transferred: 0,
                    md5: md5_of(&hashers),
                    restarted: false,
                    up_to_date: true,
                    check: kind.map_or(Check::NoHash, |k| Check::Verified(hashers.hash(k))),
                    unchecked_prefix: false,
                });
            }
            hashers = Hashers::new(kind);
            file.seek(SeekFrom::Start(0))
                .map_err(|e| local_error(local, e))?;
        }
        // Part of it, as an interrupted upload leaves it: resume once the prefix matches.
        Some(held) if held > 0 && held < size => {
            hashers
                .read_from(&mut file, held)
                .map_err(|e| local_error(local, e))?;
            match compare_prefix(session, conn, &path, held, held, &hashers).await? {
                Prefix::Same => start = held,
                Prefix::Unchecked => {
                    progress.unchecked_prefix(held);
                    (start, unchecked) = (held, true);
                }
                Prefix::Differs => {
                    progress.restarting(held);
                    restarted = true;
                    hashers = Hashers::new(kind);
                    file.seek(SeekFrom::Start(0))
                        .map_err(|e| local_error(local, e))?;
                }
            }
        }
        _ => {}
    }

    progress.begin(size, start);
    let mut left = size - start;
    let mut failed_read = None;
    let sent = session
        .client
        .upload(&path, start, |buf| {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            if want == 0 {
                return Ok(0);
            }
            let n = match file.read(&mut buf[..want]) {
                Ok(0) => {
                    let err = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
                    failed_read.get_or_insert_with(|| err.kind());
                    return Err(err);
                }
                Ok(n) => n,
                Err(err) => {
                    failed_read.get_or_insert_with(|| err.kind());
                    return Err(err);
                }
            };
            hashers.update(&buf[..n]);
            left -= n as u64;
            progress.advance(n as u64);
            Ok(n)
        })
        .await;
    let sent = match (sent, failed_read) {
        (Err(ClientError::Io(err)), Some(_)) => return Err(local_error(local, err)),
        (result, _) => result?,
    };
    let check = verify(session, conn, &path, &hashers).await?;
    Ok(TransferReport {
        size,
        resumed_from: start,
        transferred: sent,
        md5: md5_of(&hashers),
        restarted,
        up_to_date: false,
        check,
        unchecked_prefix: unchecked,
    })
}

/// A report's hash in the kind the server offers, for the caller's own comparisons.
pub fn local_hash(path: &Path, kind: exec_hash::HashKind) -> Result<FileHash, ClientError> {
    let mut file = File::open(path).map_err(|e| local_error(path, e))?;
    let size = file.metadata().map_err(|e| local_error(path, e))?.len();
    let mut hashers = Hashers::new(Some(kind));
    hashers
        .read_from(&mut file, size)
        .map_err(|e| local_error(path, e))?;
    Ok(hashers.hash(kind))
}
