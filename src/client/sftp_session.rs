//! The shell's commands over plain SFTP, for servers without the rsftp subsystem.
//!
//! SFTP has no working directory, so this keeps one: every path is resolved against it
//! as text (as the shell does for rsftp) and sent absolute. It starts where the server
//! starts a session (`realpath .`), which is also where `cd` with no folder returns.
//! The server's hash over exec, if it has one, is learned once when the session opens.

use russh::ChannelStream;
use russh::client::Msg;

use super::exec_hash::{self, FileHash, HashKind, HashShell};
use super::shell::paths;
use super::{ClientError, Connection, SftpClient};
use crate::protocol::sftp::{Attrs, Name};
use crate::protocol::{EntryLine, EntryType, ErrorCode};

/// File type bits of SFTP permissions, as in `st_mode`.
const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

/// An SFTP session with a working directory and what the server can hash.
pub struct SftpSession {
    pub(super) client: SftpClient<ChannelStream<Msg>>,
    cwd: String,
    home: String,
    hash: Option<HashKind>,
    /// The server's hashing shell, once started; `Err` once it failed to start or broke,
    /// after which each file is hashed by an exec of its own.
    shell: Option<Result<HashShell, ()>>,
}

impl SftpSession {
    /// Opens the `sftp` subsystem and asks the server which hash it runs over exec.
    pub async fn open(conn: &Connection) -> Result<SftpSession, ClientError> {
        let mut client = conn.open_sftp().await?;
        let home = client.realpath(".").await?;
        let hash = exec_hash::probe(conn).await;
        Ok(SftpSession {
            client,
            cwd: home.clone(),
            home,
            hash,
            shell: None,
        })
    }

    /// The hash the server computes over exec, if any.
    pub fn hash_kind(&self) -> Option<HashKind> {
        self.hash
    }

    /// `path` made absolute from the working directory.
    pub fn resolve(&self, path: &str) -> String {
        paths::resolve(&self.cwd, path)
    }

    pub fn pwd(&self) -> String {
        self.cwd.clone()
    }

    /// Changes to `path`, or back to where the session started.
    pub async fn cd(&mut self, path: Option<&str>) -> Result<String, ClientError> {
        let target = match path {
            None => self.home.clone(),
            Some(path) => self.resolve(path),
        };
        let entry = self.stat(&target).await?;
        if entry.kind != EntryType::Dir {
            return Err(ClientError::Remote {
                code: ErrorCode::NotADirectory,
                message: format!("not a directory: {target}"),
            });
        }
        self.cwd = self.client.realpath(&target).await?;
        Ok(self.cwd.clone())
    }

    /// A folder's entries in name order, or a file as its one entry.
    pub async fn ls(&mut self, path: Option<&str>) -> Result<Vec<EntryLine>, ClientError> {
        let dir = self.resolve(path.unwrap_or(""));
        let entry = self.stat(&dir).await?;
        if entry.kind != EntryType::Dir {
            return Ok(vec![EntryLine {
                name: paths::base_name(&dir).to_owned(),
                ..entry
            }]);
        }
        let mut entries: Vec<EntryLine> = self
            .client
            .list(&dir)
            .await?
            .into_iter()
            .map(name_entry)
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    pub async fn stat(&mut self, path: &str) -> Result<EntryLine, ClientError> {
        let resolved = self.resolve(path);
        let attrs = self.client.stat(&resolved).await?;
        Ok(attrs_entry(&attrs, path.to_owned()))
    }

    pub async fn mkdir(&mut self, path: &str) -> Result<(), ClientError> {
        let path = self.resolve(path);
        self.client.mkdir(&path).await
    }

    pub async fn rmdir(&mut self, path: &str) -> Result<(), ClientError> {
        let path = self.resolve(path);
        self.client.rmdir(&path).await
    }

    pub async fn rm(&mut self, path: &str) -> Result<(), ClientError> {
        let path = self.resolve(path);
        // SFTP's remove would take a folder on some servers; the shell's rm never does.
        if let Ok(entry) = self.stat(&path).await
            && entry.kind == EntryType::Dir
        {
            return Err(ClientError::Remote {
                code: ErrorCode::IsADirectory,
                message: format!("is a directory: {path}"),
            });
        }
        self.client.remove(&path).await
    }

    pub async fn mv(&mut self, from: &str, to: &str) -> Result<(), ClientError> {
        let (from, to) = (self.resolve(from), self.resolve(to));
        self.client.rename(&from, &to).await
    }

    /// Sets a remote file's modification time (Unix seconds).
    pub async fn set_mtime(&mut self, path: &str, mtime: i64) -> Result<(), ClientError> {
        let path = self.resolve(path);
        let secs = u32::try_from(mtime.max(0)).unwrap_or(u32::MAX);
        self.client.set_times(&path, secs, secs).await
    }

    /// The server's hash of a whole file, `None` if it offers none or could not give one.
    pub async fn hash(
        &mut self,
        conn: &Connection,
        path: &str,
    ) -> Result<Option<FileHash>, ClientError> {
        let Some(kind) = self.hash else {
            return Ok(None);
        };
        let path = self.resolve(path);
        self.hash_resolved(conn, kind, &path).await
    }

    /// The server's hash of the absolute `path`: through the hashing shell where the
    /// server runs one, else by an exec of its own.
    pub async fn hash_resolved(
        &mut self,
        conn: &Connection,
        kind: HashKind,
        path: &str,
    ) -> Result<Option<FileHash>, ClientError> {
        if self.shell.is_none() {
            self.shell = Some(HashShell::start(conn, kind).await.map_err(drop));
        }
        if !path.contains('\n')
            && let Some(Ok(shell)) = &mut self.shell
        {
            match shell.hash(path).await {
                Ok(Some(hash)) => return Ok(Some(hash)),
                // Not hashed there: ask once more on its own, which also tells a file
                // the shell could not read from a shell that prints something else.
                Ok(None) => {}
                Err(_) => self.shell = Some(Err(())),
            }
        }
        exec_hash::whole(conn, kind, path).await
    }

    /// Says goodbye: the channel closes when the session is dropped.
    pub async fn quit(self) {}
}

/// A listing entry as the rsftp protocol would give it.
fn name_entry(name: Name) -> EntryLine {
    attrs_entry(
        &name.attrs,
        String::from_utf8_lossy(&name.filename).into_owned(),
    )
}

fn attrs_entry(attrs: &Attrs, name: String) -> EntryLine {
    let kind = match attrs.permissions.map(|p| p & S_IFMT) {
        Some(S_IFDIR) => EntryType::Dir,
        Some(S_IFREG) => EntryType::File,
        Some(S_IFLNK) => EntryType::Symlink,
        _ => EntryType::Other,
    };
    EntryLine {
        kind,
        size: attrs.size.unwrap_or(0),
        mtime: attrs.times.map_or(0, |(_, mtime)| i64::from(mtime)),
        name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_file_type_from_the_mode() {
        let attrs = |mode| Attrs {
            size: Some(5),
            permissions: Some(mode),
            times: Some((1, 2)),
            ..Attrs::default()
        };
        assert_eq!(
            attrs_entry(&attrs(0o040_755), "d".into()).kind,
            EntryType::Dir
        );
        let file = attrs_entry(&attrs(0o100_644), "f".into());
        assert_eq!((file.kind, file.size, file.mtime), (EntryType::File, 5, 2));
        assert_eq!(
            attrs_entry(&attrs(0o120_777), "l".into()).kind,
            EntryType::Symlink
        );
        assert_eq!(
            attrs_entry(&Attrs::default(), "x".into()).kind,
            EntryType::Other
        );
    }
}
