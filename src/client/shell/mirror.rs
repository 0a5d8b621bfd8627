//! `mirror`: make a local folder a copy of a remote one, or (`-R`) the other way. The
//! two trees are listed, [`crate::client::mirror::plan`] decides, and this carries it
//! out with a bar per file and an overall one, then prints one summary line. One
//! failure does not stop the rest; the command fails if any file did.

use std::path::PathBuf;
use std::time::{Instant, UNIX_EPOCH};

use super::commands::Invocation;
use super::transfers::{Direction, Job as FileJob, MAX_DEPTH, safe_name};
use super::{Shell, ShellError, glob, listing, parallel, paths};
use crate::auth::format_size;
use crate::client::local_hash;
use crate::client::mirror::{Action, Kind, Rules, Tree, plan};
use crate::client::transfer::Check;
use crate::protocol::{EntryType, ErrorCode};

/// Where a mirror goes, and how.
struct Job {
    reverse: bool,
    remote: String,
    local: PathBuf,
    dry_run: bool,
    excludes: Vec<String>,
}

impl Job {
    fn excluded(&self, rel: &str) -> bool {
        let name = paths::base_name(rel);
        self.excludes
            .iter()
            .any(|g| glob::matches(g, name) || glob::matches(g, rel))
    }

    fn remote_path(&self, rel: &str) -> String {
        paths::join(&self.remote, rel)
    }

    fn local_path(&self, rel: &str) -> PathBuf {
        self.local.join(rel)
    }
}

/// What a mirror did.
#[derive(Default)]
struct Tally {
    copied: usize,
    bytes: u64,
    skipped: usize,
    deleted: usize,
    failed: usize,
    unverified: usize,
}

fn local_mtime(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

impl Shell {
    pub(super) async fn mirror(&mut self, inv: &Invocation) -> Result<(), ShellError> {
        let started = Instant::now();
        let rules = Rules {
            delete: inv.has_long("delete"),
            checksum: inv.has_long("checksum"),
        };
        if rules.checksum && self.client.hash_kind().is_none() {
            return Err(ShellError::Refused(
                "--checksum: the server offers no hash to compare files by".into(),
            ));
        }
        let jobs = parallel::jobs(inv)?;
        let job = self.mirror_job(inv)?;
        let (source, target) = if job.reverse {
            let source = self.local_tree(&job)?.ok_or_else(|| {
                ShellError::Refused(format!("{}: no such local folder", job.local.display()))
            })?;
            (source, self.remote_tree(&job).await?)
        } else {
            let source = self.remote_tree(&job).await?.ok_or_else(|| {
                ShellError::Refused(format!("{}: no such remote folder", job.remote))
            })?;
            let mut target = self.local_tree(&job)?;
            // A download's partial `NAME.part` is ours, not the target's own file.
            if let Some(target) = &mut target {
                target.retain(|rel, _| {
                    rel.strip_suffix(".part")
                        .is_none_or(|base| !matches!(source.get(base), Some(Kind::File { .. })))
                });
            }
            (source, target)
        };
        let target_exists = target.is_some();
        let actions = plan(&source, &target.unwrap_or_default(), rules);
        let mut tally = Tally::default();
        if !target_exists {
            if job.dry_run {
                self.printer
                    .out(&format!("would make folder {}", self.shown(&job, "")));
            } else {
                self.make_dir(&job, "").await?;
            }
        }
        // Folders, skips and comparisons first; then the copies, `jobs` at once; then
        // what --delete removes, deepest first.
        let mut copies = Vec::new();
        let mut deletes = Vec::new();
        for action in &actions {
            match action {
                Action::Copy { path, .. } => copies.push(path.as_str()),
                Action::Delete { path, dir } => deletes.push((path.as_str(), *dir)),
                Action::Compare { path, .. } => match self.same_by_hash(&job, path).await {
                    Ok(true) => tally.skipped += 1,
                    Ok(false) => copies.push(path.as_str()),
                    Err(err) => self.mirror_failed(&job, path, err, &mut tally)?,
                },
                other => self.mirror_step(&job, other, &mut tally).await?,
            }
        }
        self.mirror_copies(&job, &copies, &source, jobs, &mut tally)
            .await?;
        for (path, dir) in deletes {
            let step = Action::Delete {
                path: path.to_owned(),
                dir,
            };
            self.mirror_step(&job, &step, &mut tally).await?;
        }
        self.printer.out(&tally_line(&tally, job.dry_run, started));
        if tally.failed > 0 {
            return Err(ShellError::SomeFailed {
                failed: tally.failed,
                total: tally.failed + tally.copied + tally.skipped + tally.deleted,
                what: "entries",
            });
        }
        Ok(())
    }

    /// The two roots, as given or by default (a folder named as the source, here).
    fn mirror_job(&self, inv: &Invocation) -> Result<Job, ShellError> {
        let reverse = inv.has('R');
        let source = &inv.args[0].text;
        let target = inv.args.get(1).map(|w| w.text.as_str());
        let (remote, local) = if reverse {
            let local = self.local_path(source);
            let name = local
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned)
                .ok_or_else(|| ShellError::Refused(format!("{source}: name the remote folder")))?;
            let remote = target.map_or_else(|| paths::join(&self.remote_cwd, &name), str::to_owned);
            (remote, local)
        } else {
            let resolved = paths::resolve(&self.remote_cwd, source);
            let name = paths::base_name(&resolved);
            let local = match target {
                Some(t) => self.local_path(t),
                None if safe_name(name) => self.local_cwd.join(name),
                None => {
                    return Err(ShellError::Refused(format!(
                        "{source}: name the local folder to mirror into"
                    )));
                }
            };
            (source.clone(), local)
        };
        Ok(Job {
            reverse,
            remote: paths::resolve(&self.remote_cwd, &remote),
            local,
            dry_run: inv.has_long("dry-run"),
            excludes: inv.values("exclude"),
        })
    }

    /// The remote tree under the job's remote root; `None` if there is none.
    async fn remote_tree(&mut self, job: &Job) -> Result<Option<Tree>, ShellError> {
        match self.client.stat(&job.remote).await {
            Ok(entry) if entry.kind == EntryType::Dir => {}
            Ok(_) => {
                return Err(ShellError::Refused(format!(
                    "{}: not a remote folder",
                    job.remote
                )));
            }
            Err(err) if err.code() == Some(&ErrorCode::NotFound) => return Ok(None),
            Err(err) => return Err(err.into()),
        }
        let mut tree = Tree::new();
        // Each folder once; bounded by the depth limit.
        let mut folders = vec![(String::new(), 0usize)];
        while let Some((rel, depth)) = folders.pop() {
            if depth >= MAX_DEPTH {
                return Err(ShellError::Refused(format!(
                    "{}: more than {MAX_DEPTH} levels deep",
                    job.remote_path(&rel)
                )));
            }
            let dir = if rel.is_empty() {
                job.remote.clone()
            } else {
                job.remote_path(&rel)
            };
            for entry in self.client.ls(Some(&dir)).await? {
                let child = paths::join(&rel, &entry.name);
                if !safe_name(&entry.name) || job.excluded(&child) {
                    continue;
                }
                match entry.kind {
                    EntryType::Dir => {
                        tree.insert(child.clone(), Kind::Dir);
                        folders.push((child, depth + 1));
                    }
                    EntryType::File => {
                        tree.insert(
                            child,
                            Kind::File {
                                size: entry.size,
                                mtime: entry.mtime,
                            },
                        );
                    }
                    EntryType::Symlink | EntryType::Other => self.printer.note(&format!(
                        "mirror: skipping {}: not a regular file",
                        listing::display_name(&job.remote_path(&child))
                    )),
                }
            }
        }
        Ok(Some(tree))
    }

    /// The local tree under the job's local root; `None` if there is none. Links are
    /// not followed.
    fn local_tree(&self, job: &Job) -> Result<Option<Tree>, ShellError> {
        match std::fs::metadata(&job.local) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(ShellError::Refused(format!(
                    "{}: not a local folder",
                    job.local.display()
                )));
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(ShellError::local(&job.local, err)),
        }
        let mut tree = Tree::new();
        let mut folders = vec![(String::new(), 0usize)];
        while let Some((rel, depth)) = folders.pop() {
            let dir = job.local_path(&rel);
            if depth >= MAX_DEPTH {
                return Err(ShellError::Refused(format!(
                    "{}: more than {MAX_DEPTH} levels deep",
                    dir.display()
                )));
            }
            for entry in std::fs::read_dir(&dir).map_err(|e| ShellError::local(&dir, e))? {
                let entry = entry.map_err(|e| ShellError::local(&dir, e))?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    self.printer.warn(&format!(
                        "mirror: skipping {}: the name is not UTF-8",
                        entry.path().display()
                    ));
                    continue;
                };
                let child = paths::join(&rel, &name);
                if job.excluded(&child) {
                    continue;
                }
                let meta = entry
                    .metadata()
                    .map_err(|e| ShellError::local(&entry.path(), e))?;
                if meta.is_dir() {
                    tree.insert(child.clone(), Kind::Dir);
                    folders.push((child, depth + 1));
                } else if meta.is_file() {
                    tree.insert(
                        child,
                        Kind::File {
                            size: meta.len(),
                            mtime: local_mtime(&meta),
                        },
                    );
                }
            }
        }
        Ok(Some(tree))
    }

    /// A target path for people to read.
    fn shown(&self, job: &Job, rel: &str) -> String {
        if job.reverse {
            let path = if rel.is_empty() {
                job.remote.clone()
            } else {
                job.remote_path(rel)
            };
            listing::display_name(&path).into_owned()
        } else {
            self.show_local(&job.local_path(rel))
        }
    }

    async fn make_dir(&mut self, job: &Job, rel: &str) -> Result<(), ShellError> {
        if job.reverse {
            let path = if rel.is_empty() {
                job.remote.clone()
            } else {
                job.remote_path(rel)
            };
            self.ensure_remote_dir(&path).await
        } else {
            let path = job.local_path(rel);
            std::fs::create_dir_all(&path).map_err(|e| ShellError::local(&path, e))
        }
    }

    async fn delete(&mut self, job: &Job, rel: &str, dir: bool) -> Result<(), ShellError> {
        if job.reverse {
            let path = job.remote_path(rel);
            if dir {
                self.client.rmdir(&path).await?;
            } else {
                self.client.rm(&path).await?;
            }
        } else {
            let path = job.local_path(rel);
            let removed = if dir {
                std::fs::remove_dir(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| ShellError::local(&path, e))?;
        }
        Ok(())
    }

    /// Whether source and target hold the same bytes, by the server's hash.
    async fn same_by_hash(&mut self, job: &Job, rel: &str) -> Result<bool, ShellError> {
        let remote = job.remote_path(rel);
        let Some(theirs) = self.client.hash(&self.conn, &remote).await? else {
            return Err(ShellError::Refused(format!(
                "{remote}: the server could not hash it"
            )));
        };
        let ours = local_hash(&job.local_path(rel), theirs.kind).await?;
        Ok(ours == theirs)
    }

    /// Reports a step that failed and counts it; a broken session ends the mirror.
    fn mirror_failed(
        &self,
        job: &Job,
        path: &str,
        err: ShellError,
        tally: &mut Tally,
    ) -> Result<(), ShellError> {
        if err.breaks_session() {
            return Err(err);
        }
        self.printer
            .warn(&format!("mirror: {}: {err}", self.shown(job, path)));
        tally.failed += 1;
        Ok(())
    }

    /// One step other than a copy.
    async fn mirror_step(
        &mut self,
        job: &Job,
        action: &Action,
        tally: &mut Tally,
    ) -> Result<(), ShellError> {
        let (path, result) = match action {
            Action::Skip(_) => {
                tally.skipped += 1;
                return Ok(());
            }
            Action::Conflict { path, reason } => {
                self.printer
                    .warn(&format!("mirror: {}: {reason}", self.shown(job, path)));
                tally.failed += 1;
                return Ok(());
            }
            Action::MakeDir(path) if job.dry_run => {
                self.printer
                    .out(&format!("would make folder {}", self.shown(job, path)));
                return Ok(());
            }
            Action::MakeDir(path) => (path, self.make_dir(job, path).await),
            Action::Delete { path, .. } if job.dry_run => {
                self.printer
                    .out(&format!("would delete {}", self.shown(job, path)));
                tally.deleted += 1;
                return Ok(());
            }
            Action::Delete { path, dir } => {
                let done = self.delete(job, path, *dir).await;
                if done.is_ok() {
                    self.printer
                        .note(&format!("deleted {}", self.shown(job, path)));
                    tally.deleted += 1;
                }
                (path, done)
            }
            // Copies and comparisons are the caller's.
            Action::Copy { .. } | Action::Compare { .. } => return Ok(()),
        };
        match result {
            Ok(()) => Ok(()),
            Err(err) => self.mirror_failed(job, path, err, tally),
        }
    }

    /// The files to copy, `jobs` at once, each given its source's time.
    async fn mirror_copies(
        &mut self,
        job: &Job,
        copies: &[&str],
        source: &Tree,
        jobs: usize,
        tally: &mut Tally,
    ) -> Result<(), ShellError> {
        let files: Vec<FileJob> = copies
            .iter()
            .map(|rel| {
                let (size, mtime) = match source.get(*rel) {
                    Some(Kind::File { size, mtime }) => (*size, Some(*mtime)),
                    _ => (0, None),
                };
                FileJob {
                    remote: job.remote_path(rel),
                    local: job.local_path(rel),
                    size,
                    mtime,
                }
            })
            .collect();
        if job.dry_run {
            for file in &files {
                let (remote, local) = (
                    listing::display_name(&file.remote).into_owned(),
                    self.show_local(&file.local),
                );
                let (from, to) = if job.reverse {
                    (local, remote)
                } else {
                    (remote, local)
                };
                self.printer.out(&format!(
                    "would copy {from} -> {to} ({})",
                    format_size(file.size)
                ));
                tally.copied += 1;
                tally.bytes += file.size;
            }
            return Ok(());
        }
        let bytes = files.iter().map(|f| f.size).sum();
        let overall = (files.len() > 1).then(|| self.printer.overall_bar(bytes, files.len()));
        let direction = if job.reverse {
            Direction::Put
        } else {
            Direction::Get { force: true }
        };
        let outcomes = self
            .run_files(&files, direction, jobs, overall.as_ref())
            .await;
        drop(overall);
        let mut broken = None;
        for (rel, result) in copies.iter().zip(outcomes.files) {
            match result {
                Some(Ok(done)) => {
                    tally.copied += 1;
                    tally.bytes += done.sent;
                    if !matches!(done.check, Check::Verified(_)) {
                        tally.unverified += 1;
                    }
                }
                Some(Err(err)) => {
                    self.printer
                        .warn(&format!("mirror: {}: {err}", self.shown(job, rel)));
                    tally.failed += 1;
                    if err.breaks_session() && broken.is_none() {
                        broken = Some(err);
                    }
                }
                None => {
                    self.printer.warn(&format!(
                        "mirror: {}: not copied: the sessions broke",
                        self.shown(job, rel)
                    ));
                    tally.failed += 1;
                }
            }
        }
        match broken {
            Some(err) if !outcomes.main_alive => Err(err),
            _ => Ok(()),
        }
    }
}

/// The one line a mirror ends with.
fn tally_line(tally: &Tally, dry_run: bool, started: Instant) -> String {
    if dry_run {
        return format!(
            "mirror (dry run): would copy {} files ({}), skip {}, delete {}; {} failed; nothing was changed",
            tally.copied,
            format_size(tally.bytes),
            tally.skipped,
            tally.deleted,
            tally.failed
        );
    }
    let secs = started.elapsed().as_secs_f64();
    let mut line = format!(
        "mirror: {} files copied ({} sent), {} skipped, {} deleted, {} failed, in {secs:.1}s",
        tally.copied,
        format_size(tally.bytes),
        tally.skipped,
        tally.deleted,
        tally.failed
    );
    if tally.copied > 0 {
        match tally.unverified {
            0 => line.push_str(", all verified"),
            n => line.push_str(&format!(", {n} not verified (server offers no hash)")),
        }
    }
    line
}
