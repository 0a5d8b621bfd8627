//! Paths as users see them: absolute, normalized, rooted at their home (`/`).
//!
//! Resolution here is purely textual, like `chroot`: `..` at `/` stays at `/`. It turns
//! whatever a client sends into a path that cap-std can then resolve *beneath* the home
//! directory; symbolic links on disk are the kernel's and cap-std's business, not ours.

use std::fmt;
use std::path::Path;

use super::{Result, StorageError};

/// Longest name (one path component) we accept, in bytes; the usual `NAME_MAX`.
pub const MAX_NAME_LEN: usize = 255;
/// Longest path we accept, in bytes; the usual `PATH_MAX`.
pub const MAX_PATH_LEN: usize = 4096;

/// A normalized absolute path inside a user's home: starts with `/`, has no trailing `/`
/// (except the root itself) and no empty, `.` or `..` components.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VirtualPath(String);

impl VirtualPath {
    /// The home itself, `/`.
    pub fn root() -> Self {
        Self("/".to_owned())
    }

    /// Resolves `input` as a user typed it, relative to `cwd` unless it starts with `/`.
    ///
    /// An empty input is `cwd`. `.` is dropped, `..` pops (and stays at `/`), repeated
    /// slashes collapse. Control characters and over-long names or paths are refused
    /// with [`StorageError::BadPath`]. No name is reserved: partial uploads live outside
    /// the home, where no path can reach.
    pub fn resolve(cwd: &VirtualPath, input: &str) -> Result<VirtualPath> {
        check_no_control(input)?;
        let mut parts: Vec<&str> = if input.starts_with('/') {
            Vec::new()
        } else {
            cwd.components().collect()
        };
        for part in input.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                name if name.len() > MAX_NAME_LEN => {
                    return Err(StorageError::BadPath {
                        reason: "a name is longer than 255 bytes",
                    });
                }
                name => parts.push(name),
            }
        }
        let mut path = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
        for part in &parts {
            path.push('/');
            path.push_str(part);
        }
        if path.is_empty() {
            path.push('/');
        }
        Self::checked(path)
    }

    /// The path as text, e.g. `/docs/a.txt`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the home itself.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The path relative to the home directory, for cap-std: `.` for the root.
    pub fn to_relative(&self) -> &Path {
        if self.is_root() {
            Path::new(".")
        } else {
            Path::new(&self.0[1..])
        }
    }

    /// The directory containing this path; `None` for the root.
    pub fn parent(&self) -> Option<VirtualPath> {
        if self.is_root() {
            return None;
        }
        match self.0.rfind('/') {
            Some(0) | None => Some(Self::root()),
            Some(i) => Some(Self(self.0[..i].to_owned())),
        }
    }

    /// The last component; `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        if self.is_root() {
            return None;
        }
        self.0.rsplit('/').next()
    }

    /// This path with one more component. `name` must be a single valid name: not empty,
    /// `.` or `..`, without `/`.
    pub fn join(&self, name: &str) -> Result<VirtualPath> {
        check_no_control(name)?;
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(StorageError::BadPath {
                reason: "not a single file name",
            });
        }
        if name.len() > MAX_NAME_LEN {
            return Err(StorageError::BadPath {
                reason: "a name is longer than 255 bytes",
            });
        }
        let path = if self.is_root() {
            format!("/{name}")
        } else {
            format!("{}/{name}", self.0)
        };
        Self::checked(path)
    }

    pub(super) fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// Final check on a normalized path: its total length.
    fn checked(path: String) -> Result<VirtualPath> {
        if path.len() > MAX_PATH_LEN {
            return Err(StorageError::BadPath {
                reason: "the path is longer than 4096 bytes",
            });
        }
        Ok(Self(path))
    }
}

impl fmt::Display for VirtualPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_no_control(text: &str) -> Result<()> {
    if text.chars().any(|c| c < ' ' || c == '\u{7f}') {
        return Err(StorageError::BadPath {
            reason: "a NUL or control character",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vp(s: &str) -> VirtualPath {
        VirtualPath::resolve(&VirtualPath::root(), s).unwrap()
    }

    #[test]
    fn resolves_traversal_table() {
        let cases: &[(&str, &str, &str)] = &[
            // (cwd, input, expected)
            ("/", "", "/"),
            ("/a/b", "", "/a/b"),
            ("/", "a", "/a"),
            ("/a", "b/c", "/a/b/c"),
            ("/a", "/x", "/x"),
            ("/a/b", "..", "/a"),
            ("/a/b", "../..", "/"),
            ("/a/b", "../../../../..", "/"),
            ("/", "..", "/"),
            ("/", "/../../etc/passwd", "/etc/passwd"),
            ("/a", "../../etc/passwd", "/etc/passwd"),
            ("/a", "./././b/.", "/a/b"),
            ("/", "a//b///c/", "/a/b/c"),
            ("/", "//", "/"),
            ("/a", "b/../../c", "/c"),
            ("/a", "...", "/a/..."),
            ("/a", "..b", "/a/..b"),
            ("/", "Fotos/Été", "/Fotos/Été"),
            ("/", "sp ace", "/sp ace"),
            // `..` is textual: it never consults the disk, so a symlink can't redirect it.
            ("/link", "..", "/"),
            // The old staging area's name, and the new one's, are ordinary names.
            ("/", ".rsftp-partial/../x", "/x"),
            ("/", "a/.rsftp-partial", "/a/.rsftp-partial"),
            ("/", ".rsftp-partial/x", "/.rsftp-partial/x"),
            ("/", "../.partials/alice", "/.partials/alice"),
        ];
        for (cwd, input, want) in cases {
            let got = VirtualPath::resolve(&vp(cwd), input).unwrap();
            assert_eq!(got.as_str(), *want, "cwd {cwd:?} input {input:?}");
        }
    }

    #[test]
    fn rejects_control_characters() {
        for bad in ["a\0b", "a\nb", "\r", "x\u{1f}", "del\u{7f}", "\t"] {
            assert!(
                matches!(
                    VirtualPath::resolve(&VirtualPath::root(), bad),
                    Err(StorageError::BadPath { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rejects_long_names_and_paths() {
        let name = "n".repeat(255);
        assert!(VirtualPath::resolve(&VirtualPath::root(), &name).is_ok());
        let long_name = "n".repeat(256);
        assert!(matches!(
            VirtualPath::resolve(&VirtualPath::root(), &long_name),
            Err(StorageError::BadPath { .. })
        ));
        // Even a name that `..` would pop again is too long to be a name at all.
        assert!(VirtualPath::resolve(&VirtualPath::root(), &format!("{long_name}/..")).is_err());

        // 16 components of 256 bytes ("/" + 255) = 4096 bytes: just fits.
        let fits = format!("/{name}").repeat(16);
        assert_eq!(fits.len(), 4096);
        assert!(VirtualPath::resolve(&VirtualPath::root(), &fits).is_ok());
        let too_long = format!("{fits}/x");
        assert!(matches!(
            VirtualPath::resolve(&VirtualPath::root(), &too_long),
            Err(StorageError::BadPath { .. })
        ));
        // The limit applies to the result: cwd + input together.
        let deep = vp(&fits);
        assert!(VirtualPath::resolve(&deep, "x").is_err());
        assert!(VirtualPath::resolve(&deep, "../x").is_ok());
    }

    #[test]
    fn parts_and_relative_form() {
        let root = VirtualPath::root();
        assert!(root.is_root());
        assert_eq!(root.to_relative(), Path::new("."));
        assert_eq!(root.parent(), None);
        assert_eq!(root.file_name(), None);

        let p = vp("/a/b/c.txt");
        assert!(!p.is_root());
        assert_eq!(p.to_relative(), Path::new("a/b/c.txt"));
        assert_eq!(p.parent(), Some(vp("/a/b")));
        assert_eq!(p.file_name(), Some("c.txt"));
        assert_eq!(p.to_string(), "/a/b/c.txt");

        let top = vp("/top");
        assert_eq!(top.parent(), Some(root.clone()));
        assert_eq!(top.to_relative(), Path::new("top"));
    }

    #[test]
    fn join_takes_exactly_one_name() {
        let root = VirtualPath::root();
        assert_eq!(root.join("a").unwrap(), vp("/a"));
        assert_eq!(vp("/a").join("b").unwrap(), vp("/a/b"));
        for bad in ["", ".", "..", "a/b", "/a", "a\0", "x\n"] {
            assert!(
                matches!(root.join(bad), Err(StorageError::BadPath { .. })),
                "{bad:?}"
            );
        }
        assert!(root.join(&"n".repeat(256)).is_err());
    }
}
