//! Who may log in, and how: the `users.toml` accounts, password hashes, authorized keys
//! and failed-login throttling.

mod keys;
mod password;
mod size;
mod throttle;

pub use keys::{AuthorizedKey, KeyError, parse_file_text};
pub use password::{
    AuthError, PasswordChecker, PasswordHash, Secret, hash_password, verify_password,
};
pub use size::{SizeError, format_size, parse_size};
pub use throttle::{LoginThrottle, MAX_TRACKED_PEERS, ThrottlePolicy};
