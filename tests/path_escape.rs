//! Property tests of confinement: no path a client can send leads out of the home.
//!
//! Inputs come from a seeded generator with a fixed number of iterations, so a failure
//! is the same on every run and the whole file stays within a few seconds: `..` runs,
//! absolute paths, NUL and other control bytes, very long names, non-UTF-8 bytes, the
//! staging area's names (now and before), and on disk, symbolic links planted behind the server's back,
//! pointing out, in, at each other (chains) and at themselves (loops).

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Component, Path};
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rsftp::protocol::Md5Digest;
use rsftp::storage::{HomeDir, LEGACY_STAGING_DIR, STAGING_ROOT, Storage, VirtualPath};

/// Bytes of the file outside the home; no file inside has this size.
const SECRET_LEN: usize = 7777;
/// Names that exist only outside alice's home.
const OUTSIDE_NAMES: [&str; 2] = ["outside-secret.txt", "bob-only.txt"];

/// One path component, from a pool weighted towards the ones that could escape.
fn component(rng: &mut StdRng, names: &[&str]) -> Vec<u8> {
    match rng.random_range(0..16) {
        0..=3 => b"..".to_vec(),
        4 => b".".to_vec(),
        5 => Vec::new(),
        6 => names[rng.random_range(0..names.len())].as_bytes().to_vec(),
        7 => names[rng.random_range(0..names.len())].as_bytes().to_vec(),
        8 => vec![b'n'; rng.random_range(250..=260)],
        9 => vec![b'L'; rng.random_range(1000..4100)],
        10 => {
            // NUL or another control byte, alone or inside a name.
            let control = [0u8, 1, b'\n', b'\r', b'\t', 0x1b, 0x7f][rng.random_range(0..7)];
            let mut name = b"x".to_vec();
            name.insert(rng.random_range(0..2), control);
            name
        }
        11 => vec![0xff, b'a', 0xc0, 0x80][..rng.random_range(1..=4)].to_vec(),
        12 => [LEGACY_STAGING_DIR, STAGING_ROOT][rng.random_range(0..2)]
            .as_bytes()
            .to_vec(),
        13 => [
            "...",
            ".. ",
            " ..",
            "\\..",
            "%2e%2e",
            "~",
            "..\u{2215}x",
            "é",
        ][rng.random_range(0..8)]
        .as_bytes()
        .to_vec(),
        _ => vec![b"abc"[rng.random_range(0..3)]],
    }
}

/// A path as a client might send it: absolute or not, components joined by one or more
/// slashes.
fn client_path(rng: &mut StdRng, names: &[&str]) -> Vec<u8> {
    let mut path = Vec::new();
    if rng.random_bool(0.4) {
        path.push(b'/');
    }
    for i in 0..rng.random_range(0..10) {
        if i > 0 {
            path.extend(std::iter::repeat_n(b'/', rng.random_range(1..3)));
        }
        path.extend(component(rng, names));
    }
    if rng.random_bool(0.1) {
        path.push(b'/');
    }
    path
}

/// What resolution must give, written independently of the code under test: a stack of
/// names, `..` popping and never passing the root. `None` for a refused path.
fn expected(cwd: &VirtualPath, input: &str) -> Option<String> {
    if input.chars().any(|c| c < ' ' || c == '\u{7f}') {
        return None;
    }
    let mut stack: Vec<&str> = if input.starts_with('/') {
        Vec::new()
    } else {
        cwd.as_str().split('/').filter(|c| !c.is_empty()).collect()
    };
    for part in input.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            name if name.len() > 255 => return None,
            name => stack.push(name),
        }
    }
    let path = format!("/{}", stack.join("/"));
    (path.len() <= 4096).then_some(path)
}

/// The invariants of every path that resolution lets through.
fn assert_confined(path: &VirtualPath, input: &[u8]) {
    let text = path.as_str();
    assert!(text.starts_with('/'), "{input:?} gave {text:?}");
    assert!(
        text == "/" || !text.ends_with('/'),
        "{input:?} gave {text:?}"
    );
    assert!(text.len() <= 4096, "{input:?}: {} bytes", text.len());
    assert!(
        !text.chars().any(char::is_control),
        "{input:?} gave {text:?}"
    );
    for name in text.split('/').skip(1).filter(|_| text != "/") {
        assert!(!matches!(name, "" | "." | ".."), "{input:?} gave {text:?}");
        assert!(
            name.len() <= 255,
            "{input:?} gave a {}-byte name",
            name.len()
        );
    }
    // What cap-std is handed: only plain names below the home, never `..` or `/`.
    let relative = path.to_relative();
    assert!(
        relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir)),
        "{input:?} gave {relative:?}"
    );
    // Normal form: resolving it again, from anywhere, is the same path.
    let again = VirtualPath::resolve(&VirtualPath::root(), text).unwrap();
    assert_eq!(&again, path);
}

#[test]
fn no_resolved_path_leaves_the_home() {
    let mut rng = StdRng::seed_from_u64(0x5f7a_11ce);
    let names = ["docs", "a.txt", "sub", LEGACY_STAGING_DIR];
    let mut cwd = VirtualPath::root();
    let (mut accepted, mut refused, mut not_utf8) = (0, 0, 0);
    for _ in 0..20_000 {
        let input = client_path(&mut rng, &names);
        // The front ends refuse names that are not UTF-8 before resolving anything.
        let Ok(text) = std::str::from_utf8(&input) else {
            not_utf8 += 1;
            continue;
        };
        let got = VirtualPath::resolve(&cwd, text);
        assert_eq!(
            got.as_ref().ok().map(VirtualPath::as_str),
            expected(&cwd, text).as_deref(),
            "resolving {text:?} from {cwd}"
        );
        match got {
            Ok(path) => {
                assert_confined(&path, &input);
                accepted += 1;
                // Walk on from there now and then, as `cd` does.
                if rng.random_bool(0.3) {
                    cwd = path;
                }
            }
            Err(_) => refused += 1,
        }
        if rng.random_bool(0.05) {
            cwd = VirtualPath::root();
        }
    }
    // The generator must exercise both sides, or the test proves nothing.
    assert!(accepted > 5_000 && refused > 2_000 && not_utf8 > 200);
    assert!(accepted + refused + not_utf8 == 20_000);
}

/// A storage root with alice's home, bob's beside it, and a folder outside both.
struct Planted {
    tmp: tempfile::TempDir,
    home: HomeDir,
    secret: Vec<u8>,
}

impl Planted {
    fn new(rng: &mut StdRng, link_names: &[&str]) -> Planted {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let storage_root = root.join("storage");
        let outside = root.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let secret: Vec<u8> = (0..SECRET_LEN).map(|i| (i % 251) as u8).collect();
        std::fs::write(outside.join(OUTSIDE_NAMES[0]), &secret).unwrap();
        std::fs::create_dir_all(storage_root.join("bob")).unwrap();
        std::fs::write(storage_root.join("bob").join(OUTSIDE_NAMES[1]), &secret).unwrap();
        let storage = Storage::open(&storage_root).unwrap();
        let home = storage.home("alice", 1 << 30, None).unwrap();
        // Bob's partial upload, in the staging area beside the homes.
        storage.home("bob", 1 << 30, None).unwrap();
        std::fs::write(storage.staging_path("bob").join(OUTSIDE_NAMES[1]), &secret).unwrap();

        let alice = storage_root.join("alice");
        std::fs::create_dir_all(alice.join("d/e")).unwrap();
        std::fs::write(alice.join("a.txt"), b"abc").unwrap();
        std::fs::write(alice.join("d/inner.txt"), b"inner").unwrap();
        let fixed: [(&str, String); 15] = [
            ("partials", format!("../{STAGING_ROOT}")),
            ("up", "..".into()),
            ("upup", "../..".into()),
            ("abs", "/".into()),
            ("absout", outside.display().to_string()),
            ("secretlink", format!("../../outside/{}", OUTSIDE_NAMES[0])),
            ("bob", "../bob".into()),
            ("self", ".".into()),
            ("loop1", "loop2".into()),
            ("loop2", "loop1".into()),
            ("selfloop", "selfloop".into()),
            ("chain1", "chain2".into()),
            ("chain2", "d/chain3".into()),
            ("d/chain3", "../../../outside".into()),
            ("d/e/deep", "../../../../../../../../../etc/passwd".into()),
        ];
        for (link, target) in &fixed {
            symlink(target, alice.join(link)).unwrap();
        }
        // The planted links do lead out when followed without the jail, so a pass means
        // the jail stopped them.
        assert_eq!(std::fs::read(alice.join("secretlink")).unwrap(), secret);
        assert_eq!(
            std::fs::read(alice.join("chain1").join(OUTSIDE_NAMES[0])).unwrap(),
            secret
        );
        symlink("../inner.txt", alice.join("d/e/in")).unwrap();
        symlink("nowhere", alice.join("dangling")).unwrap();
        symlink("../../outside/new-file", alice.join("dangle_out")).unwrap();
        // And links with made-up targets, which make more chains and loops by chance.
        for i in 0..12 {
            let target = String::from_utf8_lossy(&client_path(rng, link_names)).replace('\0', "");
            let place = if i % 3 == 0 { "d" } else { "." };
            let name = alice.join(place).join(format!("r{i}"));
            // The kernel refuses some (empty, or longer than PATH_MAX); that is fine.
            let _ = symlink(&target, name);
        }
        Planted { tmp, home, secret }
    }

    /// Everything outside alice's home, as (path, size, mode, mtime), to compare after.
    fn outside_state(&self) -> BTreeMap<String, (u64, u32, i64)> {
        let mut state = BTreeMap::new();
        for dir in ["outside", "storage/bob", "storage/.partials/bob", "."] {
            for entry in std::fs::read_dir(self.tmp.path().join(dir)).unwrap() {
                let entry = entry.unwrap();
                let meta = std::fs::symlink_metadata(entry.path()).unwrap();
                let key = format!("{dir}/{}", entry.file_name().to_string_lossy());
                state.insert(key, (meta.len(), meta.mode(), meta.mtime()));
            }
        }
        state
    }
}

/// Names a path may be built from: every planted link, real entries, new names.
const LINK_NAMES: [&str; 32] = [
    "partials",
    "up",
    "upup",
    "abs",
    "absout",
    "secretlink",
    "bob",
    "self",
    "loop1",
    "loop2",
    "selfloop",
    "chain1",
    "chain2",
    "chain3",
    "d",
    "e",
    "deep",
    "in",
    "dangling",
    "dangle_out",
    "a.txt",
    "inner.txt",
    "new",
    "r0",
    "r1",
    "r2",
    "r3",
    "r4",
    "r5",
    "r6",
    "r9",
    STAGING_ROOT,
];

/// A random operation on `path`; every answer must be about something inside the home.
fn poke(home: &HomeDir, path: &VirtualPath, other: &VirtualPath, rng: &mut StdRng, secret: &[u8]) {
    let secret_md5 = Md5Digest::of(secret);
    match rng.random_range(0..12) {
        0 => {
            if let Ok(entry) = home.stat(path) {
                assert_ne!(entry.size, SECRET_LEN as u64, "stat {path} reached outside");
            }
        }
        1 => {
            if let Ok(entries) = home.list(path) {
                for entry in entries {
                    let name = entry.name.to_string_lossy();
                    assert!(!OUTSIDE_NAMES.contains(&&*name), "ls {path} shows {name}");
                    assert_ne!(entry.size, SECRET_LEN as u64, "ls {path} reached outside");
                }
            }
        }
        2 => {
            if let Ok((mut file, entry)) = home.open_read(path) {
                assert_ne!(entry.size, SECRET_LEN as u64, "open {path} reached outside");
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut file, &mut data).unwrap();
                assert_ne!(data, secret, "read {path} reached outside");
            }
        }
        3 => {
            if let Ok((digest, _)) = home.md5_range(path, 0, u64::MAX) {
                assert_ne!(digest, secret_md5, "md5 {path} reached outside");
            }
        }
        4 => {
            if let Ok(target) = home.read_link(path) {
                // An answer never names a place above the home, read from the link's
                // folder.
                assert!(!target.is_absolute(), "readlink {path} gave {target:?}");
                let mut depth = path.as_str().matches('/').count() as i64 - 1;
                for part in Path::new(&target).components() {
                    match part {
                        Component::ParentDir => depth -= 1,
                        Component::Normal(_) => depth += 1,
                        _ => {}
                    }
                    assert!(depth >= 0, "readlink {path} gave {target:?}");
                }
            }
        }
        5 => drop(home.write_at(path, rng.random_range(0..3), b"w")),
        6 => drop(home.mkdir(path)),
        7 => drop(home.set_permissions(path, 0o777)),
        8 => drop(home.set_mtime(path, SystemTime::UNIX_EPOCH + Duration::from_secs(1))),
        9 => drop(home.rename(path, other)),
        10 => drop(home.remove_file(path)),
        _ => drop(home.rmdir(path)),
    }
}

#[test]
fn no_planted_link_leads_out_of_the_home() {
    let mut rng = StdRng::seed_from_u64(0x11_4e5);
    let mut resolved = 0;
    for _ in 0..30 {
        let planted = Planted::new(&mut rng, &LINK_NAMES);
        let before = planted.outside_state();
        for _ in 0..300 {
            let mut paths = [0, 1].map(|_| {
                let raw = client_path(&mut rng, &LINK_NAMES);
                std::str::from_utf8(&raw)
                    .ok()
                    .and_then(|text| VirtualPath::resolve(&VirtualPath::root(), text).ok())
            });
            let Some(path) = paths[0].take() else {
                continue;
            };
            let other = paths[1].take().unwrap_or_else(|| path.clone());
            resolved += 1;
            poke(&planted.home, &path, &other, &mut rng, &planted.secret);
        }
        assert_eq!(
            planted.outside_state(),
            before,
            "something outside the home changed"
        );
        assert_eq!(
            std::fs::read(planted.tmp.path().join("outside").join(OUTSIDE_NAMES[0])).unwrap(),
            planted.secret
        );
    }
    assert!(resolved > 3_000, "only {resolved} paths resolved");
}
