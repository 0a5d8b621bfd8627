//! `put` and `mirror -R` of many small files over rsftp: whole batches go through
//! [`pipeline`], each file still ending with its own `verified md5` line or error.
//!
//! A refused file closes the session it was sent on (the protocol cannot skip the bytes
//! we queued behind it), so the batch goes on over a fresh session in the same
//! directory. A file the server reports busy, and one that has grown past the batch size
//! since it was planned, is sent the ordinary way, which waits for a busy path.

use std::time::Duration;

use super::ShellError;
use super::listing;
use super::parallel::{Ctx, Done, upload_one};
use super::transfers::{Job, summary};
use crate::client::pipeline::{self, BATCH_BYTES, BATCH_FILES, SMALL_FILE, SmallFile};
use crate::client::progress::OverallBar;
use crate::client::{ClientError, Remote};
use crate::protocol::ErrorCode;

/// Where the batch that starts at `start` ends: the small files that follow it, as many
/// as one batch takes and at most an even share of what is left among `workers`, so
/// that every session has some. `start + 1` when the file there is not small.
pub(super) fn batch_end(files: &[Job], start: usize, workers: usize) -> usize {
    let left = files.len().saturating_sub(start);
    let share = left.div_ceil(workers.max(1)).clamp(1, BATCH_FILES);
    let mut end = start;
    let mut bytes = 0;
    while end < files.len() && end - start < share {
        let size = files[end].size;
        if size > SMALL_FILE || (end > start && bytes + size > BATCH_BYTES) {
            break;
        }
        bytes += size;
        end += 1;
    }
    end.max(start + 1)
}

/// Uploads `jobs`, all small, over `client`. Each file's outcome (`None`: never sent,
/// as the session broke), and whether the session is still usable.
pub(super) async fn upload_batch(
    client: &mut Remote,
    ctx: &Ctx<'_>,
    jobs: &[Job],
    overall: Option<&OverallBar>,
) -> (Vec<Option<Result<Done, ShellError>>>, bool) {
    let mut results: Vec<Option<Result<Done, ShellError>>> = jobs.iter().map(|_| None).collect();
    let settle = |results: &mut Vec<Option<Result<Done, ShellError>>>, i: usize, result| {
        if let Some(overall) = overall {
            overall.file_done();
        }
        results[i] = Some(result);
    };
    let read = pipeline::read_small(jobs.iter().map(|j| j.local.clone()).collect()).await;
    let read = match read {
        Ok(read) => read,
        Err(err) => {
            for i in 0..jobs.len() {
                let err = ClientError::Protocol(err.to_string());
                settle(&mut results, i, Err(err.into()));
            }
            return (results, true);
        }
    };
    let mut pending: Vec<(usize, SmallFile)> = Vec::new();
    let mut ordinary = Vec::new();
    for (i, (job, loaded)) in jobs.iter().zip(read).enumerate() {
        match loaded {
            Ok(Some((data, md5))) => pending.push((
                i,
                SmallFile {
                    remote: job.remote.clone(),
                    data,
                    md5,
                },
            )),
            Ok(None) => ordinary.push(i),
            Err(err) => settle(&mut results, i, Err(err.into())),
        }
    }

    // Bounded: a round that settles no file ends the loop.
    while !pending.is_empty() {
        let Remote::Rsftp(rsftp) = client else {
            ordinary.extend(pending.iter().map(|(i, _)| *i));
            break;
        };
        let (indices, files): (Vec<usize>, Vec<SmallFile>) = pending.drain(..).unzip();
        let batch = pipeline::put_batch(rsftp, &files).await;
        let mut settled = 0;
        for ((i, file), outcome) in indices.into_iter().zip(files).zip(batch.outcomes) {
            let job = &jobs[i];
            match outcome {
                None => pending.push((i, file)),
                Some(Err(err)) if err.code() == Some(&ErrorCode::Busy) => {
                    settled += 1;
                    ordinary.push(i);
                }
                Some(Err(err)) => {
                    settled += 1;
                    settle(&mut results, i, Err(err.into()));
                }
                Some(Ok(report)) => {
                    settled += 1;
                    if let Some(overall) = overall {
                        overall.add(report.size);
                    }
                    let to = listing::display_name(&job.remote);
                    let line = summary(&ctx.show_local(&job.local), &to, &report, Duration::ZERO);
                    ctx.printer.note(&line);
                    let done = Done {
                        check: report.check,
                        sent: report.transferred,
                    };
                    settle(&mut results, i, Ok(done));
                }
            }
        }
        let Some(reason) = batch.closed else {
            continue;
        };
        if let Err(err) = reopen(client, ctx).await {
            // Nothing more can go over this worker's session. The error breaks the
            // session, so the shell opens its own afresh after the command.
            let why = format!(
                "not sent: the session ended ({}) and a new one could not be opened: {}",
                super::explain(&reason),
                super::explain(&err)
            );
            let left = pending.drain(..).map(|(i, _)| i).chain(ordinary.drain(..));
            for i in left.collect::<Vec<_>>() {
                settle(
                    &mut results,
                    i,
                    Err(ClientError::Protocol(why.clone()).into()),
                );
            }
            return (results, false);
        }
        if settled == 0 {
            // A fresh session that answers nothing would only end the same way again.
            for (i, _) in pending.drain(..) {
                let err = ClientError::Protocol(format!("not sent: {}", super::explain(&reason)));
                settle(&mut results, i, Err(err.into()));
            }
        }
    }

    ordinary.sort_unstable();
    for i in ordinary {
        let result = upload_one(client, ctx, &jobs[i], overall).await;
        let broke = result.as_ref().is_err_and(ShellError::breaks_session);
        settle(&mut results, i, result);
        if broke {
            return (results, false);
        }
    }
    (results, true)
}

/// How often, and how far apart, a fresh session is asked for: the server counts the
/// closed one against its channel limit until it has finished closing it.
const REOPEN_TRIES: usize = 20;
const REOPEN_PAUSE: Duration = Duration::from_millis(50);

/// Replaces a session the server closed with a fresh one in the shell's directory.
async fn reopen(client: &mut Remote, ctx: &Ctx<'_>) -> Result<(), ClientError> {
    let mut tries = 0;
    // Bounded: REOPEN_TRIES attempts, REOPEN_PAUSE apart.
    let mut fresh = loop {
        tries += 1;
        match client.open_like(ctx.conn).await {
            Ok(fresh) => break fresh,
            Err(_) if tries < REOPEN_TRIES => tokio::time::sleep(REOPEN_PAUSE).await,
            Err(err) => return Err(err),
        }
    };
    fresh.cd(Some(ctx.remote_cwd)).await?;
    *client = fresh;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(sizes: &[u64]) -> Vec<Job> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| Job {
                remote: format!("/f{i}"),
                local: format!("f{i}").into(),
                size,
                mtime: None,
            })
            .collect()
    }

    #[test]
    fn batches_take_runs_of_small_files_and_share_them_out() {
        let files = jobs(&[10; 200]);
        assert_eq!(batch_end(&files, 0, 1), BATCH_FILES);
        // 200 files among 4 workers: 50 each, then what is left.
        assert_eq!(batch_end(&files, 0, 4), 50);
        assert_eq!(batch_end(&files, 190, 4), 193);
        assert_eq!(batch_end(&files, 199, 4), 200);
        assert_eq!(
            batch_end(&files, 200, 4),
            201,
            "past the end: one, taken as none"
        );
    }

    #[test]
    fn a_big_file_ends_a_batch_and_goes_alone() {
        let files = jobs(&[10, 10, SMALL_FILE + 1, 10, SMALL_FILE]);
        assert_eq!(batch_end(&files, 0, 1), 2);
        assert_eq!(batch_end(&files, 2, 1), 3);
        assert_eq!(batch_end(&files, 3, 1), 5);
    }

    #[test]
    fn a_batch_stays_under_its_byte_limit() {
        let files = jobs(&[SMALL_FILE; 40]);
        let per_batch = (BATCH_BYTES / SMALL_FILE) as usize;
        assert_eq!(batch_end(&files, 0, 1), per_batch);
    }
}
