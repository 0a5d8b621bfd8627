//! Transfer benchmark: 1 GiB up and down through rsftp, side by side with OpenSSH.
//!
//! Run with `cargo bench --bench transfer` (add `-- --size-mib 256 --runs 5` to change the
//! file size or the number of runs). In one run, on the same file and the same cipher
//! (aes128-gcm@openssh.com), it measures:
//!
//! - `rsftp`: the release `rsftpd` as a child process and our client library, every
//!   transfer verified by MD5 end to end;
//! - `sftp → sshd`: OpenSSH's `sftp -b` against a private `sshd` on 127.0.0.1, if
//!   `/usr/sbin/sshd` is installed;
//! - `sftp → rsftpd`: the same OpenSSH `sftp` against rsftpd's `sftp` subsystem, when the
//!   server offers one.
//!
//! It prints the median of several runs in MB/s (10^6 bytes per second) and the ratios.
//! Absolute figures on shared machines are noisy; the ratios, measured in one run, are
//! what to compare.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rsftp::client::{Connection, HostKeyCheck, NewHostKey, Quiet, download, load_key, upload};
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey};

const CIPHER: &str = "aes128-gcm@openssh.com";

struct Options {
    size_mib: u64,
    runs: usize,
}

fn options() -> Options {
    let mut options = Options {
        size_mib: 1024,
        runs: 3,
    };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        match pair[0].as_str() {
            "--size-mib" => options.size_mib = pair[1].parse().unwrap_or(options.size_mib),
            "--runs" => options.runs = pair[1].parse().unwrap_or(options.runs),
            _ => {}
        }
    }
    options
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

/// Writes `mib` MiB of incompressible bytes.
fn make_file(path: &Path, mib: u64) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        file.write_all(&block).expect("write");
    }
}

/// Kills the child when dropped, so a failed run leaves no server behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "server on port {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_rsftpd(dir: &Path, public_key: &str, quota_bytes: u64) -> (Guard, u16) {
    let port = free_port();
    std::fs::write(
        dir.join("users.toml"),
        format!("[users.bench]\nkeys = [\"{public_key}\"]\nquota = \"{quota_bytes}\"\n"),
    )
    .expect("users.toml");
    // rsftpd refuses a users file that others can read.
    std::fs::set_permissions(
        dir.join("users.toml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod users.toml");
    let child = Command::new(env!("CARGO_BIN_EXE_rsftpd"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--users")
        .arg(dir.join("users.toml"))
        .arg("--storage")
        .arg(dir.join("storage"))
        .arg("--keys")
        .arg(dir.join("keys"))
        .arg("--logs")
        .arg(dir.join("logs"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rsftpd");
    let guard = Guard(child);
    wait_for_port(port);
    (guard, port)
}

fn start_sshd(dir: &Path, authorized: &Path) -> Option<(Guard, u16)> {
    let sshd = Path::new("/usr/sbin/sshd");
    if !sshd.exists() {
        return None;
    }
    let port = free_port();
    let host_key = dir.join("sshd_host_key");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&host_key)
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PidFile {}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             PermitRootLogin prohibit-password\nCiphers {CIPHER}\nSubsystem sftp internal-sftp\n",
            host_key.display(),
            authorized.display(),
            dir.join("sshd.pid").display()
        ),
    )
    .ok()?;
    // sshd insists on this directory existing.
    let _ = std::fs::create_dir_all("/run/sshd");
    let child = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let guard = Guard(child);
    wait_for_port(port);
    Some((guard, port))
}

/// Runs one `sftp -b` batch against a server; returns the elapsed seconds.
fn sftp_batch(dir: &Path, port: u16, key: &Path, user: &str, batch: &str) -> f64 {
    let batch_file = dir.join("batch");
    std::fs::write(&batch_file, batch).expect("batch");
    let started = Instant::now();
    let status = Command::new("sftp")
        .args(["-q", "-b"])
        .arg(&batch_file)
        .args(["-P", &port.to_string(), "-c", CIPHER, "-i"])
        .arg(key)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            &format!(
                "UserKnownHostsFile={}",
                dir.join("known_hosts_sftp").display()
            ),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-F",
            "/dev/null",
        ])
        .arg(format!("{user}@127.0.0.1"))
        .stdout(Stdio::null())
        .status()
        .expect("run sftp");
    assert!(status.success(), "sftp batch failed: {batch}");
    started.elapsed().as_secs_f64()
}

fn current_user() -> String {
    std::env::var("USER")
        .ok()
        .or_else(|| {
            let out = Command::new("id").arg("-un").output().ok()?;
            Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
        .unwrap_or_else(|| "root".into())
}

struct Row {
    name: &'static str,
    put: Option<f64>,
    get: Option<f64>,
}

fn main() {
    let options = options();
    let size = options.size_mib << 20;
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path();
    println!(
        "rsftp transfer benchmark: {} MiB file, {} runs each, cipher {CIPHER}, medians",
        options.size_mib, options.runs
    );
    let src = dir.join("src.bin");
    make_file(&src, options.size_mib);

    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("key");
    let key_path = dir.join("id_ed25519");
    key.write_openssh_file(&key_path, LineEnding::LF)
        .expect("key file");
    let public = key.public_key().to_openssh().expect("public key");
    let authorized = dir.join("authorized_keys");
    std::fs::write(&authorized, format!("{public}\n")).expect("authorized_keys");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut rows = Vec::new();

    // rsftp: our server and our client library, verified.
    let (_rsftpd, port) = start_rsftpd(dir, &public, size * 4);
    let rsftp_dest = dir.join("rsftp-get.bin");
    let (mut puts, mut gets) = (Vec::new(), Vec::new());
    for run in 0..options.runs {
        let remote = format!("up-{run}.bin");
        let (put, get) = runtime.block_on(async {
            let check = HostKeyCheck {
                known_hosts: dir.join("known_hosts_rsftp"),
                new_key: NewHostKey::Accept,
            };
            let started = Instant::now();
            let mut conn = Connection::connect("127.0.0.1", port, "bench", check)
                .await
                .expect("connect");
            assert!(
                conn.login_key(load_key(&key_path, None).expect("key"))
                    .await
                    .expect("login")
            );
            let mut client = conn.open_rsftp().await.expect("rsftp");
            let report = upload(&mut client, &src, &remote, &Quiet)
                .await
                .expect("upload");
            assert_eq!(report.transferred, size);
            let put = started.elapsed().as_secs_f64();

            let _ = std::fs::remove_file(&rsftp_dest);
            let started = Instant::now();
            let report = download(&mut client, &remote, &rsftp_dest, true, &Quiet)
                .await
                .expect("download");
            assert_eq!(report.transferred, size);
            let get = started.elapsed().as_secs_f64();
            client.rm(&remote).await.expect("rm");
            (put, get)
        });
        puts.push(size as f64 / put / 1e6);
        gets.push(size as f64 / get / 1e6);
    }
    rows.push(Row {
        name: "rsftp (verified)",
        put: Some(median(puts)),
        get: Some(median(gets)),
    });

    // OpenSSH sftp against rsftpd's sftp subsystem, if it has one.
    let sftp_dest = dir.join("sftp-get.bin");
    let has_sftp = Command::new("sftp")
        .args(["-q", "-b", "/dev/null", "-P", &port.to_string(), "-i"])
        .arg(&key_path)
        .args(["-o", "StrictHostKeyChecking=no", "-o"])
        .arg(format!(
            "UserKnownHostsFile={}",
            dir.join("known_hosts_sftp").display()
        ))
        .args(["-o", "BatchMode=yes", "-F", "/dev/null", "bench@127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if has_sftp {
        let (mut puts, mut gets) = (Vec::new(), Vec::new());
        for _ in 0..options.runs {
            let put = sftp_batch(
                dir,
                port,
                &key_path,
                "bench",
                &format!("put {} up.bin\n", src.display()),
            );
            let _ = std::fs::remove_file(&sftp_dest);
            let get = sftp_batch(
                dir,
                port,
                &key_path,
                "bench",
                &format!("get up.bin {}\nrm up.bin\n", sftp_dest.display()),
            );
            puts.push(size as f64 / put / 1e6);
            gets.push(size as f64 / get / 1e6);
        }
        rows.push(Row {
            name: "sftp -> rsftpd",
            put: Some(median(puts)),
            get: Some(median(gets)),
        });
    }

    // OpenSSH sftp against a private OpenSSH sshd.
    let user = current_user();
    match start_sshd(dir, &authorized) {
        Some((_sshd, sshd_port)) => {
            let remote = dir.join("sshd-up.bin");
            let (mut puts, mut gets) = (Vec::new(), Vec::new());
            for _ in 0..options.runs {
                let put = sftp_batch(
                    dir,
                    sshd_port,
                    &key_path,
                    &user,
                    &format!("put {} {}\n", src.display(), remote.display()),
                );
                let _ = std::fs::remove_file(&sftp_dest);
                let get = sftp_batch(
                    dir,
                    sshd_port,
                    &key_path,
                    &user,
                    &format!("get {} {}\n", remote.display(), sftp_dest.display()),
                );
                let _ = std::fs::remove_file(&remote);
                puts.push(size as f64 / put / 1e6);
                gets.push(size as f64 / get / 1e6);
            }
            rows.push(Row {
                name: "sftp -> OpenSSH sshd",
                put: Some(median(puts)),
                get: Some(median(gets)),
            });
        }
        None => println!("(no /usr/sbin/sshd: install openssh-server to compare with OpenSSH)"),
    }

    // What a user of OpenSSH must add to know the copy is right: md5sum on both ends.
    let mut md5sums = Vec::new();
    for _ in 0..options.runs {
        let started = Instant::now();
        let ok = Command::new("md5sum")
            .arg(&src)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "md5sum failed");
        md5sums.push(started.elapsed().as_secs_f64());
    }
    let md5sum = median(md5sums);
    let verified_rows: Vec<Row> = rows
        .iter()
        .filter(|r| r.name.starts_with("sftp"))
        .map(|r| {
            // Transfer time plus one md5sum on each end, as a throughput.
            let verified = |mbps: Option<f64>| {
                mbps.map(|v| size as f64 / (size as f64 / (v * 1e6) + 2.0 * md5sum) / 1e6)
            };
            Row {
                name: if r.name.ends_with("sshd") {
                    "sftp -> sshd + md5sum x2"
                } else {
                    "sftp -> rsftpd + md5sum x2"
                },
                put: verified(r.put),
                get: verified(r.get),
            }
        })
        .collect();
    rows.extend(verified_rows);

    println!();
    println!("md5sum of the file: {:.2} s", md5sum);
    println!("{:<28} {:>12} {:>12}", "", "put MB/s", "get MB/s");
    let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    for row in &rows {
        println!("{:<28} {:>12} {:>12}", row.name, fmt(row.put), fmt(row.get));
    }
    let by_name = |name: &str| rows.iter().find(|r| r.name == name);
    if let (Some(ours), Some(raw), Some(verified)) = (
        by_name("rsftp (verified)"),
        by_name("sftp -> OpenSSH sshd"),
        by_name("sftp -> sshd + md5sum x2"),
    ) {
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}x", a / b),
            _ => "-".into(),
        };
        println!();
        println!(
            "rsftp vs OpenSSH, raw throughput:       put {} get {}",
            ratio(ours.put, raw.put),
            ratio(ours.get, raw.get)
        );
        println!(
            "rsftp vs OpenSSH, time to verified copy: put {} get {}",
            ratio(ours.put, verified.put),
            ratio(ours.get, verified.get)
        );
    }
    if let Some(base) = by_name("sftp -> OpenSSH sshd") {
        println!();
        for row in rows.iter().filter(|r| r.name == "sftp -> rsftpd") {
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) => format!("{:.2}x", a / b),
                _ => "-".into(),
            };
            println!(
                "{:<28} put {} get {} of OpenSSH sftp -> sshd (same client, same cipher)",
                row.name,
                ratio(row.put, base.put),
                ratio(row.get, base.get)
            );
        }
    }
}
