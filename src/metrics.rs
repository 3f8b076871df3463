//! Optional Prometheus endpoint (`metrics.listen`): `GET /metrics` in the OpenMetrics text
//! format. Off by default; only the daemon serves it.
//!
//! Metrics (prefix `oms_sync_`):
//! - `passes_total{stream, outcome="succeeded"|"failed"}`: finished incremental passes.
//! - `rows_total{stream, kind="fetched"|"inserted"|"updated"|"unchanged"|"deleted"|"quarantined"}`:
//!   rows of committed pages (counted per commit, so a pass that fails later still counts what
//!   it stored).
//! - `request_duration_seconds`: histogram of HTTP attempts to the OMS (retries included).
//! - `request_errors_total{status="500"|...|"transport"}`: attempts that did not get a 2xx
//!   (the usual statuses are present at zero from the start).
//! - `last_success_timestamp_seconds{stream}`: Unix time the stream's last successful pass
//!   ended (0: none yet).
//! - `lag_seconds{stream}`: now minus the newest `modified_date` of the stream's table,
//!   computed at scrape time (absent until that table holds a row).
//! - `rate_limit_requests_per_second`: the client's request-rate limit in force (the
//!   configured `api.max_requests_per_second`, or lower after a 429), read at scrape time
//!   (absent while unlimited).
//! - `reconcile_ranges_done{stream}`, `reconcile_ranges{stream}`: the id ranges of the
//!   stream's current (or last) reconciliation walked to their end, and all its ranges.
//! - `reconcile_pages_total{stream}`: pages the daemon's reconciliation slices committed.
//! - `last_reconcile_timestamp_seconds{stream}`: Unix time the stream's last backfill
//!   finished (0: none known).
//!
//! Every enabled stream has its own series wherever a figure is per stream, so a
//! stalled stream shows beside a healthy one. Request metrics are the client's: all streams
//! share one client and one rate limiter.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tokio_util::sync::CancellationToken;

use crate::api::RateLimiter;
use crate::stream::Stream;
use crate::sync::{PassReport, Progress, RangeProgress};
use crate::timefmt;
use crate::warehouse::RowStats;

/// What Prometheus expects for the format `prometheus_client` writes.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    stream: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    stream: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

/// The newest stored `modified_date` per stream, shared with the scrape-time lag collector.
#[derive(Debug, Default)]
struct Newest(Mutex<BTreeMap<&'static str, DateTime<Utc>>>);

impl Newest {
    #[cfg(test)]
    fn get(&self, stream: &str) -> Option<DateTime<Utc>> {
        self.0.lock().ok()?.get(stream).copied()
    }
}

impl Collector for Newest {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let newest = self.0.lock().map(|g| g.clone()).unwrap_or_default();
        // No descriptor either while no stream holds a row: an absent series, not a made-up 0.
        if newest.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let mut m = encoder.encode_descriptor(
            "lag",
            "Now minus the newest modified_date stored in the stream's table.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (stream, t) in newest {
            let lag = (now - t).num_milliseconds() as f64 / 1000.0;
            ConstGauge::new(lag).encode(m.encode_family(&StreamLabels { stream })?)?;
        }
        Ok(())
    }
}

/// The rate limit in force, read from the client's limiter at scrape time.
#[derive(Debug, Default)]
struct RateLimit(Mutex<Option<Arc<RateLimiter>>>);

impl Collector for RateLimit {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let limiter = self.0.lock().ok().and_then(|g| g.clone());
        let Some(rate) = limiter.and_then(|l| l.current_rate()) else {
            return Ok(());
        };
        let gauge = ConstGauge::new(rate);
        let m = encoder.encode_descriptor(
            "rate_limit_requests_per_second",
            "Request-rate limit in force: api.max_requests_per_second, or lower after a 429 (absent: unlimited)",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(m)
    }
}

/// The daemon's metrics; cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    passes: Family<OutcomeLabels, Counter>,
    rows: Family<KindLabels, Counter>,
    request_duration: Histogram,
    request_errors: Family<StatusLabels, Counter>,
    last_success: Family<StreamLabels, Gauge<f64, AtomicU64>>,
    newest: Arc<Newest>,
    rate_limit: Arc<RateLimit>,
    reconcile_done: Family<StreamLabels, Gauge>,
    reconcile_ranges: Family<StreamLabels, Gauge>,
    reconcile_pages: Family<StreamLabels, Counter>,
    last_reconcile: Family<StreamLabels, Gauge<f64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Metrics with the series of the default streams made visible from the start.
    pub fn new() -> Self {
        Self::for_streams(Stream::DEFAULT)
    }

    /// Metrics with every per-stream series of `streams` made visible from the start.
    pub fn for_streams(streams: &[Stream]) -> Self {
        let mut registry = Registry::with_prefix("oms_sync");
        let passes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "passes",
            "Finished incremental passes by outcome",
            passes.clone(),
        );
        let rows = Family::<KindLabels, Counter>::default();
        registry.register("rows", "Rows of committed pages by kind", rows.clone());
        // 10 ms .. ~41 s: covers a fast page up to a slow one near the default 30 s timeout.
        let request_duration = Histogram::new(exponential_buckets(0.01, 2.0, 13));
        registry.register_with_unit(
            "request_duration",
            "Duration of HTTP attempts to the OMS API, retries included",
            Unit::Seconds,
            request_duration.clone(),
        );
        let request_errors = Family::<StatusLabels, Counter>::default();
        registry.register(
            "request_errors",
            "HTTP attempts without a 2xx answer, by status (\"transport\": no answer)",
            request_errors.clone(),
        );
        let last_success = Family::<StreamLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time the stream's last successful pass ended (0: none since start and none stored)",
            last_success.clone(),
        );
        let newest = Arc::new(Newest::default());
        registry.register_collector(Box::new(newest.clone()));
        let rate_limit = Arc::new(RateLimit::default());
        registry.register_collector(Box::new(rate_limit.clone()));
        let reconcile_done = Family::<StreamLabels, Gauge>::default();
        registry.register(
            "reconcile_ranges_done",
            "Id ranges of the stream's current (or last) reconciliation walked to their end",
            reconcile_done.clone(),
        );
        let reconcile_ranges = Family::<StreamLabels, Gauge>::default();
        registry.register(
            "reconcile_ranges",
            "Id ranges of the stream's current (or last) reconciliation",
            reconcile_ranges.clone(),
        );
        let reconcile_pages = Family::<StreamLabels, Counter>::default();
        registry.register(
            "reconcile_pages",
            "Pages committed by the daemon's reconciliation slices",
            reconcile_pages.clone(),
        );
        let last_reconcile = Family::<StreamLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "last_reconcile_timestamp_seconds",
            "Unix time the stream's last backfill (reconciliation) finished (0: none known)",
            last_reconcile.clone(),
        );
        // Make both outcomes visible from the start, so `rate()` and alerts see a zero; and
        // each stream's last success, so a stream that never succeeds reads as 0, not absent.
        for stream in streams.iter().map(|s| s.name()) {
            let _ = last_success.get_or_create(&StreamLabels { stream });
            let _ = reconcile_done.get_or_create(&StreamLabels { stream });
            let _ = reconcile_ranges.get_or_create(&StreamLabels { stream });
            let _ = reconcile_pages.get_or_create(&StreamLabels { stream });
            let _ = last_reconcile.get_or_create(&StreamLabels { stream });
            for outcome in ["succeeded", "failed"] {
                let _ = passes.get_or_create(&OutcomeLabels { stream, outcome });
            }
            for kind in KINDS {
                let _ = rows.get_or_create(&KindLabels { stream, kind });
            }
        }
        // Likewise the usual error statuses: `increase()` over a series that appears only with
        // its first error misses that error, and alerts on it see nothing before.
        for status in PRESET_ERROR_STATUSES {
            let _ = request_errors.get_or_create(&StatusLabels {
                status: status.to_string(),
            });
        }
        Metrics {
            registry,
            passes,
            rows,
            request_duration,
            request_errors,
            last_success,
            newest,
            rate_limit,
            reconcile_done,
            reconcile_ranges,
            reconcile_pages,
            last_reconcile,
        }
    }

    /// Reports the limit of `limiter` (the client's) at each scrape.
    pub fn watch_rate_limit(&self, limiter: Arc<RateLimiter>) {
        if let Ok(mut g) = self.rate_limit.0.lock() {
            *g = Some(limiter);
        }
    }

    /// Seeds a stream's gauges from what the warehouse already holds (canonical timestamps).
    pub fn seed(
        &self,
        stream: &'static str,
        newest_modified: Option<&str>,
        last_success: Option<&str>,
    ) {
        if let Some(t) = newest_modified.and_then(timefmt::parse_api) {
            self.raise_newest(stream, t);
        }
        if let Some(t) = last_success.and_then(timefmt::parse_api) {
            self.last_success
                .get_or_create(&StreamLabels { stream })
                .set(t.timestamp_millis() as f64 / 1000.0);
        }
    }

    /// Seeds a stream's reconciliation gauges: the backfill in progress (ranges done, of all),
    /// and when the last one finished (canonical timestamp).
    pub fn seed_reconcile(
        &self,
        stream: &'static str,
        in_progress: Option<(usize, usize)>,
        last_finished: Option<&str>,
    ) {
        let labels = StreamLabels { stream };
        if let Some((done, ranges)) = in_progress {
            self.reconcile_done.get_or_create(&labels).set(done as i64);
            self.reconcile_ranges
                .get_or_create(&labels)
                .set(ranges as i64);
        }
        if let Some(t) = last_finished.and_then(timefmt::parse_api) {
            self.last_reconcile
                .get_or_create(&labels)
                .set(t.timestamp_millis() as f64 / 1000.0);
        }
    }

    /// A reconciliation slice of `stream` committed `pages` and left its ranges at `p`.
    pub fn observe_reconcile(&self, stream: &'static str, pages: u64, p: &RangeProgress) {
        let labels = StreamLabels { stream };
        self.reconcile_pages.get_or_create(&labels).inc_by(pages);
        self.reconcile_done
            .get_or_create(&labels)
            .set(p.ranges_done as i64);
        self.reconcile_ranges
            .get_or_create(&labels)
            .set(p.ranges as i64);
        if p.finished {
            self.last_reconcile
                .get_or_create(&labels)
                .set(Utc::now().timestamp_millis() as f64 / 1000.0);
        }
    }

    fn raise_newest(&self, stream: &'static str, t: DateTime<Utc>) {
        if let Ok(mut g) = self.newest.0.lock() {
            let cur = g.entry(stream).or_insert(t);
            if t > *cur {
                *cur = t;
            }
        }
    }

    /// One HTTP attempt: `status` None is a transport error (no answer).
    pub fn observe_request(&self, status: Option<u16>, elapsed: Duration) {
        self.request_duration.observe(elapsed.as_secs_f64());
        match status {
            Some(s) if (200..300).contains(&s) => {}
            Some(s) => {
                self.request_errors
                    .get_or_create(&StatusLabels {
                        status: s.to_string(),
                    })
                    .inc();
            }
            None => {
                self.request_errors
                    .get_or_create(&StatusLabels {
                        status: "transport".into(),
                    })
                    .inc();
            }
        }
    }

    /// A pass ended (the daemon's `PassObserver`).
    pub fn observe_pass(&self, stream: &'static str, result: &Result<PassReport, String>) {
        match result {
            Ok(report) => {
                self.passes
                    .get_or_create(&OutcomeLabels {
                        stream,
                        outcome: "succeeded",
                    })
                    .inc();
                self.last_success
                    .get_or_create(&StreamLabels { stream })
                    .set(Utc::now().timestamp_millis() as f64 / 1000.0);
                if let Some(t) = report
                    .mark_after
                    .modified_date()
                    .and_then(timefmt::parse_api)
                {
                    self.raise_newest(stream, t);
                }
            }
            Err(_) => {
                self.passes
                    .get_or_create(&OutcomeLabels {
                        stream,
                        outcome: "failed",
                    })
                    .inc();
            }
        }
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error here would be a bug in an encoder.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// `request_errors_total` series present (at zero) from the start; others appear when seen.
pub const PRESET_ERROR_STATUSES: [&str; 8] =
    ["401", "403", "429", "500", "502", "503", "504", "transport"];

const KINDS: [&str; 6] = [
    "fetched",
    "inserted",
    "updated",
    "unchanged",
    "deleted",
    "quarantined",
];

impl Progress for Metrics {
    fn committed(&self, stream: &'static str, s: &RowStats) {
        let values = [
            s.fetched,
            s.inserted,
            s.updated,
            s.unchanged,
            s.deleted,
            s.quarantined,
        ];
        for (kind, v) in KINDS.into_iter().zip(values) {
            if v > 0 {
                self.rows
                    .get_or_create(&KindLabels { stream, kind })
                    .inc_by(v);
            }
        }
    }
}

/// Binds the metrics address; a failure is the operator's to fix (address in use, no rights).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves `GET /metrics` until `cancel` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move { ([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], m.encode()).into_response() }
        }),
    );
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "metrics endpoint stopped");
    }
}

#[cfg(test)]
mod tests;
