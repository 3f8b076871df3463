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
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} backfill [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} rows {per_sec} ETA {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        let now = Instant::now();
        BackfillProgress {
            bar,
            state: Mutex::new(LogState {
                started: now,
                last_log: now,
                done: 0,
                total: 0,
            }),
        }
    }
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

    fn committed(&self, stats: &RowStats) {
        if let Some(bar) = &self.bar {
            bar.inc(stats.fetched);
            return;
        }
        let Ok(mut s) = self.state.lock() else { return };
        s.done += stats.fetched;
        if s.last_log.elapsed() >= LOG_EVERY {
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
