//! The configured warehouse, whichever backend it is: what the CLI, the daemon and the tests
//! open, so they never name a backend. Each method delegates to the backend's own.

use crate::config::WarehouseConfig;
use crate::resource::Resource;

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

impl<R: Resource> Warehouse<R> for AnyWarehouse {
    fn mark(&mut self) -> Result<Mark, WarehouseError> {
        delegate!(self, w => Warehouse::<R>::mark(w))
    }
    fn backfill_state(&mut self) -> Result<Option<BackfillState>, WarehouseError> {
        delegate!(self, w => Warehouse::<R>::backfill_state(w))
    }
    fn start_backfill(&mut self, state: &BackfillState) -> Result<(), WarehouseError> {
        delegate!(self, w => Warehouse::<R>::start_backfill(w, state))
    }
    fn finish_backfill(&mut self, mark: Mark) -> Result<(), WarehouseError> {
        delegate!(self, w => Warehouse::<R>::finish_backfill(w, mark))
    }
    fn begin_run(&mut self, kind: RunKind, mark_before: &Mark) -> Result<i64, WarehouseError> {
        delegate!(self, w => Warehouse::<R>::begin_run(w, kind, mark_before))
    }
    fn apply(
        &mut self,
        run: i64,
        batches: &[Batch<R::Record>],
    ) -> Result<RowStats, WarehouseError> {
        delegate!(self, w => Warehouse::<R>::apply(w, run, batches))
    }
    fn apply_recording(
        &mut self,
        run: i64,
        batches: &[Batch<R::Record>],
        recorder: &mut super::write::Recorder,
    ) -> Result<RowStats, WarehouseError> {
        delegate!(self, w => Warehouse::<R>::apply_recording(w, run, batches, recorder))
    }
    fn finish_run(
        &mut self,
        run: i64,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<(), WarehouseError> {
        delegate!(self, w => Warehouse::<R>::finish_run(w, run, status, error))
    }
}
