//! Changing what a path names through one descriptor, so that the check and the change
//! are about the same file.
//!
//! Looking a path up to decide (is it a folder?) and then changing it by the path again
//! races a rename in between: a folder renamed into place after the check once got
//! mode 000, which locked the server out of it. Here the path is resolved once, beneath
//! the home, to an `O_PATH` descriptor. That needs no read permission, so it works on
//! an entry of mode 000 too; `fstat` on it says what it is, and the mode is changed
//! through `/proc/self/fd/N`, the same inode, since `fchmod` does not take an `O_PATH`
//! descriptor.

use std::io;
use std::os::fd::{AsFd, AsRawFd as _, OwnedFd};
use std::path::Path;

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
