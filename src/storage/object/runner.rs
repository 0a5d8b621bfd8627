//! Runs the object store's async requests for the storage core, which is blocking code
//! called from `spawn_blocking` threads (and, at start, from the server's own async
//! code): on a small runtime of our own, so no call depends on which runtime, if any,
//! its caller's thread belongs to.

use std::fmt;
use std::future::Future;
use std::io;

use tokio::runtime::{Runtime, RuntimeFlavor};

/// The runtime the object store's requests run on.
pub struct Runner {
    runtime: Option<Runtime>,
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner").finish_non_exhaustive()
    }
}

impl Runner {
    pub fn new() -> io::Result<Runner> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rsftp-object-store")
            .enable_all()
            .build()?;
        Ok(Runner {
            runtime: Some(runtime),
        })
    }

    /// Runs `future` to its end and returns its output, from whatever thread calls:
    /// a blocking thread (the storage core's usual caller) or one with no runtime runs
    /// it right here; a worker of a multi-threaded runtime (a server starting up) first
    /// tells its runtime it is about to block; a single-threaded runtime, which cannot
    /// spare its thread, gets it run on another.
    pub fn block_on<F>(&self, future: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        let Some(runtime) = &self.runtime else {
            // Only `drop` takes the runtime, and nothing runs after it.
            unreachable!("the object store's runtime is gone")
        };
        match tokio::runtime::Handle::try_current() {
            Err(_) => runtime.block_on(future),
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| runtime.block_on(future))
            }
            Ok(_) => std::thread::scope(|scope| {
                scope
                    .spawn(|| runtime.block_on(future))
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }),
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // Dropping a runtime waits for its tasks, which is refused inside another
        // runtime; the last home may well be dropped there.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
