//! How listings look: `ls -l` lines that a script can parse (type, size, ISO-8601 time,
//! name), names in columns for a person at a terminal, one per line for a pipe.

use std::borrow::Cow;

use crate::auth::format_size;
use crate::protocol::time::civil_from_days;
use crate::protocol::{EntryLine, EntryType, quote};

/// A name fit to print on one line: a name with control characters (a newline, an
/// escape sequence) is shown quoted with escapes, as the protocol writes it.
pub fn display_name(name: &str) -> Cow<'_, str> {
    if name.chars().any(char::is_control) {
        quote(name)
    } else {
        Cow::Borrowed(name)
    }
}

/// Unix seconds as ISO-8601 in UTC: `2026-01-02T03:04:05Z`.
pub fn iso_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// One `ls -l` line: `f   1048576 2026-01-02T03:04:05Z name`. With `human`, sizes are
/// in binary units (`1 MiB`).
pub fn long_line(entry: &EntryLine, human: bool) -> String {
    let size = if human {
        format!("{:>10}", format_size(entry.size))
    } else {
        format!("{:>12}", entry.size)
    };
    format!(
        "{} {size} {} {}",
        entry.kind.letter(),
        iso_time(entry.mtime),
        display_name(&entry.name)
    )
}

/// The name as `ls` shows it at a terminal: directories end in `/`.
pub fn short_name(entry: &EntryLine) -> String {
    let name = display_name(&entry.name);
    if entry.kind == EntryType::Dir {
        format!("{name}/")
    } else {
        name.into_owned()
    }
}

/// Lays names out in columns, down then across, as `ls` does, within `width` cells.
pub fn columns(names: &[String], width: usize) -> Vec<String> {
    if names.is_empty() {
        return Vec::new();
    }
    let widths: Vec<usize> = names
        .iter()
        .map(|n| console::measure_text_width(n))
        .collect();
    let cell = widths.iter().copied().max().unwrap_or(0) + 2;
    let cols = (width / cell).clamp(1, names.len());
    let rows = names.len().div_ceil(cols);
    let mut lines = Vec::with_capacity(rows);
    for row in 0..rows {
        let mut line = String::new();
        for col in 0..cols {
            let i = col * rows + row;
            let Some(name) = names.get(i) else { break };
            line.push_str(name);
            if col + 1 < cols && i + rows < names.len() {
                line.push_str(&" ".repeat(cell - widths[i]));
            }
        }
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_in_utc() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_time(1_763_726_400), "2025-11-21T12:00:00Z");
        assert_eq!(iso_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso_time(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn long_lines_parse_back() {
        let entry = EntryLine {
            kind: EntryType::File,
            size: 1_048_576,
            mtime: 1_763_726_400,
            name: "a b.txt".into(),
        };
        let line = long_line(&entry, false);
        assert_eq!(line, "f      1048576 2025-11-21T12:00:00Z a b.txt");
        let fields: Vec<&str> = line.split_whitespace().take(3).collect();
        assert_eq!(fields, ["f", "1048576", "2025-11-21T12:00:00Z"]);
        assert!(line.ends_with(" a b.txt"));
        assert!(long_line(&entry, true).contains("1 MiB"));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(display_name("plain name"), "plain name");
        assert_eq!(display_name("bad\nname"), "\"bad\\nname\"");
    }

    #[test]
    fn lays_out_columns_down_then_across() {
        let names: Vec<String> = ["a", "bb", "c", "dd", "e"].map(String::from).into();
        assert_eq!(columns(&names, 12), ["a   c   e", "bb  dd"]);
        assert_eq!(columns(&names, 1).len(), 5);
        assert!(columns(&[], 80).is_empty());
    }
}
