//! systemd integration for `Type=notify` units: `READY=1` once started, `STATUS=` after each
//! pass, `STOPPING=1` on the way out, and `WATCHDOG=1` pings.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing.
//!
//! The watchdog must only be fed while the sync loop is healthy, otherwise `WatchdogSec=` is
//! useless: the loop (and a pass as it makes progress) updates a [`Heartbeat`], and
//! [`run_watchdog`] pings at half the watchdog interval only while the heartbeat is younger
//! than the interval. A pass that keeps committing pages or finishing HTTP attempts stays
//! fresh however long it runs; a wedged loop goes stale and systemd restarts the service.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Sends sd_notify messages when running under systemd.
#[derive(Debug, Clone)]
pub struct Notifier {
    enabled: bool,
}

impl Notifier {
    /// Enabled when `NOTIFY_SOCKET` is set (systemd sets it for `Type=notify` units).
    pub fn from_env() -> Self {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    pub fn stopping(&self, status: &str) {
        self.send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }

    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        // `false`: never unset the environment (unsound with other threads running, and the
        // pinger needs NOTIFY_SOCKET for the life of the process).
        if let Err(e) = sd_notify::notify(false, states) {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }
}

/// The watchdog timeout systemd asks for, following `sd_watchdog_enabled(3)`: `WATCHDOG_USEC`
/// set and positive, and `WATCHDOG_PID`, when set, naming this process.
pub fn watchdog_timeout() -> Option<Duration> {
    parse_watchdog(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// [`watchdog_timeout`] with the environment passed in.
pub fn parse_watchdog(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(me)
    {
        return None;
    }
    Some(Duration::from_micros(usec))
}

/// When the sync loop last showed it is alive. Cheap to clone and to beat from any thread.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    origin: Instant,
    /// Milliseconds after `origin`; may lie in the future while the loop sleeps on purpose.
    last_ms: Arc<AtomicU64>,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

impl Heartbeat {
    pub fn new() -> Self {
        Heartbeat {
            origin: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    /// The loop is alive now.
    pub fn beat(&self) {
        self.last_ms
            .fetch_max(self.ms(Instant::now()), Ordering::Relaxed);
    }

    /// The loop sleeps on purpose until `deadline`: count it as alive until then, so long
    /// waits between passes (or failure backoff) need no extra wake-ups.
    pub fn beat_until(&self, deadline: Instant) {
        self.last_ms.fetch_max(self.ms(deadline), Ordering::Relaxed);
    }

    /// Time since the last beat (zero while a `beat_until` deadline is ahead).
    pub fn age(&self) -> Duration {
        let now = self.ms(Instant::now());
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Calls `ping` every `timeout / 2` while the heartbeat is younger than `timeout`, until
/// `cancel` fires. Logs once when it stops feeding the watchdog, and once when it resumes.
pub async fn run_watchdog(
    timeout: Duration,
    heartbeat: Heartbeat,
    cancel: CancellationToken,
    mut ping: impl FnMut(),
) {
    let mut tick = tokio::time::interval((timeout / 2).max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut starving = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let age = heartbeat.age();
        if age < timeout {
            if starving {
                tracing::info!("the sync loop is alive again; feeding the watchdog");
                starving = false;
            }
            ping();
        } else if !starving {
            starving = true;
            tracing::error!(
                idle_ms = age.as_millis() as u64,
                watchdog_ms = timeout.as_millis() as u64,
                "the sync loop shows no progress; no longer feeding the watchdog, systemd will restart the service"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn watchdog_env_follows_sd_watchdog_enabled() {
        assert_eq!(
            parse_watchdog(Some("2000000"), None, 7),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_watchdog(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(2))
        );
        // Meant for another process (inherited environment): not ours to feed.
        assert_eq!(parse_watchdog(Some("2000000"), Some("8"), 7), None);
        assert_eq!(parse_watchdog(Some("0"), None, 7), None);
        assert_eq!(parse_watchdog(Some("soon"), None, 7), None);
        assert_eq!(parse_watchdog(None, Some("7"), 7), None);
    }

    /// Counts pings in each window of paused time.
    async fn pings_during(count: &Arc<AtomicUsize>, d: Duration, during: impl FnOnce()) -> usize {
        let before = count.load(Ordering::SeqCst);
        during();
        tokio::time::sleep(d).await;
        count.load(Ordering::SeqCst) - before
    }

    #[tokio::test(start_paused = true)]
    async fn pings_only_while_the_heartbeat_is_fresh() {
        let timeout = Duration::from_secs(10);
        let hb = Heartbeat::new();
        hb.beat();
        let count = Arc::new(AtomicUsize::new(0));
        let cancel = CancellationToken::new();
        let c = count.clone();
        let task = tokio::spawn(run_watchdog(
            timeout,
            hb.clone(),
            cancel.clone(),
            move || {
                c.fetch_add(1, Ordering::SeqCst);
            },
        ));
        // Fresh: a ping every 5 s (the first tick is immediate).
        let n = pings_during(&count, Duration::from_millis(9_900), || {}).await;
        assert_eq!(n, 2);
        // No beat for more than the timeout: the pinger goes quiet.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let n = pings_during(&count, Duration::from_secs(60), || {}).await;
        assert_eq!(n, 0, "a wedged loop must starve the watchdog");
        // A long pass that keeps beating keeps the pings coming.
        let mut n = 0;
        for _ in 0..12 {
            n += pings_during(&count, Duration::from_secs(5), || hb.beat()).await;
        }
        assert!(n >= 11, "{n} pings in 60 s of progress");
        // Sleeping on purpose until a deadline counts as alive until that deadline.
        hb.beat_until(Instant::now() + Duration::from_secs(120));
        let n = pings_during(&count, Duration::from_secs(100), || {}).await;
        assert!(n >= 19, "{n} pings while sleeping between passes");
        cancel.cancel();
        task.await.expect("watchdog task ends");
    }
}
