//! Several streams in one process: a tick runs every enabled stream (`sync.streams`) one after
//! another, all through the one [`ApiClient`] (its concurrency and its adaptive rate limit are
//! shared, so three streams never ask the OMS for more than one would) and the one warehouse
//! writer. A stream that fails does not stop the others: its failure is logged with its name,
//! its `sync_runs` row says failed, and only it waits out a backoff ([`Backoff`]) while the
//! others keep their interval.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::ApiClient;
use crate::stream::{Stream, StreamWarehouse};
use crate::sync::{PassReport, Progress, SyncError, SyncOptions};
use crate::warehouse::RunKind;

/// What one stream's pass gave.
pub type Outcome = (Stream, Result<PassReport, SyncError>);

/// Runs a pass of `kind` of each of `streams`, in order, until all have run or one was
/// cancelled (then the cancelled one is the last outcome). `after` sees each outcome as soon
/// as its pass ends.
#[allow(clippy::too_many_arguments)]
pub async fn run_all<W: StreamWarehouse>(
    streams: &[Stream],
    kind: RunKind,
    client: &ApiClient,
    mut wh: W,
    opts: &SyncOptions,
    cancel: &CancellationToken,
    progress: &dyn Fn(Stream) -> Arc<dyn Progress>,
    after: &mut dyn FnMut(Stream, &Result<PassReport, SyncError>),
) -> (W, Vec<Outcome>) {
    let mut outcomes = Vec::with_capacity(streams.len());
    for &stream in streams {
        let (back, result) = stream
            .pass(kind, client, wh, opts, cancel, progress(stream))
            .await;
        wh = back;
        after(stream, &result);
        let cancelled = matches!(result, Err(SyncError::Cancelled));
        outcomes.push((stream, result));
        if cancelled {
            break;
        }
    }
    (wh, outcomes)
}

/// One line per pass with its figures.
pub fn log_pass(r: &PassReport) {
    tracing::info!(
        stream = r.stream,
        kind = r.kind.as_str(),
        run = r.run_id,
        requests = r.requests,
        pages = r.pages,
        fetched = r.stats.fetched,
        inserted = r.stats.inserted,
        updated = r.stats.updated,
        unchanged = r.stats.unchanged,
        deleted = r.stats.deleted,
        quarantined = r.stats.quarantined,
        mark = %r.mark_after,
        elapsed_ms = r.elapsed.as_millis() as u64,
        "pass finished"
    );
}

/// Logs a failed pass with its stream's name.
pub fn log_failure(stream: Stream, kind: RunKind, e: &SyncError, consecutive: u32) {
    tracing::error!(
        stream = stream.name(),
        kind = kind.as_str(),
        error = %e,
        consecutive_failures = consecutive,
        "pass failed; the other streams go on"
    );
}

/// Per-stream failure backoff for the daemon: a failing stream is retried after
/// [`crate::daemon::next_delay`] of its own consecutive failures, the others keep the
/// interval. Also tells when no stream may be listed at all (every stream's last pass was
/// refused by the API's authentication): then no later tick can help.
#[derive(Debug, Default)]
pub struct Backoff {
    /// Consecutive failures and the earliest next try, per failing stream.
    failing: HashMap<Stream, (u32, Instant)>,
    /// Streams whose last pass was refused (401/403).
    refused: HashMap<Stream, bool>,
}

impl Backoff {
    /// Whether `stream` may run at `now` (it is not waiting out a backoff).
    pub fn may_run(&self, stream: Stream, now: Instant) -> bool {
        self.failing.get(&stream).is_none_or(|&(_, at)| at <= now)
    }

    /// Consecutive failures of `stream` so far.
    pub fn failures(&self, stream: Stream) -> u32 {
        self.failing.get(&stream).map_or(0, |&(n, _)| n)
    }

    /// Records a pass of `stream` that ended at `now`.
    pub fn record(
        &mut self,
        stream: Stream,
        result: &Result<PassReport, SyncError>,
        interval: Duration,
        now: Instant,
    ) {
        match result {
            Ok(_) => {
                self.failing.remove(&stream);
                self.refused.insert(stream, false);
            }
            Err(SyncError::Cancelled) => {}
            Err(e) => {
                let n = self.failures(stream) + 1;
                let at = now + crate::daemon::next_delay(interval, n);
                self.failing.insert(stream, (n, at));
                self.refused.insert(stream, e.is_auth());
            }
        }
    }

    /// Whether every one of `streams` was refused on its last pass: the token may list none
    /// of them, so the daemon stops (with one stream, as before there were more).
    pub fn all_refused(&self, streams: &[Stream]) -> bool {
        streams
            .iter()
            .all(|s| self.refused.get(s).copied().unwrap_or(false))
    }

    /// When the next tick is due: `normal` (the interval from now) while some stream is
    /// healthy, else the earliest end of a backoff.
    pub fn next_tick(&self, streams: &[Stream], normal: Instant) -> Instant {
        if streams.iter().any(|s| !self.failing.contains_key(s)) {
            return normal;
        }
        streams
            .iter()
            .filter_map(|s| self.failing.get(s).map(|&(_, at)| at))
            .min()
            .unwrap_or(normal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ApiError;

    fn refused() -> Result<PassReport, SyncError> {
        Err(SyncError::Api(ApiError::Auth {
            status: 403,
            url: "u".into(),
            detail: "d".into(),
        }))
    }

    /// A refused stream backs off alone; the daemon stops only once every stream is refused.
    #[tokio::test(start_paused = true)]
    async fn a_failing_stream_backs_off_alone() {
        let all = [Stream::Customers, Stream::CustomerAddresses];
        let interval = Duration::from_secs(60);
        let mut b = Backoff::default();
        let now = Instant::now();
        b.record(Stream::CustomerAddresses, &refused(), interval, now);
        assert!(b.may_run(Stream::Customers, now));
        assert!(!b.may_run(Stream::CustomerAddresses, now));
        assert!(b.may_run(Stream::CustomerAddresses, now + interval * 2));
        assert!(!b.all_refused(&all));
        assert_eq!(b.next_tick(&all, now + interval), now + interval);
        b.record(Stream::CustomerAddresses, &refused(), interval, now);
        assert_eq!(b.failures(Stream::CustomerAddresses), 2);
        b.record(Stream::Customers, &refused(), interval, now);
        assert!(b.all_refused(&all));
        assert!(b.all_refused(&[Stream::Customers]));
        assert!(!b.all_refused(&[Stream::StockLocations]));
    }
}
