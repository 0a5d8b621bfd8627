//! The shared quota ledger's statements against a real PostgreSQL: concurrent
//! reservations from two nodes never together pass the quota, commits and releases
//! keep the numbers exact, and a dead node's reservations come back when its lease
//! lapses. Also the session leases' bookkeeping.

use std::sync::Arc;

use rsftp::auth::AccountStore;
use rsftp::auth::postgres::{PgAccounts, ReserveError, Target};

use crate::pg_util::PgCluster;

async fn store(cluster: &PgCluster) -> Arc<PgAccounts> {
    let target = Target::parse(&cluster.url(), None).unwrap();
    PgAccounts::open(&target).await.expect("store opens")
}

fn ledger(cluster: &PgCluster) -> (u64, u64) {
    let row = cluster.psql("SELECT used || ' ' || reserved FROM quota WHERE account = 'alice'");
    let mut numbers = row.split_whitespace().map(|n| n.parse::<u64>().unwrap());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reservations_on_two_nodes_never_pass_the_quota() {
    let cluster = PgCluster::start();
    let (one, two) = (store(&cluster).await, store(&cluster).await);
    assert_ne!(one.node().id(), two.node().id());
    cluster.psql(
        "INSERT INTO accounts (name) VALUES ('alice');
         INSERT INTO quota (account, limit_bytes) VALUES ('alice', 100000)",
    );
    // 20 uploads of 9000 bytes, split over both nodes: 11 fit in 100000, 9 do not.
    let tries: Vec<_> = (0..20)
        .map(|i| {
            let node = Arc::clone(if i % 2 == 0 { one.node() } else { two.node() });
            tokio::spawn(async move { node.reserve("alice", 9000).await })
        })
        .collect();
    let mut granted = Vec::new();
    for attempt in tries {
        match attempt.await.unwrap() {
            Ok(reservation) => granted.push(reservation),
            Err(ReserveError::OverQuota { wanted, limit, .. }) => {
                assert_eq!((wanted, limit), (9000, 100000));
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(granted.len(), 11);
    assert_eq!(ledger(&cluster), (0, 99000));
    let err = one.node().reserve("alice", 1001).await.unwrap_err();
    assert!(err.to_string().contains("(0 used, 99000 reserved"), "{err}");
    assert!(
        one.node().reserve("alice", 1000).await.is_ok(),
        "exactly up to the limit"
    );

    // Writes move bytes from reserved to used; what was not written goes back.
    let mut first = granted.remove(0);
    assert_eq!(one.node().commit(&mut first, 4096).await.unwrap(), 4096);
    assert!(
        one.node().commit(&mut first, 9000).await.is_err(),
        "more than reserved"
    );
    one.node().release(first).await.unwrap();
    for reservation in granted {
        one.node().release(reservation).await.unwrap();
    }
    assert_eq!(ledger(&cluster), (4096, 1000));
    assert!(matches!(
        one.node().reserve("nobody", 1).await,
        Err(ReserveError::UnknownUser(_))
    ));

    // A node whose lease lapsed (killed, or cut off) strands nothing and reserves
    // nothing: its reservations are given back by anyone's expiry run.
    let held = two.node().reserve("alice", 50000).await.unwrap();
    cluster.psql(&format!(
        "UPDATE nodes SET lease_until = now() - interval '1 second' WHERE node_id = '{0}';
         UPDATE reservations SET expires_at = now() - interval '1 second' WHERE node_id = '{0}'",
        two.node().id()
    ));
    assert!(two.node().reserve("alice", 1).await.is_err());
    let mut held = held;
    assert!(
        two.node().commit(&mut held, 1).await.is_err(),
        "written into an expired reservation"
    );
    one.node().expire_reservations().await.unwrap();
    assert_eq!(ledger(&cluster), (4096, 1000));
    // The origin names the database without its password.
    assert!(!one.origin().contains(crate::pg_util::PG_PASSWORD));
}
