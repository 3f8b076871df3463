//! The streams oms-sync keeps in step, one per OMS resource. The daemon, `--once`, `--backfill`
//! and `status` walk [`Stream::ALL`] instead of naming a resource; adding a resource is one
//! variant here and one file under `resource/`.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::api::ApiClient;
use crate::resource::{Customers, Resource};
use crate::sync::{PassReport, Progress, SyncError, SyncOptions, backfill_pass, incremental_pass};
use crate::warehouse::{RunKind, Warehouse};

/// One stream: a resource and its checkpoint, run history and table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Customers,
}

/// A warehouse that can store every stream.
pub trait StreamWarehouse: Warehouse<Customers> + 'static {}
impl<W: Warehouse<Customers> + 'static> StreamWarehouse for W {}

impl Stream {
    /// Every stream, in the order passes run.
    pub const ALL: &'static [Stream] = &[Stream::Customers];

    /// The name of its checkpoint and runs (`sync_state.stream`, `sync_runs.stream`).
    pub fn name(self) -> &'static str {
        match self {
            Stream::Customers => Customers::NAME,
        }
    }

    /// Its warehouse table.
    pub fn table(self) -> &'static str {
        match self {
            Stream::Customers => Customers::TABLE,
        }
    }

    /// One pass of this stream: incremental, or a backfill (resuming an unfinished one).
    pub async fn pass<W: StreamWarehouse>(
        self,
        kind: RunKind,
        client: &ApiClient,
        wh: W,
        opts: &SyncOptions,
        cancel: &CancellationToken,
        progress: Arc<dyn Progress>,
    ) -> (W, Result<PassReport, SyncError>) {
        match (self, kind) {
            (Stream::Customers, RunKind::Incremental) => {
                incremental_pass::<Customers, W>(client, wh, opts, cancel, progress).await
            }
            (Stream::Customers, RunKind::Backfill) => {
                backfill_pass::<Customers, W>(client, wh, opts, cancel, progress).await
            }
        }
    }
}
