//! The warehouse's errors by kind, whatever the backend: each backend sorts its own errors
//! into these kinds, and every message names where ([`Location`]), what failed (with the
//! statement's or the server's own words) and the fix.

use std::fmt;
use std::path::{Path, PathBuf};

/// The fix of a PostgreSQL server that refused or timed out the connection.
pub(crate) const PG_UNREACHABLE_FIX: &str =
    "check that the server is running and reachable at that host and port (or socket)";

/// Where the warehouse is, as every error names it first. Never holds a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    File(PathBuf),
    /// A PostgreSQL server, database and schema, its URL redacted (`PgConfig::location`).
    Server(String),
}

impl Location {
    pub fn file(path: &Path) -> Self {
        Location::File(path.to_path_buf())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(path) => write!(f, "warehouse {}", path.display()),
            Location::Server(location) => write!(f, "PostgreSQL warehouse {location}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    /// Another oms-sync process holds the writer's lock. `pid`: the holder, as it wrote in the
    /// lock file; `lock`: which lock (a lock file, an advisory lock).
    #[error(
        "{at} is in use by another oms-sync process ({}{lock}); fix: {fix}",
        .pid.map(|p| format!("PID {p}, ")).unwrap_or_default()
    )]
    Locked {
        at: Location,
        pid: Option<u32>,
        lock: String,
        fix: &'static str,
    },
    /// Something else is there: a file of another application (refused before anything is
    /// written to it), or a schema without a warehouse (a reader never creates one).
    #[error("{at}: {reason}; fix: {fix}")]
    NotAWarehouse {
        at: Location,
        reason: String,
        fix: &'static str,
    },
    /// The warehouse cannot be opened or reached: `what` says which step ("cannot be opened",
    /// "cannot connect"), `reason` the cause in the backend's words.
    #[error("{at}: {what}: {reason}; fix: {fix}")]
    Unusable {
        at: Location,
        what: &'static str,
        reason: String,
        fix: &'static str,
    },
    /// The server went away mid-call (restart, failover, network, terminated backend): the open
    /// transaction rolled back on the server, and the next call reconnects.
    #[error(
        "{at}: connection lost while {context} ({reason}); the unfinished transaction was rolled back, the checkpoint is unchanged; fix: check that the server is up and reachable, the next pass reconnects"
    )]
    ConnectionLost {
        at: Location,
        context: String,
        reason: String,
    },
    /// Writes are refused: a read-only file or directory; a standby, or
    /// `default_transaction_read_only`.
    #[error("{at} is read-only: {reason}; fix: {fix}")]
    ReadOnly {
        at: Location,
        reason: String,
        fix: &'static str,
    },
    /// No space for the write; the transaction rolled back.
    #[error(
        "{at}: disk full while {context} ({reason}); fix: free disk space, then run again (nothing half-written was kept)"
    )]
    DiskFull {
        at: Location,
        context: String,
        reason: String,
    },
    /// The user or role may not do what the warehouse needs (a directory's mode, SQLSTATE 42501).
    #[error("{at}: permission denied while {context}: {reason}; fix: {fix}")]
    PermissionDenied {
        at: Location,
        context: String,
        reason: String,
        fix: String,
    },
    /// The warehouse's schema could not be brought to this version.
    #[error("{at}: schema migration failed: {reason}; fix: {fix}")]
    Migration {
        at: Location,
        reason: String,
        fix: &'static str,
    },
    /// A warehouse setting is wrong (`key` names it); never holds a password.
    #[error("{key} {reason}; fix: {fix}")]
    Config {
        key: &'static str,
        reason: String,
        fix: &'static str,
    },
    /// Any other failure of a statement: what was being done and the backend's message.
    #[error("{at}: {context}: {reason}")]
    Backend {
        at: Location,
        context: String,
        reason: String,
        /// The backend's error code: SQLSTATE for PostgreSQL, the extended result code for
        /// SQLite.
        code: Option<String>,
    },
}

impl WarehouseError {
    /// Whether the warehouse may work again in a moment with nothing to undo: the server went
    /// away (restart, failover) or none of the listed servers takes writes yet (a standby
    /// being promoted). The failed call's transaction rolled back, so repeating it is safe.
    pub fn is_reconnectable(&self) -> bool {
        match self {
            WarehouseError::ConnectionLost { .. } => true,
            // A server that takes no writes may be promoted; a read-only file stays so.
            WarehouseError::ReadOnly { at, .. } => matches!(at, Location::Server(_)),
            // Refused or timed out connecting; not a wrong password, database or TLS setup.
            WarehouseError::Unusable { fix, .. } => *fix == PG_UNREACHABLE_FIX,
            _ => false,
        }
    }

    /// Where the failing warehouse is; `None` for a setting refused before one was chosen.
    pub fn location(&self) -> Option<&Location> {
        match self {
            WarehouseError::Locked { at, .. }
            | WarehouseError::NotAWarehouse { at, .. }
            | WarehouseError::Unusable { at, .. }
            | WarehouseError::ConnectionLost { at, .. }
            | WarehouseError::ReadOnly { at, .. }
            | WarehouseError::DiskFull { at, .. }
            | WarehouseError::PermissionDenied { at, .. }
            | WarehouseError::Migration { at, .. }
            | WarehouseError::Backend { at, .. } => Some(at),
            WarehouseError::Config { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind names its place the same way on both backends, and reconnecting is for a
    /// server only: a read-only SQLite file does not heal by retrying.
    #[test]
    fn kinds_name_the_place_and_only_a_server_is_reconnectable() {
        let file = Location::file(Path::new("/srv/w.db"));
        let server = Location::Server("127.0.0.1:5432/bi (schema oms_sync)".into());
        let read_only = |at: &Location| WarehouseError::ReadOnly {
            at: at.clone(),
            reason: "writing a batch".into(),
            fix: "make it writable",
        };
        assert!(
            read_only(&file)
                .to_string()
                .starts_with("warehouse /srv/w.db is read-only")
        );
        assert!(!read_only(&file).is_reconnectable());
        assert!(
            read_only(&server).to_string().starts_with(
                "PostgreSQL warehouse 127.0.0.1:5432/bi (schema oms_sync) is read-only"
            )
        );
        assert!(read_only(&server).is_reconnectable());
        let locked = WarehouseError::Locked {
            at: file.clone(),
            pid: Some(42),
            lock: "lock /srv/w.db.lock".into(),
            fix: "stop the other instance",
        };
        assert_eq!(
            locked.to_string(),
            "warehouse /srv/w.db is in use by another oms-sync process (PID 42, lock /srv/w.db.lock); fix: stop the other instance"
        );
        assert_eq!(locked.location(), Some(&file));
    }
}
