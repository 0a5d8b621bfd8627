//! Passwords: the in-memory secret, Argon2 PHC hashes, and verification off the reactor.
//!
//! Verifying an Argon2 hash takes tens of milliseconds of CPU and ~19 MiB of memory, so
//! [`PasswordChecker`] runs it on tokio's blocking pool behind a semaphore, and spends the
//! same work on unknown users, against a dummy hash with the accounts' Argon2 parameters,
//! so that timing does not tell which names exist.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use argon2::password_hash::phc;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use rand::RngExt;
use tokio::sync::Semaphore;

/// Characters for generated passwords: letters and digits without the look-alikes
/// `0 O o 1 I l`, so a password read off a terminal can be typed back.
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";

/// A password held in memory. `Debug` and `Display` print `<secret>`, so it cannot end up
/// in a log line by accident; call [`Secret::expose`] where the text is really needed.
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    /// A random password of `len` characters from an alphabet without look-alike characters
    /// (about 5.8 bits each: 20 characters give 116 bits).
    pub fn generate(len: usize) -> Self {
        let mut rng = rand::rng();
        let text = (0..len)
            .map(|_| char::from(PASSWORD_ALPHABET[rng.random_range(0..PASSWORD_ALPHABET.len())]))
            .collect();
        Self(text)
    }

    /// The password text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(password: String) -> Self {
        Self(password)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// A stored password hash: a PHC string such as `$argon2id$v=19$m=19456,t=2,p=1$...`.
///
/// Only strings that [`verify_password`] can use are accepted: an Argon2 variant with its
/// parameters, salt and hash output. `Debug` prints `<hash>`: a hash is not a password,
/// but it can be attacked offline, so it stays out of logs too.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Checks that `phc` is a usable Argon2 PHC string.
    pub fn parse(phc: &str) -> Result<Self, AuthError> {
        let parsed = phc::PasswordHash::new(phc).map_err(AuthError::MalformedHash)?;
        if argon2::Algorithm::try_from(parsed.algorithm.as_str()).is_err() {
            return Err(AuthError::UnsupportedAlgorithm(
                parsed.algorithm.to_string(),
            ));
        }
        if parsed.salt.is_none() || parsed.hash.is_none() {
            return Err(AuthError::IncompleteHash);
        }
        argon2::Params::try_from(&parsed).map_err(AuthError::BadParameters)?;
        Ok(Self(phc.to_owned()))
    }

    /// The PHC string, as stored in `users.toml`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PasswordHash {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hash>")
    }
}

/// Errors from hashing passwords or reading stored hashes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("cannot hash the password: {0}")]
    Hashing(argon2::password_hash::Error),
    #[error("not a valid PHC password hash: {0}")]
    MalformedHash(phc::Error),
    #[error("unusable Argon2 parameters in the password hash: {0}")]
    BadParameters(argon2::password_hash::Error),
    #[error("unsupported password hash algorithm {0:?} (expected argon2id, argon2i or argon2d)")]
    UnsupportedAlgorithm(String),
    #[error("password hash has no salt or no hash output")]
    IncompleteHash,
}

/// Hashes `password` with Argon2id, the crate's default parameters and a random salt.
///
/// Blocking: this takes tens of milliseconds of CPU.
pub fn hash_password(password: &Secret) -> Result<PasswordHash, AuthError> {
    let hash = Argon2::default()
        .hash_password(password.expose().as_bytes())
        .map_err(AuthError::Hashing)?;
    Ok(PasswordHash(hash.to_string()))
}

/// True if `password` matches `hash`. Any Argon2 variant and parameters in the PHC string
/// are honoured. Blocking: this takes tens of milliseconds of CPU.
pub fn verify_password(hash: &PasswordHash, password: &Secret) -> bool {
    // `PasswordHash` was validated when it was made, so this parse does not fail in
    // practice; if it did, refusing the login is the safe answer.
    let Ok(parsed) = phc::PasswordHash::new(&hash.0) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.expose().as_bytes(), &parsed)
        .is_ok()
}

/// What verifying a hash costs: its Argon2 variant, version and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cost {
    algorithm: argon2::Algorithm,
    version: argon2::Version,
    params: argon2::Params,
}

impl Cost {
    fn of(hash: &PasswordHash) -> Option<Cost> {
        let parsed = phc::PasswordHash::new(&hash.0).ok()?;
        let algorithm = argon2::Algorithm::try_from(parsed.algorithm.as_str()).ok()?;
        let version = match parsed.version {
            Some(version) => argon2::Version::try_from(version).ok()?,
            None => argon2::Version::default(),
        };
        let params = argon2::Params::try_from(&parsed).ok()?;
        Some(Cost {
            algorithm,
            version,
            params,
        })
    }

    /// The cost most of `hashes` share (the first seen among equals), if any.
    fn most_common<'a>(hashes: impl IntoIterator<Item = &'a PasswordHash>) -> Option<Cost> {
        let mut counts: Vec<(Cost, usize)> = Vec::new();
        for cost in hashes.into_iter().filter_map(Cost::of) {
            match counts.iter_mut().find(|(seen, _)| *seen == cost) {
                Some((_, count)) => *count += 1,
                None => counts.push((cost, 1)),
            }
        }
        // `max_by_key` keeps the last of equal maxima; reversing keeps the first.
        counts
            .into_iter()
            .rev()
            .max_by_key(|(_, count)| *count)
            .map(|(cost, _)| cost)
    }

    /// A hash of a random password at this cost. Blocking, as long as one verification.
    fn dummy(&self) -> Result<PasswordHash, AuthError> {
        let hash = Argon2::new(self.algorithm, self.version, self.params.clone())
            .hash_password(Secret::generate(20).expose().as_bytes())
            .map_err(AuthError::Hashing)?;
        Ok(PasswordHash(hash.to_string()))
    }
}

/// A well-formed Argon2id PHC string with the default parameters (m=19456, t=2, p=1) and
/// a random salt and output. It is the dummy only if hashing fails at construction, which
/// can only happen when memory runs out. No password is known to match it, and none needs
/// to: a check against the dummy always answers false.
const FALLBACK_DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c8qVnlSgG2NB6Gqf3W3P0A$JxG+VprQbrjCbSSgsqKvqjbUBR5GsxNwSMVh1Ajx5MQ";

/// Verifies passwords on tokio's blocking pool, at most `max_concurrent` at a time.
///
/// Cheap to clone: clones share the semaphore and the dummy hash.
#[derive(Clone)]
pub struct PasswordChecker {
    inner: Arc<CheckerInner>,
}

struct CheckerInner {
    permits: Arc<Semaphore>,
    /// Checked against when there is no stored hash, so that unknown users cost as much
    /// time as known ones: it has the cost of most account hashes (see
    /// [`PasswordChecker::match_accounts`]).
    dummy: RwLock<PasswordHash>,
    verifications: AtomicU64,
    #[cfg(test)]
    running: std::sync::atomic::AtomicUsize,
    #[cfg(test)]
    peak_running: std::sync::atomic::AtomicUsize,
}

impl PasswordChecker {
    /// A checker that runs at most `max_concurrent` verifications at once (at least one).
    ///
    /// Blocking: computes the dummy hash (tens of milliseconds). Call it at startup.
    pub fn new(max_concurrent: usize) -> Self {
        let dummy = hash_password(&Secret::generate(20))
            .unwrap_or_else(|_| PasswordHash(FALLBACK_DUMMY_HASH.to_owned()));
        Self {
            inner: Arc::new(CheckerInner {
                permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
                dummy: RwLock::new(dummy),
                verifications: AtomicU64::new(0),
                #[cfg(test)]
                running: Default::default(),
                #[cfg(test)]
                peak_running: Default::default(),
            }),
        }
    }

    /// Gives the dummy hash the Argon2 variant and parameters that most of `hashes` (the
    /// accounts' password hashes) have, so that a check for an unknown user takes as long
    /// as one for a real user. With no hashes, or if hashing fails, the dummy stays.
    ///
    /// Blocking: may compute a new dummy hash, which costs one verification.
    pub fn match_accounts<'a>(&self, hashes: impl IntoIterator<Item = &'a PasswordHash>) {
        let Some(cost) = Cost::most_common(hashes) else {
            return;
        };
        if Cost::of(&self.dummy()).as_ref() == Some(&cost) {
            return;
        }
        if let Ok(dummy) = cost.dummy() {
            *self
                .inner
                .dummy
                .write()
                .unwrap_or_else(PoisonError::into_inner) = dummy;
        }
    }

    /// The current dummy hash.
    fn dummy(&self) -> PasswordHash {
        // A plain value replaced whole: a panic elsewhere cannot leave it half-written.
        self.inner
            .dummy
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// True if `password` matches `stored`.
    ///
    /// With `stored == None` (unknown user, or a user without a password) this still runs
    /// one verification, against the dummy hash, and returns false.
    pub async fn check(&self, stored: Option<&PasswordHash>, password: Secret) -> bool {
        let known = stored.is_some();
        let hash = match stored {
            Some(hash) => hash.clone(),
            None => self.dummy(),
        };
        // The permit moves into the blocking task: if this future is dropped (the client
        // hung up), the hash still runs to the end and keeps its slot until then.
        let Ok(permit) = Arc::clone(&self.inner.permits).acquire_owned().await else {
            return false; // The semaphore is never closed.
        };
        let inner = Arc::clone(&self.inner);
        let matched = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            inner.verifications.fetch_add(1, Ordering::Relaxed);
            #[cfg(test)]
            {
                let now = inner.running.fetch_add(1, Ordering::SeqCst) + 1;
                inner.peak_running.fetch_max(now, Ordering::SeqCst);
            }
            let matched = verify_password(&hash, &password);
            #[cfg(test)]
            inner.running.fetch_sub(1, Ordering::SeqCst);
            matched
        })
        .await;
        // A panic in the blocking task counts as a failed login.
        known && matched.unwrap_or(false)
    }

    /// How many verifications have run so far, dummy ones included.
    pub fn verifications(&self) -> u64 {
        self.inner.verifications.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for PasswordChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordChecker")
            .field("available_permits", &self.inner.permits.available_permits())
            .field("verifications", &self.verifications())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_hashes_stay_out_of_debug_output() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "<secret> <secret>");
        let hash = hash_password(&secret).unwrap();
        assert_eq!(format!("{hash:?}"), "<hash>");
    }

    #[test]
    fn generated_passwords_avoid_look_alikes() {
        let secret = Secret::generate(20);
        assert_eq!(secret.expose().len(), 20);
        assert!(
            secret
                .expose()
                .bytes()
                .all(|b| PASSWORD_ALPHABET.contains(&b))
        );
        assert_ne!(secret.expose(), Secret::generate(20).expose());
    }

    #[test]
    fn hashes_with_argon2id_and_verifies() {
        let hash = hash_password(&Secret::new("correct horse")).unwrap();
        assert!(
            hash.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            hash.as_str()
        );
        assert!(verify_password(&hash, &Secret::new("correct horse")));
        assert!(!verify_password(&hash, &Secret::new("correct horse ")));
        assert_eq!(PasswordHash::parse(hash.as_str()).unwrap(), hash);
    }

    #[test]
    fn verifies_other_argon2_variants() {
        // argon2i with small parameters, made with the same crate.
        let argon2i = Argon2::new(
            argon2::Algorithm::Argon2i,
            argon2::Version::V0x13,
            argon2::Params::new(64, 1, 1, None).unwrap(),
        );
        let phc = argon2i.hash_password(b"pw").unwrap().to_string();
        assert!(phc.starts_with("$argon2i$"));
        let hash = PasswordHash::parse(&phc).unwrap();
        assert!(verify_password(&hash, &Secret::new("pw")));
        assert!(!verify_password(&hash, &Secret::new("PW")));
    }

    #[test]
    fn fallback_dummy_hash_is_usable() {
        let hash = PasswordHash::parse(FALLBACK_DUMMY_HASH).unwrap();
        assert!(!verify_password(&hash, &Secret::new("")));
    }

    #[test]
    fn rejects_unusable_hashes() {
        for bad in ["", "hunter2", "$argon2id", "$argon2id$v=19$m=19456,t=2,p=1"] {
            assert!(PasswordHash::parse(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            PasswordHash::parse("$2b$12$abcdefghijklmnopqrstuv"),
            Err(AuthError::UnsupportedAlgorithm(_) | AuthError::MalformedHash(_))
        ));
        let err =
            PasswordHash::parse("$scrypt$ln=15,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo").unwrap_err();
        assert!(
            matches!(err, AuthError::UnsupportedAlgorithm(ref a) if a == "scrypt"),
            "{err}"
        );
        // Parameters argon2 cannot use (t=0) are caught at load, not at login.
        let bad_params = "$argon2id$v=19$m=19456,t=0,p=1$c8qVnlSgG2NB6Gqf3W3P0A$JxG+VprQbrjCbSSgsqKvqjbUBR5GsxNwSMVh1Ajx5MQ";
        assert!(PasswordHash::parse(bad_params).is_err());
    }

    #[tokio::test]
    async fn checker_accepts_right_and_refuses_wrong_password() {
        let checker = PasswordChecker::new(2);
        let hash = hash_password(&Secret::new("s3cret")).unwrap();
        assert!(checker.check(Some(&hash), Secret::new("s3cret")).await);
        assert!(!checker.check(Some(&hash), Secret::new("S3cret")).await);
        assert_eq!(checker.verifications(), 2);
    }

    #[tokio::test]
    async fn checker_runs_a_hash_for_unknown_users() {
        let checker = PasswordChecker::new(1);
        let dummy_password = Secret::new(checker.dummy().as_str());
        assert!(!checker.check(None, Secret::new("anything")).await);
        // Even the dummy's own text (or its real password, were it known) gets nowhere.
        assert!(!checker.check(None, dummy_password).await);
        assert_eq!(checker.verifications(), 2);
    }

    /// An Argon2 hash of `password` with the given variant and costs.
    fn hash_with(algorithm: argon2::Algorithm, m: u32, t: u32, p: u32) -> PasswordHash {
        let params = argon2::Params::new(m, t, p, None).unwrap();
        let phc = Argon2::new(algorithm, argon2::Version::V0x13, params)
            .hash_password(b"pw")
            .unwrap()
            .to_string();
        PasswordHash::parse(&phc).unwrap()
    }

    #[test]
    fn the_dummy_takes_the_cost_of_most_account_hashes() {
        let checker = PasswordChecker::new(1);
        let default_cost = Cost::of(&checker.dummy()).unwrap();
        let defaults = argon2::Params::default();
        let costs = |p: &argon2::Params| (p.m_cost(), p.t_cost(), p.p_cost());
        assert_eq!(costs(&default_cost.params), costs(&defaults));

        // Accounts hashed elsewhere, with other costs than this crate's defaults.
        let common = hash_with(argon2::Algorithm::Argon2id, 256, 3, 2);
        let odd = hash_with(argon2::Algorithm::Argon2i, 64, 1, 1);
        let hashes = [odd.clone(), common.clone(), common.clone()];
        checker.match_accounts(&hashes);
        let dummy = checker.dummy();
        assert_eq!(Cost::of(&dummy), Cost::of(&common));
        assert!(dummy.as_str().starts_with("$argon2id$v=19$m=256,t=3,p=2$"));
        assert_ne!(dummy, common, "a fresh salt and password, not a copy");

        // The same costs again change nothing; no hashes at all keep the dummy too.
        checker.match_accounts(&hashes);
        assert_eq!(checker.dummy(), dummy);
        checker.match_accounts(&[]);
        assert_eq!(checker.dummy(), dummy);

        // A tie goes to the first seen.
        checker.match_accounts(&[odd.clone(), common.clone()]);
        assert_eq!(Cost::of(&checker.dummy()), Cost::of(&odd));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn checker_respects_the_concurrency_cap() {
        let checker = PasswordChecker::new(2);
        let hash = hash_password(&Secret::new("pw")).unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let checker = checker.clone();
                let hash = hash.clone();
                let password = if i % 2 == 0 { "pw" } else { "nope" };
                tokio::spawn(async move { checker.check(Some(&hash), Secret::new(password)).await })
            })
            .collect();
        let mut accepted = 0;
        for task in tasks {
            accepted += usize::from(task.await.unwrap());
        }
        assert_eq!(accepted, 4);
        assert_eq!(checker.verifications(), 8);
        let peak = checker.inner.peak_running.load(Ordering::SeqCst);
        assert!((1..=2).contains(&peak), "peak {peak}");
        assert_eq!(checker.inner.permits.available_permits(), 2);
    }

    #[tokio::test]
    async fn zero_concurrency_means_one() {
        let checker = PasswordChecker::new(0);
        assert!(!checker.check(None, Secret::new("x")).await);
    }
}
