//! Opening SQLite connections: the one place PRAGMAs are set, migrations applied, files that
//! are not a warehouse refused, and SQLite errors sorted into the warehouse's error kinds.

use std::ffi::{c_int, c_void};
use std::path::Path;
use std::sync::LazyLock;

use include_dir::{Dir, include_dir};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use rusqlite_migration::Migrations;

use super::BUSY_TIMEOUT;
use super::checkpoint::CHECKPOINT_PAGES;
use crate::warehouse::{Location, WarehouseError};

static MIGRATIONS_DIR: Dir = include_dir!("$CARGO_MANIFEST_DIR/migrations/sqlite");
pub(super) static MIGRATIONS: LazyLock<Result<Migrations<'static>, String>> =
    LazyLock::new(|| Migrations::from_directory(&MIGRATIONS_DIR).map_err(|e| e.to_string()));

/// `PRAGMA application_id` of a warehouse ("OMSS"): the header says whose file it is.
pub const APPLICATION_ID: i32 = 0x4F4D_5353;
/// Tables every warehouse has had since its first migration.
const WAREHOUSE_TABLES: [&str; 3] = ["customers", "sync_state", "sync_runs"];

/// What an existing file holds, as far as oms-sync is concerned.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Contents {
    /// No file, a 0-byte one, or a SQLite database with no table: a warehouse can be made.
    Empty,
    Warehouse,
}

/// Refuses a file that is neither empty nor an oms-sync warehouse, reading it only (a
/// read-only connection writes nothing to a database that is not in WAL mode), so that a
/// database of another application is left exactly as it was.
///
/// One exception, for the `writer`: a hot journal (a transaction interrupted by a crash, e.g.
/// a first start killed while switching a new file to WAL) cannot be read through a
/// read-only connection. The writer rolls it back first, as any SQLite program opening the
/// file would, and then looks.
pub(super) fn inspect(path: &Path, writer: bool) -> Result<Contents, WarehouseError> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => return Ok(Contents::Empty),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Contents::Empty),
        _ => {}
    }
    let (app, version, tables) = match read_identity(path) {
        Err(e) if writer && is_hot_journal(&e) => Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|c| {
            c.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .and_then(|_| read_identity(path)),
        other => other,
    }
    .map_err(|e| open_error(path, &e))?;
    let ours = WAREHOUSE_TABLES
        .iter()
        .all(|t| tables.iter().any(|have| have == t));
    let not_ours = |reason: String| WarehouseError::NotAWarehouse {
        at: Location::file(path),
        reason: format!("it is not an oms-sync warehouse ({reason}); it was left unchanged"),
        fix: "point warehouse.path (or --db) at an oms-sync warehouse or at a new file",
    };
    match app {
        APPLICATION_ID => Ok(Contents::Warehouse),
        0 if tables.is_empty() && version == 0 => Ok(Contents::Empty),
        // Warehouses written before the application id was set.
        0 if ours && version > 0 => Ok(Contents::Warehouse),
        0 => {
            let mut names = tables
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if tables.len() > 3 {
                names.push_str(", …");
            }
            Err(not_ours(if tables.is_empty() {
                format!("a SQLite database with schema version {version} and no table")
            } else {
                format!("a SQLite database of other tables: {names}")
            }))
        }
        other => Err(not_ours(format!(
            "a SQLite database of another application (application_id {other:#x})"
        ))),
    }
}

/// The file's application id, schema version and tables, through a read-only connection.
fn read_identity(path: &Path) -> rusqlite::Result<(i32, i64, Vec<String>)> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let app = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )?;
    let tables = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok((app, version, tables))
}

/// Applies the pending migrations and stamps the application id. A failure names the
/// statement's error, not the migration's whole SQL.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), WarehouseError> {
    let failed = |reason: String| WarehouseError::Migration {
        at: Location::file(path),
        reason,
        fix: "restore a backup or move the file aside to start afresh",
    };
    let migrations = MIGRATIONS.as_ref().map_err(|e| failed(e.clone()))?;
    migrations.to_latest(conn).map_err(|e| match e {
        rusqlite_migration::Error::RusqliteError {
            err: rusqlite::Error::SqlInputError { msg, .. },
            ..
        } => failed(msg),
        rusqlite_migration::Error::RusqliteError { err, .. } => {
            classify(path, "applying migrations", err)
        }
        other => failed(other.to_string()),
    })?;
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| classify(path, "reading the application id", e))?;
    if app != APPLICATION_ID {
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(|e| classify(path, "setting the application id", e))?;
    }
    Ok(())
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
            return Err(WarehouseError::Unusable {
                at: Location::file(path),
                what: "cannot be opened",
                reason: format!("cannot switch to WAL mode (got {mode})"),
                fix: "put the warehouse on a local file system",
            });
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| open_error(path, &e))?;
        keep_wal_files(&conn).map_err(|e| open_error(path, &e))?;
        align_wal_files(path);
        // The warehouse's writer replaces this with its background checkpoints (see
        // `checkpoint`); any other writing connection checkpoints at the same size itself.
        conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES)
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

/// WAL size (bytes) past which a restarting WAL is cut back; above the background checkpoint's
/// threshold (about 40 MiB), so it only bounds a WAL a long reader made grow.
pub const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Keeps the `-wal` and `-shm` files when the last connection closes (persistent WAL), emptied
/// (`journal_size_limit` makes the closing checkpoint truncate the WAL to 0 bytes).
///
/// A reader that may not write the directory (a BI group with read access only) can open a
/// WAL database read-only only while both files exist: SQLite deletes them when its last
/// connection closes, and without a running writer every read then failed with "attempt to
/// write a readonly database". Each writing connection sets this, so whichever closes last
/// keeps them.
fn keep_wal_files(conn: &Connection) -> rusqlite::Result<()> {
    let mut on: c_int = 1;
    // SAFETY: the handle is this open connection's; SQLITE_FCNTL_PERSIST_WAL reads and writes
    // the one int `on` points to, which outlives the call.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&raw mut on).cast::<c_void>(),
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rc),
            Some("cannot keep the WAL files (SQLITE_FCNTL_PERSIST_WAL)".into()),
        ));
    }
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
}

/// Gives the `-wal` and `-shm` files the database file's permission bits and group, so a reader
/// allowed to read the database may read them too. SQLite creates them so, but they now
/// outlive the process: a `chmod`/`chgrp` of the database after they were made is carried
/// over at the next writer's start. Best effort: a group this user is not in stays as it is
/// (the reader then fails with its own error, which names the file).
fn align_wal_files(path: &Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(db) = std::fs::metadata(path) else {
        return;
    };
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let Ok(meta) = std::fs::metadata(&side) else {
            continue;
        };
        if meta.mode() & 0o777 != db.mode() & 0o777 {
            let _ =
                std::fs::set_permissions(&side, std::fs::Permissions::from_mode(db.mode() & 0o777));
        }
        if meta.gid() != db.gid() {
            let _ = std::os::unix::fs::chown(&side, None, Some(db.gid()));
        }
    }
}

/// A read-only connection met a transaction a crash left in a rollback journal.
fn is_hot_journal(e: &rusqlite::Error) -> bool {
    e.sqlite_error()
        .is_some_and(|f| f.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK)
}

pub(super) fn open_error(path: &Path, e: &rusqlite::Error) -> WarehouseError {
    let (reason, fix) = match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => (
            "the file is not a SQLite database".to_string(),
            "point warehouse.path at a new file or an oms-sync warehouse",
        ),
        Some(ErrorCode::CannotOpen) => (
            e.to_string(),
            "create the directory and make it writable by the oms-sync user",
        ),
        Some(ErrorCode::ReadOnly) if is_hot_journal(e) => (
            "a transaction interrupted by a crash must be rolled back first (hot journal)"
                .to_string(),
            "run oms-sync --once (or the program that wrote the file) once as a user who may write it",
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
    WarehouseError::Unusable {
        at: Location::file(path),
        what: "cannot be opened",
        reason,
        fix,
    }
}

pub(super) fn classify(path: &Path, context: &str, e: rusqlite::Error) -> WarehouseError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => WarehouseError::DiskFull {
            at: Location::file(path),
            context: context.to_string(),
            reason: e.to_string(),
        },
        Some(ErrorCode::ReadOnly) => WarehouseError::ReadOnly {
            at: Location::file(path),
            reason: context.to_string(),
            fix: "make the file and its directory writable by the oms-sync user",
        },
        _ => failed(path, context, &e),
    }
}

/// A statement's failure as it is, unsorted (a reader's: it never writes).
pub(super) fn failed(path: &Path, context: &str, e: &rusqlite::Error) -> WarehouseError {
    WarehouseError::Backend {
        at: Location::file(path),
        context: context.to_string(),
        reason: e.to_string(),
        code: e
            .sqlite_error()
            .map(|f| format!("SQLite result code {}", f.extended_code)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_warehouse_carries_the_application_id_and_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.db");
        drop(super::super::SqliteWarehouse::open(&p).unwrap());
        let conn = Connection::open(&p).unwrap();
        let app: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(app, APPLICATION_ID);
        assert_eq!(inspect(&p, false).unwrap(), Contents::Warehouse);
        // One written before the id was set is recognised by its tables.
        conn.pragma_update(None, "application_id", 0).unwrap();
        assert_eq!(inspect(&p, false).unwrap(), Contents::Warehouse);
        // Another application's id is refused whatever the tables.
        conn.pragma_update(None, "application_id", 7).unwrap();
        let err = inspect(&p, false).unwrap_err();
        assert!(err.to_string().contains("application_id 0x7"), "{err}");
    }

    #[test]
    fn migrations_validate() {
        MIGRATIONS.as_ref().unwrap().validate().unwrap();
    }

    #[test]
    fn writer_connections_checkpoint_every_wal_autocheckpoint_pages() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_connection(&dir.path().join("w.db"), false).unwrap();
        let pages: i64 = conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pages, i64::from(CHECKPOINT_PAGES));
    }
}
