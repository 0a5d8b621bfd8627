//! `rsftpd user ...`: the arguments, prompts and printing of the account commands. The
//! use cases themselves are `rsftp::admin`'s.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::accounts::{self, AccountsArgs};
use rsftp::admin::{AccountEditor, Admin, HomeFate, Report, Usage, UsersToml};
use rsftp::auth::postgres::write_users_file;
use rsftp::auth::{
    AuthorizedKey, DEFAULT_QUOTA, KeySource, NewAccount, Secret, format_size, hash_password,
    parse_keys,
};

/// The longest password read from standard input or a prompt.
const MAX_PASSWORD_LEN: usize = 4096;
/// The most key text read from a file or standard input.
const MAX_KEY_TEXT: u64 = 1 << 20;
/// Length of a password made by --random-password (about 116 bits).
const RANDOM_PASSWORD_LEN: usize = 20;

pub(crate) const EXAMPLES: &str = "\
Examples:
  rsftpd user add alice --key alice.pub --quota 10GiB
  rsftpd user add bob --random-password
  printf '%s\\n' \"$PASSWORD\" | rsftpd user passwd carol --password-stdin
  rsftpd user quota alice 20GiB
  rsftpd user key add alice - < laptop.pub
  rsftpd user key rm alice SHA256:uH2...
  rsftpd user list
  rsftpd user del bob --purge
  rsftpd user --accounts postgres://rsftpd@db/rsftpd --accounts-password-file pw import users.toml
  rsftpd user export backup.toml";

#[derive(Args)]
pub(crate) struct UserArgs {
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
    #[command(flatten)]
    accounts: AccountsArgs,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Subcommand)]
pub(crate) enum UserCommand {
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
    /// Copy every account of a users.toml into the database given with --accounts, in
    /// one transaction; an account that exists there already stops it.
    Import {
        #[arg(value_name = "USERS_TOML")]
        file: PathBuf,
    },
    /// Write every account to a new users.toml (mode 0600: it holds password hashes).
    Export {
        #[arg(value_name = "USERS_TOML")]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
pub(crate) enum KeyCommand {
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

pub(crate) fn run(args: UserArgs) -> anyhow::Result<ExitCode> {
    if let UserCommand::Import { file } = &args.command {
        // Into a database only, which `import` opens itself.
        return accounts::import(&args.accounts, file);
    }
    match args.accounts.target()? {
        Some(target) => {
            let editor = accounts::open_editor(&target)?;
            run_on(Admin::new(editor, &args.storage_dir), args.command)
        }
        None => run_on(
            Admin::new(UsersToml::new(&args.users_file), &args.storage_dir),
            args.command,
        ),
    }
}

/// Runs one command on the accounts, wherever they are kept.
fn run_on<E: AccountEditor>(mut admin: Admin<E>, command: UserCommand) -> anyhow::Result<ExitCode> {
    let mut out = io::stdout().lock();
    match command {
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
            // Everything slow or interactive happens before the accounts are locked.
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
            let new = NewAccount {
                password: hash,
                keys: keys.clone(),
                quota: Some(quota),
                max_sessions,
                max_files,
            };
            let (account, home) = admin.add(&name, new)?;
            let name = &account.name;
            writeln!(
                out,
                "Added user {name}: quota {}, {}, {}; home {}",
                format_size(account.quota),
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
            let deleted = admin.delete(&name, purge)?;
            let home = deleted.home.display();
            writeln!(
                out,
                "Deleted user {name}; a running server ends their sessions."
            )?;
            match deleted.fate {
                HomeFate::Removed => writeln!(out, "Removed their home {home}.")?,
                HomeFate::Absent => writeln!(out, "They had no home at {home}.")?,
                HomeFate::Kept { exists: true } => {
                    writeln!(out, "Their home {home} was kept; delete it with --purge.")?
                }
                HomeFate::Kept { exists: false } => {}
            }
            if let Some(partials) = &deleted.partials_removed {
                writeln!(out, "Removed their partial uploads {}.", partials.display())?;
            }
            if let Some(keys_file) = deleted.keys_file {
                writeln!(out, "Their keys file {} was kept.", keys_file.display())?;
            }
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            // Ask only about an account that exists; the edit checks again under the lock.
            admin.accounts().account(&name)?;
            let password = if password_stdin {
                password_from_stdin()?
            } else if io::stdin().is_terminal() {
                prompt_new_password(&name)?
            } else {
                bail!("standard input is not a terminal to ask on: use --password-stdin");
            };
            let hash = hash_password(&password).context("cannot hash the password")?;
            admin.set_password(&name, &hash)?;
            writeln!(out, "Password of {name} changed.")?;
        }
        UserCommand::Quota {
            name,
            size,
            max_files,
            no_max_files,
        } => {
            let limit = (max_files.is_some() || no_max_files).then_some(max_files);
            let (account, usage) = admin.set_quota(&name, &size, limit)?;
            let quota = account.quota;
            writeln!(out, "Quota of {name} set to {}.", format_size(quota))?;
            match account.max_files {
                Some(n) => writeln!(out, "At most {n} files, folders and links.")?,
                None if no_max_files => writeln!(out, "No limit on files, folders and links.")?,
                None => {}
            }
            if let Some(used) = usage.used()
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
            admin.add_keys(&name, &keys)?;
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
            let key = admin.remove_key(&name, &fingerprint)?;
            writeln!(out, "Removed key {} from {name}.", describe_key(&key))?;
        }
        UserCommand::Key(KeyCommand::List { name }) => {
            let origin = admin.accounts().origin();
            for (key, source) in admin.keys(&name)? {
                writeln!(
                    out,
                    "{}  ({})",
                    key_row(&key),
                    where_written(&origin, &source)
                )?;
            }
        }
        UserCommand::List => {
            let mut rows = vec![[
                "NAME".to_owned(),
                "USED".to_owned(),
                "QUOTA".to_owned(),
                "KEYS".to_owned(),
                "PASSWORD".to_owned(),
                "SESSIONS".to_owned(),
            ]];
            for (account, usage) in admin.list()? {
                rows.push([
                    account.name.to_string(),
                    usage.used().map_or_else(|| "-".to_owned(), format_size),
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
            let report = admin.show(&name)?;
            show(&mut out, &report, &admin.accounts().origin())?;
        }
        UserCommand::Import { .. } => bail!("import is run before the accounts are opened"),
        UserCommand::Export { file } => {
            let accounts = admin.accounts().accounts()?;
            write_users_file(&accounts, &file)?;
            writeln!(
                out,
                "Exported {} from {} to {}.",
                count(accounts.len(), "account"),
                admin.accounts().origin(),
                file.display()
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show(out: &mut impl Write, report: &Report, origin: &str) -> anyhow::Result<()> {
    let account = &report.account;
    let name = account.name.as_str();
    let home = report.home.display();
    writeln!(out, "user       {name}")?;
    let entries = match &report.usage {
        Usage::Unknown(failure) => {
            writeln!(out, "home       {home}")?;
            writeln!(
                out,
                "usage      UNKNOWN: the home cannot be measured ({failure}); \
                 writes are refused until it can"
            )?;
            0
        }
        &Usage::Measured { used, entries } => {
            writeln!(out, "home       {home}")?;
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
        Usage::NoHome => {
            writeln!(out, "home       {home} (not created yet)")?;
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
    writeln!(out, "keys       {}", report.keys.len())?;
    for (key, source) in &report.keys {
        writeln!(
            out,
            "  {}  ({})",
            key_row(key),
            where_written(origin, source)
        )?;
    }
    Ok(())
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

fn where_written(origin: &str, source: &KeySource) -> String {
    match source {
        KeySource::Inline => origin.to_owned(),
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
