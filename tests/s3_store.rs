//! The object-store backend under the storage core, against a real S3 server
//! (`s3s-fs`): a clear refusal of a bad credential at start, the quota measured by
//! listing, uploads that appear only when verified and resume after a restart, and
//! stale uploads aborted.

use std::time::Duration;

use rsftp::protocol::Md5Digest;
use rsftp::storage::object::{ObjectStoreConfig, PART_SIZE};
use rsftp::storage::{HomeDir, Storage, StorageError, Upload, UploadStart, VirtualPath};

use crate::s3_ssh::store_config;
use crate::s3_util::{BUCKET, S3Server};
use crate::util::data;

fn vp(s: &str) -> VirtualPath {
    VirtualPath::resolve(&VirtualPath::root(), s).unwrap()
}

fn ready(start: UploadStart) -> Upload {
    match start {
        UploadStart::Ready(upload) => upload,
        UploadStart::UpToDate => panic!("unexpectedly up to date"),
    }
}

fn open(s3: &S3Server, state: &std::path::Path) -> Storage {
    Storage::open_object(state, &store_config(s3)).unwrap()
}

fn home(storage: &Storage) -> HomeDir {
    storage.home("alice", 1 << 30, None).unwrap()
}

#[test]
fn a_refused_credential_or_a_missing_bucket_stops_the_start() {
    let s3 = S3Server::start();
    let state = tempfile::tempdir().unwrap();
    let wrong = ObjectStoreConfig {
        secret_access_key: Some("not-the-secret".to_owned()),
        ..store_config(&s3)
    };
    let err = Storage::open_object(state.path(), &wrong).unwrap_err();
    let chain = format!("{:?}", err);
    assert!(
        chain.contains("refused") || chain.contains("403"),
        "{chain}"
    );
    let no_bucket = ObjectStoreConfig {
        bucket: "no-such-bucket".to_owned(),
        ..store_config(&s3)
    };
    assert!(Storage::open_object(state.path(), &no_bucket).is_err());
    // The right one opens.
    open(&s3, state.path());
}

#[test]
fn usage_is_measured_by_listing_the_home() {
    let s3 = S3Server::start();
    let bucket = s3.data.path().join(BUCKET);
    std::fs::create_dir_all(bucket.join("team/alice/docs")).unwrap();
    std::fs::write(bucket.join("team/alice/docs/a"), [1u8; 5000]).unwrap();
    std::fs::write(bucket.join("team/alice/b"), [2u8; 10]).unwrap();
    std::fs::write(bucket.join("team/alice/docs/.rsftp-folder"), b"").unwrap();
    std::fs::create_dir_all(bucket.join("team/bob")).unwrap();
    std::fs::write(bucket.join("team/bob/c"), [3u8; 100_000]).unwrap();
    let state = tempfile::tempdir().unwrap();
    let storage = open(&s3, state.path());
    let h = home(&storage);
    // 5000 bytes take two blocks, 10 bytes one, the marker one; bob's are not alice's.
    assert_eq!(h.usage().used, 4 * 4096);
    assert_eq!(h.entries().count, 3);
    h.remove_file(&vp("/b")).unwrap();
    assert_eq!(h.usage().used, 3 * 4096);
    assert!(matches!(
        h.remove_file(&vp("/b")),
        Err(StorageError::NotFound { .. })
    ));
}

#[test]
fn an_upload_resumes_after_a_restart_and_appears_only_when_verified() {
    let s3 = S3Server::start();
    let state = tempfile::tempdir().unwrap();
    let size = 2 * PART_SIZE as usize + 1234;
    let body = data(size, 7);
    let path = vp("/big.bin");
    {
        let storage = open(&s3, state.path());
        let h = home(&storage);
        let mut up = ready(h.begin_upload(&path, size as u64, None).unwrap());
        assert_eq!(up.held(), 0);
        up.write(&body[..PART_SIZE as usize + 100]).unwrap();
        // The part sent and the bytes waiting count against the quota.
        assert!(h.usage().used + h.usage().reserved >= size as u64);
        assert!(matches!(h.stat(&path), Err(StorageError::NotFound { .. })));
        drop(up);
    }
    assert!(s3.object("team/alice/big.bin").is_none());

    // A new process: the saved state resumes at the part boundary.
    let storage = open(&s3, state.path());
    let h = home(&storage);
    assert_eq!(
        h.usage().used,
        PART_SIZE,
        "the part held is counted at start"
    );
    let mut up = ready(h.begin_upload(&path, size as u64, None).unwrap());
    assert_eq!(up.held(), PART_SIZE);
    assert_eq!(up.prefix_md5(), Md5Digest::of(&body[..PART_SIZE as usize]));
    assert!(matches!(
        up.start_from(5),
        Err(StorageError::BadOffset { .. })
    ));
    up.start_from(PART_SIZE).unwrap();
    up.write(&body[PART_SIZE as usize..]).unwrap();
    // A wrong MD5 aborts: nothing is published, and nothing is left to resume.
    let wrong = Md5Digest::of(b"other");
    assert!(matches!(
        up.finish(wrong),
        Err(StorageError::Checksum { .. })
    ));
    assert!(s3.object("team/alice/big.bin").is_none());
    assert_eq!(h.usage().used, 0);

    let mut up = ready(h.begin_upload(&path, size as u64, None).unwrap());
    assert_eq!(up.held(), 0);
    up.write(&body).unwrap();
    up.finish(Md5Digest::of(&body)).unwrap();
    assert_eq!(s3.object("team/alice/big.bin").unwrap(), body);
    assert_eq!(h.usage().used, (size as u64).div_ceil(4096) * 4096);
    // With its MD5 known, a second put of the same file has nothing to send.
    let again = h
        .begin_upload(&path, size as u64, Some(Md5Digest::of(&body)))
        .unwrap();
    assert!(matches!(again, UploadStart::UpToDate));
    // An empty file is one PUT.
    let mut up = ready(h.begin_upload(&vp("/empty"), 0, None).unwrap());
    up.start_from(0).unwrap();
    up.finish(Md5Digest::empty()).unwrap();
    assert_eq!(s3.object("team/alice/empty").unwrap(), b"");
}

#[test]
fn a_stale_upload_is_aborted_and_gives_its_space_back() {
    let s3 = S3Server::start();
    let state = tempfile::tempdir().unwrap();
    let storage = open(&s3, state.path());
    let h = home(&storage);
    let size = PART_SIZE as usize + 10;
    let mut up = ready(h.begin_upload(&vp("/f"), size as u64, None).unwrap());
    up.write(&data(PART_SIZE as usize, 1)).unwrap();
    drop(up);
    assert_eq!(h.usage().used, PART_SIZE);
    std::thread::sleep(Duration::from_millis(1100));
    let freed = h.remove_stale_partials(Duration::ZERO).unwrap();
    assert_eq!(freed, PART_SIZE);
    assert_eq!(h.usage().used, 0);
    let up = ready(h.begin_upload(&vp("/f"), size as u64, None).unwrap());
    assert_eq!(up.held(), 0, "nothing left to resume");
}
