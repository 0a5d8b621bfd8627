//! `rsftpd`: the rsftp server. Argument parsing and wiring only; the work is in the
//! library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rsftp::server::{Limits, Server, Settings};

/// An SSH file-transfer server: confined homes, per-user quotas, and verified,
/// resumable transfers over the `rsftp` and `sftp` subsystems.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2222", global = true)]
    listen: SocketAddr,
    /// The accounts file; created with a starter account if missing.
    #[arg(long = "users", default_value = "users.toml", global = true)]
    users_file: PathBuf,
    /// Where users' homes live: DIR/<user>/.
    #[arg(long = "storage", default_value = "storage", global = true)]
    storage_dir: PathBuf,
    /// Where the host key lives; created on first start.
    #[arg(long = "keys", default_value = "keys", global = true)]
    keys_dir: PathBuf,
    /// Where log files go (daily files rsftpd.log.YYYY-MM-DD).
    #[arg(long = "logs", default_value = "logs", global = true)]
    logs_dir: PathBuf,
    /// Most logged-in sessions on the whole server.
    #[arg(long, default_value_t = Limits::default().max_sessions)]
    max_sessions: usize,
    /// Most sessions per user, unless users.toml sets max_sessions for that user.
    #[arg(long, default_value_t = Limits::default().max_sessions_per_user)]
    max_sessions_per_user: usize,
    /// Most connections that have not logged in yet.
    #[arg(long, default_value_t = Limits::default().max_startups)]
    max_startups: usize,
    /// Close sessions idle for this many seconds.
    #[arg(long, default_value_t = 600)]
    idle_timeout: u64,
    /// Remove partial uploads untouched for this many hours.
    #[arg(long, default_value_t = 24 * 7)]
    partial_max_age_hours: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("rsftpd: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None | Some(Command::Serve) => serve(cli.serve),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let _log_guard = rsftp::server::logging::init(Some(&args.logs_dir))
        .with_context(|| format!("cannot create logs folder {}", args.logs_dir.display()))?;
    let settings = Settings {
        listen: args.listen,
        users_file: args.users_file,
        storage_dir: args.storage_dir,
        keys_dir: args.keys_dir,
        limits: Limits {
            max_sessions: args.max_sessions,
            max_sessions_per_user: args.max_sessions_per_user,
            max_startups: args.max_startups,
            ..Limits::default()
        },
        idle_timeout: Duration::from_secs(args.idle_timeout),
        partial_max_age: Duration::from_secs(args.partial_max_age_hours * 3600),
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let prepared = Server::prepare(settings.clone())?;
        if prepared.host_key_created {
            println!(
                "Created host key {} ({})",
                settings.keys_dir.display(),
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
        let shutdown = shutdown_signal()?;
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        println!(
            "rsftpd listening on {} (host key {})",
            listener.local_addr()?,
            prepared.fingerprint
        );
        let server = prepared.server;
        let reloader = server.reloader();
        tokio::spawn(async move {
            let Ok(mut hangup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hangup.recv().await.is_some() {
                if let Err(err) = reloader.reload().await {
                    tracing::error!(error = %err, "users file not reloaded on SIGHUP; keeping the last good configuration");
                }
            }
        });
        server.run(listener, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Completes on Ctrl-C or SIGTERM. The handlers are installed at once, so a signal that
/// comes right after start-up is never lost to the default action.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
