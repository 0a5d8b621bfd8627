//! Fixtures for the storage tests: a temporary storage root with a home for `alice`, a
//! sibling home for `bob`, a secret outside both, and symbolic links planted on disk.

use std::os::unix::fs::symlink;
use std::path::PathBuf;

use tempfile::TempDir;

use super::{HomeDir, Storage, VirtualPath};

pub(super) struct Fixture {
    pub tmp: TempDir,
    pub storage: Storage,
    pub home: HomeDir,
}

pub(super) fn vp(path: &str) -> VirtualPath {
    VirtualPath::resolve(&VirtualPath::root(), path).unwrap()
}

pub(super) fn fixture(quota: u64) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let storage = Storage::open(&tmp.path().join("storage")).unwrap();
    let home = storage.home("alice", quota, None).unwrap();
    Fixture { tmp, storage, home }
}

impl Fixture {
    /// The real path of `rel` inside alice's home, to plant things behind the API's back.
    pub fn real(&self, rel: &str) -> PathBuf {
        self.tmp.path().join("storage/alice").join(rel)
    }

    /// The real path of alice's staging folder for partial uploads.
    pub fn staging(&self) -> PathBuf {
        self.tmp.path().join("storage/.partials/alice")
    }

    /// A fresh `Storage` on the same root, as after a server restart.
    pub fn restart(&self, quota: u64) -> HomeDir {
        Storage::open(&self.tmp.path().join("storage"))
            .unwrap()
            .home("alice", quota, None)
            .unwrap()
    }

    /// Plants a secret outside the homes, a file in bob's home, and links from alice's
    /// home to each of them: `abs` and `abs_file` (absolute), `rel` and `rel_file`
    /// (relative, `../..`), `bob` (the sibling home); and `inside` -> `docs`, which stays.
    pub fn plant_links(&self) {
        let secret = self.tmp.path().join("secret");
        std::fs::create_dir_all(&secret).unwrap();
        std::fs::write(secret.join("s.txt"), b"secret").unwrap();
        self.storage.home("bob", 1000, None).unwrap();
        std::fs::write(self.tmp.path().join("storage/bob/b.txt"), b"bob's").unwrap();
        std::fs::create_dir_all(self.real("docs")).unwrap();
        std::fs::write(self.real("docs/d.txt"), b"doc").unwrap();
        symlink(&secret, self.real("abs")).unwrap();
        symlink(secret.join("s.txt"), self.real("abs_file")).unwrap();
        symlink("../../secret", self.real("rel")).unwrap();
        symlink("../../secret/s.txt", self.real("rel_file")).unwrap();
        symlink("../bob", self.real("bob")).unwrap();
        symlink("docs", self.real("inside")).unwrap();
        symlink("docs/../docs/d.txt", self.real("inside_file")).unwrap();
    }

    /// The links `plant_links` made that lead out of the home.
    pub const ESCAPES: [&str; 5] = ["/abs", "/abs_file", "/rel", "/rel_file", "/bob"];
}
