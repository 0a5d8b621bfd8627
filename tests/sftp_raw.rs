//! The `sftp` subsystem fed raw packets, good and bad: every request gets an answer
//! with its own id, a packet too large to trust ends only that channel, and nobody
//! else notices.

#![allow(dead_code)]

use std::time::Duration;

use rsftp::auth::Secret;
use rsftp::client::Connection;
use russh::ChannelStream;
use russh::client::Msg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{PASSWORD, TestServer, data, run_with_input, two_users};

pub const STATUS: u8 = 101;
pub const HANDLE: u8 = 102;
pub const DATA: u8 = 103;
pub const NAME: u8 = 104;
pub const ATTRS: u8 = 105;
pub const EXTENDED_REPLY: u8 = 201;

/// A packet as it travels: length, type, then `body` (which starts with the id).
pub fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(kind);
    out.extend_from_slice(body);
    out
}

pub fn string(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// `id` followed by each part.
pub fn body(id: u32, parts: &[&[u8]]) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// A reply: its type, its id (or the version, for VERSION) and the rest.
#[derive(Debug)]
pub struct Packet {
    pub kind: u8,
    pub id: u32,
    pub rest: Vec<u8>,
}

impl Packet {
    /// The code of a STATUS.
    pub fn code(&self) -> u32 {
        assert_eq!(self.kind, STATUS, "{self:?}");
        u32::from_be_bytes(self.rest[..4].try_into().unwrap())
    }

    /// The message of a STATUS.
    pub fn message(&self) -> String {
        let len = u32::from_be_bytes(self.rest[4..8].try_into().unwrap()) as usize;
        String::from_utf8_lossy(&self.rest[8..8 + len]).into_owned()
    }

    /// The first string after the id (a HANDLE's handle, a DATA's data).
    pub fn first_string(&self) -> Vec<u8> {
        let len = u32::from_be_bytes(self.rest[..4].try_into().unwrap()) as usize;
        self.rest[4..4 + len].to_vec()
    }

    /// The first name of a NAME reply.
    pub fn first_name(&self) -> String {
        assert_eq!(self.kind, NAME, "{self:?}");
        let len = u32::from_be_bytes(self.rest[4..8].try_into().unwrap()) as usize;
        String::from_utf8_lossy(&self.rest[8..8 + len]).into_owned()
    }
}

/// The sftp subsystem as raw bytes.
pub struct RawSftp {
    stream: ChannelStream<Msg>,
    _conn: Option<Connection>,
}

impl RawSftp {
    pub async fn open(server: &TestServer, user: &str) -> RawSftp {
        let mut conn = server.connection(user).await;
        assert!(conn.login_password(&Secret::new(PASSWORD)).await.unwrap());
        let stream = conn.open_subsystem("sftp").await.expect("sftp subsystem");
        RawSftp {
            stream,
            _conn: Some(conn),
        }
    }

    pub fn from_stream(stream: ChannelStream<Msg>) -> RawSftp {
        RawSftp {
            stream,
            _conn: None,
        }
    }

    /// The subsystem on `stream`, keeping `conn` open as long as it lives.
    pub fn with_connection(stream: ChannelStream<Msg>, conn: Connection) -> RawSftp {
        RawSftp {
            stream,
            _conn: Some(conn),
        }
    }

    /// Sends `bytes`; an error if the channel or connection is gone.
    pub async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
        self.stream.flush().await.expect("flush");
    }

    /// The next packet, or `None` once the server has closed the channel.
    pub async fn recv(&mut self) -> Option<Packet> {
        let read = async {
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).await.ok()?;
            let len = u32::from_be_bytes(len) as usize;
            assert!((5..=300 * 1024).contains(&len), "reply length {len}");
            let mut packet = vec![0u8; len];
            self.stream.read_exact(&mut packet).await.ok()?;
            Some(Packet {
                kind: packet[0],
                id: u32::from_be_bytes(packet[1..5].try_into().unwrap()),
                rest: packet[5..].to_vec(),
            })
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("a reply in time")
    }

    pub async fn reply(&mut self) -> Packet {
        self.recv()
            .await
            .expect("a reply, not the end of the channel")
    }

    pub async fn init(&mut self) -> Vec<u8> {
        self.send(&frame(1, &3u32.to_be_bytes())).await;
        let version = self.reply().await;
        assert_eq!((version.kind, version.id), (2, 3), "VERSION 3");
        version.rest
    }

    pub async fn realpath(&mut self, id: u32, path: &str) -> String {
        self.send(&frame(16, &body(id, &[&string(path.as_bytes())])))
            .await;
        let reply = self.reply().await;
        assert_eq!(reply.id, id);
        reply.first_name()
    }

    pub async fn status(&mut self, id: u32) -> (u32, String) {
        let reply = self.reply().await;
        assert_eq!((reply.kind, reply.id), (STATUS, id), "{reply:?}");
        (reply.code(), reply.message())
    }

    /// Opens `path` with `pflags`; returns the handle.
    pub async fn open_file(&mut self, id: u32, path: &str, pflags: u32) -> Vec<u8> {
        let request = body(
            id,
            &[
                &string(path.as_bytes()),
                &pflags.to_be_bytes(),
                &0u32.to_be_bytes(),
            ],
        );
        self.send(&frame(3, &request)).await;
        let reply = self.reply().await;
        assert_eq!((reply.kind, reply.id), (HANDLE, id), "{reply:?}");
        reply.first_string()
    }

    /// Ends the session cleanly: EOF, then the server's close.
    pub async fn finish(mut self) {
        self.stream.shutdown().await.expect("eof");
        assert!(self.recv().await.is_none(), "the server closes after EOF");
    }
}

const PERMISSION_DENIED: u32 = 3;
const FAILURE: u32 = 4;
const BAD_MESSAGE: u32 = 5;
const OP_UNSUPPORTED: u32 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_comes_first_and_announces_the_extensions() {
    let server = two_users().await;
    let mut alice = RawSftp::open(&server, "alice").await;
    // A request before INIT is answered, with its id, and the session waits for INIT.
    alice.send(&frame(17, &body(7, &[&string(b"/")]))).await;
    let (code, message) = alice.status(7).await;
    assert_eq!(code, FAILURE);
    assert!(message.contains("INIT"), "{message}");
    let extensions = alice.init().await;
    for name in [
        "limits@openssh.com",
        "statvfs@openssh.com",
        "fstatvfs@openssh.com",
        "posix-rename@openssh.com",
        "fsync@openssh.com",
        "expand-path@openssh.com",
    ] {
        assert!(
            extensions.windows(name.len()).any(|w| w == name.as_bytes()),
            "{name} not announced"
        );
    }
    // limits@openssh.com: packet, read, write, handles.
    alice
        .send(&frame(200, &body(8, &[&string(b"limits@openssh.com")])))
        .await;
    let limits = alice.reply().await;
    assert_eq!((limits.kind, limits.id), (EXTENDED_REPLY, 8));
    let numbers: Vec<u64> = limits
        .rest
        .chunks(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(numbers, [262144, 261120, 261120, 256]);
    alice.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_requests_get_errors_with_their_own_ids() {
    let server = two_users().await;
    let mut alice = RawSftp::open(&server, "alice").await;
    alice.init().await;
    // An unknown packet type, and a reply type sent as a request.
    alice.send(&frame(99, &body(11, &[b"junk"]))).await;
    assert_eq!(alice.status(11).await.0, OP_UNSUPPORTED);
    alice.send(&frame(STATUS, &body(12, &[]))).await;
    assert_eq!(alice.status(12).await.0, OP_UNSUPPORTED);
    // An unknown extension.
    alice
        .send(&frame(
            200,
            &body(13, &[&string(b"copy-data"), b"whatever"]),
        ))
        .await;
    assert_eq!(alice.status(13).await.0, OP_UNSUPPORTED);
    // Truncated bodies: a string longer than the packet, a missing field.
    let mut lying = 1000u32.to_be_bytes().to_vec();
    lying.extend_from_slice(b"abc");
    alice.send(&frame(17, &body(14, &[&lying]))).await;
    let (code, message) = alice.status(14).await;
    assert_eq!(code, BAD_MESSAGE, "{message}");
    alice.send(&frame(5, &body(15, &[&string(b"h")]))).await;
    assert_eq!(alice.status(15).await.0, BAD_MESSAGE);
    // Trailing bytes after a complete request are ignored, as OpenSSH does.
    alice
        .send(&frame(17, &body(16, &[&string(b"/"), b"extra"])))
        .await;
    let reply = alice.reply().await;
    assert_eq!((reply.kind, reply.id), (ATTRS, 16), "{reply:?}");
    // A handle that was never given out, and a name that is not UTF-8.
    alice.send(&frame(4, &body(17, &[&string(b"nope")]))).await;
    assert_eq!(alice.status(17).await.0, FAILURE);
    alice
        .send(&frame(17, &body(18, &[&string(b"caf\xe9")])))
        .await;
    let (code, message) = alice.status(18).await;
    assert_eq!(code, FAILURE);
    assert!(message.contains("UTF-8"), "{message}");
    // A symbolic link that would lead out is refused with a message.
    alice
        .send(&frame(20, &body(19, &[&string(b"../t"), &string(b"l")])))
        .await;
    let (code, message) = alice.status(19).await;
    assert_eq!(code, PERMISSION_DENIED, "{message}");
    assert!(message.contains("outside the home"), "{message}");
    // The session goes on.
    assert_eq!(alice.realpath(20, "a/../b/./c").await, "/b/c");
    assert_eq!(alice.realpath(21, "../../..").await, "/");
    alice.finish().await;
}

/// rclone 1.60 sends, for every file over 32 KiB, WRITE packets whose length runs
/// past the data they declare; only the declared data is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_with_bytes_after_their_data_write_only_the_declared_data() {
    let server = two_users().await;
    let content = data(3 * 32768 + 5, 9);
    let mut alice = RawSftp::open(&server, "alice").await;
    alice.init().await;
    let handle = alice.open_file(1, "big", 0x02 | 0x08 | 0x10).await;
    for (i, chunk) in content.chunks(32768).enumerate() {
        let id = 2 + i as u32;
        let offset = (i * 32768) as u64;
        let junk = vec![0xee; 32767];
        alice
            .send(&frame(
                6,
                &body(
                    id,
                    &[
                        &string(&handle),
                        &offset.to_be_bytes(),
                        &string(chunk),
                        &junk,
                    ],
                ),
            ))
            .await;
        let (code, message) = alice.status(id).await;
        assert_eq!(code, 0, "write {id}: {message}");
    }
    alice.send(&frame(4, &body(20, &[&string(&handle)]))).await;
    assert_eq!(alice.status(20).await.0, 0);
    alice.finish().await;
    assert!(std::fs::read(server.home("alice").join("big")).unwrap() == content);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_of_4_gib_gets_at_most_the_advertised_length() {
    let server = two_users().await;
    let content = data(600_000, 5);
    std::fs::write(server.home("alice").join("f"), &content).unwrap();
    let mut alice = RawSftp::open(&server, "alice").await;
    alice.init().await;
    let handle = alice.open_file(1, "f", 1).await;
    let read = |id: u32, offset: u64, len: u32| {
        frame(
            5,
            &body(
                id,
                &[&string(&handle), &offset.to_be_bytes(), &len.to_be_bytes()],
            ),
        )
    };
    alice.send(&read(2, 0, u32::MAX)).await;
    let reply = alice.reply().await;
    assert_eq!((reply.kind, reply.id), (DATA, 2));
    assert_eq!(reply.first_string(), &content[..261_120]);
    alice.send(&read(3, 599_990, u32::MAX)).await;
    assert_eq!(alice.reply().await.first_string(), &content[599_990..]);
    alice.send(&read(4, 600_000, 10)).await;
    assert_eq!(alice.status(4).await.0, 1, "EOF");
    alice.send(&read(5, u64::MAX, 10)).await;
    assert_eq!(alice.status(5).await.0, 1, "EOF");
    alice.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let server = two_users().await;
    let mut alice = RawSftp::open(&server, "alice").await;
    alice.init().await;
    let handle = alice.open_file(1, "w", 0x02 | 0x08).await;
    // 1000 writes and stats sent at once, more than are ever let in flight.
    let mut batch = Vec::new();
    for i in 0..1000u32 {
        let id = 10 + 2 * i;
        let chunk = data(1000, u64::from(i));
        batch.extend(frame(
            6,
            &body(
                id,
                &[
                    &string(&handle),
                    &(u64::from(i) * 1000).to_be_bytes(),
                    &string(&chunk),
                ],
            ),
        ));
        batch.extend(frame(8, &body(id + 1, &[&string(&handle)])));
    }
    alice.send(&batch).await;
    for i in 0..1000u32 {
        let id = 10 + 2 * i;
        assert_eq!(alice.status(id).await.0, 0);
        let attrs = alice.reply().await;
        assert_eq!((attrs.kind, attrs.id), (ATTRS, id + 1));
        // The size is as if each write ran before the fstat that followed it.
        let size = u64::from_be_bytes(attrs.rest[4..12].try_into().unwrap());
        assert_eq!(size, u64::from(i + 1) * 1000);
    }
    let written = std::fs::read(server.home("alice").join("w")).unwrap();
    for i in 0..1000usize {
        assert_eq!(written[i * 1000..(i + 1) * 1000], data(1000, i as u64)[..]);
    }
    alice.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_too_large_to_trust_ends_only_that_channel() {
    let server = two_users().await;
    let mut bob = RawSftp::open(&server, "bob").await;
    bob.init().await;

    // Oversized, with an id: a BAD_MESSAGE for that id, then the channel closes.
    let mut alice = RawSftp::open(&server, "alice").await;
    alice.init().await;
    let mut huge = (1u32 << 30).to_be_bytes().to_vec();
    huge.push(17);
    huge.extend_from_slice(&77u32.to_be_bytes());
    huge.extend_from_slice(&[0; 1000]);
    alice.send(&huge).await;
    let (code, message) = alice.status(77).await;
    assert_eq!(code, BAD_MESSAGE);
    assert!(message.contains("limit"), "{message}");
    assert!(alice.recv().await.is_none(), "the channel is closed");

    // Garbled framing (a length too short for an id): closed without a word.
    let mut alice = RawSftp::open(&server, "alice").await;
    alice.init().await;
    alice.send(&[0, 0, 0, 2, 17, 0]).await;
    assert!(alice.recv().await.is_none());

    // A second INIT.
    let mut alice = RawSftp::open(&server, "alice").await;
    alice.init().await;
    alice.send(&frame(1, &3u32.to_be_bytes())).await;
    assert!(alice.recv().await.is_none());

    // Garbage from the first byte.
    let mut alice = RawSftp::open(&server, "alice").await;
    alice.send(&data(100_000, 3)).await;
    // Whatever it made of that, the channel ends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while alice.recv().await.is_some() {
        assert!(tokio::time::Instant::now() < deadline);
    }

    // Bob never noticed, and alice can come back.
    assert_eq!(bob.realpath(1, ".").await, "/");
    let mut again = RawSftp::open(&server, "alice").await;
    again.init().await;
    assert_eq!(again.realpath(2, ".").await, "/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bytes_through_openssh_ssh_s_sftp() {
    let server = two_users().await;
    let mut input = frame(1, &3u32.to_be_bytes());
    input.extend(frame(16, &body(1, &[&string(b".")])));
    input.extend(frame(99, &body(2, &[])));
    let mut args = server.openssh_args("alice", "-p");
    args.extend(["-s".into(), "127.0.0.1".into(), "sftp".into()]);
    let output = run_with_input("ssh", &args, &input).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // VERSION, then NAME for id 1, then STATUS OP_UNSUPPORTED for id 2.
    let out = output.stdout;
    let mut packets = Vec::new();
    let mut rest = &out[..];
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        packets.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    assert_eq!(packets.len(), 3, "{out:?}");
    assert_eq!(packets[0][0], 2);
    assert_eq!(packets[1][..5], [NAME, 0, 0, 0, 1]);
    assert_eq!(packets[2][..5], [STATUS, 0, 0, 0, 2]);
    assert_eq!(packets[2][5..9], OP_UNSUPPORTED.to_be_bytes());
}
