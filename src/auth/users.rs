//! The accounts file, `users.toml`: who may log in, how, and with how much space.
//!
//! Reading is strict, because a typo in an accounts file should stop the server rather
//! than quietly lock someone out or let someone in: unknown fields, wrong types, bad
//! names, sizes, keys and hashes are all errors, and every error names the file and line.
//!
//! ```toml
//! [users.alice]
//! password = "$argon2id$v=19$m=19456,t=2,p=1$..."   # optional PHC string
//! keys = ["ssh-ed25519 AAAA... alice@laptop"]        # optional authorized_keys lines
//! authorized_keys_file = "alice.keys"                 # optional, next to users.toml
//! quota = "1GiB"                                      # required
//! max_sessions = 4                                    # optional
//! max_files = 100000                                  # optional
//! ```
//!
//! The commented file a first start writes is `auth/starter.rs`.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use toml_edit::{Document, Item, Key, TableLike};

use super::keys::{self, AuthorizedKey, KeyError};
use super::password::{AuthError, PasswordHash};
use super::size::{SizeError, parse_size};

/// The longest user name accepted.
pub const MAX_USER_NAME_LEN: usize = 32;

/// A valid user name: 1 to 32 of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-`.
///
/// A name is used as a directory name under `storage/`, so it can never be empty, `.`,
/// `..`, contain `/` or control characters, or look like a hidden file or an option.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserName(String);

/// Why a user name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UserNameError {
    #[error("user name is empty")]
    Empty,
    #[error("user name is {0} bytes long; the limit is {MAX_USER_NAME_LEN}")]
    TooLong(usize),
    #[error("user name {0:?} must not start with '.' or '-'")]
    BadStart(String),
    #[error("user name {name:?} contains {bad:?}; use only letters, digits, '.', '_' and '-'")]
    BadChar { name: String, bad: char },
}

impl UserName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for UserName {
    type Error = UserNameError;

    fn try_from(name: &str) -> Result<Self, Self::Error> {
        // Length first, so that the other errors never echo a huge name.
        if name.is_empty() {
            return Err(UserNameError::Empty);
        }
        if name.len() > MAX_USER_NAME_LEN {
            return Err(UserNameError::TooLong(name.len()));
        }
        if name.starts_with(['.', '-']) {
            return Err(UserNameError::BadStart(name.to_owned()));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if let Some(bad) = name.chars().find(|&c| !allowed(c)) {
            return Err(UserNameError::BadChar {
                name: name.to_owned(),
                bad,
            });
        }
        Ok(Self(name.to_owned()))
    }
}

impl FromStr for UserName {
    type Err = UserNameError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::try_from(name)
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for UserName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Lets a `BTreeMap<UserName, _>` be searched with a `&str`; sound because `UserName`
/// orders and compares exactly as its string does.
impl Borrow<str> for UserName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// One account from `users.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAccount {
    pub name: UserName,
    /// `None`: password login is refused.
    pub password_hash: Option<PasswordHash>,
    /// From `keys` and then `authorized_keys_file`, in file order.
    pub keys: Vec<AuthorizedKey>,
    /// Bytes the user's files may occupy.
    pub quota: u64,
    /// Concurrent sessions for this user; `None`: only the global limit applies.
    pub max_sessions: Option<u32>,
    /// Files, folders and links the user may have, partial uploads included; `None`: no
    /// limit but the quota.
    pub max_files: Option<u64>,
}

/// All accounts, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsersConfig {
    pub users: BTreeMap<UserName, UserAccount>,
}

/// Where in which file a problem is. Shown as `file:line` or `file:line:column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters; only for TOML syntax errors.
    pub column: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)?;
        if let Some(column) = self.column {
            write!(f, ":{column}")?;
        }
        Ok(())
    }
}

/// What is wrong at a [`Location`] of `users.toml` (or of an `authorized_keys_file`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsersProblem {
    #[error("TOML syntax: {0}")]
    Syntax(String),
    #[error("unknown field {field:?} (expected {expected})")]
    UnknownField {
        field: String,
        expected: &'static str,
    },
    #[error("{field}: expected {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("missing required field {0:?}")]
    MissingField(&'static str),
    #[error("{0}")]
    BadUserName(UserNameError),
    #[error(
        "name differs from user {0:?} only in letter case; \
         their homes would be the same folder on a case-insensitive file system"
    )]
    NameClash(String),
    #[error("quota {value:?}: {error}")]
    BadQuota { value: String, error: SizeError },
    #[error("max_sessions must be from 1 to {max}, not {0}", max = u32::MAX)]
    BadMaxSessions(i64),
    #[error("max_files must be at least 1, not {0}")]
    BadMaxFiles(i64),
    #[error("password: {0}")]
    BadPasswordHash(AuthError),
    #[error("keys[{index}]: {error}")]
    BadKey { index: usize, error: KeyError },
    #[error("authorized_keys_file: {0}")]
    BadKeyInFile(KeyError),
    #[error("authorized_keys_file: cannot read {}: {error}", path.display())]
    KeysFileUnreadable { path: PathBuf, error: io::Error },
}

/// Why `users.toml` could not be read or written.
///
/// `Invalid` prints everything on one line, e.g.
/// `users.toml:7: user "bob": quota "12 parsecs": unknown unit "parsecs" (...)`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsersError {
    #[error("I/O error on {}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{at}: {}{problem}", user.as_deref().map(|u| format!("user {u:?}: ")).unwrap_or_default())]
    Invalid {
        at: Location,
        /// The account the problem is in, when there is one.
        user: Option<String>,
        /// Boxed to keep `Result<_, UsersError>` small.
        problem: Box<UsersProblem>,
    },
    #[error("cannot hash the starter account's password")]
    StarterPassword(#[source] AuthError),
}

const USER_FIELDS: &str = "password, keys, authorized_keys_file, quota, max_sessions or max_files";

impl UsersConfig {
    /// Reads and checks `users.toml` at `path`, and any `authorized_keys_file` it names.
    pub fn load(path: &Path) -> Result<Self, UsersError> {
        let text = fs::read_to_string(path).map_err(|source| UsersError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Checks the text of a `users.toml`. `origin` is the file's path: it appears in error
    /// messages, and each `authorized_keys_file` is read relative to its folder.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, UsersError> {
        let source = Source { text, file: origin };
        let doc = Document::parse(text).map_err(|err| UsersError::Invalid {
            at: source.location(err.span()),
            user: None,
            problem: Box::new(UsersProblem::Syntax(err.message().trim().to_owned())),
        })?;
        let root = doc.as_table();
        if let Some((field, _)) = root.iter().find(|&(field, _)| field != "users") {
            return Err(source.invalid(
                key_span(root, field),
                None,
                UsersProblem::UnknownField {
                    field: field.to_owned(),
                    expected: "[users.<name>] tables",
                },
            ));
        }
        let Some(users_item) = root.get("users") else {
            return Ok(Self::default());
        };
        let table = as_table(&source, users_item, "users", None)?;

        let mut users = BTreeMap::new();
        let mut by_folded_name: HashMap<String, UserName> = HashMap::new();
        for (raw_name, item) in table.iter() {
            let name_span = key_span(table, raw_name);
            let name = UserName::try_from(raw_name).map_err(|err| {
                source.invalid(name_span.clone(), None, UsersProblem::BadUserName(err))
            })?;
            let folded = name.as_str().to_ascii_lowercase();
            if let Some(other) = by_folded_name.insert(folded, name.clone()) {
                return Err(source.invalid(
                    name_span,
                    Some(&name),
                    UsersProblem::NameClash(other.to_string()),
                ));
            }
            let account = parse_account(&source, name, name_span, item)?;
            users.insert(account.name.clone(), account);
        }
        Ok(Self { users })
    }

    pub fn get(&self, name: &str) -> Option<&UserAccount> {
        self.users.get(name)
    }

    /// The accounts, in name order.
    pub fn iter(&self) -> impl Iterator<Item = &UserAccount> {
        self.users.values()
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Things that are allowed but probably not meant: accounts nobody can log in to, and
    /// key options that rsftpd ignores.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for account in self.iter() {
            if account.password_hash.is_none() && account.keys.is_empty() {
                warnings.push(format!(
                    "user {:?} has no password and no keys, so nobody can log in as them",
                    account.name.as_str()
                ));
            }
            for key in &account.keys {
                if let Some(options) = key.options() {
                    warnings.push(format!(
                        "user {:?}: key {} has options {options:?}, which rsftpd ignores",
                        account.name.as_str(),
                        key.fingerprint()
                    ));
                }
            }
        }
        warnings
    }
}

/// The text being parsed and its file name, to turn byte spans into locations.
struct Source<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Source<'_> {
    fn location(&self, span: Option<Range<usize>>) -> Location {
        // Spans are always present in a parsed document; the start of the file is a
        // harmless stand-in if one ever is not.
        let offset = span.map_or(0, |span| span.start).min(self.text.len());
        let before = &self.text.as_bytes()[..offset];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        Location {
            file: self.file.to_owned(),
            line: before.iter().filter(|&&b| b == b'\n').count() + 1,
            // Count characters, not bytes: skip UTF-8 continuation bytes.
            column: Some(
                before[line_start..]
                    .iter()
                    .filter(|&&b| b & 0xC0 != 0x80)
                    .count()
                    + 1,
            ),
        }
    }

    fn invalid(
        &self,
        span: Option<Range<usize>>,
        user: Option<&UserName>,
        problem: UsersProblem,
    ) -> UsersError {
        // Only syntax errors show a column: elsewhere the line names the field, and a
        // column would point at the start of a value, which says nothing more.
        let mut at = self.location(span);
        at.column = None;
        UsersError::Invalid {
            at,
            user: user.map(|name| name.to_string()),
            problem: Box::new(problem),
        }
    }
}

fn key_span(table: &dyn TableLike, key: &str) -> Option<Range<usize>> {
    table.key(key).and_then(Key::span)
}

fn as_table<'a>(
    source: &Source<'_>,
    item: &'a Item,
    field: &str,
    user: Option<&UserName>,
) -> Result<&'a dyn TableLike, UsersError> {
    item.as_table_like().ok_or_else(|| {
        source.invalid(
            item.span(),
            user,
            UsersProblem::WrongType {
                field: field.to_owned(),
                expected: "a table",
                found: item.type_name(),
            },
        )
    })
}

fn parse_account(
    source: &Source<'_>,
    name: UserName,
    name_span: Option<Range<usize>>,
    item: &Item,
) -> Result<UserAccount, UsersError> {
    let fields = as_table(source, item, &format!("users.{name}"), Some(&name))?;
    let invalid = |span, problem| source.invalid(span, Some(&name), problem);
    let wrong_type = |span, field: &str, expected, found| {
        invalid(
            span,
            UsersProblem::WrongType {
                field: field.to_owned(),
                expected,
                found,
            },
        )
    };

    let mut account = UserAccount {
        name: name.clone(),
        password_hash: None,
        keys: Vec::new(),
        quota: 0,
        max_sessions: None,
        max_files: None,
    };
    let mut quota = None;
    for (field, value) in fields.iter() {
        let span = value.span();
        match field {
            "password" => {
                let text = value.as_str().ok_or_else(|| {
                    wrong_type(span.clone(), field, "a string", value.type_name())
                })?;
                let hash = PasswordHash::parse(text)
                    .map_err(|err| invalid(span, UsersProblem::BadPasswordHash(err)))?;
                account.password_hash = Some(hash);
            }
            "keys" => {
                let lines = value.as_array().ok_or_else(|| {
                    wrong_type(span, field, "an array of strings", value.type_name())
                })?;
                for (index, element) in lines.iter().enumerate() {
                    let line = element.as_str().ok_or_else(|| {
                        let field = format!("keys[{index}]");
                        wrong_type(element.span(), &field, "a string", element.type_name())
                    })?;
                    let key = AuthorizedKey::parse_line(line).map_err(|error| {
                        invalid(element.span(), UsersProblem::BadKey { index, error })
                    })?;
                    account.keys.extend(key);
                }
            }
            "authorized_keys_file" => {
                let relative = value.as_str().ok_or_else(|| {
                    wrong_type(span.clone(), field, "a string", value.type_name())
                })?;
                let folder = source.file.parent().unwrap_or(Path::new(""));
                let path = folder.join(relative);
                let text = fs::read_to_string(&path).map_err(|error| {
                    let path = path.clone();
                    invalid(span, UsersProblem::KeysFileUnreadable { path, error })
                })?;
                let keys =
                    keys::parse_file_text(&text).map_err(|(line, error)| UsersError::Invalid {
                        at: Location {
                            file: path,
                            line,
                            column: None,
                        },
                        user: Some(name.to_string()),
                        problem: Box::new(UsersProblem::BadKeyInFile(error)),
                    })?;
                account.keys.extend(keys);
            }
            "quota" => {
                // A bare integer is a byte count; a string is a human size.
                let parsed = match (value.as_str(), value.as_integer()) {
                    (Some(text), _) => parse_size(text).map_err(|e| (text.to_owned(), e)),
                    (None, Some(n)) => {
                        u64::try_from(n).map_err(|_| (n.to_string(), SizeError::Negative))
                    }
                    (None, None) => {
                        let found = value.type_name();
                        return Err(wrong_type(span, field, "a size such as \"1GiB\"", found));
                    }
                };
                let bytes = parsed.map_err(|(value, error)| {
                    invalid(span, UsersProblem::BadQuota { value, error })
                })?;
                quota = Some(bytes);
            }
            "max_sessions" => {
                let n = value.as_integer().ok_or_else(|| {
                    wrong_type(span.clone(), field, "an integer", value.type_name())
                })?;
                let n = u32::try_from(n)
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| invalid(span, UsersProblem::BadMaxSessions(n)))?;
                account.max_sessions = Some(n);
            }
            "max_files" => {
                let n = value.as_integer().ok_or_else(|| {
                    wrong_type(span.clone(), field, "an integer", value.type_name())
                })?;
                let n = u64::try_from(n)
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| invalid(span, UsersProblem::BadMaxFiles(n)))?;
                account.max_files = Some(n);
            }
            _ => {
                return Err(invalid(
                    key_span(fields, field),
                    UsersProblem::UnknownField {
                        field: field.to_owned(),
                        expected: USER_FIELDS,
                    },
                ));
            }
        }
    }
    account.quota = quota.ok_or_else(|| invalid(name_span, UsersProblem::MissingField("quota")))?;
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::new_key;
    use crate::auth::password::{self, Secret};

    /// A valid Argon2id PHC string (of "pw"), made once with small parameters.
    fn some_hash() -> String {
        use argon2::{Argon2, PasswordHasher};
        let params = argon2::Params::new(64, 1, 1, None).unwrap();
        let argon2 = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        argon2.hash_password(b"pw").unwrap().to_string()
    }

    fn parse(text: &str) -> Result<UsersConfig, UsersError> {
        UsersConfig::parse(text, Path::new("users.toml"))
    }

    /// The error's line, after checking that its message starts with "users.toml:<line>".
    fn error_line(text: &str) -> (usize, String) {
        let err = parse(text).expect_err("should be refused");
        let UsersError::Invalid { ref at, .. } = err else {
            panic!("not an Invalid error: {err:?}");
        };
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("users.toml:{}", at.line)),
            "{message}"
        );
        (at.line, message)
    }

    #[test]
    fn user_names_are_checked() {
        for good in ["alice", "Bob_2", "a", "x.y-z", "0", &"a".repeat(32)] {
            let name = UserName::try_from(good).unwrap();
            assert_eq!(name.as_str(), good);
            assert_eq!(name.to_string(), good);
        }
        assert_eq!("demo".parse::<UserName>().unwrap().as_str(), "demo");
        assert_eq!(UserName::try_from(""), Err(UserNameError::Empty));
        assert_eq!(
            UserName::try_from(&*"a".repeat(33)),
            Err(UserNameError::TooLong(33))
        );
        for bad_start in [".", "..", ".hidden", "-rf"] {
            assert_eq!(
                UserName::try_from(bad_start),
                Err(UserNameError::BadStart(bad_start.into()))
            );
        }
        for (bad, c) in [
            ("a/b", '/'),
            ("a b", ' '),
            ("tab\t", '\t'),
            ("é", 'é'),
            ("x\0", '\0'),
        ] {
            let err = UserName::try_from(bad).unwrap_err();
            assert_eq!(
                err,
                UserNameError::BadChar {
                    name: bad.into(),
                    bad: c
                }
            );
        }
        let message = UserName::try_from("a/b").unwrap_err().to_string();
        assert_eq!(
            message,
            "user name \"a/b\" contains '/'; use only letters, digits, '.', '_' and '-'"
        );
    }

    #[test]
    fn parses_a_full_file() {
        let dir = tempfile::tempdir().unwrap();
        let (inline_key, file_key) = (new_key("alice@laptop"), new_key("alice@phone"));
        fs::write(
            dir.path().join("alice.keys"),
            format!(
                "# alice's other keys\n\n{}\n",
                file_key.to_openssh().unwrap()
            ),
        )
        .unwrap();
        let hash = some_hash();
        let text = format!(
            r#"# comments anywhere
[users.alice] # trailing comment
password = "{hash}"
keys = [
  "{}",  # laptop
]
authorized_keys_file = "alice.keys"
quota = "1.5 GiB"
max_sessions = 4
max_files = 5000

[users.bob]
quota = 1048576
"#,
            inline_key.to_openssh().unwrap()
        );
        let path = dir.path().join("users.toml");
        fs::write(&path, &text).unwrap();
        let config = UsersConfig::load(&path).unwrap();

        assert_eq!(config.len(), 2);
        assert!(!config.is_empty());
        let names: Vec<_> = config.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob"]);
        let alice = config.get("alice").unwrap();
        assert_eq!(alice.password_hash.as_ref().unwrap().as_str(), hash);
        assert!(password::verify_password(
            alice.password_hash.as_ref().unwrap(),
            &Secret::new("pw")
        ));
        assert_eq!(alice.keys.len(), 2);
        assert!(alice.keys[0].matches(&inline_key) && alice.keys[1].matches(&file_key));
        assert_eq!(alice.quota, 3 << 29);
        assert_eq!(alice.max_sessions, Some(4));
        assert_eq!(alice.max_files, Some(5000));
        let bob = config.get("bob").unwrap();
        assert_eq!(
            (bob.quota, bob.max_sessions, bob.max_files, bob.keys.len()),
            (1 << 20, None, None, 0)
        );
        assert!(bob.password_hash.is_none());
        assert!(config.get("carol").is_none());
        assert_eq!(
            config.warnings(),
            ["user \"bob\" has no password and no keys, so nobody can log in as them"]
        );
    }

    #[test]
    fn accepts_empty_files_and_inline_tables() {
        assert!(parse("").unwrap().is_empty());
        assert!(parse("# nothing yet\n[users]\n").unwrap().is_empty());
        let config = parse("users.carol = { quota = \"2GiB\", max_sessions = 1 }\n").unwrap();
        assert_eq!(config.get("carol").unwrap().quota, 2 << 30);
    }

    #[test]
    fn warns_about_ignored_key_options() {
        let key = new_key("k").to_openssh().unwrap();
        let text = format!("[users.a]\nquota = \"1GiB\"\nkeys = ['from=\"10.0.0.1\" {key}']\n");
        let warnings = parse(&text).unwrap().warnings();
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("from=") && warnings[0].contains("ignores"),
            "{warnings:?}"
        );
    }

    #[test]
    fn rejects_toml_syntax_errors_with_line_and_column() {
        let err = parse("[users.alice]\nquota = \"1GiB\"\nmax_sessions = = 3\n").unwrap_err();
        let UsersError::Invalid {
            ref at,
            ref problem,
            ..
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!(at.line, 3);
        assert!(at.column.is_some());
        assert!(matches!(**problem, UsersProblem::Syntax(_)));
        assert!(err.to_string().starts_with("users.toml:3:"), "{err}");

        // Duplicate accounts are a TOML error too.
        let (line, _) = error_line("[users.a]\nquota = \"1GiB\"\n\n[users.a]\nquota = \"1GiB\"\n");
        assert_eq!(line, 4);
    }

    #[test]
    fn rejects_a_bad_quota_naming_the_line() {
        let text = "# accounts\n\n[users.alice]\nquota = \"1GiB\"\n\n[users.bob]\nquota = \"12 parsecs\"\n";
        let (line, message) = error_line(text);
        assert_eq!(line, 7);
        assert!(
            message.starts_with(
                "users.toml:7: user \"bob\": quota \"12 parsecs\": unknown unit \"parsecs\""
            ),
            "{message}"
        );
        let (line, message) = error_line("[users.bob]\n\nquota = -5\n");
        assert_eq!(line, 3);
        assert!(message.contains("negative"), "{message}");
    }

    #[test]
    fn rejects_a_bad_user_name() {
        let (line, message) =
            error_line("[users.ok]\nquota = \"1GiB\"\n[users.\"../etc\"]\nquota = \"1GiB\"\n");
        assert_eq!(line, 3);
        assert!(
            message.contains("\"../etc\" must not start with '.'"),
            "{message}"
        );
        let (line, _) = error_line("\n\n[users.\"a b\"]\nquota = \"1GiB\"\n");
        assert_eq!(line, 3);
    }

    #[test]
    fn rejects_names_differing_only_in_case() {
        let (line, message) =
            error_line("[users.alice]\nquota = \"1GiB\"\n[users.Alice]\nquota = \"1GiB\"\n");
        assert_eq!(line, 3);
        assert!(
            message.contains("user \"Alice\": name differs from user \"alice\""),
            "{message}"
        );
    }

    #[test]
    fn rejects_a_bad_key_naming_its_line() {
        let good = new_key("good").to_openssh().unwrap();
        let text = format!(
            "[users.alice]\nquota = \"1GiB\"\nkeys = [\n  \"{good}\",\n  \"ssh-ed25519 AAAAgarbage alice@laptop\",\n]\n"
        );
        let (line, message) = error_line(&text);
        assert_eq!(line, 5);
        assert!(
            message.contains("user \"alice\": keys[1]: not a public key line"),
            "{message}"
        );
    }

    #[test]
    fn rejects_a_bad_key_in_the_keys_file_naming_that_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = new_key("good").to_openssh().unwrap();
        fs::write(
            dir.path().join("bob.keys"),
            format!("# bob\n{good}\n\nnonsense here\n"),
        )
        .unwrap();
        let origin = dir.path().join("users.toml");
        let text = "[users.bob]\nquota = \"1GiB\"\nauthorized_keys_file = \"bob.keys\"\n";
        let err = UsersConfig::parse(text, &origin).unwrap_err();
        let UsersError::Invalid {
            ref at,
            ref problem,
            ..
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!(
            (at.file.as_path(), at.line),
            (dir.path().join("bob.keys").as_path(), 4)
        );
        assert!(matches!(**problem, UsersProblem::BadKeyInFile(_)));
        assert!(
            err.to_string()
                .contains("bob.keys:4: user \"bob\": authorized_keys_file:"),
            "{err}"
        );

        let text = "[users.bob]\nquota = \"1GiB\"\n\nauthorized_keys_file = \"missing.keys\"\n";
        let err = UsersConfig::parse(text, &origin).unwrap_err();
        let UsersError::Invalid {
            ref at,
            ref problem,
            ..
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!(at.line, 4);
        assert!(
            matches!(**problem, UsersProblem::KeysFileUnreadable { .. }),
            "{err}"
        );
    }

    #[test]
    fn rejects_a_bad_password_hash() {
        let (line, message) = error_line("[users.a]\nquota = \"1GiB\"\npassword = \"hunter2\"\n");
        assert_eq!(line, 3);
        assert!(
            message.contains("user \"a\": password: not a valid PHC"),
            "{message}"
        );
        // The message never repeats what was in the field.
        assert!(!message.contains("hunter2"), "{message}");
        let (line, _) = error_line(
            "[users.a]\npassword = \"$argon2id$v=19$m=19456,t=2,p=1\"\nquota = \"1GiB\"\n",
        );
        assert_eq!(line, 2);
    }

    #[test]
    fn rejects_unknown_fields() {
        let (line, message) = error_line("[users.a]\nquota = \"1GiB\"\nmax_session = 3\n");
        assert_eq!(line, 3);
        assert!(
            message.contains("user \"a\": unknown field \"max_session\" (expected password,"),
            "{message}"
        );
        let (line, message) =
            error_line("[users.a]\nquota = \"1GiB\"\n\n[user.b]\nquota = \"1GiB\"\n");
        assert_eq!(line, 4);
        assert!(message.contains("unknown field \"user\""), "{message}");
    }

    #[test]
    fn rejects_wrong_types() {
        let cases = [
            (
                "[users.a]\nquota = \"1GiB\"\nmax_sessions = \"4\"\n",
                3,
                "max_sessions: expected an integer, found string",
            ),
            (
                "[users.a]\nquota = \"1GiB\"\nkeys = \"ssh-ed25519 AAAA\"\n",
                3,
                "keys: expected an array of strings, found string",
            ),
            (
                "[users.a]\nquota = \"1GiB\"\nkeys = [\n  1,\n]\n",
                4,
                "keys[0]: expected a string, found integer",
            ),
            ("[users.a]\nquota = true\n", 2, "quota: expected a size"),
            (
                "[users.a]\nquota = \"1GiB\"\npassword = 5\n",
                3,
                "password: expected a string",
            ),
            (
                "\nusers.a = 3\n",
                2,
                "users.a: expected a table, found integer",
            ),
            ("users = 3\n", 1, "users: expected a table, found integer"),
        ];
        for (text, want_line, want) in cases {
            let (line, message) = error_line(text);
            assert_eq!(line, want_line, "{message}");
            assert!(message.contains(want), "{message}");
        }
    }

    #[test]
    fn rejects_missing_quota_and_bad_session_limits() {
        let (line, message) = error_line("[users.a]\nquota = \"1GiB\"\n\n[users.b]\nkeys = []\n");
        assert_eq!(line, 4);
        assert!(
            message.contains("user \"b\": missing required field \"quota\""),
            "{message}"
        );
        for bad in ["0", "-1", "4294967296"] {
            let (line, message) = error_line(&format!(
                "[users.a]\nquota = \"1GiB\"\nmax_sessions = {bad}\n"
            ));
            assert_eq!(line, 3);
            assert!(message.contains("max_sessions must be from 1"), "{message}");
        }
        for bad in ["0", "-5"] {
            let (line, message) =
                error_line(&format!("[users.a]\nquota = \"1GiB\"\nmax_files = {bad}\n"));
            assert_eq!(line, 3);
            assert!(
                message.contains(&format!("max_files must be at least 1, not {bad}")),
                "{message}"
            );
        }
        let (_, message) = error_line("[users.a]\nquota = \"1GiB\"\nmax_files = \"9\"\n");
        assert!(
            message.contains("max_files: expected an integer, found string"),
            "{message}"
        );
    }

    #[test]
    fn load_reports_io_errors_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.toml");
        let err = UsersConfig::load(&path).unwrap_err();
        assert!(
            matches!(err, UsersError::Io { ref path, .. } if path.ends_with("nope.toml")),
            "{err:?}"
        );
    }
}
