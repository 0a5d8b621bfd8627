//! Where the accounts are: `--accounts URL` (PostgreSQL) or users.toml; and the
//! commands only a database has (`rsftpd db migrate`, `rsftpd user import`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::sync::Arc;

use rsftp::auth::postgres::{
    PgAccounts, PgEditor, PgQuota, PgUploadStates, Target, connect_and_migrate, latest_schema,
};
use rsftp::auth::{AccountStore as _, UsersFile, format_size};
use rsftp::storage::{Reconciled, Storage};

/// `--accounts` and `--accounts-password-file`, for the server and every command.
#[derive(Args, Clone, Default)]
pub(crate) struct AccountsArgs {
    /// Keep the accounts in PostgreSQL rather than in users.toml:
    /// postgres://USER@HOST[:PORT]/DATABASE[?sslmode=disable|prefer]. Without it,
    /// users.toml is used. The password is best given with --accounts-password-file.
    #[arg(
        long = "accounts",
        env = "RSFTPD_ACCOUNTS",
        hide_env_values = true,
        value_name = "URL",
        global = true,
        help_heading = "Accounts"
    )]
    pub url: Option<String>,
    /// The database password: the first line of FILE, which must be mode 0600.
    #[arg(
        long = "accounts-password-file",
        env = "RSFTPD_ACCOUNTS_PASSWORD_FILE",
        value_name = "FILE",
        global = true,
        help_heading = "Accounts"
    )]
    pub password_file: Option<PathBuf>,
}

impl AccountsArgs {
    /// The database to use, if one is given.
    pub(crate) fn target(&self) -> anyhow::Result<Option<Target>> {
        match (&self.url, &self.password_file) {
            (None, None) => Ok(None),
            (None, Some(_)) => bail!("--accounts-password-file needs --accounts URL"),
            (Some(url), file) => Ok(Some(
                Target::parse(url, file.as_deref()).context("--accounts")?,
            )),
        }
    }

    fn required(&self, what: &str) -> anyhow::Result<Target> {
        self.target()?.with_context(|| {
            format!("{what} needs a database: give --accounts postgres://USER@HOST/DATABASE")
        })
    }
}

#[derive(Args)]
pub(crate) struct DbArgs {
    #[command(flatten)]
    accounts: AccountsArgs,
    #[command(subcommand)]
    command: DbCommand,
}

#[derive(Subcommand)]
enum DbCommand {
    /// Apply the schema migrations this rsftpd has and the database lacks (a server
    /// also does this when it starts). Safe to run on several nodes at once.
    Migrate,
    /// Count every home again and set the quota ledger's `used` to what it holds,
    /// reporting any drift. An account with an upload in flight on any node is left
    /// as it is, and said so. Servers do this hourly, and at a home's first open.
    Reconcile(Box<ReconcileArgs>),
}

#[derive(Args)]
struct ReconcileArgs {
    /// Where users' homes live, as for the server.
    #[arg(long = "storage", default_value = "storage", value_name = "DIR")]
    storage_dir: PathBuf,
    #[command(flatten)]
    object_store: crate::object_args::ObjectStoreArgs,
}

pub(crate) fn db(args: DbArgs) -> anyhow::Result<ExitCode> {
    let target = args.accounts.required("rsftpd db")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match args.command {
        DbCommand::Reconcile(storage) => return runtime_reconcile(&target, *storage),
        DbCommand::Migrate => {
            let migrated = runtime.block_on(connect_and_migrate(&target))?;
            let mut out = std::io::stdout().lock();
            if migrated.applied.is_empty() {
                writeln!(
                    out,
                    "The schema of {target} is up to date (version {}).",
                    latest_schema()
                )?;
            } else {
                for (version, name) in &migrated.applied {
                    writeln!(out, "Applied migration {version:03}_{name}.")?;
                }
                writeln!(
                    out,
                    "The schema of {target} is at version {} (was {}).",
                    migrated.to(),
                    migrated.from
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `rsftpd db reconcile`: every account's home measured, and the ledger set from it.
fn runtime_reconcile(target: &Target, args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    // The storage core blocks on the database from its own threads: a runtime with
    // workers to spare.
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let (storage_dir, object_store) = args.object_store.resolve(&args.storage_dir)?;
    runtime.block_on(async move {
        let store = PgAccounts::open(target)
            .await
            .with_context(|| format!("cannot reach the accounts in PostgreSQL at {target}"))?;
        let quota = PgQuota::open(target, Arc::clone(store.node()))?;
        let storage = match &object_store {
            Some(config) => {
                let states = PgUploadStates::open(target)?;
                Storage::open_object_with(&storage_dir, config, Some(states))?
            }
            None => Storage::open(&storage_dir)?,
        }
        .with_cluster_quota(quota);
        let accounts = store.current();
        let names: Vec<String> = accounts.iter().map(|a| a.name.to_string()).collect();
        let outcomes = tokio::task::spawn_blocking(move || {
            names
                .into_iter()
                .map(|name| {
                    let outcome = storage.reconcile(&name);
                    (name, outcome)
                })
                .collect::<Vec<_>>()
        })
        .await?;
        let mut out = std::io::stdout().lock();
        let (mut drifted, mut failed) = (0, 0);
        for (user, outcome) in outcomes {
            match outcome {
                Ok(Reconciled::Set { was, now }) if was == now => {
                    writeln!(out, "{user}: {} used, as the home holds", format_size(now))?;
                }
                Ok(Reconciled::Set { was, now }) => {
                    drifted += 1;
                    writeln!(
                        out,
                        "{user}: the ledger said {} used, the home holds {}: corrected ({}{} bytes)",
                        format_size(was),
                        format_size(now),
                        if now > was { "+" } else { "-" },
                        now.abs_diff(was)
                    )?;
                }
                Ok(Reconciled::Skipped { used, measured }) => writeln!(
                    out,
                    "{user}: skipped, an upload is in flight (the ledger says {}, the home holds {})",
                    format_size(used),
                    format_size(measured)
                )?,
                Ok(Reconciled::Unknown) => writeln!(out, "{user}: no quota row; skipped")?,
                Ok(Reconciled::Unavailable(reason)) => {
                    failed += 1;
                    writeln!(out, "{user}: not checked: {reason}")?;
                }
                Ok(other) => writeln!(out, "{user}: {other:?}")?,
                Err(err) => {
                    failed += 1;
                    writeln!(out, "{user}: cannot measure the home: {err}")?;
                }
            }
        }
        writeln!(out, "Reconciled {target}: {drifted} corrected, {failed} not checked.")?;
        Ok(if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

/// `rsftpd user import FILE`: every account of a users.toml, copied in at once.
pub(crate) fn import(accounts: &AccountsArgs, file: &Path) -> anyhow::Result<ExitCode> {
    let target = accounts.required("import")?;
    let source = UsersFile::read(file)?;
    let mut editor = open_editor(&target)?;
    let count = editor.import(source.config())?;
    writeln!(
        std::io::stdout().lock(),
        "Imported {count} account{} from {} into {target}; a running server creates their homes.",
        if count == 1 { "" } else { "s" },
        file.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn open_editor(target: &Target) -> anyhow::Result<PgEditor> {
    Ok(PgEditor::open(target)?)
}
