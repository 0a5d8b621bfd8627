//! `rsftpd`: the rsftp server, and `rsftpd user ...` to manage its accounts. Argument
//! parsing, wiring and printing only; the work is in the library.

mod accounts;
mod object_args;
mod user;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rsftp::auth::postgres::{PgAccounts, PgBans, PgQuota, PgUploadStates};
use rsftp::auth::{AccountStore, format_size, parse_size};
use rsftp::server::logging::Rotation as LogRotation;
use rsftp::server::{Limits, ProxyNet, Server, Settings, StartupLimits};

/// The smallest --log-max-size: a few dozen lines a file.
const MIN_LOG_SIZE: u64 = 4 << 10;

/// An SSH file-transfer server: confined homes, per-user quotas, and verified,
/// resumable transfers over the `rsftp` and `sftp` subsystems.
///
/// With no command, rsftpd serves (the same as `rsftpd serve`). `rsftpd user ...` edits
/// the accounts in users.toml, or in PostgreSQL with --accounts URL; a running server
/// picks up every change within about a second.
#[derive(Parser)]
#[command(version, about, long_about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (what rsftpd does when no command is given).
    Serve(Box<ServeArgs>),
    /// Manage accounts: add, delete, passwords, quotas and keys.
    ///
    /// Every change is made to users.toml under a lock, keeps the file's comments, is
    /// checked before it is written, and is written atomically; with --accounts URL it
    /// is one transaction in PostgreSQL. A running server picks it up within about a
    /// second, without a restart.
    #[command(after_long_help = user::EXAMPLES)]
    User(user::UserArgs),
    /// The PostgreSQL schema of the accounts (with --accounts URL).
    Db(accounts::DbArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2222", value_name = "ADDR")]
    listen: SocketAddr,
    /// The accounts file; created with a starter account if missing. Not used with
    /// --accounts.
    #[arg(long = "users", default_value = "users.toml", value_name = "FILE")]
    users_file: PathBuf,
    #[command(flatten)]
    accounts: accounts::AccountsArgs,
    /// Where users' homes live: DIR/<user>/, or s3://BUCKET/PREFIX for PREFIX/<user>/
    /// on an S3-compatible object store (see the --s3-* flags).
    #[arg(long = "storage", default_value = "storage", value_name = "DIR")]
    storage_dir: PathBuf,
    #[command(flatten)]
    object_store: object_args::ObjectStoreArgs,
    /// Where the host key lives; created on first start.
    #[arg(long = "keys", default_value = "keys", value_name = "DIR")]
    keys_dir: PathBuf,
    /// Where log files go: rsftpd.log.YYYY-MM-DD, a new one each day (UTC) and at
    /// --log-max-size (then rsftpd.log.YYYY-MM-DD.1, .2, ...).
    #[arg(long = "logs", default_value = "logs", value_name = "DIR")]
    logs_dir: PathBuf,
    /// Start a new log file before one would grow past this size.
    #[arg(long, default_value = "100MiB", value_name = "SIZE", value_parser = parse_log_size)]
    log_max_size: u64,
    /// Log files kept, the current one included; the oldest are deleted.
    #[arg(long, default_value_t = LogRotation::default().keep as u32, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    log_keep: u32,
    /// Most logged-in sessions on the whole server.
    #[arg(long, default_value_t = Limits::default().max_sessions, value_name = "N")]
    max_sessions: usize,
    /// Most sessions per user, unless users.toml sets max_sessions for that user
    /// [default: no limit].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_sessions_per_user: Option<u32>,
    /// Connections not logged in yet, as OpenSSH's MaxStartups: from BEGIN on, new ones
    /// are dropped with RATE% probability, growing to 100% at FULL. A single N is a hard
    /// cap.
    #[arg(long, default_value_t = Limits::default().startups.spec(), value_name = "BEGIN:RATE:FULL")]
    max_startups: String,
    /// Connections not logged in yet from one address (IPv6: one /64); more wait.
    #[arg(long, default_value_t = Limits::default().startups.per_peer, value_name = "N")]
    max_startups_per_peer: usize,
    /// Connections waiting for a slot of their address, in all; more are closed.
    #[arg(long, default_value_t = Limits::default().startups.max_waiting, value_name = "N")]
    max_waiting: usize,
    /// Connections waiting for a slot, from one address.
    #[arg(long, default_value_t = Limits::default().startups.max_waiting_per_peer, value_name = "N")]
    max_waiting_per_peer: usize,
    /// Drop connections that have not sent their SSH version line this many seconds
    /// after getting a slot.
    #[arg(long, default_value_t = Limits::default().version_grace.as_secs(), value_name = "SECONDS")]
    version_grace: u64,
    /// Drop connections that have not logged in this many seconds after getting a slot.
    #[arg(long, default_value_t = Limits::default().login_grace.as_secs(), value_name = "SECONDS")]
    login_grace: u64,
    /// Close sessions with no requests and no data moving for this many seconds (SSH
    /// keepalives do not count).
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    idle_timeout: u64,
    /// Fail a transfer that makes no progress, either way, for this many seconds.
    #[arg(long, default_value_t = Limits::default().stall_timeout.as_secs(), value_name = "SECONDS")]
    stall_timeout: u64,
    /// Remove partial uploads untouched for this many hours (checked at start, then
    /// hourly).
    #[arg(long, default_value_t = 24 * 7, value_name = "HOURS")]
    partial_max_age_hours: u64,
    /// Memory for buffered request and reply data on the whole server (e.g. 512MiB,
    /// 2GiB), shared fairly by the logged-in connections; a connection over its share
    /// is read more slowly, not closed.
    #[arg(long, default_value = "512MiB", value_name = "SIZE")]
    memory_budget: String,
    /// Start even if the host key or the users file can be read or written by group or
    /// others (a warning is logged). Without it such a start is refused: fix the file
    /// with `chmod 600 FILE`.
    #[arg(long)]
    allow_open_permissions: bool,
    /// A balancer's address range (e.g. 10.0.0.0/24; repeatable). Connections from it
    /// must begin with a PROXY protocol header (v1 or v2), and the client it names is
    /// the peer for logs, bans and limits. Anyone else who sends such a header is refused.
    #[arg(long = "proxy-from", value_name = "CIDR")]
    proxy_from: Vec<ProxyNet>,
    /// On SIGTERM or Ctrl-C, stop taking connections and let open sessions finish for
    /// this many seconds; then end the rest and exit.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    drain_timeout: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("rsftpd: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Output cut short by `| head` is not a failure.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(*args),
        Some(Command::User(args)) => user::run(args),
        Some(Command::Db(args)) => accounts::db(args),
    }
}

/// A `--memory-budget` size: at least the share one connection always gets.
fn memory_budget(text: &str) -> anyhow::Result<usize> {
    let bytes = parse_size(text).context("--memory-budget")?;
    let floor = rsftp::server::budget::MIN_SHARE as u64;
    anyhow::ensure!(
        bytes >= floor,
        "--memory-budget: {text} is less than the {} each connection always gets",
        format_size(floor)
    );
    Ok(usize::try_from(bytes).unwrap_or(usize::MAX))
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let rotation = LogRotation {
        max_size: args.log_max_size,
        keep: args.log_keep as usize,
    };
    let _log_guard = rsftp::server::logging::init(Some(&args.logs_dir), rotation)
        .with_context(|| format!("cannot create logs folder {}", args.logs_dir.display()))?;
    let database = args.accounts.target()?;
    let (storage_dir, object_store) = args.object_store.resolve(&args.storage_dir)?;
    let settings = Settings {
        listen: args.listen,
        users_file: args.users_file,
        storage_dir,
        object_store,
        upload_states: None,
        shared_bans: None,
        cluster_quota: None,
        keys_dir: args.keys_dir,
        limits: Limits {
            max_sessions: args.max_sessions,
            max_sessions_per_user: args.max_sessions_per_user.map(|n| n as usize),
            startups: StartupLimits {
                per_peer: args.max_startups_per_peer,
                max_waiting: args.max_waiting,
                max_waiting_per_peer: args.max_waiting_per_peer,
                ..args
                    .max_startups
                    .parse::<StartupLimits>()
                    .context("--max-startups")?
            },
            version_grace: Duration::from_secs(args.version_grace),
            login_grace: Duration::from_secs(args.login_grace),
            stall_timeout: Duration::from_secs(args.stall_timeout.max(1)),
            memory_budget: memory_budget(&args.memory_budget)?,
            ..Limits::default()
        },
        idle_timeout: Duration::from_secs(args.idle_timeout),
        partial_max_age: Duration::from_secs(args.partial_max_age_hours.saturating_mul(3600)),
        allow_open_permissions: args.allow_open_permissions,
        proxy_from: args.proxy_from,
        drain_timeout: Duration::from_secs(args.drain_timeout),
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Take the port first: if it is busy, nothing is created and no password is
        // printed for a server that never ran.
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let mut settings = settings;
        let store = match &database {
            Some(target) => {
                let store = PgAccounts::open(target).await.with_context(|| {
                    format!("cannot start: the accounts are in PostgreSQL at {target}")
                })?;
                tracing::info!(target: "rsftpd::admin", database = %target, "accounts from PostgreSQL");
                // The quota is the cluster's: every node reserves in the database.
                let quota = PgQuota::open(target, Arc::clone(store.node())).with_context(|| {
                    format!("cannot start: the quota ledger is in PostgreSQL at {target}")
                })?;
                settings.cluster_quota = Some(quota);
                Some(store as Arc<dyn AccountStore>)
            }
            None => None,
        };
        // Accounts in PostgreSQL and homes on an object store: a cluster, whose nodes
        // all resume each other's uploads, so their states are in the database too.
        if let (Some(target), Some(_)) = (&database, &settings.object_store) {
            let states = PgUploadStates::open(target).with_context(|| {
                format!("cannot start: the upload states are in PostgreSQL at {target}")
            })?;
            tracing::info!(target: "rsftpd::admin", database = %target, "upload states in PostgreSQL");
            settings.upload_states = Some(states);
        }
        // Accounts in PostgreSQL: the nodes share failed logins and bans.
        if let Some(target) = &database {
            let bans = PgBans::open(target, settings.limits.throttle)
                .await
                .with_context(|| {
                    format!("cannot start: the login bans are in PostgreSQL at {target}")
                })?;
            settings.shared_bans = Some(bans);
        }
        let prepared = Server::prepare_with_accounts(settings.clone(), store)?;
        if prepared.host_key_created {
            println!(
                "Created host key {} ({})",
                settings.keys_dir.join("ssh_host_ed25519_key").display(),
                prepared.fingerprint
            );
        }
        if let Some((user, password)) = &prepared.starter {
            println!(
                "Created {} with the account {user}.\n  password: {}\n  This is shown once; change it with `rsftpd user passwd {user}`.",
                settings.users_file.display(),
                password.expose()
            );
        }
        let (shutdown, cut) = shutdown_signals()?;
        println!(
            "rsftpd listening on {} (host key {})",
            listener.local_addr()?,
            prepared.fingerprint
        );
        let server = prepared.server;
        let reloader = server.reloader();
        let reloading = if database.is_some() {
            "SIGHUP: reloading the accounts from PostgreSQL"
        } else {
            "SIGHUP: reloading the users file"
        };
        tokio::spawn(async move {
            let Ok(mut hangup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hangup.recv().await.is_some() {
                tracing::info!(target: "rsftpd::admin", "{reloading}");
                // A failure is logged by the reload itself.
                let _ = reloader.reload().await;
            }
        });
        server.run_with_cut(listener, shutdown, cut).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `--log-max-size`: a size such as `100MiB`, at least [`MIN_LOG_SIZE`].
fn parse_log_size(text: &str) -> Result<u64, String> {
    let size = parse_size(text).map_err(|err| err.to_string())?;
    if size < MIN_LOG_SIZE {
        return Err(format!("at least {}", format_size(MIN_LOG_SIZE)));
    }
    Ok(size)
}

/// The first future completes on Ctrl-C or SIGTERM, the second on the next one (which
/// cuts the drain short). The handlers are installed at once, so a signal that comes
/// right after start-up is never lost to the default action.
fn shutdown_signals() -> anyhow::Result<(
    impl std::future::Future<Output = ()>,
    impl std::future::Future<Output = ()>,
)> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let (count, _) = tokio::sync::watch::channel(0u32);
    let counted = count.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            counted.send_modify(|n| *n += 1);
        }
    });
    let after = move |n: u32| {
        let mut seen = count.subscribe();
        async move {
            let _ = seen.wait_for(|&got| got >= n).await;
        }
    };
    Ok((after(1), after(2)))
}
