//! rsftp: an SSH file-transfer server (`rsftpd`) and client (`rsftp`).
//!
//! Users log in over SSH with a password or a public key, are confined to their own home
//! under `storage/<user>/`, and have their own disk quota. Two SSH subsystems share one
//! storage core: `rsftp` (our own line protocol, see `docs/PROTOCOL.md`) and `sftp`.
//!
//! # Layout
//!
//! - [`protocol`]: the wire formats, with no I/O: rsftp/1 (request lines, quoting, status
//!   lines), SFTP v3 in both directions (`protocol::sftp`), and the SSH transport
//!   settings both ends share.
//! - [`storage`]: no SSH. [`storage::HomeDir`] is the policy of a home (virtual paths,
//!   the quota ledger, busy marks, the hidden staging area for partial uploads) over the
//!   backend seam, [`storage::Backend`] (`storage/backend.rs`: namespace, open files,
//!   staged uploads that publish on completion), with two implementations:
//!   `storage/posix/` (cap-std, beneath a handle on the home) and [`storage::object`]
//!   (an S3-compatible bucket through `object_store`: keys from virtual paths, multipart
//!   uploads resumed from saved states, ranged reads).
//!   Reads go through [`storage::ReadHandle`]; also streaming file data with MD5 in the
//!   same pass, hashing a range by algorithm, listings read as they go out, and the
//!   usage scan (walked by handle).
//! - [`auth`]: the `users.toml` model and its comment-keeping editor, password hashes,
//!   authorized keys, login throttling, and the account-store seam
//!   ([`auth::AccountStore`]) with its `users.toml` implementation, reloaded on change.
//! - [`server`]: russh glue, each concern in its own module:
//!   - connections: `handler` (the russh callbacks, which delegate), `channels` (how
//!     many a connection may open, and claiming them), `startups` and
//!     `sessions` (connection and session limits), `activity` (the idle clock),
//!     `budget` (the server-wide memory budget and the socket throttle), `front` (what a
//!     connection hands each front end), `config` (SSH settings and limits),
//!     `privileges` (the start-up checks on private files and running as root), and
//!     live reload of the accounts in `mod.rs`;
//!   - front ends: `rsftp` (with `rsftp::transfers`), `sftp` (the dispatch loop, `ops`,
//!     open `handles`, request `order`), `exec` (the hash commands), `scp` (legacy SCP,
//!     with its pure control-line parser);
//!   - shared by them: `replies` (storage errors as each protocol's code), `oplog` (one
//!     operation log per connection; metadata reads counted), `logging` and `logfile`
//!     (log setup, and rotation by day and size).
//! - [`client`]: the russh client: connection, host keys, the rsftp protocol, an SFTP
//!   session for servers without it (`client::SftpClient`, pipelined), the transfer
//!   engine, and the interactive shell behind the `rsftp` binary.
//! - [`admin`]: the account use cases behind `rsftpd user ...` (add, delete and purge,
//!   password, quota, keys, list, show), on an [`admin::AccountEditor`] and the storage
//!   root.
//! - `bin/`: `rsftpd` and `rsftp`, argument parsing, prompts, printing and wiring only.
//!
//! Dependencies point one way: `protocol` <- `storage` <- `server`; `auth` <- `server`
//! and `admin`. `client` uses `protocol`, `storage::stream` and `storage::ReadHandle`
//! (chunked file data, hashed in the same pass) and two small pieces of `auth` (`Secret`, `format_size`), never
//! `server`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod client;
pub mod protocol;
pub mod server;
pub mod storage;
