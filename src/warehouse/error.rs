//! The warehouse's error kinds, whatever the backend: each says what failed and the fix.

use std::path::PathBuf;

/// The fix of a PostgreSQL server that refused or timed out the connection.
pub(crate) const PG_UNREACHABLE_FIX: &str =
    "check that the server is running and reachable at that host and port (or socket)";

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    /// `pid`: the process holding the lock, as it wrote in the lock file.
    #[error(
        "warehouse {path} is in use by another oms-sync process ({}lock {lock}); fix: stop the other instance, or point warehouse.path elsewhere",
        .pid.map(|p| format!("PID {p}, ")).unwrap_or_default()
    )]
    Locked {
        path: PathBuf,
        lock: PathBuf,
        pid: Option<u32>,
    },
    /// An existing file of something else: refused before anything is written to it.
    #[error(
        "warehouse {path} is not an oms-sync warehouse ({reason}); it was left unchanged; fix: point warehouse.path (or --db) at an oms-sync warehouse or at a new file"
    )]
    NotAWarehouse { path: PathBuf, reason: String },
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
    /// A PostgreSQL warehouse setting is wrong (`key` names it); never holds a password.
    #[error("{key} {reason}; fix: {fix}")]
    PgConfig {
        key: &'static str,
        reason: String,
        fix: &'static str,
    },
    #[error(
        "PostgreSQL warehouse {location} (schema {schema}) is in use by another oms-sync process (advisory lock held); fix: stop the other instance, or set warehouse.schema to another schema"
    )]
    PgLocked { location: String, schema: String },
    #[error("PostgreSQL warehouse {location}: cannot connect: {reason}; fix: {fix}")]
    PgConnect {
        location: String,
        reason: String,
        fix: &'static str,
    },
    /// Connected, but the schema is missing or holds no warehouse (a reader never creates one).
    #[error("PostgreSQL warehouse {location}: {reason}; fix: {fix}")]
    PgNoWarehouse {
        location: String,
        reason: String,
        fix: &'static str,
    },
    /// The role may not do what opening the warehouse needs (SQLSTATE 42501).
    #[error("PostgreSQL warehouse {location}: permission denied {context}: {reason}; fix: {fix}")]
    PgDenied {
        location: String,
        context: String,
        reason: String,
        fix: String,
    },
    /// The server went away mid-call (restart, failover, network, terminated backend): the open
    /// transaction rolled back on the server, and the next call reconnects.
    #[error(
        "PostgreSQL warehouse {location}: connection lost while {context} ({reason}); the unfinished transaction was rolled back, the checkpoint is unchanged; fix: check that the server is up and reachable, the next pass reconnects"
    )]
    PgConnectionLost {
        location: String,
        context: String,
        reason: String,
    },
    /// Reached a server that does not take writes: a standby, or `default_transaction_read_only`.
    #[error("PostgreSQL warehouse {location} is read-only: {reason}; fix: {fix}")]
    PgReadOnly {
        location: String,
        reason: String,
        fix: &'static str,
    },
    #[error("PostgreSQL warehouse {location}: {context}: {reason}")]
    Postgres {
        location: String,
        context: String,
        reason: String,
        /// SQLSTATE, when the server sent one.
        code: Option<String>,
    },
    #[error(
        "PostgreSQL warehouse {location}: schema migration failed: {reason}; fix: check the role may create tables in the schema, or restore a backup"
    )]
    PgMigration { location: String, reason: String },
}

impl WarehouseError {
    /// Whether the warehouse may work again in a moment with nothing to undo: the server went
    /// away (restart, failover) or none of the listed servers takes writes yet (a standby
    /// being promoted). The failed call's transaction rolled back, so repeating it is safe.
    pub fn is_reconnectable(&self) -> bool {
        match self {
            WarehouseError::PgConnectionLost { .. } | WarehouseError::PgReadOnly { .. } => true,
            // Refused or timed out connecting; not a wrong password, database or TLS setup.
            WarehouseError::PgConnect { fix, .. } => *fix == PG_UNREACHABLE_FIX,
            _ => false,
        }
    }
}
