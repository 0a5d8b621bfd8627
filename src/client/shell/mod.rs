//! The `rsftp` shell: commands typed by a person, read from a script, or given once on
//! the command line, all run the same way against one rsftp session.
//!
//! - `commands`: the table of commands (usage, help, options), and parsing against it.
//! - `words`: splitting a line into words, with quotes, escapes and glob patterns.
//! - `glob`: matching `*`, `?` and `[...]` against remote and local names alike.
//! - `paths`: remote paths as text, resolved as the server resolves them.
//! - `listing`: how `ls` and `lls` print.
//! - `moves`: `mv`, into a folder when the target is one.
//! - `mirror`: `mirror`, a tree made a copy of another, carried out.
//! - `transfers`: `get` and `put`, of one file, a pattern or a whole tree.
//! - `parallel`: running their files, `-j N` at once over N sessions.
//! - `complete`: tab completion of commands and of remote and local paths.
//! - `run`: the interactive loop, scripts (`-b`) and one-shot commands.

mod commands;
mod complete;
mod error;
mod glob;
mod listing;
mod mirror;
mod moves;
mod parallel;
pub(crate) mod paths;
mod run;
mod small_files;
mod transfers;
mod words;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use commands::{ArgKind, COMMANDS, Cmd, Group, Spec, overview};
pub use complete::ShellHelper;
pub use error::{ShellError, explain};
pub use run::{Outcome, interactive, one_shot, script};
pub use words::{SplitError, Word, split_line};

use super::progress::Printer;
use super::{ClientError, Connection, Remote};
use crate::auth::format_size;
use crate::protocol::{EntryLine, EntryType};
use commands::Invocation;

/// A session on the server: rsftp, or SFTP where the server has no rsftp.
pub type Session = Remote;

/// What to do after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Exit,
}

/// What completion needs to know of the shell: where it is, and the remote listings it
/// has already fetched. Shared with the completer; reset after every command, since a
/// command may have changed what is there.
#[derive(Default)]
pub struct View {
    inner: Mutex<ViewState>,
}

#[derive(Default)]
struct ViewState {
    remote_cwd: String,
    local_cwd: PathBuf,
    listings: HashMap<String, Vec<(String, bool)>>,
}

impl View {
    fn lock(&self) -> std::sync::MutexGuard<'_, ViewState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, remote_cwd: &str, local_cwd: &Path) {
        let mut state = self.lock();
        state.remote_cwd = remote_cwd.to_owned();
        state.local_cwd = local_cwd.to_owned();
        state.listings.clear();
    }

    fn cwds(&self) -> (String, PathBuf) {
        let state = self.lock();
        (state.remote_cwd.clone(), state.local_cwd.clone())
    }

    fn listing(&self, dir: &str) -> Option<Vec<(String, bool)>> {
        self.lock().listings.get(dir).cloned()
    }

    fn remember(&self, dir: &str, names: Vec<(String, bool)>) {
        self.lock().listings.insert(dir.to_owned(), names);
    }
}

/// The shell: an rsftp session, the remote and local directories, and where output goes.
pub struct Shell {
    conn: Connection,
    client: Session,
    remote_cwd: String,
    local_cwd: PathBuf,
    printer: Printer,
    /// Lay `ls` out in columns (stdout is a terminal).
    columns: bool,
    view: Arc<View>,
}

impl Shell {
    /// Opens the rsftp subsystem on a logged-in connection, or SFTP if the server has no
    /// rsftp. `columns` lays listings out for a terminal.
    pub async fn start(
        conn: Connection,
        printer: Printer,
        columns: bool,
    ) -> Result<Shell, ShellError> {
        let mut client = Remote::open(&conn).await?;
        let remote_cwd = client.pwd().await?;
        let local_cwd =
            std::env::current_dir().map_err(|e| ShellError::local(Path::new("."), e))?;
        let view = Arc::new(View::default());
        view.update(&remote_cwd, &local_cwd);
        Ok(Shell {
            conn,
            client,
            remote_cwd,
            local_cwd,
            printer,
            columns,
            view,
        })
    }

    /// The server's name and version, from its greeting; or what an SFTP server can check.
    pub fn server(&self) -> String {
        self.client.server()
    }

    pub fn printer(&self) -> &Printer {
        &self.printer
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// What the completer shares with the shell.
    pub fn view(&self) -> Arc<View> {
        Arc::clone(&self.view)
    }

    /// A second session on the same connection, for completion: listing there can never
    /// get in the way of (or out of step with) the shell's own session.
    pub async fn open_lister(&self) -> Result<Session, ClientError> {
        self.client.open_like(&self.conn).await
    }

    pub fn prompt(&self) -> String {
        format!("rsftp:{}> ", listing::display_name(&self.remote_cwd))
    }

    /// Replaces a session that broke or was interrupted with a fresh one in the same
    /// directory. The server keeps what an interrupted upload sent, and `.part` files
    /// keep what a download got, so the same command resumes.
    pub async fn reopen(&mut self) -> Result<(), ClientError> {
        let mut client = self.client.open_like(&self.conn).await?;
        if let Err(err) = client.cd(Some(&self.remote_cwd)).await {
            self.printer.warn(&format!(
                "cannot return to {}: {}; now in /",
                self.remote_cwd,
                explain(&err)
            ));
            self.remote_cwd = client.pwd().await?;
        }
        self.client = client;
        self.view.update(&self.remote_cwd, &self.local_cwd);
        Ok(())
    }

    /// Says goodbye to the server and closes the connection.
    pub async fn close(self) {
        let _ = self.client.quit().await;
        let _ = self.conn.close().await;
    }

    /// Runs one command line.
    pub async fn run_line(&mut self, line: &str) -> Result<Flow, ShellError> {
        let words = split_line(line)?;
        if words.is_empty() {
            return Ok(Flow::Continue);
        }
        self.run_words(words).await
    }

    /// Runs one command, already split into words.
    pub async fn run_words(&mut self, words: Vec<Word>) -> Result<Flow, ShellError> {
        let invocation = commands::parse(words)?;
        let result = self.dispatch(&invocation).await;
        self.view.update(&self.remote_cwd, &self.local_cwd);
        if let Some(err) = self.printer.take_error() {
            return Err(ShellError::Output(err));
        }
        result
    }

    async fn dispatch(&mut self, inv: &Invocation) -> Result<Flow, ShellError> {
        let arg = |i: usize| inv.args.get(i).map(|w| w.text.as_str());
        match inv.spec.cmd {
            Cmd::Ls => self.ls(inv).await?,
            Cmd::Cd => {
                self.remote_cwd = self.client.cd(arg(0)).await?;
            }
            Cmd::Pwd => {
                self.remote_cwd = self.client.pwd().await?;
                self.printer.out(&self.remote_cwd);
            }
            Cmd::Mkdir => {
                let paths = inv.args.iter().map(|w| w.text.clone()).collect();
                self.each_remote("mkdir", paths, Cmd::Mkdir).await?
            }
            Cmd::Rmdir => {
                let paths = self.expand_all_remote(&inv.args).await?;
                self.each_remote("rmdir", paths, Cmd::Rmdir).await?
            }
            Cmd::Rm => {
                let paths = self.expand_all_remote(&inv.args).await?;
                self.each_remote("rm", paths, Cmd::Rm).await?
            }
            Cmd::Mv => self.mv(inv).await?,
            Cmd::Get => self.get(inv).await?,
            Cmd::Put => self.put(inv).await?,
            Cmd::Mirror => self.mirror(inv).await?,
            Cmd::Info => {
                let info = self.client.info().await?;
                let percent = (u128::from(info.used) * 100)
                    .checked_div(u128::from(info.limit))
                    .unwrap_or(100);
                self.printer.out(&format!(
                    "quota: used {} of {} ({percent}%), free {}",
                    format_size(info.used),
                    format_size(info.limit),
                    format_size(info.free)
                ));
            }
            Cmd::Lcd => {
                let path = self.local_path(arg(0).unwrap_or("~"));
                let path = std::fs::canonicalize(&path).map_err(|e| ShellError::local(&path, e))?;
                if !path.is_dir() {
                    return Err(ShellError::Refused(format!(
                        "{}: not a directory",
                        path.display()
                    )));
                }
                self.local_cwd = path;
            }
            Cmd::Lls => self.lls(inv)?,
            Cmd::Lpwd => self.printer.out(&self.local_cwd.display().to_string()),
            Cmd::Help => match arg(0) {
                None => self.printer.out(&overview()),
                Some(name) => {
                    let spec = commands::find(name)
                        .ok_or_else(|| ShellError::UnknownCommand(name.to_owned()))?;
                    self.printer.out(&commands::details(spec));
                }
            },
            Cmd::Exit => return Ok(Flow::Exit),
        }
        Ok(Flow::Continue)
    }

    /// Runs mkdir, rmdir or rm on each path. One failure does not stop the others; each
    /// is reported, and the command fails if any did.
    async fn each_remote(
        &mut self,
        name: &str,
        paths: Vec<String>,
        cmd: Cmd,
    ) -> Result<(), ShellError> {
        let total = paths.len();
        let mut failed = 0;
        for path in paths {
            let result = match cmd {
                Cmd::Mkdir => self.client.mkdir(&path).await,
                Cmd::Rmdir => self.client.rmdir(&path).await,
                _ => self.client.rm(&path).await,
            };
            match result {
                Ok(()) => {}
                Err(err) if total == 1 => return Err(err.into()),
                Err(err) => {
                    let err = ShellError::from(err);
                    if err.breaks_session() {
                        return Err(err);
                    }
                    self.printer.warn(&format!("{name}: {err}"));
                    failed += 1;
                }
            }
        }
        if failed > 0 {
            return Err(ShellError::SomeFailed {
                failed,
                total,
                what: "paths",
            });
        }
        Ok(())
    }

    /// A local path as typed: `~` is the home directory, relative is from `lcd`.
    fn local_path(&self, text: &str) -> PathBuf {
        let home = std::env::home_dir();
        match (text, home) {
            ("~", Some(home)) => home,
            (t, Some(home)) if t.starts_with("~/") => home.join(&t[2..]),
            (t, _) => self.local_cwd.join(t),
        }
    }

    /// A local path for people to read: relative to the local directory if inside it.
    fn show_local(&self, path: &Path) -> String {
        path.strip_prefix(&self.local_cwd)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| path.display().to_string())
    }

    /// The remote entries a word names: the matches of a pattern (in name order), or
    /// the one path it names.
    async fn remote_matches(
        &mut self,
        word: &Word,
    ) -> Result<Vec<(String, EntryLine)>, ShellError> {
        let Some(pattern) = &word.pattern else {
            let entry = self.client.stat(&word.text).await?;
            return Ok(vec![(word.text.clone(), entry)]);
        };
        let (dir_pattern, name_pattern) = paths::split_last(pattern);
        if glob::is_pattern(dir_pattern) {
            return Err(ShellError::Refused(format!(
                "{}: patterns match names in one directory only",
                word.text
            )));
        }
        let dir = unescape(dir_pattern);
        let listed = if dir.is_empty() {
            self.client.ls(None).await?
        } else {
            self.client.ls(Some(&dir)).await?
        };
        let found: Vec<(String, EntryLine)> = listed
            .into_iter()
            .filter(|entry| glob::matches(name_pattern, &entry.name))
            .map(|entry| (paths::join(&dir, &entry.name), entry))
            .collect();
        if found.is_empty() {
            return Err(ShellError::NoMatch(word.text.clone()));
        }
        Ok(found)
    }

    /// The paths the words name, patterns expanded; a plain word is taken as it is.
    async fn expand_all_remote(&mut self, words: &[Word]) -> Result<Vec<String>, ShellError> {
        let mut out = Vec::new();
        for word in words {
            if word.pattern.is_some() {
                out.extend(self.remote_matches(word).await?.into_iter().map(|(p, _)| p));
            } else {
                out.push(word.text.clone());
            }
        }
        Ok(out)
    }

    /// The one path a word names; a pattern must match exactly one name.
    async fn expand_one_remote(&mut self, word: &Word) -> Result<String, ShellError> {
        if word.pattern.is_none() {
            return Ok(word.text.clone());
        }
        let mut found = self.remote_matches(word).await?;
        if found.len() > 1 {
            return Err(ShellError::Refused(format!(
                "{} matches {} names; name one",
                word.text,
                found.len()
            )));
        }
        Ok(found.remove(0).0)
    }

    /// The local paths a word names: the matches of a pattern, or the path itself.
    fn local_matches(&self, word: &Word) -> Result<Vec<PathBuf>, ShellError> {
        let Some(pattern) = &word.pattern else {
            return Ok(vec![self.local_path(&word.text)]);
        };
        let (dir_pattern, name_pattern) = paths::split_last(pattern);
        if glob::is_pattern(dir_pattern) {
            return Err(ShellError::Refused(format!(
                "{}: patterns match names in one directory only",
                word.text
            )));
        }
        let dir_text = unescape(dir_pattern);
        let dir = if dir_text.is_empty() {
            self.local_cwd.clone()
        } else {
            self.local_path(&dir_text)
        };
        let entries = std::fs::read_dir(&dir).map_err(|e| ShellError::local(&dir, e))?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ShellError::local(&dir, e))?;
            if let Some(name) = entry.file_name().to_str()
                && glob::matches(name_pattern, name)
            {
                found.push(dir.join(name));
            }
        }
        if found.is_empty() {
            return Err(ShellError::NoMatch(word.text.clone()));
        }
        found.sort();
        Ok(found)
    }

    async fn ls(&mut self, inv: &Invocation) -> Result<(), ShellError> {
        let entries = match inv.args.first() {
            Some(word) if word.pattern.is_some() => self
                .remote_matches(word)
                .await?
                .into_iter()
                .map(|(path, entry)| EntryLine {
                    name: path,
                    ..entry
                })
                .collect(),
            Some(word) => self.client.ls(Some(&word.text)).await?,
            None => self.client.ls(None).await?,
        };
        self.print_listing(&entries, inv.has('l'), inv.has('h'));
        Ok(())
    }

    fn lls(&mut self, inv: &Invocation) -> Result<(), ShellError> {
        let entries = match inv.args.first() {
            Some(word) if word.pattern.is_some() => {
                let mut entries = Vec::new();
                for path in self.local_matches(word)? {
                    let shown = self.show_local(&path);
                    entries.push(local_entry(&path, shown)?);
                }
                entries
            }
            other => {
                let path =
                    other.map_or_else(|| self.local_cwd.clone(), |w| self.local_path(&w.text));
                list_local(&path)?
            }
        };
        self.print_listing(&entries, inv.has('l'), inv.has('h'));
        Ok(())
    }

    fn print_listing(&self, entries: &[EntryLine], long: bool, human: bool) {
        if long {
            for entry in entries {
                self.printer.out(&listing::long_line(entry, human));
            }
        } else if self.columns {
            let names: Vec<String> = entries.iter().map(listing::short_name).collect();
            let width = console::Term::stdout().size().1 as usize;
            for line in listing::columns(&names, width.max(20)) {
                self.printer.out(&line);
            }
        } else {
            for entry in entries {
                self.printer.out(&listing::display_name(&entry.name));
            }
        }
    }
}

/// Undoes the `\` escapes of a pattern's directory part.
fn unescape(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One local file as an entry line, named `name`.
fn local_entry(path: &Path, name: String) -> Result<EntryLine, ShellError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| ShellError::local(path, e))?;
    let kind = if meta.file_type().is_symlink() {
        EntryType::Symlink
    } else if meta.is_dir() {
        EntryType::Dir
    } else if meta.is_file() {
        EntryType::File
    } else {
        EntryType::Other
    };
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    Ok(EntryLine {
        kind,
        size: meta.len(),
        mtime,
        name,
    })
}

/// A local directory's entries in name order, or a file as its one entry.
fn list_local(path: &Path) -> Result<Vec<EntryLine>, ShellError> {
    let meta = std::fs::metadata(path).map_err(|e| ShellError::local(path, e))?;
    if !meta.is_dir() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(vec![local_entry(path, name)?]);
    }
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| ShellError::local(path, e))? {
        let entry = entry.map_err(|e| ShellError::local(path, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        entries.push(local_entry(&entry.path(), name)?);
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_pattern_directories() {
        assert_eq!(unescape(r"my\[dir\]/"), "my[dir]/");
        assert_eq!(unescape("plain/"), "plain/");
    }
}
