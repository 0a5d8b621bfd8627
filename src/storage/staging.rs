//! Where partial uploads wait: a staging area outside every home, or, for a home that
//! is its own mount point, a folder inside it that no user path can reach.
//!
//! Each user's partials live in `<storage root>/.partials/<user>/`, beside the homes
//! (`<storage root>/<user>/`) and so, as a rule, on the same filesystem: publishing an
//! upload stays one `renameat` from the staging folder's handle to the home's. No user
//! path can name a partial, through `..`, a link planted in the home (`self -> .`) or
//! anything else, because every user path resolves beneath the home and the staging area
//! is not under it. `.partials` can never be a home either: account names never start
//! with `.`, and [`Storage::home`] refuses such a name too.
//!
//! A home on another filesystem than `.partials` (its own mount point) could not take a
//! rename from there, so its staging folder is `<home>/.rsftp-staging`
//! ([`HOME_STAGING_DIR`]), made mode 0700 without following a link. There it is under
//! the home, so it is refused by what it is, not by its name: the posix backend resolves
//! every path of that home one step at a time and refuses any step whose device and
//! inode are the staging folder's, however it is reached (its name, a link planted to
//! it, a rename), leaves it out of listings, and the usage scan counts the partials in
//! it once. It cannot be renamed or removed through the home. The ordinary case, with
//! the staging folder outside, is unchanged by this.
//!
//! Partials used to live in `.rsftp-partial` at the top of each home. The first time a
//! home is opened without a staging folder, what that old folder holds is moved into a
//! new one ([`migrate_legacy`]), once: afterwards `.rsftp-partial` is an ordinary name.

use std::io;
use std::path::{Path, PathBuf};

use cap_fs_ext::DirExt as _;
use cap_std::fs::{Dir, DirBuilder, DirBuilderExt as _, MetadataExt as _};

use super::beneath::Identity;
use super::{Result, Storage, StorageError, VirtualPath};

/// The folder in the storage root that holds every user's staging folder.
pub const STAGING_ROOT: &str = ".partials";

/// The staging folder inside a home that is its own mount point.
pub const HOME_STAGING_DIR: &str = ".rsftp-staging";

/// A user's staging folder, and its identity if it is inside the home (where every path
/// of the home must refuse it).
#[derive(Debug)]
pub(super) struct StagingFolder {
    pub dir: Dir,
    pub in_home: Option<Identity>,
}

/// Where partial uploads lived before, at the top of each home; migrated on first open.
pub const LEGACY_STAGING_DIR: &str = ".rsftp-partial";

/// Opens (creating it, mode 0700, if needed) the staging root `.partials` in `root`. It
/// must be a real folder: a symbolic link there is refused rather than followed.
pub(super) fn open_root(root: &Path) -> Result<Dir> {
    let storage = Dir::open_ambient_dir(root, cap_std::ambient_authority())
        .map_err(|e| StorageError::from_io(&VirtualPath::root(), e))?;
    let parts = open_private_dir(&storage, Path::new(STAGING_ROOT))?;
    give_to_owner_of(&storage, &parts, STAGING_ROOT);
    Ok(parts)
}

/// Opens the folder `name` in `parent` without following a link, creating it (mode
/// 0700) if missing.
fn open_private_dir(parent: &Dir, name: &Path) -> Result<Dir> {
    match parent.create_dir_with(name, DirBuilder::new().mode(0o700)) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(StorageError::from_io(&VirtualPath::root(), e));
        }
        _ => {}
    }
    parent.open_dir_nofollow(name).map_err(not_plain)
}

/// The error for a staging folder that could not be opened: a link or a file there is
/// refused as such, anything else is the filesystem's error. Errors name no user path,
/// since the staging area has none.
fn not_plain(err: io::Error) -> StorageError {
    let is_link = err.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error());
    if err.kind() == io::ErrorKind::NotADirectory || is_link {
        StorageError::Denied {
            path: VirtualPath::root(),
            reason: "the staging area for uploads is not a plain directory",
        }
    } else {
        StorageError::from_io(&VirtualPath::root(), err)
    }
}

/// Flushes a folder's entries to disk, as a rename into or out of it needs to survive a
/// power loss. Through a descriptor opened for reading: cap-std may hold a folder by an
/// `O_PATH` descriptor, which `fsync` does not take.
pub(super) fn sync_dir(dir: &Dir) -> io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let readable = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::fsync(&readable)?;
    Ok(())
}

/// Gives a folder the server just made to the owner of the folder it is in, when an
/// administrator's command running as root made it: the server must be able to write
/// there. Best effort, like the homes `rsftpd user add` makes; a failure is logged.
fn give_to_owner_of(parent: &Dir, made: &Dir, name: &str) {
    let (Ok(parent), Ok(meta)) = (parent.dir_metadata(), made.dir_metadata()) else {
        return;
    };
    if (parent.uid(), parent.gid()) == (meta.uid(), meta.gid()) {
        return;
    }
    // By the descriptor itself (`AT_EMPTY_PATH`): cap-std may hold a folder by an
    // `O_PATH` descriptor, which `fchown` does not take.
    let owner = Some(rustix::fs::Uid::from_raw(parent.uid()));
    let group = Some(rustix::fs::Gid::from_raw(parent.gid()));
    if let Err(err) = rustix::fs::chownat(made, "", owner, group, rustix::fs::AtFlags::EMPTY_PATH) {
        tracing::warn!(folder = name, error = %err, "cannot give a staging folder to the owner of the storage folder");
    }
}

/// Whether `home` is on another filesystem than `staging_root`, as a home that is its own
/// mount point is.
fn apart(home: &Dir, staging_root: &Dir) -> Result<bool> {
    let dev = |dir: &Dir| {
        dir.dir_metadata()
            .map(|meta| meta.dev())
            .map_err(|e| StorageError::from_io(&VirtualPath::root(), e))
    };
    Ok(dev(home)? != dev(staging_root)? || forced_inside())
}

#[cfg(test)]
thread_local! {
    /// Makes the next homes opened on this thread hold their staging folder, as homes
    /// on their own mount do, without a mount.
    static INSIDE_HOME: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn forced_inside() -> bool {
    #[cfg(test)]
    return INSIDE_HOME.get();
    #[cfg(not(test))]
    false
}

impl Storage {
    /// Opens `user`'s staging folder, making it if missing: `.partials/<user>`, or, for a
    /// home on another filesystem, [`HOME_STAGING_DIR`] in the home. `first_open` says
    /// that this process has not opened the user's home before: only then is a missing
    /// folder made by moving in what the old in-home staging area of `home` holds.
    pub(super) fn staging_of(
        &self,
        user: &str,
        home: &Dir,
        first_open: bool,
    ) -> Result<StagingFolder> {
        if apart(home, &self.staging_root)? {
            let _one_at_a_time = super::user_state::lock(&self.staging_lock);
            let fresh = home.symlink_metadata(HOME_STAGING_DIR).is_err();
            let dir = open_private_dir(home, Path::new(HOME_STAGING_DIR))?;
            if fresh {
                give_to_owner_of(home, &dir, HOME_STAGING_DIR);
            }
            if first_open {
                migrate_legacy(user, home, &dir);
            }
            let identity = Identity::of_dir(&dir)
                .map_err(|e| StorageError::from_io(&VirtualPath::root(), e))?;
            return Ok(StagingFolder {
                dir,
                in_home: Some(identity),
            });
        }
        Ok(StagingFolder {
            dir: self.staging_outside(user, home, first_open)?,
            in_home: None,
        })
    }

    /// Opens `user`'s staging folder in `.partials`, as [`Storage::staging_of`] does.
    fn staging_outside(&self, user: &str, home: &Dir, first_open: bool) -> Result<Dir> {
        let _one_at_a_time = super::user_state::lock(&self.staging_lock);
        match self.staging_root.open_dir_nofollow(user) {
            Ok(dir) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(not_plain(e)),
        }
        // Filled under a name no user can have, then renamed into place: a migration cut
        // short by a crash is taken up again at the next start, never left half done.
        let filling = format!(".{user}.new");
        let fresh = open_private_dir(&self.staging_root, Path::new(&filling))?;
        give_to_owner_of(&self.staging_root, &fresh, &filling);
        if first_open {
            migrate_legacy(user, home, &fresh);
        }
        drop(fresh);
        self.staging_root
            .rename(&filling, &self.staging_root, user)
            .map_err(|e| StorageError::from_io(&VirtualPath::root(), e))?;
        open_private_dir(&self.staging_root, Path::new(user))
    }

    /// Opens `user`'s home with its staging folder inside it, as a home on its own mount
    /// has, for tests that have no mount.
    #[cfg(test)]
    pub(super) fn home_with_staging_inside(
        &self,
        user: &str,
        quota: u64,
    ) -> Result<super::HomeDir> {
        INSIDE_HOME.set(true);
        let home = self.home(user, quota, None);
        INSIDE_HOME.set(false);
        home
    }

    /// Where `user`'s partial uploads are kept on disk in `.partials`, for the
    /// administrator; a home on its own mount keeps them in [`HOME_STAGING_DIR`] instead.
    pub fn staging_path(&self, user: &str) -> PathBuf {
        self.root.join(STAGING_ROOT).join(user)
    }

    /// Deletes `user`'s staging folder and the partial uploads in it, as purging a
    /// deleted account does; `false` if they had none. Call it only when the user has
    /// no session left.
    pub fn remove_staging(&self, user: &str) -> io::Result<bool> {
        if user.is_empty() || user.starts_with('.') || user.contains(['/', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a valid user name",
            ));
        }
        let _one_at_a_time = super::user_state::lock(&self.staging_lock);
        match self.staging_root.remove_dir_all(user) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Whether `name` is what uploads name a partial: the MD5 of the target's path in hex,
/// `-`, and the target's size in decimal.
fn is_partial_name(name: &str) -> bool {
    let Some((hash, size)) = name.split_once('-') else {
        return false;
    };
    hash.len() == 32
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && !size.is_empty()
        && size.parse::<u64>().is_ok()
}

/// Moves the partial uploads from the old staging area `.rsftp-partial` at the top of
/// `home` into `into`, and removes the old folder once it is empty. Only regular files
/// named as partials are moved; anything else stays where it is, as the user's own,
/// and is logged. Nothing here is fatal: what cannot be moved stays, counted, in the
/// home, and the user can see and delete it.
pub(super) fn migrate_legacy(user: &str, home: &Dir, into: &Dir) {
    let legacy = match home.open_dir_nofollow(LEGACY_STAGING_DIR) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(error) => {
            tracing::warn!(user, %error, "cannot open the old staging area {LEGACY_STAGING_DIR} in the home as a folder; left as it is");
            return;
        }
    };
    let (mut moved, mut bytes, mut left) = (0u64, 0u64, 0u64);
    let entries = match legacy.entries() {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!(user, %error, "cannot list the old staging area {LEGACY_STAGING_DIR}; left as it is");
            return;
        }
    };
    for entry in entries {
        let Ok(entry) = entry else {
            left += 1;
            continue;
        };
        let name = entry.file_name();
        let partial = name.to_str().filter(|n| is_partial_name(n));
        let meta = entry.metadata();
        let (Some(partial), Ok(meta)) = (partial, meta) else {
            left += 1;
            continue;
        };
        if !meta.is_file() {
            left += 1;
            continue;
        }
        match legacy.rename(partial, into, partial) {
            Ok(()) => {
                moved += 1;
                bytes += meta.len();
            }
            Err(error) => {
                tracing::warn!(user, partial, %error, "cannot move a partial upload out of the home");
                left += 1;
            }
        }
    }
    drop(legacy);
    if left == 0 {
        if let Err(error) = home.remove_dir(LEGACY_STAGING_DIR) {
            tracing::warn!(user, %error, "cannot remove the emptied old staging area {LEGACY_STAGING_DIR}");
        }
    } else {
        tracing::warn!(
            user,
            left,
            "entries that are not partial uploads stay in {LEGACY_STAGING_DIR}, now an ordinary folder the user sees"
        );
    }
    tracing::info!(
        user,
        moved,
        bytes,
        "moved partial uploads from {LEGACY_STAGING_DIR} in the home to the staging area {STAGING_ROOT}/{user}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_support::{fixture, vp};
    use crate::storage::{UploadStart, Usage};

    #[test]
    fn partial_names_are_recognised() {
        assert!(is_partial_name("0123456789abcdef0123456789abcdef-42"));
        for other in [
            "notes.txt",
            "0123456789abcdef0123456789abcdef-",
            "0123456789abcdef0123456789abcdef-4x",
            "0123456789abcdef0123456789abcde-42",
            "g123456789abcdef0123456789abcdef-42",
        ] {
            assert!(!is_partial_name(other), "{other}");
        }
    }

    #[test]
    fn the_staging_area_is_outside_the_home() {
        let f = fixture(100_000);
        let staging = f.tmp.path().join("storage/.partials/alice");
        assert!(staging.is_dir());
        assert_eq!(f.storage.staging_path("alice"), staging);
        let UploadStart::Ready(mut up) = f.home.begin_upload(&vp("/f"), 10, None).unwrap() else {
            panic!("up to date");
        };
        up.write(b"12345").unwrap();
        drop(up);
        assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 1);
        assert_eq!(std::fs::read_dir(f.real("")).unwrap().count(), 0);
        // Purging takes the partials with it.
        assert!(f.storage.remove_staging("alice").unwrap());
        assert!(!staging.exists());
        assert!(!f.storage.remove_staging("alice").unwrap());
        assert!(f.storage.remove_staging("../alice").is_err());
        // `.partials` can never be opened as a home.
        assert!(matches!(
            f.storage.home(STAGING_ROOT, 1, None),
            Err(StorageError::BadPath { .. })
        ));
    }

    #[test]
    fn an_upload_into_a_home_on_another_filesystem_waits_inside_it() {
        use std::os::unix::fs::MetadataExt as _;
        // A home on its own mount: here, a link to a folder on /dev/shm, where there is one.
        let Ok(elsewhere) = tempfile::tempdir_in("/dev/shm") else {
            return;
        };
        let f = fixture(100_000);
        let dev = |p: &Path| std::fs::metadata(p).unwrap().dev();
        if dev(elsewhere.path()) == dev(f.tmp.path()) {
            return;
        }
        std::os::unix::fs::symlink(elsewhere.path(), f.tmp.path().join("storage/carol")).unwrap();
        let carol = f.storage.home("carol", 100_000, None).unwrap();
        let UploadStart::Ready(mut up) = carol.begin_upload(&vp("/f"), 5, None).unwrap() else {
            panic!("up to date");
        };
        up.write(b"12345").unwrap();
        let inside = elsewhere.path().join(HOME_STAGING_DIR);
        assert_eq!(std::fs::read_dir(&inside).unwrap().count(), 1);
        up.finish(crate::protocol::Md5Digest::of(b"12345")).unwrap();
        assert_eq!(std::fs::read(elsewhere.path().join("f")).unwrap(), b"12345");
        assert_eq!(std::fs::read_dir(&inside).unwrap().count(), 0);
        assert!(matches!(
            carol.stat(&vp(&format!("/{HOME_STAGING_DIR}"))),
            Err(StorageError::Denied { .. })
        ));
        // Alice's home, on the storage root's filesystem, keeps hers outside as ever.
        assert!(!f.real(HOME_STAGING_DIR).exists());
        assert!(f.staging().is_dir());
    }

    /// A home that holds its staging folder, with half an upload of `/f` in it.
    fn home_with_inside_staging() -> (tempfile::TempDir, Storage, crate::storage::HomeDir) {
        let tmp = tempfile::tempdir().unwrap();
        let storage = Storage::open(&tmp.path().join("storage")).unwrap();
        let home = storage.home_with_staging_inside("carol", 1 << 20).unwrap();
        let UploadStart::Ready(mut up) = home.begin_upload(&vp("/f"), 10, None).unwrap() else {
            panic!("up to date");
        };
        up.write(b"12345").unwrap();
        drop(up);
        (tmp, storage, home)
    }

    #[test]
    fn an_upload_into_a_home_that_holds_its_staging_folder_resumes_and_lands() {
        use std::os::unix::fs::PermissionsExt as _;
        let (tmp, storage, home) = home_with_inside_staging();
        let inside = tmp.path().join("storage/carol").join(HOME_STAGING_DIR);
        let mode = std::fs::symlink_metadata(&inside)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(std::fs::read_dir(&inside).unwrap().count(), 1);
        // The partial counts once (its block), the folder not at all, before and after a
        // restart.
        let once = Usage {
            used: 4096,
            reserved: 0,
            limit: 1 << 20,
        };
        assert_eq!(home.usage(), once);
        let again = Storage::open(&tmp.path().join("storage"))
            .unwrap()
            .home_with_staging_inside("carol", 1 << 20)
            .unwrap();
        assert_eq!(again.usage(), once);
        assert_eq!(again.entries().count, 1);
        // Resumed from what the server holds, and published into the home.
        let UploadStart::Ready(mut up) = again.begin_upload(&vp("/f"), 10, None).unwrap() else {
            panic!("up to date");
        };
        assert_eq!(up.held(), 5);
        up.start_from(5).unwrap();
        up.write(b"67890").unwrap();
        up.finish(crate::protocol::Md5Digest::of(b"1234567890"))
            .unwrap();
        assert_eq!(
            std::fs::read(tmp.path().join("storage/carol/f")).unwrap(),
            b"1234567890"
        );
        assert_eq!(std::fs::read_dir(&inside).unwrap().count(), 0);
        let names: Vec<_> = again
            .list(&VirtualPath::root())
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["f"]);
        drop(storage);
    }

    #[test]
    fn a_staging_folder_in_the_home_is_refused_by_what_it_is_not_its_name() {
        let (tmp, _storage, home) = home_with_inside_staging();
        let real = tmp.path().join("storage/carol");
        let partial = std::fs::read_dir(real.join(HOME_STAGING_DIR))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .file_name()
            .into_string()
            .unwrap();
        std::fs::create_dir(real.join("docs")).unwrap();
        std::fs::write(real.join("docs/d"), b"doc").unwrap();
        // Links an administrator planted, and one through `.`.
        std::os::unix::fs::symlink(HOME_STAGING_DIR, real.join("s")).unwrap();
        std::os::unix::fs::symlink(format!("{HOME_STAGING_DIR}/{partial}"), real.join("p"))
            .unwrap();
        std::os::unix::fs::symlink("../s", real.join("docs/up")).unwrap();
        std::os::unix::fs::symlink(".", real.join("self")).unwrap();
        let denied = |what: &str, result: Result<()>| match result {
            Err(StorageError::Denied { reason, .. }) => {
                assert_eq!(
                    reason, "reserved for the server's partial uploads",
                    "{what}"
                );
            }
            other => panic!("{what}: {other:?}"),
        };
        let names = [
            format!("/{HOME_STAGING_DIR}"),
            "/s".to_owned(),
            "/self/s".to_owned(),
            format!("/self/{HOME_STAGING_DIR}"),
            "/docs/up".to_owned(),
        ];
        for name in &names {
            let path = vp(name);
            denied("stat", home.stat(&path).map(drop));
            denied("lstat", home.lstat(&path).map(drop));
            denied("ls", home.list(&path).map(drop));
            denied("rmdir", home.rmdir(&path));
            denied("rm", home.remove_file(&path));
            denied("rename from", home.rename(&path, &vp("/moved")));
            denied("rename over", home.rename(&vp("/docs"), &path));
            denied("rename new", home.rename_new(&path, &vp("/moved")));
            denied("chmod", home.set_permissions(&path, 0o755));
            denied("mkdir in", home.mkdir(&vp(&format!("{name}/x"))));
            let inner = vp(&format!("{name}/{partial}"));
            denied("get", home.open_read(&inner).map(drop));
            denied("stat in", home.stat(&inner).map(drop));
            denied("rm in", home.remove_file(&inner));
            denied("write in", home.write_at(&inner, 0, b"x"));
            denied("rename out", home.rename(&inner, &vp("/stolen")));
            denied(
                "put in",
                home.begin_upload(&vp(&format!("{name}/new")), 3, None)
                    .map(drop),
            );
        }
        denied("link to a partial", home.open_read(&vp("/p")).map(drop));
        denied("mkdir", home.mkdir(&vp(&format!("/{HOME_STAGING_DIR}"))));
        denied(
            "a new link to it",
            home.symlink(&vp("/l"), HOME_STAGING_DIR).map(drop),
        );
        denied(
            "a new link through `self`",
            home.symlink(
                &vp("/docs/l"),
                &format!("../self/{HOME_STAGING_DIR}/{partial}"),
            )
            .map(drop),
        );
        // Renamed behind the server's back, it is still what it is.
        std::fs::rename(real.join(HOME_STAGING_DIR), real.join("renamed")).unwrap();
        denied("renamed", home.stat(&vp("/renamed")).map(drop));
        denied(
            "get renamed",
            home.open_read(&vp(&format!("/renamed/{partial}")))
                .map(drop),
        );
        let mut listed: Vec<_> = home
            .list(&VirtualPath::root())
            .unwrap()
            .into_iter()
            .map(|e| e.name.into_string().unwrap())
            .collect();
        listed.sort();
        assert_eq!(listed, ["docs", "p", "s", "self"]);
        // What is not the staging folder works as ever, links included.
        assert_eq!(home.stat(&vp("/self/docs/d")).unwrap().size, 3);
        home.rename(&vp("/docs/d"), &vp("/self/e")).unwrap();
        home.remove_file(&vp("/e")).unwrap();
        assert!(matches!(
            home.stat(&vp("/nope")),
            Err(StorageError::NotFound { .. })
        ));
        assert_eq!(
            std::fs::read_dir(real.join("renamed")).unwrap().count(),
            1,
            "the partial is untouched"
        );
    }

    #[test]
    fn a_staging_folder_planted_as_a_link_is_refused() {
        let f = fixture(1000);
        f.plant_links();
        let parts = f.tmp.path().join("storage/.partials");
        std::os::unix::fs::symlink("../alice/docs", parts.join("carol")).unwrap();
        assert!(matches!(
            f.storage.home("carol", 1000, None).map(drop),
            Err(StorageError::Denied { .. })
        ));
        assert_eq!(std::fs::read_dir(f.real("docs")).unwrap().count(), 1);
    }

    #[test]
    fn a_legacy_staging_area_is_migrated_once() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("storage/alice");
        let legacy = home.join(LEGACY_STAGING_DIR);
        std::fs::create_dir_all(&legacy).unwrap();
        let name = format!("{}-10", crate::protocol::Md5Digest::of(b"/f"));
        std::fs::write(legacy.join(&name), b"12345").unwrap();
        let storage = Storage::open(&tmp.path().join("storage")).unwrap();
        let h = storage.home("alice", 100_000, None).unwrap();
        assert!(!legacy.exists());
        assert_eq!(
            std::fs::read(tmp.path().join("storage/.partials/alice").join(&name)).unwrap(),
            b"12345"
        );
        assert_eq!(
            h.usage(),
            Usage {
                used: 4096,
                reserved: 0,
                limit: 100_000
            }
        );
        let UploadStart::Ready(up) = h.begin_upload(&vp("/f"), 10, None).unwrap() else {
            panic!("up to date");
        };
        assert_eq!(up.held(), 5);
        drop(up);

        // Once migrated, `.rsftp-partial` is an ordinary name: what a user puts there
        // stays theirs, across restarts, even if it looks like a partial.
        h.mkdir(&vp("/.rsftp-partial")).unwrap();
        h.write_at(&vp(&format!("/.rsftp-partial/{name}")), 0, b"mine")
            .unwrap();
        h.write_at(&vp("/.rsftp-partial/notes"), 0, b"mine")
            .unwrap();
        let again = Storage::open(&tmp.path().join("storage"))
            .unwrap()
            .home("alice", 100_000, None)
            .unwrap();
        assert_eq!(std::fs::read_dir(&legacy).unwrap().count(), 2);
        assert_eq!(again.usage().used, 4 * 4096);
    }

    #[test]
    fn a_migration_keeps_what_is_not_a_partial() {
        let tmp = tempfile::tempdir().unwrap();
        let legacy = tmp.path().join("storage/alice").join(LEGACY_STAGING_DIR);
        std::fs::create_dir_all(legacy.join("sub")).unwrap();
        std::fs::write(legacy.join("notes"), b"x").unwrap();
        let partial = format!("{}-3", crate::protocol::Md5Digest::of(b"/g"));
        std::fs::write(legacy.join(&partial), b"ab").unwrap();
        let storage = Storage::open(&tmp.path().join("storage")).unwrap();
        let h = storage.home("alice", 100_000, None).unwrap();
        let mut left: Vec<_> = std::fs::read_dir(&legacy)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["notes", "sub"]);
        assert!(storage.staging_path("alice").join(&partial).is_file());
        // The left-over folder, its two entries, and the moved partial.
        assert_eq!(h.usage().used, 4 * 4096);
        assert_eq!(h.entries().count, 4);
    }
    #[test]
    fn folders_are_flushed_and_a_failure_is_reported() {
        let f = fixture(1000);
        sync_dir(&f.storage.staging_root).unwrap();
        let home = Dir::open_ambient_dir(f.real(""), cap_std::ambient_authority()).unwrap();
        sync_dir(&home).unwrap();
        // A handle that is not a folder's: the error comes back, nothing is assumed.
        std::fs::write(f.real("file"), b"x").unwrap();
        let file = std::fs::File::open(f.real("file")).unwrap();
        let err = sync_dir(&Dir::from_std_file(file)).unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::NOTDIR.raw_os_error())
        );
    }
}
