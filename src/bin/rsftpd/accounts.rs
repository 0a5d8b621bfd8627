//! Where the accounts are: `--accounts URL` (PostgreSQL) or users.toml; and the
//! commands only a database has (`rsftpd db migrate`, `rsftpd user import`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rsftp::auth::UsersFile;
use rsftp::auth::postgres::{PgEditor, Target, connect_and_migrate, latest_schema};

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
}

pub(crate) fn db(args: DbArgs) -> anyhow::Result<ExitCode> {
    let target = args.accounts.required("rsftpd db")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match args.command {
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
