//! Reading file data at offsets, whatever the backend: [`ReadHandle`], an owned handle
//! that `stream::send_file`, the hashing helpers and every front end read through, and
//! [`CHUNK`], the one size that storage reads, hashes and streams in.

use std::fmt;
use std::io;
use std::sync::Arc;

/// The size of one chunk of file data: one read, one hash update, one buffer in flight.
pub const CHUNK: usize = 256 * 1024;

/// Something that can be read at an offset from several threads: an open file, or a
/// backend's ranged reader. One call may return fewer bytes than asked for; 0 means the
/// end.
pub trait ReadAt: Send + Sync + 'static {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

impl ReadAt for std::fs::File {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

impl ReadAt for cap_std::fs::File {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        cap_std::fs::FileExt::read_at(self, buf, offset)
    }
}

/// An open regular file to read, owned, cheap to clone, and movable to a blocking
/// thread. Its length is what the file held when it was opened.
///
/// It reads at offsets ([`ReadHandle::read_at`]); it also implements [`io::Read`], from
/// a cursor of its own that starts at 0, for callers that read it once from the start.
#[derive(Clone)]
pub struct ReadHandle {
    source: Arc<dyn ReadAt>,
    len: u64,
    cursor: u64,
}

impl fmt::Debug for ReadHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadHandle")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl ReadHandle {
    /// A handle on `source`, which holds `len` bytes.
    pub fn new(source: impl ReadAt, len: u64) -> ReadHandle {
        ReadHandle {
            source: Arc::new(source),
            len,
            cursor: 0,
        }
    }

    /// A handle on a local file, with the length it has now.
    pub fn from_file(file: std::fs::File) -> io::Result<ReadHandle> {
        let len = file.metadata()?.len();
        Ok(ReadHandle::new(file, len))
    }

    /// The file's length when it was opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads from `offset` until `buf` is full or the file ends, so a short count always
    /// means the end.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        read_full(&*self.source, offset, buf)
    }

    /// Fills `buf` from `offset`; a file that ends first is `UnexpectedEof`.
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if self.read_at(offset, buf)? < buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file ended early",
            ));
        }
        Ok(())
    }
}

impl ReadAt for ReadHandle {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.source.read_at(offset, buf)
    }
}

impl io::Read for ReadHandle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.source.read_at(self.cursor, buf)?;
        self.cursor += n as u64;
        Ok(n)
    }
}

/// Reads until `buf` is full or `source` ends, retrying interrupted reads.
pub fn read_full<R: ReadAt + ?Sized>(source: &R, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read_at(offset.saturating_add(filled as u64), &mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
