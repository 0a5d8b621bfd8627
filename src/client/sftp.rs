//! An SFTP v3 client over one channel, for servers that have no `rsftp` subsystem
//! (OpenSSH, and anything else that speaks SFTP). It uses the server's own codec
//! ([`crate::protocol::sftp`]) the other way round.
//!
//! Transfers are pipelined: up to [`IN_FLIGHT`] READ or WRITE requests are outstanding
//! at once, so a transfer is not one round trip per chunk. Replies may come in any
//! order; data is handed on in file order, and a short read is asked for again.

use std::collections::{BTreeMap, HashMap};

use tokio::io::{
    AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter, ReadHalf, WriteHalf,
};

use super::ClientError;
use crate::protocol::ErrorCode;
use crate::protocol::sftp::{
    Attrs, Incoming, MAX_PACKET, Name, Payload, Reply, Request, StatusCode, VERSION, pflags,
};

/// Bytes asked for by one READ and sent by one WRITE: what every server takes.
pub const CHUNK: u32 = 32 * 1024;
/// Requests outstanding at once during a transfer.
pub const IN_FLIGHT: usize = 64;

/// A session of the `sftp` subsystem.
pub struct SftpClient<S> {
    reader: BufReader<ReadHalf<S>>,
    writer: BufWriter<WriteHalf<S>>,
    next_id: u32,
    extensions: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SftpClient<S> {
    /// Sends INIT and reads the server's VERSION.
    pub async fn start(stream: S) -> Result<SftpClient<S>, ClientError> {
        let (read, write) = tokio::io::split(stream);
        let mut client = SftpClient {
            reader: BufReader::with_capacity(MAX_PACKET, read),
            writer: BufWriter::with_capacity(MAX_PACKET, write),
            next_id: 1,
            extensions: Vec::new(),
        };
        client
            .writer
            .write_all(&Incoming::Init { version: VERSION }.encode())
            .await?;
        client.writer.flush().await?;
        match client.receive().await? {
            Reply::Version {
                version,
                extensions,
            } if version >= VERSION => {
                client.extensions = extensions;
                Ok(client)
            }
            Reply::Version { version, .. } => Err(ClientError::Protocol(format!(
                "the server speaks SFTP version {version}; version {VERSION} is needed"
            ))),
            other => Err(ClientError::Protocol(format!(
                "expected the server's SFTP version, got {other:?}"
            ))),
        }
    }

    /// Whether the server announced the extension `name` (such as
    /// `posix-rename@openssh.com`).
    pub fn has_extension(&self, name: &str) -> bool {
        self.extensions.iter().any(|(n, _)| n == name.as_bytes())
    }

    /// The canonical absolute form of `path`.
    pub async fn realpath(&mut self, path: &str) -> Result<String, ClientError> {
        let request = Request::Realpath { path: path.into() };
        match self.call(&request, path).await? {
            Reply::Name { mut names, .. } if names.len() == 1 => {
                let name = names.remove(0);
                Ok(String::from_utf8_lossy(&name.filename).into_owned())
            }
            other => Err(unexpected("realpath", &other)),
        }
    }

    /// The attributes of `path`, following a link.
    pub async fn stat(&mut self, path: &str) -> Result<Attrs, ClientError> {
        match self
            .call(&Request::Stat { path: path.into() }, path)
            .await?
        {
            Reply::Attrs { attrs, .. } => Ok(attrs),
            other => Err(unexpected("stat", &other)),
        }
    }

    /// Sets the access and modification times of `path` (Unix seconds).
    pub async fn set_times(
        &mut self,
        path: &str,
        atime: u32,
        mtime: u32,
    ) -> Result<(), ClientError> {
        let request = Request::Setstat {
            path: path.into(),
            attrs: Attrs {
                times: Some((atime, mtime)),
                ..Attrs::default()
            },
        };
        self.call_ok(&request, path).await
    }

    pub async fn mkdir(&mut self, path: &str) -> Result<(), ClientError> {
        let request = Request::Mkdir {
            path: path.into(),
            attrs: Attrs::default(),
        };
        self.call_ok(&request, path).await
    }

    pub async fn rmdir(&mut self, path: &str) -> Result<(), ClientError> {
        self.call_ok(&Request::Rmdir { path: path.into() }, path)
            .await
    }

    pub async fn remove(&mut self, path: &str) -> Result<(), ClientError> {
        self.call_ok(&Request::Remove { path: path.into() }, path)
            .await
    }

    /// Renames `from` to `to`, replacing a file at `to` where the server can
    /// (`posix-rename@openssh.com`), as `mv` does; plain SFTP v3 rename otherwise.
    pub async fn rename(&mut self, from: &str, to: &str) -> Result<(), ClientError> {
        let (from_bytes, to_bytes) = (from.into(), to.into());
        let request = if self.has_extension("posix-rename@openssh.com") {
            Request::PosixRename {
                from: from_bytes,
                to: to_bytes,
            }
        } else {
            Request::Rename {
                from: from_bytes,
                to: to_bytes,
            }
        };
        self.call_ok(&request, from).await
    }

    /// Every entry of the folder `path`, `.` and `..` left out, in the server's order.
    pub async fn list(&mut self, path: &str) -> Result<Vec<Name>, ClientError> {
        let handle = self
            .open_handle(&Request::Opendir { path: path.into() }, path)
            .await?;
        let mut entries = Vec::new();
        let listed = loop {
            let request = Request::Readdir {
                handle: handle.clone(),
            };
            match self.call(&request, path).await {
                Ok(Reply::Name { names, .. }) => entries.extend(
                    names
                        .into_iter()
                        .filter(|n| n.filename != b"." && n.filename != b".."),
                ),
                Err(ClientError::Remote { code, .. }) if code == eof() => break Ok(()),
                Ok(other) => break Err(unexpected("readdir", &other)),
                Err(err) => break Err(err),
            }
        };
        let closed = self.close(handle, path).await;
        listed.and(closed).map(|()| entries)
    }

    /// Reads `path` from `offset` to its end, handing the bytes to `sink` in file order.
    /// Returns how many bytes were read.
    pub async fn download(
        &mut self,
        path: &str,
        offset: u64,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, ClientError> {
        let open = Request::Open {
            path: path.into(),
            pflags: pflags::READ,
            attrs: Attrs::default(),
        };
        let handle = self.open_handle(&open, path).await?;
        let read = self.read_all(&handle, path, offset, &mut sink).await;
        let closed = self.close(handle, path).await;
        let n = read?;
        closed.map(|()| n)
    }

    /// Writes what `source` yields at `offset` onward (the whole file when `offset` is
    /// 0, which creates or truncates it). `source` fills the buffer it is given and
    /// returns how much it filled; 0 is the end. Returns the bytes written.
    pub async fn upload(
        &mut self,
        path: &str,
        offset: u64,
        mut source: impl FnMut(&mut [u8]) -> std::io::Result<usize>,
    ) -> Result<u64, ClientError> {
        let mut flags = pflags::WRITE | pflags::CREAT;
        if offset == 0 {
            flags |= pflags::TRUNC;
        }
        let open = Request::Open {
            path: path.into(),
            pflags: flags,
            attrs: Attrs::default(),
        };
        let handle = self.open_handle(&open, path).await?;
        let written = self.write_all(&handle, path, offset, &mut source).await;
        let closed = self.close(handle, path).await;
        let n = written?;
        closed.map(|()| n)
    }

    /// READs kept [`IN_FLIGHT`] deep until the end of the file.
    async fn read_all(
        &mut self,
        handle: &[u8],
        path: &str,
        offset: u64,
        sink: &mut impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, ClientError> {
        let mut asked: HashMap<u32, (u64, u32)> = HashMap::new();
        let mut early: BTreeMap<u64, Payload> = BTreeMap::new();
        let (mut next_ask, mut next_out, mut end) = (offset, offset, None::<u64>);
        // The first failure; the READs still in flight are answered before it is
        // returned, so that the next request does not read their replies as its own.
        let mut failed: Option<ClientError> = None;
        loop {
            while failed.is_none()
                && asked.len() < IN_FLIGHT
                && end.is_none_or(|end| next_ask < end)
            {
                let request = Request::Read {
                    handle: handle.to_vec(),
                    offset: next_ask,
                    len: CHUNK,
                };
                asked.insert(self.send(&request).await?, (next_ask, CHUNK));
                next_ask += u64::from(CHUNK);
            }
            if asked.is_empty() {
                return failed.map_or(Ok(next_out - offset), Err);
            }
            self.writer.flush().await?;
            let reply = self.receive().await?;
            let Some((at, len)) = reply.id().and_then(|id| asked.remove(&id)) else {
                // Not a reply to any READ of ours: the session cannot be trusted.
                return Err(unexpected("read", &reply));
            };
            if failed.is_some() {
                continue;
            }
            match reply {
                Reply::Data { data, .. } => {
                    let got = data.bytes().len() as u64;
                    if got == 0 || got > u64::from(len) {
                        failed = Some(unexpected_len(path, at, got));
                        continue;
                    }
                    if got < u64::from(len) {
                        // A short read: ask again for the rest of that chunk.
                        let rest = len - got as u32;
                        let request = Request::Read {
                            handle: handle.to_vec(),
                            offset: at + got,
                            len: rest,
                        };
                        asked.insert(self.send(&request).await?, (at + got, rest));
                    }
                    early.insert(at, data);
                }
                Reply::Status { code, .. } if code == StatusCode::Eof as u32 => {
                    end = Some(end.map_or(at, |end| end.min(at)));
                }
                Reply::Status { code, message, .. } => {
                    failed = Some(remote(code, message, path));
                }
                other => failed = Some(unexpected("read", &other)),
            }
            while failed.is_none()
                && let Some(data) = early.remove(&next_out)
            {
                if let Err(err) = sink(data.bytes()) {
                    failed = Some(ClientError::Io(err));
                }
                next_out += data.bytes().len() as u64;
            }
        }
    }

    /// WRITEs kept [`IN_FLIGHT`] deep until `source` is done.
    async fn write_all(
        &mut self,
        handle: &[u8],
        path: &str,
        offset: u64,
        source: &mut impl FnMut(&mut [u8]) -> std::io::Result<usize>,
    ) -> Result<u64, ClientError> {
        let mut outstanding = 0usize;
        let mut at = offset;
        let mut done = false;
        let mut buf = vec![0u8; CHUNK as usize];
        // The first refused WRITE; the ones still in flight are answered before it is
        // returned, so that the next request does not read their replies as its own.
        let mut refused = None;
        loop {
            while refused.is_none() && !done && outstanding < IN_FLIGHT {
                let n = match source(&mut buf) {
                    Ok(n) => n,
                    Err(err) => {
                        refused = Some(ClientError::Io(err));
                        break;
                    }
                };
                if n == 0 {
                    done = true;
                    break;
                }
                let request = Request::Write {
                    handle: handle.to_vec(),
                    offset: at,
                    data: Payload::from(buf[..n].to_vec()),
                };
                self.send(&request).await?;
                outstanding += 1;
                at += n as u64;
            }
            if outstanding == 0 {
                return refused.map_or(Ok(at - offset), Err);
            }
            self.writer.flush().await?;
            let reply = self.receive().await?;
            outstanding -= 1;
            if let Err(err) = expect_ok(reply, path) {
                refused.get_or_insert(err);
            }
        }
    }

    async fn open_handle(&mut self, request: &Request, path: &str) -> Result<Vec<u8>, ClientError> {
        match self.call(request, path).await? {
            Reply::Handle { handle, .. } => Ok(handle),
            other => Err(unexpected("open", &other)),
        }
    }

    async fn close(&mut self, handle: Vec<u8>, path: &str) -> Result<(), ClientError> {
        self.call_ok(&Request::Close { handle }, path).await
    }

    async fn call_ok(&mut self, request: &Request, path: &str) -> Result<(), ClientError> {
        let reply = self.call(request, path).await?;
        expect_ok(reply, path)
    }

    /// Sends one request and reads its reply; a status other than OK is an error, except
    /// where the caller wants the OK itself (see [`SftpClient::call_ok`]).
    async fn call(&mut self, request: &Request, path: &str) -> Result<Reply, ClientError> {
        let id = self.send(request).await?;
        self.writer.flush().await?;
        let reply = self.receive().await?;
        if reply.id() != Some(id) {
            return Err(unexpected(request.name(), &reply));
        }
        match reply {
            Reply::Status { code, message, .. } if code != StatusCode::Ok as u32 => {
                Err(remote(code, message, path))
            }
            reply => Ok(reply),
        }
    }

    async fn send(&mut self, request: &Request) -> Result<u32, ClientError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.writer.write_all(&request.encode(id)).await?;
        Ok(id)
    }

    /// Reads one reply. Its length is checked before anything is allocated.
    async fn receive(&mut self) -> Result<Reply, ClientError> {
        let len = self.reader.read_u32().await? as usize;
        if len == 0 || len > MAX_PACKET + 1024 {
            return Err(ClientError::Protocol(format!(
                "an SFTP reply of {len} bytes is not one we take"
            )));
        }
        let mut packet = vec![0u8; len];
        self.reader.read_exact(&mut packet).await?;
        Reply::decode(packet).map_err(|err| ClientError::Protocol(format!("bad SFTP reply: {err}")))
    }
}

fn eof() -> ErrorCode {
    ErrorCode::Other("eof".into())
}

/// A STATUS reply as the error users see, in the codes the rsftp client already uses.
fn remote(code: u32, message: String, path: &str) -> ClientError {
    let code = match StatusCode::from_u32(code) {
        Some(StatusCode::Eof) => eof(),
        Some(StatusCode::NoSuchFile) => ErrorCode::NotFound,
        Some(StatusCode::PermissionDenied) => ErrorCode::Denied,
        Some(StatusCode::BadMessage) => ErrorCode::BadRequest,
        Some(StatusCode::OpUnsupported) => ErrorCode::Other("unsupported".into()),
        _ => ErrorCode::Other("failure".into()),
    };
    let message = if message.is_empty() {
        path.to_owned()
    } else {
        format!("{path}: {message}")
    };
    ClientError::Remote { code, message }
}

fn expect_ok(reply: Reply, path: &str) -> Result<(), ClientError> {
    match reply {
        Reply::Status { code, .. } if code == StatusCode::Ok as u32 => Ok(()),
        Reply::Status { code, message, .. } => Err(remote(code, message, path)),
        other => Err(unexpected("status", &other)),
    }
}

fn unexpected(what: &str, reply: &Reply) -> ClientError {
    ClientError::Protocol(format!("unexpected SFTP reply to {what}: {reply:?}"))
}

fn unexpected_len(path: &str, at: u64, got: u64) -> ClientError {
    ClientError::Protocol(format!(
        "{path}: the server answered a read at {at} with {got} bytes"
    ))
}
