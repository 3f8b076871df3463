//! The SQLite warehouse. One function opens every connection and sets its PRAGMAs (WAL, so BI
//! readers never block the writer; a busy timeout, so a reader never fails the writer). The
//! schema comes from `migrations/` via `rusqlite_migration` (version in `PRAGMA user_version`).
//! Only this process writes: an exclusive lock file next to the database keeps a second
//! writer out.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use include_dir::{Dir, include_dir};
use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, Statement, TransactionBehavior, params,
};
use rusqlite_migration::Migrations;

use super::{
    Advance, BackfillRange, BackfillState, Batch, Mark, RowStats, RunKind, RunStatus, Warehouse,
};
use crate::resource::{BadRecord, Keyed, Resource};
use crate::timefmt;

static MIGRATIONS_DIR: Dir = include_dir!("$CARGO_MANIFEST_DIR/migrations");
static MIGRATIONS: LazyLock<Result<Migrations<'static>, String>> =
    LazyLock::new(|| Migrations::from_directory(&MIGRATIONS_DIR).map_err(|e| e.to_string()));

/// How long a statement waits for a lock held by a reader before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// New database files hold personal data: owner read/write only.
pub const FILE_MODE: u32 = 0o600;
/// SQLite page cache of the writer connection (KiB). The default 2 MiB makes every insert
/// into the `email` index read pages back from the OS once the index outgrows it.
pub const WRITER_CACHE_KIB: i64 = 16 * 1024;

/// Secondary indexes of the record tables, as `(table, index, CREATE statement)`. A backfill
/// into an EMPTY table drops them and builds them once at its end (far cheaper than keeping
/// them up to date row by row); [`SqliteWarehouse::open`] builds any that are missing, so a
/// backfill killed half-way never leaves the warehouse without them. Must match the
/// migrations (checked by a test).
pub const SECONDARY_INDEXES: &[(&str, &str, &str)] = &[
    (
        "customers",
        "customers_modified_date",
        "CREATE INDEX IF NOT EXISTS customers_modified_date ON customers (modified_date)",
    ),
    (
        "customers",
        "customers_email",
        "CREATE INDEX IF NOT EXISTS customers_email ON customers (email)",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error(
        "warehouse {path} is in use by another oms-sync process (lock {lock}); fix: stop the other instance, or point warehouse.path elsewhere"
    )]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("warehouse {path} cannot be opened: {reason}; fix: {fix}")]
    Open {
        path: PathBuf,
        reason: String,
        fix: &'static str,
    },
    #[error(
        "warehouse {path}: disk full while {context}; fix: free disk space, then run again (nothing half-written was kept)"
    )]
    Full { path: PathBuf, context: String },
    #[error(
        "warehouse {path} is read-only ({context}); fix: make the file and its directory writable by the oms-sync user"
    )]
    ReadOnly { path: PathBuf, context: String },
    #[error("warehouse {path}: {context}: {source}")]
    Sqlite {
        path: PathBuf,
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "warehouse {path}: schema migration failed: {reason}; fix: restore a backup or move the file aside to start afresh"
    )]
    Migration { path: PathBuf, reason: String },
}

/// Binds a record to the upsert statement built from [`SqliteRecord::COLUMNS`].
pub trait SqliteRecord {
    /// API-sourced columns in bind order; must start with `id` and include `modified_date`.
    const COLUMNS: &'static [&'static str];
    /// Binds parameters 1..=COLUMNS.len().
    fn bind(&self, stmt: &mut Statement<'_>) -> rusqlite::Result<()>;
}

/// Builds the upsert: never replaces a row with an older version, and does not rewrite a row
/// whose content is the same (a lookback re-read costs a lookup, not a write).
fn upsert_sql(table: &str, columns: &[&str]) -> String {
    let n = columns.len();
    let cols = columns.join(", ");
    let placeholders: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
    let sets: Vec<String> = columns[1..]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let differs: Vec<String> = columns[1..]
        .iter()
        .filter(|c| **c != "modified_date")
        .map(|c| format!("excluded.{c} IS NOT {table}.{c}"))
        .collect();
    let now = n + 1;
    format!(
        "INSERT INTO {table} ({cols}, deleted_at, synced_at, first_synced_at) \
         VALUES ({}, NULL, ?{now}, ?{now}) \
         ON CONFLICT(id) DO UPDATE SET {}, deleted_at = NULL, synced_at = excluded.synced_at \
         WHERE excluded.modified_date > {table}.modified_date \
            OR (excluded.modified_date = {table}.modified_date \
                AND ({table}.deleted_at IS NOT NULL OR {})) \
         RETURNING first_synced_at = synced_at",
        placeholders.join(", "),
        sets.join(", "),
        differs.join(" OR "),
    )
}

pub struct SqliteWarehouse {
    conn: Connection,
    path: PathBuf,
    /// Held for the life of the writer; dropped after `conn` (field order), which releases it.
    _lock: WriterLock,
    /// Rows in quarantine, so clearing it costs nothing while it is empty.
    quarantined: i64,
}

impl std::fmt::Debug for SqliteWarehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteWarehouse")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Opens a connection with the PRAGMAs every connection needs.
pub fn open_connection(path: &Path, read_only: bool) -> Result<Connection, WarehouseError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, &e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| open_error(path, &e))?;
    if !read_only {
        // WAL lets readers see the last commit while the writer works; NORMAL is durable at
        // each checkpoint of the WAL and never corrupts on power loss in WAL mode.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| open_error(path, &e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(WarehouseError::Open {
                path: path.to_path_buf(),
                reason: format!("cannot switch to WAL mode (got {mode})"),
                fix: "put the warehouse on a local file system",
            });
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| open_error(path, &e))?;
    } else {
        // SQLite opens lazily: read the header now, so a file that is not SQLite fails here
        // with its fix rather than at the first query.
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|e| open_error(path, &e))?;
    }
    Ok(conn)
}

fn open_error(path: &Path, e: &rusqlite::Error) -> WarehouseError {
    let (reason, fix) = match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => (
            "the file is not a SQLite database".to_string(),
            "point warehouse.path at a new file or an oms-sync warehouse",
        ),
        Some(ErrorCode::CannotOpen) => (
            e.to_string(),
            "create the directory and make it writable by the oms-sync user",
        ),
        Some(ErrorCode::ReadOnly) => (
            e.to_string(),
            "make the file and its directory writable by the oms-sync user",
        ),
        Some(ErrorCode::DiskFull) => (e.to_string(), "free disk space"),
        _ => (
            e.to_string(),
            "check that warehouse.path is a writable SQLite file",
        ),
    };
    WarehouseError::Open {
        path: path.to_path_buf(),
        reason,
        fix,
    }
}

impl SqliteWarehouse {
    /// Opens (creating with mode 0600 if needed) for writing: takes the writer lock, applies
    /// pending migrations, and marks runs a killed process left `running` as `interrupted`.
    pub fn open(path: &Path) -> Result<Self, WarehouseError> {
        if path.is_dir() {
            return Err(WarehouseError::Open {
                path: path.to_path_buf(),
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
        if !path.exists() {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(FILE_MODE)
                .open(path)
                .map_err(|e| WarehouseError::Open {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                    fix: "create the directory and make it writable by the oms-sync user",
                })?;
        }
        let mut conn = open_connection(path, false)?;
        let migrations = MIGRATIONS.as_ref().map_err(|e| WarehouseError::Migration {
            path: path.to_path_buf(),
            reason: e.clone(),
        })?;
        migrations.to_latest(&mut conn).map_err(|e| match e {
            rusqlite_migration::Error::RusqliteError { err, .. } => {
                classify(path, "applying migrations", err)
            }
            other => WarehouseError::Migration {
                path: path.to_path_buf(),
                reason: other.to_string(),
            },
        })?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .map_err(|e| open_error(path, &e))?;
        let mut wh = SqliteWarehouse {
            conn,
            path: path.to_path_buf(),
            _lock: lock,
            quarantined: 0,
        };
        // A backfill into an empty table drops the secondary indexes until its end; if it was
        // killed, they come back here (taking a few seconds per million rows).
        for table in SECONDARY_INDEXES.iter().map(|(t, _, _)| *t) {
            build_secondary_indexes(&wh.conn, table)
                .map_err(|e| wh.err("building the secondary indexes", e))?;
        }
        wh.exec(
            "UPDATE sync_runs SET status = 'interrupted', finished_at = ?1 WHERE status = 'running'",
            &[&timefmt::now_canonical()],
            "marking the runs of an earlier process that was killed as interrupted",
        )?;
        wh.quarantined = wh
            .conn
            .query_row("SELECT count(*) FROM quarantine", [], |r| r.get(0))
            .map_err(|e| wh.err("counting quarantine", e))?;
        Ok(wh)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying connection, for status queries and tests.
    pub fn connection(&self) -> &Connection {
        &self.conn
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

fn classify(path: &Path, context: &str, e: rusqlite::Error) -> WarehouseError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => WarehouseError::Full {
            path: path.to_path_buf(),
            context: context.to_string(),
        },
        Some(ErrorCode::ReadOnly) => WarehouseError::ReadOnly {
            path: path.to_path_buf(),
            context: context.to_string(),
        },
        _ => WarehouseError::Sqlite {
            path: path.to_path_buf(),
            context: context.to_string(),
            source: e,
        },
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// The exclusive writer lock (`flock` on `<db>.lock`).
///
/// An `flock` belongs to the open file description, not to this descriptor: a child process
/// forked by anything else in this process holds a copy of the descriptor until it execs, and
/// merely closing ours would leave the lock held until then, so a reopen right after a close
/// could fail with `Locked`. Unlocking explicitly releases it whatever copies exist.
struct WriterLock(File);

impl Drop for WriterLock {
    fn drop(&mut self) {
        // Failure here leaves the lock to the close that follows; nothing better can be done.
        let _ = self.0.unlock();
    }
}

fn take_lock(path: &Path) -> Result<WriterLock, WarehouseError> {
    let lock = lock_path(path);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&lock)
        .map_err(|e| WarehouseError::Open {
            path: path.to_path_buf(),
            reason: format!("cannot create lock file {}: {e}", lock.display()),
            fix: "create the directory and make it writable by the oms-sync user",
        })?;
    match file.try_lock() {
        Ok(()) => Ok(WriterLock(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(WarehouseError::Locked {
            path: path.to_path_buf(),
            lock,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(WarehouseError::Open {
            path: path.to_path_buf(),
            reason: format!("cannot lock {}: {e}", lock.display()),
            fix: "put the warehouse on a local file system that supports locks",
        }),
    }
}

/// Creates the secondary indexes of `table` that are missing.
fn build_secondary_indexes(conn: &Connection, table: &str) -> rusqlite::Result<()> {
    for (t, name, sql) in SECONDARY_INDEXES {
        if *t != table {
            continue;
        }
        let exists = conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?1",
                [name],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !exists {
            conn.execute_batch(sql)?;
        }
    }
    Ok(())
}

/// Drops the secondary indexes of `table` if it holds no row (bulk load ahead).
fn drop_secondary_indexes_if_empty(conn: &Connection, table: &str) -> rusqlite::Result<()> {
    let empty = conn
        .query_row(&format!("SELECT 1 FROM {table} LIMIT 1"), [], |_| Ok(()))
        .optional()?
        .is_none();
    if empty {
        for (t, name, _) in SECONDARY_INDEXES {
            if *t == table {
                conn.execute_batch(&format!("DROP INDEX IF EXISTS {name}"))?;
            }
        }
    }
    Ok(())
}

fn read_mark(conn: &Connection, stream: &str) -> rusqlite::Result<Mark> {
    conn.query_row(
        "SELECT mark_modified_date, mark_after_id FROM sync_state WHERE stream = ?1",
        [stream],
        |r| Ok(Mark::from_columns(r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map(|m| m.unwrap_or(Mark::Start))
}

fn write_mark_if_greater(conn: &Connection, stream: &str, mark: &Mark) -> rusqlite::Result<()> {
    let current = read_mark(conn, stream)?;
    if *mark <= current {
        return Ok(());
    }
    let (md, after) = mark.to_columns();
    conn.execute(
        "INSERT INTO sync_state (stream, mark_modified_date, mark_after_id, updated_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(stream) DO UPDATE SET mark_modified_date = excluded.mark_modified_date,
             mark_after_id = excluded.mark_after_id, updated_at = excluded.updated_at",
        params![stream, md, after, timefmt::now_canonical()],
    )?;
    Ok(())
}

/// Reads the stream's backfill state, if a backfill is in progress.
pub fn read_backfill(conn: &Connection, stream: &str) -> rusqlite::Result<Option<BackfillState>> {
    let Some((run_id, started_at, high_water_date)) = conn
        .query_row(
            "SELECT run_id, started_at, high_water_date FROM backfill_state WHERE stream = ?1",
            [stream],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?
    else {
        return Ok(None);
    };
    let mut stmt = conn.prepare(
        "SELECT range_no, lo, hi, cursor_id, done FROM backfill_ranges WHERE stream = ?1 ORDER BY range_no",
    )?;
    let ranges = stmt
        .query_map([stream], |r| {
            Ok(BackfillRange {
                range_no: r.get(0)?,
                lo: r.get(1)?,
                hi: r.get(2)?,
                cursor: r.get(3)?,
                done: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(BackfillState {
        run_id,
        started_at,
        high_water_date,
        ranges,
    }))
}

fn quarantine(tx: &Connection, stream: &str, bad: &BadRecord, now: &str) -> rusqlite::Result<()> {
    match bad.id {
        Some(id) => tx.execute(
            "INSERT INTO quarantine (stream, record_id, modified_date, raw, error, first_seen_at, last_seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT(stream, record_id) WHERE record_id IS NOT NULL DO UPDATE SET
                 modified_date = excluded.modified_date, raw = excluded.raw, error = excluded.error,
                 last_seen_at = excluded.last_seen_at, times_seen = times_seen + 1",
            params![stream, id, bad.modified_date, bad.raw, bad.error, now],
        )?,
        None => tx.execute(
            "INSERT INTO quarantine (stream, record_id, modified_date, raw, error, first_seen_at, last_seen_at)
             VALUES (?1, NULL, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT(stream, raw) WHERE record_id IS NULL DO UPDATE SET
                 last_seen_at = excluded.last_seen_at, times_seen = times_seen + 1",
            params![stream, bad.modified_date, bad.raw, bad.error, now],
        )?,
    };
    Ok(())
}

/// Marks rows with id in `(from, to]` (`to` None: unbounded) that the API did not list.
///
/// Runs before the batch's rows are written, so in a first load the range is empty and this
/// costs one index probe; the ids the batch lists are only collected when there are rows.
fn mark_deleted(
    tx: &Connection,
    table: &str,
    from: i64,
    to: Option<i64>,
    listed: impl Iterator<Item = i64>,
    now: &str,
) -> rusqlite::Result<u64> {
    let to = to.unwrap_or(i64::MAX);
    let present: Vec<i64> = {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT id FROM {table} WHERE id > ?1 AND id <= ?2 AND deleted_at IS NULL"
        ))?;
        stmt.query_map(params![from, to], |r| r.get::<_, i64>(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    if present.is_empty() {
        return Ok(0);
    }
    let listed: HashSet<i64> = listed.collect();
    let gone: Vec<i64> = present
        .into_iter()
        .filter(|id| !listed.contains(id))
        .collect();
    let mut upd = tx.prepare_cached(&format!(
        "UPDATE {table} SET deleted_at = ?2, synced_at = ?2 WHERE id = ?1"
    ))?;
    for id in &gone {
        upd.execute(params![id, now])?;
    }
    Ok(gone.len() as u64)
}

impl<R> Warehouse<R> for SqliteWarehouse
where
    R: Resource,
    R::Record: SqliteRecord,
{
    type Error = WarehouseError;

    fn mark(&mut self) -> Result<Mark, WarehouseError> {
        read_mark(&self.conn, R::NAME).map_err(|e| self.err("reading the checkpoint", e))
    }

    fn backfill_state(&mut self) -> Result<Option<BackfillState>, WarehouseError> {
        read_backfill(&self.conn, R::NAME).map_err(|e| self.err("reading the backfill state", e))
    }

    fn start_backfill(&mut self, state: &BackfillState) -> Result<(), WarehouseError> {
        let path = self.path.clone();
        let mut run = || -> rusqlite::Result<()> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM backfill_ranges WHERE stream = ?1", [R::NAME])?;
            drop_secondary_indexes_if_empty(&tx, R::TABLE)?;
            tx.execute(
                "INSERT OR REPLACE INTO backfill_state (stream, run_id, started_at, high_water_date)
                 VALUES (?1, ?2, ?3, ?4)",
                params![R::NAME, state.run_id, state.started_at, state.high_water_date],
            )?;
            for r in &state.ranges {
                tx.execute(
                    "INSERT INTO backfill_ranges (stream, range_no, lo, hi, cursor_id, done)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![R::NAME, r.range_no, r.lo, r.hi, r.cursor, r.done],
                )?;
            }
            tx.commit()
        };
        run().map_err(|e| classify(&path, "starting the backfill", e))
    }

    fn finish_backfill(&mut self, mark: Mark) -> Result<(), WarehouseError> {
        let path = self.path.clone();
        let mut run = || -> rusqlite::Result<()> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            build_secondary_indexes(&tx, R::TABLE)?;
            write_mark_if_greater(&tx, R::NAME, &mark)?;
            tx.execute("DELETE FROM backfill_ranges WHERE stream = ?1", [R::NAME])?;
            tx.execute("DELETE FROM backfill_state WHERE stream = ?1", [R::NAME])?;
            tx.commit()
        };
        run().map_err(|e| classify(&path, "finishing the backfill", e))
    }

    fn begin_run(&mut self, kind: RunKind, mark_before: &Mark) -> Result<i64, WarehouseError> {
        self.exec(
            "INSERT INTO sync_runs (stream, kind, started_at, status, mark_before) VALUES (?1, ?2, ?3, 'running', ?4)",
            &[&R::NAME, &kind.as_str(), &timefmt::now_canonical(), &mark_before.to_string()],
            "recording the run",
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn apply(
        &mut self,
        run: i64,
        batch: Batch<R::Record>,
        pages: u64,
    ) -> Result<RowStats, WarehouseError> {
        let path = self.path.clone();
        let had_quarantine = self.quarantined > 0;
        let sql = upsert_sql(R::TABLE, <R::Record as SqliteRecord>::COLUMNS);
        let now = timefmt::now_canonical();
        let now_param = <R::Record as SqliteRecord>::COLUMNS.len() + 1;
        let run_tx = |conn: &mut Connection| -> rusqlite::Result<(RowStats, i64)> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut stats = RowStats {
                fetched: (batch.records.len() + batch.bad.len()) as u64,
                ..RowStats::default()
            };
            let mut quarantine_delta = 0i64;
            // The checkpoint first (same transaction): deletion marking then sees only the
            // rows stored before this batch.
            match &batch.advance {
                Advance::Mark(mark) => write_mark_if_greater(&tx, R::NAME, mark)?,
                Advance::Backfill { range_no, from, to } => {
                    let hi: Option<i64> = tx.query_row(
                        "SELECT hi FROM backfill_ranges WHERE stream = ?1 AND range_no = ?2",
                        params![R::NAME, range_no],
                        |r| r.get(0),
                    )?;
                    let listed = batch
                        .records
                        .iter()
                        .map(|r| r.id())
                        .chain(batch.bad.iter().filter_map(|b| b.id));
                    let upper = match to {
                        Some(t) => Some(*t),
                        None => hi,
                    };
                    stats.deleted = mark_deleted(&tx, R::TABLE, *from, upper, listed, &now)?;
                    match to {
                        Some(t) => tx.execute(
                            "UPDATE backfill_ranges SET cursor_id = ?3 WHERE stream = ?1 AND range_no = ?2",
                            params![R::NAME, range_no, t],
                        )?,
                        None => tx.execute(
                            "UPDATE backfill_ranges SET done = 1 WHERE stream = ?1 AND range_no = ?2",
                            params![R::NAME, range_no],
                        )?,
                    };
                }
            }
            {
                let mut upsert = tx.prepare_cached(&sql)?;
                let mut unquarantine = tx.prepare_cached(
                    "DELETE FROM quarantine WHERE stream = ?1 AND record_id = ?2
                     AND (modified_date IS NULL OR modified_date <= ?3)",
                )?;
                for rec in &batch.records {
                    rec.bind(&mut upsert)?;
                    upsert.raw_bind_parameter(now_param, &now)?;
                    let mut rows = upsert.raw_query();
                    match rows.next()? {
                        Some(row) if row.get::<_, bool>(0)? => stats.inserted += 1,
                        Some(_) => stats.updated += 1,
                        None => stats.unchanged += 1,
                    }
                    drop(rows);
                    if had_quarantine {
                        quarantine_delta -=
                            unquarantine.execute(params![R::NAME, rec.id(), rec.modified_date()])?
                                as i64;
                    }
                }
            }
            for bad in &batch.bad {
                quarantine(&tx, R::NAME, bad, &now)?;
                stats.quarantined += 1;
            }
            if !batch.bad.is_empty() {
                quarantine_delta = 0;
            }
            tx.execute(
                "UPDATE sync_runs SET pages = pages + ?2, rows_fetched = rows_fetched + ?3,
                     rows_inserted = rows_inserted + ?4, rows_updated = rows_updated + ?5,
                     rows_unchanged = rows_unchanged + ?6, rows_deleted = rows_deleted + ?7,
                     rows_quarantined = rows_quarantined + ?8
                 WHERE id = ?1",
                params![
                    run,
                    pages as i64,
                    stats.fetched as i64,
                    stats.inserted as i64,
                    stats.updated as i64,
                    stats.unchanged as i64,
                    stats.deleted as i64,
                    stats.quarantined as i64
                ],
            )?;
            let q = if batch.bad.is_empty() && quarantine_delta == 0 {
                -1
            } else {
                tx.query_row("SELECT count(*) FROM quarantine", [], |r| r.get(0))?
            };
            tx.commit()?;
            Ok((stats, q))
        };
        let (stats, q) =
            run_tx(&mut self.conn).map_err(|e| classify(&path, "writing a page", e))?;
        if q >= 0 {
            self.quarantined = q;
        }
        Ok(stats)
    }

    fn finish_run(
        &mut self,
        run: i64,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<(), WarehouseError> {
        let mark =
            read_mark(&self.conn, R::NAME).map_err(|e| self.err("reading the checkpoint", e))?;
        self.exec(
            "UPDATE sync_runs SET status = ?2, error = ?3, finished_at = ?4, mark_after = ?5 WHERE id = ?1",
            &[&run, &status.as_str(), &error, &timefmt::now_canonical(), &mark.to_string()],
            "recording the end of the run",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{Customer, Customers};
    use crate::warehouse::Confirmed;

    fn customer(id: i64, md: &str, name: &str) -> Customer {
        Customer {
            id,
            created_date: Some("2023-01-01T00:00:00.000000Z".into()),
            modified_date: md.into(),
            omnitron_id: Some(id * 10),
            email: Some(format!("c{id}@example.com")),
            first_name: Some(name.into()),
            last_name: None,
            phone_number: None,
            erp_code: None,
            channel: Some(1),
            extra: None,
        }
    }

    fn apply(wh: &mut SqliteWarehouse, run: i64, recs: Vec<Customer>, mark: Mark) -> RowStats {
        Warehouse::<Customers>::apply(
            wh,
            run,
            Batch {
                records: recs,
                bad: vec![],
                advance: Advance::Mark(mark),
            },
            1,
        )
        .unwrap()
    }

    #[test]
    fn migrations_validate() {
        MIGRATIONS.as_ref().unwrap().validate().unwrap();
    }

    #[test]
    fn upsert_never_goes_back_and_skips_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let mut wh = SqliteWarehouse::open(&dir.path().join("w.db")).unwrap();
        let run =
            Warehouse::<Customers>::begin_run(&mut wh, RunKind::Incremental, &Mark::Start).unwrap();
        let t1 = "2023-01-01T00:00:01.000000Z";
        let t2 = "2023-01-01T00:00:02.000000Z";
        let s = apply(
            &mut wh,
            run,
            vec![customer(1, t2, "new")],
            Mark::at(t2, Confirmed::Nothing),
        );
        assert_eq!((s.inserted, s.updated, s.unchanged), (1, 0, 0));
        let s = apply(
            &mut wh,
            run,
            vec![customer(1, t1, "old")],
            Mark::at(t2, Confirmed::Nothing),
        );
        assert_eq!((s.inserted, s.updated, s.unchanged), (0, 0, 1));
        let s = apply(
            &mut wh,
            run,
            vec![customer(1, t2, "new")],
            Mark::at(t2, Confirmed::Nothing),
        );
        assert_eq!((s.inserted, s.updated, s.unchanged), (0, 0, 1));
        let s = apply(
            &mut wh,
            run,
            vec![customer(1, t2, "same time, new content")],
            Mark::at(t2, Confirmed::Nothing),
        );
        assert_eq!((s.inserted, s.updated, s.unchanged), (0, 1, 0));
        let name: String = wh
            .connection()
            .query_row("SELECT first_name FROM customers WHERE id = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(name, "same time, new content");
        // The mark never moves backward.
        apply(&mut wh, run, vec![], Mark::at(t1, Confirmed::Nothing));
        assert_eq!(
            Warehouse::<Customers>::mark(&mut wh).unwrap(),
            Mark::at(t2, Confirmed::Nothing)
        );
    }

    fn index_sql(conn: &Connection) -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL
                 AND tbl_name IN ('customers') ORDER BY name",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn secondary_index_list_matches_the_migrations() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("m.db")).unwrap();
        let mut conn = conn;
        MIGRATIONS.as_ref().unwrap().to_latest(&mut conn).unwrap();
        let norm = |s: &str| {
            s.replace("IF NOT EXISTS ", "")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut want: Vec<(String, String)> = SECONDARY_INDEXES
            .iter()
            .map(|(_, n, sql)| (n.to_string(), norm(sql)))
            .collect();
        want.sort();
        let got: Vec<(String, String)> = index_sql(&conn)
            .into_iter()
            .map(|(n, sql)| (n, norm(&sql)))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn bulk_load_drops_indexes_only_when_empty_and_open_restores_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.db");
        let state = BackfillState {
            run_id: None,
            started_at: "2023-01-01T00:00:00.000000Z".into(),
            high_water_date: None,
            ranges: vec![],
        };
        let mut wh = SqliteWarehouse::open(&p).unwrap();
        let full = index_sql(wh.connection());
        assert_eq!(full.len(), SECONDARY_INDEXES.len());
        Warehouse::<Customers>::start_backfill(&mut wh, &state).unwrap();
        assert!(
            index_sql(wh.connection()).is_empty(),
            "empty table: dropped"
        );
        // Killed mid-backfill: the next open builds them again.
        drop(wh);
        let mut wh = SqliteWarehouse::open(&p).unwrap();
        assert_eq!(index_sql(wh.connection()), full);
        // Finishing a bulk load builds them too.
        Warehouse::<Customers>::start_backfill(&mut wh, &state).unwrap();
        Warehouse::<Customers>::finish_backfill(&mut wh, Mark::Start).unwrap();
        assert_eq!(index_sql(wh.connection()), full);
        // A table with rows keeps its indexes through a backfill.
        let run =
            Warehouse::<Customers>::begin_run(&mut wh, RunKind::Backfill, &Mark::Start).unwrap();
        let t = "2023-01-01T00:00:01.000000Z";
        apply(
            &mut wh,
            run,
            vec![customer(1, t, "a")],
            Mark::at(t, Confirmed::Nothing),
        );
        Warehouse::<Customers>::start_backfill(&mut wh, &state).unwrap();
        assert_eq!(index_sql(wh.connection()), full);
    }

    #[test]
    fn second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.db");
        let _first = SqliteWarehouse::open(&p).unwrap();
        let err = SqliteWarehouse::open(&p).unwrap_err();
        assert!(matches!(err, WarehouseError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("another oms-sync process"));
    }

    /// A child forked elsewhere in the process (any `Command` spawn) holds a copy of the lock
    /// descriptor until it execs; closing the warehouse must still free it for the next open.
    #[test]
    fn close_releases_the_lock_while_a_forked_child_holds_the_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.db");
        let first = SqliteWarehouse::open(&p).unwrap();
        // SAFETY: the child calls only async-signal-safe functions (sleep, _exit).
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork failed");
        if child == 0 {
            unsafe {
                libc::sleep(30);
                libc::_exit(0);
            }
        }
        drop(first);
        let reopened = SqliteWarehouse::open(&p);
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
        reopened.unwrap();
    }

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
