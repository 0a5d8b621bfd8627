//! Object keys for a user's home: `prefix/<user>/` followed by the user's resolved
//! virtual path, and nothing else.
//!
//! Confinement on an object store is by construction. A key is built only from a
//! [`VirtualPath`], which is already normalised and rooted at the home (no `..`
//! survives it), under the one prefix of the home's owner; no user input ever reaches a
//! key any other way. The checks here refuse, once more and the same way for every front
//! end, what object stores treat specially: empty segments (`a//b`), `.`, `..`, and
//! trailing slashes, which would name a folder marker rather than a file. The user's
//! names are kept verbatim (no percent-encoding), so what another tool lists under the
//! prefix is what the user sees.

use object_store::path::Path;

use crate::storage::{Result, StorageError, VirtualPath};

/// The longest key S3 accepts, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// The zero-byte object that marks a folder made with `mkdir`: `name/.rsftp-folder`.
/// The S3 convention, an object named `name/`, is recognised too, but object_store
/// cannot write a key that ends with a slash, and some S3-compatible servers cannot list
/// one. The name is reserved on this backend: no user file can have it.
pub const MARKER_NAME: &str = ".rsftp-folder";

/// The keys of one user's home: everything under `prefix/<user>/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HomeKeys {
    /// `prefix/<user>`, without a trailing slash.
    home: String,
}

impl HomeKeys {
    /// The home of `user` under `prefix` (which may be empty, for a whole bucket).
    ///
    /// The prefix comes from the server's configuration; its own segments are checked
    /// like a user's, so no configuration can make two users share keys. `user` must be
    /// one name, and not start with a dot (no account name does).
    pub fn new(prefix: &str, user: &str) -> Result<HomeKeys> {
        let bad_user = StorageError::BadPath {
            reason: "not a valid user name",
        };
        if user.starts_with('.') {
            return Err(bad_user);
        }
        check_segment(user).map_err(|_| bad_user)?;
        let prefix = prefix.trim_matches('/');
        let mut home = String::with_capacity(prefix.len() + user.len() + 1);
        if !prefix.is_empty() {
            for segment in prefix.split('/') {
                check_segment(segment)?;
            }
            home.push_str(prefix);
            home.push('/');
        }
        home.push_str(user);
        Ok(HomeKeys { home })
    }

    /// `prefix/<user>/`: what every key of this home starts with.
    pub fn home_prefix(&self) -> String {
        format!("{}/", self.home)
    }

    /// The key of the object (a file) at `path`. The home itself has none.
    pub fn object(&self, path: &VirtualPath) -> Result<Path> {
        if path.is_root() {
            return Err(StorageError::IsADirectory { path: path.clone() });
        }
        let key = self.join(path)?;
        parse(&key)
    }

    /// The prefix, with its trailing slash, that the entries of the folder `path` are
    /// listed under; for the home itself, [`HomeKeys::home_prefix`]. Also the key of the
    /// folder's marker in the S3 convention, which other tools write.
    pub fn folder(&self, path: &VirtualPath) -> Result<String> {
        if path.is_root() {
            return Ok(self.home_prefix());
        }
        let mut key = self.join(path)?;
        key.push('/');
        check_len(&key)?;
        Ok(key)
    }

    /// The key of the marker object of the folder `path`.
    pub fn marker(&self, path: &VirtualPath) -> Result<Path> {
        let key = format!("{}{MARKER_NAME}", self.folder(path)?);
        check_len(&key)?;
        parse(&key)
    }

    /// The user's name for a key listed under the folder prefix `folder`: the one
    /// segment that follows it, without a marker's trailing slash. `None` for anything
    /// this home could not have made (another depth, an empty or special segment), which
    /// a listing then leaves out.
    pub fn name_in<'k>(folder: &str, key: &'k str) -> Option<&'k str> {
        let rest = key.strip_prefix(folder)?;
        let name = rest.strip_suffix('/').unwrap_or(rest);
        check_segment(name).ok()?;
        (name != MARKER_NAME).then_some(name)
    }

    /// `prefix/<user>` + the path's segments, each checked again.
    fn join(&self, path: &VirtualPath) -> Result<String> {
        let mut key = String::with_capacity(self.home.len() + path.as_str().len());
        key.push_str(&self.home);
        for segment in path.as_str().split('/').skip(1) {
            check_segment(segment)?;
            if segment == MARKER_NAME {
                return Err(StorageError::BadPath {
                    reason: "a name reserved for folder markers on the object store",
                });
            }
            key.push('/');
            key.push_str(segment);
        }
        check_len(&key)?;
        Ok(key)
    }
}

/// One segment of a key: not empty, not `.` or `..`, without `/` or control characters.
fn check_segment(segment: &str) -> Result<()> {
    let reason = if segment.is_empty() {
        "an empty name"
    } else if segment == "." || segment == ".." {
        "`.` and `..` are not names on the object store"
    } else if segment.contains('/') {
        "a name with a slash"
    } else if segment.chars().any(|c| c < ' ' || c == '\u{7f}') {
        "a NUL or control character"
    } else {
        return Ok(());
    };
    Err(StorageError::BadPath { reason })
}

fn check_len(key: &str) -> Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(StorageError::BadPath {
            reason: "the path is too long for the object store (1024 bytes with the home's prefix)",
        });
    }
    Ok(())
}

/// The key as object_store's path, verbatim: every segment was checked, so this only
/// fails if the checks above and object_store's disagree.
fn parse(key: &str) -> Result<Path> {
    Path::parse(key).map_err(|_| StorageError::BadPath {
        reason: "not a name the object store accepts",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vp(s: &str) -> VirtualPath {
        VirtualPath::resolve(&VirtualPath::root(), s).unwrap()
    }

    fn bad(r: Result<impl std::fmt::Debug>) -> bool {
        matches!(r, Err(StorageError::BadPath { .. }))
    }

    #[test]
    fn keys_sit_under_the_users_prefix() {
        let keys = HomeKeys::new("homes", "alice").unwrap();
        assert_eq!(keys.home_prefix(), "homes/alice/");
        assert_eq!(
            keys.object(&vp("/a.txt")).unwrap().as_ref(),
            "homes/alice/a.txt"
        );
        assert_eq!(
            keys.object(&vp("/docs/Été/sp ace#%?.txt"))
                .unwrap()
                .as_ref(),
            "homes/alice/docs/Été/sp ace#%?.txt",
            "names are kept verbatim, not percent-encoded"
        );
        assert_eq!(keys.folder(&VirtualPath::root()).unwrap(), "homes/alice/");
        assert_eq!(keys.folder(&vp("/docs")).unwrap(), "homes/alice/docs/");
        assert_eq!(
            keys.marker(&vp("/docs")).unwrap().as_ref(),
            "homes/alice/docs/.rsftp-folder"
        );
        assert_eq!(
            keys.marker(&VirtualPath::root()).unwrap().as_ref(),
            "homes/alice/.rsftp-folder"
        );
        // The marker's name is no user's file or folder.
        assert!(bad(keys.object(&vp("/.rsftp-folder"))));
        assert!(bad(keys.folder(&vp("/a/.rsftp-folder"))));
        assert!(bad(keys.object(&vp("/.rsftp-folder/x"))));
        assert!(matches!(
            keys.object(&VirtualPath::root()),
            Err(StorageError::IsADirectory { .. })
        ));

        // A whole bucket, and a prefix given with slashes around it.
        let bare = HomeKeys::new("", "bob").unwrap();
        assert_eq!(bare.object(&vp("/x")).unwrap().as_ref(), "bob/x");
        let slashed = HomeKeys::new("/a/b/", "bob").unwrap();
        assert_eq!(slashed.folder(&vp("/c")).unwrap(), "a/b/bob/c/");
    }

    #[test]
    fn traversal_never_leaves_the_prefix() {
        let keys = HomeKeys::new("homes", "alice").unwrap();
        // Whatever the user typed, the key is built from the resolved path.
        for input in [
            "../bob/secret",
            "/../../bob/secret",
            "a/../../bob/secret",
            "./../bob//secret/",
            "..//..//bob/secret",
        ] {
            let path = VirtualPath::resolve(&vp("/"), input).unwrap();
            let key = keys.object(&path).unwrap();
            assert_eq!(key.as_ref(), "homes/alice/bob/secret", "{input:?}");
        }
        // Trailing slashes and empty segments collapse the same way on every front end.
        for input in ["dir/", "dir//", "/dir/.", "./dir", "dir/x/.."] {
            let path = VirtualPath::resolve(&vp("/"), input).unwrap();
            assert_eq!(
                keys.object(&path).unwrap().as_ref(),
                "homes/alice/dir",
                "{input:?}"
            );
        }
    }

    #[test]
    fn rejects_special_segments_and_bad_users() {
        for user in ["", ".", "..", ".hidden", "a/b", "a\0", "x\n"] {
            assert!(bad(HomeKeys::new("homes", user)), "{user:?}");
        }
        for prefix in ["a//b", "a/./b", "a/../b", "..", "a\tb"] {
            assert!(bad(HomeKeys::new(prefix, "alice")), "{prefix:?}");
        }
        for segment in ["", ".", "..", "a/b", "a\0b", "\u{7f}"] {
            assert!(bad(check_segment(segment)), "{segment:?}");
        }
        assert!(check_segment("...").is_ok());
        assert!(check_segment("..b").is_ok());
    }

    #[test]
    fn rejects_keys_longer_than_s3_takes() {
        let keys = HomeKeys::new("homes", "alice").unwrap();
        // "homes/alice" is 11 bytes; 1013 more fit: four names of 200 and one of 208.
        let name = "n".repeat(200);
        let fits = format!("/{name}/{name}/{name}/{name}/{}", "n".repeat(208));
        assert_eq!(keys.object(&vp(&fits)).unwrap().as_ref().len(), MAX_KEY_LEN);
        assert!(bad(keys.object(&vp(&format!("{fits}x")))));
        // A folder's prefix has one more byte, its slash.
        assert!(bad(keys.folder(&vp(&fits))));
    }

    #[test]
    fn names_in_a_listing() {
        let folder = "homes/alice/docs/";
        assert_eq!(
            HomeKeys::name_in(folder, "homes/alice/docs/a.txt"),
            Some("a.txt")
        );
        assert_eq!(
            HomeKeys::name_in(folder, "homes/alice/docs/sub/"),
            Some("sub")
        );
        // The folder's own marker, a deeper key, an empty segment, another home.
        assert_eq!(HomeKeys::name_in(folder, "homes/alice/docs/"), None);
        assert_eq!(
            HomeKeys::name_in(folder, "homes/alice/docs/.rsftp-folder"),
            None
        );
        assert_eq!(HomeKeys::name_in(folder, "homes/alice/docs/a/b"), None);
        assert_eq!(HomeKeys::name_in(folder, "homes/alice/docs//"), None);
        assert_eq!(HomeKeys::name_in(folder, "homes/alice/docs/../x"), None);
        assert_eq!(HomeKeys::name_in(folder, "homes/bob/docs/a.txt"), None);
    }
}
