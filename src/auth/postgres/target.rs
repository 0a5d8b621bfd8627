//! [`Target`]: which PostgreSQL to use, from a `postgres://` URL and an optional
//! password file, shown everywhere without its password.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};

use super::PgError;

/// How long a connection attempt may take before the database counts as down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest password file read.
const MAX_PASSWORD_FILE: u64 = 4096;

/// A PostgreSQL to connect to. `Display` and `Debug` never show the password.
#[derive(Clone)]
pub struct Target {
    config: tokio_postgres::Config,
    shown: String,
}

impl Target {
    /// A pool of up to `max_size` connections to this database, each attempt (connect,
    /// wait for a free one, recycle) bounded by [`CONNECT_TIMEOUT`]. Connects lazily.
    pub(super) fn pool(&self, max_size: usize) -> Result<deadpool_postgres::Pool, PgError> {
        use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
        let manager = Manager::from_config(
            self.config().clone(),
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(max_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|err| PgError::BadUrl(err.to_string()))
    }

    /// Reads `url` (`postgres://user[:password]@host[:port]/db?sslmode=...`, or the
    /// libpq `key=value` form), with the password from `password_file` if given (its
    /// first line). `sslmode` may be `disable` or `prefer`: this build speaks no TLS,
    /// so `require` is refused here rather than failing later at every connection.
    pub fn parse(url: &str, password_file: Option<&Path>) -> Result<Target, PgError> {
        let url = url.trim();
        let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !is_url && !url.contains('=') {
            return Err(PgError::BadUrl(
                "expected postgres://user@host/database".to_owned(),
            ));
        }
        // The driver's messages never repeat the password; keep it that way by saying
        // nothing of the text.
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|err| PgError::BadUrl(err.to_string()))?;
        if let Some(path) = password_file {
            config.password(read_password_file(path)?);
        }
        match config.get_ssl_mode() {
            SslMode::Disable | SslMode::Prefer => {}
            _ => {
                return Err(PgError::BadUrl(
                    "sslmode=require needs TLS, which this build of rsftpd does not speak; \
                     use sslmode=disable or prefer (over a trusted network, a local socket \
                     or an SSH or WireGuard tunnel)"
                        .to_owned(),
                ));
            }
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        if config.get_application_name().is_none() {
            config.application_name("rsftpd");
        }
        let shown = show(&config);
        Ok(Target { config, shown })
    }

    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({})", self.shown)
    }
}

/// `postgres://user@host:port/db`, with `?sslmode=disable` when TLS is off, and no
/// password whatever the URL held.
fn show(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{name}:{port}"),
                None => name,
            }
        })
        .collect();
    let mut shown = String::from("postgres://");
    if let Some(user) = config.get_user() {
        shown.push_str(user);
        shown.push('@');
    }
    shown.push_str(&hosts.join(","));
    if let Some(db) = config.get_dbname() {
        shown.push('/');
        shown.push_str(db);
    }
    if config.get_ssl_mode() == SslMode::Disable {
        shown.push_str("?sslmode=disable");
    }
    shown
}

/// The first line of a password file, which must be private to its owner.
fn read_password_file(path: &Path) -> Result<String, PgError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let unreadable = |source| PgError::PasswordFile {
        path: PathBuf::from(path),
        source,
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mode = file.metadata().map_err(unreadable)?.mode();
    if mode & 0o077 != 0 {
        return Err(PgError::OpenPasswordFile {
            path: path.to_owned(),
            mode: mode & 0o7777,
        });
    }
    let mut text = String::new();
    file.take(MAX_PASSWORD_FILE)
        .read_to_string(&mut text)
        .map_err(unreadable)?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(unreadable(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the first line is empty",
        )));
    }
    Ok(line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_shown() {
        let target =
            Target::parse("postgres://rsftpd:hunter2@db.example:5433/accounts", None).unwrap();
        assert_eq!(
            target.to_string(),
            "postgres://rsftpd@db.example:5433/accounts"
        );
        assert!(!format!("{target:?}").contains("hunter2"));
        let target = Target::parse(
            "host=/run/postgresql user=a password=hunter2 dbname=b sslmode=disable",
            None,
        )
        .unwrap();
        assert_eq!(
            target.to_string(),
            "postgres://a@/run/postgresql/b?sslmode=disable"
        );
    }

    #[test]
    fn bad_urls_and_tls_modes_are_refused() {
        for (url, want) in [
            ("users.toml", "expected postgres://"),
            ("postgres://a@h/db?sslmode=require", "needs TLS"),
            ("postgres://a@h/db?sslmode=bogus", "invalid"),
        ] {
            let err = Target::parse(url, None).unwrap_err().to_string();
            assert!(err.contains(want), "{url}: {err}");
        }
    }

    #[test]
    fn a_password_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\nignored\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Target::parse("postgres://a@h/db", Some(&path)).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let target = Target::parse("postgres://a@h/db", Some(&path)).unwrap();
        assert_eq!(target.config().get_password(), Some(&b"s3cret"[..]));
    }
}
