//! Logging in the way `ssh` does: keys first, then a password, asking a person only
//! when there is one to ask.
//!
//! The order is: the identities given with `-i` (and nothing else of the key kind, so a
//! full agent cannot use up the server's attempts); or else the ssh-agent and then the
//! usual key files in `~/.ssh`. Last comes the password, from a file or the environment
//! for automation, or from a prompt without echo.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{ClientError, Connection};
use crate::auth::Secret;

/// The key files tried when no `-i` is given, in order, under `~/.ssh`.
pub const DEFAULT_KEY_FILES: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// Where a password may come from.
pub enum PasswordSource {
    /// Given up front (`--password-file`, `RSFTP_PASSWORD`): tried once.
    Given(Secret),
    /// Asked for, if [`Ask`] can ask.
    Prompt,
}

/// How to log in.
pub struct LoginPlan {
    /// Key files from `-i`. When non-empty, the agent and default files are not tried.
    pub identities: Vec<PathBuf>,
    /// The default key files, tried (after the agent) when `identities` is empty.
    pub default_identities: Vec<PathBuf>,
    /// Whether to ask the ssh-agent (when `identities` is empty).
    pub use_agent: bool,
    pub password: PasswordSource,
}

impl LoginPlan {
    /// `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`, where `home` is the home directory.
    pub fn default_key_files(home: Option<&Path>) -> Vec<PathBuf> {
        home.map(|home| {
            DEFAULT_KEY_FILES
                .iter()
                .map(|name| home.join(".ssh").join(name))
                .collect()
        })
        .unwrap_or_default()
    }
}

/// Asks a person for secrets. Each method returns `None` when there is nobody to ask
/// (no terminal) or they gave up.
pub trait Ask {
    fn passphrase(&self, key: &Path) -> Option<Secret>;
    fn password(&self, user: &str, host: &str) -> Option<Secret>;
    /// Whether there is a person to ask at all.
    fn can_ask(&self) -> bool;
    /// Tells the person something about their answer ("try again").
    fn tell(&self, _message: &str) {}
}

/// Asks nobody: for tests and for callers that have every secret up front.
pub struct NoOneToAsk;

impl Ask for NoOneToAsk {
    fn passphrase(&self, _key: &Path) -> Option<Secret> {
        None
    }
    fn password(&self, _user: &str, _host: &str) -> Option<Secret> {
        None
    }
    fn can_ask(&self) -> bool {
        false
    }
}

/// How a login succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginMethod {
    Key(PathBuf),
    Agent,
    Password,
}

impl fmt::Display for LoginMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginMethod::Key(path) => write!(f, "key {}", path.display()),
            LoginMethod::Agent => f.write_str("ssh-agent"),
            LoginMethod::Password => f.write_str("password"),
        }
    }
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// The server said no to everything we had. `tried` says what that was.
    #[error("authentication failed for {user}@{host} (tried: {tried})")]
    Rejected {
        user: String,
        host: String,
        tried: String,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// How many times a person may retype a passphrase or password.
const ATTEMPTS: usize = 3;

/// Loads a key, asking for its passphrase if it is encrypted. `Err` says why it could
/// not be used, for the list of what was tried.
fn load_key(path: &Path, ask: &dyn Ask) -> Result<russh::keys::PrivateKey, String> {
    match russh::keys::load_secret_key(path, None) {
        Ok(key) => return Ok(key),
        Err(russh::keys::Error::KeyIsEncrypted) => {}
        Err(err) => return Err(format!("key {}: {err}", path.display())),
    }
    if !ask.can_ask() {
        return Err(format!(
            "key {} (encrypted, and no terminal to ask for its passphrase)",
            path.display()
        ));
    }
    for _ in 0..ATTEMPTS {
        let Some(passphrase) = ask.passphrase(path) else {
            break;
        };
        match russh::keys::load_secret_key(path, Some(passphrase.expose())) {
            Ok(key) => return Ok(key),
            Err(err) => ask.tell(&format!(
                "cannot decrypt {} (wrong passphrase?): {err}",
                path.display()
            )),
        }
    }
    Err(format!(
        "key {} (encrypted; no passphrase that opens it)",
        path.display()
    ))
}

/// Logs `conn` in by the plan. Returns how it got in, or everything it tried.
pub async fn log_in(
    conn: &mut Connection,
    plan: &LoginPlan,
    ask: &dyn Ask,
) -> Result<LoginMethod, LoginError> {
    let mut tried: Vec<String> = Vec::new();

    let (keys, use_agent, quiet_missing) = if plan.identities.is_empty() {
        (&plan.default_identities, plan.use_agent, true)
    } else {
        (&plan.identities, false, false)
    };
    if use_agent && std::env::var_os("SSH_AUTH_SOCK").is_some() {
        if conn.login_agent().await? {
            return Ok(LoginMethod::Agent);
        }
        tried.push("ssh-agent".into());
    }
    for path in keys {
        if quiet_missing && !path.exists() {
            continue;
        }
        match load_key(path, ask) {
            Ok(key) => {
                if conn.login_key(key).await? {
                    return Ok(LoginMethod::Key(path.clone()));
                }
                tried.push(format!("key {}", path.display()));
            }
            Err(why) => tried.push(why),
        }
    }

    match &plan.password {
        PasswordSource::Given(password) => {
            if conn.login_password(password).await? {
                return Ok(LoginMethod::Password);
            }
            tried.push("password".into());
        }
        PasswordSource::Prompt if ask.can_ask() => {
            let mut asked = false;
            for _ in 0..ATTEMPTS {
                let Some(password) = ask.password(conn.user(), conn.host()) else {
                    break;
                };
                asked = true;
                if conn.login_password(&password).await? {
                    return Ok(LoginMethod::Password);
                }
                ask.tell("Permission denied, please try again.");
            }
            if asked {
                tried.push("password".into());
            }
        }
        PasswordSource::Prompt => tried.push(
            "no password: no terminal to ask on; use --password-file or RSFTP_PASSWORD".into(),
        ),
    }
    let tried = if tried.is_empty() {
        "nothing: no key and no password".to_owned()
    } else {
        tried.join(", ")
    };
    Err(LoginError::Rejected {
        user: conn.user().to_owned(),
        host: conn.host().to_owned(),
        tried,
    })
}
