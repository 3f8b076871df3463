//! Exit codes and the last word of a failed run: [`ExitKind`] is the one table of exit codes
//! (the README's table lists the same), every library error maps to one kind here, and
//! [`report`] prints the failure once: `error: ...` on stderr, or one JSON event when
//! `log.format = "json"`. A closed stdout (`oms-sync demo | head`) ends quietly with 0.

use std::io::Write;
use std::process::ExitCode;

use crate::api::ApiError;
use crate::config::{ConfigError, LogFormat};
use crate::daemon::DaemonError;
use crate::sync::SyncError;
use crate::warehouse::WarehouseError;

/// What kind of outcome ended the process; the discriminant is the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitKind {
    Success = 0,
    Other = 1,
    Usage = 2,
    Auth = 3,
    Api = 4,
    Warehouse = 5,
    Interrupted = 6,
}

impl ExitKind {
    pub const ALL: [ExitKind; 7] = [
        ExitKind::Success,
        ExitKind::Other,
        ExitKind::Usage,
        ExitKind::Auth,
        ExitKind::Api,
        ExitKind::Warehouse,
        ExitKind::Interrupted,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    /// The meaning, word for word as in the README's exit code table.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitKind::Success => "success; also the daemon stopped by SIGTERM/SIGINT",
            ExitKind::Other => "other failure",
            ExitKind::Usage => {
                "usage or configuration error (also: the metrics port is in use, conflicting arguments)"
            }
            ExitKind::Auth => "authentication failed (HTTP 401/403); never retried",
            ExitKind::Api => {
                "API unreachable (after retries for transient faults, at once for TLS/protocol mismatches), or answering in a way that cannot move the sync forward"
            }
            ExitKind::Warehouse => {
                "warehouse unusable (a directory, locked by another instance, not SQLite, read-only, disk full)"
            }
            ExitKind::Interrupted => {
                "a one-shot run stopped by a signal before it finished (committed pages are kept)"
            }
        }
    }
}

impl From<&ApiError> for ExitKind {
    fn from(e: &ApiError) -> Self {
        match e {
            ApiError::Auth { .. } => ExitKind::Auth,
            _ => ExitKind::Api,
        }
    }
}

impl From<&SyncError> for ExitKind {
    fn from(e: &SyncError) -> Self {
        match e {
            SyncError::Api(a) => a.into(),
            SyncError::NoProgress { .. } | SyncError::PageMismatch { .. } => ExitKind::Api,
            SyncError::Warehouse(_)
            | SyncError::CorruptMark { .. }
            | SyncError::WriterStopped
            | SyncError::FetchEnded => ExitKind::Warehouse,
            SyncError::Cancelled => ExitKind::Interrupted,
        }
    }
}

impl From<&DaemonError> for ExitKind {
    fn from(e: &DaemonError) -> Self {
        match e {
            DaemonError::MetricsListen { .. } => ExitKind::Usage,
            DaemonError::Sync(s) => s.into(),
        }
    }
}

/// A failure with its exit kind; the message is the whole story for the user.
#[derive(Debug)]
pub struct Failure {
    pub kind: ExitKind,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn new(kind: ExitKind, error: impl Into<anyhow::Error>) -> Self {
        Failure {
            kind,
            error: error.into(),
        }
    }

    /// Whether the failure is only a closed stdout (the reader went away: not an error).
    pub fn is_broken_pipe(&self) -> bool {
        self.error.chain().any(|e| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        })
    }

    /// The message: the error chain on one line, each cause once (a cause already quoted by
    /// the message around it is not repeated).
    pub fn message(&self) -> String {
        let mut msg = String::new();
        for e in self.error.chain() {
            let text = e.to_string();
            if msg.contains(&text) {
                continue;
            }
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&text);
        }
        crate::text::one_line(&msg)
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::new(ExitKind::Usage, e)
    }
}

impl From<WarehouseError> for Failure {
    fn from(e: WarehouseError) -> Self {
        Failure::new(ExitKind::Warehouse, e)
    }
}

impl From<DaemonError> for Failure {
    fn from(e: DaemonError) -> Self {
        Failure::new((&e).into(), e)
    }
}

impl From<SyncError> for Failure {
    fn from(e: SyncError) -> Self {
        let kind = ExitKind::from(&e);
        if kind == ExitKind::Interrupted {
            // The library's own words would repeat "committed pages are kept".
            return Failure::new(
                kind,
                anyhow::anyhow!(
                    "stopped by a signal before the pass finished; committed pages are kept, run again to continue"
                ),
            );
        }
        Failure::new(kind, e)
    }
}

/// Prints the failure (unless it is a closed stdout) and gives the exit code.
pub fn report(f: &Failure, format: LogFormat) -> ExitCode {
    if f.is_broken_pipe() {
        return ExitCode::SUCCESS;
    }
    let msg = f.message();
    let mut err = std::io::stderr().lock();
    // Nothing is left to tell anyone if stderr is gone too.
    let _ = match format {
        LogFormat::Text => writeln!(err, "error: {msg}"),
        LogFormat::Json => {
            let event = serde_json::json!({
                "timestamp": crate::timefmt::now_canonical(),
                "level": "ERROR",
                "message": msg,
                "exit_code": f.kind.code(),
                "target": "oms_sync",
            });
            writeln!(err, "{event}")
        }
    };
    ExitCode::from(f.kind.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's table is the operator's copy of this enum: they must agree.
    #[test]
    fn readme_exit_code_table_matches_the_enum() {
        let readme = include_str!("../../README.md");
        for k in ExitKind::ALL {
            let row = format!("| {} | {} |", k.code(), k.meaning());
            assert!(readme.contains(&row), "README lacks the row {row:?}");
        }
    }

    #[test]
    fn a_cause_quoted_by_its_message_is_not_repeated() {
        let io = std::io::Error::other("disk on fire");
        let f = Failure::new(
            ExitKind::Other,
            anyhow::Error::new(io).context("writing: disk on fire"),
        );
        assert_eq!(f.message(), "writing: disk on fire");
        let f = Failure::new(
            ExitKind::Other,
            anyhow::Error::new(std::io::Error::other("cause")).context("outer"),
        );
        assert_eq!(f.message(), "outer: cause");
    }
}
