//! Symbolic links in a home: reading them, and making them, so that a link can never
//! become a way out.
//!
//! A link is made only if its target, read from the link's folder, stays inside the
//! home; an absolute target is read in the user's view (`/` is the home) and stored as
//! a relative link. That is a first fence, not the only one: every later use of any
//! link, however it was made or the tree around it moved, is resolved beneath the home
//! by the kernel, and refused if it would leave.

use std::path::PathBuf;

use super::home::{HomeDir, refuse_root};
use super::quota::QUOTA_BLOCK;
use super::{Result, StorageError, VirtualPath};

impl HomeDir {
    /// The target of the symbolic link `path`, as stored, but only if it is relative,
    /// never climbs above the home when read from the link's folder, and the link
    /// resolves inside the home (or to nothing): an answer never names a place outside.
    pub fn read_link(&self, path: &VirtualPath) -> Result<PathBuf> {
        self.check_symlinks(path)?;
        let target = self.backend.read_link(path)?;
        let outside = || StorageError::Denied {
            path: path.clone(),
            reason: "the link leads outside the home",
        };
        if target.is_absolute() {
            return Err(outside());
        }
        // Textually, from the link's folder: `..` must never pass the root.
        let mut depth = path.parent().map_or(0, |p| {
            p.as_str().split('/').filter(|c| !c.is_empty()).count()
        });
        for part in target.components() {
            match part {
                std::path::Component::ParentDir => {
                    depth = depth.checked_sub(1).ok_or_else(outside)?;
                }
                std::path::Component::Normal(_) => depth += 1,
                _ => {}
            }
        }
        // And on disk, through links on the way (a link to `.` fools the count above).
        match self.backend.stat(path) {
            Ok(_) | Err(StorageError::NotFound { .. }) => Ok(target),
            Err(StorageError::Denied { .. }) => Err(outside()),
            Err(other) => Err(other),
        }
    }

    /// Makes `link` a symbolic link to `target`, as the user wrote it. The target must
    /// stay inside the home when read from the link's folder: a relative one may not
    /// climb above `/`, and an absolute one is read in the user's view and stored
    /// relative to the link. Dangling links are allowed. The link costs one quota block
    /// and one entry. Returns the target as stored.
    pub fn symlink(&self, link: &VirtualPath, target: &str) -> Result<String> {
        refuse_root(link)?;
        self.state.check_measured()?;
        self.check_symlinks(link)?;
        let folder = link
            .parent()
            .ok_or_else(|| StorageError::Exists { path: link.clone() })?;
        let resolved = resolve_target(&folder, target).ok_or_else(|| StorageError::Denied {
            path: link.clone(),
            reason: "the link would lead outside the home",
        })??;
        let stored = relative_to(&folder, &resolved);
        let _sizes = self.state.lock_sizes();
        let mut booked = self.state.ledger.reserve_entry(QUOTA_BLOCK)?;
        self.backend.symlink(&stored, link)?;
        booked.commit(QUOTA_BLOCK)?;
        booked.keep_entry();
        Ok(stored)
    }
}

impl HomeDir {
    /// Refuses a link on a backend that has none.
    fn check_symlinks(&self, path: &VirtualPath) -> Result<()> {
        if !self.capabilities().symlinks {
            return Err(StorageError::Unsupported {
                path: path.clone(),
                what: "symbolic links",
            });
        }
        Ok(())
    }
}

/// Where `target`, written in a link in `folder`, points in the user's view; `None` if
/// a relative target climbs above `/`. An empty target is a bad path.
fn resolve_target(folder: &VirtualPath, target: &str) -> Option<Result<VirtualPath>> {
    if target.is_empty() {
        return Some(Err(StorageError::BadPath {
            reason: "a link needs a target",
        }));
    }
    if !target.starts_with('/') {
        let mut depth = folder.components().count();
        for part in target.split('/') {
            match part {
                "" | "." => {}
                ".." => depth = depth.checked_sub(1)?,
                _ => depth += 1,
            }
        }
    }
    Some(VirtualPath::resolve(folder, target))
}

/// `target` as a relative path from `folder`: `..` for each level up to their common
/// folder, then the rest; `.` for the folder itself.
fn relative_to(folder: &VirtualPath, target: &VirtualPath) -> String {
    let from: Vec<&str> = folder.components().collect();
    let to: Vec<&str> = target.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts = vec![".."; from.len() - common];
    parts.extend(&to[common..]);
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_support::{Fixture, fixture, vp};

    #[test]
    fn read_link_answers_only_links_that_stay_inside() {
        let f = fixture(1 << 20);
        f.plant_links();
        let h = &f.home;
        assert_eq!(h.read_link(&vp("/inside")).unwrap(), PathBuf::from("docs"));
        assert_eq!(
            h.read_link(&vp("/inside_file")).unwrap(),
            PathBuf::from("docs/../docs/d.txt")
        );
        for link in Fixture::ESCAPES {
            assert!(
                matches!(h.read_link(&vp(link)), Err(StorageError::Denied { .. })),
                "{link}"
            );
        }
        // A link to `.` as the folder of a link that climbs one level: outside on disk.
        std::os::unix::fs::symlink(".", f.real("self")).unwrap();
        std::os::unix::fs::symlink("../x", f.real("up")).unwrap();
        assert!(matches!(
            h.read_link(&vp("/self/up")),
            Err(StorageError::Denied { .. })
        ));
        // Dangling inside is fine; a file is not a link.
        std::os::unix::fs::symlink("docs/none", f.real("dangling")).unwrap();
        assert_eq!(
            h.read_link(&vp("/dangling")).unwrap(),
            PathBuf::from("docs/none")
        );
        assert!(matches!(
            h.read_link(&vp("/docs/d.txt")),
            Err(StorageError::Denied { .. })
        ));
        let entry = h.stat(&vp("/docs/d.txt")).unwrap();
        assert_eq!(entry.nlink(), 1);
        assert!(h.stat(&vp("/docs")).unwrap().nlink() >= 2);
    }

    #[test]
    fn relative_targets_are_kept_and_absolute_ones_made_relative() {
        let f = fixture(1 << 20);
        let h = &f.home;
        h.mkdir(&vp("/a")).unwrap();
        h.mkdir(&vp("/a/b")).unwrap();
        let made = [
            ("/a/b/up", "../x", "../x"),
            ("/a/b/abs", "/a/y", "../y"),
            ("/a/b/root", "/", "../.."),
            ("/a/b/same", "/a/b", "."),
            ("/a/b/clamped", "/../../a/z", "../z"),
            ("/top", "a/b/./c", "a/b/c"),
        ];
        for (link, target, stored) in made {
            assert_eq!(h.symlink(&vp(link), target).unwrap(), stored, "{link}");
            let on_disk = std::fs::read_link(f.real(link.trim_start_matches('/'))).unwrap();
            assert_eq!(on_disk, PathBuf::from(stored), "{link}");
        }
        // Each costs a block and an entry.
        assert_eq!(h.entries().count, 2 + made.len() as u64);
        assert_eq!(h.usage().used, (2 + made.len() as u64) * QUOTA_BLOCK);
        // And it works as a link.
        std::fs::write(f.real("a/x"), b"x").unwrap();
        assert_eq!(h.stat(&vp("/a/b/up")).unwrap().size, 1);
    }

    #[test]
    fn targets_that_climb_out_are_refused_and_cost_nothing() {
        let f = fixture(1 << 20);
        let h = &f.home;
        h.mkdir(&vp("/a")).unwrap();
        let before = (h.usage().used, h.entries().count);
        for target in ["../../etc/passwd", "../x/../..", "../..", "x/../../.."] {
            assert!(
                matches!(
                    h.symlink(&vp("/a/l"), target),
                    Err(StorageError::Denied { .. })
                ),
                "{target}"
            );
        }
        assert!(matches!(
            h.symlink(&vp("/a/l"), ""),
            Err(StorageError::BadPath { .. })
        ));
        assert!(matches!(
            h.symlink(&vp("/"), "a"),
            Err(StorageError::Denied { .. })
        ));
        assert!(!f.real("a/l").exists() && std::fs::symlink_metadata(f.real("a/l")).is_err());
        assert_eq!((h.usage().used, h.entries().count), before);
    }

    #[test]
    fn an_existing_name_or_a_missing_folder_is_refused() {
        let f = fixture(1 << 20);
        let h = &f.home;
        h.mkdir(&vp("/a")).unwrap();
        let before = (h.usage().used, h.entries().count);
        assert!(matches!(
            h.symlink(&vp("/a"), "b"),
            Err(StorageError::Exists { .. })
        ));
        assert!(matches!(
            h.symlink(&vp("/none/l"), "../a"),
            Err(StorageError::NotFound { .. })
        ));
        assert_eq!((h.usage().used, h.entries().count), before);
    }

    #[test]
    fn a_link_made_through_a_link_to_dot_still_cannot_lead_out() {
        // `self -> .` planted by an admin: `/self/l -> ../x` reads as inside from
        // `/self`, and on disk it would climb out; every use resolves beneath the home.
        let f = fixture(1 << 20);
        f.plant_links();
        let h = &f.home;
        std::os::unix::fs::symlink(".", f.real("self")).unwrap();
        h.symlink(&vp("/self/l"), "../x").unwrap();
        assert!(matches!(
            h.stat(&vp("/self/l")),
            Err(StorageError::Denied { .. } | StorageError::NotFound { .. })
        ));
        assert!(matches!(
            h.read_link(&vp("/self/l")),
            Err(StorageError::Denied { .. })
        ));
    }

    #[test]
    fn quota_and_entry_limits_apply() {
        let f = fixture(QUOTA_BLOCK);
        let h = &f.home;
        h.symlink(&vp("/one"), "x").unwrap();
        assert!(matches!(
            h.symlink(&vp("/two"), "x"),
            Err(StorageError::Quota(_))
        ));
        assert!(std::fs::symlink_metadata(f.real("two")).is_err());
    }
}
