//! Public keys that may log in, written as OpenSSH `authorized_keys` lines.
//!
//! A key matches by its key data alone. The comment (`alice@laptop`) is a label for
//! people and plays no part in authentication.

use std::fmt;

use russh::keys::PublicKey;
use russh::keys::ssh_key::authorized_keys::Entry;
use russh::keys::ssh_key::{self, HashAlg};

/// Why an `authorized_keys` line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("this is a private key; give the public key (the .pub file) instead")]
    PrivateKey,
    #[error("not a public key line (expected \"ssh-ed25519 AAAA... comment\"): {0}")]
    Malformed(ssh_key::Error),
}

/// A public key allowed to log in, with the comment it was written with.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizedKey {
    key: PublicKey,
    /// `key` as one OpenSSH line, made at parse time so that writing it never fails.
    openssh: String,
    /// The options field, if the line had one. Kept only to warn that it has no effect.
    options: Option<String>,
}

impl AuthorizedKey {
    /// Parses one `authorized_keys` line: `[options] keytype base64 [comment]`.
    ///
    /// Blank lines and `#` comment lines give `Ok(None)`.
    ///
    /// Options before the key type (`from="..."`, `command="..."`, `restrict`, ...) are
    /// accepted but **ignored**: rsftpd never runs commands or forwards ports, and it does
    /// not enforce `from=` or `expiry-time=`. [`AuthorizedKey::options`] tells the caller
    /// that a line had some, so it can warn.
    pub fn parse_line(line: &str) -> Result<Option<AuthorizedKey>, KeyError> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(None);
        }
        if line.starts_with("-----BEGIN") {
            return Err(KeyError::PrivateKey);
        }
        let entry: Entry = line.parse().map_err(KeyError::Malformed)?;
        let options = entry.config_opts();
        let options = (!options.is_empty()).then(|| options.as_str().to_owned());
        let key = entry.public_key().clone();
        let openssh = key.to_openssh().map_err(KeyError::Malformed)?;
        Ok(Some(AuthorizedKey {
            key,
            openssh,
            options,
        }))
    }

    /// True if `key` has the same key data (algorithm and public key bytes); comments are
    /// not compared.
    pub fn matches(&self, key: &PublicKey) -> bool {
        self.key.key_data() == key.key_data()
    }

    /// The SHA-256 fingerprint as OpenSSH shows it: `SHA256:` and unpadded base64.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// The key as one OpenSSH line, `keytype base64 comment`, without any options.
    pub fn to_openssh_line(&self) -> String {
        self.openssh.clone()
    }

    /// The comment after the key data; empty if there was none.
    pub fn comment(&self) -> &str {
        self.key.comment().as_str_lossy()
    }

    /// The options field of the line (ignored), if it had one.
    pub fn options(&self) -> Option<&str> {
        self.options.as_deref()
    }

    /// The public key itself.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }
}

impl fmt::Debug for AuthorizedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizedKey")
            .field("algorithm", &self.key.algorithm().as_str())
            .field("fingerprint", &self.fingerprint())
            .field("comment", &self.comment())
            .finish()
    }
}

/// Parses the text of an `authorized_keys` file: one key per line; blank lines and `#`
/// comments are skipped. On error, gives the 1-based number of the first bad line.
pub fn parse_file_text(text: &str) -> Result<Vec<AuthorizedKey>, (usize, KeyError)> {
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if let Some(key) = AuthorizedKey::parse_line(line).map_err(|err| (index + 1, err))? {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// A fresh Ed25519 public key with `comment`, for the tests of the account modules.
#[cfg(test)]
pub(crate) fn new_key(comment: &str) -> PublicKey {
    use russh::keys::{Algorithm, PrivateKey};
    let mut key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .unwrap()
        .public_key()
        .clone();
    key.set_comment(comment);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_plain_line_and_round_trips() {
        let public = new_key("alice@laptop");
        let line = public.to_openssh().unwrap();
        let key = AuthorizedKey::parse_line(&line).unwrap().unwrap();
        assert_eq!(key.comment(), "alice@laptop");
        assert_eq!(key.to_openssh_line(), line);
        assert_eq!(key.options(), None);
        assert!(key.matches(&public));
        assert_eq!(key.public_key(), &public);
    }

    #[test]
    fn fingerprint_looks_like_openssh() {
        let public = new_key("");
        let key = AuthorizedKey::parse_line(&public.to_openssh().unwrap())
            .unwrap()
            .unwrap();
        let fingerprint = key.fingerprint();
        // "SHA256:" then 32 bytes in unpadded base64.
        assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
        assert_eq!(fingerprint.len(), "SHA256:".len() + 43);
        assert_eq!(fingerprint, public.fingerprint(HashAlg::Sha256).to_string());
    }

    #[test]
    fn matching_ignores_comments() {
        let public = new_key("alice@laptop");
        let line = public.to_openssh().unwrap();
        let key = AuthorizedKey::parse_line(&line.replace("alice@laptop", "someone else"))
            .unwrap()
            .unwrap();
        assert_eq!(key.comment(), "someone else");
        assert!(key.matches(&public));
        let mut renamed = public.clone();
        renamed.set_comment("");
        assert!(key.matches(&renamed));
        assert!(!key.matches(&new_key("alice@laptop")));
    }

    #[test]
    fn accepts_and_records_options() {
        let public = new_key("bob");
        let line = format!(
            "from=\"10.0.0.0/8\",no-pty {}",
            public.to_openssh().unwrap()
        );
        let key = AuthorizedKey::parse_line(&line).unwrap().unwrap();
        assert_eq!(key.options(), Some("from=\"10.0.0.0/8\",no-pty"));
        assert!(key.matches(&public));
        assert_eq!(key.to_openssh_line(), public.to_openssh().unwrap());
    }

    #[test]
    fn skips_blank_and_comment_lines() {
        assert_eq!(AuthorizedKey::parse_line(""), Ok(None));
        assert_eq!(AuthorizedKey::parse_line("   \t"), Ok(None));
        assert_eq!(AuthorizedKey::parse_line("  # ssh-ed25519 AAAA"), Ok(None));
    }

    #[test]
    fn rejects_garbage_and_private_keys() {
        for bad in [
            "hello world",
            "ssh-ed25519",
            "ssh-ed25519 AAAAnotbase64!!",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ",
            "ssh-foo AAAAC3NzaC1lZDI1NTE5 x",
        ] {
            assert!(
                matches!(AuthorizedKey::parse_line(bad), Err(KeyError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            AuthorizedKey::parse_line("-----BEGIN OPENSSH PRIVATE KEY-----"),
            Err(KeyError::PrivateKey)
        );
    }

    #[test]
    fn parses_a_file_and_names_the_bad_line() {
        let (a, b) = (new_key("a"), new_key("b"));
        let text = format!(
            "# keys for alice\n\n{}\r\n  {}  \n",
            a.to_openssh().unwrap(),
            b.to_openssh().unwrap()
        );
        let keys = parse_file_text(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys[0].matches(&a) && keys[1].matches(&b));

        let text = format!("# keys\n{}\nnot a key\n", a.to_openssh().unwrap());
        let (line, err) = parse_file_text(&text).unwrap_err();
        assert_eq!(line, 3);
        assert!(matches!(err, KeyError::Malformed(_)));
        assert_eq!(parse_file_text("").unwrap().len(), 0);
    }
}
