//! paramiko, a Python SFTP client that scripts use, against the `sftp` subsystem:
//! transfers at offsets, stat, listdir, resume, confinement, and quota bookkeeping.

use std::path::Path;
use std::time::Duration;

use crate::sshd::{Sshd, text};
use crate::util::{PASSWORD, TestServer, TestUser, key_path, run_with_input};

/// Connects as alice with her key and runs `body` with `s` an SFTPClient; `out(...)`
/// records a line, and what is recorded is printed at the end.
const PRELUDE: &str = r#"
import sys, stat, errno, hashlib, paramiko
port, key = int(sys.argv[1]), sys.argv[2]
t = paramiko.Transport(("127.0.0.1", port))
t.connect(username="alice", pkey=paramiko.Ed25519Key.from_private_key_file(key))
s = paramiko.SFTPClient.from_transport(t)
lines = []
def out(*args):
    lines.append(" ".join(str(a) for a in args))
def refused(what, f, *args):
    try:
        f(*args)
        out(what, "ALLOWED")
    except IOError as e:
        out(what, "refused", e.errno)
"#;

/// Runs `body` in paramiko as alice (see `PRELUDE`); returns the recorded lines.
pub async fn paramiko(server: &TestServer, body: &str) -> Vec<String> {
    let script = format!("{PRELUDE}\n{body}\ns.close()\nt.close()\nprint('\\n'.join(lines))\n");
    let args = vec![
        "-c".to_owned(),
        script,
        server.addr.port().to_string(),
        key_path(server.root(), "alice").display().to_string(),
    ];
    recorded(&run_with_input("python3", &args, b"").await)
}

/// The lines a paramiko script printed, once it has succeeded.
fn recorded(output: &std::process::Output) -> Vec<String> {
    assert!(
        output.status.success(),
        "paramiko failed:\n{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout).lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paramiko_transfers_at_offsets_stats_lists_and_resumes() {
    let server = TestServer::start(&[TestUser::new("alice", "100MiB")]).await;
    let lines = paramiko(
        &server,
        r#"
data = bytes(range(256)) * 4000
with s.open("f.bin", "wb") as f:
    f.write(data)
st = s.stat("f.bin")
out("stat", st.st_size, stat.S_ISREG(st.st_mode), oct(st.st_mode & 0o777))
with s.open("f.bin", "r+b") as f:
    f.seek(1000)
    f.write(b"XYZ")
with s.open("f.bin", "rb") as f:
    f.seek(999)
    out("read at 999", f.read(5))
    f.seek(len(data) - 2)
    out("read at end", f.read(100))
# A resume: half now, the rest later from where the server is.
with s.open("r.bin", "wb") as f:
    f.write(data[:500000])
held = s.stat("r.bin").st_size
with s.open("r.bin", "r+b") as f:
    f.seek(held)
    f.write(data[held:])
with s.open("r.bin", "rb") as f:
    got = f.read()
out("resumed", held, hashlib.md5(got).hexdigest() == hashlib.md5(data).hexdigest())
with s.open("r.bin", "ab") as f:
    f.write(b"tail")
out("appended", s.stat("r.bin").st_size)
s.getfo("f.bin", open("/dev/null", "wb"))
s.mkdir("d")
s.rename("r.bin", "d/r.bin")
out("listdir", sorted(s.listdir(".")), s.listdir("d"))
attrs = {a.filename: a for a in s.listdir_attr(".")}
out("listdir_attr", sorted(attrs), attrs["f.bin"].st_size, stat.S_ISDIR(attrs["d"].st_mode))
out("longname", attrs["f.bin"].longname.split()[2], attrs["f.bin"].longname.split()[-1])
s.truncate("f.bin", 10)
out("truncated", s.stat("f.bin").st_size)
s.chmod("f.bin", 0o600)
s.utime("f.bin", (1000000000, 1000000000))
st = s.stat("f.bin")
out("chmod utime", oct(st.st_mode & 0o777), st.st_mtime)
out("normalize", s.normalize("."), s.normalize("d/../d/./"), s.normalize("../../.."))
refused("open missing", s.open, "nosuch")
refused("rename onto existing", s.rename, "f.bin", "d/r.bin")
s.posix_rename("f.bin", "d/r.bin")
out("posix_rename", s.stat("d/r.bin").st_size)
refused("rmdir not empty", s.rmdir, "d")
s.symlink("d/r.bin", "link")
out("symlink", s.readlink("link"), s.stat("link").st_size)
refused("symlink out", s.symlink, "../../etc/passwd", "out")
s.remove("d/r.bin")
s.rmdir("d")
out("at the end", s.listdir("."))
"#,
    )
    .await;
    let expected = [
        "stat 1024000 True 0o644",
        "read at 999 b'\\xe7XYZ\\xeb'",
        "read at end b'\\xfe\\xff'",
        "resumed 500000 True",
        "appended 1024004",
        "listdir ['d', 'f.bin'] ['r.bin']",
        "listdir_attr ['d', 'f.bin'] 1024000 True",
        "longname alice f.bin",
        "truncated 10",
        "chmod utime 0o600 1000000000",
        "normalize / /d /",
        "open missing refused 2",
        "rename onto existing refused None",
        "posix_rename 10",
        "rmdir not empty refused None",
        "symlink d/r.bin 10",
        "symlink out refused 13",
        "at the end ['link']",
    ];
    assert_eq!(lines, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_escapes_the_home_through_sftp() {
    let server = TestServer::start(&[
        TestUser::new("alice", "10MiB"),
        TestUser::new("bob", "10MiB"),
    ])
    .await;
    let home = server.home("alice");
    let secret = server.root().join("secret");
    std::fs::create_dir(&secret).unwrap();
    std::fs::write(secret.join("s.txt"), b"secret").unwrap();
    std::fs::write(server.home("bob").join("b.txt"), b"bob's").unwrap();
    std::fs::create_dir(home.join("docs")).unwrap();
    std::fs::write(home.join("docs/d.txt"), b"doc").unwrap();
    let link =
        |target: &str, name: &str| std::os::unix::fs::symlink(target, home.join(name)).unwrap();
    link(&secret.display().to_string(), "abs");
    link("../../secret", "rel");
    link("../bob", "bob");
    link("docs", "inside");
    let lines = paramiko(
        &server,
        r#"
for link in ["abs", "rel", "bob"]:
    inner = link + ("/b.txt" if link == "bob" else "/s.txt")
    refused(link + " stat", s.stat, link)
    refused(link + " stat inner", s.stat, inner)
    refused(link + " open", s.open, inner)
    refused(link + " listdir", s.listdir, link)
    refused(link + " remove inner", s.remove, inner)
    refused(link + " rename inner", s.rename, inner, "stolen")
    refused(link + " rename into", s.rename, "docs/d.txt", link + "/d.txt")
    refused(link + " chmod", s.chmod, link, 0o777)
    refused(link + " truncate", s.truncate, inner, 0)
    refused(link + " readlink", s.readlink, link)
    refused(link + " mkdir", s.mkdir, link + "/new")
    refused(link + " put", s.open, link + "/new.txt", "w")
    out(link, "lstat is a link", stat.S_ISLNK(s.lstat(link).st_mode))
for path in ["/etc/passwd", "../../../etc/passwd", "/../etc/passwd"]:
    refused(path, s.open, path)
    out(path, "realpath", s.normalize(path))
refused("../.partials/alice", s.listdir, "../.partials/alice")
refused("/.partials/alice/x", s.open, "/.partials/alice/x")
out("inside", s.readlink("inside"), s.listdir("inside"))
out("listed", sorted(s.listdir("/")))
"#,
    )
    .await;
    let mut expected = Vec::new();
    for link in ["abs", "rel", "bob"] {
        for (what, errno) in [
            ("stat", 13),
            ("stat inner", 13),
            ("open", 13),
            ("listdir", 13),
            ("remove inner", 13),
            ("rename inner", 13),
            ("rename into", 13),
            ("chmod", 13),
            ("truncate", 13),
            ("readlink", 13),
            ("mkdir", 13),
            ("put", 13),
        ] {
            expected.push(format!("{link} {what} refused {errno}"));
        }
        expected.push(format!("{link} lstat is a link True"));
    }
    for (path, errno, real) in [
        ("/etc/passwd", 2, "/etc/passwd"),
        ("../../../etc/passwd", 2, "/etc/passwd"),
        ("/../etc/passwd", 2, "/etc/passwd"),
    ] {
        expected.push(format!("{path} refused {errno}"));
        expected.push(format!("{path} realpath {real}"));
    }
    expected.push("../.partials/alice refused 2".into());
    expected.push("/.partials/alice/x refused 2".into());
    expected.push("inside docs ['d.txt']".into());
    expected.push("listed ['abs', 'bob', 'docs', 'inside', 'rel']".into());
    assert_eq!(lines, expected);
    // Nothing outside was touched.
    assert_eq!(std::fs::read(secret.join("s.txt")).unwrap(), b"secret");
    assert_eq!(std::fs::read_dir(&secret).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(server.home("bob")).unwrap().count(), 1);
    assert!(!home.join("stolen").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_matches_the_disk_after_any_mix_of_writes_and_a_restart() {
    let mut server = TestServer::start(&[TestUser::new("alice", "1MiB")]).await;
    let lines = paramiko(
        &server,
        r#"
def put(name, n, mode="wb", seek=None):
    with s.open(name, mode) as f:
        if seek is not None:
            f.seek(seek)
        f.write(b"x" * n)
put("a", 300000)
put("b", 200000)
put("a", 100000)                 # truncated, then rewritten
put("b", 1000, "r+b", 400000)    # a write past the end leaves a hole
s.truncate("b", 150000)
s.truncate("a", 250000)          # grows
put("c", 50000)
s.posix_rename("c", "a")         # replaces a
put("d", 10000, "ab")
put("d", 10000, "ab")
s.remove("d")
try:
    put("big", 2000000)           # runs out partway
    out("big fitted")
except IOError as e:
    out("big refused")
put("e", 5, "r+b" if False else "wb")
s.mkdir("dir")
s.rename("e", "dir/e")
try:
    s.truncate("b", 5000000)
    out("truncate fitted")
except IOError:
    out("truncate refused")
"#,
    )
    .await;
    assert_eq!(lines, ["big refused", "truncate refused"]);
    let on_disk = server.used_on_disk("alice");
    let (_conn, mut c) = server.client("alice").await;
    let before = c.info().await.unwrap();
    assert_eq!(before.used, on_disk, "the ledger matches the disk");
    assert!(before.used <= before.limit);
    drop(c);
    drop(_conn);
    server.stop().await;
    server.launch(rsftp::server::Limits::default()).await;
    let (_conn, mut c) = server.client("alice").await;
    assert_eq!(c.info().await.unwrap(), before, "a fresh scan agrees");
}

/// Makes paramiko's login calls one after another on one transport, as scripts do when
/// they probe with `auth_none` or try keys before a password; prints one line per call:
/// `none`, `stranger` (a key nobody authorized), `key` (the user's key) or `password`,
/// then `accepted`, `refused` or `timeout`. paramiko asks for the `ssh-userauth`
/// service again before each call and waits for the server to accept it.
const LOGIN_CALLS: &str = r#"
import sys, paramiko
port, user, key, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
t = paramiko.Transport(("127.0.0.1", port))
t.auth_timeout = 3
t.start_client(timeout=15)
for call in sys.argv[5:]:
    try:
        if call == "none":
            t.auth_none(user)
        elif call == "stranger":
            t.auth_publickey(user, paramiko.ECDSAKey.generate())
        elif call == "key":
            t.auth_publickey(user, paramiko.Ed25519Key.from_private_key_file(key))
        else:
            t.auth_password(user, password)
        print(call, "accepted")
    except paramiko.AuthenticationException as e:
        print(call, "timeout" if "timeout" in str(e) else "refused")
t.close()
"#;

async fn login_calls(
    port: u16,
    user: &str,
    key: &Path,
    password: &str,
    calls: &[&str],
) -> Vec<String> {
    let mut args = vec![
        "-c".to_owned(),
        LOGIN_CALLS.to_owned(),
        port.to_string(),
        user.to_owned(),
        key.display().to_string(),
        password.to_owned(),
    ];
    args.extend(calls.iter().map(|c| (*c).to_owned()));
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        run_with_input("python3", &args, b""),
    )
    .await
    .expect("paramiko's logins finished in time");
    recorded(&output)
}

/// paramiko's `auth_none` followed by `auth_password` hangs until paramiko's own auth
/// timeout: russh 0.65 drops a second `ssh-userauth` service request unanswered, where
/// OpenSSH's sshd accepts one before every attempt. A script gets one login call per
/// transport (`Transport.connect`, or `SSHClient.connect` with `look_for_keys=False,
/// allow_agent=False`); a refused call is answered at once, so a script can learn the
/// methods with `auth_none` and log in on a fresh transport. This pins both: when russh
/// answers the repeated request, the rsftpd sequence below matches sshd's, and
/// docs/SFTP.md loses its paramiko note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paramiko_gets_one_login_call_per_transport_where_sshd_gives_several() {
    let sshd = Sshd::start();
    let on_sshd = login_calls(
        sshd.port,
        sshd.user(),
        &sshd.client_key(),
        "",
        &["none", "stranger", "key"],
    )
    .await;
    assert_eq!(
        on_sshd,
        ["none refused", "stranger refused", "key accepted"]
    );

    let server = TestServer::start(&[TestUser::new("alice", "10MiB")]).await;
    let key = key_path(server.root(), "alice");
    let port = server.addr.port();
    let on_rsftpd = login_calls(port, "alice", &key, PASSWORD, &["none", "password"]).await;
    assert_eq!(on_rsftpd, ["none refused", "password timeout"]);
    // One call per transport: each is answered, accepted or refused, at once.
    for (call, password, expected) in [
        ("none", PASSWORD, "none refused"),
        ("stranger", PASSWORD, "stranger refused"),
        ("password", "wrong", "password refused"),
        ("password", PASSWORD, "password accepted"),
        ("key", PASSWORD, "key accepted"),
    ] {
        let lines = login_calls(port, "alice", &key, password, &[call]).await;
        assert_eq!(lines, [expected]);
    }
}
