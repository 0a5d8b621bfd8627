//! `rsftp`: the client for rsftpd. Argument parsing and wiring only; the work is in the
//! library, under `rsftp::client`.
#![forbid(unsafe_code)]

use std::io::{BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser};
use rsftp::auth::Secret;
use rsftp::client::login::{self, LoginPlan, PasswordSource};
use rsftp::client::progress::Printer;
use rsftp::client::prompt::{self, TerminalAsk};
use rsftp::client::shell::{self, Outcome, Shell, ShellHelper};
use rsftp::client::target::{DEFAULT_PORT, Target};
use rsftp::client::{Connection, HostKeyCheck, NewHostKey};

/// The file that keeps the shell's command lines between runs, in the home directory.
const HISTORY_FILE: &str = ".rsftp_history";

/// Exit status when no session could be set up: connecting, the host key or the login
/// failed. As with ssh, so scripts can tell it from a failed command.
const EXIT_NO_SESSION: u8 = 255;

/// A file-transfer client for rsftpd: an interactive shell with completion and progress
/// bars, scripts, and one-shot commands. Every transfer resumes where it was cut off and
/// is verified by MD5.
#[derive(Parser)]
#[command(name = "rsftp", version, max_term_width = 100)]
struct Cli {
    /// Where to connect: [user@]host[:port]. The port defaults to 2222 (rsftpd's) and
    /// the user to $USER.
    #[arg(value_name = "[USER@]HOST[:PORT]")]
    destination: Option<String>,

    /// A command to run instead of the shell, then exit: rsftp alice@host put a.bin /in/
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<String>,

    /// The port to connect to.
    #[arg(short = 'P', long, value_name = "PORT")]
    port: Option<u16>,

    /// The host to connect to (the classic form: -s HOST -P PORT -u USER).
    #[arg(short = 's', long = "server", value_name = "HOST")]
    server: Option<String>,

    /// The user to log in as.
    #[arg(short = 'u', long, value_name = "USER")]
    user: Option<String>,

    /// A private key to log in with (may be repeated). Only these keys are tried, not
    /// the ssh-agent or ~/.ssh/id_*. An encrypted key asks for its passphrase.
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    identity: Vec<PathBuf>,

    /// Run the commands in FILE ("-" for standard input), stopping at the first that
    /// fails. A line starting with "-" may fail without stopping the script.
    #[arg(short = 'b', long = "batch", value_name = "FILE")]
    batch: Option<PathBuf>,

    /// The known_hosts file that holds the server's host key [default: ~/.ssh/known_hosts]
    #[arg(long, value_name = "FILE")]
    known_hosts: Option<PathBuf>,

    /// Trust a host key never seen before, and remember it. Without this, an unknown key
    /// is refused unless you confirm it at a terminal. A changed key is always refused.
    #[arg(long)]
    accept_new_host_key: bool,

    /// Read the password from the first line of FILE (for automation; a key is safer).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,

    /// No progress bars and no notes; only command output and errors.
    #[arg(short = 'q', long)]
    quiet: bool,
}

/// Text after the options in `--help`.
fn after_help() -> String {
    format!(
        "Without a COMMAND or -b, rsftp opens the shell if standard input is a terminal,\n\
         and otherwise reads a script from it.\n\n\
         Shell commands (also for -b scripts and one-shot commands):\n{}\n\n\
         Logging in: the keys given with -i; else the ssh-agent, then ~/.ssh/id_ed25519,\n\
         id_ecdsa and id_rsa; then a password, from --password-file, from $RSFTP_PASSWORD,\n\
         or asked for at the terminal. Passwords in files or the environment are weaker\n\
         than keys: prefer a key for automation.\n\n\
         Exit status: 0 when all went well; 1 when a command failed; 2 for bad usage;\n\
         {EXIT_NO_SESSION} when no session could be set up (connection, host key, login).\n\n\
         Files: ~/.ssh/known_hosts (host keys), ~/{HISTORY_FILE} (shell history).",
        shell::overview()
            .lines()
            .map(|line| format!("  {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// What to do once logged in.
enum Mode {
    Interactive,
    /// A script from a file, or from standard input (`None`).
    Script(Option<PathBuf>),
    OneShot(Vec<String>),
}

/// Everything the flags decide, checked before any connection is made.
struct Settings {
    target: Target,
    known_hosts: PathBuf,
    accept_new_host_key: bool,
    plan: LoginPlan,
    mode: Mode,
    quiet: bool,
    history: Option<PathBuf>,
}

impl Settings {
    fn from_cli(mut cli: Cli) -> anyhow::Result<Settings> {
        // With -s the host is a flag, so the first word is already the command.
        if cli.server.is_some()
            && let Some(word) = cli.destination.take()
        {
            cli.command.insert(0, word);
        }
        let target = Target::resolve(
            cli.destination.as_deref(),
            cli.server.as_deref(),
            cli.user.as_deref(),
            cli.port,
            std::env::var("USER")
                .ok()
                .or_else(|| std::env::var("LOGNAME").ok()),
        )?;
        let home = std::env::home_dir();
        let known_hosts = match cli.known_hosts {
            Some(path) => path,
            None => HostKeyCheck::default_file()
                .context("no home directory for ~/.ssh/known_hosts; use --known-hosts")?,
        };
        let password = match (&cli.password_file, std::env::var("RSFTP_PASSWORD")) {
            (Some(path), _) => PasswordSource::Given(read_password_file(path)?),
            (None, Ok(password)) => PasswordSource::Given(Secret::new(password)),
            (None, Err(_)) => PasswordSource::Prompt,
        };
        let plan = LoginPlan {
            identities: cli.identity,
            default_identities: LoginPlan::default_key_files(home.as_deref()),
            use_agent: true,
            password,
        };
        let mode = match (cli.batch, cli.command.is_empty()) {
            (Some(_), false) => anyhow::bail!("give either -b FILE or a command, not both"),
            (Some(path), true) if path.as_os_str() == "-" => Mode::Script(None),
            (Some(path), true) => Mode::Script(Some(path)),
            (None, false) => Mode::OneShot(cli.command),
            (None, true) if std::io::stdin().is_terminal() => Mode::Interactive,
            (None, true) => Mode::Script(None),
        };
        Ok(Settings {
            target,
            known_hosts,
            accept_new_host_key: cli.accept_new_host_key,
            plan,
            mode,
            quiet: cli.quiet,
            history: home.map(|h| h.join(HISTORY_FILE)),
        })
    }
}

/// The first line of a password file. A file others can read is worth a warning.
fn read_password_file(path: &Path) -> anyhow::Result<Secret> {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the password file {}", path.display()))?;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "rsftp: warning: {} can be read by others; chmod 600 it",
            path.display()
        );
    }
    let line = text.lines().next().unwrap_or("");
    Ok(Secret::new(line))
}

fn main() -> ExitCode {
    let command = Cli::command().after_help(after_help());
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    let settings = match Settings::from_cli(cli) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("rsftp: {err:#}\nTry 'rsftp --help' for more.");
            return ExitCode::from(2);
        }
    };
    match run(settings) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("rsftp: {}", causes(&err));
            ExitCode::from(EXIT_NO_SESSION)
        }
    }
}

/// The error and its causes on one line, as `{:#}` writes them, except that a cause
/// whose words its parent already quotes is not said twice.
fn causes(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Connects, logs in and runs the shell, script or command. An `Err` means no session
/// could be set up; a failed command is an exit status, already reported.
fn run(settings: Settings) -> anyhow::Result<ExitCode> {
    // The script is opened before connecting, so a typo costs no login.
    let mut script: Option<(Box<dyn std::io::BufRead>, String)> = match &settings.mode {
        Mode::Script(Some(path)) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open the script {}", path.display()))?;
            Some((Box::new(BufReader::new(file)), path.display().to_string()))
        }
        Mode::Script(None) => Some((Box::new(std::io::stdin().lock()), "stdin".to_owned())),
        _ => None,
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let handle = runtime.handle().clone();

    let Target { user, host, port } = &settings.target;
    let known_hosts = settings.known_hosts.clone();
    let new_key = if settings.accept_new_host_key {
        NewHostKey::Ask(Box::new(move |host, fingerprint| {
            eprintln!(
                "Warning: trusting the new host key of {host} ({fingerprint}) and \
                 remembering it in {}.",
                known_hosts.display()
            );
            true
        }))
    } else if prompt::can_confirm() {
        NewHostKey::Ask(Box::new(move |host, fingerprint| {
            prompt::confirm_new_host_key(host, fingerprint, &known_hosts)
        }))
    } else {
        NewHostKey::Refuse
    };
    let check = HostKeyCheck {
        known_hosts: settings.known_hosts.clone(),
        new_key,
    };
    let mut conn = handle.block_on(Connection::connect(host, *port, user, check))?;
    handle.block_on(login::log_in(
        &mut conn,
        &settings.plan,
        &TerminalAsk::new(),
    ))?;

    let printer = Printer::new(
        Box::new(std::io::stdout()),
        settings.quiet,
        std::io::stderr().is_terminal(),
    );
    let columns = std::io::stdout().is_terminal();
    let mut shell = handle.block_on(Shell::start(conn, printer.clone(), columns))?;

    let outcome = match settings.mode {
        Mode::OneShot(words) => shell::one_shot(&mut shell, &handle, &words),
        Mode::Script(_) => match script.as_mut() {
            Some((input, name)) => shell::script(&mut shell, &handle, input.as_mut(), name),
            None => Outcome::Failure,
        },
        Mode::Interactive => {
            let port_note = if *port == DEFAULT_PORT {
                String::new()
            } else {
                format!(":{port}")
            };
            printer.note(&format!(
                "Connected to {host}{port_note} as {user} ({}). Type help for the commands.",
                shell.server()
            ));
            // Completion lists on a session of its own; without one it still completes
            // commands and local paths.
            let lister = handle.block_on(shell.open_lister()).ok();
            let helper = ShellHelper::new(handle.clone(), shell.view(), lister);
            shell::interactive(&mut shell, &handle, helper, settings.history.as_deref())
        }
    };
    handle.block_on(shell.close());
    Ok(match outcome {
        Outcome::Success | Outcome::OutputClosed => ExitCode::SUCCESS,
        Outcome::Failure => ExitCode::FAILURE,
    })
}
