//! Load benchmark: 500 sessions logged in to one `rsftpd` at once, mixing small and
//! large transfers over rsftp and SFTP for a bounded time, every copy verified by MD5,
//! the server's memory read from `/proc`.
//!
//! Run with `cargo bench --bench load` (500 sessions, 30 s), or `-- --smoke` for 50
//! sessions and small files. `--sessions N`, `--seconds S`, `--budget-mib M` and `--large-every K`
//! change the size. It
//! prints the sessions held, copies verified, the server's peak RSS and the wall time,
//! and exits non-zero on any error, wrong copy, or memory past twice the budget.

#[path = "load/engine.rs"]
mod engine;

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let smoke =
        args.iter().any(|a| a == "--smoke") || std::env::var_os("RSFTP_LOAD_SMOKE").is_some();
    let mut plan = if smoke {
        engine::Plan::smoke(50)
    } else {
        engine::Plan::full()
    };
    for pair in args.windows(2) {
        match pair[0].as_str() {
            "--sessions" => plan.sessions = pair[1].parse().unwrap_or(plan.sessions),
            "--seconds" => {
                plan.duration = pair[1]
                    .parse()
                    .map(Duration::from_secs)
                    .unwrap_or(plan.duration)
            }
            "--budget-mib" => plan.budget_mib = pair[1].parse().unwrap_or(plan.budget_mib),
            "--large-every" => plan.large_every = pair[1].parse().unwrap_or(plan.large_every),
            _ => {}
        }
    }
    let open_files = engine::raise_open_files();
    println!(
        "rsftp load: {} sessions over {} accounts for {} s, every {}th large ({} MiB), \
         every {}th over SFTP, small files up to {} KiB, budget {} MiB, open-file limit {open_files}",
        plan.sessions,
        plan.users,
        plan.duration.as_secs(),
        plan.large_every,
        plan.large >> 20,
        plan.sftp_every,
        plan.small_max >> 10,
        plan.budget_mib
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let figures = runtime.block_on(engine::run(plan.clone()));
    figures.print(&plan);
    if figures.errors.is_empty() && figures.held == plan.sessions && figures.verified > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
