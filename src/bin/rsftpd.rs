//! `rsftpd`: the rsftp server, and `rsftpd user ...` to manage its accounts. Argument
//! parsing, wiring and printing only; the work is in the library.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use rsftp::auth::{
    AuthorizedKey, DEFAULT_QUOTA, KeySource, NewAccount, Secret, UserAccount, UsersFile,
    format_size, hash_password, parse_keys,
};
use rsftp::server::{Limits, Server, Settings, StartupLimits};
use rsftp::storage::{ScanFailure, Storage};

/// The longest password read from standard input or a prompt.
const MAX_PASSWORD_LEN: usize = 4096;
/// The most key text read from a file or standard input.
const MAX_KEY_TEXT: u64 = 1 << 20;
/// Length of a password made by --random-password (about 116 bits).
const RANDOM_PASSWORD_LEN: usize = 20;

/// An SSH file-transfer server: confined homes, per-user quotas, and verified,
/// resumable transfers over the `rsftp` and `sftp` subsystems.
///
/// With no command, rsftpd serves (the same as `rsftpd serve`). `rsftpd user ...` edits
/// the accounts in users.toml; a running server picks up every change within about a second.
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
    Serve(ServeArgs),
    /// Manage accounts: add, delete, passwords, quotas and keys.
    ///
    /// Every change is made to users.toml under a lock, keeps the file's comments, is
    /// checked before it is written, and is written atomically. A running server picks
    /// it up within about a second, without a restart.
    #[command(after_long_help = USER_EXAMPLES)]
    User(UserArgs),
}

const USER_EXAMPLES: &str = "\
Examples:
  rsftpd user add alice --key alice.pub --quota 10GiB
  rsftpd user add bob --random-password
  printf '%s\\n' \"$PASSWORD\" | rsftpd user passwd carol --password-stdin
  rsftpd user quota alice 20GiB
  rsftpd user key add alice - < laptop.pub
  rsftpd user key rm alice SHA256:uH2...
  rsftpd user list
  rsftpd user del bob --purge";

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2222", value_name = "ADDR")]
    listen: SocketAddr,
    /// The accounts file; created with a starter account if missing.
    #[arg(long = "users", default_value = "users.toml", value_name = "FILE")]
    users_file: PathBuf,
    /// Where users' homes live: DIR/<user>/.
    #[arg(long = "storage", default_value = "storage", value_name = "DIR")]
    storage_dir: PathBuf,
    /// Where the host key lives; created on first start.
    #[arg(long = "keys", default_value = "keys", value_name = "DIR")]
    keys_dir: PathBuf,
    /// Where log files go (daily files rsftpd.log.YYYY-MM-DD).
    #[arg(long = "logs", default_value = "logs", value_name = "DIR")]
    logs_dir: PathBuf,
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
    /// Close sessions idle for this many seconds.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    idle_timeout: u64,
    /// Remove partial uploads untouched for this many hours (checked at start, then
    /// hourly).
    #[arg(long, default_value_t = 24 * 7, value_name = "HOURS")]
    partial_max_age_hours: u64,
    /// Memory for buffered request and reply data on the whole server (e.g. 512MiB,
    /// 2GiB), shared fairly by the logged-in connections; a connection over its share
    /// is read more slowly, not closed.
    #[arg(long, default_value = "512MiB", value_name = "SIZE")]
    memory_budget: String,
}

#[derive(Args)]
struct UserArgs {
    /// The accounts file the server reads.
    #[arg(
        long = "users",
        default_value = "users.toml",
        value_name = "FILE",
        global = true,
        help_heading = "Files"
    )]
    users_file: PathBuf,
    /// Where users' homes live: DIR/<user>/.
    #[arg(
        long = "storage",
        default_value = "storage",
        value_name = "DIR",
        global = true,
        help_heading = "Files"
    )]
    storage_dir: PathBuf,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account and its home.
    ///
    /// Give it a key (--key), a password (--password-stdin or --random-password), or
    /// both. On a terminal, with neither, the password is asked for. users.toml is
    /// created if it does not exist.
    Add {
        /// 1 to 32 letters, digits, '.', '_' or '-', not starting with '.' or '-'.
        name: String,
        /// Space the user's files may take, such as 500MiB, 10GiB or 2TB.
        #[arg(long, value_name = "SIZE", default_value = DEFAULT_QUOTA)]
        quota: String,
        /// A public key file (such as id_ed25519.pub; every key line in it), or - for
        /// standard input. May be given more than once.
        #[arg(long, value_name = "FILE|-")]
        key: Vec<String>,
        /// Read the password from the first line of standard input.
        #[arg(long, conflicts_with = "random_password")]
        password_stdin: bool,
        /// Make up a strong password and print it, once.
        #[arg(long)]
        random_password: bool,
        /// Most sessions this user may have at once (default: the server's
        /// --max-sessions-per-user).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_sessions: Option<u32>,
        /// Most files, folders and links this user may have (default: no limit but the
        /// quota).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        max_files: Option<u64>,
    },
    /// Delete an account; its open sessions are ended. The home stays unless --purge.
    Del {
        name: String,
        /// Also delete the user's home and every file in it.
        #[arg(long)]
        purge: bool,
    },
    /// Set a user's password: asked for twice without echo, or read from standard input.
    Passwd {
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's quota. Below what they use, uploads are refused until they delete.
    Quota {
        name: String,
        /// Such as 500MiB, 10GiB or 2TB.
        size: String,
        /// Also limit how many files, folders and links they may have.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        max_files: Option<u64>,
        /// Remove their limit on files, folders and links.
        #[arg(long, conflicts_with = "max_files")]
        no_max_files: bool,
    },
    /// Add, remove or list a user's public keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// One line per user: usage (measured on disk), quota, keys, password, sessions.
    List,
    /// A user's usage against quota, keys with their fingerprints, and limits.
    Show { name: String },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Add the keys in a public key file (or - for standard input).
    Add {
        name: String,
        #[arg(value_name = "FILE|-")]
        file: String,
    },
    /// Remove a key, named by its SHA256 fingerprint (as `key list` shows it).
    Rm {
        name: String,
        #[arg(value_name = "FINGERPRINT")]
        fingerprint: String,
    },
    /// List a user's keys: fingerprint, type, comment and where the key is written.
    List { name: String },
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
        Some(Command::Serve(args)) => serve(args),
        Some(Command::User(args)) => user(args),
    }
}

/// A `--memory-budget` size: at least the share one connection always gets.
fn memory_budget(text: &str) -> anyhow::Result<usize> {
    let bytes = rsftp::auth::parse_size(text).context("--memory-budget")?;
    let floor = rsftp::server::budget::MIN_SHARE as u64;
    anyhow::ensure!(
        bytes >= floor,
        "--memory-budget: {text} is less than the {} each connection always gets",
        rsftp::auth::format_size(floor)
    );
    Ok(usize::try_from(bytes).unwrap_or(usize::MAX))
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
            memory_budget: memory_budget(&args.memory_budget)?,
            ..Limits::default()
        },
        idle_timeout: Duration::from_secs(args.idle_timeout),
        partial_max_age: Duration::from_secs(args.partial_max_age_hours.saturating_mul(3600)),
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Take the port first: if it is busy, nothing is created and no password is
        // printed for a server that never ran.
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let prepared = Server::prepare(settings.clone())?;
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
        let shutdown = shutdown_signal()?;
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
                tracing::info!(target: "rsftpd::admin", "SIGHUP: reloading the users file");
                // A failure is logged by the reload itself.
                let _ = reloader.reload().await;
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

fn user(args: UserArgs) -> anyhow::Result<ExitCode> {
    let users = args.users_file.as_path();
    let storage = args.storage_dir.as_path();
    let mut out = io::stdout().lock();
    match args.command {
        UserCommand::Add {
            name,
            quota,
            key,
            password_stdin,
            random_password,
            max_sessions,
            max_files,
        } => {
            if password_stdin && key.iter().any(|k| k == "-") {
                bail!("--password-stdin and --key - cannot both read standard input");
            }
            // Everything slow or interactive happens before the file is locked.
            let mut keys = Vec::new();
            for source in &key {
                keys.extend(read_keys(source)?);
            }
            let password = if password_stdin {
                Some(password_from_stdin()?)
            } else if random_password {
                Some(Secret::generate(RANDOM_PASSWORD_LEN))
            } else if keys.is_empty() {
                if !io::stdin().is_terminal() {
                    bail!(
                        "no way to log in given: use --key FILE, --password-stdin or \
                         --random-password (standard input is not a terminal to ask on)"
                    );
                }
                Some(prompt_new_password(&name)?)
            } else {
                None
            };
            let hash = password
                .as_ref()
                .map(hash_password)
                .transpose()
                .context("cannot hash the password")?;
            let mut file = UsersFile::open_or_create(users)?;
            let name = file.add_user(
                &name,
                NewAccount {
                    password: hash,
                    keys: keys.clone(),
                    quota: Some(quota),
                    max_sessions,
                    max_files,
                },
            )?;
            let quota = file.account(name.as_str())?.quota;
            file.save()?;
            let home = create_home(storage, name.as_str(), quota, max_files)?;
            writeln!(
                out,
                "Added user {name}: quota {}, {}, {}; home {}",
                format_size(quota),
                count(keys.len(), "key"),
                if password.is_some() {
                    "password set"
                } else {
                    "no password"
                },
                home.display()
            )?;
            if random_password && let Some(password) = &password {
                writeln!(
                    out,
                    "Password for {name} (shown once): {}",
                    password.expose()
                )?;
            }
        }
        UserCommand::Del { name, purge } => {
            let mut file = UsersFile::open(users)?;
            let keys_file = file.keys_file_of(&name);
            let account = file.remove_user(&name)?;
            file.save()?;
            let home = storage.join(account.name.as_str());
            writeln!(
                out,
                "Deleted user {name}; a running server ends their sessions."
            )?;
            if purge {
                match std::fs::remove_dir_all(&home) {
                    Ok(()) => writeln!(out, "Removed their home {}.", home.display())?,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {
                        writeln!(out, "They had no home at {}.", home.display())?
                    }
                    Err(err) => {
                        return Err(err).with_context(|| {
                            format!(
                                "user {name} is deleted, but their home {} could not be removed",
                                home.display()
                            )
                        });
                    }
                }
            } else if home.exists() {
                writeln!(
                    out,
                    "Their home {} was kept; delete it with --purge.",
                    home.display()
                )?;
            }
            if let Some(keys_file) = keys_file {
                writeln!(out, "Their keys file {} was kept.", keys_file.display())?;
            }
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            // Ask only about an account that exists; the edit checks again under the lock.
            UsersFile::read(users)?.account(&name)?;
            let password = if password_stdin {
                password_from_stdin()?
            } else if io::stdin().is_terminal() {
                prompt_new_password(&name)?
            } else {
                bail!("standard input is not a terminal to ask on: use --password-stdin");
            };
            let hash = hash_password(&password).context("cannot hash the password")?;
            let mut file = UsersFile::open(users)?;
            file.set_password(&name, &hash)?;
            file.save()?;
            writeln!(out, "Password of {name} changed.")?;
        }
        UserCommand::Quota {
            name,
            size,
            max_files,
            no_max_files,
        } => {
            let mut file = UsersFile::open(users)?;
            let quota = file.set_quota(&name, &size)?;
            if max_files.is_some() || no_max_files {
                file.set_max_files(&name, max_files)?;
            }
            let max_files = file.account(&name)?.max_files;
            file.save()?;
            writeln!(out, "Quota of {name} set to {}.", format_size(quota))?;
            match max_files {
                Some(n) => writeln!(out, "At most {n} files, folders and links.")?,
                None if no_max_files => writeln!(out, "No limit on files, folders and links.")?,
                None => {}
            }
            if let Some((used, _)) = usage(storage, &name, quota, max_files)?
                && used > quota
            {
                writeln!(
                    out,
                    "{name} uses {}, more than that: uploads are refused until they delete files.",
                    format_size(used)
                )?;
            }
        }
        UserCommand::Key(KeyCommand::Add { name, file: source }) => {
            let keys = read_keys(&source)?;
            let mut file = UsersFile::open(users)?;
            file.add_keys(&name, &keys)?;
            file.save()?;
            for key in &keys {
                writeln!(out, "Added key {} to {name}.", describe_key(key))?;
                if key.options().is_some() {
                    writeln!(
                        out,
                        "  Its options were left out: rsftpd does not apply them."
                    )?;
                }
            }
        }
        UserCommand::Key(KeyCommand::Rm { name, fingerprint }) => {
            let mut file = UsersFile::open(users)?;
            let key = file.remove_key(&name, &fingerprint)?;
            file.save()?;
            writeln!(out, "Removed key {} from {name}.", describe_key(&key))?;
        }
        UserCommand::Key(KeyCommand::List { name }) => {
            let file = UsersFile::read(users)?;
            for (key, source) in file.keys_of(&name)? {
                writeln!(
                    out,
                    "{}  ({})",
                    key_row(&key),
                    where_written(&file, &source)
                )?;
            }
        }
        UserCommand::List => {
            let file = UsersFile::read(users)?;
            let mut rows = vec![[
                "NAME".to_owned(),
                "USED".to_owned(),
                "QUOTA".to_owned(),
                "KEYS".to_owned(),
                "PASSWORD".to_owned(),
                "SESSIONS".to_owned(),
            ]];
            for account in file.config().iter() {
                let used = usage(storage, account.name.as_str(), account.quota, None)?;
                rows.push([
                    account.name.to_string(),
                    used.map_or_else(|| "-".to_owned(), |(bytes, _)| format_size(bytes)),
                    format_size(account.quota),
                    account.keys.len().to_string(),
                    if account.password_hash.is_some() {
                        "yes"
                    } else {
                        "no"
                    }
                    .to_owned(),
                    account
                        .max_sessions
                        .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                ]);
            }
            write_table(&mut out, &rows)?;
        }
        UserCommand::Show { name } => {
            let file = UsersFile::read(users)?;
            let account = file.account(&name)?;
            show(&mut out, &file, account, storage)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show(
    out: &mut impl Write,
    file: &UsersFile,
    account: &UserAccount,
    storage: &Path,
) -> anyhow::Result<()> {
    let name = account.name.as_str();
    let home = storage.join(name);
    writeln!(out, "user       {name}")?;
    let entries = match measure(storage, name, account.quota, account.max_files)? {
        Some(Err(failure)) => {
            writeln!(out, "home       {}", home.display())?;
            writeln!(
                out,
                "usage      UNKNOWN: the home cannot be measured ({failure}); \
                 writes are refused until it can"
            )?;
            0
        }
        Some(Ok((used, entries))) => {
            writeln!(out, "home       {}", home.display())?;
            let quota = account.quota;
            let state = if used > quota {
                "OVER QUOTA: uploads are refused".to_owned()
            } else {
                format!("{} free", format_size(quota - used))
            };
            let percent = (u128::from(used) * 100)
                .checked_div(u128::from(quota))
                .map_or_else(String::new, |p| format!(" ({p}%)"));
            writeln!(
                out,
                "usage      {} of {}{percent}; {state}",
                format_size(used),
                format_size(quota)
            )?;
            entries
        }
        None => {
            writeln!(out, "home       {} (not created yet)", home.display())?;
            writeln!(out, "usage      0 B of {}", format_size(account.quota))?;
            0
        }
    };
    match account.max_files {
        Some(max) if entries >= max => writeln!(
            out,
            "files      {entries} of at most {max}; AT THE LIMIT: new files and folders are refused"
        )?,
        Some(max) => writeln!(out, "files      {entries} of at most {max}")?,
        None => writeln!(out, "files      {entries} (no limit but the quota)")?,
    }
    writeln!(
        out,
        "password   {}",
        if account.password_hash.is_some() {
            "set"
        } else {
            "none (password login refused)"
        }
    )?;
    match account.max_sessions {
        Some(n) => writeln!(out, "sessions   at most {n} at once")?,
        None => writeln!(
            out,
            "sessions   the server's limit (--max-sessions-per-user)"
        )?,
    }
    let keys = file.keys_of(name)?;
    writeln!(out, "keys       {}", keys.len())?;
    for (key, source) in keys {
        writeln!(
            out,
            "  {}  ({})",
            key_row(&key),
            where_written(file, &source)
        )?;
    }
    Ok(())
}

/// The bytes `user`'s entries cost by the quota rule, and how many there are,
/// measured on disk by the storage core; `None` if they have no home yet (nothing is
/// created to find out) or it cannot be measured.
fn usage(
    storage: &Path,
    user: &str,
    quota: u64,
    max_files: Option<u64>,
) -> anyhow::Result<Option<(u64, u64)>> {
    Ok(measure(storage, user, quota, max_files)?.and_then(Result::ok))
}

/// What the storage core measures of `user`'s home (bytes by the quota rule, and
/// entries): `None` if they have none yet, or why it cannot be measured (the server
/// then refuses their writes).
fn measure(
    storage: &Path,
    user: &str,
    quota: u64,
    max_files: Option<u64>,
) -> anyhow::Result<Option<Result<(u64, u64), ScanFailure>>> {
    if !storage.join(user).is_dir() {
        return Ok(None);
    }
    let home = Storage::open(storage)
        .and_then(|storage| storage.home(user, quota, max_files))
        .with_context(|| format!("cannot measure the home of {user}"))?;
    Ok(Some(match home.unmeasured() {
        Some(failure) => Err(failure),
        None => Ok((home.usage().used, home.entries().count)),
    }))
}

/// Creates the user's home (mode 0700) as the server would, owned like the storage
/// folder, so that a home made by root is still the server's to write.
fn create_home(
    storage: &Path,
    user: &str,
    quota: u64,
    max_files: Option<u64>,
) -> anyhow::Result<PathBuf> {
    let path = storage.join(user);
    Storage::open(storage)
        .and_then(|storage| storage.home(user, quota, max_files))
        .with_context(|| {
            format!(
                "user {user} is added, but their home {} could not be created \
                 (the server creates it when it loads the account)",
                path.display()
            )
        })?;
    use std::os::unix::fs::MetadataExt;
    let (parent, home) = (std::fs::metadata(storage)?, std::fs::metadata(&path)?);
    if (parent.uid(), parent.gid()) != (home.uid(), home.gid()) {
        std::os::unix::fs::chown(&path, Some(parent.uid()), Some(parent.gid())).with_context(
            || {
                format!(
                    "cannot give {} to the owner of {}",
                    path.display(),
                    storage.display()
                )
            },
        )?;
    }
    Ok(path)
}

/// Reads the keys of a public key file, or of standard input for `-`.
fn read_keys(source: &str) -> anyhow::Result<Vec<AuthorizedKey>> {
    let mut text = String::new();
    let (origin, read) = if source == "-" {
        (
            "standard input".to_owned(),
            io::stdin()
                .lock()
                .take(MAX_KEY_TEXT)
                .read_to_string(&mut text),
        )
    } else {
        let file = std::fs::File::open(source).with_context(|| format!("cannot open {source}"))?;
        (
            source.to_owned(),
            file.take(MAX_KEY_TEXT).read_to_string(&mut text),
        )
    };
    read.with_context(|| format!("cannot read {origin}"))?;
    Ok(parse_keys(&text, &origin)?)
}

/// The first line of standard input, without its line ending.
fn password_from_stdin() -> anyhow::Result<Secret> {
    let mut line = String::new();
    io::stdin()
        .lock()
        .take(MAX_PASSWORD_LEN as u64 + 2)
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    check_password(password)?;
    Ok(Secret::new(password))
}

/// Asks twice, without echo.
fn prompt_new_password(user: &str) -> anyhow::Result<Secret> {
    let first = Secret::new(
        rpassword::prompt_password(format!("New password for {user}: "))
            .context("cannot read the password")?,
    );
    check_password(first.expose())?;
    let again =
        Secret::new(rpassword::prompt_password("Again: ").context("cannot read the password")?);
    if first.expose() != again.expose() {
        bail!("the passwords differ; nothing was changed");
    }
    Ok(first)
}

fn check_password(password: &str) -> anyhow::Result<()> {
    if password.is_empty() {
        bail!("the password is empty; nothing was changed");
    }
    if password.len() > MAX_PASSWORD_LEN {
        bail!("the password is longer than {MAX_PASSWORD_LEN} bytes; nothing was changed");
    }
    Ok(())
}

fn describe_key(key: &AuthorizedKey) -> String {
    match key.comment() {
        "" => key.fingerprint(),
        comment => format!("{} ({comment})", key.fingerprint()),
    }
}

fn key_row(key: &AuthorizedKey) -> String {
    format!(
        "{}  {}  {}",
        key.fingerprint(),
        key.public_key().algorithm().as_str(),
        key.comment()
    )
}

fn where_written(file: &UsersFile, source: &KeySource) -> String {
    match source {
        KeySource::Inline => file.path().display().to_string(),
        KeySource::File(path) => path.display().to_string(),
    }
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Writes rows as columns, each as wide as its widest cell.
fn write_table<const N: usize>(out: &mut impl Write, rows: &[[String; N]]) -> io::Result<()> {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}
