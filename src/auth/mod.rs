//! Who may log in, and how: the `users.toml` accounts, password hashes, authorized keys
//! and failed-login throttling.

mod password;
mod size;

pub use password::{
    AuthError, PasswordChecker, PasswordHash, Secret, hash_password, verify_password,
};
pub use size::{SizeError, format_size, parse_size};
