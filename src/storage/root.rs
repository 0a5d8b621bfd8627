//! [`Storage`]: the folder where all homes live, and the per-user state of the homes in
//! use, which every session of a user shares.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cap_std::fs::Dir;

use super::home::{HomeDir, at};
use super::object::{ObjectHomes, ObjectStoreConfig, UploadStateStore};
use super::posix::PosixBackend;
use super::scan::ScanFailure;
use super::user_state::{UserState, lock};
use super::{
    Backend, ClusterQuota, Reconciled, Result, StorageError, Tally, Usage, VirtualPath, staging,
};

/// Where all homes live: `<root>/<user>/`, with partial uploads in
/// `<root>/.partials/<user>/`, and the per-user state of those in use.
#[derive(Clone, Debug)]
pub struct Storage {
    pub(super) root: PathBuf,
    users: Arc<Mutex<HashMap<String, Arc<UserState>>>>,
    /// `<root>/.partials`, which holds each user's staging folder.
    pub(super) staging_root: Arc<Dir>,
    /// Held while a user's staging folder is made (or migrated into) or removed.
    pub(super) staging_lock: Arc<Mutex<()>>,
    /// Homes on an object store instead of under `root`, which then keeps only the
    /// states of their uploads.
    object: Option<ObjectHomes>,
    /// The ledger of a cluster, which checks every user's bytes when set.
    cluster: Option<Arc<dyn ClusterQuota>>,
}

impl Storage {
    /// Opens the storage root, creating it and its staging area if needed.
    pub fn open(root: &Path) -> Result<Storage> {
        std::fs::create_dir_all(root).map_err(at(&VirtualPath::root()))?;
        Ok(Storage {
            root: root.to_owned(),
            users: Arc::default(),
            staging_root: Arc::new(staging::open_root(root)?),
            staging_lock: Arc::default(),
            object: None,
            cluster: None,
        })
    }

    /// Checks every user's bytes against `cluster`, the quota ledger the nodes of a
    /// cluster share, rather than against this process's ledgers alone.
    pub fn with_cluster_quota(mut self, cluster: Arc<dyn ClusterQuota>) -> Storage {
        self.cluster = Some(cluster);
        self
    }

    /// Opens the homes on the object store `config` (see `storage::object`), keeping
    /// the states of their uploads in `root`.
    pub fn open_object(root: &Path, config: &ObjectStoreConfig) -> Result<Storage> {
        Storage::open_object_with(root, config, None)
    }

    /// [`Storage::open_object`], with the states of uploads in `states` rather than in
    /// `root` when given (a database shared by the nodes of a cluster).
    pub fn open_object_with(
        root: &Path,
        config: &ObjectStoreConfig,
        states: Option<Arc<dyn UploadStateStore>>,
    ) -> Result<Storage> {
        let mut storage = Storage::open(root)?;
        let homes = match states {
            Some(states) => ObjectHomes::open_with_states(config, states),
            None => ObjectHomes::open(config, &root.join("uploads")),
        }
        .map_err(|e| StorageError::Io {
            path: VirtualPath::root(),
            source: io::Error::other(e),
        })?;
        storage.object = Some(homes);
        Ok(storage)
    }

    /// Opens `user`'s home, creating it (mode 0700) if missing. The first call for a user
    /// computes their usage from disk; later calls share that state. Every call sets the
    /// quota to `quota` bytes and `max_files` entries, so a reloaded configuration
    /// applies to sessions already open.
    ///
    /// A home whose tree cannot be measured still opens: the failure is logged, reported
    /// by [`HomeDir::unmeasured`], and the user's writes are refused until a later call
    /// (their next login, a reload) measures it.
    ///
    /// The first call for a user in this process also opens their staging folder for
    /// partial uploads, moving in what an old `.rsftp-partial` in the home holds.
    ///
    /// `user` must already be a validated account name.
    pub fn home(&self, user: &str, quota: u64, max_files: Option<u64>) -> Result<HomeDir> {
        // The caller validates names; this only keeps a bad one from naming another
        // place, such as the staging area `.partials` (account names never start with
        // a dot).
        if user.is_empty() || user.starts_with('.') || user.contains(['/', '\0']) {
            return Err(StorageError::BadPath {
                reason: "not a valid user name",
            });
        }
        let backend = self.backend_of(user)?;
        Ok(self.home_on(user, quota, max_files, backend))
    }

    /// The backend of `user`'s home, made if missing; see [`Storage::home`].
    fn backend_of(&self, user: &str) -> Result<Arc<dyn Backend>> {
        if let Some(homes) = &self.object {
            return Ok(Arc::new(homes.backend(user)?));
        }
        let path = self.root.join(user);
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(StorageError::from_io(&VirtualPath::root(), e));
            }
            _ => {}
        }
        let dir = Dir::open_ambient_dir(&path, cap_std::ambient_authority())
            .map_err(at(&VirtualPath::root()))?;

        let cached = lock(&self.users).get(user).cloned();
        let staging = self.staging_of(user, &dir, cached.is_none())?;
        if cached.is_none() {
            warn_if_apart(user, &staging);
        }
        Ok(Arc::new(PosixBackend::new(dir, staging)))
    }

    /// The home of `user` on `backend`, with the state all of the user's sessions share:
    /// measured on the first open, and again while the last measure failed.
    fn home_on(
        &self,
        user: &str,
        quota: u64,
        max_files: Option<u64>,
        backend: Arc<dyn Backend>,
    ) -> HomeDir {
        let cached = lock(&self.users).get(user).cloned();
        let state = match cached {
            Some(state) => {
                if lock(&state.unmeasured).is_some() {
                    state.rescan(user, backend.as_ref());
                }
                state
            }
            None => {
                // Scan without holding the map, so other users' logins don't wait. Two
                // first logins of one user may both scan; the first to insert wins, and
                // no write can happen before a state exists.
                let scanned = self.measure(user, backend.as_ref());
                let cluster = self.cluster.clone().map(|c| (c, user.to_owned()));
                let fresh = Arc::new(UserState::new(quota, max_files, scanned, cluster));
                Arc::clone(lock(&self.users).entry(user.to_owned()).or_insert(fresh))
            }
        };
        state.ledger.set_limits(quota, max_files);
        HomeDir { backend, state }
    }

    /// Measures `user`'s home; in a cluster, also sets the shared ledger's `used` to
    /// what was found, unless an upload of theirs is in flight.
    fn measure(
        &self,
        user: &str,
        backend: &dyn Backend,
    ) -> std::result::Result<Tally, ScanFailure> {
        let token = self.cluster.as_ref().and_then(|c| c.measure_token(user));
        let scanned = backend.measure();
        match (&scanned, &self.cluster, token) {
            (Err(failure), _, _) => {
                tracing::warn!(user, error = %failure, "home cannot be measured; writes refused");
            }
            (Ok(found), Some(cluster), Some(token)) => {
                log_reconciled(user, &cluster.reconcile(user, found.bytes, token));
            }
            _ => {}
        }
        scanned
    }

    /// Measures `user`'s home and sets the cluster's `used` for them to what was found
    /// (see [`ClusterQuota::reconcile`]): what `rsftpd db reconcile` and the periodic
    /// reconcile do. Without a cluster ledger there is nothing to reconcile.
    pub fn reconcile(&self, user: &str) -> Result<Reconciled> {
        let Some(cluster) = &self.cluster else {
            return Ok(Reconciled::Unknown);
        };
        let backend = self.backend_of(user)?;
        let Some(token) = cluster.measure_token(user) else {
            return Ok(Reconciled::Unavailable(
                "the shared ledger does not answer".to_owned(),
            ));
        };
        let found = backend.measure().map_err(|failure| StorageError::Io {
            path: VirtualPath::root(),
            source: io::Error::other(failure.to_string()),
        })?;
        Ok(cluster.reconcile(user, found.bytes, token))
    }

    /// The usage of `user`, if their home has been opened since start (or `forget`).
    pub fn usage_of(&self, user: &str) -> Option<Usage> {
        lock(&self.users).get(user).map(|s| s.ledger.usage())
    }

    /// Drops the cached state of `user` (for instance after the account was deleted);
    /// the next [`Storage::home`] scans the disk again. Sessions still open keep the old
    /// state, so call this only when the user has none.
    pub fn forget(&self, user: &str) {
        lock(&self.users).remove(user);
    }
}

/// Logs what a reconcile did, when it found drift or could not check.
fn log_reconciled(user: &str, outcome: &Reconciled) {
    match outcome {
        Reconciled::Set { was, now } if was != now => tracing::warn!(
            target: "rsftpd::admin",
            user, was, now, drift = *now as i128 - *was as i128,
            "quota ledger corrected from the home"
        ),
        Reconciled::Unavailable(reason) => tracing::warn!(
            target: "rsftpd::admin",
            user, reason = %reason, "quota ledger not checked against the home"
        ),
        _ => {}
    }
}

/// Says once, at a home's first open, that it is on another filesystem than the staging
/// area, so its partial uploads wait in a folder inside it that no user path reaches.
fn warn_if_apart(user: &str, staging: &staging::StagingFolder) {
    if staging.in_home.is_some() {
        tracing::info!(
            user,
            folder = staging::HOME_STAGING_DIR,
            "the home is on another filesystem than the staging area for uploads; \
             its partial uploads wait in a folder inside it, hidden from the user"
        );
    }
}
