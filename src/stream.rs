//! The streams oms-sync keeps in step, one per OMS resource. The daemon, `--once`, `--backfill`,
//! `check` and the metrics walk the enabled streams (`sync.streams`, a subset of
//! [`Stream::ALL`]) instead of naming a resource; adding a resource is one variant here and one
//! file under `resource/`.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::api::{ApiClient, ApiError, ListQuery};
use crate::resource::{CustomerAddresses, Customers, Resource, StockLocations};
use crate::sync::verify::{Finding, verify};
use crate::sync::{
    PassReport, Progress, SyncError, SyncOptions, backfill_pass, backfill_slice, incremental_pass,
};
use crate::warehouse::{RunKind, Warehouse};

/// One stream: a resource and its checkpoint, run history and table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Customers,
    StockLocations,
    CustomerAddresses,
}

/// Runs `$body` with `$r` the resource type of `$stream`.
macro_rules! with_resource {
    ($stream:expr, $r:ident => $body:expr) => {
        match $stream {
            Stream::Customers => {
                type $r = Customers;
                $body
            }
            Stream::StockLocations => {
                type $r = StockLocations;
                $body
            }
            Stream::CustomerAddresses => {
                type $r = CustomerAddresses;
                $body
            }
        }
    };
}

/// A warehouse that can store every stream (any [`Warehouse`] can).
pub trait StreamWarehouse: Warehouse + 'static {}
impl<W: Warehouse + 'static> StreamWarehouse for W {}

impl Stream {
    /// Every stream, in the order passes run.
    pub const ALL: &'static [Stream] = &[
        Stream::Customers,
        Stream::StockLocations,
        Stream::CustomerAddresses,
    ];

    /// The streams run when `sync.streams` is not set: customers alone, as before there were
    /// more.
    pub const DEFAULT: &'static [Stream] = &[Stream::Customers];

    /// The stream of this name (`sync.streams`, `--stream`).
    pub fn from_name(name: &str) -> Option<Stream> {
        Stream::ALL.iter().copied().find(|s| s.name() == name)
    }

    /// The valid names, for error messages: `customers, stock_locations, customer_addresses`.
    pub fn names() -> String {
        Stream::ALL
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Its resource's declaration: path, fields, the filters its endpoint is declared to
    /// take.
    pub fn spec(self) -> &'static crate::resource::Spec {
        with_resource!(self, R => R::SPEC)
    }

    /// The name of its checkpoint and runs (`sync_state.stream`, `sync_runs.stream`).
    pub fn name(self) -> &'static str {
        with_resource!(self, R => R::NAME)
    }

    /// Its warehouse table.
    pub fn table(self) -> &'static str {
        with_resource!(self, R => R::TABLE)
    }

    /// Its OMS list endpoint, relative to `api.base_url`.
    pub fn path(self) -> &'static str {
        with_resource!(self, R => R::PATH)
    }

    /// One request for one record (`limit=1`) with `client`: proves the token may list this
    /// stream (what `check` runs for each stream).
    pub async fn probe(self, client: &ApiClient) -> Result<Probe, ApiError> {
        with_resource!(self, R => probe::<R>(client).await)
    }

    /// Verifies the stream's endpoint: its `OPTIONS` and probes of the filters and sort the
    /// sync relies on (what `check` reports; passes store theirs).
    pub async fn verify(self, client: &ApiClient) -> Result<Finding, ApiError> {
        with_resource!(self, R => verify::<R>(client).await)
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
        with_resource!(self, R => match kind {
            RunKind::Incremental => {
                incremental_pass::<R, W>(client, wh, opts, cancel, progress).await
            }
            RunKind::Backfill => backfill_pass::<R, W>(client, wh, opts, cancel, progress).await,
        })
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
        with_resource!(self, R => {
            backfill_slice::<R, W>(client, wh, opts, cancel, progress, Some(until)).await
        })
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
