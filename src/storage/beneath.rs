//! Resolving a path beneath a home by descriptor, so that the check and the change are
//! about the same file.
//!
//! Looking a path up to decide (is it a folder?) and then changing it by the path again
//! races a rename in between: a folder renamed into place after the check once got
//! mode 000, which locked the server out of it. [`PathHandle`] resolves the path once,
//! beneath the home, to an `O_PATH` descriptor. That needs no read permission, so it
//! works on an entry of mode 000 too; `fstat` on it says what it is, and the mode is
//! changed through `/proc/self/fd/N`, the same inode, since `fchmod` does not take an
//! `O_PATH` descriptor.
//!
//! Where a home holds its own staging folder (a home that is a mount point of its own),
//! [`resolve`] walks a path one component at a time instead, following links itself, and
//! refuses every step that reaches that folder by its identity (device and inode), not
//! by its name: no user path may reach it, through a link, a rename or anything else.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd as _, OwnedFd};
use std::path::{Component, Path};
use std::sync::Arc;

use cap_fs_ext::DirExt as _;
use cap_std::fs::Dir;
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, Stat};

/// A file or folder inside a home, held by an `O_PATH` descriptor.
pub struct PathHandle {
    fd: OwnedFd,
}

impl PathHandle {
    /// Resolves `rel` beneath `home`, following symbolic links that stay beneath it
    /// (one that leads out fails with `EXDEV`, as cap-std's own escape does).
    pub fn open(home: &Dir, rel: &Path) -> io::Result<PathHandle> {
        let fd = rustix::fs::openat2(
            home.as_fd(),
            rel,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(escape_as_denied)?;
        Ok(PathHandle { fd })
    }

    /// Opens the single name `name` in `dir` without following a link, as a path
    /// already resolved step by step ([`resolve`]) must not be sent elsewhere by a link
    /// swapped in since.
    pub fn open_no_links(dir: &Dir, name: &Path) -> io::Result<PathHandle> {
        let fd = rustix::fs::openat2(
            dir.as_fd(),
            name,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
        )
        .map_err(escape_as_denied)?;
        Ok(PathHandle { fd })
    }

    pub fn stat(&self) -> io::Result<Stat> {
        Ok(rustix::fs::fstat(&self.fd)?)
    }

    pub fn is_dir(&self) -> io::Result<bool> {
        let mode = self.stat()?.st_mode;
        Ok(FileType::from_raw_mode(mode) == FileType::Directory)
    }

    /// Sets the permission bits of exactly the inode this handle holds.
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        let proc = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
        Ok(rustix::fs::chmod(proc.as_str(), Mode::from_raw_mode(mode))?)
    }
}

/// `EXDEV` from `RESOLVE_BENEATH` means the path led outside; cap-std reports that as a
/// `PermissionDenied` with no OS code, which the rest of the storage core maps already.
fn escape_as_denied(err: rustix::io::Errno) -> io::Error {
    if err == rustix::io::Errno::XDEV {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            "a path led outside the home",
        )
    } else {
        err.into()
    }
}

/// What a folder is on disk, whatever it is named: its device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    pub fn of(meta: &cap_std::fs::Metadata) -> Identity {
        use cap_std::fs::MetadataExt as _;
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    pub fn of_stat(stat: &Stat) -> Identity {
        Identity {
            dev: stat.st_dev,
            ino: stat.st_ino,
        }
    }

    pub fn of_dir(dir: &Dir) -> io::Result<Identity> {
        Ok(Identity::of(&dir.dir_metadata()?))
    }
}

/// The payload of the error for a path that reaches the reserved folder.
#[derive(Debug, thiserror::Error)]
#[error("reserved for the server's partial uploads")]
pub struct Reserved;

pub fn reserved() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, Reserved)
}

/// Whether `err` is the refusal of the reserved folder.
pub fn is_reserved(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<Reserved>())
}

fn outside() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "a path led outside the home",
    )
}

/// As many links as Linux follows in one lookup.
const MAX_LINKS: usize = 40;

/// How many folders one lookup may hold open on its way down: a tree deeper than the
/// usage scan measures is not the user's to walk either.
const MAX_LEVELS: usize = 2 * super::MAX_DEPTH + 16;

/// Where a path leads: the folder (held by its descriptor) that holds the final name,
/// and that name, a single component (`.` for the folder itself).
#[derive(Debug)]
pub struct Resolved {
    pub dir: Arc<Dir>,
    pub name: OsString,
}

/// Resolves `rel` beneath `home` one component at a time, refusing any step that
/// reaches the folder `reserved`: whatever its name, through a link or not. Symbolic
/// links are followed here, not by the kernel, so that their targets are checked as
/// well; the final one only if `follow_final`. A final link not followed is still
/// refused if it leads to `reserved`, so a link planted to it cannot be renamed or
/// removed to stand in for another name.
///
/// Each folder on the way is opened without following links and checked by its
/// descriptor, so a rename after a check cannot slip the reserved folder in; what the
/// caller then does is on a single name in [`Resolved::dir`].
pub fn resolve(
    home: &Arc<Dir>,
    rel: &Path,
    follow_final: bool,
    reserved: Identity,
) -> io::Result<Resolved> {
    let mut walk = Walk {
        stack: vec![Arc::clone(home)],
        links: 0,
        reserved,
    };
    walk.run(parts(rel)?, follow_final)
}

/// The components of a path read on disk: a link whose target is absolute leads out.
fn parts(path: &Path) -> io::Result<VecDeque<OsString>> {
    let mut parts = VecDeque::new();
    for part in path.components() {
        match part {
            Component::Normal(name) => parts.push_back(name.to_owned()),
            Component::ParentDir => parts.push_back("..".into()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err(outside()),
        }
    }
    Ok(parts)
}

/// A lookup under way: the folders from the home down to where it is.
struct Walk {
    stack: Vec<Arc<Dir>>,
    links: usize,
    reserved: Identity,
}

impl Walk {
    fn top(&self) -> io::Result<Arc<Dir>> {
        // The home itself is never popped (`..` there is refused), so this holds.
        self.stack.last().cloned().ok_or_else(outside)
    }

    fn run(&mut self, mut pending: VecDeque<OsString>, follow_final: bool) -> io::Result<Resolved> {
        while let Some(part) = pending.pop_front() {
            let last = pending.is_empty();
            if part == ".." {
                if self.stack.len() == 1 {
                    return Err(outside());
                }
                self.stack.pop();
                continue;
            }
            let top = self.top()?;
            let meta = match top.symlink_metadata(&part) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound && last => {
                    return Ok(Resolved {
                        dir: top,
                        name: part,
                    });
                }
                Err(e) => return Err(e),
            };
            if Identity::of(&meta) == self.reserved {
                return Err(reserved());
            }
            if meta.is_symlink() {
                let target = parts(&top.read_link_contents(&part)?);
                self.links += 1;
                if last && !follow_final {
                    self.check_link(target)?;
                    return Ok(Resolved {
                        dir: top,
                        name: part,
                    });
                }
                if self.links > MAX_LINKS {
                    return Err(rustix::io::Errno::LOOP.into());
                }
                for step in target?.into_iter().rev() {
                    pending.push_front(step);
                }
                continue;
            }
            if last {
                return Ok(Resolved {
                    dir: top,
                    name: part,
                });
            }
            if !meta.is_dir() {
                return Err(rustix::io::Errno::NOTDIR.into());
            }
            if self.stack.len() > MAX_LEVELS {
                return Err(rustix::io::Errno::NAMETOOLONG.into());
            }
            let next = top.open_dir_nofollow(&part)?;
            // Checked again by the descriptor: the name may have changed since.
            if Identity::of_dir(&next)? == self.reserved {
                return Err(reserved());
            }
            self.stack.push(Arc::new(next));
        }
        Ok(Resolved {
            dir: self.top()?,
            name: ".".into(),
        })
    }

    /// Refuses a link (not followed) whose target leads to the reserved folder; a
    /// dangling link, or one that leads out, is the operation's business, not this.
    fn check_link(&self, target: io::Result<VecDeque<OsString>>) -> io::Result<()> {
        let Ok(target) = target else {
            return Ok(());
        };
        if self.links > MAX_LINKS {
            return Ok(());
        }
        let mut follow = Walk {
            stack: self.stack.clone(),
            links: self.links,
            reserved: self.reserved,
        };
        match follow.run(target, true) {
            Err(e) if is_reserved(&e) => Err(e),
            Ok(found) => match found.dir.symlink_metadata(&found.name) {
                Ok(meta) if Identity::of(&meta) == self.reserved => Err(reserved()),
                _ => Ok(()),
            },
            Err(_) => Ok(()),
        }
    }
}
