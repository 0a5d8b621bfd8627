//! Server settings, the host key, and the russh configuration tuned for throughput.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey};
use russh::{MethodKind, MethodSet, Preferred};

use super::ServerError;
use crate::auth::ThrottlePolicy;
use crate::protocol::transport;

/// Everything the server needs to know, with the defaults of a fresh checkout.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub users_file: PathBuf,
    pub storage_dir: PathBuf,
    pub keys_dir: PathBuf,
    pub limits: Limits,
    /// A session with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Partial uploads untouched for this long are removed.
    pub partial_max_age: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 2222)),
            users_file: PathBuf::from("users.toml"),
            storage_dir: PathBuf::from("storage"),
            keys_dir: PathBuf::from("keys"),
            limits: Limits::default(),
            idle_timeout: Duration::from_secs(600),
            partial_max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// How much the server takes on at once.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Logged-in sessions on the whole server.
    pub max_sessions: usize,
    /// Logged-in sessions of one user, unless `users.toml` says otherwise for that user.
    pub max_sessions_per_user: usize,
    /// Connections that have not logged in yet.
    pub max_startups: usize,
    /// Connections that have not logged in yet, from one address.
    pub max_startups_per_peer: usize,
    /// How long a connection may take to log in before it is dropped.
    pub login_grace: Duration,
    /// Password checks running at once (each takes a core for ~30 ms).
    pub max_password_checks: usize,
    pub throttle: ThrottlePolicy,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 100,
            max_sessions_per_user: 10,
            max_startups: 32,
            max_startups_per_peer: 8,
            login_grace: Duration::from_secs(60),
            max_password_checks: 4,
            throttle: ThrottlePolicy::default(),
        }
    }
}

const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";

/// Loads the ed25519 host key from `keys_dir`, creating the folder and the key on first
/// start. Returns the key and whether it was just created.
pub fn load_or_create_host_key(keys_dir: &Path) -> Result<(PrivateKey, bool), ServerError> {
    let path = keys_dir.join(HOST_KEY_FILE);
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
    key.write_openssh_file(&path, LineEnding::LF)
        .map_err(|source| ServerError::HostKey {
            path: path.clone(),
            message: source.to_string(),
        })?;
    let public = key.public_key().to_openssh().unwrap_or_default();
    let _ = std::fs::write(keys_dir.join(format!("{HOST_KEY_FILE}.pub")), public + "\n");
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
        inactivity_timeout: Some(settings.idle_timeout),
        nodelay: true,
        ..Default::default()
    }
}
