//! `sync.keep_runs` in operation: the daemon forgets old runs when it starts and then every
//! [`PRUNE_EVERY`], `--once` and `--backfill` after their passes. Which rows stay is the
//! warehouse's rule ([`Warehouse::prune_runs`]).

use std::time::Duration;

use crate::timefmt;
use crate::warehouse::{Warehouse, WarehouseError};

/// How often the daemon prunes: a statement an hour, each deleting about an hour of runs.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Forgets the runs that started more than `keep` ago (zero: keeps all), on a blocking thread
/// as the warehouse's calls need; the warehouse comes back with the number deleted.
pub async fn prune_runs<W: Warehouse + 'static>(
    mut wh: W,
    keep: Duration,
) -> (W, Result<u64, WarehouseError>) {
    // A span beyond the calendar keeps everything, as zero does.
    let cutoff = chrono::TimeDelta::from_std(keep)
        .ok()
        .and_then(|d| chrono::Utc::now().checked_sub_signed(d));
    let Some(cutoff) = cutoff.filter(|_| !keep.is_zero()) else {
        return (wh, Ok(0));
    };
    let older_than = timefmt::canonical(&cutoff);
    let handle = tokio::task::spawn_blocking(move || {
        let r = wh.prune_runs(&older_than);
        if let Ok(n) = r
            && n > 0
        {
            tracing::info!(deleted = n, older_than, "forgot old runs (sync.keep_runs)");
        }
        (wh, r)
    });
    match handle.await {
        Ok(done) => done,
        // The closure owns the warehouse; a panic there is a bug, and the process must stop.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
