//! The scheduler: one incremental pass every `sync.interval` (with jitter) until cancelled.
//! Passes never overlap (one loop, one warehouse owner). A reconciliation (backfill) that is
//! due (see [`crate::reconcile`]) runs in the time left until the next incremental pass, a
//! slice at a time, so it never holds the incremental passes back by more than a page. A failed pass is logged and retried
//! on a later tick with capped exponential backoff; only an authentication failure, which no
//! retry can fix, ends the loop with an error.
//!
//! The loop keeps a [`Heartbeat`] for the systemd watchdog: it beats before and after each
//! pass, for each committed batch, and covers its own sleep between passes with a deadline.
//!
//! [`serve`] assembles the daemon as a service around that loop: the metrics endpoint, the
//! request observer, systemd readiness, per-pass status and the watchdog; and
//! [`spawn_signal_handler`] turns SIGTERM/SIGINT into a cancel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::api::ApiClient;
use crate::config::Config;
use crate::metrics::{self, Metrics};
use crate::notify::{self, Heartbeat, Notifier};
use crate::reconcile::Reconciler;
use crate::status;
use crate::stream::{Stream, StreamWarehouse};
use crate::sync::{NoProgress, PassReport, Progress, SyncError, SyncOptions, retention};
use crate::tick::{self, Backoff};
use crate::warehouse::{RowStats, RunKind};

/// Longest wait between passes after repeated failures.
pub const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// Share of the interval added or removed at random, so many daemons do not fire together.
pub const JITTER: f64 = 0.1;

/// Called after each pass (for sd_notify status, metrics); `Err` carries the message.
pub type PassObserver = Box<dyn FnMut(&'static str, &Result<PassReport, String>) + Send>;

/// Called after each reconciliation slice with its report (metrics).
pub type ReconcileObserver = Box<dyn FnMut(&'static str, &PassReport) + Send>;

pub struct Schedule {
    pub interval: Duration,
    pub options: SyncOptions,
    /// `sync.reconcile_every` (zero: never).
    pub reconcile_every: Duration,
    /// `sync.keep_runs` (zero: forever).
    pub keep_runs: Duration,
    /// The enabled streams, in the order each tick runs them (`sync.streams`).
    pub streams: Vec<Stream>,
}

/// What watches the loop: the heartbeat, a progress sink for each pass (metrics), and the
/// per-pass observer (sd_notify status, metrics).
pub struct Hooks {
    pub heartbeat: Heartbeat,
    pub progress: Arc<dyn Progress>,
    pub observe: PassObserver,
    pub reconciled: ReconcileObserver,
}

/// Forwards progress and beats the heartbeat for each committed batch: a long pass that
/// keeps committing is alive.
struct Beating {
    heartbeat: Heartbeat,
    inner: Arc<dyn Progress>,
}

impl Progress for Beating {
    fn add_total(&self, rows: u64) {
        self.inner.add_total(rows);
    }
    fn committed(&self, stream: &'static str, stats: &RowStats) {
        self.heartbeat.beat();
        self.inner.committed(stream, stats);
    }
}

/// Delay before the next pass: the interval with jitter, or backoff after failures.
pub fn next_delay(interval: Duration, consecutive_failures: u32) -> Duration {
    let base = if consecutive_failures == 0 {
        interval
    } else {
        let factor = 2u32.saturating_pow(consecutive_failures.saturating_sub(1).min(16));
        interval
            .checked_mul(factor)
            .unwrap_or(MAX_FAILURE_BACKOFF)
            .min(MAX_FAILURE_BACKOFF.max(interval))
    };
    let jitter = rand::rng().random_range(-JITTER..=JITTER);
    base.mul_f64(1.0 + jitter)
}

/// Runs passes until `cancel` fires, and reconciliations when `reconciler` says they are due.
/// Returns the warehouse and the fatal error, if any.
pub async fn run<W: StreamWarehouse>(
    client: &ApiClient,
    mut wh: W,
    schedule: &Schedule,
    mut reconciler: Reconciler,
    cancel: &CancellationToken,
    hooks: Hooks,
) -> (W, Result<(), SyncError>) {
    let Hooks {
        heartbeat,
        progress,
        mut observe,
        mut reconciled,
    } = hooks;
    let progress: Arc<dyn Progress> = Arc::new(Beating {
        heartbeat: heartbeat.clone(),
        inner: progress,
    });
    let streams = &schedule.streams;
    let mut backoff = Backoff::default();
    let mut prune_at = tokio::time::Instant::now();
    loop {
        if cancel.is_cancelled() {
            return (wh, Ok(()));
        }
        if tokio::time::Instant::now() >= prune_at {
            heartbeat.beat();
            let (back, r) = retention::prune_runs(wh, schedule.keep_runs).await;
            wh = back;
            // Housekeeping: a failure is the next pass's to report if it persists.
            if let Err(e) = r {
                tracing::warn!(error = %e, "cannot forget old runs (sync.keep_runs); tried again later");
            }
            prune_at = tokio::time::Instant::now() + retention::PRUNE_EVERY;
        }
        let now = tokio::time::Instant::now();
        let due: Vec<Stream> = streams
            .iter()
            .copied()
            .filter(|s| backoff.may_run(*s, now))
            .collect();
        heartbeat.beat();
        let (back, outcomes) = tick::run_all(
            &due,
            RunKind::Incremental,
            client,
            wh,
            &schedule.options,
            cancel,
            &|_| progress.clone(),
            &mut |stream, result| {
                heartbeat.beat();
                match result {
                    Ok(report) => tick::log_pass(report),
                    Err(SyncError::Cancelled) => return,
                    Err(e) => tick::log_failure(
                        stream,
                        RunKind::Incremental,
                        e,
                        backoff.failures(stream) + 1,
                    ),
                }
                observe(
                    stream.name(),
                    &match result {
                        Ok(report) => Ok(report.clone()),
                        Err(e) => Err(e.to_string()),
                    },
                );
            },
        )
        .await;
        wh = back;
        let mut failed_now = Vec::new();
        let mut refused = None;
        for (stream, result) in outcomes {
            backoff.record(
                stream,
                &result,
                schedule.interval,
                tokio::time::Instant::now(),
            );
            match result {
                Err(SyncError::Cancelled) => return (wh, Ok(())),
                Err(e) => {
                    failed_now.push(stream);
                    if e.is_auth() && refused.is_none() {
                        refused = Some(e);
                    }
                }
                Ok(_) => {}
            }
        }
        // Only a token that may list none of the streams ends the daemon.
        if let Some(e) = refused
            && backoff.all_refused(streams)
        {
            return (wh, Err(e));
        }
        let normal = tokio::time::Instant::now() + next_delay(schedule.interval, 0);
        let deadline = backoff.next_tick(streams, normal);
        // A stream that failed waits out its backoff before it reconciles too.
        for stream in streams.iter().filter(|s| !failed_now.contains(s)) {
            if !backoff.may_run(*stream, tokio::time::Instant::now())
                || !reconciler.is_due(*stream, tokio::time::Instant::now())
            {
                continue;
            }
            heartbeat.beat();
            let (back, result) = stream
                .backfill_slice(
                    client,
                    wh,
                    &schedule.options,
                    cancel,
                    progress.clone(),
                    deadline,
                )
                .await;
            wh = back;
            heartbeat.beat();
            match result {
                Ok(report) => {
                    crate::reconcile::log_slice(&report);
                    reconciled(stream.name(), &report);
                    if report.backfill.is_some_and(|p| p.finished) {
                        reconciler.finished(*stream, tokio::time::Instant::now());
                        tracing::info!(
                            stream = stream.name(),
                            next_in_s = schedule.reconcile_every.as_secs(),
                            "reconciliation finished"
                        );
                    }
                }
                Err(SyncError::Cancelled) => return (wh, Ok(())),
                Err(e) => {
                    let failures = backoff.failures(*stream) + 1;
                    tracing::error!(
                        stream = stream.name(),
                        error = %e,
                        consecutive_failures = failures,
                        "reconciliation slice failed; it resumes where it stopped"
                    );
                    let r = Err(e);
                    backoff.record(*stream, &r, schedule.interval, tokio::time::Instant::now());
                    if let Err(e) = r
                        && backoff.all_refused(streams)
                    {
                        return (wh, Err(e));
                    }
                }
            }
        }
        heartbeat.beat_until(deadline);
        tokio::select! {
            _ = cancel.cancelled() => return (wh, Ok(())),
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Longest error text put in `STATUS=` (systemctl shows one line).
const STATUS_ERROR_CHARS: usize = 300;

/// `STATUS=` text after a pass of `stream`: its outcome, time and figures (shown by
/// `systemctl status`).
pub fn pass_status(stream: &str, r: &Result<PassReport, String>, now: DateTime<Utc>) -> String {
    let at = now.format("%Y-%m-%dT%H:%M:%SZ");
    match r {
        Ok(p) => format!(
            "last pass succeeded at {at} ({stream}): {} fetched, {} inserted, {} updated, {} deleted, {} quarantined; checkpoint {}",
            p.stats.fetched,
            p.stats.inserted,
            p.stats.updated,
            p.stats.deleted,
            p.stats.quarantined,
            p.mark_after
        ),
        Err(e) => {
            let e: String = crate::text::one_line(e)
                .chars()
                .take(STATUS_ERROR_CHARS)
                .collect();
            format!("last pass failed at {at} ({stream}): {e}; retrying with backoff")
        }
    }
}

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "cannot listen on metrics.listen {addr}: {reason}; fix: choose a free address:port, or leave metrics.listen out"
    )]
    MetricsListen { addr: SocketAddr, reason: String },
    #[error(transparent)]
    Sync(#[from] SyncError),
}

/// The daemon with its service plumbing: metrics endpoint, request observer, systemd
/// readiness, per-pass status and watchdog. Returns when `cancel` fires (Ok) or on an error
/// no later pass can fix.
pub async fn serve(
    cfg: &Config,
    mut client: ApiClient,
    wh: impl StreamWarehouse,
    schedule: &Schedule,
    cancel: &CancellationToken,
) -> Result<(), DaemonError> {
    let notifier = Notifier::from_env();
    let heartbeat = Heartbeat::new();
    // What the warehouse holds at start: each stream's lag and last success for the metrics
    // before its first pass ends, and when its reconciliation is due.
    let wh_cfg = cfg.warehouse.clone();
    let read = tokio::task::spawn_blocking(move || {
        crate::warehouse::open_reader(&wh_cfg).and_then(|mut r| status::read(r.as_mut()))
    })
    .await;
    let report = match read {
        Ok(Ok(report)) => Some(report),
        // The first passes set the gauges anyway; the pass itself reports a real fault.
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the warehouse's history; the reconciliation schedule counts from now");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "warehouse reading task failed; the reconciliation schedule counts from now");
            None
        }
    };
    let reconciler = Reconciler::new(schedule.reconcile_every, report.as_ref(), &schedule.streams);
    reconciler.log_schedule();
    let metrics = match cfg.metrics.listen {
        None => None,
        Some(addr) => {
            let listener = metrics::bind(addr)
                .await
                .map_err(|e| DaemonError::MetricsListen {
                    addr,
                    reason: e.to_string(),
                })?;
            let m = Arc::new(Metrics::for_streams(&schedule.streams));
            m.watch_rate_limit(client.limiter());
            for s in report.iter().flat_map(|r| &r.streams) {
                m.seed(
                    s.stream,
                    s.newest_modified_date.as_deref(),
                    s.last_success_at.as_deref(),
                );
                m.seed_reconcile(
                    s.stream,
                    s.backfill_in_progress
                        .as_ref()
                        .map(|b| (b.ranges_done, b.ranges)),
                    s.last_backfill_at.as_deref(),
                );
            }
            tracing::info!(listen = %addr, "serving Prometheus metrics at /metrics");
            tokio::spawn(metrics::serve(listener, m.clone(), cancel.clone()));
            Some(m)
        }
    };
    {
        // Every finished HTTP attempt shows the loop is alive, even during a long retry run.
        let hb = heartbeat.clone();
        let m = metrics.clone();
        client.set_observer(Arc::new(move |status, elapsed| {
            hb.beat();
            if let Some(m) = &m {
                m.observe_request(status, elapsed);
            }
        }));
    }
    let observe: PassObserver = {
        let notifier = notifier.clone();
        let metrics = metrics.clone();
        Box::new(move |stream, r| {
            if let Some(m) = &metrics {
                m.observe_pass(stream, r);
            }
            notifier.status(&pass_status(stream, r, Utc::now()));
        })
    };
    let reconciled: ReconcileObserver = {
        let metrics = metrics.clone();
        Box::new(move |stream, r| {
            if let (Some(m), Some(p)) = (&metrics, &r.backfill) {
                m.observe_reconcile(stream, r.pages, p);
            }
        })
    };
    let progress: Arc<dyn Progress> = match &metrics {
        Some(m) => m.clone(),
        None => Arc::new(NoProgress),
    };
    notifier.ready("started; first pass running");
    let watchdog_stop = CancellationToken::new();
    if notifier.is_enabled()
        && let Some(timeout) = notify::watchdog_timeout()
    {
        tracing::info!(
            timeout_ms = timeout.as_millis() as u64,
            "feeding the systemd watchdog while the sync loop is alive"
        );
        let n = notifier.clone();
        tokio::spawn(notify::run_watchdog(
            timeout,
            heartbeat.clone(),
            watchdog_stop.clone(),
            move || n.watchdog(),
        ));
    }
    let (_wh, r) = run(
        &client,
        wh,
        schedule,
        reconciler,
        cancel,
        Hooks {
            heartbeat,
            progress,
            observe,
            reconciled,
        },
    )
    .await;
    watchdog_stop.cancel();
    match &r {
        Ok(()) => notifier.stopping("stopping on request"),
        Err(e) => notifier.stopping(&format!(
            "stopping: {}",
            crate::text::one_line(&e.to_string())
        )),
    }
    r?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT cancel the token. Later signals are ignored: the stop is prompt anyway
/// (the fetch side selects on the token, so at most the commit in flight finishes).
pub fn spawn_signal_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        tracing::info!("signal received, stopping after the current page");
        cancel.cancel();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_has_jitter_and_backs_off_with_a_cap() {
        let i = Duration::from_secs(60);
        for _ in 0..100 {
            let d = next_delay(i, 0);
            assert!(
                d >= Duration::from_secs(54) && d <= Duration::from_secs(66),
                "{d:?}"
            );
        }
        assert!(next_delay(i, 3) >= Duration::from_secs(216));
        assert!(next_delay(i, 30) <= MAX_FAILURE_BACKOFF.mul_f64(1.0 + JITTER));
    }

    #[test]
    fn status_line_has_outcome_and_figures_on_one_line() {
        use crate::warehouse::{Confirmed, Mark};
        let now = chrono::DateTime::parse_from_rfc3339("2024-03-01T09:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("valid time");
        let ok = Ok(PassReport {
            stream: "customers",
            kind: RunKind::Incremental,
            run_id: 3,
            requests: 2,
            pages: 2,
            stats: RowStats {
                fetched: 150,
                inserted: 100,
                updated: 50,
                ..RowStats::default()
            },
            mark_before: Mark::Start,
            mark_after: Mark::at("2024-03-01T08:59:00.000000Z", Confirmed::UpToId(77)),
            elapsed: Duration::from_millis(10),
            backfill: None,
        });
        assert_eq!(
            pass_status("customers", &ok, now),
            "last pass succeeded at 2024-03-01T09:00:00Z (customers): 150 fetched, 100 inserted, 50 updated, 0 deleted, 0 quarantined; checkpoint 2024-03-01T08:59:00.000000Z (ids up to 77 at this instant stored; higher ids read next pass)"
        );
        let long = format!("HTTP 502\n{}", "x".repeat(1000));
        let s = pass_status("customers", &Err(long), now);
        assert!(s.starts_with("last pass failed at 2024-03-01T09:00:00Z (customers): HTTP 502 xx"));
        assert!(!s.contains('\n'));
        assert!(s.len() < 400, "{}", s.len());
    }
}
