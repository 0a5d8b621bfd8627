//! Connections through a TCP balancer that speaks the PROXY protocol (`--proxy-from`).
//!
//! A connection from a listed balancer must begin with a PROXY header, v1 or v2; it is
//! read here, a few bytes at a time and never past its end, within a short deadline,
//! before SSH starts. The client's address it names then stands for the peer
//! everywhere: logs, bans, per-address limits and login scores. A listed balancer that
//! sends no header is refused. Anyone else who sends one is refused as well
//! ([`SniffedStream`]): otherwise anyone could name any address and slip past a ban.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::protocol::proxy::{self, MAX_V2, Progress, ProxyError};

/// How long a balancer has to send its header once connected. HAProxy sends it in the
/// same packet as the connection's first byte, so a second is plenty; five allow for load.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(5);

/// An address range in CIDR form (`10.0.0.0/8`, `::1/128`); a bare address is one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyNet {
    base: IpAddr,
    prefix: u8,
}

/// Why a `--proxy-from` range was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address range such as 10.0.0.0/8 or ::1/128")]
pub struct BadProxyNet(String);

impl FromStr for ProxyNet {
    type Err = BadProxyNet;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadProxyNet(text.to_owned());
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let base: IpAddr = address.parse().map_err(|_| bad())?;
        let most = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => most,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= most)
                .ok_or_else(bad)?,
            Some(_) => return Err(bad()),
        };
        Ok(ProxyNet { base, prefix })
    }
}

impl std::fmt::Display for ProxyNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl ProxyNet {
    /// Whether `ip` lies in the range; an IPv4-mapped IPv6 address counts as its IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> (u128, u8) {
            match ip.to_canonical() {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let (base, base_width) = bits(self.base);
        let (ip, width) = bits(ip);
        if width != base_width {
            return false;
        }
        let mask = match self.prefix {
            0 => 0,
            p => u128::MAX << (128 - u32::from(p)),
        };
        base & mask == ip & mask
    }
}

/// Whether `ip` is one of the balancers.
pub fn is_balancer(balancers: &[ProxyNet], ip: IpAddr) -> bool {
    balancers.iter().any(|net| net.contains(ip))
}

/// Why a balancer's connection was refused before SSH.
#[derive(Debug, thiserror::Error)]
pub enum HeaderRefused {
    /// Closed before sending a byte: a plain TCP health check. Not worth a log line.
    #[error("closed before sending anything")]
    Closed,
    #[error("closed in the middle of its PROXY header")]
    Truncated,
    #[error("no PROXY header within {} s", HEADER_DEADLINE.as_secs())]
    Timeout,
    #[error("no PROXY header (is the balancer set to send one?)")]
    Missing,
    #[error(transparent)]
    Bad(ProxyError),
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// Reads a balancer's PROXY header from `socket` and returns the client it names, or
/// `None` for the balancer's own connection (a health check's v2 `LOCAL`). Reads only
/// the header's bytes, so SSH finds its stream untouched.
pub async fn read_header<S: AsyncRead + Unpin>(
    socket: &mut S,
) -> Result<Option<SocketAddr>, HeaderRefused> {
    match tokio::time::timeout(HEADER_DEADLINE, read_header_bytes(socket)).await {
        Ok(result) => result,
        Err(_) => Err(HeaderRefused::Timeout),
    }
}

async fn read_header_bytes<S: AsyncRead + Unpin>(
    socket: &mut S,
) -> Result<Option<SocketAddr>, HeaderRefused> {
    let mut buf = Vec::with_capacity(64);
    // Each pass reads at least one byte, and the parser asks for none past MAX_V2.
    for _ in 0..=MAX_V2 {
        let need = match proxy::parse(&buf) {
            Ok(Progress::Done(header)) => return Ok(header.source()),
            Ok(Progress::Need(need)) => need,
            Err(ProxyError::NoSignature) => return Err(HeaderRefused::Missing),
            Err(err) => return Err(HeaderRefused::Bad(err)),
        };
        let have = buf.len();
        buf.resize(have + need, 0);
        let read = socket.read(&mut buf[have..]).await?;
        buf.truncate(have + read);
        if read == 0 {
            return Err(if have == 0 {
                HeaderRefused::Closed
            } else {
                HeaderRefused::Truncated
            });
        }
    }
    Err(HeaderRefused::Bad(ProxyError::V2TooLong(buf.len())))
}

/// A connection's stream that watches its first bytes: if they begin a PROXY header,
/// reading fails and [`SniffedStream::forged`] says so. A header where SSH's version
/// line belongs is either a client naming an address of its choosing, or a balancer
/// not listed in `--proxy-from`; either way the connection ends.
pub struct SniffedStream<S> {
    inner: S,
    first: [u8; 12],
    seen: usize,
    forged: Arc<AtomicBool>,
}

impl<S> SniffedStream<S> {
    pub fn new(inner: S) -> SniffedStream<S> {
        SniffedStream {
            inner,
            first: [0; 12],
            seen: 0,
            forged: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Set once the stream has refused a PROXY header; readable after the stream is gone.
    pub fn forged(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.forged)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SniffedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.forged.load(Ordering::Relaxed) {
            return Poll::Ready(Err(forged_error()));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.seen < this.first.len() {
            let new = &buf.filled()[before..];
            let take = new.len().min(this.first.len() - this.seen);
            this.first[this.seen..this.seen + take].copy_from_slice(&new[..take]);
            this.seen += take;
            if proxy::looks_like_header(&this.first[..this.seen]) {
                this.forged.store(true, Ordering::Relaxed);
                // Nothing of it reaches SSH.
                buf.set_filled(before);
                return Poll::Ready(Err(forged_error()));
            }
        }
        result
    }
}

fn forged_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "a PROXY header from an address not in --proxy-from",
    )
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SniffedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn net(text: &str) -> ProxyNet {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_contain() {
        assert!(net("127.0.0.1/32").contains("127.0.0.1".parse().unwrap()));
        assert!(!net("127.0.0.1/32").contains("127.0.0.2".parse().unwrap()));
        assert!(net("10.0.0.0/8").contains("10.200.1.1".parse().unwrap()));
        assert!(net("10.0.0.0/8").contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!net("10.0.0.0/8").contains("::1".parse().unwrap()));
        assert!(net("2001:db8::/32").contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(net("0.0.0.0/0").contains("192.0.2.1".parse().unwrap()));
        assert!(net("::1").contains("::1".parse().unwrap()));
        assert_eq!(net("192.0.2.9").to_string(), "192.0.2.9/32");
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "x/8",
            "1.2.3/8",
        ] {
            assert!(bad.parse::<ProxyNet>().is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn reads_the_header_and_leaves_the_ssh_stream() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client
            .write_all(b"PROXY TCP4 127.0.0.2 127.0.0.1 4000 22\r\nSSH-2.0-x\r\n")
            .await
            .unwrap();
        let got = read_header(&mut server).await.unwrap();
        assert_eq!(got, Some("127.0.0.2:4000".parse().unwrap()));
        let mut rest = [0u8; 11];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"SSH-2.0-x\r\n");
    }

    #[tokio::test]
    async fn refuses_a_balancer_without_a_header() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"SSH-2.0-x\r\n").await.unwrap();
        assert!(matches!(
            read_header(&mut server).await,
            Err(HeaderRefused::Missing)
        ));
        let (client, mut server) = tokio::io::duplex(1024);
        drop(client);
        assert!(matches!(
            read_header(&mut server).await,
            Err(HeaderRefused::Closed)
        ));
    }

    #[tokio::test]
    async fn the_sniffer_refuses_a_header_and_passes_ssh() {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b"PROXY TCP4 1.2.3.4 ").await.unwrap();
        let mut sniffed = SniffedStream::new(server);
        let forged = sniffed.forged();
        let mut buf = [0u8; 64];
        assert!(sniffed.read(&mut buf).await.is_err());
        assert!(forged.load(Ordering::Relaxed));

        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b"SSH-2.0-x\r\n").await.unwrap();
        let mut sniffed = SniffedStream::new(server);
        let n = sniffed.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"SSH-2.0-x\r\n");
        assert!(!sniffed.forged().load(Ordering::Relaxed));
    }
}
