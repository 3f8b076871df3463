//! The warehouse's error kinds, whatever the backend: each says what failed and the fix.

use std::path::PathBuf;

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
