//! The operation log of one SSH session, the one place that decides what gets a line.
//!
//! Every change (mkdir, rm, rename, setstat, ...) and every transfer (open, read, write,
//! get, put, ...) gets a line of its own at `info`, as it always has. Metadata reads
//! (stat, lstat, fstat, opendir, readdir, realpath, and `ls`, `stat`, `pwd` ... in the
//! rsftp protocol) are only counted, each one logged at `debug`: a summary line gives the
//! counts by kind and how many failed, once a minute while they move and once when the
//! session ends. A client that pipelines thousands of `stat`s a second thus adds a line
//! a minute to the log, not a line a request.
//!
//! Every front end (rsftp, sftp, SCP and the hash commands) reports its requests here,
//! so the rule lives in one place. One [`OpLog`] is shared by every channel of a
//! connection; the last one to let go of it writes the session's last summary.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tracing::{debug, info};

/// How often a summary line is written while the counts move.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// The operations that only read metadata, by the names the front ends log them under,
/// in the order the summary lists them. Anything not here gets a line of its own, so an
/// operation added later is logged until someone decides it is a read.
const METADATA_READS: [&str; 15] = [
    "stat",
    "lstat",
    "fstat",
    "opendir",
    "readdir",
    "realpath",
    "expand-path",
    "readlink",
    "statvfs",
    "fstatvfs",
    "ls",
    "cd",
    "pwd",
    "info",
    "help",
];

/// One session's operation log.
pub struct OpLog {
    user: String,
    peer: SocketAddr,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    by_kind: [u64; METADATA_READS.len()],
    failed: u64,
    /// The total when the last summary was written.
    reported: u64,
}

impl Counts {
    fn total(&self) -> u64 {
        self.by_kind.iter().sum()
    }
}

impl OpLog {
    /// A session's log, with a task that writes the minute summaries for as long as the
    /// log is in use. Needs a Tokio runtime.
    pub fn start(user: &str, peer: SocketAddr) -> Arc<OpLog> {
        let log = Arc::new(OpLog::new(user, peer));
        tokio::spawn(summaries(Arc::downgrade(&log), SUMMARY_EVERY));
        log
    }

    fn new(user: &str, peer: SocketAddr) -> OpLog {
        OpLog {
            user: user.to_owned(),
            peer,
            counts: Mutex::default(),
        }
    }

    /// Records one finished request: `error` is `None` for success. `path` is the path
    /// in the user's view ("" for none).
    pub fn record(
        &self,
        proto: &'static str,
        op: &str,
        path: &str,
        bytes: u64,
        elapsed: Duration,
        error: Option<&str>,
    ) {
        let ms = elapsed.as_millis() as u64;
        let user = &self.user;
        if let Some(kind) = METADATA_READS.iter().position(|&name| name == op) {
            self.count(kind, error.is_some());
            match error {
                None => {
                    debug!(target: "rsftpd::op", user = %user, proto, op, path, bytes, ms, result = "ok")
                }
                Some(error) => {
                    debug!(target: "rsftpd::op", user = %user, proto, op, path, bytes, ms, result = "error", error)
                }
            }
            return;
        }
        match error {
            None => {
                info!(target: "rsftpd::op", user = %user, proto, op, path, bytes, ms, result = "ok")
            }
            Some(error) => {
                info!(target: "rsftpd::op", user = %user, proto, op, path, bytes, ms, result = "error", error)
            }
        }
    }

    fn count(&self, kind: usize, failed: bool) {
        let mut counts = self.lock();
        counts.by_kind[kind] += 1;
        counts.failed += u64::from(failed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Only counters inside, each update whole.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The summary of the session so far, if there were reads since the last one (or,
    /// at the end, at all); marks it written.
    fn summary(&self, end: bool) -> Option<String> {
        let mut counts = self.lock();
        let total = counts.total();
        if total == counts.reported && !(end && total > 0) {
            return None;
        }
        counts.reported = total;
        let mut text = String::from("metadata reads:");
        for (name, n) in METADATA_READS.iter().zip(counts.by_kind) {
            if n > 0 {
                let _ = write!(text, " {name}={n}");
            }
        }
        let _ = write!(text, " failed={}", counts.failed);
        Some(text)
    }

    fn write_summary(&self, end: bool) {
        if let Some(summary) = self.summary(end) {
            info!(target: "rsftpd::op", user = %self.user, peer = %self.peer, ended = end, "{summary}");
        }
    }
}

impl Drop for OpLog {
    fn drop(&mut self) {
        self.write_summary(true);
    }
}

/// Writes a summary every `every` while the log lives.
async fn summaries(log: Weak<OpLog>, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(log) = log.upgrade() else {
            return;
        };
        log.write_summary(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_metadata_read(op: &str) -> bool {
        METADATA_READS.contains(&op)
    }

    fn log() -> OpLog {
        OpLog::new("alice", SocketAddr::from(([127, 0, 0, 1], 2222)))
    }

    fn read(log: &OpLog, op: &str, ok: bool) {
        let error = (!ok).then_some("no such file");
        log.record("sftp", op, "/x", 0, Duration::ZERO, error);
    }

    #[test]
    fn changes_and_transfers_are_not_metadata_reads() {
        for op in [
            "mkdir",
            "rmdir",
            "rm",
            "remove",
            "mv",
            "rename",
            "posix-rename",
            "setstat",
            "fsetstat",
            "symlink",
            "hardlink",
            "open",
            "read",
            "write",
            "get",
            "put",
            "from",
            "done",
            "md5",
            "fsync",
            "md5sum",
            "?",
            "extended",
            "unknown",
        ] {
            assert!(!is_metadata_read(op), "{op}");
        }
        for op in [
            "stat", "lstat", "fstat", "readdir", "realpath", "opendir", "ls", "pwd",
        ] {
            assert!(is_metadata_read(op), "{op}");
        }
    }

    #[test]
    fn reads_are_counted_by_kind_with_the_failures() {
        let log = log();
        for _ in 0..3 {
            read(&log, "stat", true);
        }
        read(&log, "stat", false);
        read(&log, "readdir", true);
        read(&log, "ls", false);
        // Not counted: a change gets its own line.
        read(&log, "mkdir", true);
        assert_eq!(
            log.summary(false).as_deref(),
            Some("metadata reads: stat=4 readdir=1 ls=1 failed=2")
        );
    }

    #[test]
    fn a_summary_only_when_the_counts_moved_and_one_at_the_end() {
        let log = log();
        assert_eq!(log.summary(false), None);
        assert_eq!(log.summary(true), None, "no reads, no summary");
        read(&log, "pwd", true);
        assert_eq!(
            log.summary(false).as_deref(),
            Some("metadata reads: pwd=1 failed=0")
        );
        assert_eq!(log.summary(false), None, "nothing moved");
        read(&log, "pwd", true);
        // The totals of the whole session, not of the last minute.
        assert_eq!(
            log.summary(false).as_deref(),
            Some("metadata reads: pwd=2 failed=0")
        );
        assert_eq!(
            log.summary(true).as_deref(),
            Some("metadata reads: pwd=2 failed=0"),
            "the end always says where the session got to"
        );
    }

    #[tokio::test]
    async fn the_summary_task_ends_with_the_log() {
        let log = Arc::new(log());
        let task = tokio::spawn(summaries(Arc::downgrade(&log), Duration::from_millis(10)));
        read(&log, "stat", true);
        // The task writes the first summary within a tick or two.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while log.lock().reported == 0 {
            assert!(tokio::time::Instant::now() < deadline, "no summary written");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(log);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the task ends once the log is gone")
            .expect("the task did not panic");
    }
}
