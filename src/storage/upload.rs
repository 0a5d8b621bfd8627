//! Uploads that land atomically, resume after a broken connection, and are verified.
//!
//! The data goes to a partial upload in the backend's staging area, where no user path
//! can reach it (on disk, the user's staging folder outside the home; see
//! `storage/staging.rs`), named after the target's path and size, so that a later
//! upload of the same file finds what an earlier one left and can resume; an upload of
//! the same path at another size deletes it, since it could never resume. The partial
//! is published onto the target only once the MD5 of all its bytes matches, so nobody
//! ever sees a half-written file under the final name. Each byte is hashed as it is
//! written (or, for a resumed prefix, read once at the start): no file is read twice.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use md5::{Digest, Md5};

use super::backend::{Replace, StagedFile};
use super::home::{HomeDir, at};
use super::user_state::{UserState, lock};
use super::{EntryKind, Reservation, Result, StorageError, VirtualPath, file_cost};
use crate::protocol::Md5Digest;

/// How [`HomeDir::begin_upload`] went.
#[derive(Debug)]
pub enum UploadStart {
    /// The target already has that size and MD5: nothing to send.
    UpToDate,
    /// Space is reserved and the partial is open; send from [`Upload::held`] or from 0.
    Ready(Upload),
}

/// An upload in progress. Dropping it unfinished keeps the partial for a later resume.
#[derive(Debug)]
pub struct Upload {
    home: HomeDir,
    path: VirtualPath,
    partial: String,
    file: Box<dyn StagedFile>,
    size: u64,
    held: u64,
    prefix_md5: Md5Digest,
    written: u64,
    /// The MD5 of the partial's first `written` bytes, so far. Boxed to keep
    /// `UploadStart` small.
    hasher: Box<Md5>,
    /// Always `file_cost(size) - file_cost(written)`: the rest of the file can't be
    /// refused for quota later.
    reservation: Reservation,
    _busy: BusyMark,
}

/// Marks a path as being uploaded, for as long as it lives.
#[derive(Debug)]
struct BusyMark {
    state: Arc<UserState>,
    path: VirtualPath,
}

impl BusyMark {
    fn take(state: &Arc<UserState>, path: &VirtualPath, partial: &str) -> Result<BusyMark> {
        let mut uploads = lock(&state.uploads);
        if uploads.contains_key(path) {
            return Err(StorageError::Busy { path: path.clone() });
        }
        uploads.insert(path.clone(), partial.to_owned());
        Ok(BusyMark {
            state: Arc::clone(state),
            path: path.clone(),
        })
    }
}

impl Drop for BusyMark {
    fn drop(&mut self) {
        lock(&self.state.uploads).remove(&self.path);
    }
}

/// The partial's name: which file, and how long it will be. Another size is another
/// upload, so it never resumes onto this one's bytes.
fn partial_name(path: &VirtualPath, size: u64) -> String {
    format!("{}{size}", partial_prefix(path))
}

/// What the names of all partials of `path`, whatever their size, start with.
fn partial_prefix(path: &VirtualPath) -> String {
    format!("{}-", Md5Digest::of(path.as_str().as_bytes()))
}

impl HomeDir {
    /// Prepares to upload `size` bytes to `path`.
    ///
    /// With `expected`, a regular file already at `path` with that size and MD5 gives
    /// [`UploadStart::UpToDate`]. Otherwise the path is marked busy, partials of the path
    /// at other sizes are deleted, the partial left by an earlier attempt at this size
    /// (if any) is hashed, and the rest of the file is reserved in the quota ledger
    /// before any data is sent.
    pub fn begin_upload(
        &self,
        path: &VirtualPath,
        size: u64,
        expected: Option<Md5Digest>,
    ) -> Result<UploadStart> {
        self.state.check_measured()?;
        let Some(parent) = path.parent() else {
            return Err(StorageError::IsADirectory { path: path.clone() });
        };
        self.backend.check_publishable(&parent)?;
        let replaces = match self.backend.stat(path) {
            Ok(entry) if entry.kind == EntryKind::Dir => {
                return Err(StorageError::IsADirectory { path: path.clone() });
            }
            Ok(entry) if entry.kind == EntryKind::File && entry.size == size => {
                if let Some(expected) = expected
                    && self.md5_range(path, 0, size)? == (expected, size)
                {
                    return Ok(UploadStart::UpToDate);
                }
                true
            }
            Ok(_) => true,
            Err(StorageError::NotFound { .. }) => false,
            Err(e) => return Err(e),
        };

        let partial = partial_name(path, size);
        let busy = BusyMark::take(&self.state, path, &partial)?;
        // Before reserving, so that their space is free for this upload.
        self.discard_other_sizes(path, &partial)?;
        let existing = self.backend.stage(&partial, path, false)?;
        let mut held = 0;
        if let Some(file) = &existing {
            held = file.held().map_err(at(path))?;
            if held > size {
                file.truncate(0).map_err(at(path))?;
                self.state.ledger.release(file_cost(held));
                held = 0;
            }
        }
        // Reserve before creating or reading anything, so a refusal costs nothing. A new
        // partial is a new entry.
        let need = file_cost(size) - file_cost(held);
        let (file, reservation) = match existing {
            Some(file) => (file, self.state.ledger.reserve(need)?),
            None => {
                let ledger = &self.state.ledger;
                let mut reservation = if replaces {
                    ledger.reserve_replacing_entry(need)?
                } else {
                    ledger.reserve_entry(need)?
                };
                let file = self
                    .backend
                    .stage(&partial, path, true)?
                    .ok_or_else(|| StorageError::NotFound { path: path.clone() })?;
                reservation.keep_entry();
                (file, reservation)
            }
        };
        // Nobody else writes this partial while we hold the busy mark, so all `held`
        // bytes are there to hash.
        let hasher = file.hash_held(held).map_err(at(path))?;
        Ok(UploadStart::Ready(Upload {
            home: self.clone(),
            path: path.clone(),
            partial,
            file,
            size,
            held,
            prefix_md5: Md5Digest::from_hasher(hasher.clone()),
            written: held,
            hasher: Box::new(hasher),
            reservation,
            _busy: busy,
        }))
    }

    /// Deletes partial uploads not written to for longer than `max_age`, except those of
    /// uploads in progress, and gives their cost back. Returns the bytes freed, as the
    /// quota counts them.
    pub fn remove_stale_partials(&self, max_age: Duration) -> Result<u64> {
        // Errors name no user path: the staging area has none.
        let staging_path = VirtualPath::root();
        let now = SystemTime::now();
        // Held throughout, so no upload can start on a partial while we delete it.
        let uploads = lock(&self.state.uploads);
        let live: HashSet<&str> = uploads.values().map(String::as_str).collect();
        let mut freed = 0;
        for staged in self.backend.staged()? {
            let staged = staged?;
            if live.contains(staged.name.as_str()) {
                continue;
            }
            if now.duration_since(staged.modified).unwrap_or_default() <= max_age {
                continue;
            }
            if self
                .backend
                .remove_staged(&staged.name)
                .map_err(at(&staging_path))?
            {
                self.state.ledger.release_entry(file_cost(staged.size));
                freed += file_cost(staged.size);
            }
        }
        Ok(freed)
    }

    /// Deletes the partials of `path` other than `keep`, and gives their space back.
    ///
    /// They are earlier versions of the file, at another size, that can never resume
    /// into this upload; left alone they would hold quota, hidden from the user, until
    /// they aged out. The caller holds the path's busy mark, so no upload is writing them.
    fn discard_other_sizes(&self, path: &VirtualPath, keep: &str) -> Result<()> {
        let prefix = partial_prefix(path);
        for staged in self.backend.staged()? {
            let staged = staged?;
            let other_size = staged
                .name
                .strip_prefix(&prefix)
                .is_some_and(|size| size.parse::<u64>().is_ok());
            if !other_size || staged.name == keep {
                continue;
            }
            // `false`: the cleanup of stale partials took it first, and gave its space
            // back.
            if self.backend.remove_staged(&staged.name).map_err(at(path))? {
                self.state.ledger.release_entry(file_cost(staged.size));
            }
        }
        Ok(())
    }
}

impl Drop for Upload {
    /// What a backend keeps of an interrupted upload may be less than was written (an
    /// object store keeps whole parts, not the bytes after the last one): the booking
    /// of the bytes it lost is given back, so a resume from what it kept counts right.
    fn drop(&mut self) {
        if let Ok(kept) = self.file.held()
            && kept < self.written
        {
            self.home
                .state
                .ledger
                .release(file_cost(self.written) - file_cost(kept));
        }
    }
}

impl Upload {
    /// Bytes of an earlier attempt the server held when this upload began.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// The MD5 of those held bytes, for the client to compare with its own prefix.
    pub fn prefix_md5(&self) -> Md5Digest {
        self.prefix_md5
    }

    /// The announced size of the whole file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes in the partial now.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn path(&self) -> &VirtualPath {
        &self.path
    }

    /// Where the client's data starts: what the partial holds (resume), or 0 (start over,
    /// discarding it). Anything else is [`StorageError::BadOffset`].
    pub fn start_from(&mut self, start: u64) -> Result<()> {
        if start == self.written {
            return Ok(());
        }
        if start != 0 {
            return Err(StorageError::BadOffset {
                path: self.path.clone(),
                offset: start,
                held: self.written,
            });
        }
        self.file.truncate(0).map_err(at(&self.path))?;
        // The discarded bytes are needed again for the new data: keep them booked.
        self.reservation.reclaim(file_cost(self.written));
        self.written = 0;
        *self.hasher = Md5::new();
        Ok(())
    }

    /// Sets the permission bits the file is published with, on the partial itself: by
    /// path after the publish they could land on whatever took the name meanwhile. Only
    /// `0o777` is honoured, as for [`HomeDir::set_permissions`].
    pub fn set_permissions(&self, mode: u32) -> Result<()> {
        self.file
            .set_permissions(mode & 0o777)
            .map_err(at(&self.path))
    }

    /// Appends `data` to the partial. More than the announced size in all is refused.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        let end = self.written.saturating_add(data.len() as u64);
        if end > self.size {
            return Err(StorageError::SizeMismatch {
                path: self.path.clone(),
                size: self.size,
                received: end,
            });
        }
        // A node cut off from a cluster's shared ledger writes nothing more.
        self.reservation.check_writable()?;
        if let Err(e) = self.file.write_at(self.written, data) {
            // Cut off any part of `data` that landed, so the partial stays what the hasher
            // has seen; if even that fails, a resume re-reads the partial and still agrees.
            let _ = self.file.truncate(self.written);
            return Err(StorageError::from_io(&self.path, e));
        }
        self.hasher.update(data);
        // Within the reservation (`end <= size`), so this cannot be refused.
        self.reservation
            .commit(file_cost(end) - file_cost(self.written))?;
        self.written = end;
        Ok(())
    }

    /// Verifies the whole file against `expected` and publishes it atomically onto the
    /// target, giving back the space of a file it replaces. On a mismatch the partial is
    /// deleted and nothing is published.
    pub fn finish(self, expected: Md5Digest) -> Result<Md5Digest> {
        self.publish(expected)
    }

    /// [`Upload::finish`] without consuming the upload, so a caller that cannot resume
    /// can still delete the partial when publishing fails.
    fn publish(&self, expected: Md5Digest) -> Result<Md5Digest> {
        if self.written != self.size {
            return Err(StorageError::SizeMismatch {
                path: self.path.clone(),
                size: self.size,
                received: self.written,
            });
        }
        let actual = Md5Digest::from_hasher(*self.hasher.clone());
        let ledger = &self.home.state.ledger;
        if actual != expected {
            match self.home.backend.remove_staged(&self.partial) {
                Ok(true) => ledger.release_entry(file_cost(self.written)),
                Ok(false) => {}
                Err(e) => tracing::warn!(path = %self.path, error = %e,
                    "could not delete a partial upload that failed its checksum"),
            }
            return Err(StorageError::Checksum {
                path: self.path.clone(),
                expected,
                actual,
            });
        }
        self.file.sync().map_err(at(&self.path))?;
        let _sizes = self.home.state.lock_sizes();
        let published = self.file.publish(&self.path, Replace::Allow)?;
        if let Some(replaced) = published.replaced {
            ledger.release_entry(replaced.cost());
        }
        // Reported, though the file is already published: the client then asks again
        // and finds it up to date.
        published.durable.map_err(at(&self.path))?;
        Ok(actual)
    }

    /// Publishes the upload without comparing a checksum, for protocols that carry none
    /// and cannot resume (SCP): all announced bytes must have arrived. Otherwise as
    /// [`Upload::finish`], except that a publish that fails (the rename, say) deletes
    /// the partial and gives its space back, as [`Upload::abandon`]: nothing could
    /// resume it.
    pub fn publish_unverified(self) -> Result<()> {
        let actual = Md5Digest::from_hasher(*self.hasher.clone());
        let Err(err) = self.publish(actual) else {
            return Ok(());
        };
        let path = self.path.clone();
        if let Err(e) = self.abandon() {
            tracing::warn!(path = %path, error = %e, "could not delete a partial upload that failed to publish");
        }
        Err(err)
    }

    /// Deletes the partial and gives its space back: for an upload that can never resume
    /// (SCP has no resume), so that a failure leaves nothing behind.
    pub fn abandon(self) -> Result<()> {
        let removed = self
            .home
            .backend
            .remove_staged(&self.partial)
            .map_err(at(&self.path))?;
        if !removed {
            return Err(StorageError::NotFound {
                path: self.path.clone(),
            });
        }
        self.home
            .state
            .ledger
            .release_entry(file_cost(self.written));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_support::{Fixture, fixture, vp};
    use crate::storage::{HomeDir, Usage};
    use std::sync::Barrier;

    fn ready(start: Result<UploadStart>) -> Upload {
        match start.unwrap() {
            UploadStart::Ready(upload) => upload,
            UploadStart::UpToDate => panic!("unexpectedly up to date"),
        }
    }

    fn upload(home: &HomeDir, path: &str, data: &[u8]) -> Result<Md5Digest> {
        let mut up = ready(home.begin_upload(&vp(path), data.len() as u64, None));
        up.start_from(0)?;
        up.write(data)?;
        up.finish(Md5Digest::of(data))
    }

    fn staged(f: &Fixture) -> Vec<String> {
        match std::fs::read_dir(f.staging()) {
            Ok(dir) => dir
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    #[test]
    fn publishes_a_verified_upload() {
        let f = fixture(100_000);
        let h = &f.home;
        let data = b"hello\n";
        let mut up = ready(h.begin_upload(&vp("/hello.txt"), 6, None));
        assert_eq!((up.held(), up.size(), up.written()), (0, 6, 0));
        assert_eq!(up.prefix_md5(), Md5Digest::empty());
        assert_eq!(up.path(), &vp("/hello.txt"));
        assert_eq!(
            h.usage(),
            Usage {
                used: 0,
                reserved: 4096,
                limit: 100_000
            }
        );
        up.start_from(0).unwrap();
        up.write(b"hel").unwrap();
        // A reader never sees a half-written file under the final name.
        assert!(matches!(
            h.stat(&vp("/hello.txt")),
            Err(StorageError::NotFound { .. })
        ));
        up.write(b"lo\n").unwrap();
        assert_eq!(
            h.usage(),
            Usage {
                used: 4096,
                reserved: 0,
                limit: 100_000
            }
        );
        let digest = up.finish(Md5Digest::of(data)).unwrap();
        assert_eq!(digest.to_string(), "b1946ac92492d2347c6235b4d2611184");
        assert_eq!(std::fs::read(f.real("hello.txt")).unwrap(), data);
        assert_eq!(
            h.usage(),
            Usage {
                used: 4096,
                reserved: 0,
                limit: 100_000
            }
        );
        assert!(staged(&f).is_empty());

        // Again, with the MD5 up front: nothing to send.
        let again = h.begin_upload(&vp("/hello.txt"), 6, Some(digest)).unwrap();
        assert!(matches!(again, UploadStart::UpToDate));
        // Same size, other content: a real upload.
        let other = Md5Digest::of(b"HELLO\n");
        ready(h.begin_upload(&vp("/hello.txt"), 6, Some(other)));
    }

    #[test]
    fn an_unverified_upload_publishes_and_an_abandoned_one_leaves_nothing() {
        let f = fixture(1 << 20);
        let mut up = ready(f.home.begin_upload(&vp("/f"), 5, None));
        up.write(b"hello").unwrap();
        up.publish_unverified().unwrap();
        assert_eq!(std::fs::read(f.real("f")).unwrap(), b"hello");

        let mut up = ready(f.home.begin_upload(&vp("/g"), 50, None));
        up.write(&[1; 20]).unwrap();
        up.abandon().unwrap();
        assert!(staged(&f).is_empty());
        // Only the published file is left: one block, and one entry.
        assert_eq!(
            f.home.usage(),
            Usage {
                used: 4096,
                reserved: 0,
                limit: 1 << 20
            }
        );
        assert_eq!(f.home.entries().count, 1);
        // Short of its size, nothing is published.
        let mut up = ready(f.home.begin_upload(&vp("/h"), 5, None));
        up.write(b"hel").unwrap();
        assert!(matches!(
            up.publish_unverified(),
            Err(StorageError::SizeMismatch { .. })
        ));
        assert!(matches!(
            f.home.stat(&vp("/h")),
            Err(StorageError::NotFound { .. })
        ));
    }

    #[test]
    fn an_empty_file_uploads() {
        let f = fixture(0);
        assert_eq!(upload(&f.home, "/empty", b"").unwrap(), Md5Digest::empty());
        assert_eq!(f.home.stat(&vp("/empty")).unwrap().size, 0);
    }

    #[test]
    fn overwriting_gives_the_old_space_back() {
        let f = fixture(8192);
        upload(&f.home, "/f", &[1; 50]).unwrap();
        // Each costs a block, and both fit; the old one is given back once the new file is
        // published.
        upload(&f.home, "/f", &[2; 40]).unwrap();
        assert_eq!(
            f.home.usage(),
            Usage {
                used: 4096,
                reserved: 0,
                limit: 8192
            }
        );
        assert_eq!(std::fs::read(f.real("f")).unwrap(), [2; 40]);
    }

    #[test]
    fn a_handle_on_a_file_an_upload_replaced_books_nothing() {
        let f = fixture(8192);
        upload(&f.home, "/f", &[1; 50]).unwrap();
        let write = crate::storage::OpenOptions {
            write: true,
            ..Default::default()
        };
        let old = f.home.open(&vp("/f"), write).unwrap();
        upload(&f.home, "/f", &[2; 40]).unwrap();
        assert!(matches!(old.set_len(0), Err(StorageError::Deleted { .. })));
        assert!(matches!(
            old.write_at(50, &[3; 10]),
            Err(StorageError::Deleted { .. })
        ));
        assert_eq!(f.home.usage().used, 4096);
        assert_eq!(f.restart(100).usage().used, 4096);
    }

    #[test]
    fn resumes_from_what_the_server_holds() {
        let f = fixture(100_000);
        let h = &f.home;
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut up = ready(h.begin_upload(&vp("/f"), 10_000, None));
        up.start_from(0).unwrap();
        up.write(&data[..3000]).unwrap();
        drop(up); // the connection broke
        // 3000 bytes cost one block; the rest of the promise went back.
        assert_eq!(
            h.usage(),
            Usage {
                used: 4096,
                reserved: 0,
                limit: 100_000
            }
        );
        assert!(matches!(
            h.stat(&vp("/f")),
            Err(StorageError::NotFound { .. })
        ));

        let mut up = ready(h.begin_upload(&vp("/f"), 10_000, Some(Md5Digest::of(&data))));
        assert_eq!((up.held(), up.written()), (3000, 3000));
        assert_eq!(up.prefix_md5(), Md5Digest::of(&data[..3000]));
        assert_eq!(
            h.usage(),
            Usage {
                used: 4096,
                reserved: 8192,
                limit: 100_000
            }
        );
        assert!(matches!(
            up.start_from(1000),
            Err(StorageError::BadOffset {
                offset: 1000,
                held: 3000,
                ..
            })
        ));
        up.start_from(3000).unwrap();
        up.write(&data[3000..]).unwrap();
        up.finish(Md5Digest::of(&data)).unwrap();
        assert_eq!(std::fs::read(f.real("f")).unwrap(), data);
        assert_eq!(
            h.usage(),
            Usage {
                used: 12_288,
                reserved: 0,
                limit: 100_000
            }
        );
        assert_eq!(f.restart(100_000).usage().used, 12_288);
    }

    #[test]
    fn starts_over_when_the_prefix_differs() {
        let f = fixture(4096);
        let h = &f.home;
        let mut up = ready(h.begin_upload(&vp("/f"), 60, None));
        up.write(&[b'x'; 40]).unwrap();
        drop(up);
        let mut up = ready(h.begin_upload(&vp("/f"), 60, None));
        assert_eq!(up.held(), 40);
        up.start_from(0).unwrap();
        assert_eq!(up.written(), 0);
        // The discarded bytes stay booked for the new data: the total is unchanged.
        assert_eq!(
            h.usage(),
            Usage {
                used: 0,
                reserved: 4096,
                limit: 4096
            }
        );
        up.write(&[b'y'; 60]).unwrap();
        up.finish(Md5Digest::of(&[b'y'; 60])).unwrap();
        assert_eq!(std::fs::read(f.real("f")).unwrap(), [b'y'; 60]);
        assert_eq!(
            h.usage(),
            Usage {
                used: 4096,
                reserved: 0,
                limit: 4096
            }
        );
    }

    #[test]
    fn a_checksum_mismatch_publishes_nothing() {
        let f = fixture(100_000);
        let h = &f.home;
        upload(h, "/f", b"old").unwrap();
        let mut up = ready(h.begin_upload(&vp("/f"), 5, None));
        up.write(b"fresh").unwrap();
        let err = up.finish(Md5Digest::of(b"other")).unwrap_err();
        assert!(matches!(err, StorageError::Checksum { .. }));
        assert!(
            err.to_string()
                .starts_with("checksum mismatch for /f: expected ")
        );
        assert_eq!(std::fs::read(f.real("f")).unwrap(), b"old");
        assert!(staged(&f).is_empty());
        assert_eq!(
            h.usage(),
            Usage {
                used: 4096,
                reserved: 0,
                limit: 100_000
            }
        );
    }

    #[test]
    fn sizes_are_held_to_what_was_announced() {
        let f = fixture(100_000);
        let mut up = ready(f.home.begin_upload(&vp("/f"), 4, None));
        assert!(matches!(
            up.write(b"12345"),
            Err(StorageError::SizeMismatch {
                size: 4,
                received: 5,
                ..
            })
        ));
        up.write(b"123").unwrap();
        assert!(matches!(
            up.finish(Md5Digest::of(b"123")),
            Err(StorageError::SizeMismatch {
                size: 4,
                received: 3,
                ..
            })
        ));
        assert!(matches!(
            f.home.stat(&vp("/f")),
            Err(StorageError::NotFound { .. })
        ));
    }

    #[test]
    fn a_quota_refusal_publishes_nothing_and_changes_no_usage() {
        let f = fixture(12_288);
        let h = &f.home;
        upload(h, "/a", &[0; 8000]).unwrap();
        let err = h.begin_upload(&vp("/b"), 4097, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "quota exceeded: need 8192 bytes, used 8192 of 12288 bytes"
        );
        assert!(matches!(
            h.stat(&vp("/b")),
            Err(StorageError::NotFound { .. })
        ));
        assert!(staged(&f).is_empty());
        assert_eq!(
            h.usage(),
            Usage {
                used: 8192,
                reserved: 0,
                limit: 12_288
            }
        );
        // Nor is the path left busy.
        ready(h.begin_upload(&vp("/b"), 4096, None));
    }

    #[test]
    fn concurrent_uploads_cannot_together_pass_the_quota() {
        let f = fixture(8192);
        let barrier = Barrier::new(2);
        let results: Vec<_> = std::thread::scope(|s| {
            let threads: Vec<_> = ["/one", "/two"]
                .into_iter()
                .map(|name| {
                    // Two sessions of the same user: separate HomeDirs, one ledger.
                    let home = f.storage.home("alice", 8192, None).unwrap();
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        let up = home.begin_upload(&vp(name), 5000, None);
                        barrier.wait(); // keep any reservation until both have tried
                        up.map(drop)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(StorageError::Quota(_))))
        );
        assert_eq!(
            f.home.usage(),
            Usage {
                used: 0,
                reserved: 0,
                limit: 8192
            }
        );
    }

    #[test]
    fn one_upload_per_path_at_a_time() {
        let f = fixture(100_000);
        let h = &f.home;
        let first = ready(h.begin_upload(&vp("/f"), 10, None));
        let other_session = f.storage.home("alice", 100_000, None).unwrap();
        for size in [10, 20] {
            assert!(matches!(
                other_session.begin_upload(&vp("/f"), size, None),
                Err(StorageError::Busy { .. })
            ));
        }
        ready(h.begin_upload(&vp("/g"), 10, None));
        drop(first);
        ready(other_session.begin_upload(&vp("/f"), 10, None));
    }

    #[test]
    fn refuses_bad_targets() {
        let f = fixture(100_000);
        f.plant_links();
        let h = &f.home;
        h.mkdir(&vp("/dir")).unwrap();
        upload(h, "/file", b"x").unwrap();
        let refused = |path: &str| h.begin_upload(&vp(path), 1, None).map(drop).unwrap_err();
        assert!(matches!(refused("/"), StorageError::IsADirectory { .. }));
        assert!(matches!(refused("/dir"), StorageError::IsADirectory { .. }));
        assert!(matches!(refused("/nodir/f"), StorageError::NotFound { .. }));
        assert!(matches!(
            refused("/file/f"),
            StorageError::NotADirectory { .. }
        ));
        for link in Fixture::ESCAPES {
            assert!(
                matches!(refused(link), StorageError::Denied { .. }),
                "{link}"
            );
            assert!(
                matches!(refused(&format!("{link}/new")), StorageError::Denied { .. }),
                "{link}"
            );
        }
        assert_eq!(
            std::fs::read_dir(f.tmp.path().join("secret"))
                .unwrap()
                .count(),
            1
        );
        assert_eq!(
            std::fs::read(f.tmp.path().join("secret/s.txt")).unwrap(),
            b"secret"
        );
        // Through a link that stays inside, the upload lands where the link leads.
        upload(h, "/inside/up.txt", b"in").unwrap();
        assert_eq!(std::fs::read(f.real("docs/up.txt")).unwrap(), b"in");
    }

    #[test]
    fn partials_count_after_a_restart() {
        let f = fixture(100_000);
        upload(&f.home, "/done", &[0; 25]).unwrap();
        let mut up = ready(f.home.begin_upload(&vp("/half"), 100, None));
        up.write(&[1; 40]).unwrap();
        drop(up);
        let before = f.home.usage();
        assert_eq!(
            before,
            Usage {
                used: 8192,
                reserved: 0,
                limit: 100_000
            }
        );
        let after = f.restart(100_000);
        assert_eq!(after.usage(), before);
        // And the restarted server offers to resume it.
        assert_eq!(
            ready(after.begin_upload(&vp("/half"), 100, None)).held(),
            40
        );
    }

    #[test]
    fn an_overlong_partial_is_discarded() {
        let f = fixture(100_000);
        std::fs::write(f.staging().join(partial_name(&vp("/f"), 5)), [0; 9]).unwrap();
        let h = f.restart(100_000);
        assert_eq!(h.usage().used, 4096);
        let up = ready(h.begin_upload(&vp("/f"), 5, None));
        assert_eq!(up.held(), 0);
        assert_eq!(
            h.usage(),
            Usage {
                used: 0,
                reserved: 4096,
                limit: 100_000
            }
        );
    }

    #[test]
    fn a_partial_at_another_size_is_discarded_when_the_path_is_uploaded_again() {
        let f = fixture(8192);
        let h = &f.home;
        // The file was 900 bytes when the first upload broke off after 800.
        let mut up = ready(h.begin_upload(&vp("/f"), 900, None));
        up.write(&[1; 800]).unwrap();
        drop(up);
        // Another file's partial stays, whatever its size.
        let mut other = ready(h.begin_upload(&vp("/g"), 100, None));
        other.write(&[2; 50]).unwrap();
        drop(other);
        assert_eq!(h.usage().used, 8192);

        // Now 901 bytes: the 800 left at 900 can never resume into it, and must not keep
        // holding quota where the user cannot see or delete them.
        let up = ready(h.begin_upload(&vp("/f"), 901, None));
        assert_eq!(up.held(), 0);
        assert_eq!(
            h.usage(),
            Usage {
                used: 4096,
                reserved: 4096,
                limit: 8192
            }
        );
        let mut left = staged(&f);
        left.sort();
        let mut expected = vec![partial_name(&vp("/f"), 901), partial_name(&vp("/g"), 100)];
        expected.sort();
        assert_eq!(left, expected);
        drop(up);

        // The partial at the size asked for is still resumed.
        let up = ready(h.begin_upload(&vp("/g"), 100, None));
        assert_eq!(up.held(), 50);
        drop(up);
        upload(h, "/f", &[3; 901]).unwrap();
        assert_eq!(staged(&f), [partial_name(&vp("/g"), 100)]);
        assert_eq!(h.usage().used, 8192);
        assert_eq!(f.restart(1000).usage().used, 8192);
    }

    #[test]
    fn stale_partials_are_removed_unless_live() {
        let f = fixture(100_000);
        let h = &f.home;
        for (name, len) in [("/old", 30), ("/live", 20)] {
            let mut up = ready(h.begin_upload(&vp(name), 100, None));
            up.write(&vec![0; len]).unwrap();
        }
        let live = ready(h.begin_upload(&vp("/live"), 100, None));
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        for name in staged(&f) {
            let file = std::fs::File::options()
                .write(true)
                .open(f.staging().join(name))
                .unwrap();
            file.set_modified(long_ago).unwrap();
        }
        assert_eq!(
            h.remove_stale_partials(Duration::from_secs(7200)).unwrap(),
            0
        );
        assert_eq!(
            h.remove_stale_partials(Duration::from_secs(60)).unwrap(),
            4096
        );
        assert_eq!(staged(&f), [partial_name(&vp("/live"), 100)]);
        assert_eq!(h.usage().used, 4096);
        drop(live);
        assert_eq!(
            h.remove_stale_partials(Duration::from_secs(60)).unwrap(),
            4096
        );
        assert_eq!(
            h.usage(),
            Usage {
                used: 0,
                reserved: 0,
                limit: 100_000
            }
        );
    }

    #[test]
    fn max_files_refuses_new_uploads_but_not_replacements() {
        let f = fixture(1 << 20);
        let h = f.storage.home("alice", 1 << 20, Some(2)).unwrap();
        upload(&h, "/a", b"a").unwrap();
        upload(&h, "/b", b"b").unwrap();
        let err = h.begin_upload(&vp("/c"), 1, None).map(drop).unwrap_err();
        assert_eq!(
            err.to_string(),
            "file limit reached: 2 of 2 files, folders and links"
        );
        assert!(staged(&f).is_empty());
        // The partial of a replacement counts while it exists, and the replaced file's
        // entry comes back when it is published.
        let mut up = ready(h.begin_upload(&vp("/a"), 3, None));
        assert_eq!(h.entries().count, 3);
        up.write(b"new").unwrap();
        up.finish(Md5Digest::of(b"new")).unwrap();
        assert_eq!(h.entries().count, 2);
        assert_eq!(h.usage().used, 8192);
        f.storage.forget("alice");
        let rescanned = f.storage.home("alice", 1 << 20, Some(2)).unwrap();
        assert_eq!(
            (rescanned.usage().used, rescanned.entries().count),
            (8192, 2)
        );
    }

    #[test]
    fn an_unverified_upload_that_cannot_be_published_leaves_nothing() {
        let f = fixture(1 << 20);
        let h = &f.home;
        let mut up = ready(h.begin_upload(&vp("/t"), 5, None));
        up.write(b"hello").unwrap();
        // A folder took the name meanwhile: the rename fails.
        h.mkdir(&vp("/t")).unwrap();
        assert!(up.publish_unverified().is_err());
        assert!(staged(&f).is_empty());
        assert_eq!((h.usage().used, h.usage().reserved), (4096, 0));
        assert_eq!(h.entries().count, 1);
        // A verified upload keeps its partial for a resume, as before.
        let mut up = ready(h.begin_upload(&vp("/u"), 5, None));
        up.write(b"hello").unwrap();
        h.mkdir(&vp("/u")).unwrap();
        assert!(up.finish(Md5Digest::of(b"hello")).is_err());
        assert_eq!(staged(&f).len(), 1);
    }
    #[test]
    fn publishes_into_nested_folders_and_the_root() {
        let f = fixture(1 << 20);
        let h = &f.home;
        h.mkdir(&vp("/d")).unwrap();
        h.mkdir(&vp("/d/e")).unwrap();
        upload(h, "/d/e/deep", b"deep").unwrap();
        upload(h, "/top", b"top").unwrap();
        // Replacing goes through the same rename and the same folder flush.
        upload(h, "/d/e/deep", b"deeper").unwrap();
        assert_eq!(std::fs::read(f.real("d/e/deep")).unwrap(), b"deeper");
        assert_eq!(std::fs::read(f.real("top")).unwrap(), b"top");
        assert!(staged(&f).is_empty());
        assert_eq!(h.usage().used, 4 * 4096);
    }
}
