//! What `mirror` does, decided from two listings and nothing else: which folders to
//! make, which files to copy, which to leave, what to delete, and where the two trees
//! disagree on what a name is. No I/O here, so every rule has a test.
//!
//! A file is copied when the target has none, has one of another size, or has an older
//! one. "Older" is by whole seconds, since not every side keeps more; a download is
//! given the source's time afterwards, and an upload that cannot be (rsftp keeps the
//! time of the upload) is newer than its source, so in both cases the next mirror
//! leaves it. With `--checksum`, files of the same size are compared by hash instead,
//! which the caller does: they come back as [`Action::Compare`].

use std::collections::BTreeMap;

/// What a name is, on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File { size: u64, mtime: i64 },
}

/// A tree as relative paths (`a/b.txt`, `/`-separated), each with what it is; parents
/// come before their children in the map's order.
pub type Tree = BTreeMap<String, Kind>;

/// One step of a mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Make this folder on the target.
    MakeDir(String),
    /// Copy this file: the target has none (`new`) or one that differs.
    Copy { path: String, size: u64, new: bool },
    /// The same size: compare hashes, then copy or skip.
    Compare { path: String, size: u64 },
    /// The target already has this file.
    Skip(String),
    /// The two sides disagree on what this name is; nothing is done to it, nor to
    /// anything under it on either side.
    Conflict { path: String, reason: String },
    /// Remove this from the target (`--delete`); folders come after what they held.
    Delete { path: String, dir: bool },
}

/// How to compare.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules {
    pub delete: bool,
    pub checksum: bool,
}

fn under(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// The steps that make `target` a copy of `source`.
pub fn plan(source: &Tree, target: &Tree, rules: Rules) -> Vec<Action> {
    let mut actions = Vec::new();
    // Folders in conflict: nothing under them is touched.
    let mut blocked: Vec<&str> = Vec::new();
    for (path, kind) in source {
        if blocked.iter().any(|b| under(path, b)) {
            continue;
        }
        match (kind, target.get(path)) {
            (Kind::Dir, None) => actions.push(Action::MakeDir(path.clone())),
            (Kind::Dir, Some(Kind::Dir)) => {}
            (Kind::Dir, Some(Kind::File { .. })) => {
                blocked.push(path);
                actions.push(Action::Conflict {
                    path: path.clone(),
                    reason: "a file is where a folder should be".into(),
                });
            }
            (Kind::File { .. }, Some(Kind::Dir)) => {
                blocked.push(path);
                actions.push(Action::Conflict {
                    path: path.clone(),
                    reason: "a folder is where a file should be".into(),
                });
            }
            (&Kind::File { size, .. }, None) => actions.push(Action::Copy {
                path: path.clone(),
                size,
                new: true,
            }),
            (
                &Kind::File { size, mtime },
                Some(&Kind::File {
                    size: theirs,
                    mtime: when,
                }),
            ) => {
                let action = if size != theirs {
                    Action::Copy {
                        path: path.clone(),
                        size,
                        new: false,
                    }
                } else if rules.checksum {
                    Action::Compare {
                        path: path.clone(),
                        size,
                    }
                } else if when >= mtime {
                    Action::Skip(path.clone())
                } else {
                    Action::Copy {
                        path: path.clone(),
                        size,
                        new: false,
                    }
                };
                actions.push(action);
            }
        }
    }
    if rules.delete {
        // Deepest first, so a folder is emptied before it goes.
        let mut gone: Vec<(&String, &Kind)> = target
            .iter()
            .filter(|(path, _)| !source.contains_key(*path))
            .filter(|(path, _)| !blocked.iter().any(|b| under(path, b)))
            .collect();
        gone.sort_by(|a, b| b.0.cmp(a.0));
        for (path, kind) in gone {
            actions.push(Action::Delete {
                path: path.clone(),
                dir: *kind == Kind::Dir,
            });
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64, mtime: i64) -> Kind {
        Kind::File { size, mtime }
    }

    fn tree(entries: &[(&str, Kind)]) -> Tree {
        entries.iter().map(|(p, k)| (p.to_string(), *k)).collect()
    }

    #[test]
    fn copies_only_what_differs() {
        let source = tree(&[
            ("a", file(1, 10)),
            ("d", Kind::Dir),
            ("d/b", file(2, 10)),
            ("c", file(3, 20)),
            ("e", file(4, 10)),
        ]);
        let target = tree(&[("a", file(1, 10)), ("c", file(3, 10)), ("e", file(5, 30))]);
        let actions = plan(&source, &target, Rules::default());
        assert_eq!(
            actions,
            [
                Action::Skip("a".into()),
                Action::Copy {
                    path: "c".into(),
                    size: 3,
                    new: false
                },
                Action::MakeDir("d".into()),
                Action::Copy {
                    path: "d/b".into(),
                    size: 2,
                    new: true
                },
                Action::Copy {
                    path: "e".into(),
                    size: 4,
                    new: false
                },
            ]
        );
        // A newer target of the same size is left alone; with --checksum it is compared.
        let newer = tree(&[("a", file(1, 99))]);
        let only_a = tree(&[("a", file(1, 10))]);
        assert_eq!(
            plan(&only_a, &newer, Rules::default()),
            [Action::Skip("a".into())]
        );
        let rules = Rules {
            checksum: true,
            ..Rules::default()
        };
        assert_eq!(
            plan(&only_a, &newer, rules),
            [Action::Compare {
                path: "a".into(),
                size: 1
            }]
        );
    }

    #[test]
    fn conflicting_names_are_left_and_block_what_is_under_them() {
        let source = tree(&[("d", Kind::Dir), ("d/x", file(1, 1)), ("f", file(1, 1))]);
        let target = tree(&[("d", file(9, 9)), ("f", Kind::Dir), ("f/old", file(1, 1))]);
        let rules = Rules {
            delete: true,
            ..Rules::default()
        };
        let actions = plan(&source, &target, rules);
        assert!(matches!(&actions[0], Action::Conflict { path, .. } if path == "d"));
        assert!(matches!(&actions[1], Action::Conflict { path, .. } if path == "f"));
        // Nothing is copied into d, and what the folder f holds is not deleted either.
        assert_eq!(actions.len(), 2, "{actions:?}");
    }

    #[test]
    fn deletes_only_when_asked_and_deepest_first() {
        let source = tree(&[("keep", file(1, 1))]);
        let target = tree(&[
            ("keep", file(1, 1)),
            ("old", Kind::Dir),
            ("old/a", file(1, 1)),
            ("old/sub", Kind::Dir),
            ("old/sub/b", file(1, 1)),
        ]);
        assert_eq!(
            plan(&source, &target, Rules::default()),
            [Action::Skip("keep".into())]
        );
        let rules = Rules {
            delete: true,
            ..Rules::default()
        };
        let deleted: Vec<String> = plan(&source, &target, rules)
            .into_iter()
            .filter_map(|a| match a {
                Action::Delete { path, .. } => Some(path),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, ["old/sub/b", "old/sub", "old/a", "old"]);
    }

    #[test]
    fn a_name_that_only_starts_like_a_folder_is_not_under_it() {
        assert!(under("d/x", "d"));
        assert!(!under("dx", "d"));
        assert!(!under("d", "d"));
    }
}
