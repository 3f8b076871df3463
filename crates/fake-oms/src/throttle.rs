//! The throttle and the latency of the fake: what stands between a request's arrival and the
//! application, as an API gateway and a remote network do. The throttle is DRF's
//! `SimpleRateThrottle` (a sliding log: at most N requests in any one-second span, the rest get
//! 429 with the wait until the oldest logged request leaves the window); the latency is a fixed
//! delay plus uniform jitter, slept with tokio so that many requests wait at once.

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

    pub(super) fn limit(&self) -> u32 {
        self.limit
    }

    /// Lets a request arriving at `now` through (`Ok`), or says how long until one would be
    /// let through (`Err`, never zero).
    pub(super) fn admit(&mut self, now: Instant) -> Result<(), Duration> {
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
        let wait = match self.history.front() {
            Some(&oldest) => WINDOW.saturating_sub(now.saturating_duration_since(oldest)),
            None => WINDOW, // limit 0: nothing is ever let through
        };
        Err(wait.max(Duration::from_millis(1)))
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
        // A changed limit starts a fresh log, as a redeployed gateway would.
        let th = match &mut self.throttle {
            Some(th) if th.limit() == limit => th,
            slot => slot.insert(Throttle::new(limit)),
        };
        match th.admit(now) {
            Ok(()) => {
                self.served += 1;
                None
            }
            Err(wait) => {
                self.throttled += 1;
                Some(if self.knobs.throttle_retry_after {
                    throttled(&retry_after_secs(wait).to_string())
                } else {
                    throttled_without_retry_after()
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
        assert_eq!(th.admit(t0 + ms(300)), Err(ms(700)));
        assert_eq!(th.admit(t0 + ms(999)), Err(ms(1)));
        assert_eq!(th.admit(t0 + ms(1000)), Ok(()));
        // Sliding, not fixed: the second and third still count at 1.05 s.
        assert_eq!(th.admit(t0 + ms(1050)), Err(ms(50)));
        assert_eq!(th.admit(t0 + ms(1100)), Ok(()));
    }

    #[test]
    fn limit_zero_refuses_everything() {
        let mut th = Throttle::new(0);
        assert_eq!(th.admit(Instant::now()), Err(WINDOW));
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
