//! Either kind of session behind one set of methods, so the shell's commands are
//! written once: rsftp where the server has it, plain SFTP (OpenSSH, and anything else)
//! where it does not.
//!
//! The differences that remain are in what can be checked, and each method says so in
//! its result: rsftp verifies every transfer by MD5; over SFTP the server's hash over
//! exec is used where it has one, and a [`super::Check`] says when none was possible.

use std::path::Path;

use russh::ChannelStream;
use russh::client::Msg;

use super::exec_hash::{FileHash, HashKind};
use super::sftp_session::SftpSession;
use super::transfer::{self, Progress, TransferReport};
use super::{ClientError, Connection, RsftpClient, sftp_transfer};
use crate::protocol::{EntryLine, ErrorCode, QuotaInfo};

/// A session on the server, of whichever kind it offers.
pub enum Remote {
    Rsftp(RsftpClient<ChannelStream<Msg>>),
    Sftp(SftpSession),
}

impl Remote {
    /// Opens the rsftp subsystem, or SFTP if the server has no rsftp.
    pub async fn open(conn: &Connection) -> Result<Remote, ClientError> {
        match conn.open_rsftp().await {
            Ok(client) => Ok(Remote::Rsftp(client)),
            Err(ClientError::Subsystem(_)) => Ok(Remote::Sftp(SftpSession::open(conn).await?)),
            Err(err) => Err(err),
        }
    }

    /// Opens another session of the same kind on the same connection.
    pub async fn open_like(&self, conn: &Connection) -> Result<Remote, ClientError> {
        match self {
            Remote::Rsftp(_) => Ok(Remote::Rsftp(conn.open_rsftp().await?)),
            Remote::Sftp(_) => Ok(Remote::Sftp(SftpSession::open(conn).await?)),
        }
    }

    /// What the server is, for the greeting line.
    pub fn server(&self) -> String {
        match self {
            Remote::Rsftp(client) => client.server().to_owned(),
            Remote::Sftp(session) => match session.hash_kind() {
                Some(kind) => format!(
                    "SFTP: the server has no rsftp; transfers are checked by its {}sum",
                    kind.name()
                ),
                None => "SFTP: the server has no rsftp and offers no hash; transfers are not \
                         verified"
                    .to_owned(),
            },
        }
    }

    /// The hash this server can compare files by, if any.
    pub fn hash_kind(&self) -> Option<HashKind> {
        match self {
            Remote::Rsftp(_) => Some(HashKind::Md5),
            Remote::Sftp(session) => session.hash_kind(),
        }
    }

    pub fn is_sftp(&self) -> bool {
        matches!(self, Remote::Sftp(_))
    }

    pub async fn pwd(&mut self) -> Result<String, ClientError> {
        match self {
            Remote::Rsftp(client) => client.pwd().await,
            Remote::Sftp(session) => Ok(session.pwd()),
        }
    }

    /// Changes the remote directory; no path goes home.
    pub async fn cd(&mut self, path: Option<&str>) -> Result<String, ClientError> {
        match self {
            Remote::Rsftp(client) => client.cd(path.unwrap_or("/")).await,
            Remote::Sftp(session) => session.cd(path).await,
        }
    }

    pub async fn ls(&mut self, path: Option<&str>) -> Result<Vec<EntryLine>, ClientError> {
        match self {
            Remote::Rsftp(client) => client.ls(path).await,
            Remote::Sftp(session) => session.ls(path).await,
        }
    }

    pub async fn stat(&mut self, path: &str) -> Result<EntryLine, ClientError> {
        match self {
            Remote::Rsftp(client) => client.stat(path).await,
            Remote::Sftp(session) => session.stat(path).await,
        }
    }

    pub async fn mkdir(&mut self, path: &str) -> Result<(), ClientError> {
        match self {
            Remote::Rsftp(client) => client.mkdir(path).await,
            Remote::Sftp(session) => session.mkdir(path).await,
        }
    }

    pub async fn rmdir(&mut self, path: &str) -> Result<(), ClientError> {
        match self {
            Remote::Rsftp(client) => client.rmdir(path).await,
            Remote::Sftp(session) => session.rmdir(path).await,
        }
    }

    pub async fn rm(&mut self, path: &str) -> Result<(), ClientError> {
        match self {
            Remote::Rsftp(client) => client.rm(path).await,
            Remote::Sftp(session) => session.rm(path).await,
        }
    }

    pub async fn mv(&mut self, from: &str, to: &str) -> Result<(), ClientError> {
        match self {
            Remote::Rsftp(client) => client.mv(from, to).await,
            Remote::Sftp(session) => session.mv(from, to).await,
        }
    }

    pub async fn info(&mut self) -> Result<QuotaInfo, ClientError> {
        match self {
            Remote::Rsftp(client) => client.info().await,
            Remote::Sftp(_) => Err(ClientError::Remote {
                code: ErrorCode::Other("unsupported".into()),
                message: "the server speaks plain SFTP, which has no quota to report".into(),
            }),
        }
    }

    /// Sets a remote file's modification time where the protocol can (SFTP); `false`
    /// where it cannot (rsftp keeps the time of the upload).
    pub async fn set_mtime(&mut self, path: &str, mtime: i64) -> Result<bool, ClientError> {
        match self {
            Remote::Rsftp(_) => Ok(false),
            Remote::Sftp(session) => session.set_mtime(path, mtime).await.map(|()| true),
        }
    }

    /// The server's hash of a whole file; `None` if it cannot give one.
    pub async fn hash(
        &mut self,
        conn: &Connection,
        path: &str,
    ) -> Result<Option<FileHash>, ClientError> {
        match self {
            Remote::Rsftp(client) => {
                let (md5, _) = client.md5(path, None).await?;
                Ok(Some(FileHash {
                    kind: HashKind::Md5,
                    hex: md5.to_string(),
                }))
            }
            Remote::Sftp(session) => session.hash(conn, path).await,
        }
    }

    /// Downloads `remote` to `dest`, resuming from `dest.part`.
    pub async fn download(
        &mut self,
        conn: &Connection,
        remote: &str,
        dest: &Path,
        force: bool,
        progress: &dyn Progress,
    ) -> Result<TransferReport, ClientError> {
        match self {
            Remote::Rsftp(client) => {
                transfer::download(client, remote, dest, force, progress).await
            }
            Remote::Sftp(session) => {
                sftp_transfer::download(session, conn, remote, dest, force, progress).await
            }
        }
    }

    /// Uploads `local` to `remote`, resuming what the server holds of it.
    pub async fn upload(
        &mut self,
        conn: &Connection,
        local: &Path,
        remote: &str,
        progress: &dyn Progress,
    ) -> Result<TransferReport, ClientError> {
        match self {
            Remote::Rsftp(client) => transfer::upload(client, local, remote, progress).await,
            Remote::Sftp(session) => {
                sftp_transfer::upload(session, conn, local, remote, progress).await
            }
        }
    }

    /// Says goodbye.
    pub async fn quit(self) -> Result<(), ClientError> {
        match self {
            Remote::Rsftp(client) => client.quit().await,
            Remote::Sftp(session) => {
                session.quit().await;
                Ok(())
            }
        }
    }
}

/// A local file's hash of `kind`, read on a blocking thread.
pub async fn local_hash(path: &Path, kind: HashKind) -> Result<FileHash, ClientError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || sftp_transfer::local_hash(&path, kind))
        .await
        .map_err(|join| ClientError::Protocol(format!("worker failed: {join}")))?
}
