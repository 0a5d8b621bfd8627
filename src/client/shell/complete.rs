//! Tab completion: command names, then remote or local paths depending on the command
//! and the argument's place (`get REMOTE LOCAL`, `put LOCAL REMOTE`).
//!
//! Remote names come from `ls` on a second rsftp session on the same SSH connection, so
//! a listing for completion can never leave the shell's own session out of step; each
//! directory is listed once per command line (the cache is dropped after every
//! command). If a listing takes too long, completion gives up on remote names for the
//! rest of the session rather than hang the prompt.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};
use tokio::runtime::Handle;

use super::commands::{ArgKind, COMMANDS, find};
use super::words::{escape, words_before};
use super::{Session, View, paths};
use crate::protocol::EntryType;

/// How long a remote listing for completion may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// The shell's rustyline helper.
pub struct ShellHelper {
    handle: Handle,
    view: Arc<View>,
    lister: Mutex<Option<Session>>,
}

impl ShellHelper {
    /// `lister` is a session of its own for remote listings; without one, only command
    /// names and local paths complete.
    pub fn new(handle: Handle, view: Arc<View>, lister: Option<Session>) -> ShellHelper {
        ShellHelper {
            handle,
            view,
            lister: Mutex::new(lister),
        }
    }

    /// Names in the remote directory `dir` (absolute), each with whether it is a
    /// directory.
    fn remote_names(&self, dir: &str) -> Vec<(String, bool)> {
        if let Some(names) = self.view.listing(dir) {
            return names;
        }
        let mut lister = self.lister.lock().unwrap_or_else(|p| p.into_inner());
        let Some(client) = lister.as_mut() else {
            return Vec::new();
        };
        let listed = self
            .handle
            .block_on(async { tokio::time::timeout(LIST_TIMEOUT, client.ls(Some(dir))).await });
        match listed {
            Ok(Ok(entries)) => {
                let names: Vec<(String, bool)> = entries
                    .into_iter()
                    .map(|e| (e.name, e.kind == EntryType::Dir))
                    .collect();
                self.view.remember(dir, names.clone());
                names
            }
            // No such directory, and the like: nothing to offer, the session is fine.
            Ok(Err(err)) if err.code().is_some() => Vec::new(),
            // Too slow, or broken: a reply may still be on its way, so this session can
            // no longer be trusted.
            _ => {
                // A session's channel closes as it drops, which needs the runtime.
                let _runtime = self.handle.enter();
                *lister = None;
                Vec::new()
            }
        }
    }

    /// Names in a local directory, each with whether it is a directory.
    fn local_names(dir: &std::path::Path) -> Vec<(String, bool)> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let is_dir = e.path().is_dir();
                Some((name, is_dir))
            })
            .collect()
    }

    fn paths(&self, word: &str, kind: ArgKind) -> Vec<Pair> {
        let (dir_part, prefix) = paths::split_last(word);
        let (remote_cwd, local_cwd) = self.view.cwds();
        let names = match kind {
            ArgKind::Remote => self.remote_names(&paths::resolve(&remote_cwd, dir_part)),
            _ => {
                let dir = match dir_part {
                    "" => local_cwd,
                    d if d.starts_with("~/") || d == "~" => std::env::home_dir()
                        .map(|h| h.join(d.trim_start_matches('~').trim_start_matches('/')))
                        .unwrap_or_default(),
                    d => local_cwd.join(d),
                };
                Self::local_names(&dir)
            }
        };
        candidates(dir_part, prefix, names)
    }
}

/// Pairs for the names that start with `prefix`, each replacing the whole word.
/// Hidden names are offered only once the prefix starts with a dot.
fn candidates(dir_part: &str, prefix: &str, names: Vec<(String, bool)>) -> Vec<Pair> {
    let mut pairs: Vec<Pair> = names
        .into_iter()
        .filter(|(name, _)| name.starts_with(prefix) && !name.chars().any(char::is_control))
        .filter(|(name, _)| prefix.starts_with('.') || !name.starts_with('.'))
        .map(|(name, is_dir)| {
            let suffix = if is_dir { "/" } else { " " };
            Pair {
                display: if is_dir {
                    format!("{name}/")
                } else {
                    name.clone()
                },
                replacement: format!("{}{suffix}", escape(&format!("{dir_part}{name}"))),
            }
        })
        .collect();
    pairs.sort_by(|a, b| a.display.cmp(&b.display));
    pairs
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (done, start, word) = words_before(&line[..pos]);
        let Some(command) = done.first() else {
            return Ok((start, command_names(&word)));
        };
        let Some(spec) = find(&command.text) else {
            return Ok((start, Vec::new()));
        };
        let index = done[1..]
            .iter()
            .filter(|w| !(w.text.len() > 1 && w.text.starts_with('-')))
            .count();
        let Some(kind) = spec.args.get(index).or(spec.args.last()).copied() else {
            return Ok((start, Vec::new()));
        };
        let pairs = match kind {
            ArgKind::Command => command_names(&word),
            ArgKind::Remote | ArgKind::Local => self.paths(&word, kind),
        };
        Ok((start, pairs))
    }
}

impl Drop for ShellHelper {
    fn drop(&mut self) {
        // A session's channel closes as it drops, which needs the runtime.
        let _runtime = self.handle.enter();
        self.lister
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

fn command_names(prefix: &str) -> Vec<Pair> {
    COMMANDS
        .iter()
        .filter(|spec| spec.name.starts_with(prefix))
        .map(|spec| Pair {
            display: spec.name.to_owned(),
            replacement: format!("{} ", spec.name),
        })
        .collect()
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_command_names() {
        let names: Vec<String> = command_names("l").into_iter().map(|p| p.display).collect();
        assert_eq!(names, ["ls", "lcd", "lls", "lpwd"]);
    }

    #[test]
    fn candidates_keep_the_directory_and_escape() {
        let names = vec![
            ("docs".to_owned(), true),
            ("do it.txt".to_owned(), false),
            (".hidden".to_owned(), false),
            ("other".to_owned(), false),
        ];
        let pairs = candidates("sub/", "do", names.clone());
        let shown: Vec<(&str, &str)> = pairs
            .iter()
            .map(|p| (p.display.as_str(), p.replacement.as_str()))
            .collect();
        assert_eq!(
            shown,
            [("do it.txt", "sub/do\\ it.txt "), ("docs/", "sub/docs/")]
        );
        assert!(
            candidates("", "", names.clone())
                .iter()
                .all(|p| p.display != ".hidden")
        );
        assert_eq!(candidates("", ".", names).len(), 1);
    }
}
