//! The shell's commands: one table that parsing, `help`, `rsftp --help` and completion
//! all read, so they cannot disagree.

use super::ShellError;
use super::words::Word;

/// Every command the shell knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    Ls,
    Cd,
    Pwd,
    Mkdir,
    Rmdir,
    Rm,
    Mv,
    Get,
    Put,
    Info,
    Lcd,
    Lls,
    Lpwd,
    Mirror,
    Help,
    Exit,
}

/// What an argument names, for completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    Remote,
    Local,
    Command,
}

/// Where a command works, for grouping in `help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Remote,
    Local,
    Session,
}

/// One command's description.
pub struct Spec {
    pub cmd: Cmd,
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub group: Group,
    pub usage: &'static str,
    pub summary: &'static str,
    pub details: &'static str,
    /// The one-letter options it takes.
    pub flags: &'static str,
    /// The one-letter options that take a value (`-j 4` or `-j4`).
    pub valued: &'static str,
    /// The long options it takes (`--delete`), each with whether it takes a value
    /// (`--exclude GLOB` or `--exclude=GLOB`).
    pub long: &'static [(&'static str, bool)],
    pub min_args: usize,
    pub max_args: Option<usize>,
    /// What each argument names; the last kind repeats.
    pub args: &'static [ArgKind],
}

pub const COMMANDS: &[Spec] = &[
    Spec {
        cmd: Cmd::Ls,
        name: "ls",
        aliases: &["dir"],
        group: Group::Remote,
        usage: "ls [-lh] [PATH]",
        summary: "list a remote directory, a file, or the names matching a pattern",
        details: "-l  one line per entry: type (d, f, l for a link, o other), size in bytes,\n    \
                  modification time (ISO-8601, UTC) and name\n\
                  -h  with -l, sizes in KiB, MiB, GiB\n\
                  At a terminal names are laid out in columns, directories ending in /;\n\
                  otherwise one name per line.",
        flags: "lh",
        valued: "",
        long: &[],
        min_args: 0,
        max_args: Some(1),
        args: &[ArgKind::Remote],
    },
    Spec {
        cmd: Cmd::Cd,
        name: "cd",
        aliases: &[],
        group: Group::Remote,
        usage: "cd [PATH]",
        summary: "change the remote directory (no PATH: your home, /)",
        details: "",
        flags: "",
        valued: "",
        long: &[],
        min_args: 0,
        max_args: Some(1),
        args: &[ArgKind::Remote],
    },
    Spec {
        cmd: Cmd::Pwd,
        name: "pwd",
        aliases: &[],
        group: Group::Remote,
        usage: "pwd",
        summary: "print the remote directory",
        details: "",
        flags: "",
        valued: "",
        long: &[],
        min_args: 0,
        max_args: Some(0),
        args: &[],
    },
    Spec {
        cmd: Cmd::Mkdir,
        name: "mkdir",
        aliases: &[],
        group: Group::Remote,
        usage: "mkdir PATH...",
        summary: "make remote directories (the parent must exist)",
        details: "",
        flags: "",
        valued: "",
        long: &[],
        min_args: 1,
        max_args: None,
        args: &[ArgKind::Remote],
    },
    Spec {
        cmd: Cmd::Rmdir,
        name: "rmdir",
        aliases: &[],
        group: Group::Remote,
        usage: "rmdir PATH...",
        summary: "remove empty remote directories",
        details: "",
        flags: "",
        valued: "",
        long: &[],
        min_args: 1,
        max_args: None,
        args: &[ArgKind::Remote],
    },
    Spec {
        cmd: Cmd::Rm,
        name: "rm",
        aliases: &["del"],
        group: Group::Remote,
        usage: "rm PATH...",
        summary: "remove remote files (patterns allowed: rm *.tmp)",
        details: "Removes files and symbolic links, not directories (see rmdir).",
        flags: "",
        valued: "",
        long: &[],
        min_args: 1,
        max_args: None,
        args: &[ArgKind::Remote],
    },
    Spec {
        cmd: Cmd::Mv,
        name: "mv",
        aliases: &["rename"],
        group: Group::Remote,
        usage: "mv FROM TO",
        summary: "rename or move a remote file or folder, or move it into a folder",
        details: "If TO is a folder (or a link to one), FROM moves into it under its own\n\
                  name: mv a.txt docs moves a.txt to docs/a.txt. A TO ending in / must be\n\
                  a folder: mv a.txt nope/ is refused if nope is a file or is missing.\n\
                  FROM may be a pattern that matches one name.\n\
                  What is already at the final name is treated as rename(2) does: a file\n\
                  there is replaced by a file, atomically, and an empty folder by a\n\
                  folder; anything else is refused, and nothing moves (a file onto a\n\
                  folder: is a directory; a folder onto a file: not a directory; a folder\n\
                  onto a folder that holds something: directory not empty).",
        flags: "",
        valued: "",
        long: &[],
        min_args: 2,
        max_args: Some(2),
        args: &[ArgKind::Remote],
    },
    Spec {
        cmd: Cmd::Get,
        name: "get",
        aliases: &[],
        group: Group::Remote,
        usage: "get [-rf] REMOTE [LOCAL]",
        summary: "download files, resuming an interrupted download",
        details: "REMOTE may be a pattern (get *.log). LOCAL defaults to the local\n\
                  directory; with several files, or a directory, it names the directory\n\
                  to put them in.\n\
                  -r  download a directory and everything in it\n\
                  -f  replace a local file that differs (without -f an existing file is\n    \
                  never touched; one that is already identical is left as it is)\n\
                  Data goes to NAME.part first; an interrupted download keeps it, and the\n\
                  next get continues from it once the MD5 of what it holds matches the\n\
                  server's file. Every download is verified by MD5 before NAME appears.\n\
                  -j N  move N files at once (default 4), each over its own session",
        flags: "rf",
        valued: "j",
        long: &[],
        min_args: 1,
        max_args: Some(2),
        args: &[ArgKind::Remote, ArgKind::Local],
    },
    Spec {
        cmd: Cmd::Put,
        name: "put",
        aliases: &[],
        group: Group::Remote,
        usage: "put [-r] LOCAL [REMOTE]",
        summary: "upload files, resuming an interrupted upload",
        details: "LOCAL may be a pattern (put *.txt). REMOTE defaults to the remote\n\
                  directory; with several files, or a path ending in /, it names the\n\
                  directory to put them in. A remote file is replaced, atomically.\n\
                  -r  upload a directory and everything in it\n\
                  The server keeps what an interrupted upload sent; the next put of the\n\
                  same file continues from there once the MD5 of that part matches. If\n\
                  the server still holds that upload (its client was just killed), put\n\
                  says so and waits up to 10 s for it to be released. A file the server\n\
                  already has, identical, is not sent again. Every upload is verified by\n\
                  MD5 before the file appears on the server.\n\
                  -j N  move N files at once (default 4), each over its own session",
        flags: "r",
        valued: "j",
        long: &[],
        min_args: 1,
        max_args: Some(2),
        args: &[ArgKind::Local, ArgKind::Remote],
    },
    Spec {
        cmd: Cmd::Mirror,
        name: "mirror",
        aliases: &[],
        group: Group::Remote,
        usage: "mirror [-R] [-j N] [--delete] [--dry-run] [--exclude GLOB] [--checksum] SOURCE [TARGET]",
        summary: "make a folder a copy of another: only what differs is sent",
        details: "Without -R, SOURCE is a remote folder and TARGET a local one (default: a\n\
                  local folder named as SOURCE); with -R, SOURCE is local and TARGET remote.\n\
                  A file is copied when the target has none, or one of another size, or\n\
                  an older one (with --checksum: whose MD5 differs). Downloaded files take\n\
                  the server's modification time; an upload over rsftp keeps its own,\n\
                  which is newer. Interrupted files resume; every file is verified.\n\
                  --delete    remove what the target has and the source does not\n\
                  --dry-run   say what would be done, and change nothing\n\
                  --exclude   leave out names (or relative paths) matching GLOB; repeatable\n\
                  --checksum  compare files of the same size by hash, not by time\n\
                  Ends with one line: copied, skipped, deleted, failed, and the time; the\n\
                  command fails if any file did.\n\
                  -j N        copy N files at once (default 4)",
        flags: "R",
        valued: "j",
        long: &[
            ("delete", false),
            ("dry-run", false),
            ("exclude", true),
            ("checksum", false),
        ],
        min_args: 1,
        max_args: Some(2),
        args: &[ArgKind::Remote, ArgKind::Local],
    },
    Spec {
        cmd: Cmd::Info,
        name: "info",
        aliases: &["df"],
        group: Group::Remote,
        usage: "info",
        summary: "show your quota: space used, the limit, and what is free",
        details: "",
        flags: "",
        valued: "",
        long: &[],
        min_args: 0,
        max_args: Some(0),
        args: &[],
    },
    Spec {
        cmd: Cmd::Lcd,
        name: "lcd",
        aliases: &[],
        group: Group::Local,
        usage: "lcd [PATH]",
        summary: "change the local directory (no PATH: your home directory)",
        details: "",
        flags: "",
        valued: "",
        long: &[],
        min_args: 0,
        max_args: Some(1),
        args: &[ArgKind::Local],
    },
    Spec {
        cmd: Cmd::Lls,
        name: "lls",
        aliases: &[],
        group: Group::Local,
        usage: "lls [-lh] [PATH]",
        summary: "list a local directory, as ls does",
        details: "",
        flags: "lh",
        valued: "",
        long: &[],
        min_args: 0,
        max_args: Some(1),
        args: &[ArgKind::Local],
    },
    Spec {
        cmd: Cmd::Lpwd,
        name: "lpwd",
        aliases: &[],
        group: Group::Local,
        usage: "lpwd",
        summary: "print the local directory",
        details: "",
        flags: "",
        valued: "",
        long: &[],
        min_args: 0,
        max_args: Some(0),
        args: &[],
    },
    Spec {
        cmd: Cmd::Help,
        name: "help",
        aliases: &["?"],
        group: Group::Session,
        usage: "help [COMMAND]",
        summary: "list the commands, or explain one",
        details: "",
        flags: "",
        valued: "",
        long: &[],
        min_args: 0,
        max_args: Some(1),
        args: &[ArgKind::Command],
    },
    Spec {
        cmd: Cmd::Exit,
        name: "exit",
        aliases: &["quit", "bye"],
        group: Group::Session,
        usage: "exit",
        summary: "leave (also quit, bye, or Ctrl-D)",
        details: "",
        flags: "",
        valued: "",
        long: &[],
        min_args: 0,
        max_args: Some(0),
        args: &[],
    },
];

/// The command a name (or alias) stands for.
pub fn find(name: &str) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|spec| spec.name == name || spec.aliases.contains(&name))
}

/// A command ready to run: its spec, the options given, and its arguments.
pub struct Invocation {
    pub spec: &'static Spec,
    pub flags: String,
    /// One-letter options with values, in the order given.
    pub short_values: Vec<(char, String)>,
    /// Long options in the order given, with their values.
    pub long: Vec<(&'static str, Option<String>)>,
    pub args: Vec<Word>,
}

impl Invocation {
    pub fn has(&self, flag: char) -> bool {
        self.flags.contains(flag)
    }

    /// The last value given to the one-letter option `-flag`.
    pub fn value(&self, flag: char) -> Option<&str> {
        self.short_values
            .iter()
            .rev()
            .find(|(f, _)| *f == flag)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the long option `--name` was given.
    pub fn has_long(&self, name: &str) -> bool {
        self.long.iter().any(|(n, _)| *n == name)
    }

    /// Every value given to `--name`, in order.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.long
            .iter()
            .filter(|(n, _)| *n == name)
            .filter_map(|(_, v)| v.clone())
            .collect()
    }
}

/// Reads the command name and options from a split line. `--` ends the options, so
/// `rm -- -odd-name` works.
pub fn parse(words: Vec<Word>) -> Result<Invocation, ShellError> {
    let mut words = words.into_iter();
    let Some(name) = words.next() else {
        return Err(ShellError::Usage("empty command"));
    };
    let spec = find(&name.text).ok_or_else(|| ShellError::UnknownCommand(name.text.clone()))?;
    let mut flags = String::new();
    let mut long = Vec::new();
    let mut short_values = Vec::new();
    let mut args = Vec::new();
    let mut options_done = false;
    while let Some(word) = words.next() {
        if !options_done && word.text == "--" {
            options_done = true;
            continue;
        }
        if !options_done && let Some(given) = word.text.strip_prefix("--") {
            let (name, inline) = match given.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (given, None),
            };
            let Some(&(known, takes_value)) = spec.long.iter().find(|(n, _)| *n == name) else {
                return Err(ShellError::UnknownLongOption {
                    name: name.to_owned(),
                    usage: spec.usage,
                });
            };
            let value = match (takes_value, inline) {
                (true, Some(value)) => Some(value),
                (true, None) => Some(
                    words
                        .next()
                        .map(|w| w.text)
                        .ok_or(ShellError::Usage(spec.usage))?,
                ),
                (false, None) => None,
                (false, Some(_)) => return Err(ShellError::Usage(spec.usage)),
            };
            long.push((known, value));
            continue;
        }
        if !options_done && word.text.len() > 1 && word.text.starts_with('-') {
            let mut chars = word.text.chars().skip(1);
            while let Some(flag) = chars.next() {
                if spec.valued.contains(flag) {
                    let rest: String = chars.by_ref().collect();
                    let value = if rest.is_empty() {
                        words
                            .next()
                            .map(|w| w.text)
                            .ok_or(ShellError::Usage(spec.usage))?
                    } else {
                        rest
                    };
                    short_values.push((flag, value));
                    break;
                }
                if !spec.flags.contains(flag) {
                    return Err(ShellError::UnknownOption {
                        flag,
                        usage: spec.usage,
                    });
                }
                flags.push(flag);
            }
            continue;
        }
        options_done = true;
        args.push(word);
    }
    if args.len() < spec.min_args || spec.max_args.is_some_and(|max| args.len() > max) {
        return Err(ShellError::Usage(spec.usage));
    }
    Ok(Invocation {
        spec,
        flags,
        short_values,
        long,
        args,
    })
}

/// The text of `help`: every command, grouped.
pub fn overview() -> String {
    let mut text = String::new();
    for (group, title) in [
        (Group::Remote, "On the server:"),
        (Group::Local, "On this machine:"),
        (Group::Session, "Other:"),
    ] {
        text.push_str(title);
        text.push('\n');
        for spec in COMMANDS.iter().filter(|s| s.group == group) {
            text.push_str(&format!("  {:<26}{}\n", spec.usage, spec.summary));
        }
    }
    text.push_str(
        "Paths with spaces go in quotes or take a backslash: get 'my file' or get my\\ file.\n\
         Patterns (*, ?, [a-z]) match names in one directory. Type help COMMAND for more.",
    );
    text
}

/// The text of `help COMMAND`.
pub fn details(spec: &Spec) -> String {
    let mut text = format!("usage: {}\n{}", spec.usage, spec.summary);
    if !spec.aliases.is_empty() {
        text.push_str(&format!(" (also: {})", spec.aliases.join(", ")));
    }
    if !spec.details.is_empty() {
        text.push('\n');
        text.push_str(spec.details);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::shell::words::split_line;

    fn parse_line(line: &str) -> Result<Invocation, ShellError> {
        parse(split_line(line).unwrap())
    }

    #[test]
    fn reads_options_and_arguments() {
        let inv = parse_line("get -r -f docs out").unwrap();
        assert_eq!(inv.spec.cmd, Cmd::Get);
        assert!(inv.has('r') && inv.has('f'));
        assert_eq!(inv.args.len(), 2);
        let inv = parse_line("get -rf docs").unwrap();
        assert_eq!(inv.flags, "rf");
        let inv = parse_line("rm -- -odd").unwrap();
        assert_eq!(inv.args[0].text, "-odd");
        assert_eq!(parse_line("quit").unwrap().spec.cmd, Cmd::Exit);
        let inv = parse_line("mirror -R --delete --exclude '*.tmp' --exclude=b src dst").unwrap();
        assert!(inv.has('R') && inv.has_long("delete") && !inv.has_long("dry-run"));
        assert_eq!(inv.values("exclude"), ["*.tmp", "b"]);
        assert_eq!(inv.args.len(), 2);
        assert_eq!(parse_line("put -rj 8 a").unwrap().value('j'), Some("8"));
        assert_eq!(parse_line("get -j2 a").unwrap().value('j'), Some("2"));
        assert!(parse_line("get a -j").is_ok());
        assert!(matches!(parse_line("get -j"), Err(ShellError::Usage(_))));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        assert!(matches!(
            parse_line("frobnicate"),
            Err(ShellError::UnknownCommand(_))
        ));
        assert!(matches!(
            parse_line("ls -z"),
            Err(ShellError::UnknownOption { flag: 'z', .. })
        ));
        assert!(matches!(parse_line("mv a"), Err(ShellError::Usage(_))));
        assert!(matches!(
            parse_line("mirror --frob a"),
            Err(ShellError::UnknownLongOption { .. })
        ));
        assert!(matches!(
            parse_line("mirror --exclude"),
            Err(ShellError::Usage(_))
        ));
        assert!(matches!(
            parse_line("ls --delete"),
            Err(ShellError::UnknownLongOption { .. })
        ));
        assert!(matches!(parse_line("pwd x"), Err(ShellError::Usage(_))));
    }

    #[test]
    fn every_command_is_in_the_help() {
        let text = overview();
        for spec in COMMANDS {
            assert!(text.contains(spec.usage), "{}", spec.name);
            assert!(details(spec).starts_with("usage: "));
        }
        let names: Vec<&str> = COMMANDS
            .iter()
            .flat_map(|s| std::iter::once(s.name).chain(s.aliases.iter().copied()))
            .collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "no name is used twice");
    }
}
