//! The log file: a new file each day (UTC) and whenever the current one would pass a
//! size, and only the newest few files kept, so the logs folder has a bounded size
//! whatever a client does.
//!
//! Files are named `PREFIX.YYYY-MM-DD` for the first of a day, then `PREFIX.YYYY-MM-DD.1`,
//! `.2`, ... Nothing is ever renamed: readers such as `tail -F` or fail2ban only ever
//! see new files appear. A line is never split between two files. The writer runs on
//! the log worker's thread, behind its queue, so a slow or full disk never holds up
//! the server: at worst lines are dropped.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// When to start a new file and how many to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// A file is closed once the next line would take it past this many bytes.
    pub max_size: u64,
    /// Files kept, the current one included; older ones are deleted.
    pub keep: usize,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_size: 100 << 20,
            keep: 10,
        }
    }
}

/// An [`io::Write`] that appends to the current log file and rotates it by day and size.
pub struct RotatingFile {
    dir: PathBuf,
    prefix: String,
    rotation: Rotation,
    clock: Box<dyn Fn() -> SystemTime + Send>,
    current: Option<Current>,
}

struct Current {
    file: File,
    name: String,
    day: i64,
    index: u32,
    size: u64,
}

impl RotatingFile {
    /// Writes `dir/prefix.DATE[.N]`; the first file is opened with the first line.
    pub fn new(dir: &Path, prefix: &str, rotation: Rotation) -> RotatingFile {
        RotatingFile::with_clock(dir, prefix, rotation, Box::new(SystemTime::now))
    }

    fn with_clock(
        dir: &Path,
        prefix: &str,
        rotation: Rotation,
        clock: Box<dyn Fn() -> SystemTime + Send>,
    ) -> RotatingFile {
        RotatingFile {
            dir: dir.to_path_buf(),
            prefix: prefix.to_owned(),
            rotation: Rotation {
                max_size: rotation.max_size.max(1),
                keep: rotation.keep.max(1),
            },
            clock,
            current: None,
        }
    }

    fn today(&self) -> i64 {
        match (self.clock)().duration_since(SystemTime::UNIX_EPOCH) {
            Ok(since) => (since.as_secs() / 86_400) as i64,
            // A clock before 1970 is wrong; any day will do.
            Err(_) => 0,
        }
    }

    /// The file the next `len` bytes go to, opening a new one if the day changed or the
    /// current one is full.
    fn file_for(&mut self, len: u64) -> io::Result<&mut Current> {
        let day = self.today();
        let next = match &self.current {
            Some(c) if c.day == day && (c.size == 0 || c.size + len <= self.rotation.max_size) => {
                None
            }
            Some(c) if c.day == day => Some(c.index + 1),
            // A new day, or the first line since start: continue that day's last file if
            // it has room (a restart does not start a new file each time).
            _ => {
                let last = self.last_index(day);
                let room = last.is_some_and(|index| {
                    let size = std::fs::metadata(self.dir.join(self.name(day, index)))
                        .map_or(0, |m| m.len());
                    size == 0 || size + len <= self.rotation.max_size
                });
                Some(match last {
                    Some(index) if room => index,
                    Some(index) => index + 1,
                    None => 0,
                })
            }
        };
        if let Some(index) = next {
            self.current = None;
            let name = self.name(day, index);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(&name))?;
            let size = file.metadata()?.len();
            self.current = Some(Current {
                file,
                name,
                day,
                index,
                size,
            });
            self.prune();
        }
        self.current
            .as_mut()
            .ok_or_else(|| io::Error::other("no log file open"))
    }

    fn name(&self, day: i64, index: u32) -> String {
        match index {
            0 => format!("{}.{}", self.prefix, date(day)),
            n => format!("{}.{}.{n}", self.prefix, date(day)),
        }
    }

    /// Our files in the folder, oldest first, as (date, index, name).
    fn files(&self) -> Vec<(String, u32, String)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter_map(|name| {
                let (date, index) = parse_name(&self.prefix, &name)?;
                Some((date.to_owned(), index, name))
            })
            .collect();
        files.sort();
        files
    }

    fn last_index(&self, day: i64) -> Option<u32> {
        let date = date(day);
        self.files()
            .into_iter()
            .filter(|(d, _, _)| *d == date)
            .map(|(_, index, _)| index)
            .max()
    }

    /// Deletes the oldest files past the number kept; never the current one, even if a
    /// clock set back makes it look older than the rest.
    fn prune(&self) {
        let current = self.current.as_ref().map(|c| c.name.as_str());
        let others: Vec<_> = self
            .files()
            .into_iter()
            .filter(|(_, _, name)| Some(name.as_str()) != current)
            .collect();
        let kept = self.rotation.keep - usize::from(current.is_some());
        let excess = others.len().saturating_sub(kept);
        for (_, _, name) in &others[..excess] {
            // A file that cannot be deleted is tried again at the next rotation.
            let _ = std::fs::remove_file(self.dir.join(name));
        }
    }
}

impl Write for RotatingFile {
    /// Writes all of `buf` (one log line) to one file, or fails.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let current = self.file_for(buf.len() as u64)?;
        let written = current.file.write_all(buf);
        // Counted even if only part was written: a short file is better than one that
        // grows past its size.
        current.size += buf.len() as u64;
        written.map(|()| buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.current {
            Some(current) => current.file.flush(),
            None => Ok(()),
        }
    }
}

/// `PREFIX.YYYY-MM-DD` or `PREFIX.YYYY-MM-DD.N`: its date and N (0 for none). Anything
/// else in the folder, such as a compressed `.gz`, is not ours to count or delete.
fn parse_name<'a>(prefix: &str, name: &'a str) -> Option<(&'a str, u32)> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('.')?;
    let date = rest.get(..10)?;
    let shape = date.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        _ => b.is_ascii_digit(),
    });
    if !shape {
        return None;
    }
    let index = match &rest[10..] {
        "" => 0,
        more => {
            let digits = more.strip_prefix('.')?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()?
        }
    };
    Some((date, index))
}

/// The UTC date `YYYY-MM-DD` of a day counted from 1970-01-01, in the proleptic
/// Gregorian calendar (eras of 400 years, each of 146,097 days).
fn date(day: i64) -> String {
    let shifted = day + 719_468; // days since 0000-03-01
    let era = shifted.div_euclid(146_097);
    let of_era = shifted.rem_euclid(146_097);
    let year_of_era = (of_era - of_era / 1460 + of_era / 36_524 - of_era / 146_096) / 365;
    let day_of_year = of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day_of_month = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day_of_month:02}")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    const DAY: u64 = 86_400;
    /// 2026-12-02, 10:00 UTC.
    const START: u64 = 20_789 * DAY + 36_000;

    struct Fixture {
        dir: tempfile::TempDir,
        now: Arc<AtomicU64>,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                dir: tempfile::tempdir().unwrap(),
                now: Arc::new(AtomicU64::new(START)),
            }
        }

        fn writer(&self, max_size: u64, keep: usize) -> RotatingFile {
            let now = Arc::clone(&self.now);
            RotatingFile::with_clock(
                self.dir.path(),
                "rsftpd.log",
                Rotation { max_size, keep },
                Box::new(move || {
                    SystemTime::UNIX_EPOCH + Duration::from_secs(now.load(Ordering::Relaxed))
                }),
            )
        }

        fn advance(&self, secs: u64) {
            self.now.fetch_add(secs, Ordering::Relaxed);
        }

        /// File names and contents, sorted by name.
        fn files(&self) -> Vec<(String, String)> {
            let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    (
                        e.file_name().into_string().unwrap(),
                        std::fs::read_to_string(e.path()).unwrap(),
                    )
                })
                .collect();
            files.sort();
            files
        }

        fn names(&self) -> Vec<String> {
            self.files().into_iter().map(|(name, _)| name).collect()
        }
    }

    fn line(n: usize) -> Vec<u8> {
        format!("line {n:03} {}\n", "x".repeat(30)).into_bytes()
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(20_789), "2026-12-02");
        assert_eq!(date(19_782), "2024-02-29");
        assert_eq!(date(11_017), "2000-03-01");
        assert_eq!(date(-1), "1969-12-31");
    }

    #[test]
    fn only_our_names_are_recognised() {
        let p = "rsftpd.log";
        assert_eq!(
            parse_name(p, "rsftpd.log.2026-12-02"),
            Some(("2026-12-02", 0))
        );
        assert_eq!(
            parse_name(p, "rsftpd.log.2026-12-02.12"),
            Some(("2026-12-02", 12))
        );
        for other in [
            "rsftpd.log",
            "rsftpd.log.2026-12-02.gz",
            "rsftpd.log.2026-12-02.",
            "rsftpd.log.2026-12-0x",
            "rsftpd.log.2026-12-02.1.gz",
            "other.log.2026-12-02",
            "rsftpd.logs.2026-12-02",
        ] {
            assert_eq!(parse_name(p, other), None, "{other}");
        }
    }

    #[test]
    fn rotates_before_a_line_would_pass_the_size() {
        let fx = Fixture::new();
        let mut log = fx.writer(100, 10);
        // Each line is 40 bytes: two fit in 100, a third does not.
        for n in 0..5 {
            log.write_all(&line(n)).unwrap();
        }
        let files = fx.files();
        let names: Vec<_> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "rsftpd.log.2026-12-02",
                "rsftpd.log.2026-12-02.1",
                "rsftpd.log.2026-12-02.2"
            ]
        );
        let text: Vec<_> = files.iter().map(|(_, t)| t.clone()).collect();
        assert_eq!(
            text,
            [
                format!("{}{}", show(0), show(1)),
                format!("{}{}", show(2), show(3)),
                show(4)
            ]
        );
        assert!(files.iter().all(|(_, t)| t.len() <= 100));
    }

    fn show(n: usize) -> String {
        String::from_utf8(line(n)).unwrap()
    }

    #[test]
    fn a_line_longer_than_the_size_gets_a_file_of_its_own() {
        let fx = Fixture::new();
        let mut log = fx.writer(10, 10);
        log.write_all(&line(0)).unwrap();
        log.write_all(&line(1)).unwrap();
        let files = fx.files();
        assert_eq!(files.len(), 2, "{files:?}");
        assert_eq!(files[0].1, show(0));
        assert_eq!(files[1].1, show(1));
    }

    #[test]
    fn a_new_day_starts_a_new_file() {
        let fx = Fixture::new();
        let mut log = fx.writer(1 << 20, 10);
        log.write_all(&line(0)).unwrap();
        fx.advance(DAY / 2); // 2026-12-02 22:00
        log.write_all(&line(1)).unwrap();
        fx.advance(DAY / 2); // 2026-12-03 10:00
        log.write_all(&line(2)).unwrap();
        assert_eq!(
            fx.files(),
            [
                (
                    "rsftpd.log.2026-12-02".to_owned(),
                    format!("{}{}", show(0), show(1))
                ),
                ("rsftpd.log.2026-12-03".to_owned(), show(2)),
            ]
        );
    }

    #[test]
    fn keeps_at_most_the_number_asked_and_deletes_the_oldest() {
        let fx = Fixture::new();
        std::fs::write(fx.dir.path().join("notes.txt"), "not a log").unwrap();
        std::fs::write(fx.dir.path().join("rsftpd.log.2026-11-30.gz"), "old").unwrap();
        let mut log = fx.writer(40, 3);
        // One file a line, and more than ten of one day, so that `.10` must count as
        // newer than `.9`.
        for n in 0..12 {
            log.write_all(&line(n)).unwrap();
            let names = fx.names();
            assert!(names.len() <= 3 + 2, "{names:?}");
        }
        assert_eq!(
            fx.names(),
            [
                "notes.txt",
                "rsftpd.log.2026-11-30.gz",
                "rsftpd.log.2026-12-02.10",
                "rsftpd.log.2026-12-02.11",
                "rsftpd.log.2026-12-02.9",
            ]
        );
        fx.advance(DAY);
        log.write_all(&line(12)).unwrap();
        assert_eq!(
            fx.names(),
            [
                "notes.txt",
                "rsftpd.log.2026-11-30.gz",
                "rsftpd.log.2026-12-02.10",
                "rsftpd.log.2026-12-02.11",
                "rsftpd.log.2026-12-03",
            ]
        );
        assert_eq!(fx.files()[4].1, show(12));
    }

    #[test]
    fn keeping_one_keeps_only_the_current_file() {
        let fx = Fixture::new();
        let mut log = fx.writer(40, 1);
        for n in 0..4 {
            log.write_all(&line(n)).unwrap();
        }
        assert_eq!(
            fx.files(),
            [("rsftpd.log.2026-12-02.3".to_owned(), show(3))]
        );
    }

    #[test]
    fn a_restart_continues_the_days_last_file_while_it_has_room() {
        let fx = Fixture::new();
        let mut log = fx.writer(100, 10);
        log.write_all(&line(0)).unwrap();
        drop(log);
        let mut log = fx.writer(100, 10);
        log.write_all(&line(1)).unwrap();
        drop(log);
        // Full now: the next start opens the next file.
        let mut log = fx.writer(100, 10);
        log.write_all(&line(2)).unwrap();
        assert_eq!(
            fx.files(),
            [
                (
                    "rsftpd.log.2026-12-02".to_owned(),
                    format!("{}{}", show(0), show(1))
                ),
                ("rsftpd.log.2026-12-02.1".to_owned(), show(2)),
            ]
        );
    }

    #[test]
    fn a_clock_set_back_never_deletes_the_file_being_written() {
        let fx = Fixture::new();
        let mut log = fx.writer(40, 2);
        log.write_all(&line(0)).unwrap();
        log.write_all(&line(1)).unwrap();
        fx.now.store(START - 10 * DAY, Ordering::Relaxed);
        log.write_all(&line(2)).unwrap();
        assert_eq!(
            fx.files(),
            [
                ("rsftpd.log.2026-11-22".to_owned(), show(2)),
                ("rsftpd.log.2026-12-02.1".to_owned(), show(1)),
            ]
        );
    }

    #[test]
    fn a_missing_folder_is_an_error_not_a_panic_and_writing_resumes() {
        let fx = Fixture::new();
        let gone = fx.dir.path().join("gone");
        let mut log = RotatingFile::new(&gone, "rsftpd.log", Rotation::default());
        assert!(log.write_all(&line(0)).is_err());
        std::fs::create_dir(&gone).unwrap();
        log.write_all(&line(1)).unwrap();
        log.flush().unwrap();
        let names: Vec<_> = std::fs::read_dir(&gone).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
