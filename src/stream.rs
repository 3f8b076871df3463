//! The streams oms-sync keeps in step, one per OMS resource. The daemon, `--once`, `--backfill`,
//! `status`, `check` and the metrics walk [`Stream::ALL`] instead of naming a resource; adding a
//! resource is one variant here and one file under `resource/`.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::api::{ApiClient, ApiError, ListQuery};
use crate::resource::{Customers, Resource};
use crate::sync::{
    PassReport, Progress, SyncError, SyncOptions, backfill_pass, backfill_slice, incremental_pass,
};
use crate::warehouse::{RunKind, Warehouse};

/// One stream: a resource and its checkpoint, run history and table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Customers,
}

/// A warehouse that can store every stream (any [`Warehouse`] can).
pub trait StreamWarehouse: Warehouse + 'static {}
impl<W: Warehouse + 'static> StreamWarehouse for W {}

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

    /// Its OMS list endpoint, relative to `api.base_url`.
    pub fn path(self) -> &'static str {
        match self {
            Stream::Customers => Customers::PATH,
        }
    }

    /// One request for one record (`limit=1`) with `client`: proves the token may list this
    /// stream (what `check` runs for each stream).
    pub async fn probe(self, client: &ApiClient) -> Result<Probe, ApiError> {
        match self {
            Stream::Customers => probe::<Customers>(client).await,
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

impl Stream {
    /// A slice of this stream's backfill that stops once `until` has passed (the daemon's
    /// scheduled reconciliation); resumes the unfinished backfill or starts one.
    pub async fn backfill_slice<W: StreamWarehouse>(
        self,
        client: &ApiClient,
        wh: W,
        opts: &SyncOptions,
        cancel: &CancellationToken,
        progress: Arc<dyn Progress>,
        until: tokio::time::Instant,
    ) -> (W, Result<PassReport, SyncError>) {
        match self {
            Stream::Customers => {
                backfill_slice::<Customers, W>(client, wh, opts, cancel, progress, Some(until))
                    .await
            }
        }
    }
}

/// What a [`Stream::probe`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Elements in the page (0 or 1).
    pub listed: usize,
    /// The server's count of the whole list.
    pub count: u64,
}

async fn probe<R: Resource>(client: &ApiClient) -> Result<Probe, ApiError> {
    let query = ListQuery::new()
        .with("sort", "modified_date")
        .with("limit", "1");
    let page = client.list::<R>(&query).await?;
    Ok(Probe {
        listed: page.len,
        count: page.count,
    })
}
