//! Who may log in, and how: the `users.toml` accounts, password hashes, authorized keys
//! and failed-login throttling.
//!
//! Nothing here knows about SSH sessions. The server asks [`UsersConfig`] for an account,
//! checks a password with [`PasswordChecker`] (off the async reactor, with a concurrency
//! cap, and as slowly for unknown users as for known ones) or a key with
//! [`AuthorizedKey::matches`], and consults [`LoginThrottle`] before and after.
//!
//! - `size`: human sizes for quotas (`"1.5 GiB"`).
//! - `users`: the `users.toml` model, strict parsing with line numbers; `starter`: the
//!   commented file with one account that a first start writes.
//! - `edit`: [`UsersFile`], locked, validated, atomic edits of `users.toml` that keep its
//!   comments (for `rsftpd user ...`).
//! - `password`: [`Secret`], [`PasswordHash`], Argon2id hashing and verification.
//! - `keys`: `authorized_keys` lines, matched by key data.
//! - `throttle`: failed logins per peer, bans; `account_score`: failed logins per account
//!   name from any peer, which slow that account's logins from untrusted sources.
//! - `store`: [`AccountStore`], the seam through which a server finds accounts and hears
//!   of changes; `watched`: [`WatchedUsersFile`], its `users.toml` implementation, which
//!   reloads the file when its content changes.
//! - `postgres`: accounts in PostgreSQL for a cluster of nodes: [`postgres::PgAccounts`]
//!   (the store, live through `LISTEN/NOTIFY`), [`postgres::PgEditor`] (the editor),
//!   the schema migrations, and export to a users.toml.

mod account_score;
mod edit;
mod keys;
mod password;
pub mod postgres;
mod size;
mod starter;
mod store;
mod throttle;
mod users;
mod watched;

pub use account_score::{AccountPolicy, AccountScore, MAX_SCORED_ACCOUNTS, MAX_TRUSTED_SOURCES};
pub use edit::{
    DEFAULT_QUOTA, EditError, KeySource, LOCK_WAIT, NewAccount, UsersFile, parse_keys,
    users_lock_path,
};
pub use keys::{AuthorizedKey, KeyError, parse_file_text};
pub use password::{
    AuthError, PasswordChecker, PasswordHash, Secret, hash_password, verify_password,
};
pub use size::{SizeError, format_size, parse_size};
pub use starter::create_starter_file;
pub use store::{AccountStore, SessionLease, SessionRefusal, StoreKind};
pub use throttle::{LoginThrottle, MAX_TRACKED_PEERS, SharedBans, ThrottlePolicy};
pub use users::{
    Location, MAX_USER_NAME_LEN, UserAccount, UserName, UserNameError, UsersConfig, UsersError,
    UsersProblem,
};
pub use watched::{SETTLE, Version, WatchedUsersFile};
