//! The exposition: series present from the start, per-stream labels, scrape-time gauges.

use super::*;
use crate::warehouse::{Confirmed, Mark, RunKind};

fn report(mark: &str) -> PassReport {
    PassReport {
        stream: "customers",
        kind: RunKind::Incremental,
        run_id: 1,
        requests: 1,
        pages: 1,
        stats: RowStats::default(),
        mark_before: Mark::Start,
        mark_after: Mark::at(mark, Confirmed::Nothing),
        elapsed: Duration::from_millis(5),
        backfill: None,
    }
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn exposition_carries_every_metric() {
    let m = Metrics::new();
    let text = m.encode();
    // Before anything happened: counters at zero, no lag yet, no success yet.
    assert_eq!(
        value(
            &text,
            "oms_sync_passes_total{stream=\"customers\",outcome=\"failed\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            "oms_sync_last_success_timestamp_seconds{stream=\"customers\"}"
        ),
        Some(0.0)
    );
    assert!(!text.contains("oms_sync_lag_seconds"), "{text}");
    assert!(!text.contains("oms_sync_rate_limit"), "unlimited: {text}");
    for status in PRESET_ERROR_STATUSES {
        let series = format!("oms_sync_request_errors_total{{status=\"{status}\"}}");
        assert_eq!(value(&text, &series), Some(0.0), "{series} in\n{text}");
    }

    m.observe_request(Some(200), Duration::from_millis(20));
    m.observe_request(Some(503), Duration::from_millis(20));
    m.observe_request(None, Duration::from_secs(1));
    m.committed(
        "customers",
        &RowStats {
            fetched: 5,
            inserted: 3,
            updated: 2,
            ..RowStats::default()
        },
    );
    m.observe_pass("customers", &Ok(report("2024-03-01T09:00:00.000000Z")));
    m.observe_pass("customers", &Err("boom".into()));
    let text = m.encode();
    let v = |s| value(&text, s).unwrap_or_else(|| panic!("{s} missing in\n{text}"));
    assert_eq!(
        v("oms_sync_passes_total{stream=\"customers\",outcome=\"succeeded\"}"),
        1.0
    );
    assert_eq!(
        v("oms_sync_passes_total{stream=\"customers\",outcome=\"failed\"}"),
        1.0
    );
    assert_eq!(
        v("oms_sync_rows_total{stream=\"customers\",kind=\"fetched\"}"),
        5.0
    );
    assert_eq!(
        v("oms_sync_rows_total{stream=\"customers\",kind=\"inserted\"}"),
        3.0
    );
    assert_eq!(
        v("oms_sync_rows_total{stream=\"customers\",kind=\"updated\"}"),
        2.0
    );
    assert_eq!(
        v("oms_sync_rows_total{stream=\"customers\",kind=\"deleted\"}"),
        0.0
    );
    assert_eq!(v("oms_sync_request_duration_seconds_count"), 3.0);
    assert_eq!(v("oms_sync_request_errors_total{status=\"503\"}"), 1.0);
    assert_eq!(
        v("oms_sync_request_errors_total{status=\"transport\"}"),
        1.0
    );
    assert!(!text.contains("status=\"200\""), "{text}");
    assert!(v("oms_sync_last_success_timestamp_seconds{stream=\"customers\"}") > 1.7e9);
    // The mark is from 2024: the lag is large and positive.
    assert!(v("oms_sync_lag_seconds{stream=\"customers\"}") > 86_400.0);
}

#[test]
fn newest_never_moves_back() {
    let m = Metrics::new();
    m.seed("customers", Some("2024-03-02T00:00:00.000000Z"), None);
    m.observe_pass("customers", &Ok(report("2024-03-01T00:00:00.000000Z")));
    let newest = m.newest.get("customers");
    assert_eq!(
        newest.map(|t| timefmt::canonical(&t)),
        Some("2024-03-02T00:00:00.000000Z".to_string())
    );
}

/// Two streams, one stalled: each has its own last success and lag, so the stalled one
/// is not hidden by the other (stream names here are labels only).
#[test]
fn last_success_and_lag_are_per_stream() {
    let m = Metrics::new();
    m.seed(
        "customers",
        Some("2024-03-01T00:00:00.000000Z"),
        Some("2024-03-01T00:05:00.000000Z"),
    );
    m.observe_pass("widgets", &Ok(report("2099-01-01T00:00:00.000000Z")));
    let text = m.encode();
    let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("{s} missing in\n{text}"));
    let stalled = v("oms_sync_last_success_timestamp_seconds{stream=\"customers\"}");
    assert_eq!(stalled, 1_709_251_500.0);
    assert!(v("oms_sync_last_success_timestamp_seconds{stream=\"widgets\"}") > stalled);
    assert!(v("oms_sync_lag_seconds{stream=\"customers\"}") > 86_400.0);
    assert!(v("oms_sync_lag_seconds{stream=\"widgets\"}") < 0.0);
    assert_eq!(
        text.matches("# TYPE oms_sync_lag_seconds").count(),
        1,
        "{text}"
    );
}

#[test]
fn rate_limit_is_the_limiters_at_scrape_time() {
    let m = Metrics::new();
    m.watch_rate_limit(Arc::new(RateLimiter::new(None)));
    assert!(!m.encode().contains("oms_sync_rate_limit"));
    m.watch_rate_limit(Arc::new(RateLimiter::new(Some(12.5))));
    let text = m.encode();
    assert_eq!(
        value(&text, "oms_sync_rate_limit_requests_per_second"),
        Some(12.5),
        "{text}"
    );
    assert!(text.contains("# TYPE oms_sync_rate_limit_requests_per_second gauge"));
}
