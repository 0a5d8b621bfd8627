//! Directory listings that never hold a directory's entries all at once.
//!
//! A directory can hold hundreds of thousands of names, and a client can ask for many
//! listings at a time, so a listing is read from an open directory handle as it is
//! handed out:
//!
//! - [`DirStream`] yields entries in the order the filesystem keeps them, one `getdents`
//!   buffer at a time. SFTP's READDIR takes them in batches from it.
//! - [`SortedListing`] is for a reply that must give its count and byte order first (the
//!   rsftp `ls`): it keeps one compact record per name (the name, its type, size and
//!   time, about 20 bytes beyond the name) in a single buffer, never a whole [`Entry`].
//!
//! Both read the backend's listing ([`Backend::list`](super::Backend::list)), which on
//! disk describes entries relative to the listed directory's handle, itself opened
//! beneath the home, as every other access is.

use std::os::unix::ffi::OsStrExt;

use super::backend::Listing;
use super::{Entry, EntryKind, HomeDir, Result, VirtualPath};

/// The entries of one open directory, as the backend hands them out (on disk, one
/// `getdents` buffer at a time; on a store, one page at a time); without `.` and `..`.
pub struct DirStream {
    path: VirtualPath,
    entries: Listing,
}

impl std::fmt::Debug for DirStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirStream")
            .field("path", &self.path)
            .finish()
    }
}

impl HomeDir {
    /// Opens the directory `path` (following symbolic links that stay inside the home)
    /// to read its entries as they come.
    pub fn open_dir(&self, path: &VirtualPath) -> Result<DirStream> {
        Ok(DirStream {
            path: path.clone(),
            entries: self.backend.list(path)?,
        })
    }

    /// The entries of a directory sorted by name bytes, with symbolic links shown as
    /// links; or, for anything else, that one entry. See [`SortedListing`].
    pub fn sorted_listing(&self, path: &VirtualPath) -> Result<SortedListing> {
        let mut listing = SortedListing::default();
        if self.backend.stat(path)?.kind != EntryKind::Dir {
            let entry = self.lstat(path)?;
            let name = path.file_name().unwrap_or(path.as_str());
            listing.push(name.as_bytes(), &entry);
            return Ok(listing);
        }
        for entry in self.open_dir(path)? {
            let entry = entry?;
            listing.push(entry.name.as_bytes(), &entry);
        }
        let records = &listing.records;
        listing
            .order
            .sort_unstable_by(|&a, &b| record_name(records, a).cmp(record_name(records, b)));
        Ok(listing)
    }
}

impl DirStream {
    /// The directory, as the user named it.
    pub fn path(&self) -> &VirtualPath {
        &self.path
    }
}

impl Iterator for DirStream {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        self.entries.next()
    }
}

/// A directory's entries in byte order of their names, kept compactly: each is one
/// record in a single buffer (type, size, time, name), so a listing costs its names and
/// about 24 bytes more per entry.
#[derive(Debug, Default)]
pub struct SortedListing {
    records: Vec<u8>,
    /// Where each record starts, in name order.
    order: Vec<u32>,
}

/// One entry of a [`SortedListing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListedEntry<'a> {
    pub name: &'a [u8],
    pub kind: EntryKind,
    pub size: u64,
    pub mtime: i64,
}

/// Type (1), size (8), mtime (8), name length (2), then the name.
const HEADER: usize = 19;

fn record_name(records: &[u8], start: u32) -> &[u8] {
    let start = start as usize;
    let len = u16::from_be_bytes([records[start + 17], records[start + 18]]) as usize;
    &records[start + HEADER..start + HEADER + len]
}

fn kind_code(kind: EntryKind) -> u8 {
    match kind {
        EntryKind::Dir => 0,
        EntryKind::File => 1,
        EntryKind::Symlink => 2,
        EntryKind::Other => 3,
    }
}

fn kind_of(code: u8) -> EntryKind {
    match code {
        0 => EntryKind::Dir,
        1 => EntryKind::File,
        2 => EntryKind::Symlink,
        _ => EntryKind::Other,
    }
}

impl SortedListing {
    fn push(&mut self, name: &[u8], entry: &Entry) {
        // A file name is at most 255 bytes on every filesystem we serve, and a
        // listing of over 4 GiB of records is far beyond any directory's size.
        let (Ok(len), Ok(start)) = (u16::try_from(name.len()), u32::try_from(self.records.len()))
        else {
            return;
        };
        self.order.push(start);
        self.records.push(kind_code(entry.kind));
        self.records.extend_from_slice(&entry.size.to_be_bytes());
        self.records.extend_from_slice(&entry.mtime.to_be_bytes());
        self.records.extend_from_slice(&len.to_be_bytes());
        self.records.extend_from_slice(name);
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The bytes this listing holds, for a memory budget.
    pub fn held_bytes(&self) -> usize {
        self.records.capacity() + self.order.capacity() * 4
    }

    /// The entries, in byte order of their names.
    pub fn iter(&self) -> impl Iterator<Item = ListedEntry<'_>> + '_ {
        self.order.iter().map(|&start| {
            let at = start as usize;
            let word = |from: usize| {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&self.records[from..from + 8]);
                bytes
            };
            ListedEntry {
                name: record_name(&self.records, start),
                kind: kind_of(self.records[at]),
                size: u64::from_be_bytes(word(at + 1)),
                mtime: i64::from_be_bytes(word(at + 9)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::storage::StorageError;
    use crate::storage::test_support::{fixture, vp};

    #[test]
    fn a_stream_yields_every_entry_once() {
        let f = fixture(1 << 20);
        let real = f.real("");
        std::fs::create_dir(real.join("sub")).unwrap();
        // The old staging area's name is an ordinary name now.
        std::fs::create_dir_all(real.join(".rsftp-partial")).unwrap();
        for i in 0..1000 {
            std::fs::write(real.join(format!("f{i:04}")), b"x").unwrap();
        }
        std::os::unix::fs::symlink(".", real.join("self")).unwrap();
        let names: Vec<String> = f
            .home
            .open_dir(&VirtualPath::root())
            .unwrap()
            .map(|e| e.unwrap().name.into_string().unwrap())
            .collect();
        let unique: BTreeSet<&String> = names.iter().collect();
        assert_eq!(names.len(), 1003, "each entry once");
        assert_eq!(unique.len(), 1003);
        assert!(unique.contains(&"sub".to_owned()) && unique.contains(&"self".to_owned()));
        assert!(unique.contains(&".rsftp-partial".to_owned()));
        // Through the link to `.`, the home root again.
        let through_link: Vec<_> = f.home.open_dir(&vp("/self")).unwrap().collect();
        assert_eq!(through_link.len(), 1003);
        // A link is described as a link.
        let link = f
            .home
            .open_dir(&VirtualPath::root())
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.name == "self")
            .unwrap();
        assert_eq!(link.kind, EntryKind::Symlink);
    }

    #[test]
    fn a_stream_refuses_what_is_not_a_directory_inside_the_home() {
        let f = fixture(1 << 20);
        let real = f.real("");
        std::fs::write(real.join("file"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", real.join("out")).unwrap();
        assert!(matches!(
            f.home.open_dir(&vp("/file")),
            Err(StorageError::NotADirectory { .. })
        ));
        assert!(matches!(
            f.home.open_dir(&vp("/nope")),
            Err(StorageError::NotFound { .. })
        ));
        assert!(
            f.home.open_dir(&vp("/out")).is_err(),
            "a link out is refused"
        );
    }

    #[test]
    fn a_sorted_listing_is_in_byte_order_and_matches_list() {
        let f = fixture(1 << 20);
        let real = f.real("");
        for name in ["b", "a", "Z", "ä", "a b", "c"] {
            std::fs::write(real.join(name), name.as_bytes()).unwrap();
        }
        std::fs::create_dir(real.join("dir")).unwrap();
        let listing = f.home.sorted_listing(&VirtualPath::root()).unwrap();
        let list = f.home.list(&VirtualPath::root()).unwrap();
        assert_eq!(listing.len(), list.len());
        for (listed, entry) in listing.iter().zip(&list) {
            assert_eq!(listed.name, entry.name.as_bytes());
            assert_eq!((listed.kind, listed.size), (entry.kind, entry.size));
            assert_eq!(listed.mtime, entry.mtime);
        }
        assert!(listing.held_bytes() > 0);
        // A file lists as that one file.
        let one = f.home.sorted_listing(&vp("/a b")).unwrap();
        let only: Vec<_> = one.iter().collect();
        assert_eq!(only.len(), 1);
        assert_eq!((only[0].name, only[0].size), (&b"a b"[..], 3));
        assert!(matches!(
            f.home.sorted_listing(&vp("/nope")),
            Err(StorageError::NotFound { .. })
        ));
    }
}
