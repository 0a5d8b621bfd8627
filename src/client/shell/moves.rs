//! `mv`: rename a remote entry, or move it into a folder, as `mv` does at home. The
//! server's rename is POSIX `rename`; this decides what the target is before asking.

use super::commands::Invocation;
use super::{Shell, ShellError, paths};
use crate::protocol::{EntryType, ErrorCode};

impl Shell {
    pub(super) async fn mv(&mut self, inv: &Invocation) -> Result<(), ShellError> {
        let from = self.expand_one_remote(&inv.args[0]).await?;
        let to = self.move_target(&from, &inv.args[1].text).await?;
        self.client.mv(&from, &to).await?;
        Ok(())
    }

    /// Where `from` goes for `mv FROM TO`: into TO, under its own name, if TO is a
    /// folder (or a link to one); else TO itself. A TO that ends in `/` must be a folder.
    async fn move_target(&mut self, from: &str, to: &str) -> Result<String, ShellError> {
        let folder_wanted = to.ends_with('/');
        match self.client.stat(to).await {
            Ok(entry) if entry.kind == EntryType::Dir => {
                let resolved = paths::resolve(&self.remote_cwd, from);
                Ok(paths::join(to, paths::base_name(&resolved)))
            }
            Ok(_) if folder_wanted => Err(ShellError::Refused(format!(
                "{}: not a folder",
                to.trim_end_matches('/')
            ))),
            Err(err) if err.code() == Some(&ErrorCode::NotFound) && folder_wanted => {
                Err(ShellError::Refused(format!("{to}: no such remote folder")))
            }
            Ok(_) => Ok(to.to_owned()),
            Err(err) if err.code() == Some(&ErrorCode::NotFound) => Ok(to.to_owned()),
            Err(err) => Err(err.into()),
        }
    }
}
