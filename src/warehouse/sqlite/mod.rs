//! The SQLite warehouse. One function opens every connection and sets its PRAGMAs (WAL, so BI
//! readers never block the writer; a busy timeout, so a reader never fails the writer). The
//! schema comes from `migrations/sqlite/` via `rusqlite_migration` (version in `PRAGMA user_version`).
//! Only this process writes: an exclusive lock file next to the database keeps a second
//! writer out.
//!
//! - [`connection`]: opening, PRAGMAs, migrations, error kinds;
//! - [`lock`]: the writer lock;
//! - [`indexes`]: secondary indexes around bulk loads;
//! - [`state`]: the mark and backfill ranges;
//! - [`apply`]: one batch with its checkpoint, in one transaction;
//! - [`checkpoint`]: WAL checkpoints on a background thread (not the sync checkpoint, the mark).

mod apply;
mod checkpoint;
mod connection;
mod history;
mod indexes;
mod lock;
mod reader;
pub mod schema;
mod state;
mod upsert;

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior, params};

pub use checkpoint::CHECKPOINT_PAGES;
pub use connection::open_connection;
pub use indexes::{INDEX_SORT_KIB, INDEX_SORT_THREADS, build_secondary_indexes, secondary_indexes};
pub use reader::SqliteReader;
pub use upsert::UpsertSql;

use super::history::{HistoryWriter, Switch, switch, table_of};
use super::write::{Consumer, Recorder};
use super::{
    BackfillState, Batch, Location, Mark, RowStats, RunKind, RunStatus, Warehouse, WarehouseError,
};
use crate::resource::{Resource, Spec};
use crate::timefmt;
use checkpoint::Checkpointer;
use connection::{classify, open_error};
use indexes::drop_secondary_indexes_if_empty;
use lock::{WriterLock, lock_path, take_lock};
use state::{read_backfill, read_mark, write_mark_if_greater};

/// How long a statement waits for a lock held by a reader before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// New database files hold personal data: owner read/write only.
pub const FILE_MODE: u32 = 0o600;
/// SQLite page cache of the writer connection (KiB). The default 2 MiB makes every insert
/// into the `email` index read pages back from the OS once the index outgrows it.
pub const WRITER_CACHE_KIB: i64 = 16 * 1024;
/// Prepared statements the writer connection keeps (about a dozen per record table).
const WRITER_STATEMENTS: usize = 64;

pub struct SqliteWarehouse {
    conn: Connection,
    path: PathBuf,
    /// Checkpoints the WAL off the writer's thread; stopped (field order) before the lock goes.
    checkpointer: Checkpointer,
    /// Held for the life of the writer; dropped after `conn` (field order), which releases it.
    _lock: WriterLock,
    /// Rows in quarantine, so clearing it costs nothing while it is empty.
    quarantined: i64,
    /// Each record table's upsert statements, built once instead of at every commit.
    upserts: HashMap<&'static str, UpsertSql>,
    /// The streams whose history is on (as `history_state` says).
    history: HashSet<String>,
}

impl std::fmt::Debug for SqliteWarehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteWarehouse")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteWarehouse {
    /// Opens (creating with mode 0600 if needed) for writing: takes the writer lock, applies
    /// pending migrations, and marks runs a killed process left `running` as `interrupted`.
    pub fn open(path: &Path) -> Result<Self, WarehouseError> {
        if path.is_dir() {
            return Err(WarehouseError::Unusable {
                at: Location::file(path),
                what: "cannot be opened",
                reason: "it is a directory".into(),
                fix: "set warehouse.path to a file name inside it, e.g. DIR/warehouse.db",
            });
        }
        let lock_existed = lock_path(path).exists();
        let lock = take_lock(path)?;
        Self::open_locked(path, lock).inspect_err(|_| {
            // A failed first open leaves nothing behind: the lock file is ours only if we
            // made it (an existing one may be another instance's).
            if !lock_existed {
                let _ = std::fs::remove_file(lock_path(path));
            }
        })
    }

    fn open_locked(path: &Path, lock: WriterLock) -> Result<Self, WarehouseError> {
        // Before anything writes: another application's database is refused untouched.
        connection::inspect(path, true)?;
        if !path.exists() {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(FILE_MODE)
                .open(path)
                .map_err(|e| WarehouseError::Unusable {
                    at: Location::file(path),
                    what: "cannot be opened",
                    reason: e.to_string(),
                    fix: "create the directory and make it writable by the oms-sync user",
                })?;
        }
        let mut conn = open_connection(path, false)?;
        connection::migrate(&mut conn, path)?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .map_err(|e| open_error(path, &e))?;
        // The writer's per-page statements stay prepared; rusqlite's default of 16 would evict
        // (and re-prepare) the upsert once a few more tables share the cache.
        conn.set_prepared_statement_cache_capacity(WRITER_STATEMENTS);
        let checkpointer = Checkpointer::start(&conn, path)?;
        let mut wh = SqliteWarehouse {
            conn,
            path: path.to_path_buf(),
            checkpointer,
            _lock: lock,
            quarantined: 0,
            upserts: HashMap::new(),
            history: HashSet::new(),
        };
        // A backfill into an empty table drops the secondary indexes until its end; if it was
        // killed, they come back here (taking a few seconds per million rows).
        for spec in crate::resource::ALL {
            build_secondary_indexes(&wh.conn, spec)
                .map_err(|e| wh.err("building the secondary indexes", e))?;
        }
        wh.checkpointer.after_commit();
        wh.exec(
            "UPDATE sync_runs SET status = 'interrupted', finished_at = ?1 WHERE status = 'running'",
            &[&timefmt::now_canonical()],
            "marking the runs of an earlier process that was killed as interrupted",
        )?;
        wh.quarantined = wh
            .conn
            .query_row("SELECT count(*) FROM quarantine", [], |r| r.get(0))
            .map_err(|e| wh.err("counting quarantine", e))?;
        wh.history = wh
            .conn
            .prepare("SELECT stream FROM history_state WHERE enabled")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| wh.err("reading the history state", e))?;
        Ok(wh)
    }

    /// The underlying connection, for status queries and tests.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// For code that commits on [`Self::connection`] itself (the benchmark's raw loop): call
    /// after each commit, on the same thread, so the WAL is checkpointed in the background as
    /// after the warehouse's own commits.
    pub fn after_commit(&self) {
        self.checkpointer.after_commit();
    }

    /// WAL checkpoints the background thread has run since this warehouse was opened.
    pub fn background_checkpoints(&self) -> u64 {
        self.checkpointer.checkpoints()
    }

    /// Proves a write goes through (rolled back) and names the schema version.
    pub fn probe_writable(&mut self) -> Result<String, WarehouseError> {
        self.conn
            .execute_batch(
                "SAVEPOINT oms_sync_check; CREATE TABLE oms_sync_check_probe (x); ROLLBACK TO oms_sync_check; RELEASE oms_sync_check;",
            )
            .and_then(|()| {
                self.conn
                    .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            })
            .map(|v| format!("schema version {v}, writable"))
            .map_err(|e| self.err("writing a probe (rolled back)", e))
    }

    fn apply_with<R: Resource>(
        &mut self,
        run: i64,
        batches: &[Batch<R::Record>],
        consumer: Option<&mut dyn for<'t> Consumer<apply::SqliteTx<'t>>>,
    ) -> Result<RowStats, WarehouseError> {
        let sql = self
            .upserts
            .entry(R::TABLE)
            .or_insert_with(|| UpsertSql::new(R::SPEC));
        let mut history = HistoryWriter::default();
        let consumer: Option<&mut dyn for<'t> Consumer<apply::SqliteTx<'t>>> = match consumer {
            Some(c) => Some(c),
            None if self.history.contains(R::NAME) => Some(&mut history),
            None => None,
        };
        let stats = apply::apply_batches::<R>(
            &mut self.conn,
            &self.path,
            &mut self.quarantined,
            run,
            sql,
            batches,
            consumer,
        )?;
        self.checkpointer.after_commit();
        Ok(stats)
    }

    fn err(&self, context: &str, e: rusqlite::Error) -> WarehouseError {
        classify(&self.path, context, e)
    }

    fn exec(
        &self,
        sql: &str,
        p: &[&dyn rusqlite::ToSql],
        context: &str,
    ) -> Result<usize, WarehouseError> {
        self.conn.execute(sql, p).map_err(|e| self.err(context, e))
    }
}

impl Warehouse for SqliteWarehouse {
    fn mark(&mut self, stream: &Spec) -> Result<Mark, WarehouseError> {
        read_mark(&self.conn, stream.name).map_err(|e| self.err("reading the checkpoint", e))
    }

    fn backfill_state(&mut self, stream: &Spec) -> Result<Option<BackfillState>, WarehouseError> {
        read_backfill(&self.conn, stream.name)
            .map_err(|e| self.err("reading the backfill state", e))
    }

    fn start_backfill(
        &mut self,
        stream: &Spec,
        state: &BackfillState,
    ) -> Result<(), WarehouseError> {
        let path = self.path.clone();
        let mut run = || -> rusqlite::Result<()> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "DELETE FROM backfill_ranges WHERE stream = ?1",
                [stream.name],
            )?;
            drop_secondary_indexes_if_empty(&tx, stream)?;
            tx.execute(
                "INSERT OR REPLACE INTO backfill_state (stream, run_id, started_at, high_water_date)
                 VALUES (?1, ?2, ?3, ?4)",
                params![stream.name, state.run_id, state.started_at, state.high_water_date],
            )?;
            for r in &state.ranges {
                tx.execute(
                    "INSERT INTO backfill_ranges (stream, range_no, lo, hi, cursor_id, done)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![stream.name, r.range_no, r.lo, r.hi, r.cursor, r.done],
                )?;
            }
            tx.commit()
        };
        run().map_err(|e| classify(&path, "starting the backfill", e))
    }

    fn finish_backfill(&mut self, stream: &Spec, mark: Mark) -> Result<(), WarehouseError> {
        let path = self.path.clone();
        let mut run = || -> rusqlite::Result<()> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            build_secondary_indexes(&tx, stream)?;
            write_mark_if_greater(&tx, stream.name, &mark)?;
            tx.execute(
                "DELETE FROM backfill_ranges WHERE stream = ?1",
                [stream.name],
            )?;
            tx.execute(
                "DELETE FROM backfill_state WHERE stream = ?1",
                [stream.name],
            )?;
            tx.commit()
        };
        run().map_err(|e| classify(&path, "finishing the backfill", e))?;
        self.checkpointer.after_commit();
        Ok(())
    }

    fn begin_run(
        &mut self,
        stream: &Spec,
        kind: RunKind,
        mark_before: &Mark,
    ) -> Result<i64, WarehouseError> {
        self.exec(
            "INSERT INTO sync_runs (stream, kind, started_at, status, mark_before) VALUES (?1, ?2, ?3, 'running', ?4)",
            &[&stream.name, &kind.as_str(), &timefmt::now_canonical(), &mark_before.to_string()],
            "recording the run",
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn apply<R: Resource>(
        &mut self,
        run: i64,
        batches: &[Batch<R::Record>],
    ) -> Result<RowStats, WarehouseError> {
        self.apply_with::<R>(run, batches, None)
    }

    fn apply_recording<R: Resource>(
        &mut self,
        run: i64,
        batches: &[Batch<R::Record>],
        recorder: &mut Recorder,
    ) -> Result<RowStats, WarehouseError> {
        self.apply_with::<R>(run, batches, Some(recorder))
    }

    fn finish_run(
        &mut self,
        stream: &Spec,
        run: i64,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<(), WarehouseError> {
        let mark = read_mark(&self.conn, stream.name)
            .map_err(|e| self.err("reading the checkpoint", e))?;
        self.exec(
            "UPDATE sync_runs SET status = ?2, error = ?3, finished_at = ?4, mark_after = ?5 WHERE id = ?1",
            &[&run, &status.as_str(), &error, &timefmt::now_canonical(), &mark.to_string()],
            "recording the end of the run",
        )?;
        Ok(())
    }

    fn prune_runs(&mut self, older_than: &str) -> Result<u64, WarehouseError> {
        let n = self.exec(
            &super::retention::prune_statement("?1"),
            &[&older_than],
            "forgetting old runs (sync.keep_runs)",
        )?;
        Ok(n as u64)
    }

    fn set_history(&mut self, stream: &Spec, on: bool, run: i64) -> Result<Switch, WarehouseError> {
        let sql = self
            .upserts
            .entry(stream.table)
            .or_insert_with(|| UpsertSql::new(stream));
        let now = timefmt::now_canonical();
        let conn = &mut self.conn;
        let switched = (|| -> rusqlite::Result<Switch> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut d = apply::SqliteTx { tx: &tx, sql };
            let s = switch(&mut d, stream, on, &now, run)?;
            tx.commit()?;
            Ok(s)
        })()
        .map_err(|e| classify(&self.path, "turning history on or off", e))?;
        if on && table_of(stream).is_some() {
            self.history.insert(stream.name.to_string());
        } else {
            self.history.remove(stream.name);
        }
        self.checkpointer.after_commit();
        Ok(switched)
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use crate::resource::{Customer, CustomerFields, Customers};
    use crate::warehouse::Advance;

    pub fn customer(id: i64, md: &str, name: &str) -> Customer {
        let email = format!("c{id}@example.com");
        Customer::new(CustomerFields {
            id,
            created_date: Some("2023-01-01T00:00:00.000000Z"),
            modified_date: md,
            omnitron_id: Some(id * 10),
            email: Some(&email),
            first_name: Some(name),
            last_name: None,
            phone_number: None,
            erp_code: None,
            channel: Some(1),
            extra: None,
        })
    }

    pub fn apply(wh: &mut SqliteWarehouse, run: i64, recs: Vec<Customer>, mark: Mark) -> RowStats {
        wh.apply::<Customers>(
            run,
            &[Batch {
                records: recs,
                bad: vec![],
                advance: Advance::Mark(mark),
            }],
        )
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.db");
        let _wh = SqliteWarehouse::open(&p).unwrap();
        for f in [p.clone(), dir.path().join("w.db-wal")] {
            let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
    }
}
