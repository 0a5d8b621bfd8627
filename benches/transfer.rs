//! The side-by-side benchmark: rsftp against OpenSSH on this machine, every case in one
//! command, every copy checked by MD5. See `docs/PERFORMANCE.md`.
//!
//! `cargo bench --bench transfer` starts a private OpenSSH `sshd` (its own host key and
//! config, key login, `internal-sftp`, no PAM) and the release `rsftpd`, each on a free
//! loopback port, and runs each case against both, OpenSSH first, then rsftp, for
//! `--runs` rounds (A B A B ...):
//!
//! - 1 GiB up and down with OpenSSH `sftp`, aes128-gcm and chacha20, to both servers;
//! - the `rsftp` client (verified) to rsftpd against `sftp` (unverified) to sshd;
//! - the time to a verified copy: `rsftp` against `sftp` plus `md5sum` on both ends at
//!   the same time;
//! - 100 and 1,000 files of 4 KiB with one `sftp -b` each way, net of a login;
//! - 16 and 64 `sftp` sessions at once, 16 MiB each;
//! - login latency (`sftp -b` with `pwd`);
//! - idle sessions, the server's memory for each.
//!
//! Every client is a fresh process that connects and logs in, on both sides alike. The
//! servers' CPU time is read from `/proc/PID/stat`. It prints medians and ratios
//! (rsftp / OpenSSH) in one table and exits non-zero if any copy was wrong or any
//! client failed. `-- --smoke` runs small sizes once, to check that all of it works.
//!
//! Options (after `--`): `--smoke`, `--runs N`, `--size-mib N` (the big file),
//! `--idle N` (idle sessions to rsftpd), `--idle-sshd N` (to sshd), `--small N,M`,
//! `--sessions N,M`, and `--only CASES` (of idle, login, big, small, sessions).

#[path = "transfer/cases.rs"]
mod cases;
#[path = "transfer/clients.rs"]
mod clients;
#[path = "transfer/idle.rs"]
mod idle;
#[path = "transfer/servers.rs"]
mod servers;
#[path = "transfer/table.rs"]
mod table;

use std::process::ExitCode;
use std::time::Instant;

use cases::{Bench, Big, Out, size_name};

const MIB: u64 = 1 << 20;

struct Options {
    smoke: bool,
    runs: usize,
    size: u64,
    small: Vec<usize>,
    sessions: Vec<usize>,
    session_size: u64,
    idle: usize,
    idle_sshd: usize,
    /// Cases to run (`--only`, comma-separated): idle, login, big, small, sessions.
    only: Option<Vec<String>>,
}

impl Options {
    fn runs_case(&self, case: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|c| c == case))
    }
}

/// A comma-separated list of counts, such as `16,64`.
fn counts(list: &str) -> Option<Vec<usize>> {
    list.split(',').map(|n| n.trim().parse().ok()).collect()
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let mut options = if smoke {
        Options {
            smoke,
            runs: 1,
            size: 8 * MIB,
            small: vec![20],
            sessions: vec![4],
            session_size: 4 * MIB,
            idle: 20,
            idle_sshd: 20,
            only: None,
        }
    } else {
        Options {
            smoke,
            runs: 3,
            size: 1024 * MIB,
            small: vec![100, 1000],
            sessions: vec![16, 64],
            session_size: 16 * MIB,
            idle: 1000,
            idle_sshd: 200,
            only: None,
        }
    };
    for pair in args.windows(2) {
        let n = pair[1].parse::<usize>().ok();
        match (pair[0].as_str(), n) {
            ("--runs", Some(n)) => options.runs = n.max(1),
            ("--size-mib", Some(n)) => options.size = n.max(1) as u64 * MIB,
            ("--idle", Some(n)) => options.idle = n,
            ("--idle-sshd", Some(n)) => options.idle_sshd = n,
            _ => {}
        }
        match (pair[0].as_str(), counts(&pair[1])) {
            ("--sessions", Some(list)) => options.sessions = list,
            ("--small", Some(list)) => options.small = list,
            ("--only", _) => {
                options.only = Some(pair[1].split(',').map(|c| c.trim().to_owned()).collect())
            }
            _ => {}
        }
    }
    options
}

/// Raises the soft limit on open files to the hard one: a thousand sessions are a
/// thousand sockets here and more in the server, which inherits the limit.
fn raise_open_files() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
}

fn main() -> ExitCode {
    let options = options();
    let started = Instant::now();
    raise_open_files();
    match run(&options) {
        Ok(out) => {
            println!();
            out.table.print();
            println!();
            for note in &out.notes {
                println!("{note}");
            }
            println!(
                "copies checked by MD5: {}; errors: {}; wall time {:.0} s",
                out.verified,
                out.errors.len(),
                started.elapsed().as_secs_f64()
            );
            for error in out.errors.iter().take(20) {
                println!("  error: {error}");
            }
            if out.errors.is_empty() && out.verified > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("transfer benchmark: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> Result<Out, String> {
    let work = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let dir = work.path();
    let key = dir.join("id_ed25519");
    let public = servers::make_key(&key)?;
    let known_hosts = dir.join("known_hosts");
    let rsftpd_dir = dir.join("rsftpd");
    std::fs::create_dir_all(&rsftpd_dir).map_err(|e| e.to_string())?;
    let most = options
        .idle
        .max(options.sessions.iter().copied().max().unwrap_or(0));
    let rsftpd = servers::start_rsftpd(&rsftpd_dir, &public, most, &known_hosts)?;
    let mut out = Out::default();
    let sshd = match servers::start_sshd(dir, &public, &known_hosts) {
        Ok(sshd) => Some(sshd),
        Err(e) => {
            out.notes.push(format!("OpenSSH column skipped: {e}"));
            None
        }
    };
    let clients = clients::Clients::new(dir, key.clone(), known_hosts.clone());
    if clients.sftp.is_none() {
        out.notes
            .push("no OpenSSH sftp: the sftp cases are skipped (install openssh-client)".into());
    }
    if clients.md5sum.is_none() {
        out.notes
            .push("no md5sum: the time to a verified copy is not measured for OpenSSH".into());
    }
    let bench = Bench {
        clients,
        sshd,
        rsftpd,
        work: dir.to_owned(),
    };
    println!(
        "rsftp vs OpenSSH{}: {} runs; big file {}; {:?} x 4 KiB; {:?} sessions x {}; \
         idle sessions {} (rsftpd), {} (sshd)",
        if options.smoke { " (smoke)" } else { "" },
        options.runs,
        size_name(options.size),
        options.small,
        options.sessions,
        size_name(options.session_size),
        options.idle,
        options.idle_sshd,
    );
    let path = dir.join("big.bin");
    let md5 = clients::make_file(&path, options.size, 1)?;
    let big = Big {
        path,
        md5,
        len: options.size,
    };
    // Idle sessions first, while rsftpd's heap has not yet grown for transfers: what
    // each session adds is then not hidden in memory that earlier work freed.
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("runtime: {e}"))?;
    if !options.runs_case("idle") {
        eprintln!("idle sessions: skipped (--only)");
    } else if let Some(sshd) = &bench.sshd {
        eprintln!("idle sessions");
        idle::idle(
            &runtime,
            &mut out,
            sshd,
            options.idle_sshd,
            &key,
            &known_hosts,
        );
    }
    if options.runs_case("idle") {
        idle::idle(
            &runtime,
            &mut out,
            &bench.rsftpd,
            options.idle,
            &key,
            &known_hosts,
        );
    }
    for run in 0..options.runs {
        let round = Instant::now();
        let step = |what: &str| eprintln!("run {} of {}: {what}", run + 1, options.runs);
        if options.runs_case("login") {
            step("login");
            bench.login(&mut out, 3);
        }
        if options.runs_case("big") {
            step("the big file");
            bench.big(&mut out, &big);
        }
        for &count in options.small.iter().filter(|_| options.runs_case("small")) {
            step(&format!("{count} small files"));
            bench.small(&mut out, count, run);
        }
        for &sessions in options
            .sessions
            .iter()
            .filter(|_| options.runs_case("sessions"))
        {
            step(&format!("{sessions} sessions at once"));
            bench.concurrent(&mut out, sessions, options.session_size);
        }
        println!(
            "run {} of {} done in {:.0} s ({} errors so far)",
            run + 1,
            options.runs,
            round.elapsed().as_secs_f64(),
            out.errors.len()
        );
    }
    Bench::small_rows(&mut out);
    if options.smoke {
        out.notes
            .push("smoke mode: small sizes, one run; the figures are not comparable".into());
    }
    Ok(out)
}
