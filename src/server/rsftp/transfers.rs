//! The data requests of an rsftp session: `write`, `get` and `put`. Their bytes move
//! through `storage::stream` in chunks, each counting as activity, within the session's
//! stall limit.

use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Done, Failure, Line, Session, ok};
use crate::protocol::{
    ErrorCode, GetAnswer, GetDone, MAX_WRITE, Md5Digest, PutAnswer, PutDone, Request,
};
use crate::server::budget::{self, Kind};
use crate::server::op;
use crate::server::replies::rsftp_code;
use crate::storage::stream::{self, ChunkSink};
use crate::storage::{OpenFile, StorageError, Upload, UploadStart};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn write(
        &mut self,
        path: &str,
        offset: u64,
        len: u64,
    ) -> Result<Done, Failure> {
        if len > MAX_WRITE {
            return Err(Failure::Close(
                ErrorCode::TooLarge,
                format!("write of {len} bytes is over the {MAX_WRITE}-byte limit"),
            ));
        }
        if offset
            .checked_add(len)
            .is_none_or(|end| end > crate::protocol::MAX_NUMBER)
        {
            stream::discard(&mut self.conn.reader, len).await?;
            return Err(Failure::Reply(
                ErrorCode::BadRequest,
                "offset too large".into(),
            ));
        }
        let opened = match self.resolve(path) {
            Ok(path) => {
                let target = path.clone();
                // Refused up front if it cannot fit, rather than half written (and
                // before the file is created).
                self.blocking(move |home| home.open_for_write(&target, offset, len))
                    .await
                    .map(|file| (path, file))
            }
            Err(failure) => Err(failure),
        };
        let (path, file) = match opened {
            Ok(opened) => opened,
            Err(failure) => {
                stream::discard(&mut self.conn.reader, len).await?;
                return Err(failure);
            }
        };
        let sink = WriteAt { file, offset };
        let (_, result) = self
            .conn
            .receive(&self.account, len, sink, &mut 0)
            .await
            .map_err(|err| stalled(err, "write", None))?;
        result?;
        self.conn.send(&format!("OK {len}\n")).await?;
        Ok(Done::transfer(path, len))
    }

    pub(super) async fn get(
        &mut self,
        path: &str,
        offset: u64,
        prefix_md5: Option<Md5Digest>,
    ) -> Result<Done, Failure> {
        let path = self.resolve(path)?;
        let target = path.clone();
        let (file, size, hasher) = self
            .blocking(move |home| {
                let (file, entry) = home.open_read(&target)?;
                let mut hasher = Md5::new();
                if offset <= entry.size {
                    // The whole-file MD5 needs the prefix too; read it once, here.
                    stream::hash_range(&file, 0, offset, &mut hasher)
                        .map_err(|err| StorageError::from_io(&target, err))?;
                }
                Ok((file, entry.size, hasher))
            })
            .await?;
        if offset > size {
            return Err(Failure::Reply(
                ErrorCode::BadRequest,
                format!("offset {offset} is past the end of {path} ({size} bytes)"),
            ));
        }
        if let Some(claimed) = prefix_md5 {
            let held = Md5Digest::from_hasher(hasher.clone());
            if held != claimed {
                return Err(Failure::Reply(
                    ErrorCode::Mismatch,
                    format!("the first {offset} bytes of {path} differ from yours; start from 0"),
                ));
            }
        }
        let n = size - offset;
        self.conn
            .send(&ok(GetAnswer { len: n, size }.encode()))
            .await?;
        let _memory = self
            .account
            .charge(Kind::InFlight, budget::DOWNLOAD_PIPELINE);
        let hasher = self.conn.send_file(file, offset, n, Some(hasher)).await?;
        let digest = hasher
            .map(Md5Digest::from_hasher)
            .unwrap_or_else(Md5Digest::empty);
        self.conn
            .send(&ok(GetDone { md5: digest }.encode()))
            .await?;
        Ok(Done::transfer(path, n))
    }

    pub(super) async fn put(
        &mut self,
        path: &str,
        size: u64,
        md5: Option<Md5Digest>,
    ) -> Result<Done, Failure> {
        let path = self.resolve(path)?;
        let target = path.clone();
        let start = self
            .blocking(move |home| home.begin_upload(&target, size, md5))
            .await?;
        let mut upload = match start {
            UploadStart::UpToDate => {
                self.conn.send(&ok(PutAnswer::UpToDate.encode())).await?;
                return Ok(Done::path(path));
            }
            UploadStart::Ready(upload) => upload,
        };
        self.conn
            .send(&ok(PutAnswer::Have {
                offset: upload.held(),
                prefix_md5: upload.prefix_md5(),
            }
            .encode()))
            .await?;
        self.conn.flush().await?;

        let lost = |what: &str| {
            Failure::Close(
                ErrorCode::BadRequest,
                format!("expected {what} inside put; closing"),
            )
        };
        let start = match self.conn.read_line().await? {
            Line::Text => match Request::parse(&self.conn.line) {
                Ok(Request::From(start)) => start,
                _ => return Err(lost("`from <offset>`")),
            },
            Line::TooLong => return Err(lost("`from <offset>`")),
            Line::Eof => return Err(Failure::Io(std::io::ErrorKind::UnexpectedEof.into())),
        };
        let (upload_back, started) = tokio::task::spawn_blocking(move || {
            let result = upload.start_from(start);
            (upload, result)
        })
        .await
        .map_err(|join| Failure::Io(std::io::Error::other(join)))?;
        upload = upload_back;
        if let Err(err) = started {
            let refusal = op::classify(&err);
            return Err(Failure::Close(rsftp_code(refusal.fault), refusal.message));
        }

        let n = size - start;
        let mut received = 0;
        let (upload, written) = self
            .conn
            .receive(&self.account, n, upload, &mut received)
            .await
            .map_err(|err| stalled(err, "put", Some(start + received)))?;
        let expected = match md5 {
            Some(md5) => md5,
            None => match self.conn.read_line().await? {
                Line::Text => match Request::parse(&self.conn.line) {
                    Ok(Request::Done(md5)) => md5,
                    _ => return Err(lost("`done <md5>` after the data")),
                },
                Line::TooLong => return Err(lost("`done <md5>` after the data")),
                Line::Eof => return Err(Failure::Io(std::io::ErrorKind::UnexpectedEof.into())),
            },
        };
        written?;
        let digest = tokio::task::spawn_blocking(move || upload.finish(expected))
            .await
            .map_err(|join| Failure::Io(std::io::Error::other(join)))??;
        self.conn
            .send(&ok(PutDone { md5: digest, size }.encode()))
            .await?;
        Ok(Done::transfer(path, n))
    }
}

/// A data stream that broke: a stall is answered (the bytes the client may still send
/// cannot be told from requests, so the channel closes after it); anything else means
/// the channel itself is gone. A stalled `put` keeps its partial, from `held` bytes.
fn stalled(err: std::io::Error, op: &str, held: Option<u64>) -> Failure {
    if err.kind() != std::io::ErrorKind::TimedOut {
        return Failure::Io(err);
    }
    let resume = held.map_or(String::new(), |held| {
        format!("; the upload can resume from {held} bytes")
    });
    Failure::Close(
        ErrorCode::Timeout,
        format!("{err} inside {op}; closing{resume}"),
    )
}

impl ChunkSink for Upload {
    type Error = StorageError;
    fn write_chunk(&mut self, data: &[u8]) -> Result<(), StorageError> {
        self.write(data)
    }
}

/// In-place writes at increasing offsets, for `write`.
pub struct WriteAt {
    pub file: OpenFile,
    pub offset: u64,
}

impl ChunkSink for WriteAt {
    type Error = StorageError;
    fn write_chunk(&mut self, data: &[u8]) -> Result<(), StorageError> {
        self.file.write_at(self.offset, data)?;
        self.offset += data.len() as u64;
        Ok(())
    }
}
