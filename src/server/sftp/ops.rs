//! What each SFTP request does to the user's home: blocking code, run off the reactor,
//! that turns one decoded request into one reply packet. Every path goes through
//! [`VirtualPath::resolve`] and the storage core; nothing here touches the filesystem
//! on its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::codec::{self, Attrs, MAX_DATA, MAX_PACKET, NameEntry, Request, StatusCode};
use super::convert::{attrs_of, open_options};
use super::handles::{
    ConnectionHandles, DirHandle, FileHandle, Handle, HandleSlot, Handles, Held, MAX_HANDLES,
    MAX_HANDLES_PER_CONNECTION,
};
use crate::server::op::{self, Ops};
use crate::server::oplog::OpLog;
use crate::server::replies::sftp_code;
use crate::storage::{HomeDir, OpenOptions, StorageError, VirtualPath};

/// Why a request failed, before it becomes a STATUS.
enum Failed {
    Storage(StorageError),
    Status(StatusCode, String),
}

impl From<StorageError> for Failed {
    fn from(err: StorageError) -> Self {
        Failed::Storage(err)
    }
}

fn failure(message: impl Into<String>) -> Failed {
    Failed::Status(StatusCode::Failure, message.into())
}

/// What a request did, for the log line.
struct Done {
    reply: Vec<u8>,
    path: Option<VirtualPath>,
    bytes: u64,
    /// `false` for the requests too frequent to log one by one (read, write): their
    /// totals are logged when the handle closes.
    log: bool,
}

impl Done {
    fn reply(reply: Vec<u8>, path: &VirtualPath) -> Done {
        Done {
            reply,
            path: Some(path.clone()),
            bytes: 0,
            log: true,
        }
    }

    /// A reply about no path of its own, not logged by itself.
    fn on_handle(reply: Vec<u8>) -> Done {
        Done {
            reply,
            path: None,
            bytes: 0,
            log: false,
        }
    }
}

/// One SFTP session's state: the home, the user, the open handles.
pub struct Session {
    /// The user's home and the session's operation log.
    ops: Ops,
    user: String,
    handles: Mutex<Handles>,
    connection: ConnectionHandles,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here only inserts or removes whole entries.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Session {
    pub fn new(
        home: HomeDir,
        user: String,
        connection: ConnectionHandles,
        oplog: Arc<OpLog>,
    ) -> Session {
        Session {
            ops: Ops::new(home, oplog, "sftp"),
            user,
            handles: Mutex::default(),
            connection,
        }
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    fn home(&self) -> &HomeDir {
        self.ops.home()
    }

    /// What the session acts and logs through.
    pub(super) fn ops(&self) -> &Ops {
        &self.ops
    }

    /// Runs one request and returns its reply; logs it as the rsftp subsystem does.
    pub fn execute(&self, id: u32, request: Request) -> Vec<u8> {
        let started = Instant::now();
        let op = request.name();
        match self.run(id, request) {
            Ok(done) => {
                if done.log {
                    let path = done.path.as_ref().map_or("", VirtualPath::as_str);
                    self.ops.log(op, path, done.bytes, started, None);
                }
                done.reply
            }
            Err(failed) => {
                let (code, message) = match failed {
                    Failed::Storage(err) => {
                        let refusal = op::classify(&err);
                        (sftp_code(refusal.fault), refusal.message)
                    }
                    Failed::Status(code, message) => (code, message),
                };
                self.ops.log(op, "", 0, started, Some(&message));
                codec::status(id, code, &message)
            }
        }
    }

    fn run(&self, id: u32, request: Request) -> Result<Done, Failed> {
        match request {
            Request::Open {
                path,
                pflags: flags,
                attrs: _,
            } => {
                let path = resolve(&path)?;
                let options = open_options(flags);
                let slot = self.slot()?;
                let file = self.home().open(&path, options)?;
                let handle = self.insert(
                    Handle::File(Arc::new(FileHandle {
                        file,
                        opened: Instant::now(),
                        read: AtomicU64::new(0),
                        written: AtomicU64::new(0),
                    })),
                    slot,
                )?;
                Ok(Done::reply(codec::handle(id, &handle), &path))
            }
            Request::Close { handle } => {
                let removed = lock(&self.handles).open.remove(&handle);
                match removed.map(|held| held.handle) {
                    Some(Handle::File(file)) => {
                        file.file.close()?;
                        let written = file.written.load(Ordering::Relaxed);
                        let read = file.read.load(Ordering::Relaxed);
                        let (op, bytes) = if written > 0 {
                            ("write", written)
                        } else {
                            ("read", read)
                        };
                        let path = file.file.path().as_str();
                        self.ops.log(op, path, bytes, file.opened, None);
                        Ok(Done::on_handle(ok(id)))
                    }
                    Some(Handle::Dir(_)) => Ok(Done::on_handle(ok(id))),
                    None => Err(bad_handle()),
                }
            }
            Request::Read {
                handle,
                offset,
                len,
            } => {
                let file = self.file(&handle)?;
                let max = len.min(MAX_DATA) as usize;
                // No file reaches past i64::MAX, which is as far as offsets go.
                if i64::try_from(offset).is_err() {
                    return Ok(Done::on_handle(codec::status(
                        id,
                        StatusCode::Eof,
                        "End of file",
                    )));
                }
                let (reply, n) = codec::data_with(id, max, |buf| file.file.read_at(offset, buf))?;
                if n == 0 && max > 0 {
                    return Ok(Done::on_handle(codec::status(
                        id,
                        StatusCode::Eof,
                        "End of file",
                    )));
                }
                file.read.fetch_add(n as u64, Ordering::Relaxed);
                Ok(Done {
                    reply,
                    path: None,
                    bytes: n as u64,
                    log: false,
                })
            }
            Request::Write {
                handle,
                offset,
                data,
            } => {
                let file = self.file(&handle)?;
                file.file.write_at(offset, data.bytes())?;
                file.written
                    .fetch_add(data.bytes().len() as u64, Ordering::Relaxed);
                Ok(Done::on_handle(ok(id)))
            }
            Request::Stat { path } => {
                let path = resolve(&path)?;
                let entry = self.home().stat(&path)?;
                Ok(Done::reply(codec::attrs(id, &attrs_of(&entry)), &path))
            }
            Request::Lstat { path } => {
                let path = resolve(&path)?;
                let entry = self.home().lstat(&path)?;
                Ok(Done::reply(codec::attrs(id, &attrs_of(&entry)), &path))
            }
            Request::Fstat { handle } => {
                let (path, entry) = match self.handle(&handle)? {
                    Handle::File(file) => (file.file.path().clone(), file.file.stat()?),
                    Handle::Dir(dir) => {
                        let path = lock(&dir).path.clone();
                        let entry = self.home().stat(&path)?;
                        (path, entry)
                    }
                };
                Ok(Done::reply(codec::attrs(id, &attrs_of(&entry)), &path))
            }
            Request::Setstat { path, attrs } => {
                let path = resolve(&path)?;
                self.set_attrs(&path, None, &attrs)?;
                Ok(Done::reply(ok(id), &path))
            }
            Request::Fsetstat { handle, attrs } => {
                let (path, file) = match self.handle(&handle)? {
                    Handle::File(file) => (file.file.path().clone(), Some(file)),
                    Handle::Dir(dir) => (lock(&dir).path.clone(), None),
                };
                self.set_attrs(&path, file.as_deref(), &attrs)?;
                Ok(Done::reply(ok(id), &path))
            }
            Request::Opendir { path } => {
                let path = resolve(&path)?;
                let mut slot = self.slot()?;
                self.connection.charge_dir(&mut slot).ok_or_else(|| {
                    failure(
                        "too many open directories for this connection's memory share; close some",
                    )
                })?;
                let dir = DirHandle::open(self.home(), &path)?;
                let handle = self.insert(Handle::Dir(Arc::new(Mutex::new(dir))), slot)?;
                Ok(Done::reply(codec::handle(id, &handle), &path))
            }
            Request::Readdir { handle } => {
                let Handle::Dir(dir) = self.handle(&handle)? else {
                    return Err(bad_handle());
                };
                let reply = lock(&dir).read_batch(id, &self.user, unix_now())?;
                Ok(Done {
                    log: true,
                    ..Done::on_handle(reply)
                })
            }
            Request::Remove { path } => {
                let path = resolve(&path)?;
                self.home().remove_file(&path)?;
                Ok(Done::reply(ok(id), &path))
            }
            Request::Mkdir { path, attrs } => {
                let path = resolve(&path)?;
                match attrs.permissions {
                    Some(mode) => self.home().mkdir_with_mode(&path, mode)?,
                    None => self.home().mkdir(&path)?,
                }
                Ok(Done::reply(ok(id), &path))
            }
            Request::Rmdir { path } => {
                let path = resolve(&path)?;
                self.home().rmdir(&path)?;
                Ok(Done::reply(ok(id), &path))
            }
            Request::Realpath { path } => {
                let path = resolve(&path)?;
                Ok(Done::reply(one_name(id, path.as_str().as_bytes()), &path))
            }
            Request::ExpandPath { path } => {
                // `~` and `~/x` are the home, which is `/`; `~user` is nobody else's.
                let rest = match path.strip_prefix(b"~") {
                    Some(rest) if rest.is_empty() || rest.starts_with(b"/") => rest.to_vec(),
                    Some(_) => return Err(failure("only your own home (~) can be expanded")),
                    None => path,
                };
                let path = resolve(&rest)?;
                Ok(Done::reply(one_name(id, path.as_str().as_bytes()), &path))
            }
            Request::Rename { from, to } => {
                let (from, to) = (resolve(&from)?, resolve(&to)?);
                // SFTP v3: a rename never replaces (posix-rename@openssh.com does).
                self.home().rename_new(&from, &to)?;
                Ok(Done::reply(ok(id), &from))
            }
            Request::PosixRename { from, to } => {
                let (from, to) = (resolve(&from)?, resolve(&to)?);
                self.home().rename(&from, &to)?;
                Ok(Done::reply(ok(id), &from))
            }
            Request::Readlink { path } => {
                let path = resolve(&path)?;
                let target = self.home().read_link(&path)?;
                let Some(target) = target.to_str() else {
                    return Err(failure("the link's target is not valid UTF-8"));
                };
                Ok(Done::reply(one_name(id, target.as_bytes()), &path))
            }
            Request::Symlink { link, target } => {
                let link = resolve(&link)?;
                // The target is kept as text, not resolved here: storage reads it from
                // the link's folder and refuses one that leads outside.
                let target = std::str::from_utf8(&target).map_err(|_| {
                    failure("the link's target is not valid UTF-8; such names are not supported")
                })?;
                self.home().symlink(&link, target)?;
                Ok(Done::reply(ok(id), &link))
            }
            Request::Hardlink { .. } => Err(Failed::Status(
                StatusCode::OpUnsupported,
                "hard links cannot be created on this server".into(),
            )),
            Request::Statvfs { path } => {
                let path = resolve(&path)?;
                self.home().stat(&path)?;
                Ok(Done::reply(self.statvfs(id), &path))
            }
            Request::Fstatvfs { handle } => {
                self.handle(&handle)?;
                Ok(Done {
                    reply: self.statvfs(id),
                    path: None,
                    bytes: 0,
                    log: true,
                })
            }
            Request::Fsync { handle } => {
                let file = self.file(&handle)?;
                file.file.sync()?;
                Ok(Done::reply(ok(id), file.file.path()))
            }
            Request::Limits => Ok(Done {
                reply: codec::extended_u64s(
                    id,
                    &[
                        MAX_PACKET as u64,
                        u64::from(MAX_DATA),
                        u64::from(MAX_DATA),
                        MAX_HANDLES as u64,
                    ],
                ),
                path: None,
                bytes: 0,
                log: false,
            }),
            Request::UsersGroupsById { uids, gids } => {
                // Every file in a home belongs to the server's account on disk; to the
                // user they are theirs, so every id is named after the user, as the
                // long names in listings are.
                let name = self.user.as_bytes();
                let size = (uids.len() + gids.len()) * (name.len() + 4);
                if size > MAX_PACKET / 2 {
                    return Err(failure("too many ids in one request"));
                }
                let mut users = Vec::with_capacity(uids.len() * (name.len() + 4));
                for _ in &uids {
                    codec::put_string(&mut users, name);
                }
                let mut groups = Vec::with_capacity(gids.len() * (name.len() + 4));
                for _ in &gids {
                    codec::put_string(&mut groups, name);
                }
                Ok(Done::on_handle(codec::extended_strings(
                    id,
                    &[&users, &groups],
                )))
            }
            Request::UnknownExtension { name } => Err(Failed::Status(
                StatusCode::OpUnsupported,
                format!(
                    "unsupported extension {}",
                    String::from_utf8_lossy(&name[..name.len().min(64)]).escape_default()
                ),
            )),
            Request::Unknown { kind } => Err(Failed::Status(
                StatusCode::OpUnsupported,
                format!("unsupported request type {kind}"),
            )),
        }
    }

    /// A connection-wide slot for a handle about to be opened; taken before opening, so
    /// a refused request opens nothing.
    fn slot(&self) -> Result<HandleSlot, Failed> {
        if lock(&self.handles).open.len() >= MAX_HANDLES {
            return Err(failure(format!(
                "too many open handles ({MAX_HANDLES}); close some"
            )));
        }
        self.connection.take().ok_or_else(|| {
            failure(format!(
                "too many open handles on this connection ({MAX_HANDLES_PER_CONNECTION}); close some"
            ))
        })
    }

    fn insert(&self, handle: Handle, slot: HandleSlot) -> Result<Vec<u8>, Failed> {
        let mut handles = lock(&self.handles);
        if handles.open.len() >= MAX_HANDLES {
            return Err(failure(format!(
                "too many open handles ({MAX_HANDLES}); close some"
            )));
        }
        // Never reused within a session, so a stale handle can't reach a new file.
        handles.next = handles.next.wrapping_add(1);
        let name = handles.next.to_be_bytes().to_vec();
        handles.open.insert(
            name.clone(),
            Held {
                handle,
                _slot: slot,
            },
        );
        Ok(name)
    }

    fn handle(&self, handle: &[u8]) -> Result<Handle, Failed> {
        match lock(&self.handles)
            .open
            .get(handle)
            .map(|held| &held.handle)
        {
            Some(Handle::File(f)) => Ok(Handle::File(Arc::clone(f))),
            Some(Handle::Dir(d)) => Ok(Handle::Dir(Arc::clone(d))),
            None => Err(bad_handle()),
        }
    }

    fn file(&self, handle: &[u8]) -> Result<Arc<FileHandle>, Failed> {
        match self.handle(handle)? {
            Handle::File(file) => Ok(file),
            Handle::Dir(_) => Err(failure("that handle is a directory")),
        }
    }

    fn set_attrs(
        &self,
        path: &VirtualPath,
        file: Option<&FileHandle>,
        attrs: &Attrs,
    ) -> Result<(), Failed> {
        if let Some(size) = attrs.size {
            match file {
                Some(file) => file.file.set_len(size)?,
                None => {
                    let options = OpenOptions {
                        write: true,
                        ..OpenOptions::default()
                    };
                    self.home().open(path, options)?.set_len(size)?;
                }
            }
        }
        if let Some((uid, gid)) = attrs.uid_gid {
            let entry = match file {
                Some(file) => file.file.stat()?,
                None => self.home().stat(path)?,
            };
            if entry.owner() != Some((uid, gid)) {
                return Err(Failed::Status(
                    StatusCode::PermissionDenied,
                    "changing a file's owner or group is not supported".into(),
                ));
            }
        }
        // Through an open file's own descriptor: FSETSTAT changes the file the handle
        // is open on, even once its name has been given to another.
        if let Some(mode) = attrs.permissions {
            match file {
                Some(file) => file.file.set_permissions(mode)?,
                None => self.home().set_permissions(path, mode)?,
            }
        }
        if let Some((_atime, mtime)) = attrs.times {
            let when = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(mtime));
            match file {
                Some(file) => file.file.set_mtime(when)?,
                None => self.home().set_mtime(path, when)?,
            }
        }
        Ok(())
    }

    /// statvfs@openssh.com: the quota as the size of a filesystem of 1 KiB blocks, so
    /// that `df` shows the limit, the usage and what is free.
    fn statvfs(&self, id: u32) -> Vec<u8> {
        const BLOCK: u64 = 1024;
        let usage = self.home().usage();
        let blocks = usage.limit / BLOCK;
        let free = (usage.free() / BLOCK).min(blocks);
        codec::extended_u64s(
            id,
            &[
                BLOCK,  // f_bsize
                BLOCK,  // f_frsize
                blocks, // f_blocks
                free,   // f_bfree
                free,   // f_bavail
                0,      // f_files
                0,      // f_ffree
                0,      // f_favail
                0,      // f_fsid
                2,      // f_flag: ST_NOSUID
                255,    // f_namemax
            ],
        )
    }
}

/// A path as the client sent it, resolved in the user's view (relative to `/`, the
/// home). Names that are not UTF-8 are refused, never converted.
fn resolve(raw: &[u8]) -> Result<VirtualPath, Failed> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| failure("the file name is not valid UTF-8; such names are not supported"))?;
    Ok(op::resolve_from_root(text)?)
}

fn ok(id: u32) -> Vec<u8> {
    codec::status(id, StatusCode::Ok, "Success")
}

fn bad_handle() -> Failed {
    failure("no such handle (closed, or never opened)")
}

fn one_name(id: u32, name: &[u8]) -> Vec<u8> {
    codec::names(
        id,
        &[NameEntry {
            filename: name,
            longname: name,
            attrs: Attrs::default(),
        }],
    )
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
