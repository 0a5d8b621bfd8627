//! Where to connect, and as whom: `[user@]host[:port]`, or the classic `-s HOST -P PORT
//! -u USER` flags, with the user defaulting to `$USER` and the port to 2222.
//!
//! The default port is rsftpd's, 2222, not ssh's 22: this client only talks to the
//! `rsftp` subsystem, which only rsftpd serves, and rsftpd listens on 2222 unless told
//! otherwise. A server on another port is reached with `host:port` or `-P`.

/// The port rsftpd listens on by default.
pub const DEFAULT_PORT: u16 = 2222;

/// A host to connect to, and the user to log in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub user: String,
    pub host: String,
    pub port: u16,
}

/// Why a destination makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    #[error("no host given: rsftp [user@]host[:port] (or -s HOST)")]
    NoHost,
    #[error("the host is given twice ({0} and {1})")]
    HostTwice(String, String),
    #[error("the user is given twice ({0} and {1})")]
    UserTwice(String, String),
    #[error("the port is given twice ({0} and {1})")]
    PortTwice(u16, u16),
    #[error("{0:?} is not a port number (1-65535)")]
    BadPort(String),
    #[error("empty user name in {0:?}")]
    EmptyUser(String),
    #[error("empty host name in {0:?}")]
    EmptyHost(String),
    #[error("no user given and $USER is not set; use user@host or -u USER")]
    NoUser,
}

/// The parts of `[user@]host[:port]`. IPv6 addresses go in brackets when a port
/// follows (`[::1]:2222`); a bare address with several colons is taken whole.
pub fn parse_destination(text: &str) -> Result<(Option<String>, String, Option<u16>), TargetError> {
    let (user, rest) = match text.rsplit_once('@') {
        Some(("", _)) => return Err(TargetError::EmptyUser(text.to_owned())),
        Some((user, rest)) => (Some(user.to_owned()), rest),
        None => (None, text),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        match inner.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, port)) => match port.strip_prefix(':') {
                Some(port) => (host, Some(parse_port(port)?)),
                None => return Err(TargetError::BadPort(port.to_owned())),
            },
            None => return Err(TargetError::EmptyHost(text.to_owned())),
        }
    } else {
        match rest.split_once(':') {
            Some((host, port)) if !port.contains(':') => (host, Some(parse_port(port)?)),
            _ => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(TargetError::EmptyHost(text.to_owned()));
    }
    Ok((user, host.to_owned(), port))
}

fn parse_port(text: &str) -> Result<u16, TargetError> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(TargetError::BadPort(text.to_owned())),
    }
}

impl Target {
    /// Puts a destination and the classic flags together. `env_user` is `$USER`.
    pub fn resolve(
        destination: Option<&str>,
        server: Option<&str>,
        user: Option<&str>,
        port: Option<u16>,
        env_user: Option<String>,
    ) -> Result<Target, TargetError> {
        let (dest_user, dest_host, dest_port) = match destination {
            Some(text) => {
                let (u, h, p) = parse_destination(text)?;
                (u, Some(h), p)
            }
            None => (None, None, None),
        };
        let host = match (dest_host, server) {
            (Some(a), Some(b)) if a != b => return Err(TargetError::HostTwice(a, b.to_owned())),
            (Some(host), _) => host,
            (None, Some(host)) => host.to_owned(),
            (None, None) => return Err(TargetError::NoHost),
        };
        let user = match (dest_user, user) {
            (Some(a), Some(b)) if a != b => return Err(TargetError::UserTwice(a, b.to_owned())),
            (Some(user), _) => user,
            (None, Some(user)) => user.to_owned(),
            (None, None) => env_user
                .filter(|u| !u.is_empty())
                .ok_or(TargetError::NoUser)?,
        };
        let port = match (dest_port, port) {
            (Some(a), Some(b)) if a != b => return Err(TargetError::PortTwice(a, b)),
            (Some(port), _) | (None, Some(port)) => port,
            (None, None) => DEFAULT_PORT,
        };
        Ok(Target { user, host, port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(parse_destination("host"), Ok((None, "host".into(), None)));
        assert_eq!(
            parse_destination("alice@host:2200"),
            Ok((Some("alice".into()), "host".into(), Some(2200)))
        );
        assert_eq!(
            parse_destination("[::1]:2222"),
            Ok((None, "::1".into(), Some(2222)))
        );
        assert_eq!(parse_destination("::1"), Ok((None, "::1".into(), None)));
        assert_eq!(
            parse_destination("bob@[fe80::1]"),
            Ok((Some("bob".into()), "fe80::1".into(), None))
        );
    }

    #[test]
    fn rejects_nonsense() {
        assert!(matches!(
            parse_destination("@host"),
            Err(TargetError::EmptyUser(_))
        ));
        assert!(matches!(
            parse_destination("alice@"),
            Err(TargetError::EmptyHost(_))
        ));
        assert!(matches!(
            parse_destination("host:0"),
            Err(TargetError::BadPort(_))
        ));
        assert!(matches!(
            parse_destination("host:http"),
            Err(TargetError::BadPort(_))
        ));
        assert!(matches!(
            parse_destination("[::1"),
            Err(TargetError::EmptyHost(_))
        ));
    }

    #[test]
    fn combines_destination_and_classic_flags() {
        let env = || Some("me".to_owned());
        let t = Target::resolve(Some("h"), None, None, None, env()).unwrap();
        assert_eq!(
            (t.user.as_str(), t.host.as_str(), t.port),
            ("me", "h", DEFAULT_PORT)
        );
        let t = Target::resolve(None, Some("h"), Some("u"), Some(22), env()).unwrap();
        assert_eq!((t.user.as_str(), t.host.as_str(), t.port), ("u", "h", 22));
        let t = Target::resolve(Some("a@h:1"), None, Some("a"), Some(1), None).unwrap();
        assert_eq!((t.user.as_str(), t.port), ("a", 1));
        assert_eq!(
            Target::resolve(Some("a@h"), None, Some("b"), None, None),
            Err(TargetError::UserTwice("a".into(), "b".into()))
        );
        assert_eq!(
            Target::resolve(Some("h:1"), None, None, Some(2), env()),
            Err(TargetError::PortTwice(1, 2))
        );
        assert_eq!(
            Target::resolve(None, None, None, None, env()),
            Err(TargetError::NoHost)
        );
        assert_eq!(
            Target::resolve(Some("h"), None, None, None, None),
            Err(TargetError::NoUser)
        );
    }
}
