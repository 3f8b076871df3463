//! Opening SQLite connections: the one place PRAGMAs are set, migrations applied, and SQLite
//! errors sorted into the warehouse's error kinds.

use std::path::Path;
use std::sync::LazyLock;

use include_dir::{Dir, include_dir};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use rusqlite_migration::Migrations;

use super::BUSY_TIMEOUT;
use super::checkpoint::CHECKPOINT_PAGES;
use crate::warehouse::WarehouseError;

static MIGRATIONS_DIR: Dir = include_dir!("$CARGO_MANIFEST_DIR/migrations/sqlite");
pub(super) static MIGRATIONS: LazyLock<Result<Migrations<'static>, String>> =
    LazyLock::new(|| Migrations::from_directory(&MIGRATIONS_DIR).map_err(|e| e.to_string()));

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

pub(super) fn classify(path: &Path, context: &str, e: rusqlite::Error) -> WarehouseError {
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

#[cfg(test)]
mod tests {
    use super::*;

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
