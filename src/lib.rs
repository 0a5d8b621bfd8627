//! rsftp: an SSH file-transfer server (`rsftpd`) and client (`rsftp`).
//!
//! Users log in over SSH with a password or a public key, are confined to their own home
//! under `storage/<user>/`, and have their own disk quota. Two SSH subsystems share one
//! storage core: `rsftp` (our own line protocol, see `docs/PROTOCOL.md`) and `sftp`.
//!
//! # Layout
//!
//! - [`protocol`]: the wire formats, with no I/O: rsftp/1 (request lines, quoting, status
//!   lines), SFTP v3 in both directions (`protocol::sftp`), the PROXY protocol header a
//!   balancer sends (`protocol::proxy`), and the SSH transport settings both ends share.
//! - [`storage`]: no SSH. [`storage::HomeDir`] is the policy of a home (virtual paths,
//!   the quota ledger, busy marks, the hidden staging area for partial uploads) over the
//!   backend seam, [`storage::Backend`] (`storage/backend.rs`: namespace, open files,
//!   staged uploads that publish on completion), with two implementations:
//!   `storage/posix/` (cap-std, beneath a handle on the home) and [`storage::object`]
//!   (an S3-compatible bucket through `object_store`: keys from virtual paths, multipart
//!   uploads resumed from saved states, ranged reads).
//!   Reads go through [`storage::ReadHandle`]; also streaming file data with MD5 in the
//!   same pass, hashing a range by algorithm, listings read as they go out, and the
//!   usage scan (walked by handle). In a cluster the bytes of the quota are checked by
//!   a ledger the nodes share, through [`storage::ClusterQuota`]
//!   (`storage/cluster_quota.rs`).
//! - [`auth`]: the `users.toml` model and its comment-keeping editor, password hashes,
//!   authorized keys, login throttling, and the account-store seam
//!   ([`auth::AccountStore`]) with two implementations: `users.toml`, reloaded on
//!   change (`auth/watched.rs`), and PostgreSQL (`auth/postgres/`: migrations, a cache
//!   kept fresh by LISTEN/NOTIFY, the editor behind `rsftpd user`, node heartbeats,
//!   session leases, and the shared quota ledger: `ledger.rs`, its statements, and
//!   `quota.rs`, the `ClusterQuota` over them). A new account store implements
//!   `AccountStore` and `admin::AccountEditor`.
//! - [`server`]: russh glue, each concern in its own module:
//!   - connections: `handler` (the russh callbacks, a few lines each, which delegate),
//!     `login` (the login policy: bans, accepts, rejects and the failures they count;
//!     no SSH, unit-tested), `channels` (how many a connection may open, and one
//!     helper that claims a channel and runs its task), `startups` and `sessions`
//!     (connection and session limits), `activity` (the idle clock), `budget` (the
//!     server-wide memory budget and the socket throttle), `front` (what a connection
//!     hands each front end), `shared` (what every connection shares), `config` (SSH
//!     settings and limits), `privileges` (the start-up checks on private files and
//!     running as root), `proxy` (`--proxy-from`: a balancer's PROXY header, read before
//!     SSH; one from anyone else refused), `error` (why the server could not start), and
//!     `reload` (live reload of the accounts); `mod.rs` holds the accept loop and the
//!     drain at shutdown;
//!   - front ends: `rsftp` (with `rsftp::transfers`), `sftp` (the dispatch loop, `ops`,
//!     `convert` between wire values and storage's, open `handles`, request `order`),
//!     `exec` (the hash commands), `scp` (legacy SCP, with its pure control-line
//!     parser);
//!   - shared by them: `op` (the operation layer every front end acts through: it
//!     resolves the user's paths, runs storage work off the reactor, classifies storage
//!     errors once into a `Fault` and warns about I/O errors, and logs each operation),
//!     `replies` (a `Fault` as rsftp's and SFTP's codes), `oplog` (one operation log
//!     per connection; metadata reads counted), `logging` and `logfile` (log setup, and
//!     rotation by day and size). A new front end plugs in beside the others, through
//!     `op`.
//! - [`client`]: the russh client: connection, host keys, the rsftp protocol, an SFTP
//!   session for servers without it (`client::SftpClient`, pipelined; `sftp_session`,
//!   `sftp_transfer` and `exec_hash` make the fallback, `remote` is the one face the
//!   shell sees of either), the transfer engine, `mirror`'s plan, and the interactive
//!   shell behind the `rsftp` binary (`shell/`, with `mirror` and `parallel` for `-j`).
//! - [`admin`]: the account use cases behind `rsftpd user ...` (add, delete and purge,
//!   password, quota, keys, list, show), on an [`admin::AccountEditor`] and the storage
//!   root.
//! - [`error_chain`]: an error and its sources on one line, for log fields and for
//!   errors kept as text (`{:#}` does this in the binaries, through `anyhow`).
//! - `bin/`: `rsftpd` and `rsftp`, argument parsing, prompts, printing and wiring only.
//!
//! Dependencies point one way: `protocol` <- `storage` <- `server`; `auth` <- `server`
//! and `admin`. `client` uses `protocol`, `storage::stream` and `storage::ReadHandle`
//! (chunked file data, hashed in the same pass) and two small pieces of `auth` (`Secret`,
//! `format_size`), never `server`. Inside `server`, no module imports one that imports it
//! back: the front ends use `op`, `replies` and `oplog`, and only `handler` and `mod.rs`
//! know them all.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod client;
mod error_chain;
pub mod protocol;
pub mod server;
pub mod storage;

pub use error_chain::error_chain;
