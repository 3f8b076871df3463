//! The client's shared request-rate limiter: every request of an [`ApiClient`](super::ApiClient)
//! (all backfill ranges and their retries) passes through one [`RateLimiter`]. It spaces
//! requests to `api.max_requests_per_second` when that is set, and it adapts to the server:
//! a 429 slows every range down together (to [`DECREASE`] × the rate the server was accepting
//! just before, and none before its `Retry-After`, or a second without one), and the limit
//! then recovers slowly ([`GROWTH_PER_SECOND`]) until the next 429. Without `max_requests_per_second` and before any
//! 429 it lets everything through. Time is `tokio::time`, so tests run it with paused time.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::MAX_RETRY_AFTER;

/// The span over which the rate the server accepts is measured (DRF throttles count per
/// second, minute, ...; a second is the shortest and the one that reacts fastest).
pub const WINDOW: Duration = Duration::from_secs(1);
/// After a 429 the limit becomes this fraction of the rate the server was accepting.
pub const DECREASE: f64 = 0.75;
/// Without a 429 the learnt limit grows by this factor per second: from 0.75·N back to N in
/// about 5 s, so a throttled client spends most of its time just under the server's limit.
pub const GROWTH_PER_SECOND: f64 = 1.06;
/// How long every request waits after a 429 without `Retry-After`.
pub const PAUSE_WITHOUT_RETRY_AFTER: Duration = WINDOW;
/// The learnt limit never goes below this many requests per second (Retry-After still can).
pub const MIN_RATE: f64 = 1.0;
/// A learnt limit that grew past this is dropped: the server has stopped throttling.
const FORGET_ABOVE: f64 = 100_000.0;
/// Bounds the memory of served-request times at very high request rates.
const MAX_HISTORY: usize = 4096;

/// What the server said to a request let through by [`RateLimiter::acquire`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// A 2xx answer.
    Served,
    /// A 429, with its `Retry-After` when it had one.
    Throttled { retry_after: Option<Duration> },
}

/// When a request was let go; a 429 to a request sent before the last slow-down is the same
/// storm answering late, not news.
#[derive(Debug, Clone, Copy)]
pub struct Permit {
    sent_at: Instant,
}

#[derive(Debug)]
struct State {
    /// `api.max_requests_per_second`.
    cap: Option<f64>,
    /// The limit learnt from the last 429: the rate set then, and when (it grows from there).
    learnt: Option<(f64, Instant)>,
    /// Earliest start of the next request.
    next: Instant,
    /// No request starts before this (the longest `Retry-After` heard).
    blocked_until: Instant,
    /// Bumped at each slow-down, so requests queued under the old limit queue again.
    epoch: u64,
    last_decrease: Option<Instant>,
    /// Times of 2xx answers within the last [`WINDOW`], oldest first.
    served: VecDeque<Instant>,
}

impl State {
    /// The limit in force at `now` (requests/s); None = unlimited.
    fn rate(&mut self, now: Instant) -> Option<f64> {
        if let Some((r, since)) = self.learnt {
            let grown = r * GROWTH_PER_SECOND.powf((now - since).as_secs_f64());
            if grown > FORGET_ABOVE || !grown.is_finite() {
                self.learnt = None;
            } else {
                return Some(self.cap.map_or(grown, |c| c.min(grown)));
            }
        }
        self.cap
    }

    fn prune(&mut self, now: Instant) {
        while self
            .served
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= WINDOW)
        {
            self.served.pop_front();
        }
    }

    /// The rate of 2xx answers over the last window. Over a whole window even when the
    /// client started within it: a burst at the start of a pass must not read as the rate
    /// the server sustains (that over-estimate would cost a second storm).
    fn served_rate(&mut self, now: Instant) -> Option<f64> {
        self.prune(now);
        if self.served.is_empty() {
            return None;
        }
        let span = if self.served.len() >= MAX_HISTORY {
            self.served.front().map_or(WINDOW, |&t| now - t)
        } else {
            WINDOW
        };
        let span = span.max(Duration::from_millis(1));
        Some(self.served.len() as f64 / span.as_secs_f64())
    }
}

/// Spacing between request starts at `rate` requests/s.
fn interval(rate: f64) -> Duration {
    Duration::try_from_secs_f64(1.0 / rate).unwrap_or(MAX_RETRY_AFTER)
}

/// See the module documentation.
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<State>,
}

impl RateLimiter {
    /// `cap`: `api.max_requests_per_second` (validated positive and finite), if set.
    pub fn new(cap: Option<f64>) -> Self {
        let now = Instant::now();
        RateLimiter {
            state: Mutex::new(State {
                cap,
                learnt: None,
                next: now,
                blocked_until: now,
                epoch: 0,
                last_decrease: None,
                served: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every await-free step; a panic elsewhere cannot
        // leave it half-written, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for this request's turn.
    pub async fn acquire(&self) -> Permit {
        loop {
            let (slot, epoch) = {
                let mut st = self.lock();
                let now = Instant::now();
                let slot = now.max(st.next).max(st.blocked_until);
                if let Some(r) = st.rate(now) {
                    st.next = slot + interval(r);
                }
                (slot, st.epoch)
            };
            // Sleeping until a time already reached still waits for the timer's next tick
            // (about a millisecond): a request that may go now must not sleep at all.
            if slot > Instant::now() {
                tokio::time::sleep_until(slot).await;
            }
            // A slow-down decided while this request waited: queue again under the new limit,
            // so a 429 storm is not followed by the requests already lined up.
            if self.lock().epoch == epoch {
                return Permit {
                    sent_at: Instant::now(),
                };
            }
        }
    }

    /// Tells the limiter how the server answered a request it let through.
    pub fn observe(&self, permit: Permit, outcome: Outcome) {
        let mut st = self.lock();
        let now = Instant::now();
        match outcome {
            Outcome::Served => {
                st.served.push_back(now);
                if st.served.len() > MAX_HISTORY {
                    st.served.pop_front();
                }
                st.prune(now);
            }
            Outcome::Throttled { retry_after } => {
                // A 429 that does not say how long to wait pauses everyone for a window: the
                // server's count has to drain before anything gets through, and requests sent
                // into it would each be refused and cut the limit again.
                let pause = match retry_after {
                    Some(ra) if ra <= MAX_RETRY_AFTER => ra,
                    Some(_) => Duration::ZERO,
                    None => PAUSE_WITHOUT_RETRY_AFTER,
                };
                st.blocked_until = st.blocked_until.max(now + pause);
                if st.last_decrease.is_some_and(|t| permit.sent_at < t) {
                    return;
                }
                let current = st.rate(now);
                let accepted = st.served_rate(now);
                // Nothing to go by (a first request refused): Retry-After and the backoff
                // still apply, but no rate is made up.
                let base = match (current, accepted) {
                    (Some(c), Some(a)) => c.min(a),
                    (Some(r), None) | (None, Some(r)) => r,
                    (None, None) => return,
                };
                let rate = (base * DECREASE).max(MIN_RATE);
                st.learnt = Some((rate, now));
                st.epoch += 1;
                st.last_decrease = Some(now);
                st.next = st.next.max(now + interval(rate));
            }
        }
    }

    /// The limit in force now (requests/s), None when unlimited.
    pub fn current_rate(&self) -> Option<f64> {
        self.lock().rate(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A server allowing `limit` requests in any second (a sliding log, as DRF and the fake
    /// OMS do) answering after `latency`; `tasks` workers send `requests` requests in all
    /// through one limiter. Returns (virtual seconds taken, 429s).
    async fn drive(
        limiter: Arc<RateLimiter>,
        limit: usize,
        tasks: usize,
        requests: usize,
        latency: Duration,
        retry_after: bool,
    ) -> (f64, usize) {
        let log = Arc::new(Mutex::new((VecDeque::<Instant>::new(), 0usize, 0usize)));
        let started = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..tasks {
            let (limiter, log) = (limiter.clone(), log.clone());
            handles.push(tokio::spawn(async move {
                loop {
                    let permit = limiter.acquire().await;
                    let now = Instant::now();
                    let verdict = {
                        let mut l = log.lock().unwrap();
                        if l.1 >= requests {
                            return;
                        }
                        while l.0.front().is_some_and(|&t| now - t >= WINDOW) {
                            l.0.pop_front();
                        }
                        if l.0.len() < limit {
                            l.0.push_back(now);
                            l.1 += 1;
                            None
                        } else {
                            l.2 += 1;
                            Some(WINDOW - (now - l.0[0]))
                        }
                    };
                    tokio::time::sleep(latency).await;
                    match verdict {
                        None => limiter.observe(permit, Outcome::Served),
                        Some(wait) => {
                            let ra = retry_after.then(|| Duration::from_secs(wait.as_secs() + 1));
                            limiter.observe(permit, Outcome::Throttled { retry_after: ra });
                            // The request's own backoff before its retry.
                            tokio::time::sleep(ra.unwrap_or(ms(500))).await;
                        }
                    }
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let throttled = log.lock().unwrap().2;
        (started.elapsed().as_secs_f64(), throttled)
    }

    #[tokio::test(start_paused = true)]
    async fn settles_near_the_servers_limit_with_and_without_retry_after() {
        for retry_after in [true, false] {
            let limiter = Arc::new(RateLimiter::new(None));
            let (secs, throttled) = drive(limiter, 20, 16, 2000, ms(50), retry_after).await;
            let rate = 2000.0 / secs;
            eprintln!("retry_after {retry_after}: {rate:.1}/s, {throttled} refused");
            assert!(
                (0.6 * 20.0..=20.0).contains(&rate),
                "retry_after {retry_after}: {rate:.1} requests/s against a limit of 20"
            );
            // Unlimited, 16 workers at 50 ms would be refused ~300 times a second.
            assert!(
                throttled < 2000 / 10,
                "retry_after {retry_after}: {throttled} requests refused"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_storm_slows_down_once_and_waits_for_retry_after() {
        let limiter = RateLimiter::new(None);
        // Past the limiter's first second: rates are measured over a whole window.
        tokio::time::advance(Duration::from_secs(2)).await;
        let sent: Vec<Permit> = vec![limiter.acquire().await; 8];
        for _ in 0..10 {
            limiter.observe(limiter.acquire().await, Outcome::Served);
        }
        tokio::time::advance(ms(100)).await;
        // Eight requests in flight all come back 429: one slow-down, to 0.75 of the 10/s
        // that was being accepted.
        for p in sent {
            limiter.observe(
                p,
                Outcome::Throttled {
                    retry_after: Some(Duration::from_secs(2)),
                },
            );
        }
        let rate = limiter.current_rate().unwrap();
        assert!((rate - 7.5).abs() < 0.01, "{rate}");
        // Nothing starts before Retry-After; then requests are spaced by the new limit.
        let t = Instant::now();
        limiter.acquire().await;
        assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
        let t = Instant::now();
        limiter.acquire().await;
        assert!(t.elapsed() >= ms(110), "{:?}", t.elapsed());
    }

    /// Real time: an unlimited limiter costs a lock, not a timer tick per request.
    #[tokio::test]
    async fn no_limit_means_no_wait() {
        use futures_util::FutureExt;
        let limiter = RateLimiter::new(None);
        // Ready on the first poll: no trip through the timer (which costs a tick, ~1 ms).
        for i in 0..1000 {
            let permit = limiter
                .acquire()
                .now_or_never()
                .unwrap_or_else(|| panic!("request {i} had to wait without a limit"));
            limiter.observe(permit, Outcome::Served);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn recovers_slowly_and_forgets_eventually() {
        let limiter = RateLimiter::new(None);
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..40 {
            limiter.observe(limiter.acquire().await, Outcome::Served);
        }
        tokio::time::advance(ms(500)).await;
        let p = limiter.acquire().await;
        limiter.observe(p, Outcome::Throttled { retry_after: None });
        let r0 = limiter.current_rate().unwrap();
        assert!((r0 - 30.0).abs() < 0.01, "{r0}");
        tokio::time::advance(Duration::from_secs(1)).await;
        let r1 = limiter.current_rate().unwrap();
        assert!(r1 > r0 && r1 < r0 * 1.1, "{r0} -> {r1} in a second");
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(limiter.current_rate(), None, "recovered fully");
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_refusal_makes_up_no_rate_and_the_cap_holds() {
        let limiter = RateLimiter::new(None);
        let p = limiter.acquire().await;
        limiter.observe(p, Outcome::Throttled { retry_after: None });
        assert_eq!(limiter.current_rate(), None);

        let limiter = RateLimiter::new(Some(4.0));
        let t = Instant::now();
        for _ in 0..5 {
            limiter.observe(limiter.acquire().await, Outcome::Served);
        }
        assert_eq!(
            t.elapsed(),
            Duration::from_secs(1),
            "4/s: 5 starts span 1 s"
        );
        let p = limiter.acquire().await;
        limiter.observe(p, Outcome::Throttled { retry_after: None });
        let slowed = limiter.current_rate().unwrap();
        assert!(slowed < 4.0, "{slowed}");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(limiter.current_rate(), Some(4.0), "never above the cap");
    }
}
