//! The rsftp/1 protocol, client side: one typed method per command, and the streaming
//! halves of `get` and `put` that the transfer engine drives.

use md5::Md5;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
    ReadHalf, WriteHalf,
};

use super::ClientError;
use crate::protocol::{
    EntryLine, ErrorCode, GetAnswer, GetDone, MAX_LINE, Md5Answer, Md5Digest, ParseError,
    PutAnswer, PutDone, QuotaInfo, ReadAnswer, Request, Status, VERSION, parse_number,
};
use crate::storage::stream::{self, ChunkSink};

/// A session of the `rsftp` subsystem.
pub struct RsftpClient<S> {
    reader: BufReader<ReadHalf<S>>,
    writer: BufWriter<WriteHalf<S>>,
    server: String,
    line: Vec<u8>,
}

/// What the server said to a `put`: it is up to date, or holds some bytes already.
pub use crate::protocol::PutAnswer as PutStart;

impl<S: AsyncRead + AsyncWrite + Unpin> RsftpClient<S> {
    /// Reads the greeting and checks the protocol version.
    pub async fn start(stream: S) -> Result<RsftpClient<S>, ClientError> {
        let (read, write) = tokio::io::split(stream);
        let mut client = RsftpClient {
            reader: BufReader::with_capacity(stream::CHUNK, read),
            writer: BufWriter::with_capacity(stream::CHUNK, write),
            server: String::new(),
            line: Vec::new(),
        };
        let words = client.status().await?;
        match words.split_first() {
            Some((version, rest)) if version == VERSION => {
                client.server = rest.join(" ");
                Ok(client)
            }
            _ => Err(ClientError::Protocol(format!(
                "the server does not speak {VERSION}: {}",
                words.join(" ")
            ))),
        }
    }

    /// The server's name and version from its greeting.
    pub fn server(&self) -> &str {
        &self.server
    }

    async fn read_line(&mut self) -> Result<(), ClientError> {
        self.line.clear();
        let n = (&mut self.reader)
            .take(MAX_LINE as u64 + 2)
            .read_until(b'\n', &mut self.line)
            .await?;
        if n == 0 {
            return Err(ClientError::Closed);
        }
        if self.line.pop() != Some(b'\n') {
            return Err(ClientError::Protocol(
                "reply line too long or cut off".into(),
            ));
        }
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        Ok(())
    }

    /// Reads one status line: the words after `OK`, or the server's error.
    pub(super) async fn status(&mut self) -> Result<Vec<String>, ClientError> {
        self.read_line().await?;
        match Status::parse(&self.line) {
            Ok(Status::Ok(words)) => Ok(words),
            Ok(Status::Err { code, message }) => Err(ClientError::Remote { code, message }),
            Err(err) => Err(ClientError::Protocol(format!("bad status line: {err}"))),
        }
    }

    async fn send(&mut self, request: &Request) -> Result<(), ClientError> {
        self.writer
            .write_all(request.to_string().as_bytes())
            .await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// Queues a request, and the raw bytes that go with it, without flushing: a client
    /// that pipelines sends many and then [`flush`](Self::flush)es once.
    pub(super) async fn queue(
        &mut self,
        request: &Request,
        data: &[u8],
    ) -> Result<(), ClientError> {
        self.writer
            .write_all(request.to_string().as_bytes())
            .await?;
        self.writer.write_all(data).await?;
        Ok(())
    }

    /// Sends whatever is queued.
    pub(super) async fn flush(&mut self) -> Result<(), ClientError> {
        Ok(self.writer.flush().await?)
    }

    /// Sends a request and reads its status line.
    async fn call(&mut self, request: &Request) -> Result<Vec<String>, ClientError> {
        self.send(request).await?;
        self.status().await
    }

    /// Reads `OK <n>` and then `n` lines.
    async fn counted_lines(&mut self, request: &Request) -> Result<Vec<Vec<u8>>, ClientError> {
        let words = self.call(request).await?;
        let count = number(words.first())?;
        let mut lines = Vec::new();
        for _ in 0..count {
            self.read_line().await?;
            lines.push(self.line.clone());
        }
        Ok(lines)
    }

    pub async fn pwd(&mut self) -> Result<String, ClientError> {
        let words = self.call(&Request::Pwd).await?;
        one_word(words)
    }

    /// Changes directory; returns the new one.
    pub async fn cd(&mut self, path: &str) -> Result<String, ClientError> {
        let words = self.call(&Request::Cd(Some(path.to_owned()))).await?;
        one_word(words)
    }

    pub async fn ls(&mut self, path: Option<&str>) -> Result<Vec<EntryLine>, ClientError> {
        let lines = self
            .counted_lines(&Request::Ls(path.map(str::to_owned)))
            .await?;
        lines
            .iter()
            .map(|line| {
                EntryLine::parse(line)
                    .map_err(|err| ClientError::Protocol(format!("bad entry: {err}")))
            })
            .collect()
    }

    pub async fn stat(&mut self, path: &str) -> Result<EntryLine, ClientError> {
        let words = self.call(&Request::Stat(path.to_owned())).await?;
        EntryLine::from_words(&words)
            .map_err(|err| ClientError::Protocol(format!("bad entry: {err}")))
    }

    pub async fn mkdir(&mut self, path: &str) -> Result<(), ClientError> {
        self.call(&Request::Mkdir(path.to_owned())).await.map(drop)
    }

    pub async fn rmdir(&mut self, path: &str) -> Result<(), ClientError> {
        self.call(&Request::Rmdir(path.to_owned())).await.map(drop)
    }

    pub async fn rm(&mut self, path: &str) -> Result<(), ClientError> {
        self.call(&Request::Rm(path.to_owned())).await.map(drop)
    }

    pub async fn mv(&mut self, from: &str, to: &str) -> Result<(), ClientError> {
        let request = Request::Mv {
            from: from.to_owned(),
            to: to.to_owned(),
        };
        self.call(&request).await.map(drop)
    }

    pub async fn info(&mut self) -> Result<QuotaInfo, ClientError> {
        let words = self.call(&Request::Info).await?;
        QuotaInfo::from_words(&words).map_err(|err| ClientError::Protocol(err.to_string()))
    }

    /// The MD5 of a whole file, or of `len` bytes from `offset`; and how many bytes that was.
    pub async fn md5(
        &mut self,
        path: &str,
        range: Option<(u64, u64)>,
    ) -> Result<(Md5Digest, u64), ClientError> {
        let words = self
            .call(&Request::Md5 {
                path: path.to_owned(),
                range,
            })
            .await?;
        let answer = answer(&words, Md5Answer::from_words)?;
        Ok((answer.digest, answer.len))
    }

    /// Reads up to `len` bytes from `offset` into memory. For whole files use `get`.
    pub async fn read(
        &mut self,
        path: &str,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, ClientError> {
        let words = self
            .call(&Request::Read {
                path: path.to_owned(),
                offset,
                len,
            })
            .await?;
        let n = answer(&words, ReadAnswer::from_words)?.len;
        if n > len {
            return Err(ClientError::Protocol(format!(
                "asked for {len} bytes, offered {n}"
            )));
        }
        let mut data = vec![0u8; n as usize];
        self.reader.read_exact(&mut data).await?;
        Ok(data)
    }

    /// Writes `data` at `offset`, in place (not atomic; use `put` to publish a file).
    pub async fn write(&mut self, path: &str, offset: u64, data: &[u8]) -> Result<(), ClientError> {
        let request = Request::Write {
            path: path.to_owned(),
            offset,
            len: data.len() as u64,
        };
        self.writer
            .write_all(request.to_string().as_bytes())
            .await?;
        self.writer.write_all(data).await?;
        self.writer.flush().await?;
        self.status().await.map(drop)
    }

    pub async fn help(&mut self) -> Result<Vec<String>, ClientError> {
        let lines = self.counted_lines(&Request::Help).await?;
        Ok(lines
            .into_iter()
            .map(|line| String::from_utf8_lossy(&line).into_owned())
            .collect())
    }

    /// Says goodbye; the server closes the channel.
    pub async fn quit(mut self) -> Result<(), ClientError> {
        self.call(&Request::Quit).await?;
        let _ = self.writer.shutdown().await;
        Ok(())
    }

    /// Starts a download from `offset`. Returns the bytes that will follow and the file's
    /// size. Then call [`receive_into`](Self::receive_into) and [`end_get`](Self::end_get).
    pub async fn begin_get(
        &mut self,
        path: &str,
        offset: u64,
        prefix_md5: Option<Md5Digest>,
    ) -> Result<(u64, u64), ClientError> {
        let words = self
            .call(&Request::Get {
                path: path.to_owned(),
                offset,
                prefix_md5,
            })
            .await?;
        let GetAnswer { len: n, size } = answer(&words, GetAnswer::from_words)?;
        if size.checked_sub(offset) != Some(n) {
            return Err(ClientError::Protocol(format!(
                "get from {offset} of a {size}-byte file offered {n} bytes"
            )));
        }
        Ok((n, size))
    }

    /// Reads `n` data bytes into `sink` on a blocking thread, calling `progress` with
    /// each chunk's length. Returns the sink and its result.
    pub async fn receive_into<K: ChunkSink>(
        &mut self,
        n: u64,
        sink: K,
        progress: impl FnMut(u64),
    ) -> Result<(K, Result<(), K::Error>), ClientError> {
        Ok(stream::receive(&mut self.reader, n, sink, stream::STALL_TIMEOUT, progress).await?)
    }

    /// Reads the MD5 of the whole file that ends a download.
    pub async fn end_get(&mut self) -> Result<Md5Digest, ClientError> {
        let words = self.status().await?;
        Ok(answer(&words, GetDone::from_words)?.md5)
    }

    /// Starts an upload of `size` bytes. With `md5`, the server can answer that it is
    /// already up to date.
    pub async fn begin_put(
        &mut self,
        path: &str,
        size: u64,
        md5: Option<Md5Digest>,
    ) -> Result<PutStart, ClientError> {
        let words = self
            .call(&Request::Put {
                path: path.to_owned(),
                size,
                md5,
            })
            .await?;
        answer(&words, PutAnswer::from_words)
    }

    /// Sends `from <start>` and then `len` bytes of `file` from `start`, hashed into
    /// `hasher` in the same pass. Returns the hasher.
    pub async fn send_from(
        &mut self,
        start: u64,
        file: std::fs::File,
        len: u64,
        hasher: Md5,
        progress: impl FnMut(u64),
    ) -> Result<Md5, ClientError> {
        self.writer
            .write_all(Request::From(start).to_string().as_bytes())
            .await?;
        let hasher = stream::send_file(
            &mut self.writer,
            crate::storage::ReadHandle::from_file(file)?,
            start,
            len,
            Some(hasher),
            stream::STALL_TIMEOUT,
            progress,
        )
        .await?
        .ok_or_else(|| ClientError::Protocol("hashing stopped early".into()))?;
        self.writer.flush().await?;
        Ok(hasher)
    }

    /// Ends an upload: sends `done <md5>` if the put line had `-`, then reads the verdict.
    pub async fn end_put(&mut self, done: Option<Md5Digest>) -> Result<Md5Digest, ClientError> {
        if let Some(md5) = done {
            self.writer
                .write_all(Request::Done(md5).to_string().as_bytes())
                .await?;
        }
        self.writer.flush().await?;
        let words = self.status().await?;
        Ok(answer(&words, PutDone::from_words)?.md5)
    }
}

/// A success reply read as the typed answer it must be.
fn answer<T>(
    words: &[String],
    parse: fn(&[String]) -> Result<T, ParseError>,
) -> Result<T, ClientError> {
    parse(words).map_err(|err| ClientError::Protocol(format!("unexpected reply: {err}")))
}

fn one_word(words: Vec<String>) -> Result<String, ClientError> {
    words
        .into_iter()
        .next()
        .ok_or_else(|| ClientError::Protocol("missing word in reply".into()))
}

fn number(word: Option<&String>) -> Result<u64, ClientError> {
    let word = word.ok_or_else(|| ClientError::Protocol("missing number in reply".into()))?;
    parse_number(word).map_err(|err| ClientError::Protocol(err.to_string()))
}

impl ClientError {
    /// The server's error code, if the server refused.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            ClientError::Remote { code, .. } => Some(code),
            _ => None,
        }
    }
}
