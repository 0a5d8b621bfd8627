//! The starter `users.toml` that `rsftpd` writes on its first start when there is none:
//! one account, `demo`, with a random password shown once, and comments that explain
//! every field, so that a new admin can edit the file without reading the docs first.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::password::{self, PasswordHash, Secret};
use super::users::{UserName, UsersError};

/// The starter account's name.
const STARTER_USER: &str = "demo";

/// Writes a new, commented `users.toml` at `path` with one account, `demo`, whose random
/// password is returned so that the caller can show it once. The file is created with mode
/// 0600 and is never overwritten: if it exists, this fails with an `Io` error of kind
/// `AlreadyExists`.
///
/// Blocking: hashes the password (tens of milliseconds) and writes a file.
pub fn create_starter_file(path: &Path) -> Result<(UserName, Secret), UsersError> {
    // A valid name (a unit test says so), so this cannot fail.
    let name = UserName::try_from(STARTER_USER).expect("the starter name is valid");
    let password = Secret::generate(20);
    let hash = password::hash_password(&password).map_err(UsersError::StarterPassword)?;
    let text = starter_text(&name, &hash);

    let io_error = |source| UsersError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io_error)?;
    if let Err(err) = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
    {
        // A half-written file would make the next start fail to parse it instead of
        // creating a fresh one; nothing else can have it yet, so remove it.
        drop(file);
        let _ = fs::remove_file(path);
        return Err(io_error(err));
    }
    Ok((name, password))
}

fn starter_text(name: &UserName, hash: &PasswordHash) -> String {
    format!(
        r#"# rsftpd accounts.
#
# rsftpd created this file on its first start, with one account, "{name}", whose
# password it printed once. `rsftpd user ...` edits this file and keeps its comments;
# a running server picks up changes without a restart.
#
# Each account is a [users.<name>] table. A name is 1 to 32 letters, digits, '.', '_'
# or '-', and does not start with '.' or '-'. The fields:
#
#   password              Optional. The password's Argon2id hash as a PHC string
#                         ("$argon2id$v=19$..."), never the password itself.
#                         Set it with `rsftpd user passwd <name>`.
#   keys                  Optional. Public keys, each one line as in ~/.ssh/authorized_keys.
#                         A key matches by its key data; the comment is only a label.
#                         Options before the key type (from=, command=, ...) are ignored.
#   authorized_keys_file  Optional. A file of such lines, one key per line, found
#                         relative to the folder of this file. Blank lines and lines
#                         starting with '#' are skipped.
#   quota                 Required. The space the user's files may take, such as
#                         "500MiB", "2GiB" or "10 GB" (KiB, MiB, GiB, TiB are powers
#                         of 1024; KB, MB, GB, TB powers of 1000). A file counts its
#                         size rounded up to 4 KiB; a folder or a link counts 4 KiB.
#   max_sessions          Optional. How many sessions the user may have at once.
#   max_files             Optional. How many files, folders and links the user may
#                         have, partial uploads included.
#
# An account with neither a password nor keys is kept but nobody can log in to it.
# Unknown fields are errors, so that a typo does not go unnoticed.
#
# An example; remove the leading '# ' to use it:
#
# [users.alice]
# keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... alice@laptop"]
# authorized_keys_file = "alice.keys"
# quota = "10GiB"
# max_sessions = 4

[users.{name}]
password = "{hash}"
quota = "1GiB"
"#,
        hash = hash.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::new_key;
    use crate::auth::users::UsersConfig;
    use std::io;

    #[test]
    fn the_starter_name_is_valid() {
        assert_eq!(UserName::try_from(STARTER_USER).unwrap().as_str(), "demo");
    }

    #[test]
    fn starter_file_works_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let (name, password) = create_starter_file(&path).unwrap();
        assert_eq!(name.as_str(), "demo");
        assert_eq!(password.expose().len(), 20);
        assert!(password.expose().chars().all(|c| c.is_ascii_alphanumeric()));

        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(password.expose()));
        for field in [
            "password",
            "keys",
            "authorized_keys_file",
            "quota",
            "max_sessions",
            "max_files",
        ] {
            assert!(
                text.contains(&format!("#   {field}")),
                "{field} is not explained"
            );
        }
        let config = UsersConfig::load(&path).unwrap();
        assert_eq!(config.len(), 1);
        let demo = config.get("demo").unwrap();
        assert_eq!(demo.quota, 1 << 30);
        assert!(password::verify_password(
            demo.password_hash.as_ref().unwrap(),
            &password
        ));
        assert!(config.warnings().is_empty());

        // The commented-out example is valid once uncommented (given its keys file).
        let example: String = text
            .lines()
            .skip_while(|line| !line.starts_with("# [users.alice]"))
            .take_while(|line| line.starts_with("# "))
            .map(|line| format!("{}\n", &line[2..]))
            .collect();
        let key = new_key("alice@laptop").to_openssh().unwrap();
        let example = example.replace("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... alice@laptop", &key);
        fs::write(dir.path().join("alice.keys"), "").unwrap();
        let parsed = UsersConfig::parse(&example, &path).unwrap();
        assert_eq!(parsed.get("alice").unwrap().max_sessions, Some(4));

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let err = create_starter_file(&path).unwrap_err();
        assert!(
            matches!(err, UsersError::Io { ref source, .. } if source.kind() == io::ErrorKind::AlreadyExists),
            "{err:?}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
    }
}
