//! The `ls -l` line that SFTP v3 sends beside each name, which OpenSSH's `sftp` prints
//! as is for `ls -l`. Same layout as OpenSSH's own server, with the session's user name
//! as owner and group (the files belong to the server's account on disk, which is not
//! the user's business) and dates in UTC.

use crate::protocol::time::civil_from_days;
use crate::storage::Entry;

/// Six months, the age past which `ls` shows the year instead of the time.
const HALF_YEAR: i64 = 365 * 24 * 60 * 60 / 2;

/// `drwxr-xr-x    2 alice    alice        4096 Nov 21 12:00 name`.
pub fn longname(name: &[u8], entry: &Entry, owner: &str, now: i64) -> Vec<u8> {
    let owner_width = owner.len().max(8);
    let mut line = format!(
        "{} {:>3} {:<w$} {:<w$} {:>8} {} ",
        mode_string(entry.mode()),
        entry.nlink(),
        owner,
        owner,
        entry.size,
        date(entry.mtime, now),
        w = owner_width
    )
    .into_bytes();
    line.extend_from_slice(name);
    line
}

/// `strmode(3)`: the type letter, three permission triplets, and a trailing space.
pub fn mode_string(mode: u32) -> String {
    let kind = match mode & 0o170000 {
        0o040000 => 'd',
        0o120000 => 'l',
        0o020000 => 'c',
        0o060000 => 'b',
        0o010000 => 'p',
        0o140000 => 's',
        0o100000 => '-',
        _ => '?',
    };
    let bit = |mask: u32, c: char| if mode & mask != 0 { c } else { '-' };
    let special = |exec: bool, set: bool, on: char, off: char| match (exec, set) {
        (true, true) => on,
        (false, true) => off,
        (true, false) => 'x',
        (false, false) => '-',
    };
    let mut s = String::with_capacity(11);
    s.push(kind);
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(special(mode & 0o100 != 0, mode & 0o4000 != 0, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(special(mode & 0o010 != 0, mode & 0o2000 != 0, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(special(mode & 0o001 != 0, mode & 0o1000 != 0, 't', 'T'));
    s.push(' ');
    s
}

/// `%b %e %H:%M` within the last six months, else `%b %e  %Y`, in UTC.
pub fn date(mtime: i64, now: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = mtime.div_euclid(86_400);
    let secs = mtime.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let month = MONTHS[(month - 1) as usize];
    if now - HALF_YEAR < mtime && mtime <= now {
        format!(
            "{month} {day:>2} {:02}:{:02}",
            secs / 3600,
            secs % 3600 / 60
        )
    } else {
        format!("{month} {day:>2}  {year}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::EntryKind;

    #[test]
    fn dates_as_ls_shows_them() {
        // 2024-02-29 13:05:09 UTC
        let t = 1_709_211_909;
        assert_eq!(date(t, t + 60), "Feb 29 13:05");
        assert_eq!(date(t, t + 200 * 86_400), "Feb 29  2024");
        // In the future: the year.
        assert_eq!(date(t, t - 10), "Feb 29  2024");
        assert_eq!(date(0, 1), "Jan  1 00:00");
        assert_eq!(date(-1, 10_000_000_000), "Dec 31  1969");
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn modes_as_strmode_shows_them() {
        assert_eq!(mode_string(0o100644), "-rw-r--r-- ");
        assert_eq!(mode_string(0o040755), "drwxr-xr-x ");
        assert_eq!(mode_string(0o120777), "lrwxrwxrwx ");
        assert_eq!(mode_string(0o104755), "-rwsr-xr-x ");
        assert_eq!(mode_string(0o102644), "-rw-r-Sr-- ");
        assert_eq!(mode_string(0o041777), "drwxrwxrwt ");
        assert_eq!(mode_string(0o010600), "prw------- ");
    }

    #[test]
    fn lines_up_like_openssh() {
        let entry = Entry {
            name: "x".into(),
            kind: EntryKind::File,
            size: 6,
            mtime: 0,
            posix: Some(crate::storage::PosixDetails {
                mode: 0o100644,
                atime: 0,
                nlink: 1,
                uid: 0,
                gid: 0,
            }),
        };
        assert_eq!(
            String::from_utf8(longname(b"hello.txt", &entry, "alice", 60)).unwrap(),
            "-rw-r--r--    1 alice    alice           6 Jan  1 00:00 hello.txt"
        );
        let long = longname(b"f", &entry, "a_very_long_name", 60);
        assert!(
            String::from_utf8(long)
                .unwrap()
                .contains(" a_very_long_name a_very_long_name ")
        );
    }
}
