//! The writer: one blocking thread per pass that owns the warehouse, commits the pages queued
//! for it (of any range, each with its own checkpoint advance) in one transaction, and records
//! the run.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{Progress, SyncError};
use crate::resource::Resource;
use crate::warehouse::history::Switch;
use crate::warehouse::{
    BackfillState, Batch, Mark, RowStats, RunKind, RunStatus, Warehouse, WarehouseError,
};

/// Queued pages are taken into one transaction until it holds this many records (the last
/// page taken may go past it). Counted in records, not pages, so that small pages share
/// commits as much as large ones.
pub const MAX_ROWS_PER_COMMIT: usize = 8000;

/// What the fetch side sends the writer.
pub(super) enum Msg<T> {
    Batch(Batch<T>),
    StartBackfill(BackfillState),
    FinishBackfill(Mark),
    Finish(RunStatus, Option<String>),
}

/// What the writer read before the pass began.
pub(super) struct Init {
    pub run_id: i64,
    pub mark: Mark,
    pub backfill: Option<BackfillState>,
}

/// What the writer committed over a whole pass.
pub(super) struct Written {
    pub stats: RowStats,
    pub pages: u64,
    pub mark: Mark,
}

/// Why the writer stopped before the pass finished.
pub(super) enum WriterError {
    Warehouse(WarehouseError),
    /// Every sender went away without a `Finish`: the fetch side died.
    FetchEnded,
}

/// The warehouse handed back with the writer's result.
pub(super) type WriterResult<W> = (W, Result<Written, WriterError>);

/// Runs on a blocking thread: owns the warehouse for the pass. Applied batches go back over
/// `spent`, to be freed by the fetch side that allocated them (see [`super::Fetch::send`]).
pub(super) fn writer<R, W>(
    mut wh: W,
    kind: RunKind,
    history: bool,
    mut rx: mpsc::Receiver<Msg<R::Record>>,
    spent: std::sync::mpsc::Sender<Batch<R::Record>>,
    init: oneshot::Sender<Option<Init>>,
    progress: Arc<dyn Progress>,
) -> WriterResult<W>
where
    R: Resource,
    W: Warehouse,
{
    let start = (|| -> Result<Init, WarehouseError> {
        let mark = wh.mark(R::SPEC)?;
        let backfill = wh.backfill_state(R::SPEC)?;
        let run_id = wh.begin_run(R::SPEC, kind, &mark)?;
        match reconnecting(|| wh.set_history(R::SPEC, history, run_id))? {
            Switch::Seeded(n) => tracing::info!(
                stream = R::NAME,
                versions = n,
                "history turned on: one version seeded per stored record"
            ),
            Switch::Stopped => tracing::info!(
                stream = R::NAME,
                "history turned off: the history table is kept and no longer written"
            ),
            Switch::Unchanged => {}
        }
        Ok(Init {
            run_id,
            mark,
            backfill,
        })
    })();
    let run_id = match start {
        Ok(i) => {
            let id = i.run_id;
            let _ = init.send(Some(i));
            id
        }
        Err(e) => {
            let _ = init.send(None);
            return (wh, Err(WriterError::Warehouse(e)));
        }
    };
    let mut total = RowStats::default();
    let mut pages_total = 0u64;
    let mut pending: Option<Msg<R::Record>> = None;
    loop {
        let Some(msg) = pending.take().or_else(|| rx.blocking_recv()) else {
            // Every sender is gone without a Finish: the fetch side died; record it.
            let _ = wh.finish_run(R::SPEC, run_id, RunStatus::Failed, Some("fetch task ended"));
            return (wh, Err(WriterError::FetchEnded));
        };
        let result = match msg {
            Msg::Batch(batch) => {
                // Queued pages go into the same transaction, each with its own advance.
                let mut rows = batch.rows();
                let mut batches = vec![batch];
                while rows < MAX_ROWS_PER_COMMIT {
                    match rx.try_recv() {
                        Ok(Msg::Batch(next)) => {
                            rows += next.rows();
                            batches.push(next);
                        }
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                for bad in batches.iter().flat_map(|b| &b.bad) {
                    tracing::warn!(
                        id = ?bad.id,
                        modified_date = ?bad.modified_date,
                        error = %bad.error,
                        "record quarantined (kept whole in the quarantine table); the pass goes on"
                    );
                }
                let applied = reconnecting(|| wh.apply::<R>(run_id, &batches)).map(|s| {
                    total.add(&s);
                    pages_total += batches.len() as u64;
                    progress.committed(R::NAME, &s);
                });
                // The fetch side may be gone (the pass is ending): then they are freed here.
                for batch in batches {
                    let _ = spent.send(batch);
                }
                applied
            }
            Msg::StartBackfill(state) => reconnecting(|| wh.start_backfill(R::SPEC, &state)),
            Msg::FinishBackfill(mark) => reconnecting(|| wh.finish_backfill(R::SPEC, mark.clone())),
            Msg::Finish(status, error) => {
                let r = wh
                    .finish_run(R::SPEC, run_id, status, error.as_deref())
                    .and_then(|_| wh.mark(R::SPEC));
                let r = r
                    .map(|mark| Written {
                        stats: total,
                        pages: pages_total,
                        mark,
                    })
                    .map_err(WriterError::Warehouse);
                return (wh, r);
            }
        };
        if let Err(e) = result {
            let _ = wh.finish_run(R::SPEC, run_id, RunStatus::Failed, Some(&e.to_string()));
            return (wh, Err(WriterError::Warehouse(e)));
        }
    }
}

/// How long a write waits for a PostgreSQL server that went away (a restart takes seconds, a
/// promotion a few more) before the pass fails and the next one tries again.
const RECONNECT_FOR: std::time::Duration = std::time::Duration::from_secs(20);

/// Repeats `f` while the warehouse is reconnectable ([`WarehouseError::is_reconnectable`]):
/// its transaction rolled back, so the same pages with the same advance are written again.
fn reconnecting<T>(mut f: impl FnMut() -> Result<T, WarehouseError>) -> Result<T, WarehouseError> {
    let deadline = std::time::Instant::now() + RECONNECT_FOR;
    loop {
        match f() {
            Err(e) if e.is_reconnectable() && std::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "warehouse write failed; retrying on a new connection");
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            r => return r,
        }
    }
}

/// Waits for the writer and gives its result the pass's error type.
pub(super) async fn join_writer<W>(
    handle: tokio::task::JoinHandle<WriterResult<W>>,
) -> (W, Result<Written, SyncError>) {
    match handle.await {
        Ok((wh, r)) => (
            wh,
            r.map_err(|e| match e {
                WriterError::Warehouse(e) => SyncError::Warehouse(e),
                WriterError::FetchEnded => SyncError::FetchEnded,
            }),
        ),
        // The writer owns the warehouse; a panic there is a bug, and the process must stop.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::resource::Customers;
    use crate::warehouse::sqlite::testutil::customer;
    use crate::warehouse::{Advance, Confirmed, SqliteWarehouse};

    /// The records of each transaction, in commit order.
    #[derive(Default)]
    struct Commits(Mutex<Vec<u64>>);

    impl Progress for Commits {
        fn committed(&self, _stream: &'static str, stats: &RowStats) {
            self.0.lock().unwrap().push(stats.fetched);
        }
    }

    /// Queued pages share a transaction until it holds [`MAX_ROWS_PER_COMMIT`] records, however
    /// many pages that takes: three large pages pass it, a hundred small ones do not.
    #[test]
    fn queued_pages_share_a_commit_up_to_a_row_count() {
        let dir = tempfile::tempdir().unwrap();
        let wh = SqliteWarehouse::open(&dir.path().join("w.db")).unwrap();
        let sizes: Vec<usize> = [3000; 9].into_iter().chain([10; 100]).collect();
        let (tx, rx) = mpsc::channel(sizes.len() + 1);
        let mut id = 0;
        for (k, &n) in sizes.iter().enumerate() {
            // One instant per page, later for each page: every page moves the mark.
            let md = format!("2023-01-01T00:00:00.{k:06}Z");
            let records = (0..n)
                .map(|_| {
                    id += 1;
                    customer(id, &md, "n")
                })
                .collect();
            let advance = Advance::Mark(Mark::at(md, Confirmed::UpToId(id)));
            let batch = Batch {
                records,
                bad: vec![],
                advance,
            };
            assert!(tx.try_send(Msg::Batch(batch)).is_ok());
        }
        assert!(tx.try_send(Msg::Finish(RunStatus::Succeeded, None)).is_ok());
        let (spent, _freed) = std::sync::mpsc::channel();
        let (init, _) = oneshot::channel();
        let commits = Arc::new(Commits::default());
        let (_wh, written) = writer::<Customers, _>(
            wh,
            RunKind::Incremental,
            false,
            rx,
            spent,
            init,
            commits.clone(),
        );
        let Ok(written) = written else {
            panic!("the writer failed")
        };
        assert_eq!(written.stats.inserted, 28_000);
        assert_eq!(written.pages, 109);
        assert_eq!(*commits.0.lock().unwrap(), [9000, 9000, 9000, 1000]);
    }
}
