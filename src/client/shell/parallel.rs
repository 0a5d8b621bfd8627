//! Running a plan's files: one after another, or `-j N` at once over N sessions of the
//! same SSH connection, each taking the next file when it is done with one. The
//! overall bar shows the total; each file in flight has its own bar below it. A failed
//! file does not stop the others, and is reported at the end; a session that breaks
//! stops only its own worker. Over rsftp, a `put` worker takes a run of small files at
//! once and sends them as one pipelined batch (`small_files`).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;

use super::commands::Invocation;
use super::transfers::{Direction, Job, Plan, all_checked, summary};
use super::{Shell, ShellError, listing, paths, small_files};
use crate::auth::format_size;
use crate::client::progress::{OverallBar, Printer};
use crate::client::transfer::Check;
use crate::client::{ClientError, Connection, Remote, local_hash, partial_path};

/// Files moved at once unless `-j` says otherwise.
pub const DEFAULT_JOBS: usize = 4;
/// The most `-j` takes: each is a channel, and servers limit those.
pub const MAX_JOBS: usize = 16;

/// The `-j N` of a command, or the default.
pub(super) fn jobs(inv: &Invocation) -> Result<usize, ShellError> {
    match inv.value('j') {
        None => Ok(DEFAULT_JOBS),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_JOBS).contains(&n) => Ok(n),
            _ => Err(ShellError::Refused(format!(
                "-j {text}: give a number of files at once from 1 to {MAX_JOBS}"
            ))),
        },
    }
}

/// How a file went: what was checked, and the bytes that travelled.
pub(super) struct Done {
    pub check: Check,
    pub sent: u64,
}

/// Each file's outcome (`None`: never started, the sessions broke), and whether the
/// shell's own session is still in step.
pub(super) struct Outcomes {
    pub files: Vec<Option<Result<Done, ShellError>>>,
    pub main_alive: bool,
}

/// What a transfer needs of the shell besides its session.
pub(super) struct Ctx<'a> {
    pub conn: &'a Connection,
    pub printer: &'a Printer,
    pub local_cwd: &'a Path,
    /// The shell's remote directory, for a session opened in place of one that closed.
    pub remote_cwd: &'a str,
}

impl Ctx<'_> {
    pub fn show_local(&self, path: &Path) -> String {
        path.strip_prefix(self.local_cwd)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| path.display().to_string())
    }
}

pub(super) async fn download_one(
    client: &mut Remote,
    ctx: &Ctx<'_>,
    job: &Job,
    force: bool,
    overall: Option<&OverallBar>,
) -> Result<Done, ShellError> {
    let shown = ctx.show_local(&job.local);
    let from = listing::display_name(&job.remote).into_owned();
    if !force && let Ok(meta) = std::fs::metadata(&job.local) {
        if meta.is_dir() {
            return Err(ShellError::Refused(format!("{shown}: is a directory")));
        }
        // An identical file is already there: say so, rather than refuse.
        if meta.len() == job.size
            && let Some(theirs) = client.hash(ctx.conn, &job.remote).await?
        {
            let ours = local_hash(&job.local, theirs.kind).await?;
            if ours == theirs {
                if let Some(overall) = overall {
                    overall.add(job.size);
                }
                ctx.printer.note(&format!(
                    "{from} -> {shown}: already up to date, verified {ours}"
                ));
                return Ok(Done {
                    check: Check::Verified(ours),
                    sent: 0,
                });
            }
        }
        return Err(ClientError::LocalExists(job.local.clone()).into());
    }
    let label = paths::base_name(&job.remote).to_owned();
    let bar = ctx.printer.file_bar(&label, overall);
    let result = client
        .download(ctx.conn, &job.remote, &job.local, force, &bar)
        .await;
    let elapsed = bar.elapsed();
    drop(bar);
    match result {
        Ok(report) => {
            if let Some(mtime) = job.mtime {
                set_local_mtime(&job.local, mtime)?;
            }
            ctx.printer.note(&summary(&from, &shown, &report, elapsed));
            Ok(Done {
                check: report.check,
                sent: report.transferred,
            })
        }
        Err(err) => {
            if partial_path(&job.local).exists()
                && !matches!(
                    err,
                    ClientError::Checksum { .. } | ClientError::HashMismatch { .. }
                )
            {
                ctx.printer.note(&format!(
                    "{}: kept for the next get to resume",
                    ctx.show_local(&partial_path(&job.local))
                ));
            }
            Err(err.into())
        }
    }
}

pub(super) async fn upload_one(
    client: &mut Remote,
    ctx: &Ctx<'_>,
    job: &Job,
    overall: Option<&OverallBar>,
) -> Result<Done, ShellError> {
    let shown = ctx.show_local(&job.local);
    let label = job
        .local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bar = ctx.printer.file_bar(&label, overall);
    let result = client.upload(ctx.conn, &job.local, &job.remote, &bar).await;
    let elapsed = bar.elapsed();
    drop(bar);
    let report = result?;
    let to = listing::display_name(&job.remote).into_owned();
    // Where the protocol can set it (SFTP), so that the next mirror sees them equal.
    if let Some(mtime) = job.mtime
        && let Err(err) = client.set_mtime(&job.remote, mtime).await
    {
        ctx.printer.warn(&format!(
            "{to}: cannot set its time: {}",
            super::explain(&err)
        ));
    }
    ctx.printer.note(&summary(&shown, &to, &report, elapsed));
    Ok(Done {
        check: report.check,
        sent: report.transferred,
    })
}

/// Gives a local file a modification time (Unix seconds).
pub(super) fn set_local_mtime(path: &Path, mtime: i64) -> Result<(), ShellError> {
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime.max(0) as u64);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(when))
        .map_err(|e| ShellError::local(path, e))
}

/// Polls every future to its end, at once, in this task; outputs in the given order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (slot, out) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => {
                        *out = Some(value);
                        *slot = None;
                    }
                    Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// The files of a plan, shared by its workers: the next to take, and every outcome.
struct Queue<'a> {
    files: &'a [Job],
    next: Mutex<usize>,
    results: Mutex<Vec<Option<Result<Done, ShellError>>>>,
    /// How many workers share it.
    workers: usize,
}

/// One worker: takes the next file until none is left, or its session breaks. Over
/// rsftp, a `put` takes a run of small files at once, as one pipelined batch.
async fn worker(
    client: &mut Remote,
    ctx: &Ctx<'_>,
    queue: &Queue<'_>,
    direction: Direction,
    overall: Option<&OverallBar>,
) -> bool {
    let Queue {
        files,
        next,
        results,
        workers,
    } = queue;
    let (files, workers) = (*files, *workers);
    let batches = matches!(direction, Direction::Put) && !client.is_sftp();
    // Bounded by the plan: each turn takes at least one file off it.
    loop {
        let (index, end) = {
            let mut next = next.lock().unwrap_or_else(|p| p.into_inner());
            let index = *next;
            let end = if batches {
                small_files::batch_end(files, index, workers)
            } else {
                index + 1
            };
            *next = end;
            (index, end)
        };
        if index >= files.len() {
            return true;
        }
        if end - index > 1 {
            let (outcomes, alive) =
                small_files::upload_batch(client, ctx, &files[index..end], overall).await;
            let mut results = results.lock().unwrap_or_else(|p| p.into_inner());
            for (slot, outcome) in results[index..end].iter_mut().zip(outcomes) {
                *slot = outcome;
            }
            if !alive {
                return false;
            }
            continue;
        }
        let Some(job) = files.get(index) else {
            return true;
        };
        let result = match direction {
            Direction::Get { force } => download_one(client, ctx, job, force, overall).await,
            Direction::Put => upload_one(client, ctx, job, overall).await,
        };
        if let Some(overall) = overall {
            overall.file_done();
        }
        let broke = result.as_ref().is_err_and(ShellError::breaks_session);
        if let Some(slot) = results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(index)
        {
            *slot = Some(result);
        }
        if broke {
            return false;
        }
    }
}

impl Shell {
    /// Moves `files`, `jobs` at once, each over a session of its own: the shell's, and
    /// as many more as the server opens.
    pub(super) async fn run_files(
        &mut self,
        files: &[Job],
        direction: Direction,
        jobs: usize,
        overall: Option<&OverallBar>,
    ) -> Outcomes {
        let mut extra = Vec::new();
        for _ in 1..jobs.min(files.len()) {
            match self.client.open_like(&self.conn).await {
                Ok(session) => extra.push(session),
                Err(_) => break,
            }
        }
        let queue = Queue {
            files,
            next: Mutex::new(0usize),
            results: Mutex::new((0..files.len()).map(|_| None).collect::<Vec<_>>()),
            workers: extra.len() + 1,
        };
        let ctx = Ctx {
            conn: &self.conn,
            printer: &self.printer,
            local_cwd: &self.local_cwd,
            remote_cwd: &self.remote_cwd,
        };
        let mut workers = vec![worker(&mut self.client, &ctx, &queue, direction, overall)];
        for session in &mut extra {
            workers.push(worker(session, &ctx, &queue, direction, overall));
        }
        let alive = join_all(workers).await;
        Outcomes {
            files: queue
                .results
                .into_inner()
                .unwrap_or_else(|p| p.into_inner()),
            main_alive: alive.first().copied().unwrap_or(true),
        }
    }

    /// Runs the files of a plan, `jobs` at once, with their bars. A failure is reported
    /// and the rest go on; the shell's own session breaking ends the command.
    pub(super) async fn run_plan(
        &mut self,
        plan: Plan,
        direction: Direction,
        jobs: usize,
    ) -> Result<(), ShellError> {
        let name = direction.name();
        let total_bytes = plan.files.iter().map(|j| j.size).sum();
        let count = plan.files.len();
        let overall = plan
            .many
            .then(|| self.printer.overall_bar(total_bytes, count));
        let jobs = if plan.many { jobs } else { 1 };
        let outcomes = self
            .run_files(&plan.files, direction, jobs, overall.as_ref())
            .await;
        drop(overall);
        let mut failed = plan.problems;
        let mut checks = Vec::with_capacity(count);
        let mut broken = None;
        for (job, result) in plan.files.iter().zip(outcomes.files) {
            let what = match direction {
                Direction::Get { .. } => listing::display_name(&job.remote).into_owned(),
                Direction::Put => self.show_local(&job.local),
            };
            match result {
                Some(Ok(done)) => checks.push(done.check),
                Some(Err(err)) if !plan.many => return Err(err),
                Some(Err(err)) => {
                    self.printer.warn(&format!("{name}: {what}: {err}"));
                    failed += 1;
                    if err.breaks_session() && broken.is_none() {
                        broken = Some(err);
                    }
                }
                None => {
                    self.printer
                        .warn(&format!("{name}: {what}: not sent: the sessions broke"));
                    failed += 1;
                }
            }
        }
        if !outcomes.main_alive
            && let Some(err) = broken
        {
            return Err(err);
        }
        if failed > 0 {
            return Err(ShellError::SomeFailed {
                failed,
                total: count + plan.problems,
                what: "files",
            });
        }
        if plan.many {
            let dirs = plan.dirs.len();
            let mut line = format!("{name}: {count} files, {}", format_size(total_bytes));
            if dirs > 0 {
                line.push_str(&format!(", {dirs} directories"));
            }
            line.push_str(&all_checked(&checks));
            self.printer.note(&line);
        }
        Ok(())
    }
}
