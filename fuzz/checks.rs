//! What each fuzz target checks, in one place: the libFuzzer targets in `fuzz_targets/`
//! and the corpus replay in `tests/fuzz_corpus.rs` both include this file, so CI checks
//! every saved input exactly as the fuzzer did. Each function must not panic for any
//! input; the parsers' own errors are expected and ignored.

use std::path::Path;

use rsftp::auth::{AuthorizedKey, UsersConfig, parse_file_text};
use rsftp::protocol::sftp::{Incoming, Reply};
use rsftp::protocol::{MAX_LINE, Request};
use rsftp::server::scp::{Control, parse_control};
use rsftp::server::{ExecCommand, split_words};

/// An rsftp/1 request line, as the server reads it (newline removed).
pub fn request_line(line: &[u8]) {
    // The server never hands the parser a longer line.
    if line.len() > MAX_LINE {
        return;
    }
    if let Ok(request) = Request::parse(line) {
        // The client sends lines built with Display, newline included: what we print
        // must parse back to the same request.
        let printed = request.to_string();
        let again = Request::parse(printed.strip_suffix('\n').unwrap_or(&printed).as_bytes());
        assert_eq!(again.as_ref(), Ok(&request), "round trip of {printed:?}");
    }
}

/// One SFTP packet, as framed on the channel (without its length field).
pub fn sftp_packet(packet: &[u8]) {
    // A request decoded by the server encodes back to the same request.
    if let Ok(Incoming::Request { id, request }) = Incoming::decode(packet.to_vec()) {
        let again = Incoming::decode(request.encode(id)[4..].to_vec());
        assert_eq!(
            again,
            Ok(Incoming::Request { id, request }),
            "re-encoded request"
        );
    }
    // The same bytes from a server are a reply to a client.
    let _ = Reply::decode(packet.to_vec());
}

/// One SCP control line, newline removed. A record we accept encodes back to a line
/// that parses to the same record (messages excepted: their line breaks become spaces).
pub fn scp_control(line: &[u8]) {
    if let Ok(control) = parse_control(line) {
        if matches!(control, Control::Warning(_) | Control::Fatal(_)) {
            return;
        }
        let encoded = control.encode();
        let again = parse_control(encoded.strip_suffix(b"\n").unwrap_or(&encoded));
        assert_eq!(again.as_ref(), Ok(&control), "round trip of {control:?}");
    }
}

/// The command line of an SSH `exec` request.
pub fn exec_command(command: &[u8]) {
    let _ = ExecCommand::from_command(command);
    if let Ok(text) = std::str::from_utf8(command) {
        let _ = split_words(text);
    }
}

/// The text of `users.toml`. The origin names a folder that does not exist, so an
/// `authorized_keys_file` in the input reads nothing from the machine.
pub fn users_toml(text: &[u8]) {
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let origin = Path::new("/nonexistent-rsftp-fuzz/users.toml");
    if let Ok(users) = UsersConfig::parse(text, origin) {
        let _ = users.warnings();
    }
}

/// The text of an `authorized_keys` file, and each of its lines alone.
pub fn authorized_keys(text: &[u8]) {
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let _ = parse_file_text(text);
    for line in text.lines() {
        if let Ok(Some(key)) = AuthorizedKey::parse_line(line) {
            // A key we accept prints as a line we accept again, as `rsftpd user` writes it.
            let again = AuthorizedKey::parse_line(&key.to_openssh_line());
            assert!(
                matches!(again, Ok(Some(ref k)) if k.matches(key.public_key())),
                "round trip of {line:?}"
            );
        }
    }
}

// scp_control: the SCP control-line parser (`C0644 12 name`, `D0755 0 dir`, `E`,
// `T<mtime> 0 <atime> 0`) gets its check here, a target in `fuzz_targets/scp_control.rs`,
// a `[[bin]]` in Cargo.toml and a corpus in `corpus/scp_control/`, once that parser
// exists in src/.

/// The first bytes of a connection from a balancer (`src/protocol/proxy.rs`), fed the way
/// the server reads them: exactly what the parser asks for, never past the header, and
/// never past [`rsftp::protocol::proxy::MAX_V2`]; a header found names the client in a
/// way that a v1 line can say again.
pub fn proxy_header(data: &[u8]) {
    use rsftp::protocol::proxy::{Progress, fuzz_feed, parse};
    let Some(header) = fuzz_feed(data) else {
        return;
    };
    // What came before the end is a header of the same length by itself.
    assert_eq!(
        parse(&data[..header.len]),
        Ok(Progress::Done(header)),
        "the header alone parses the same"
    );
    if let (1, Some((source, destination))) = (header.version, header.addresses) {
        let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
        let line = format!(
            "PROXY {family} {} {} {} {}\r\n",
            source.ip(),
            destination.ip(),
            source.port(),
            destination.port()
        );
        let again = fuzz_feed(line.as_bytes()).expect("a printed v1 line parses");
        assert_eq!(again.addresses, header.addresses, "round trip of {line:?}");
    }
}
