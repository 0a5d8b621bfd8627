//! Idle sessions: many connections logged in at once, each with an `sftp` channel open
//! and nothing moving, held by our client library in this process (the same client for
//! both servers). What each costs the server is read from `/proc`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rsftp::client::{Connection, HostKeyCheck, NewHostKey, load_key};
use tokio::sync::Semaphore;

use crate::cases::Out;
use crate::servers::Server;
use crate::table::Side;

/// Opens `count` idle sessions to `server`, reads its memory, and closes them.
pub fn idle(
    runtime: &tokio::runtime::Runtime,
    out: &mut Out,
    server: &Server,
    count: usize,
    key: &Path,
    known_hosts: &Path,
) {
    let key = match load_key(key, None) {
        Ok(key) => key,
        Err(e) => {
            out.errors.push(format!("load key: {e}"));
            return;
        }
    };
    let (before, _, _) = server.memory();
    let held = runtime.block_on(async {
        let gate = Arc::new(Semaphore::new(8));
        let mut opening = Vec::new();
        for _ in 0..count {
            let (gate, key, user) = (Arc::clone(&gate), key.clone(), server.user.clone());
            let check = HostKeyCheck {
                known_hosts: known_hosts.to_owned(),
                new_key: NewHostKey::Refuse,
            };
            let port = server.port;
            opening.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await;
                let step = async {
                    let mut conn = Connection::connect("127.0.0.1", port, &user, check).await?;
                    if !conn.login_key(key).await? {
                        return Err(rsftp::client::ClientError::AuthFailed);
                    }
                    let sftp = conn.open_sftp().await?;
                    Ok((conn, sftp))
                };
                match tokio::time::timeout(Duration::from_secs(60), step).await {
                    Ok(Ok(session)) => Ok(session),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no login in 60 s".to_owned()),
                }
            }));
        }
        let mut held = Vec::new();
        for opened in opening {
            match opened.await {
                Ok(Ok(session)) => held.push(session),
                Ok(Err(e)) => out
                    .errors
                    .push(format!("idle session to {}: {e}", server.name)),
                Err(e) => out.errors.push(format!("idle session task: {e}")),
            }
        }
        // Let the server finish whatever logging in left to do.
        tokio::time::sleep(Duration::from_secs(1)).await;
        held
    });
    let (own, kids, pss) = server.memory();
    let n = held.len().max(1) as f64;
    let label = "idle session, server memory each";
    out.notes.push(format!(
        "idle sessions held at once: {} of {count} to {}",
        held.len(),
        server.name
    ));
    if server.name == "sshd" {
        // Its per-connection processes; the listener itself does not grow.
        out.table
            .add(label, "KiB RSS", Side::OpenSsh, kids as f64 / n / 1024.0);
        out.table
            .add(label, "KiB PSS", Side::OpenSsh, pss as f64 / n / 1024.0);
    } else {
        let grown = own.saturating_sub(before) as f64;
        out.table
            .add(label, "KiB RSS", Side::Rsftp, grown / n / 1024.0);
        out.table
            .add(label, "KiB PSS", Side::Rsftp, grown / n / 1024.0);
    }
    runtime.block_on(async {
        for (conn, sftp) in held {
            drop(sftp);
            let _ = tokio::time::timeout(Duration::from_secs(10), conn.close()).await;
        }
    });
    server.settle();
}
