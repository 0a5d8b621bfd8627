//! Measuring a home: the usage scan after a start, and the bound on how deep folders
//! nest, which keeps that scan finite.
//!
//! The walk opens every folder relative to its parent's handle, never by a path from the
//! home: a path from the root grows with the tree and would pass the kernel's `PATH_MAX`
//! long before the tree is deep, which once kept the server from starting at all.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path};
use std::sync::Arc;

use cap_fs_ext::DirExt as _;
use cap_std::fs::Dir;

use super::beneath::Identity;
use super::quota::{Tally, entry_cost};

/// How deep folders may nest below the home: `mkdir`, and renaming a folder to where it
/// or what it holds would nest deeper, are refused past this.
pub const MAX_DEPTH: usize = 128;

/// How deep the scan descends. The walk holds one handle per level, so this bounds the
/// descriptors it needs; it leaves room for trees made before [`MAX_DEPTH`] was
/// enforced, or made on disk by an administrator. A tree deeper than this cannot be
/// measured, which refuses the user's writes rather than count it wrongly.
const MAX_SCAN_DEPTH: usize = 2 * MAX_DEPTH;

/// Why a home could not be measured, in words for the log and for `rsftpd user show`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScanFailure(String);

impl ScanFailure {
    /// A failure a backend describes in its own words.
    pub(super) fn new(reason: String) -> ScanFailure {
        ScanFailure(reason)
    }
}

/// A folder still to read: its name, relative to its parent's handle, and its depth.
struct Pending {
    parent: Arc<Dir>,
    name: OsString,
    depth: usize,
}

/// Walks the folders under `top` (not following symbolic links) with `visit` called for
/// each entry, folders included, with the depth of the folder that holds it; a folder is
/// entered only if `visit` says so. Depth-first: the parents still referenced by
/// pending folders are all ancestors of the folder being read, so at most `max_depth`
/// handles are open at once.
fn walk(
    top: &Dir,
    max_depth: usize,
    mut visit: impl FnMut(&cap_std::fs::DirEntry, usize) -> io::Result<bool>,
) -> Result<usize, ScanFailure> {
    let failed = |what: &str, name: &OsString, depth: usize, err: io::Error| {
        ScanFailure(format!(
            "cannot {what} {:?} at depth {depth}: {err}",
            Path::new(name)
        ))
    };
    let mut deepest = 0;
    let top = Arc::new(
        top.try_clone()
            .map_err(|e| failed("open", &".".into(), 0, e))?,
    );
    let mut pending = vec![Pending {
        parent: Arc::clone(&top),
        name: ".".into(),
        depth: 0,
    }];
    while let Some(Pending {
        parent,
        name,
        depth,
    }) = pending.pop()
    {
        let dir = match parent.open_dir_nofollow(&name) {
            Ok(dir) => Arc::new(dir),
            // Removed since its parent was read.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(failed("open the folder", &name, depth, e)),
        };
        drop(parent);
        deepest = deepest.max(depth);
        let entries = dir
            .entries()
            .map_err(|e| failed("list the folder", &name, depth, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| failed("list the folder", &name, depth, e))?;
            let child = entry.file_name();
            let kind = match entry.file_type() {
                Ok(kind) => kind,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(failed("inspect", &child, depth + 1, e)),
            };
            let enter =
                visit(&entry, depth).map_err(|e| failed("measure", &child, depth + 1, e))?;
            if kind.is_dir() && enter {
                if depth + 1 > max_depth {
                    return Err(ScanFailure(format!(
                        "folders nest deeper than {max_depth} levels"
                    )));
                }
                pending.push(Pending {
                    parent: Arc::clone(&dir),
                    name: child,
                    depth: depth + 1,
                });
            }
        }
    }
    Ok(deepest)
}

/// Counts every entry under `home`, and the partial uploads in the user's `staging`
/// folder, at its cost by the quota rule, without following symbolic links. The staging
/// folder itself costs nothing, since the server made it, not the user; where the home
/// holds it (`inside`, its identity), the walk of the home leaves it out, so that the
/// partials are counted once.
pub fn usage(home: &Dir, staging: &Dir, inside: Option<Identity>) -> Result<Tally, ScanFailure> {
    let mut total = entries_under(home, inside)?;
    let partials = entries_under(staging, None)
        .map_err(|failure| ScanFailure(format!("partial uploads: {failure}")))?;
    total.merge(partials);
    Ok(total)
}

/// What the entries under `top` cost, `top` itself not included, nor the folder `left_out`
/// and what it holds.
fn entries_under(top: &Dir, left_out: Option<Identity>) -> Result<Tally, ScanFailure> {
    let mut total = Tally::default();
    walk(top, MAX_SCAN_DEPTH, |entry, _| {
        match entry.metadata() {
            Ok(meta) if left_out == Some(Identity::of(&meta)) => return Ok(false),
            Ok(meta) => total.add(entry_cost(meta.file_type(), meta.len())),
            // Deleted while we listed.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(true)
    })?;
    Ok(total)
}

/// How many levels of folders `dir` holds below itself (0 for none), or `None` if that
/// is more than `limit` or cannot be told.
pub fn levels_below(dir: &Dir, limit: usize) -> Option<usize> {
    walk(dir, limit, |_, _| Ok(true)).ok()
}

/// How deep `rel` (a folder, relative to `home`) really is below the home, after
/// following the symbolic links on the way: `/` is 0.
pub fn depth_of(home: &Dir, rel: &Path) -> io::Result<usize> {
    let real = home.canonicalize(rel)?;
    Ok(real
        .components()
        .filter(|part| matches!(part, Component::Normal(_)))
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &Path) -> Dir {
        Dir::open_ambient_dir(path, cap_std::ambient_authority()).unwrap()
    }

    /// A chain of `levels` folders, each named with 255 bytes, made by handle on disk:
    /// its full path is far past `PATH_MAX`.
    fn deep_chain(top: &Path, levels: usize, file_at_bottom: &[u8]) {
        let name = "A".repeat(255);
        let mut dir = open(top);
        for _ in 0..levels {
            dir.create_dir(&name).unwrap();
            dir = dir.open_dir(&name).unwrap();
        }
        dir.write("f", file_at_bottom).unwrap();
    }

    #[test]
    fn measures_a_tree_whose_paths_pass_path_max() {
        let tmp = tempfile::tempdir().unwrap();
        deep_chain(tmp.path(), 40, b"12345");
        std::fs::write(tmp.path().join("top"), b"abc").unwrap();
        std::os::unix::fs::symlink("top", tmp.path().join("link")).unwrap();
        let home = open(tmp.path());
        // 40 folders, the file at the bottom, `top` and the link: one block each.
        assert_eq!(
            entries_under(&home, None),
            Ok(Tally {
                bytes: 43 * 4096,
                entries: 43
            })
        );
        assert_eq!(levels_below(&home, MAX_DEPTH), Some(40));
        assert_eq!(levels_below(&home, 39), None);
    }

    #[test]
    fn a_tree_past_the_scan_bound_is_a_failure_not_a_wrong_count() {
        let tmp = tempfile::tempdir().unwrap();
        deep_chain(tmp.path(), MAX_SCAN_DEPTH + 1, b"x");
        let err = entries_under(&open(tmp.path()), None).unwrap_err();
        assert_eq!(err.to_string(), "folders nest deeper than 256 levels");
    }

    #[test]
    fn depth_follows_links() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("a/b/c")).unwrap();
        std::os::unix::fs::symlink("a/b", tmp.path().join("ab")).unwrap();
        let home = open(tmp.path());
        assert_eq!(depth_of(&home, Path::new(".")).unwrap(), 0);
        assert_eq!(depth_of(&home, Path::new("a/b/c")).unwrap(), 3);
        assert_eq!(depth_of(&home, Path::new("ab/c")).unwrap(), 3);
    }
}
