//! The object-store backend against a real S3 server (`s3s-fs`): folders as markers and
//! prefixes, listings page by page, moves, ranged reads, and multipart uploads that
//! appear only when complete and resume from their saved state.

use std::sync::Arc;

use rsftp::protocol::Md5Digest;
use rsftp::storage::object::{
    Bucket, DiskStateStore, Found, ListCursor, ObjectHome, ObjectStoreConfig, PART_SIZE,
    UploadStateStore,
};
use rsftp::storage::{StorageError, VirtualPath};

use crate::s3_util::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};
use crate::util::data;

fn vp(s: &str) -> VirtualPath {
    VirtualPath::resolve(&VirtualPath::root(), s).unwrap()
}

pub fn config(s3: &S3Server) -> ObjectStoreConfig {
    ObjectStoreConfig {
        bucket: BUCKET.to_owned(),
        prefix: "team".to_owned(),
        endpoint: Some(s3.endpoint()),
        region: Some("us-east-1".to_owned()),
        path_style: true,
    }
}

fn set_credentials() {
    // SAFETY of the test process: every test sets the same two values.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    }
}

fn home(s3: &S3Server, user: &str) -> ObjectHome {
    set_credentials();
    let bucket = Bucket::connect(&config(s3)).unwrap();
    ObjectHome::new(bucket, user).unwrap()
}

async fn names(home: &ObjectHome, path: &str) -> Vec<(String, bool)> {
    let mut cursor = ListCursor::default();
    let mut all = Vec::new();
    for _ in 0..1000 {
        match home.list_page(&vp(path), &mut cursor).await.unwrap() {
            Some(page) => all.extend(page.into_iter().map(|e| (e.name, e.is_dir))),
            None => return all,
        }
    }
    panic!("listing did not end");
}

#[tokio::test]
async fn folders_files_and_moves() {
    let s3 = S3Server::start();
    let h = home(&s3, "alice");
    Bucket::connect(&config(&s3))
        .unwrap()
        .check()
        .await
        .unwrap();

    assert!(names(&h, "/").await.is_empty());
    h.mkdir(&vp("/docs")).await.unwrap();
    assert_eq!(s3.keys(), vec!["team/alice/docs/.rsftp-folder".to_owned()]);
    assert!(matches!(
        h.find(&vp("/docs")).await.unwrap(),
        Found::Dir { .. }
    ));
    assert!(matches!(
        h.mkdir(&vp("/docs")).await,
        Err(StorageError::Exists { .. })
    ));
    assert!(matches!(
        h.mkdir(&vp("/nope/x")).await,
        Err(StorageError::NotFound { .. })
    ));

    let states: Arc<dyn UploadStateStore> =
        Arc::new(DiskStateStore::open(&s3.data.path().join("../rsftp-states-alice")).unwrap());
    let body = data(1000, 1);
    let mut up = h
        .begin_multipart(states.clone(), "alice", &vp("/docs/a.txt"), 1000, None)
        .await
        .unwrap();
    up.write(&body).await.unwrap();
    up.finish(Some(Md5Digest::of(&body))).await.unwrap();
    assert_eq!(s3.object("team/alice/docs/a.txt").unwrap(), body);
    assert_eq!(names(&h, "/").await, vec![("docs".to_owned(), true)]);
    assert_eq!(names(&h, "/docs").await, vec![("a.txt".to_owned(), false)]);
    assert_eq!(h.stat(&vp("/docs/a.txt")).await.unwrap().size, 1000);
    assert_eq!(
        &h.read_range(&vp("/docs/a.txt"), 10, 20).await.unwrap()[..],
        &body[10..30]
    );
    assert_eq!(
        h.read_range(&vp("/docs/a.txt"), 990, 100)
            .await
            .unwrap()
            .len(),
        10
    );
    assert!(
        h.read_range(&vp("/docs/a.txt"), 1000, 100)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(matches!(
        h.rmdir(&vp("/docs")).await,
        Err(StorageError::NotEmpty { .. })
    ));
    assert!(matches!(
        h.rename(&vp("/docs"), &vp("/papers")).await,
        Err(StorageError::Invalid { .. })
    ));
    assert!(
        h.list_page(&vp("/docs/a.txt/x"), &mut ListCursor::default())
            .await
            .is_err()
    );
    assert!(matches!(
        h.list_page(&vp("/docs/a.txt"), &mut ListCursor::default())
            .await,
        Err(StorageError::NotADirectory { .. })
    ));
    h.rename(&vp("/docs/a.txt"), &vp("/b.txt")).await.unwrap();
    assert_eq!(s3.object("team/alice/b.txt").unwrap(), body);
    assert!(s3.object("team/alice/docs/a.txt").is_none());
    // Emptied, the folder made by mkdir stays; an empty folder moves.
    assert_eq!(names(&h, "/docs").await, vec![]);
    h.rename(&vp("/docs"), &vp("/papers")).await.unwrap();
    assert_eq!(
        names(&h, "/").await,
        vec![("b.txt".to_owned(), false), ("papers".to_owned(), true)]
    );
    h.rmdir(&vp("/papers")).await.unwrap();
    assert!(matches!(
        h.rmdir(&vp("/papers")).await,
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        h.remove_file(&vp("/papers")).await,
        Err(StorageError::NotFound { .. })
    ));
    h.remove_file(&vp("/b.txt")).await.unwrap();
    assert!(names(&h, "/").await.is_empty());

    // Another user's home is another prefix.
    let bob = home(&s3, "bob");
    assert!(names(&bob, "/").await.is_empty());
}

#[tokio::test]
async fn a_multipart_upload_resumes_from_its_saved_state() {
    let s3 = S3Server::start();
    let h = home(&s3, "alice");
    let dir = tempfile::tempdir().unwrap();
    let states: Arc<dyn UploadStateStore> = Arc::new(DiskStateStore::open(dir.path()).unwrap());
    let size = 2 * PART_SIZE as usize + 1234;
    let body = data(size, 7);
    let path = vp("/big.bin");

    let mut up = h
        .begin_multipart(states.clone(), "alice", &path, size as u64, None)
        .await
        .unwrap();
    assert_eq!(up.held(), 0);
    up.write(&body[..PART_SIZE as usize + 100]).await.unwrap();
    drop(up);
    // Nothing under the key before completion.
    assert!(s3.object("team/alice/big.bin").is_none());
    assert_eq!(h.find(&path).await.unwrap(), Found::Nothing);

    // A new client (and a new state store, as after a restart) resumes at one part.
    let states: Arc<dyn UploadStateStore> = Arc::new(DiskStateStore::open(dir.path()).unwrap());
    let mut up = h
        .begin_multipart(states.clone(), "alice", &path, size as u64, None)
        .await
        .unwrap();
    assert_eq!(up.held(), PART_SIZE);
    assert_eq!(up.prefix_md5(), Md5Digest::of(&body[..PART_SIZE as usize]));
    assert!(matches!(
        up.start_from(5).await,
        Err(StorageError::BadOffset { .. })
    ));
    up.start_from(PART_SIZE).await.unwrap();
    up.write(&body[PART_SIZE as usize..]).await.unwrap();
    // A wrong MD5 aborts: nothing is published, and nothing is left to resume.
    let wrong = Md5Digest::of(b"other");
    assert!(matches!(
        up.finish(Some(wrong)).await,
        Err(StorageError::Checksum { .. })
    ));
    assert!(s3.object("team/alice/big.bin").is_none());
    assert!(states.list("alice").unwrap().is_empty());

    let mut up = h
        .begin_multipart(
            states.clone(),
            "alice",
            &path,
            size as u64,
            Some(Md5Digest::of(&body)),
        )
        .await
        .unwrap();
    assert_eq!(up.held(), 0);
    up.write(&body).await.unwrap();
    up.finish(Some(Md5Digest::of(&body))).await.unwrap();
    assert_eq!(s3.object("team/alice/big.bin").unwrap(), body);
    assert_eq!(
        h.stored_md5(&path).await.unwrap(),
        Some((size as u64, Md5Digest::of(&body)))
    );
    assert!(states.list("alice").unwrap().is_empty());
}
