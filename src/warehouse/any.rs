//! The configured warehouse, whichever backend it is: what the CLI, the daemon and the tests
//! open, so they never name a backend. Each method delegates to the backend's own.

use crate::config::WarehouseConfig;
use crate::resource::{Resource, Spec};

use super::postgres::{PgReader, PgWarehouse};
use super::sqlite::{SqliteReader, SqliteWarehouse};
use super::{
    BackfillState, Batch, Mark, Reader, RowStats, RunKind, RunStatus, Warehouse, WarehouseError,
};

/// A warehouse opened for writing (holding its backend's writer lock).
#[derive(Debug)]
pub enum AnyWarehouse {
    Sqlite(SqliteWarehouse),
    Postgres(PgWarehouse),
}

impl AnyWarehouse {
    /// Opens the configured warehouse for writing: takes the writer lock and applies migrations.
    /// Blocking: call it off the async workers.
    pub fn open(cfg: &WarehouseConfig) -> Result<Self, WarehouseError> {
        Ok(match cfg {
            WarehouseConfig::Sqlite { path } => AnyWarehouse::Sqlite(SqliteWarehouse::open(path)?),
            WarehouseConfig::Postgres(pg) => AnyWarehouse::Postgres(PgWarehouse::open(pg)?),
        })
    }

    /// Drops a PostgreSQL schema this process created (see `check`); SQLite: nothing to do.
    pub fn drop_created_schema(&mut self) -> Result<(), WarehouseError> {
        match self {
            AnyWarehouse::Sqlite(_) => Ok(()),
            AnyWarehouse::Postgres(w) => w.drop_schema(),
        }
    }

    /// Proves the warehouse takes a write (rolled back) and names its schema version.
    pub fn probe_writable(&mut self) -> Result<String, WarehouseError> {
        match self {
            AnyWarehouse::Sqlite(w) => w.probe_writable(),
            AnyWarehouse::Postgres(w) => w.probe_writable(),
        }
    }
}

/// Opens the configured warehouse for reading only, without the writer lock.
pub fn open_reader(cfg: &WarehouseConfig) -> Result<Box<dyn Reader>, WarehouseError> {
    Ok(match cfg {
        WarehouseConfig::Sqlite { path } => Box::new(SqliteReader::open(path)?),
        WarehouseConfig::Postgres(pg) => Box::new(PgReader::open(pg)?),
    })
}

/// Where the configured warehouse is, safe to print (a URL without its password).
pub fn describe(cfg: &WarehouseConfig) -> String {
    match cfg {
        WarehouseConfig::Sqlite { path } => path.display().to_string(),
        WarehouseConfig::Postgres(pg) => pg.location(),
    }
}

macro_rules! delegate {
    ($self:ident, $w:ident => $call:expr) => {
        match $self {
            AnyWarehouse::Sqlite($w) => $call,
            AnyWarehouse::Postgres($w) => $call,
        }
    };
}

impl Warehouse for AnyWarehouse {
    fn mark(&mut self, stream: &Spec) -> Result<Mark, WarehouseError> {
        delegate!(self, w => w.mark(stream))
    }
    fn backfill_state(&mut self, stream: &Spec) -> Result<Option<BackfillState>, WarehouseError> {
        delegate!(self, w => w.backfill_state(stream))
    }
    fn start_backfill(
        &mut self,
        stream: &Spec,
        state: &BackfillState,
    ) -> Result<(), WarehouseError> {
        delegate!(self, w => w.start_backfill(stream, state))
    }
    fn finish_backfill(&mut self, stream: &Spec, mark: Mark) -> Result<(), WarehouseError> {
        delegate!(self, w => w.finish_backfill(stream, mark))
    }
    fn begin_run(
        &mut self,
        stream: &Spec,
        kind: RunKind,
        mark_before: &Mark,
    ) -> Result<i64, WarehouseError> {
        delegate!(self, w => w.begin_run(stream, kind, mark_before))
    }
    fn apply<R: Resource>(
        &mut self,
        run: i64,
        batches: &[Batch<R::Record>],
    ) -> Result<RowStats, WarehouseError> {
        delegate!(self, w => w.apply::<R>(run, batches))
    }
    fn apply_recording<R: Resource>(
        &mut self,
        run: i64,
        batches: &[Batch<R::Record>],
        recorder: &mut super::write::Recorder,
    ) -> Result<RowStats, WarehouseError> {
        delegate!(self, w => w.apply_recording::<R>(run, batches, recorder))
    }
    fn finish_run(
        &mut self,
        stream: &Spec,
        run: i64,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<(), WarehouseError> {
        delegate!(self, w => w.finish_run(stream, run, status, error))
    }
    fn prune_runs(&mut self, older_than: &str) -> Result<u64, WarehouseError> {
        delegate!(self, w => w.prune_runs(older_than))
    }
    fn set_history(
        &mut self,
        stream: &Spec,
        on: bool,
        run: i64,
    ) -> Result<super::history::Switch, WarehouseError> {
        delegate!(self, w => w.set_history(stream, on, run))
    }
}
