//! Backfill progress: a bar with rate and ETA on a terminal (indicatif), and a log line every
//! [`LOG_EVERY`] otherwise (systemd, pipes), so long runs never look hung.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::sync::Progress;
use crate::warehouse::RowStats;

pub const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct BackfillProgress {
    bar: Option<ProgressBar>,
    log_every: Duration,
    state: Mutex<LogState>,
}

struct LogState {
    started: Instant,
    last_log: Instant,
    done: u64,
    total: u64,
}

impl BackfillProgress {
    /// A bar when stderr is a terminal, log lines otherwise.
    pub fn new() -> Self {
        if std::io::stderr().is_terminal() {
            Self::bar()
        } else {
            Self::log_lines(LOG_EVERY)
        }
    }

    /// A log line at most every `every` (the first after `every` has passed).
    pub fn log_lines(every: Duration) -> Self {
        Self::with(None, every)
    }

    fn bar() -> Self {
        let bar = {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} backfill [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} rows {rate} ETA {eta}",
            ) {
                // indicatif's own {per_sec} shows four decimals ("3,773.8707/s").
                bar.set_style(style.with_key(
                    "rate",
                    |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&format_rate(s.per_sec()));
                    },
                ));
            }
            bar
        };
        Self::with(Some(bar), LOG_EVERY)
    }

    fn with(bar: Option<ProgressBar>, log_every: Duration) -> Self {
        let now = Instant::now();
        BackfillProgress {
            bar,
            log_every,
            state: Mutex::new(LogState {
                started: now,
                last_log: now,
                done: 0,
                total: 0,
            }),
        }
    }
}

/// Rows per second as a whole number with thousands separators: "3,774/s".
pub fn format_rate(per_sec: f64) -> String {
    let n = if per_sec.is_finite() && per_sec > 0.0 {
        per_sec.round() as u64
    } else {
        0
    };
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out.push_str("/s");
    out
}

impl Default for BackfillProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for BackfillProgress {
    fn add_total(&self, rows: u64) {
        if let Some(bar) = &self.bar {
            bar.inc_length(rows);
        }
        if let Ok(mut s) = self.state.lock() {
            s.total += rows;
        }
    }

    fn committed(&self, _stream: &'static str, stats: &RowStats) {
        if let Some(bar) = &self.bar {
            bar.inc(stats.fetched);
            return;
        }
        let Ok(mut s) = self.state.lock() else { return };
        s.done += stats.fetched;
        if s.last_log.elapsed() >= self.log_every {
            s.last_log = Instant::now();
            let secs = s.started.elapsed().as_secs_f64().max(0.001);
            let rate = s.done as f64 / secs;
            let eta = if rate > 0.0 && s.total > s.done {
                Duration::from_secs_f64((s.total - s.done) as f64 / rate)
            } else {
                Duration::ZERO
            };
            tracing::info!(
                rows = s.done,
                total = s.total,
                rows_per_sec = rate as u64,
                eta_secs = eta.as_secs(),
                "backfill progress"
            );
        }
    }
}

impl Drop for BackfillProgress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(b);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn rate_is_a_whole_number_with_separators() {
        assert_eq!(format_rate(3773.8707), "3,774/s");
        assert_eq!(format_rate(12.4), "12/s");
        assert_eq!(format_rate(1_234_567.0), "1,234,567/s");
        assert_eq!(format_rate(f64::NAN), "0/s");
    }

    #[test]
    fn without_a_terminal_progress_is_logged_with_rate_and_eta() {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let p = BackfillProgress::log_lines(Duration::from_millis(20));
            p.add_total(1000);
            let page = RowStats {
                fetched: 100,
                ..RowStats::default()
            };
            // Within the interval: nothing logged yet.
            p.committed("customers", &page);
            std::thread::sleep(Duration::from_millis(30));
            p.committed("customers", &page);
        });
        let text = String::from_utf8(buf.0.lock().map(|v| v.clone()).unwrap_or_default())
            .expect("utf-8 log");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line = lines[0];
        assert!(line.contains("backfill progress"), "{line}");
        assert!(line.contains("rows=200"), "{line}");
        assert!(line.contains("total=1000"), "{line}");
        assert!(line.contains("rows_per_sec="), "{line}");
        // 800 rows left at hundreds of rows per second or more: an ETA well under a minute.
        let eta: u64 = line
            .split("eta_secs=")
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no eta in {line}"));
        assert!(eta < 60, "{line}");
    }
}
