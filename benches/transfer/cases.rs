//! The timed cases. Each runs OpenSSH's side first and rsftp's second (A B), once per
//! run, so the two alternate A B A B across runs; every file moved is checked by MD5.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::clients::{Clients, finish, make_file, verify};
use crate::servers::Server;
use crate::table::{CPU, Side, Table};

pub const AES: &str = "aes128-gcm@openssh.com";
pub const CHACHA: &str = "chacha20-poly1305@openssh.com";

/// The servers, the clients and the scratch directory the cases share.
pub struct Bench {
    pub clients: Clients,
    pub sshd: Option<Server>,
    pub rsftpd: Server,
    pub work: PathBuf,
}

/// What the cases found: the samples, the errors, the copies checked.
#[derive(Default)]
pub struct Out {
    pub table: Table,
    pub errors: Vec<String>,
    /// Lines printed under the table.
    pub notes: Vec<String>,
    /// Files whose MD5 was checked after they moved, and matched.
    pub verified: u64,
    /// Login samples in seconds, per side, for the small-file case's net figures.
    pub logins: [Vec<f64>; 2],
    /// Small-file samples in seconds: [count index][put, get][side].
    pub small: Vec<(usize, [[Vec<f64>; 2]; 2])>,
}

impl Out {
    fn check(&mut self, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.verified += 1,
            Err(e) => self.errors.push(e),
        }
    }
}

fn side(server: &Server) -> Side {
    if server.name == "sshd" {
        Side::OpenSsh
    } else {
        Side::Rsftp
    }
}

pub fn size_name(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

/// The big file: its path, length and MD5.
pub struct Big {
    pub path: PathBuf,
    pub md5: String,
    pub len: u64,
}

impl Bench {
    fn servers(&self) -> Vec<&Server> {
        self.sshd
            .iter()
            .chain(std::iter::once(&self.rsftpd))
            .collect()
    }

    /// One `sftp` transfer, timed, with the server's CPU time over it.
    fn timed_sftp(&self, server: &Server, cipher: &str, batch: &str) -> Result<(f64, f64), String> {
        let cpu = server.cpu_seconds();
        let secs = self.clients.sftp(server, cipher, batch)?;
        server.settle();
        Ok((secs, server.cpu_seconds() - cpu))
    }

    /// The big file up and down with OpenSSH `sftp` to both servers, in both ciphers;
    /// then up and down with the `rsftp` client to rsftpd. The aes128-gcm `sftp` runs to
    /// sshd are followed by `md5sum` on both ends at once: the time to a verified copy.
    pub fn big(&self, out: &mut Out, big: &Big) {
        let size = size_name(big.len);
        let local = self.work.join("got.bin");
        if self.clients.sftp.is_some() {
            for (cipher, short) in [(AES, "aes128-gcm"), (CHACHA, "chacha20")] {
                for server in self.servers() {
                    let dest = server.disk.join("big.bin");
                    let _ = std::fs::remove_file(&dest);
                    let batch =
                        format!("put {} {}\n", big.path.display(), server.remote("big.bin"));
                    let case = format!("sftp put {size} {short}");
                    if !self.big_sftp(
                        out, server, cipher, &batch, &case, big, "put", &big.path, &dest,
                    ) {
                        continue;
                    }
                    let _ = std::fs::remove_file(&local);
                    let batch = format!("get {} {}\n", server.remote("big.bin"), local.display());
                    let case = format!("sftp get {size} {short}");
                    self.big_sftp(
                        out, server, cipher, &batch, &case, big, "get", &dest, &local,
                    );
                    let _ = std::fs::remove_file(&dest);
                    let _ = std::fs::remove_file(&local);
                }
            }
        }
        self.rsftp_big(out, big, &local);
    }

    /// One `sftp` run of the big file, recorded under `case`, and its copy checked: for
    /// aes128-gcm to sshd by `md5sum` on both ends at once, timed, as the rest of a
    /// verified copy; otherwise by an untimed MD5 here.
    #[allow(clippy::too_many_arguments)]
    fn big_sftp(
        &self,
        out: &mut Out,
        server: &Server,
        cipher: &str,
        batch: &str,
        case: &str,
        big: &Big,
        way: &str,
        from: &Path,
        to: &Path,
    ) -> bool {
        let gb = big.len as f64 / 1e9;
        let (secs, cpu) = match self.timed_sftp(server, cipher, batch) {
            Ok(sample) => sample,
            Err(e) => {
                out.errors.push(e);
                return false;
            }
        };
        out.table
            .add(case, "MB/s", side(server), big.len as f64 / secs / 1e6);
        out.table.add(case, CPU, side(server), cpu / gb);
        let size = size_name(big.len);
        if server.name == "sshd" && cipher == AES {
            let raw = format!("rsftp {way} {size} verified vs sftp unverified");
            out.table
                .add(&raw, "MB/s", Side::OpenSsh, big.len as f64 / secs / 1e6);
            out.table.add(&raw, CPU, Side::OpenSsh, cpu / gb);
            if self.clients.md5sum.is_some() {
                let case = format!("time to verified copy, {way} (sftp + 2 md5sum at once)");
                match self.clients.md5sum_both(from, to, &big.md5) {
                    Ok(sums) => {
                        out.verified += 1;
                        out.table.add(&case, "s", Side::OpenSsh, secs + sums);
                    }
                    Err(e) => out.errors.push(e),
                }
                return true;
            }
        }
        out.check(verify(to, &big.md5));
        true
    }

    /// `rsftp put` and `rsftp get` of the big file: verified by the client itself, and
    /// checked here again.
    fn rsftp_big(&self, out: &mut Out, big: &Big, local: &Path) {
        let size = size_name(big.len);
        let gb = big.len as f64 / 1e9;
        let server = &self.rsftpd;
        let dest = server.disk.join("big.bin");
        let _ = std::fs::remove_file(&dest);
        let src = big.path.display().to_string();
        let dst = local.display().to_string();
        for (way, command, check) in [
            ("put", ["put", src.as_str(), "/big.bin"], dest.as_path()),
            ("get", ["get", "/big.bin", dst.as_str()], local),
        ] {
            let _ = std::fs::remove_file(local);
            let cpu = server.cpu_seconds();
            let secs = self.clients.rsftp(server, &command);
            server.settle();
            let cpu = server.cpu_seconds() - cpu;
            match secs.and_then(|secs| verify(check, &big.md5).map(|()| secs)) {
                Ok(secs) => {
                    out.verified += 1;
                    let raw = format!("rsftp {way} {size} verified vs sftp unverified");
                    out.table
                        .add(&raw, "MB/s", Side::Rsftp, big.len as f64 / secs / 1e6);
                    out.table.add(&raw, CPU, Side::Rsftp, cpu / gb);
                    let case = format!("time to verified copy, {way} (sftp + 2 md5sum at once)");
                    out.table.add(&case, "s", Side::Rsftp, secs);
                }
                Err(e) => {
                    out.errors.push(e);
                    break;
                }
            }
        }
        let _ = std::fs::remove_file(&dest);
        let _ = std::fs::remove_file(local);
    }

    /// `sftp -b` with only `pwd`: connecting, key exchange, login and the subsystem.
    pub fn login(&self, out: &mut Out, times: usize) {
        if self.clients.sftp.is_none() {
            return;
        }
        for _ in 0..times {
            for server in self.servers() {
                match self.clients.sftp(server, AES, "pwd\n") {
                    Ok(secs) => {
                        out.table
                            .add("login, then pwd (sftp -b)", "ms", side(server), secs * 1e3);
                        out.logins[side(server) as usize].push(secs);
                    }
                    Err(e) => out.errors.push(e),
                }
            }
        }
    }

    /// `count` files of 4 KiB put with one `sftp -b`, then got back with another: raw
    /// seconds, turned into files per second net of the login time at the end.
    pub fn small(&self, out: &mut Out, count: usize, run: usize) {
        if self.clients.sftp.is_none() {
            return;
        }
        let source = self.work.join(format!("small-{count}"));
        let _ = std::fs::create_dir_all(&source);
        let mut sums = Vec::new();
        for i in 0..count {
            let name = format!("f{i:05}");
            match make_file(&source.join(&name), 4096, (count * 100_000 + i) as u64) {
                Ok(md5) => sums.push((name, md5)),
                Err(e) => {
                    out.errors.push(e);
                    return;
                }
            }
        }
        let slot = match out.small.iter().position(|(c, _)| *c == count) {
            Some(slot) => slot,
            None => {
                out.small.push((count, Default::default()));
                out.small.len() - 1
            }
        };
        for server in self.servers() {
            let s = side(server) as usize;
            let name = format!("small-{count}-{run}");
            let remote = server.remote(&name);
            let put = format!(
                "mkdir {remote}\ncd {remote}\nlcd {}\nput *\n",
                source.display()
            );
            match self.clients.sftp(server, AES, &put) {
                Ok(secs) => out.small[slot].1[0][s].push(secs),
                Err(e) => {
                    out.errors.push(e);
                    continue;
                }
            }
            let back = self.work.join(format!("back-{count}"));
            let _ = std::fs::remove_dir_all(&back);
            let _ = std::fs::create_dir_all(&back);
            let get = format!("cd {remote}\nlcd {}\nget *\n", back.display());
            match self.clients.sftp(server, AES, &get) {
                Ok(secs) => out.small[slot].1[1][s].push(secs),
                Err(e) => out.errors.push(e),
            }
            let on_disk = server.disk.join(&name);
            let mut wrong = Vec::new();
            for (file, md5) in &sums {
                for dir in [&on_disk, &back] {
                    match verify(&dir.join(file), md5) {
                        Ok(()) => out.verified += 1,
                        Err(e) => wrong.push(e),
                    }
                }
            }
            if !wrong.is_empty() {
                out.errors.push(format!(
                    "{} small files wrong, first: {}",
                    wrong.len(),
                    wrong[0]
                ));
            }
            let _ = std::fs::remove_dir_all(&on_disk);
            let _ = std::fs::remove_dir_all(&back);
        }
    }

    /// Turns the small-file samples into files per second, net of the median login.
    pub fn small_rows(out: &mut Out) {
        let login = [
            crate::table::median(&out.logins[0]),
            crate::table::median(&out.logins[1]),
        ];
        let small = std::mem::take(&mut out.small);
        for (count, ways) in &small {
            for (w, way) in ["put", "get"].into_iter().enumerate() {
                let case = format!("{count} x 4 KiB {way}, net of login");
                out.table.declare(&case, "files/s");
                for (s, who) in [Side::OpenSsh, Side::Rsftp].into_iter().enumerate() {
                    let Some(login) = login[s] else { continue };
                    for secs in &ways[w][s] {
                        let net = (secs - login).max(1e-3);
                        out.table.add(&case, "files/s", who, *count as f64 / net);
                    }
                }
            }
        }
        out.small = small;
    }

    /// `sessions` `sftp` processes at once, each putting a file of `len` bytes: the
    /// aggregate rate and the server's CPU time per GB.
    pub fn concurrent(&self, out: &mut Out, sessions: usize, len: u64) {
        if self.clients.sftp.is_none() {
            return;
        }
        let source = self.work.join("concurrent.bin");
        let md5 = match make_file(&source, len, 4242) {
            Ok(md5) => md5,
            Err(e) => {
                out.errors.push(e);
                return;
            }
        };
        let case = format!("{sessions} sessions x {} put at once", size_name(len));
        let total = (sessions as u64 * len) as f64;
        for server in self.servers() {
            let cpu = server.cpu_seconds();
            let started = Instant::now();
            let mut children = Vec::new();
            for i in 0..sessions {
                let remote = server.remote(&format!("c{i}.bin"));
                let batch = format!("put {} {remote}\n", source.display());
                match self.clients.spawn_sftp(server, AES, &batch) {
                    Ok(child) => children.push(child),
                    Err(e) => out.errors.push(e),
                }
            }
            let mut failed = children.len() < sessions;
            for child in children {
                if let Err(e) = finish(child, &format!("concurrent sftp to {}", server.name)) {
                    out.errors.push(e);
                    failed = true;
                }
            }
            let secs = started.elapsed().as_secs_f64();
            server.settle();
            let cpu = server.cpu_seconds() - cpu;
            if !failed {
                out.table
                    .add(&case, "MB/s", side(server), total / secs / 1e6);
                out.table.add(&case, CPU, side(server), cpu / (total / 1e9));
            }
            for i in 0..sessions {
                let path = server.disk.join(format!("c{i}.bin"));
                out.check(verify(&path, &md5));
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}
