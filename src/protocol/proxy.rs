//! The PROXY protocol header (HAProxy's, versions 1 and 2), which a TCP balancer puts
//! in front of a connection to say whom it carries: the client's address and port.
//!
//! [`parse`] is given the bytes read so far and says how many more it needs, or what the
//! header says and how long it was. It never asks for a byte past the header, so the
//! caller can read exactly what it asks for and hand the rest of the stream, untouched,
//! to SSH. Sizes are capped before anything is taken on trust: a v1 line is at most
//! [`MAX_V1`] bytes, a v2 header at most [`MAX_V2`]. No I/O here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What a v1 header starts with.
pub const V1_PREFIX: &[u8] = b"PROXY ";
/// What a v2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included, as the specification caps it.
pub const MAX_V1: usize = 107;
/// The longest v2 header we take: the 16 fixed bytes and up to 1 KiB of addresses and
/// TLVs (HAProxy's own are a few dozen bytes).
pub const MAX_V2: usize = 16 + 1024;
/// The shortest header of either version (`PROXY UNKNOWN\r\n`), so the first read may
/// ask for this many without passing the end of any header.
pub const MIN_HEADER: usize = 15;

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    pub version: u8,
    /// The client's address and the address it connected to, when the balancer relays a
    /// client; `None` for a balancer's own connection (v2 `LOCAL`, v1 `UNKNOWN`, or an
    /// unspecified or Unix address family), which is taken as coming from the balancer.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// How many bytes the header took; the SSH stream starts right after.
    pub len: usize,
}

impl ProxyHeader {
    /// The client's address, if the header names one.
    pub fn source(&self) -> Option<SocketAddr> {
        self.addresses.map(|(source, _)| source)
    }
}

/// How far [`parse`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// At least this many more bytes are needed, and reading exactly this many cannot
    /// pass the end of the header.
    Need(usize),
    Done(ProxyHeader),
}

/// Why a header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    #[error("no PROXY protocol signature")]
    NoSignature,
    #[error("PROXY v1 line longer than {MAX_V1} bytes")]
    V1TooLong,
    #[error("PROXY v1 line has a bare CR or LF, or a byte that is not printable ASCII")]
    V1BadByte,
    #[error("PROXY v1 line has an unknown protocol (not TCP4, TCP6 or UNKNOWN)")]
    V1UnknownFamily,
    #[error("PROXY v1 line has too few fields")]
    V1MissingField,
    #[error("PROXY v1 line has too many fields")]
    V1ExtraField,
    #[error("PROXY header has an address that does not parse or fit its family")]
    BadAddress,
    #[error("PROXY header has a port that does not parse")]
    BadPort,
    #[error("PROXY v2 header has version {0}, not 2")]
    V2BadVersion(u8),
    #[error("PROXY v2 header has command {0}, neither LOCAL nor PROXY")]
    V2BadCommand(u8),
    #[error("PROXY v2 header has unknown address family or transport {0:#04x}")]
    V2BadFamily(u8),
    #[error("PROXY v2 header is {0} bytes long, more than {MAX_V2}")]
    V2TooLong(usize),
    #[error("PROXY v2 header is too short for its addresses")]
    V2ShortAddresses,
}

/// Whether `prefix`, the first bytes a client sent, begins a PROXY header of either
/// version. As few as the first 5 bytes decide (an SSH client must begin with `SSH-`);
/// fewer than that never match.
pub fn looks_like_header(prefix: &[u8]) -> bool {
    let starts = |signature: &[u8]| {
        let n = prefix.len().min(signature.len());
        n >= 5 && prefix[..n] == signature[..n]
    };
    starts(V1_PREFIX) || starts(&V2_SIGNATURE)
}

/// Parses the header at the start of `buf`, which holds the bytes read so far. Bytes
/// past the header are ignored (the caller should not have read them).
pub fn parse(buf: &[u8]) -> Result<Progress, ProxyError> {
    if buf.len() < MIN_HEADER {
        return signature_so_far(buf).map(|()| Progress::Need(MIN_HEADER - buf.len()));
    }
    if buf.starts_with(V1_PREFIX) {
        parse_v1(buf)
    } else if buf.starts_with(&V2_SIGNATURE) {
        parse_v2(buf)
    } else {
        Err(ProxyError::NoSignature)
    }
}

/// A short `buf` that already cannot be a header is refused at once.
fn signature_so_far(buf: &[u8]) -> Result<(), ProxyError> {
    let fits = |signature: &[u8]| {
        let n = buf.len().min(signature.len());
        buf[..n] == signature[..n]
    };
    if fits(V1_PREFIX) || fits(&V2_SIGNATURE) {
        Ok(())
    } else {
        Err(ProxyError::NoSignature)
    }
}

fn parse_v1(buf: &[u8]) -> Result<Progress, ProxyError> {
    let window = &buf[..buf.len().min(MAX_V1)];
    let end = window.windows(2).position(|pair| pair == b"\r\n");
    let Some(end) = end else {
        // Only a last CR may still turn out to start the CRLF.
        let last = window.len() - 1;
        let bad = |(i, &b): (usize, &u8)| {
            !(b == b' ' || b.is_ascii_graphic() || (b == b'\r' && i == last))
        };
        if window.iter().enumerate().any(bad) {
            return Err(ProxyError::V1BadByte);
        }
        if buf.len() >= MAX_V1 {
            return Err(ProxyError::V1TooLong);
        }
        // A line ends in CRLF: after a CR one more byte may end it, else two are needed.
        let need = if buf.last() == Some(&b'\r') { 1 } else { 2 };
        return Ok(Progress::Need(need.min(MAX_V1 - buf.len())));
    };
    let line = &buf[..end];
    if !line.iter().all(|&b| b == b' ' || b.is_ascii_graphic()) {
        return Err(ProxyError::V1BadByte);
    }
    // Printable ASCII only, so this cannot fail; refused all the same rather than trusted.
    let line = std::str::from_utf8(line).map_err(|_| ProxyError::V1BadByte)?;
    let mut fields = line.split(' ');
    let _proxy = fields.next();
    let len = end + 2;
    let family = fields.next().ok_or(ProxyError::V1MissingField)?;
    let v6 = match family {
        // The rest of an UNKNOWN line is to be ignored, as the specification says.
        "UNKNOWN" => {
            return Ok(Progress::Done(ProxyHeader {
                version: 1,
                addresses: None,
                len,
            }));
        }
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(ProxyError::V1UnknownFamily),
    };
    let mut next = || fields.next().ok_or(ProxyError::V1MissingField);
    let (source, destination) = (next()?, next()?);
    let (source_port, destination_port) = (next()?, next()?);
    if fields.next().is_some() {
        return Err(ProxyError::V1ExtraField);
    }
    let address = |text: &str| -> Result<IpAddr, ProxyError> {
        let ip = if v6 {
            text.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            text.parse::<Ipv4Addr>().map(IpAddr::V4)
        };
        ip.map_err(|_| ProxyError::BadAddress)
    };
    let port = |text: &str| -> Result<u16, ProxyError> {
        // No sign, no leading zeros: the specification's own grammar.
        if text.is_empty()
            || text.len() > 5
            || (text.len() > 1 && text.starts_with('0'))
            || !text.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ProxyError::BadPort);
        }
        text.parse().map_err(|_| ProxyError::BadPort)
    };
    let source = SocketAddr::new(address(source)?, port(source_port)?);
    let destination = SocketAddr::new(address(destination)?, port(destination_port)?);
    Ok(Progress::Done(ProxyHeader {
        version: 1,
        addresses: Some((source, destination)),
        len,
    }))
}

fn parse_v2(buf: &[u8]) -> Result<Progress, ProxyError> {
    if buf.len() < 16 {
        return Ok(Progress::Need(16 - buf.len()));
    }
    let version = buf[12] >> 4;
    let command = buf[12] & 0x0f;
    if version != 2 {
        return Err(ProxyError::V2BadVersion(version));
    }
    let family = buf[13];
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body;
    if len > MAX_V2 {
        return Err(ProxyError::V2TooLong(len));
    }
    let local = match command {
        0 => true,
        1 => false,
        other => return Err(ProxyError::V2BadCommand(other)),
    };
    // Family and transport are checked before waiting for the body, so a header that
    // cannot be used is refused at once.
    let address_len = match family {
        0x00 => 0,
        0x11 | 0x12 => 12,
        0x21 | 0x22 => 36,
        0x31 | 0x32 => 216,
        other => return Err(ProxyError::V2BadFamily(other)),
    };
    if body < address_len {
        return Err(ProxyError::V2ShortAddresses);
    }
    if buf.len() < len {
        return Ok(Progress::Need(len - buf.len()));
    }
    let addresses = &buf[16..len];
    let addresses = match (local, family) {
        // A LOCAL header's addresses, if any, are the balancer's own and ignored, as are
        // unspecified and Unix-socket ones; TLVs after the addresses are skipped.
        (true, _) | (false, 0x00 | 0x31 | 0x32) => None,
        (false, 0x11 | 0x12) => {
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    addresses[at],
                    addresses[at + 1],
                    addresses[at + 2],
                    addresses[at + 3],
                ))
            };
            let port = |at: usize| u16::from_be_bytes([addresses[at], addresses[at + 1]]);
            Some((
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            ))
        }
        (false, _) => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&addresses[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let port = |at: usize| u16::from_be_bytes([addresses[at], addresses[at + 1]]);
            Some((
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            ))
        }
    };
    Ok(Progress::Done(ProxyHeader {
        version: 2,
        addresses,
        len,
    }))
}

/// Feeds `data` to [`parse`] the way a reader would, exactly as many bytes at a time as
/// it asks for, and checks what must hold whatever the input: it never asks for a byte
/// past [`MAX_V2`], a finished header's length is what was fed, and never more than
/// `data` holds. For fuzz targets; returns the header if `data` starts with one.
#[doc(hidden)]
pub fn fuzz_feed(data: &[u8]) -> Option<ProxyHeader> {
    let mut have = 0usize;
    // Each step takes at least one byte, so this ends within MAX_V2 steps.
    for _ in 0..=MAX_V2 {
        match parse(&data[..have]) {
            Err(_) => return None,
            Ok(Progress::Done(header)) => {
                assert_eq!(header.len, have, "a header's length is what was read");
                return Some(header);
            }
            Ok(Progress::Need(n)) => {
                assert!(n > 0, "asked for nothing");
                assert!(have + n <= MAX_V2, "asked past the longest header");
                if have + n > data.len() {
                    return None;
                }
                have += n;
            }
        }
    }
    panic!("the parser did not finish within {MAX_V2} steps");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(buf: &[u8]) -> ProxyHeader {
        match parse(buf) {
            Ok(Progress::Done(header)) => header,
            other => panic!("not done: {other:?}"),
        }
    }

    fn refused(buf: &[u8]) -> ProxyError {
        match parse(buf) {
            Err(err) => err,
            other => panic!("not refused: {other:?}"),
        }
    }

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn v4_body() -> Vec<u8> {
        let mut body = vec![127, 0, 0, 2, 127, 0, 0, 1];
        body.extend_from_slice(&40000u16.to_be_bytes());
        body.extend_from_slice(&2222u16.to_be_bytes());
        body
    }

    #[test]
    fn v1_tcp4_gives_both_addresses_and_its_length() {
        let line = b"PROXY TCP4 192.0.2.7 127.0.0.1 56324 2222\r\nSSH-2.0-x\r\n";
        let header = done(line);
        assert_eq!(header.version, 1);
        assert_eq!(header.source(), Some("192.0.2.7:56324".parse().unwrap()));
        assert_eq!(
            header.addresses.unwrap().1,
            "127.0.0.1:2222".parse().unwrap()
        );
        assert_eq!(&line[header.len..], b"SSH-2.0-x\r\n");
    }

    #[test]
    fn v1_tcp6_and_unknown() {
        let header = done(b"PROXY TCP6 2001:db8::1 ::1 65535 22\r\n");
        assert_eq!(
            header.source(),
            Some("[2001:db8::1]:65535".parse().unwrap())
        );
        let unknown = done(b"PROXY UNKNOWN ffff::1 whatever\r\n");
        assert_eq!((unknown.addresses, unknown.len), (None, 32));
        assert_eq!(done(b"PROXY UNKNOWN\r\n").len, MIN_HEADER);
    }

    #[test]
    fn v1_is_read_without_passing_its_end() {
        let line = b"PROXY TCP4 10.1.2.3 10.0.0.1 1 2\r\n";
        assert_eq!(fuzz_feed(line).map(|h| h.len), Some(line.len()));
        let mut longer = line.to_vec();
        longer.extend_from_slice(b"SSH-2.0-client\r\n");
        assert_eq!(fuzz_feed(&longer).map(|h| h.len), Some(line.len()));
        assert_eq!(parse(b"PROXY TCP4 10.1.2.3"), Ok(Progress::Need(2)));
        assert_eq!(
            parse(b"PROXY TCP4 10.1.2.3 1.1.1.1 1 2\r"),
            Ok(Progress::Need(1))
        );
        assert_eq!(parse(b"PRO"), Ok(Progress::Need(MIN_HEADER - 3)));
    }

    #[test]
    fn v2_proxy_tcp4_with_a_tlv() {
        let mut body = v4_body();
        body.extend_from_slice(&[0x04, 0x00, 0x01, 0x00]); // a NOOP TLV, skipped
        let mut bytes = v2(1, 0x11, &body);
        let len = bytes.len();
        bytes.extend_from_slice(b"SSH-2.0-x\r\n");
        let header = done(&bytes);
        assert_eq!(header.version, 2);
        assert_eq!(header.len, len);
        assert_eq!(header.source(), Some("127.0.0.2:40000".parse().unwrap()));
        assert_eq!(fuzz_feed(&bytes), Some(header));
    }

    #[test]
    fn v2_proxy_tcp6() {
        let mut body = Vec::new();
        body.extend_from_slice(&"2001:db8::5".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body.extend_from_slice(&[0x12, 0x34, 0x00, 0x16]);
        let header = done(&v2(1, 0x21, &body));
        assert_eq!(header.source(), Some("[2001:db8::5]:4660".parse().unwrap()));
    }

    #[test]
    fn v2_local_and_unspecified_name_no_client() {
        assert_eq!(done(&v2(0, 0x00, &[])).addresses, None);
        assert_eq!(done(&v2(0, 0x11, &v4_body())).addresses, None);
        assert_eq!(done(&v2(1, 0x00, &[])).addresses, None);
        assert_eq!(done(&v2(1, 0x31, &[0; 216])).addresses, None);
    }

    #[test]
    fn v2_asks_for_exactly_its_body() {
        let bytes = v2(1, 0x11, &v4_body());
        assert_eq!(parse(&bytes[..15]), Ok(Progress::Need(1)));
        assert_eq!(parse(&bytes[..16]), Ok(Progress::Need(12)));
        assert_eq!(parse(&bytes[..20]), Ok(Progress::Need(8)));
    }

    #[test]
    fn looks_like_header_needs_five_bytes_of_a_signature() {
        assert!(looks_like_header(b"PROXY TCP4 1.2.3.4"));
        assert!(looks_like_header(b"PROXY"));
        assert!(looks_like_header(&V2_SIGNATURE[..5]));
        assert!(looks_like_header(&V2_SIGNATURE));
        assert!(!looks_like_header(b"PROX"));
        assert!(!looks_like_header(b"SSH-2.0-OpenSSH_9.2\r\n"));
        assert!(!looks_like_header(b"PROXX TCP4"));
    }

    #[test]
    fn rejects_ssh_banner() {
        assert_eq!(refused(b"SSH-2.0-OpenSSH_9.2\r\n"), ProxyError::NoSignature);
        assert_eq!(refused(b"S"), ProxyError::NoSignature);
    }

    #[test]
    fn rejects_v1_without_crlf_in_107_bytes() {
        let mut line = b"PROXY TCP4 ".to_vec();
        line.resize(MAX_V1, b'1');
        assert_eq!(refused(&line), ProxyError::V1TooLong);
    }

    #[test]
    fn rejects_v1_bare_lf() {
        assert_eq!(
            refused(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
            ProxyError::V1BadByte
        );
    }

    #[test]
    fn rejects_v1_control_byte() {
        assert_eq!(
            refused(b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n"),
            ProxyError::V1BadByte
        );
    }

    #[test]
    fn rejects_v1_unknown_family() {
        assert_eq!(
            refused(b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"),
            ProxyError::V1UnknownFamily
        );
    }

    #[test]
    fn rejects_v1_missing_field() {
        assert_eq!(
            refused(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),
            ProxyError::V1MissingField
        );
        assert_eq!(
            refused(b"PROXY TCP4\r\nxxxxxxxx"),
            ProxyError::V1MissingField
        );
    }

    #[test]
    fn rejects_v1_extra_field() {
        assert_eq!(
            refused(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"),
            ProxyError::V1ExtraField
        );
    }

    #[test]
    fn rejects_v1_address_of_the_other_family() {
        assert_eq!(
            refused(b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n"),
            ProxyError::BadAddress
        );
        assert_eq!(
            refused(b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n"),
            ProxyError::BadAddress
        );
    }

    #[test]
    fn rejects_v1_bad_port() {
        for port in ["65536", "-1", "+1", "01", "", "1x"] {
            let line = format!("PROXY TCP4 1.2.3.4 5.6.7.8 {port} 2\r\n");
            assert_eq!(refused(line.as_bytes()), ProxyError::BadPort, "{port:?}");
        }
    }

    #[test]
    fn rejects_v2_bad_version() {
        let mut bytes = v2(1, 0x11, &v4_body());
        bytes[12] = 0x11;
        assert_eq!(refused(&bytes), ProxyError::V2BadVersion(1));
    }

    #[test]
    fn rejects_v2_bad_command() {
        assert_eq!(
            refused(&v2(2, 0x11, &v4_body())),
            ProxyError::V2BadCommand(2)
        );
    }

    #[test]
    fn rejects_v2_bad_family() {
        assert_eq!(
            refused(&v2(1, 0x41, &v4_body())),
            ProxyError::V2BadFamily(0x41)
        );
        assert_eq!(
            refused(&v2(1, 0x13, &v4_body())),
            ProxyError::V2BadFamily(0x13)
        );
    }

    #[test]
    fn rejects_v2_too_long_before_reading_it() {
        let mut head = V2_SIGNATURE.to_vec();
        head.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(refused(&head), ProxyError::V2TooLong(16 + 0xffff));
    }

    #[test]
    fn rejects_v2_short_addresses() {
        assert_eq!(
            refused(&v2(1, 0x21, &v4_body())),
            ProxyError::V2ShortAddresses
        );
    }

    #[test]
    fn rejects_v2_signature_cut_short_by_other_bytes() {
        let mut bytes = V2_SIGNATURE.to_vec();
        bytes[8] = b'X';
        bytes.extend_from_slice(&[0x21, 0x11, 0, 12]);
        assert_eq!(refused(&bytes), ProxyError::NoSignature);
        assert_eq!(refused(b"\r\n\r\nX"), ProxyError::NoSignature);
    }
}
