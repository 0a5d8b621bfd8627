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
use super::{Shell, ShellError, listing, parallel, paths};
use crate::auth::format_size;
use crate::client::transfer::{Check, TransferReport};

use crate::protocol::EntryType;

/// How deep `-r` goes before it gives up: deeper than any real tree, and a bound on a
/// server that makes one up.
pub(super) const MAX_DEPTH: usize = 256;

/// One file to move.
pub(super) struct Job {
    pub(super) remote: String,
    pub(super) local: PathBuf,
    pub(super) size: u64,
    /// The time to give the copy once it is there (a mirror's), in Unix seconds.
    pub(super) mtime: Option<i64>,
}

/// What a `get` or `put` will do.
#[derive(Default)]
pub(super) struct Plan {
    /// Directories to create first, parents before children.
    pub(super) dirs: Vec<(String, PathBuf)>,
    pub(super) files: Vec<Job>,
    /// Failures found while planning (a directory without `-r`, a name we skip).
    pub(super) problems: usize,
    /// Whether this is more than one file, or a tree, so an overall bar helps.
    pub(super) many: bool,
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
pub(super) fn all_checked(checks: &[Check]) -> String {
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
        let jobs = parallel::jobs(inv)?;
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
                    mtime: None,
                }),
            }
        }
        for (_, dir) in &plan.dirs {
            std::fs::create_dir_all(dir).map_err(|e| ShellError::local(dir, e))?;
        }
        let direction = Direction::Get {
            force: inv.has('f'),
        };
        self.run_plan(plan, direction, jobs).await
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
                    mtime: None,
                }),
                EntryType::Symlink | EntryType::Other => self.printer.note(&format!(
                    "skipping {}: not a regular file",
                    listing::display_name(&remote)
                )),
            }
        }
        Ok(())
    }

    pub(super) async fn put(&mut self, inv: &Invocation) -> Result<(), ShellError> {
        let jobs = parallel::jobs(inv)?;
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
                    mtime: None,
                });
            }
        }
        for (dir, _) in &plan.dirs {
            self.ensure_remote_dir(dir).await?;
        }
        self.run_plan(plan, Direction::Put, jobs).await
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
                    mtime: None,
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
}

/// Which way a plan moves files.
#[derive(Clone, Copy)]
pub(super) enum Direction {
    Get { force: bool },
    Put,
}

impl Direction {
    pub(super) fn name(self) -> &'static str {
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
