//! `get` and `put`: one file, the matches of a pattern, or a whole tree (`-r`).
//!
//! A command first makes a plan (which files go where, which directories to create),
//! then runs it with a bar per file and, for more than one file, an overall bar. Every
//! file ends with a `verified md5` line or an error; one failed file does not stop the
//! others, but the command fails if any did.
//!
//! Names that come from the server are checked before they touch the local disk: a
//! name that is empty, `.`, `..` or holds a `/` is skipped, so a listing can never lead a
//! download outside the directory it was asked to fill.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::commands::Invocation;
use super::{Shell, ShellError, listing, paths};
use crate::auth::format_size;
use crate::client::progress::OverallBar;
use crate::client::transfer::{Check, TransferReport};
use crate::client::{ClientError, local_hash, partial_path};
use crate::protocol::EntryType;

/// How deep `-r` goes before it gives up: deeper than any real tree, and a bound on a
/// server that makes one up.
pub(super) const MAX_DEPTH: usize = 256;

/// One file to move.
struct Job {
    remote: String,
    local: PathBuf,
    size: u64,
}

/// What a `get` or `put` will do.
#[derive(Default)]
struct Plan {
    /// Directories to create first, parents before children.
    dirs: Vec<(String, PathBuf)>,
    files: Vec<Job>,
    /// Failures found while planning (a directory without `-r`, a name we skip).
    problems: usize,
    /// Whether this is more than one file, or a tree, so an overall bar helps.
    many: bool,
}

/// A remote name that is safe to use as a local file name.
pub(super) fn safe_name(name: &str) -> bool {
    !(name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0'))
}

/// The line that ends a transfer.
pub(super) fn summary(from: &str, to: &str, report: &TransferReport, elapsed: Duration) -> String {
    if report.up_to_date {
        return format!(
            "{from} -> {to}: already up to date, {}",
            report.check.describe()
        );
    }
    let mut line = format!("{from} -> {to}: {}", format_size(report.size));
    // A rate over a few milliseconds says nothing.
    let secs = elapsed.as_secs_f64();
    if secs >= 0.05 {
        let rate = (report.transferred as f64 / secs) as u64;
        line.push_str(&format!(" in {secs:.1}s ({}/s)", format_size(rate)));
    }
    if report.restarted {
        line.push_str(", started over");
    } else if report.resumed_from > 0 {
        line.push_str(&format!(
            ", resumed at {}",
            format_size(report.resumed_from)
        ));
        if report.unchecked_prefix {
            line.push_str(" (prefix not checked)");
        }
    }
    line.push_str(&format!(", {}", report.check.describe()));
    line
}

/// The end of a multi-file summary: what was checked, without claiming more.
fn all_checked(checks: &[Check]) -> String {
    let unverified = checks
        .iter()
        .filter(|c| !matches!(c, Check::Verified(_)))
        .count();
    match unverified {
        0 => ", all verified".to_owned(),
        n if n == checks.len() => {
            let why = checks.first().map(Check::describe).unwrap_or_default();
            format!(", {why}")
        }
        n => format!(", {} verified, {n} not", checks.len() - n),
    }
}

impl Shell {
    pub(super) async fn get(&mut self, inv: &Invocation) -> Result<(), ShellError> {
        let recursive = inv.has('r');
        let sources = self.remote_matches(&inv.args[0]).await?;
        let target = inv
            .args
            .get(1)
            .map(|w| (self.local_path(&w.text), w.text.ends_with('/')));
        let many = sources.len() > 1;
        let mut plan = Plan {
            many: many || recursive,
            ..Plan::default()
        };
        for (path, entry) in sources {
            let resolved = paths::resolve(&self.remote_cwd, &path);
            let name = paths::base_name(&resolved).to_owned();
            let dest = match &target {
                Some((t, _)) if t.is_dir() => {
                    if !safe_name(&name) {
                        return Err(ShellError::Refused(format!(
                            "{path}: name the local directory to copy it into"
                        )));
                    }
                    t.join(&name)
                }
                Some((t, slash)) if many || *slash => {
                    return Err(ShellError::Refused(format!(
                        "{}: no such local directory",
                        t.display()
                    )));
                }
                Some((t, _)) => t.clone(),
                None if safe_name(&name) => self.local_cwd.join(&name),
                None => {
                    return Err(ShellError::Refused(format!(
                        "{path}: name the local directory to copy it into"
                    )));
                }
            };
            match entry.kind {
                EntryType::Dir if !recursive => {
                    if !many {
                        return Err(ShellError::Directory(path));
                    }
                    self.printer
                        .warn(&format!("get: {}", ShellError::Directory(path)));
                    plan.problems += 1;
                }
                EntryType::Dir => {
                    plan.dirs.push((resolved.clone(), dest.clone()));
                    self.walk_remote(&resolved, &dest, &mut plan, 0).await?;
                }
                _ => plan.files.push(Job {
                    remote: path,
                    local: dest,
                    size: entry.size,
                }),
            }
        }
        for (_, dir) in &plan.dirs {
            std::fs::create_dir_all(dir).map_err(|e| ShellError::local(dir, e))?;
        }
        self.run_plan(
            plan,
            Direction::Get {
                force: inv.has('f'),
            },
        )
        .await
    }

    /// Adds everything under the remote directory `dir` to the plan.
    async fn walk_remote(
        &mut self,
        dir: &str,
        local: &Path,
        plan: &mut Plan,
        depth: usize,
    ) -> Result<(), ShellError> {
        if depth >= MAX_DEPTH {
            return Err(ShellError::Refused(format!(
                "{dir}: more than {MAX_DEPTH} levels deep"
            )));
        }
        for entry in self.client.ls(Some(dir)).await? {
            let remote = paths::join(dir, &entry.name);
            if !safe_name(&entry.name) {
                self.printer.warn(&format!(
                    "get: skipping {}: not a usable local name",
                    listing::display_name(&remote)
                ));
                plan.problems += 1;
                continue;
            }
            let local = local.join(&entry.name);
            match entry.kind {
                EntryType::Dir => {
                    plan.dirs.push((remote.clone(), local.clone()));
                    Box::pin(self.walk_remote(&remote, &local, plan, depth + 1)).await?;
                }
                EntryType::File => plan.files.push(Job {
                    remote,
                    local,
                    size: entry.size,
                }),
                EntryType::Symlink | EntryType::Other => self.printer.note(&format!(
                    "skipping {}: not a regular file",
                    listing::display_name(&remote)
                )),
            }
        }
        Ok(())
    }

    async fn download_one(
        &mut self,
        job: &Job,
        force: bool,
        overall: Option<&OverallBar>,
    ) -> Result<Check, ShellError> {
        let shown = self.show_local(&job.local);
        let from = listing::display_name(&job.remote).into_owned();
        if !force && let Ok(meta) = std::fs::metadata(&job.local) {
            if meta.is_dir() {
                return Err(ShellError::Refused(format!("{shown}: is a directory")));
            }
            // An identical file is already there: say so, rather than refuse.
            if meta.len() == job.size
                && let Some(theirs) = self.client.hash(&self.conn, &job.remote).await?
            {
                let ours = local_hash(&job.local, theirs.kind).await?;
                if ours == theirs {
                    if let Some(overall) = overall {
                        overall.add(job.size);
                    }
                    self.printer.note(&format!(
                        "{from} -> {shown}: already up to date, verified {ours}"
                    ));
                    return Ok(Check::Verified(ours));
                }
            }
            return Err(ClientError::LocalExists(job.local.clone()).into());
        }
        let label = paths::base_name(&job.remote).to_owned();
        let bar = self.printer.file_bar(&label, overall);
        let result = self
            .client
            .download(&self.conn, &job.remote, &job.local, force, &bar)
            .await;
        let elapsed = bar.elapsed();
        drop(bar);
        match result {
            Ok(report) => {
                self.printer.note(&summary(&from, &shown, &report, elapsed));
                Ok(report.check)
            }
            Err(err) => {
                if partial_path(&job.local).exists() && !matches!(err, ClientError::Checksum { .. })
                {
                    self.printer.note(&format!(
                        "{}: kept for the next get to resume",
                        self.show_local(&partial_path(&job.local))
                    ));
                }
                Err(err.into())
            }
        }
    }

    pub(super) async fn put(&mut self, inv: &Invocation) -> Result<(), ShellError> {
        let recursive = inv.has('r');
        let sources = self.local_matches(&inv.args[0])?;
        let many = sources.len() > 1;
        let target = inv.args.get(1).map(|w| w.text.clone());
        // Whether the target is a directory to put things in, asked once.
        let target_is_dir = match &target {
            None => true,
            Some(t) if t.ends_with('/') => true,
            Some(t) => matches!(self.client.stat(t).await, Ok(e) if e.kind == EntryType::Dir),
        };
        if many && !target_is_dir {
            return Err(ShellError::Refused(format!(
                "{}: not a remote directory",
                target.unwrap_or_default()
            )));
        }
        let mut plan = Plan {
            many: many || recursive,
            ..Plan::default()
        };
        for source in sources {
            let meta = std::fs::metadata(&source).map_err(|e| ShellError::local(&source, e))?;
            let Some(name) = source
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned)
            else {
                return Err(ShellError::Refused(format!(
                    "{}: the name is not UTF-8, which the server cannot take",
                    source.display()
                )));
            };
            let dest = match &target {
                Some(t) if target_is_dir => paths::join(t, &name),
                Some(t) => t.clone(),
                None => paths::join(&self.remote_cwd, &name),
            };
            if meta.is_dir() {
                if !recursive {
                    let shown = self.show_local(&source);
                    if !many {
                        return Err(ShellError::Directory(shown));
                    }
                    self.printer
                        .warn(&format!("put: {}", ShellError::Directory(shown)));
                    plan.problems += 1;
                    continue;
                }
                plan.dirs.push((dest.clone(), source.clone()));
                self.walk_local(&source, &dest, &mut plan, 0)?;
            } else {
                plan.files.push(Job {
                    remote: dest,
                    local: source,
                    size: meta.len(),
                });
            }
        }
        for (dir, _) in &plan.dirs {
            self.ensure_remote_dir(dir).await?;
        }
        self.run_plan(plan, Direction::Put).await
    }

    /// Adds everything under the local directory `dir` to the plan. Symbolic links are
    /// skipped, so a link to a parent cannot send the tree round forever.
    fn walk_local(
        &self,
        dir: &Path,
        remote: &str,
        plan: &mut Plan,
        depth: usize,
    ) -> Result<(), ShellError> {
        if depth >= MAX_DEPTH {
            return Err(ShellError::Refused(format!(
                "{}: more than {MAX_DEPTH} levels deep",
                dir.display()
            )));
        }
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| ShellError::local(dir, e))? {
            entries.push(entry.map_err(|e| ShellError::local(dir, e))?);
        }
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                self.printer.warn(&format!(
                    "put: skipping {}: the name is not UTF-8",
                    path.display()
                ));
                plan.problems += 1;
                continue;
            };
            let meta = std::fs::symlink_metadata(&path).map_err(|e| ShellError::local(&path, e))?;
            let dest = paths::join(remote, &name);
            if meta.is_dir() {
                plan.dirs.push((dest.clone(), path.clone()));
                self.walk_local(&path, &dest, plan, depth + 1)?;
            } else if meta.is_file() {
                plan.files.push(Job {
                    remote: dest,
                    local: path,
                    size: meta.len(),
                });
            } else {
                self.printer.note(&format!(
                    "skipping {}: not a regular file",
                    self.show_local(&path)
                ));
            }
        }
        Ok(())
    }

    /// Makes a remote directory unless it is there already. (SFTP servers answer an
    /// existing folder with a plain failure, so whatever the refusal, a folder that is
    /// there will do.)
    pub(super) async fn ensure_remote_dir(&mut self, dir: &str) -> Result<(), ShellError> {
        match self.client.mkdir(dir).await {
            Ok(()) => Ok(()),
            Err(err) if err.code().is_some() => match self.client.stat(dir).await {
                Ok(entry) if entry.kind == EntryType::Dir => Ok(()),
                _ => Err(err.into()),
            },
            Err(err) => Err(err.into()),
        }
    }

    async fn upload_one(
        &mut self,
        job: &Job,
        overall: Option<&OverallBar>,
    ) -> Result<Check, ShellError> {
        let shown = self.show_local(&job.local);
        let label = job
            .local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bar = self.printer.file_bar(&label, overall);
        let result = self
            .client
            .upload(&self.conn, &job.local, &job.remote, &bar)
            .await;
        let elapsed = bar.elapsed();
        drop(bar);
        let report = result?;
        let to = listing::display_name(&job.remote).into_owned();
        self.printer.note(&summary(&shown, &to, &report, elapsed));
        Ok(report.check)
    }

    /// Runs the files of a plan one after another with their bars. A failure is reported
    /// and the rest go on, unless it broke the session.
    async fn run_plan(&mut self, plan: Plan, direction: Direction) -> Result<(), ShellError> {
        let name = direction.name();
        let total_bytes = plan.files.iter().map(|j| j.size).sum();
        let count = plan.files.len();
        let overall = plan
            .many
            .then(|| self.printer.overall_bar(total_bytes, count));
        let mut failed = plan.problems;
        let mut checks = Vec::with_capacity(plan.files.len());
        for job in &plan.files {
            let result = match direction {
                Direction::Get { force } => self.download_one(job, force, overall.as_ref()).await,
                Direction::Put => self.upload_one(job, overall.as_ref()).await,
            };
            if let Some(overall) = &overall {
                overall.file_done();
            }
            match result {
                Ok(check) => checks.push(check),
                Err(err) if !plan.many || err.breaks_session() => return Err(err),
                Err(err) => {
                    let what = match direction {
                        Direction::Get { .. } => listing::display_name(&job.remote).into_owned(),
                        Direction::Put => self.show_local(&job.local),
                    };
                    self.printer.warn(&format!("{name}: {what}: {err}"));
                    failed += 1;
                }
            }
        }
        drop(overall);
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

/// Which way a plan moves files.
#[derive(Clone, Copy)]
enum Direction {
    Get { force: bool },
    Put,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::Get { .. } => "get",
            Direction::Put => "put",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Md5Digest;

    #[test]
    fn names_from_the_server_stay_in_their_directory() {
        assert!(safe_name("a.txt"));
        assert!(safe_name(".hidden"));
        for bad in ["", ".", "..", "a/b", "../x", "a\0b"] {
            assert!(!safe_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn summaries_say_what_happened() {
        let report = TransferReport {
            size: 64 << 20,
            resumed_from: 32 << 20,
            transferred: 32 << 20,
            md5: Md5Digest::of(b"x"),
            restarted: false,
            up_to_date: false,
            check: Check::md5(Md5Digest::of(b"x")),
            unchecked_prefix: false,
        };
        let line = summary("a", "/in/a", &report, Duration::from_secs(2));
        assert!(line.starts_with("a -> /in/a: 64 MiB in 2.0s (16 MiB/s), resumed at 32 MiB"));
        assert!(line.ends_with(&format!("verified md5 {}", Md5Digest::of(b"x"))));
        let same = TransferReport {
            up_to_date: true,
            ..report.clone()
        };
        assert!(summary("a", "b", &same, Duration::ZERO).contains("already up to date"));
        let quick = summary("a", "b", &report, Duration::from_millis(3));
        assert!(
            quick.starts_with("a -> b: 64 MiB, resumed at 32 MiB"),
            "{quick}"
        );
    }
}
