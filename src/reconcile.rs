//! The daemon's scheduled reconciliation (`sync.reconcile_every`): a backfill per stream (the
//! full pass by id that marks deletions), due that long after the last one finished. When is
//! read from the warehouse (`sync_runs`), so a restart keeps the schedule; while no backfill
//! has finished it counts from the stream's first run (that first pass read everything), and
//! an unfinished backfill is due at once (the daemon resumes it). [`crate::daemon::run`] runs
//! it in time slices between incremental passes, so freshness stays within one interval.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::status::Report;
use crate::stream::Stream;
use crate::sync::PassReport;

/// When each stream's next reconciliation is due.
#[derive(Debug, Clone)]
pub struct Reconciler {
    every: Duration,
    /// Absent: never (`sync.reconcile_every = "0s"`).
    due: BTreeMap<&'static str, Instant>,
    /// The enabled streams.
    streams: Vec<Stream>,
}

impl Reconciler {
    /// Never reconciles.
    pub fn off() -> Self {
        Reconciler {
            every: Duration::ZERO,
            due: BTreeMap::new(),
            streams: Stream::DEFAULT.to_vec(),
        }
    }

    /// The schedule of `streams` from what `report` (the warehouse at start) says; without a
    /// report (it could not be read), the first reconciliation is `every` from now.
    pub fn new(every: Duration, report: Option<&Report>, streams: &[Stream]) -> Self {
        if every.is_zero() {
            return Reconciler {
                streams: streams.to_vec(),
                ..Self::off()
            };
        }
        let now = Instant::now();
        let due = streams
            .iter()
            .map(|stream| {
                let s = report.and_then(|r| r.stream(stream.name()));
                let wait = match s {
                    Some(s) if s.backfill_in_progress.is_some() => Duration::ZERO,
                    Some(s) => match s.since_last_backfill_seconds.or(s.since_first_run_seconds) {
                        Some(since) => every.saturating_sub(Duration::from_secs_f64(
                            since.clamp(0.0, every.as_secs_f64()),
                        )),
                        // No run at all: the first pass, about to run, reads everything.
                        None => every,
                    },
                    None => every,
                };
                (stream.name(), now + wait)
            })
            .collect();
        Reconciler {
            every,
            due,
            streams: streams.to_vec(),
        }
    }

    /// Whether `stream`'s reconciliation is due (or under way) at `now`.
    pub fn is_due(&self, stream: Stream, now: Instant) -> bool {
        self.due.get(stream.name()).is_some_and(|&t| t <= now)
    }

    /// Time from `now` until `stream`'s next reconciliation (zero: due; None: never).
    pub fn due_in(&self, stream: Stream, now: Instant) -> Option<Duration> {
        self.due
            .get(stream.name())
            .map(|&t| t.saturating_duration_since(now))
    }

    /// `stream`'s reconciliation finished at `now`: the next is due `every` later.
    pub fn finished(&mut self, stream: Stream, now: Instant) {
        if let Some(t) = self.due.get_mut(stream.name()) {
            *t = now + self.every;
        }
    }

    /// One line per stream at start: when its reconciliation is due, or that it is off.
    pub fn log_schedule(&self) {
        let now = Instant::now();
        for stream in &self.streams {
            match self.due_in(*stream, now) {
                None => tracing::info!(
                    stream = stream.name(),
                    "scheduled reconciliation off (sync.reconcile_every = \"0s\"); run --backfill while the daemon is stopped to find deletions"
                ),
                Some(d) => tracing::info!(
                    stream = stream.name(),
                    due_in_s = d.as_secs(),
                    every_s = self.every.as_secs(),
                    "scheduled reconciliation (backfill in slices between incremental passes)"
                ),
            }
        }
    }
}

/// One line per reconciliation slice: how far the backfill has got and what the slice did.
pub fn log_slice(r: &PassReport) {
    let (done, ranges, finished) = r
        .backfill
        .map_or((0, 0, false), |p| (p.ranges_done, p.ranges, p.finished));
    tracing::info!(
        stream = r.stream,
        run = r.run_id,
        ranges_done = done,
        ranges,
        finished,
        requests = r.requests,
        pages = r.pages,
        fetched = r.stats.fetched,
        inserted = r.stats.inserted,
        updated = r.stats.updated,
        deleted = r.stats.deleted,
        elapsed_ms = r.elapsed.as_millis() as u64,
        "reconciliation slice ended"
    );
}
