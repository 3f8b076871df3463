//! The throttle and the latency of the fake: what stands between a request's arrival and the
//! application, as an API gateway and a remote network do. The throttle is DRF's
//! `SimpleRateThrottle` (`rest_framework/throttling.py`): a history of the arrival times of the
//! requests it let through; one arriving when the history holds `num_requests` within the
//! duration is refused (and not logged), and `wait()` is the remaining duration of the oldest
//! divided by the requests still available plus one (one whenever a request is refused), or
//! none when the history holds more than the limit (a limit lowered mid-window). A changed
//! limit keeps the history, as DRF's cache does. The latency is a fixed delay plus uniform
//! jitter, slept with tokio so that many requests wait at once.

use std::collections::VecDeque;
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use tokio::time::Instant;

use super::reply::{Reply, throttled, throttled_without_retry_after};
use super::server::State;

/// The span the throttle counts requests over (DRF's `rate = "N/second"`).
const WINDOW: Duration = Duration::from_secs(1);

/// At most `limit` requests in any [`WINDOW`].
#[derive(Debug)]
pub(super) struct Throttle {
    limit: u32,
    /// Arrival times of the requests let through within the last window, oldest first.
    history: VecDeque<Instant>,
}

impl Throttle {
    pub(super) fn new(limit: u32) -> Throttle {
        Throttle {
            limit,
            history: VecDeque::new(),
        }
    }

    /// A new rate for the same history (DRF reads the rate from the settings on each request
    /// and the history from the cache, which a changed setting does not clear).
    pub(super) fn set_limit(&mut self, limit: u32) {
        self.limit = limit;
    }

    /// Lets a request arriving at `now` through (`Ok`), or refuses it with DRF's `wait()`
    /// (`Err(Some(..))`, never zero; `Err(None)` when the history holds more than the limit).
    pub(super) fn admit(&mut self, now: Instant) -> Result<(), Option<Duration>> {
        while self
            .history
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= WINDOW)
        {
            self.history.pop_front();
        }
        if self.history.len() < self.limit as usize {
            self.history.push_back(now);
            return Ok(());
        }
        let remaining = match self.history.front() {
            Some(&oldest) => WINDOW.saturating_sub(now.saturating_duration_since(oldest)),
            None => WINDOW, // limit 0: nothing is ever let through
        };
        // DRF: `available_requests = num_requests - len(history) + 1`, no wait when <= 0.
        let available = i64::from(self.limit) - self.history.len() as i64 + 1;
        let Ok(available) = u32::try_from(available) else {
            return Err(None);
        };
        if available == 0 {
            return Err(None);
        }
        Err(Some((remaining / available).max(Duration::from_millis(1))))
    }
}

/// `Retry-After` in whole seconds, rounded up (DRF: `ceil(wait)`), at least 1.
pub(super) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// `latency` plus a uniform draw from `0..=jitter`.
pub(super) fn draw_latency(rng: &mut StdRng, latency: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return latency;
    }
    let max = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
    latency.saturating_add(Duration::from_nanos(rng.random_range(0..=max)))
}

impl State {
    /// This request's latency (see `Knobs::latency`).
    pub(super) fn latency(&mut self) -> Duration {
        let (latency, jitter) = (self.knobs.latency, self.knobs.latency_jitter);
        draw_latency(&mut self.jitter_rng, latency, jitter)
    }

    /// The throttle stage: `Some(429)` when a request arriving at `now` is over
    /// `Knobs::throttle_per_second`, `None` when it goes on. Counts both outcomes.
    pub(super) fn throttle(&mut self, now: Instant) -> Option<Reply> {
        let Some(limit) = self.knobs.throttle_per_second else {
            self.throttle = None;
            self.served += 1;
            return None;
        };
        let th = self.throttle.get_or_insert_with(|| Throttle::new(limit));
        th.set_limit(limit);
        match th.admit(now) {
            Ok(()) => {
                self.served += 1;
                None
            }
            Err(wait) => {
                self.throttled += 1;
                Some(match wait {
                    Some(wait) if self.knobs.throttle_retry_after => {
                        throttled(&retry_after_secs(wait).to_string())
                    }
                    _ => throttled_without_retry_after(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn at_most_limit_in_any_second() {
        let t0 = Instant::now();
        let mut th = Throttle::new(3);
        assert_eq!(th.admit(t0), Ok(()));
        assert_eq!(th.admit(t0 + ms(100)), Ok(()));
        assert_eq!(th.admit(t0 + ms(200)), Ok(()));
        // The 4th within the second waits until the first leaves the window.
        assert_eq!(th.admit(t0 + ms(300)), Err(Some(ms(700))));
        assert_eq!(th.admit(t0 + ms(999)), Err(Some(ms(1))));
        assert_eq!(th.admit(t0 + ms(1000)), Ok(()));
        // Sliding, not fixed: the second and third still count at 1.05 s.
        assert_eq!(th.admit(t0 + ms(1050)), Err(Some(ms(50))));
        assert_eq!(th.admit(t0 + ms(1100)), Ok(()));
    }

    /// DRF keeps the history when the rate changes: a lowered limit refuses until the history
    /// has drained below it, with no wait while it holds more than the limit; a raised one
    /// lets the next requests through at once.
    #[test]
    fn a_changed_limit_keeps_the_history_as_drf_does() {
        let t0 = Instant::now();
        let mut th = Throttle::new(4);
        for i in 0..4 {
            assert_eq!(th.admit(t0 + ms(100 * i)), Ok(()));
        }
        th.set_limit(2);
        // 4 logged, limit 2: available = 2 - 4 + 1 < 1, DRF's wait() is None.
        assert_eq!(th.admit(t0 + ms(500)), Err(None));
        // At 1.15 s the first two have left: 2 logged, available 1, wait = the oldest's rest.
        assert_eq!(th.admit(t0 + ms(1150)), Err(Some(ms(50))));
        assert_eq!(th.admit(t0 + ms(1200)), Ok(()));
        th.set_limit(6);
        // 3 logged under a limit of 6: let through without waiting for the window.
        assert_eq!(th.admit(t0 + ms(1210)), Ok(()));
        assert_eq!(th.admit(t0 + ms(1220)), Ok(()));
    }

    #[test]
    fn limit_zero_refuses_everything() {
        let mut th = Throttle::new(0);
        assert_eq!(th.admit(Instant::now()), Err(Some(WINDOW)));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(ms(1)), 1);
        assert_eq!(retry_after_secs(ms(1000)), 1);
        assert_eq!(retry_after_secs(ms(1001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn latency_stays_within_the_jitter() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(draw_latency(&mut rng, ms(150), Duration::ZERO), ms(150));
        let draws: Vec<Duration> = (0..200)
            .map(|_| draw_latency(&mut rng, ms(150), ms(20)))
            .collect();
        assert!(draws.iter().all(|d| (ms(150)..=ms(170)).contains(d)));
        assert!(draws.iter().any(|d| *d != draws[0]), "jitter varies");
    }
}
