//! The client's shared request-rate limiter: every request of an [`ApiClient`](super::ApiClient)
//! (all backfill ranges and their retries) passes through one [`RateLimiter`]. It spaces
//! requests to `api.max_requests_per_second` when that is set, and it learns the server's
//! throttle from its 429s. Without `max_requests_per_second` and before any 429 it lets
//! everything through. Time is `tokio::time`, so tests run it with paused time.
//!
//! What it learns from, for a DRF-style throttle (at most N requests in any window; see
//! docs/performance.md#throttling-429):
//! - **the spacing of 429s**: a request is refused when the server's window already holds N
//!   requests, so the requests of ours that were served in the [`WINDOW`] before the refused
//!   one was sent are N (more only just after the server lowered its limit). The limit becomes
//!   that count, requests are spaced to [`HEADROOM`] of it, and nothing starts before the
//!   oldest of them has left the window;
//! - **`Retry-After`** (or DRF's "Expected available in N seconds." body): DRF rounds its wait
//!   up to whole seconds, so for a one-second window the count above says more precisely when
//!   the window frees; a wait longer than the window means a longer window, and is obeyed.
//!   With no served request to count, every request waits for it (a [`WINDOW`] without one);
//! - **probes**: a limit learnt from a 429 is raised ([`PROBE_FIRST`] after the 429, by one
//!   request, then by [`PROBE_GROWTH`] times more each [`PROBE_HELD`] that draws no 429), so
//!   that a server that raised its limit is used at its new rate. A 429 to a probe confirms the
//!   limit and makes the next probe wait longer ([`PROBE_BACKOFF`], up to [`PROBE_MAX`]): one
//!   429 per probe is the price.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::MAX_RETRY_AFTER;

#[cfg(test)]
mod tests;

/// The span of the throttle the limiter models (DRF's `N/second`, the shortest DRF rate and
/// the one that needs pacing; longer windows show as longer waits, see the module docs).
pub const WINDOW: Duration = Duration::from_secs(1);
/// Requests are spaced to this fraction of the learnt limit: 1% of a window (10 ms a second)
/// absorbs the network's jitter between our clock and the server's. (A request refused for
/// jitter costs a 429, not the server's capacity: it is not counted in its window.)
pub const HEADROOM: f64 = 0.99;
/// Margin after the moment our own count says a request would be let through again.
const SLACK: Duration = Duration::from_millis(10);
/// How long after a 429 the learnt limit is first raised.
pub const PROBE_FIRST: Duration = Duration::from_secs(2);
/// A raised limit that drew no 429 for this long (while requests waited for it) holds: a
/// window filled at the raised rate, and its 429 would have come back.
pub const PROBE_HELD: Duration = Duration::from_millis(1250);
/// Each probe that holds raises the limit by this many times the last raise (1, 4, 16, ...
/// requests): a server that raised its limit usually raised it a lot.
pub const PROBE_GROWTH: f64 = 4.0;
/// A 429 to a probe makes the next one wait this many times longer ...
pub const PROBE_BACKOFF: f64 = 1.5;
/// ... up to this.
pub const PROBE_MAX: Duration = Duration::from_secs(16);
/// How long every request waits after a 429 without `Retry-After` and nothing to count.
pub const PAUSE_WITHOUT_RETRY_AFTER: Duration = WINDOW;
/// The learnt limit never goes below this many requests per window (Retry-After still can).
pub const MIN_LIMIT: f64 = 1.0;
/// A learnt limit that grew past this is dropped: the server has stopped throttling.
const FORGET_ABOVE: f64 = 100_000.0;
/// Bounds the memory of served-request times at very high request rates.
const MAX_HISTORY: usize = 4096;

/// What the server said to a request let through by [`RateLimiter::acquire`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// An answer other than 429: the request passed the server's throttle.
    Served,
    /// No answer (a transport error): whether the throttle counted it is unknown.
    Unanswered,
    /// A 429, with the wait it asked for (`Retry-After`, else the body's hint) when it had one.
    Throttled { retry_after: Option<Duration> },
}

/// When a request was let go: its place in the server's window, and whether a 429 to it is
/// news (one sent before the last slow-down is the same storm answering late).
#[derive(Debug, Clone, Copy)]
pub struct Permit {
    sent_at: Instant,
}

/// The server's limit as learnt from its 429s.
#[derive(Debug)]
struct Learnt {
    /// Requests the server lets through per [`WINDOW`].
    limit: f64,
    /// When the limit is next raised, and by how many requests.
    next_probe: Instant,
    step: f64,
    /// Whether `limit` was raised since the last 429 (a 429 now is the probe's answer).
    probing: bool,
    /// The wait from a 429 to the next probe.
    probe_every: Duration,
}

#[derive(Debug)]
struct State {
    /// `api.max_requests_per_second`.
    cap: Option<f64>,
    learnt: Option<Learnt>,
    /// Earliest start of the next request.
    next: Instant,
    /// No request starts before this.
    blocked_until: Instant,
    /// Bumped at each slow-down, so requests queued under the old limit queue again.
    epoch: u64,
    last_decrease: Option<Instant>,
    /// Send times of requests answered other than 429, oldest first, over the last two
    /// windows.
    served: VecDeque<Instant>,
    /// Send times of requests not answered yet, oldest first. Those sent before a refused one
    /// reached the server before it and count in its window, answered or not: leaving them
    /// out made the limit learnt one or two short at 40 requests/s.
    in_flight: VecDeque<Instant>,
    /// Whether a request waited for the spacing since the limit was last raised: a limit is
    /// raised only while it is what holds the client back.
    saturated: bool,
    /// Fresh 429s since the last request served: each one waits for twice as many of our
    /// requests to leave the server's window before the next try, so that a limit the server
    /// lowered a lot is found in a few 429s, not one per request its window holds too many.
    refused_in_a_row: u32,
}

impl State {
    /// The spacing rate in force at `now` (requests/s), after any probe now due; None =
    /// unlimited.
    fn rate(&mut self, now: Instant) -> Option<f64> {
        if let Some(l) = &mut self.learnt
            && now >= l.next_probe
        {
            if self.saturated {
                tracing::debug!(
                    from = l.limit,
                    to = l.limit + l.step,
                    "no 429 at the learnt limit: trying a higher one"
                );
                l.limit += l.step;
                l.step *= PROBE_GROWTH;
                l.probing = true;
                self.saturated = false;
            }
            l.next_probe = now + PROBE_HELD;
            if l.limit > FORGET_ABOVE || !l.limit.is_finite() {
                self.learnt = None;
            }
        }
        let learnt = self
            .learnt
            .as_ref()
            .map(|l| l.limit * HEADROOM / WINDOW.as_secs_f64());
        match (learnt, self.cap) {
            (Some(l), Some(c)) => Some(l.min(c)),
            (l, c) => l.or(c),
        }
    }

    fn record_served(&mut self, sent_at: Instant, now: Instant) {
        // Answers come back out of order; the log stays sorted by send time.
        let at = self.served.partition_point(|&t| t <= sent_at);
        self.served.insert(at, sent_at);
        while self.served.len() > MAX_HISTORY
            || self
                .served
                .front()
                .is_some_and(|&t| now.saturating_duration_since(t) >= 2 * WINDOW)
        {
            self.served.pop_front();
        }
    }

    /// Send times of the requests served or in flight in the window before `sent_at` (which
    /// was refused), oldest first.
    fn window_before(&self, sent_at: Instant) -> Vec<Instant> {
        let within = |t: &Instant| *t <= sent_at && sent_at - *t < WINDOW;
        let mut w: Vec<Instant> = self.served.iter().copied().filter(within).collect();
        w.extend(self.in_flight.iter().copied().filter(within));
        w.sort_unstable();
        w
    }

    /// Send times of the requests served or in flight sent after `t`, oldest first.
    fn sent_since(&self, t: Instant) -> Vec<Instant> {
        let mut w: Vec<Instant> = self.served.iter().copied().filter(|&s| s > t).collect();
        w.extend(self.in_flight.iter().copied().filter(|&s| s > t));
        w.sort_unstable();
        w
    }

    fn landed(&mut self, sent_at: Instant) {
        if let Some(i) = self.in_flight.iter().position(|&t| t == sent_at) {
            self.in_flight.remove(i);
        }
        // Permits dropped without an answer (a cancelled pass) must not count forever.
        while self.in_flight.len() > MAX_HISTORY {
            self.in_flight.pop_front();
        }
    }
}

/// The wait in DRF's throttled detail, "Request was throttled. Expected available in N
/// seconds." (N whole, DRF rounds up; a fraction is read too).
pub fn throttle_hint(detail: &str) -> Option<Duration> {
    let rest = detail.split("Expected available in ").nth(1)?;
    let n = rest.split_whitespace().next()?;
    Duration::try_from_secs_f64(n.parse::<f64>().ok()?).ok()
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
                in_flight: VecDeque::new(),
                saturated: false,
                refused_in_a_row: 0,
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
                if st.next > now {
                    st.saturated = true;
                }
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
            let mut st = self.lock();
            if st.epoch == epoch {
                let sent_at = Instant::now();
                st.in_flight.push_back(sent_at);
                return Permit { sent_at };
            }
        }
    }

    /// Tells the limiter how the server answered a request it let through.
    pub fn observe(&self, permit: Permit, outcome: Outcome) {
        let mut st = self.lock();
        let now = Instant::now();
        st.landed(permit.sent_at);
        let retry_after = match outcome {
            Outcome::Unanswered => return,
            Outcome::Served => {
                if st.last_decrease.is_none_or(|t| permit.sent_at >= t) {
                    st.refused_in_a_row = 0;
                }
                return st.record_served(permit.sent_at, now);
            }
            Outcome::Throttled { retry_after } => retry_after,
        };
        // A wait beyond what we obey is not a throttle's window: the backoff handles it.
        let retry_after = retry_after.filter(|ra| *ra <= MAX_RETRY_AFTER);
        let window = st.window_before(permit.sent_at);
        let fresh = st.last_decrease.is_none_or(|t| permit.sent_at >= t);
        let resume = match retry_after {
            // A longer wait than our window: the server counts over a longer one.
            Some(ra) if ra > WINDOW + SLACK => now + ra,
            _ if !window.is_empty() => {
                let limit = st.learnt.as_ref().map_or(f64::MAX, |l| l.limit);
                let limit = limit.min(window.len() as f64).max(MIN_LIMIT);
                let learnt = st.learnt.get_or_insert(Learnt {
                    limit,
                    next_probe: now,
                    step: 1.0,
                    probing: false,
                    probe_every: PROBE_FIRST,
                });
                learnt.limit = limit;
                if fresh {
                    // A probe's 429 confirms the limit: probe less often. Any other 429 means
                    // the limit moved: probe again soon.
                    learnt.probe_every = if learnt.probing {
                        learnt.probe_every.mul_f64(PROBE_BACKOFF).min(PROBE_MAX)
                    } else {
                        PROBE_FIRST
                    };
                    learnt.probing = false;
                    learnt.step = 1.0;
                    learnt.next_probe = now + learnt.probe_every;
                }
                // The window must drain to below the limit (further after 429s in a row, see
                // the field): counting every request sent since the refused one, too.
                let search = if fresh {
                    (1usize << st.refused_in_a_row.min(16)) - 1
                } else {
                    0
                };
                let target = (limit as usize).saturating_sub(search).max(1);
                let recent = st.sent_since(now.checked_sub(WINDOW).unwrap_or(now));
                match recent.len().checked_sub(target) {
                    Some(i) => recent[i] + WINDOW + SLACK,
                    None => now,
                }
            }
            Some(ra) => now + ra,
            None => now + PAUSE_WITHOUT_RETRY_AFTER,
        };
        st.blocked_until = st.blocked_until.max(resume);
        if fresh {
            tracing::debug!(
                served_in_window = window.len(),
                limit = st.learnt.as_ref().map(|l| l.limit),
                resume_in_ms = st.blocked_until.saturating_duration_since(now).as_millis() as u64,
                "429: the server's window is full"
            );
            st.refused_in_a_row += 1;
            // The requests queued under the old spacing queue again (the epoch) from here, not
            // behind the slots they had taken; spaced from the last one sent, which may have
            // gone after the refused one.
            let last_sent = st.in_flight.back().max(st.served.back()).copied();
            let spacing = st.rate(now).map_or(Duration::ZERO, interval);
            st.next = last_sent.map_or(st.blocked_until, |t| st.blocked_until.max(t + spacing));
            st.epoch += 1;
            st.last_decrease = Some(now);
            st.saturated = false;
        }
    }

    /// The limit in force now (requests/s), None when unlimited.
    pub fn current_rate(&self) -> Option<f64> {
        self.lock().rate(Instant::now())
    }

    /// How long from now every request is held (after a 429).
    pub fn held_for(&self) -> Duration {
        self.lock()
            .blocked_until
            .saturating_duration_since(Instant::now())
    }

    /// The server's limit as learnt (requests per [`WINDOW`]), None before any 429 showed it.
    pub fn learnt_limit(&self) -> Option<f64> {
        self.lock().learnt.as_ref().map(|l| l.limit)
    }
}
