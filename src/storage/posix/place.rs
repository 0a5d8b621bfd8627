//! Where a user's path leads in a home on local disk, and the few ways of looking at
//! and opening what is there.
//!
//! In the ordinary case the home's handle and the whole relative path: cap-std (with
//! the kernel's help) resolves it beneath the home, as it always did. Where the home
//! holds the user's staging folder (a home that is its own mount point), the path is
//! resolved step by step instead ([`beneath::resolve`]), refusing the staging folder by
//! its identity; what is left is a single name in a folder held by its descriptor, which
//! is then used without following links, so a link swapped in after the check leads
//! nowhere.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cap_fs_ext::{DirExt as _, FollowSymlinks, OpenOptionsFollowExt as _, SystemTimeSpec};
use cap_std::fs::{Dir, File, Metadata, OpenOptions};

use crate::storage::VirtualPath;
use crate::storage::beneath::{self, Identity, PathHandle};

/// Whether the final name of a path is followed if it is a symbolic link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Final {
    Follow,
    AsIs,
}

/// A path resolved as far as this home resolves it before use.
#[derive(Debug)]
pub(super) struct Place {
    pub dir: Arc<Dir>,
    pub rel: PathBuf,
    /// The staging folder's identity, when the home holds it: `rel` is then a single
    /// name, resolved already.
    reserved: Option<Identity>,
}

impl Place {
    /// Where `path` leads in `home`, with the staging folder `reserved` in it if any.
    pub fn of(
        home: &Arc<Dir>,
        reserved: Option<Identity>,
        path: &VirtualPath,
        last: Final,
    ) -> io::Result<Place> {
        let Some(reserved) = reserved else {
            return Ok(Place {
                dir: Arc::clone(home),
                rel: path.to_relative().to_owned(),
                reserved: None,
            });
        };
        let found = beneath::resolve(home, path.to_relative(), last == Final::Follow, reserved)?;
        Ok(Place {
            dir: found.dir,
            rel: found.name.into(),
            reserved: Some(reserved),
        })
    }

    pub fn rel(&self) -> &Path {
        &self.rel
    }

    /// Refuses what turned out, by its descriptor or metadata, to be the staging folder.
    fn check(&self, meta: Metadata) -> io::Result<Metadata> {
        match self.reserved {
            Some(reserved) if Identity::of(&meta) == reserved => Err(beneath::reserved()),
            _ => Ok(meta),
        }
    }

    /// What the path names, links followed.
    pub fn metadata(&self) -> io::Result<Metadata> {
        match self.reserved {
            None => self.dir.metadata(&self.rel),
            Some(_) => self.check(self.dir.symlink_metadata(&self.rel)?),
        }
    }

    /// What the path names, a final link described as a link.
    pub fn symlink_metadata(&self) -> io::Result<Metadata> {
        self.check(self.dir.symlink_metadata(&self.rel)?)
    }

    /// Opens the folder the path names, links followed.
    pub fn open_dir(&self) -> io::Result<Dir> {
        match self.reserved {
            None => self.dir.open_dir(&self.rel),
            Some(_) => {
                let dir = self.dir.open_dir_nofollow(&self.rel)?;
                self.check(dir.dir_metadata()?)?;
                Ok(dir)
            }
        }
    }

    /// Opens the folder the path names, a link refused.
    pub fn open_dir_nofollow(&self) -> io::Result<Dir> {
        let dir = self.dir.open_dir_nofollow(&self.rel)?;
        self.check(dir.dir_metadata()?)?;
        Ok(dir)
    }

    /// Opens the file the path names as `options` say.
    pub fn open_with(&self, options: &OpenOptions) -> io::Result<File> {
        match self.reserved {
            None => self.dir.open_with(&self.rel, options),
            Some(_) => {
                let mut options = options.clone();
                options.follow(FollowSymlinks::No);
                self.dir.open_with(&self.rel, &options)
            }
        }
    }

    pub fn set_mtime(&self, mtime: SystemTimeSpec) -> io::Result<()> {
        match self.reserved {
            None => self.dir.set_mtime(&self.rel, mtime),
            Some(_) => {
                self.symlink_metadata()?;
                self.dir.set_symlink_times(&self.rel, None, Some(mtime))
            }
        }
    }

    /// An `O_PATH` handle on what the path names, links followed.
    pub fn handle(&self) -> io::Result<PathHandle> {
        match self.reserved {
            None => PathHandle::open(&self.dir, &self.rel),
            Some(reserved) => {
                let handle = PathHandle::open_no_links(&self.dir, &self.rel)?;
                let stat = handle.stat()?;
                if Identity::of_stat(&stat) == reserved {
                    return Err(beneath::reserved());
                }
                Ok(handle)
            }
        }
    }
}
