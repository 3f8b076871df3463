//! WAL checkpoints on a background thread, so the writer never waits for one.
//!
//! A checkpoint copies the WAL's pages into the database file and syncs it. SQLite's automatic
//! checkpoint runs inside the commit that crosses the threshold, on the writer's thread: in an
//! incremental pass that scatters 10,000 changes over a large table, those copies and syncs
//! took more than half of the pass. Here the writer connection only records the WAL's size at
//! each commit (a WAL hook replaces SQLite's automatic one), and each time it has grown by
//! [`CHECKPOINT_PAGES`] a second connection on its own thread runs a `PASSIVE` checkpoint,
//! which never blocks the writer or a reader. Durability is unchanged: with
//! `synchronous = NORMAL` a commit is durable once a checkpoint has synced it, as before.

use std::cell::Cell;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rusqlite::Connection;
use rusqlite::hooks::Wal;

use super::connection::open_connection;
use crate::warehouse::WarehouseError;

/// WAL pages that make the background thread checkpoint. Ten times SQLite's default of 1000:
/// each checkpoint syncs the file, and pages that every commit touches (index ends, interior
/// pages) are copied once per checkpoint rather than ten times. The WAL grows to about 40 MiB
/// (more while a reader holds an old snapshot, as with any checkpoint).
pub const CHECKPOINT_PAGES: c_int = 10_000;

thread_local! {
    /// Pages in the WAL after the last commit on this thread (set by [`record_wal_pages`]).
    static WAL_PAGES: Cell<c_int> = const { Cell::new(0) };
}

/// The writer connection's WAL hook: runs inside each commit, on the committing thread, so the
/// value is read back by [`Checkpointer::after_commit`] on that same thread right after.
fn record_wal_pages(_wal: &Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.with(|p| p.set(pages));
    Ok(())
}

/// The background checkpoint thread of one writer connection.
pub(super) struct Checkpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    done: Arc<AtomicU64>,
    /// WAL pages at the last wake-up (0 after the WAL started again from its head). Only the
    /// writer's thread reads and writes it, in `after_commit`.
    woken_at: Cell<c_int>,
}

impl Checkpointer {
    /// Installs the WAL hook on `writer` (turning off SQLite's automatic checkpoint) and starts
    /// the thread with its own connection to `path`.
    pub(super) fn start(writer: &Connection, path: &Path) -> Result<Checkpointer, WarehouseError> {
        let conn = open_connection(path, false)?;
        let (wake, rx) = sync_channel(1);
        let done = Arc::new(AtomicU64::new(0));
        let counter = done.clone();
        let thread = std::thread::Builder::new()
            .name("oms-sync-checkpoint".into())
            .spawn(move || run(&conn, &rx, &counter))
            .map_err(|e| WarehouseError::Unusable {
                at: crate::warehouse::Location::file(path),
                what: "cannot be opened",
                reason: format!("cannot start the checkpoint thread: {e}"),
                fix: "raise the process's thread limit (ulimit -u, systemd TasksMax)",
            })?;
        writer.wal_hook(Some(record_wal_pages));
        Ok(Checkpointer {
            wake: Some(wake),
            thread: Some(thread),
            done,
            woken_at: Cell::new(0),
        })
    }

    /// Call on the writer's thread right after a commit: wakes the checkpoint thread each time
    /// [`CHECKPOINT_PAGES`] more pages are in the WAL. Never waits.
    ///
    /// Not at every commit past the threshold, as SQLite's own checkpoint does: that one runs
    /// inside the commit, so the next transaction starts a fresh WAL. Here the writer goes on
    /// while the thread copies, the WAL starts again only once a checkpoint has caught up
    /// between two transactions, and waking it at every commit meant a small checkpoint (and
    /// a sync) per commit.
    pub(super) fn after_commit(&self) {
        let pages = WAL_PAGES.with(|p| p.replace(0));
        if pages == 0 {
            // No commit since the last call (or the writer has no WAL hook).
            return;
        }
        // Below the last wake-up: the WAL started again from its head.
        if pages < self.woken_at.get() {
            self.woken_at.set(0);
        }
        let woken_at = self.woken_at.get();
        if pages - woken_at >= CHECKPOINT_PAGES
            && let Some(wake) = &self.wake
        {
            self.woken_at.set(pages);
            // Full: a checkpoint is already asked for and will see these pages too.
            let _ = wake.try_send(());
        }
    }

    /// Checkpoints the background thread has run so far.
    pub(super) fn checkpoints(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

fn run(conn: &Connection, wake: &Receiver<()>, done: &AtomicU64) {
    while wake.recv().is_ok() {
        // (busy, pages in the WAL, pages copied); busy only means a reader or writer kept
        // some pages back, which the next checkpoint copies.
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((wal, copied)) => {
                done.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(wal, copied, "WAL checkpoint");
            }
            // The writer's commits are safe in the WAL; it only grows until a checkpoint
            // succeeds (the next wake-up tries again).
            Err(e) => tracing::warn!(
                error = %e,
                "WAL checkpoint failed; the WAL keeps growing until one succeeds (check free disk space)"
            ),
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the checkpoint it may be running.
        self.wake = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::SqliteWarehouse;
    use super::*;

    /// A new warehouse with a table for [`commit_pages`].
    fn filler_warehouse(path: &std::path::Path) -> SqliteWarehouse {
        let wh = SqliteWarehouse::open(path).unwrap();
        wh.connection()
            .execute_batch("CREATE TABLE filler (x BLOB)")
            .unwrap();
        wh
    }

    /// Commits ~`pages` pages of blobs on the warehouse's writer connection.
    fn commit_pages(wh: &SqliteWarehouse, pages: i64) {
        wh.connection()
            .execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
                 INSERT INTO filler (x) SELECT zeroblob(3900) FROM n",
                [pages],
            )
            .unwrap();
    }

    fn last_commit_wal_pages() -> c_int {
        WAL_PAGES.with(|p| p.get())
    }

    /// The writer's commits never checkpoint (SQLite's automatic checkpoint would, at the
    /// commit past its threshold, and the next commit would then start a fresh WAL); after
    /// `after_commit` the background thread does, and the WAL starts again from its head.
    #[test]
    fn the_wal_is_checkpointed_by_the_background_thread_only() {
        let dir = tempfile::tempdir().unwrap();
        let wh = filler_warehouse(&dir.path().join("w.db"));
        let big = i64::from(CHECKPOINT_PAGES) + 1000;
        commit_pages(&wh, big);
        assert!(i64::from(last_commit_wal_pages()) >= big);
        commit_pages(&wh, 1);
        assert!(
            i64::from(last_commit_wal_pages()) > big,
            "the WAL was not checkpointed and restarted by the commits themselves"
        );
        assert_eq!(wh.background_checkpoints(), 0);

        wh.after_commit();
        wait_for_checkpoints(&wh, 1);
        commit_pages(&wh, 1);
        assert!(
            last_commit_wal_pages() < 100,
            "after the background checkpoint the WAL restarts: {} pages",
            last_commit_wal_pages()
        );
        // A restarted WAL counts from its head again: as many pages as before wake the thread.
        wh.after_commit();
        commit_pages(&wh, big);
        wh.after_commit();
        wait_for_checkpoints(&wh, 2);
    }

    fn wait_for_checkpoints(wh: &SqliteWarehouse, n: u64) {
        let started = Instant::now();
        while wh.background_checkpoints() < n {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "checkpoint {n} did not run"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// While a reader keeps the WAL from starting again, every commit ends with more than
    /// `CHECKPOINT_PAGES` in it: the thread is woken once per that many new pages, not at
    /// each commit (which meant a checkpoint and a sync per commit).
    #[test]
    fn the_thread_is_woken_once_per_threshold_of_new_pages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let wh = filler_warehouse(&path);
        let reader = Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM filler", [], |r| r.get(0))
            .unwrap();

        commit_pages(&wh, i64::from(CHECKPOINT_PAGES) + 100);
        wh.after_commit();
        wait_for_checkpoints(&wh, 1);
        for _ in 0..5 {
            commit_pages(&wh, 10);
            assert!(last_commit_wal_pages() > CHECKPOINT_PAGES);
            wh.after_commit();
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(wh.background_checkpoints(), 1, "small commits woke it");
        commit_pages(&wh, i64::from(CHECKPOINT_PAGES));
        wh.after_commit();
        wait_for_checkpoints(&wh, 2);
        reader.execute_batch("COMMIT").unwrap();
    }

    /// Below the threshold nothing is asked of the background thread.
    #[test]
    fn small_commits_do_not_wake_the_checkpoint_thread() {
        let dir = tempfile::tempdir().unwrap();
        let wh = filler_warehouse(&dir.path().join("w.db"));
        for _ in 0..5 {
            commit_pages(&wh, 100);
            wh.after_commit();
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(wh.background_checkpoints(), 0);
    }
}
