//! Who may log in, and how: the `users.toml` accounts, password hashes, authorized keys
//! and failed-login throttling.

mod size;

pub use size::{SizeError, format_size, parse_size};
