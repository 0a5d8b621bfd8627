//! The order requests run in: concurrently where that cannot change a result, as if one
//! after the other everywhere else.
//!
//! - Reads (and fstat) of one handle may run together; a write, setstat, fsync or close
//!   of a handle waits for everything before it on that handle, and what comes after
//!   waits for it.
//! - Requests that name a path (open, stat, rename, remove, ...) are barriers: they wait
//!   for everything before them, and everything after waits for them. A client that
//!   pipelines `close` then `rename` then `stat` sees them happen in that order.
//!
//! Each request gets the [`Done`] signals it must wait for when it is dispatched (in
//! the order the client sent them), and a [`Finish`] to fire when it is over.

use std::collections::HashMap;

use tokio::sync::watch;

/// Fired (by being dropped) when a request is over.
pub struct Finish(#[allow(dead_code)] watch::Sender<()>);

/// Waits for one earlier request.
#[derive(Clone)]
pub struct Done(watch::Receiver<()>);

impl Done {
    fn pair() -> (Finish, Done) {
        let (tx, rx) = watch::channel(());
        (Finish(tx), Done(rx))
    }

    fn is_over(&self) -> bool {
        // `has_changed` fails once the sender is gone.
        self.0.has_changed().is_err()
    }

    pub async fn wait(mut self) {
        // `changed` fails once the sender is gone; nobody ever sends a value.
        while self.0.changed().await.is_ok() {}
    }
}

/// Waits for all of `deps`, in any order.
pub async fn wait_all(deps: Vec<Done>) {
    for dep in deps {
        dep.wait().await;
    }
}

/// How a request relates to the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access<'a> {
    /// May run beside other shared requests on the same handle.
    Shared(&'a [u8]),
    /// Runs alone on its handle.
    Exclusive(&'a [u8]),
    /// Runs alone in the session.
    Barrier,
    /// Touches nothing: needs no order (realpath, limits, refusals).
    Free,
}

#[derive(Default)]
struct HandleOrder {
    exclusive: Option<Done>,
    shared: Vec<Done>,
}

/// The bookkeeping, owned by the session's dispatch loop.
#[derive(Default)]
pub struct Sequencer {
    barrier: Option<Done>,
    since_barrier: Vec<Done>,
    handles: HashMap<Vec<u8>, HandleOrder>,
}

/// Past this many remembered signals, the ones already over are dropped.
const PRUNE_AT: usize = 256;

impl Sequencer {
    /// Registers the next request; returns what it waits for and how it says it is over.
    pub fn next(&mut self, access: Access<'_>) -> (Vec<Done>, Finish) {
        let (finish, done) = Done::pair();
        let mut deps: Vec<Done> = self.barrier.iter().cloned().collect();
        match access {
            Access::Free => {
                return (Vec::new(), finish);
            }
            Access::Barrier => {
                deps.append(&mut self.since_barrier);
                self.handles.clear();
                self.barrier = Some(done);
                return (deps, finish);
            }
            Access::Shared(handle) => {
                let order = self.handles.entry(handle.to_vec()).or_default();
                deps.extend(order.exclusive.iter().cloned());
                if order.shared.len() >= PRUNE_AT {
                    order.shared.retain(|d| !d.is_over());
                }
                order.shared.push(done.clone());
            }
            Access::Exclusive(handle) => {
                let order = self.handles.entry(handle.to_vec()).or_default();
                deps.extend(order.exclusive.take());
                deps.append(&mut order.shared);
                order.exclusive = Some(done.clone());
            }
        }
        if self.since_barrier.len() >= PRUNE_AT {
            self.since_barrier.retain(|d| !d.is_over());
            self.handles.retain(|_, order| {
                order.shared.retain(|d| !d.is_over());
                !order.shared.is_empty() || order.exclusive.as_ref().is_some_and(|d| !d.is_over())
            });
        }
        self.since_barrier.push(done);
        (deps, finish)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Runs each request as a task that logs its start and end, and returns the log.
    async fn run(accesses: &[(Access<'static>, u64)]) -> Vec<String> {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut seq = Sequencer::default();
        let mut tasks = Vec::new();
        for (i, (access, ms)) in accesses.iter().enumerate() {
            let (deps, finish) = seq.next(*access);
            let log = Arc::clone(&log);
            let ms = *ms;
            tasks.push(tokio::spawn(async move {
                wait_all(deps).await;
                log.lock().unwrap().push(format!("start {i}"));
                tokio::time::sleep(Duration::from_millis(ms)).await;
                log.lock().unwrap().push(format!("end {i}"));
                drop(finish);
            }));
        }
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .unwrap()
                .unwrap();
        }
        Arc::try_unwrap(log).unwrap().into_inner().unwrap()
    }

    fn pos(log: &[String], what: &str) -> usize {
        log.iter().position(|l| l == what).unwrap()
    }

    #[tokio::test]
    async fn reads_overlap_writes_and_barriers_do_not() {
        let log = run(&[
            (Access::Shared(b"h"), 60),
            (Access::Shared(b"h"), 10),
            (Access::Exclusive(b"h"), 10),
            (Access::Shared(b"h"), 10),
            (Access::Shared(b"g"), 10),
            (Access::Barrier, 10),
            (Access::Shared(b"h"), 10),
            (Access::Free, 0),
        ])
        .await;
        // The two first reads overlap: the second starts before the first ends.
        assert!(pos(&log, "start 1") < pos(&log, "end 0"));
        // The write waits for both reads; the read after it waits for the write.
        assert!(pos(&log, "start 2") > pos(&log, "end 0"));
        assert!(pos(&log, "start 3") > pos(&log, "end 2"));
        // Another handle does not wait for this one.
        assert!(pos(&log, "start 4") < pos(&log, "end 0"));
        // The barrier waits for everything before it, and the read after it for it.
        for i in 0..5 {
            assert!(pos(&log, "start 5") > pos(&log, &format!("end {i}")), "{i}");
        }
        assert!(pos(&log, "start 6") > pos(&log, "end 5"));
        // Free requests wait for nothing.
        assert!(pos(&log, "start 7") < pos(&log, "end 0"));
    }

    #[tokio::test]
    async fn many_requests_stay_bounded() {
        let mut seq = Sequencer::default();
        for _ in 0..10_000 {
            let (_deps, finish) = seq.next(Access::Shared(b"h"));
            drop(finish);
        }
        assert!(seq.since_barrier.len() <= PRUNE_AT + 1);
        assert!(seq.handles[&b"h"[..]].shared.len() <= PRUNE_AT + 1);
    }
}
