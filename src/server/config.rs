//! Server settings, the host key, and the russh configuration tuned for throughput.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey};
use russh::{MethodKind, MethodSet, Preferred};

use super::error::ServerError;
use super::proxy::ProxyNet;
use crate::auth::{AccountPolicy, ThrottlePolicy};
use crate::protocol::transport;

/// Everything the server needs to know, with the defaults of a fresh checkout.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub users_file: PathBuf,
    pub storage_dir: PathBuf,
    /// Homes on an object store; `storage_dir` then keeps only the state of uploads.
    pub object_store: Option<crate::storage::object::ObjectStoreConfig>,
    /// With `object_store`: where the states of uploads are kept, when not in
    /// `storage_dir` (PostgreSQL, for a cluster).
    pub upload_states: Option<std::sync::Arc<dyn crate::storage::object::UploadStateStore>>,
    /// Failed logins and bans shared with the other nodes of a cluster (PostgreSQL);
    /// `None` to count them in this process only.
    pub shared_bans: Option<std::sync::Arc<dyn crate::auth::SharedBans>>,
    /// The quota ledger shared with the other nodes of a cluster (PostgreSQL), which
    /// then checks every user's bytes; `None` to check them in this process only.
    pub cluster_quota: Option<std::sync::Arc<dyn crate::storage::ClusterQuota>>,
    pub keys_dir: PathBuf,
    pub limits: Limits,
    /// A session with no application activity for this long is closed: no request, no
    /// byte of a transfer either way. SSH keepalives do not count (see `activity`).
    pub idle_timeout: Duration,
    /// Partial uploads untouched for this long are removed.
    pub partial_max_age: Duration,
    /// Start even when the host key or the users file is open to group or others
    /// (logged as a warning); otherwise such a start is refused.
    pub allow_open_permissions: bool,
    /// Balancers whose connections begin with a PROXY header naming the client; empty
    /// for none. See `proxy`.
    pub proxy_from: Vec<ProxyNet>,
    /// On shutdown, how long sessions may go on to finish by themselves, with no new
    /// connection taken, before the rest are ended. Zero ends them at once.
    pub drain_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 2222)),
            users_file: PathBuf::from("users.toml"),
            storage_dir: PathBuf::from("storage"),
            object_store: None,
            upload_states: None,
            shared_bans: None,
            cluster_quota: None,
            keys_dir: PathBuf::from("keys"),
            limits: Limits::default(),
            idle_timeout: Duration::from_secs(600),
            partial_max_age: Duration::from_secs(7 * 24 * 3600),
            allow_open_permissions: false,
            proxy_from: Vec::new(),
            drain_timeout: Duration::ZERO,
        }
    }
}

/// How much the server takes on at once.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Logged-in sessions on the whole server.
    pub max_sessions: usize,
    /// Logged-in sessions of one user, unless `users.toml` says otherwise for that user;
    /// `None` for no limit.
    pub max_sessions_per_user: Option<usize>,
    /// Connections that have not logged in yet, and those waiting for a slot.
    pub startups: StartupLimits,
    /// How long a connection with a slot may take to send its SSH version line.
    pub version_grace: Duration,
    /// How long a connection with a slot may take to log in before it is dropped.
    pub login_grace: Duration,
    /// How long a connection may wait for a slot before it is closed.
    pub max_wait: Duration,
    /// Password checks running at once (each takes a core for ~30 ms).
    pub max_password_checks: usize,
    /// How long a transfer may make no progress, either way (an upload that receives
    /// nothing, a download or reply the peer does not read), before it fails.
    pub stall_timeout: Duration,
    pub throttle: ThrottlePolicy,
    /// Failed logins per account name, from any address, that slow that account's logins.
    pub account_throttle: AccountPolicy,
    /// Bytes of buffered request and reply data on the whole server, shared fairly by
    /// the connections logged in; see `budget`.
    pub memory_budget: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 100,
            max_sessions_per_user: None,
            startups: StartupLimits::default(),
            version_grace: Duration::from_secs(10),
            login_grace: Duration::from_secs(60),
            max_wait: Duration::from_secs(60),
            max_password_checks: 4,
            stall_timeout: crate::storage::stream::STALL_TIMEOUT,
            throttle: ThrottlePolicy::default(),
            account_throttle: AccountPolicy::default(),
            memory_budget: super::budget::DEFAULT_BUDGET,
        }
    }
}

/// Caps on connections that have not logged in, after OpenSSH's `MaxStartups
/// begin:rate:full`: below `begin` all are let in; from `begin`, a new one is dropped
/// with probability `rate`%, growing linearly to 100% at `full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartupLimits {
    pub begin: usize,
    /// Percent, 0 to 100.
    pub rate: u8,
    pub full: usize,
    /// Slots one address (IPv6: one /64) may hold; more connections wait.
    pub per_peer: usize,
    /// Connections waiting for a slot, in all and per address; more are closed.
    pub max_waiting: usize,
    pub max_waiting_per_peer: usize,
}

impl Default for StartupLimits {
    fn default() -> Self {
        StartupLimits {
            begin: 10,
            rate: 30,
            full: 100,
            per_peer: 8,
            max_waiting: 256,
            max_waiting_per_peer: 64,
        }
    }
}

impl StartupLimits {
    /// The chance that a new connection is dropped while `total` hold slots.
    pub fn drop_probability(&self, total: usize) -> f64 {
        if total < self.begin {
            return 0.0;
        }
        if total >= self.full {
            return 1.0;
        }
        let rate = f64::from(self.rate) / 100.0;
        let span = (self.full - self.begin) as f64;
        rate + (1.0 - rate) * (total - self.begin) as f64 / span
    }

    /// The `begin:rate:full` part, as the flag takes it.
    pub fn spec(&self) -> String {
        format!("{}:{}:{}", self.begin, self.rate, self.full)
    }
}

/// A `--max-startups` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected N or BEGIN:RATE:FULL with BEGIN <= FULL and RATE a percentage, got {0:?}")]
pub struct BadStartupLimits(String);

impl std::str::FromStr for StartupLimits {
    type Err = BadStartupLimits;

    /// `N` (a hard cap of N) or `begin:rate:full`; the other fields keep their defaults.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadStartupLimits(text.to_owned());
        let numbers: Vec<&str> = text.split(':').collect();
        let (begin, rate, full) = match numbers[..] {
            [n] => {
                let n = n.parse().map_err(|_| bad())?;
                (n, 100, n)
            }
            [begin, rate, full] => (
                begin.parse().map_err(|_| bad())?,
                rate.parse().map_err(|_| bad())?,
                full.parse().map_err(|_| bad())?,
            ),
            _ => return Err(bad()),
        };
        if begin > full || rate > 100 || full == 0 {
            return Err(bad());
        }
        Ok(StartupLimits {
            begin,
            rate,
            full,
            ..StartupLimits::default()
        })
    }
}

const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";

/// Where the host key lives in `keys_dir`.
pub fn host_key_path(keys_dir: &Path) -> PathBuf {
    keys_dir.join(HOST_KEY_FILE)
}

/// Loads the ed25519 host key from `keys_dir`, creating the folder and the key on first
/// start. Returns the key and whether it was just created.
pub fn load_or_create_host_key(keys_dir: &Path) -> Result<(PrivateKey, bool), ServerError> {
    let path = host_key_path(keys_dir);
    if path.exists() {
        let key =
            russh::keys::load_secret_key(&path, None).map_err(|source| ServerError::HostKey {
                path: path.clone(),
                message: source.to_string(),
            })?;
        return Ok((key, false));
    }
    create_private_dir(keys_dir)?;
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).map_err(|source| {
        ServerError::HostKey {
            path: path.clone(),
            message: source.to_string(),
        }
    })?;
    // Each file is written aside and renamed into place, so that a crash never leaves a
    // half-written key, and whoever reads the public key sees it whole or not at all.
    let failed = |source: &dyn std::fmt::Display| ServerError::HostKey {
        path: path.clone(),
        message: source.to_string(),
    };
    let aside = path.with_extension("new");
    key.write_openssh_file(&aside, LineEnding::LF)
        .map_err(|e| failed(&e))?;
    std::fs::rename(&aside, &path).map_err(|e| failed(&e))?;
    let public = key.public_key().to_openssh().unwrap_or_default();
    let public_path = keys_dir.join(format!("{HOST_KEY_FILE}.pub"));
    let aside = public_path.with_extension("pub.new");
    if std::fs::write(&aside, public + "\n").is_ok() {
        let _ = std::fs::rename(&aside, &public_path);
    }
    Ok((key, true))
}

fn create_private_dir(dir: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| ServerError::Io {
            path: dir.to_owned(),
            source,
        })
}

/// The russh configuration: the shared transport tuning (big window and packets,
/// AES-GCM first), TCP_NODELAY, and a deeper event queue: with russh's default of 10,
/// downloads stalled on the session loop.
pub fn russh_config(settings: &Settings, host_key: PrivateKey) -> russh::server::Config {
    let preferred = Preferred {
        cipher: Cow::Borrowed(transport::CIPHERS),
        ..Preferred::default()
    };
    russh::server::Config {
        methods: MethodSet::from(&[MethodKind::Password, MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_secs(1),
        // OpenSSH probes with "none" first; answer that at once.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        window_size: transport::WINDOW_SIZE,
        maximum_packet_size: transport::MAX_PACKET,
        channel_buffer_size: transport::CHANNEL_BUFFER,
        event_buffer_size: 64,
        preferred,
        max_auth_attempts: 6,
        // A backstop only (it also bounds a write to a peer that does not read its
        // socket): russh counts every SSH message, keepalives too, so the idle timeout
        // users meet is the connection's activity watchdog (see `activity`).
        inactivity_timeout: Some(settings.idle_timeout),
        nodelay: true,
        ..Default::default()
    }
}
