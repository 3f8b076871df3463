use std::sync::Arc;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A DRF `SimpleRateThrottle` of `limit_at(elapsed)` requests per second (the history kept
/// when the limit changes, `wait()` None when it holds more than the limit), reached after
/// half of `latency` and answering after the other half; `tasks` workers fetch `pages` pages
/// through one limiter, each 429 retried as the client does: after its `Retry-After` (whole
/// seconds, rounded up) or less when the limiter holds everyone for less, else after a backoff
/// of 250–500 ms. Returns (virtual seconds taken, 429s).
struct Drive {
    tasks: usize,
    pages: usize,
    latency: Duration,
    retry_after: bool,
}

impl Drive {
    fn new(pages: usize, retry_after: bool) -> Self {
        Drive {
            tasks: 8,
            pages,
            latency: ms(50),
            retry_after,
        }
    }

    async fn run(
        &self,
        limiter: Arc<RateLimiter>,
        limit_at: impl Fn(Duration) -> usize + Send + Sync + 'static,
    ) -> (f64, usize) {
        struct Server {
            history: VecDeque<Instant>,
            served: usize,
            refused: usize,
        }
        let server = Arc::new(Mutex::new(Server {
            history: VecDeque::new(),
            served: 0,
            refused: 0,
        }));
        let limit_at = Arc::new(limit_at);
        let started = Instant::now();
        let mut handles = Vec::new();
        for task in 0..self.tasks {
            let (limiter, server, limit_at) = (limiter.clone(), server.clone(), limit_at.clone());
            let (pages, half, retry_after) = (self.pages, self.latency / 2, self.retry_after);
            handles.push(tokio::spawn(async move {
                let mut attempt = task as u64;
                loop {
                    let permit = limiter.acquire().await;
                    tokio::time::sleep(half).await;
                    let now = Instant::now();
                    let verdict = {
                        let mut s = server.lock().unwrap();
                        if s.served >= pages {
                            return;
                        }
                        let limit = limit_at(now - started);
                        while s.history.front().is_some_and(|&t| now - t >= WINDOW) {
                            s.history.pop_front();
                        }
                        if s.history.len() < limit {
                            s.history.push_back(now);
                            s.served += 1;
                            None
                        } else {
                            s.refused += 1;
                            let available = limit as i64 - s.history.len() as i64 + 1;
                            let wait = (available > 0)
                                .then(|| (WINDOW - (now - s.history[0])) / available as u32);
                            Some(wait)
                        }
                    };
                    tokio::time::sleep(half).await;
                    match verdict {
                        None => limiter.observe(permit, Outcome::Served),
                        Some(wait) => {
                            let ra = wait.filter(|_| retry_after).map(|w| {
                                Duration::from_secs(w.as_secs() + u64::from(w.subsec_nanos() > 0))
                            });
                            limiter.observe(permit, Outcome::Throttled { retry_after: ra });
                            attempt += 1;
                            let backoff = ms(250 + (attempt * 97) % 250);
                            // As the client does: no longer than the limiter holds everyone.
                            let wait = ra.map(|ra| ra.min(limiter.held_for()));
                            tokio::time::sleep(wait.unwrap_or(backoff)).await;
                        }
                    }
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let refused = server.lock().unwrap().refused;
        (started.elapsed().as_secs_f64(), refused)
    }
}

#[tokio::test(start_paused = true)]
async fn uses_a_steady_throttle_at_its_rate_with_few_429s_with_and_without_retry_after() {
    for limit in [20, 40] {
        for retry_after in [true, false] {
            let limiter = Arc::new(RateLimiter::new(None));
            let pages = 300;
            let (secs, refused) = Drive::new(pages, retry_after)
                .run(limiter.clone(), move |_| limit)
                .await;
            let bound = pages as f64 / limit as f64;
            eprintln!(
                "{limit}/s, Retry-After {retry_after}: {secs:.2} s = {:.3} × bound, {refused} 429s",
                secs / bound
            );
            assert!(
                secs <= 1.15 * bound,
                "{limit}/s, Retry-After {retry_after}: {secs:.2} s against a bound of {bound} s"
            );
            assert!(
                refused * 20 <= pages,
                "{limit}/s, Retry-After {retry_after}: {refused} 429s for {pages} pages"
            );
            let learnt = limiter.learnt_limit().unwrap();
            assert!(
                (limit as f64 - 1.0..=limit as f64 + 1.0).contains(&learnt),
                "learnt {learnt} for a limit of {limit}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn settles_after_the_server_halves_its_rate_and_doubles_it_back() {
    for retry_after in [true, false] {
        let limiter = Arc::new(RateLimiter::new(None));
        // 20/s for 5 s, 10/s for 10 s, then 20/s again.
        let schedule = |t: Duration| {
            if (5..15).contains(&t.as_secs()) {
                10
            } else {
                20
            }
        };
        let pages = 500;
        let (secs, refused) = Drive::new(pages, retry_after)
            .run(limiter.clone(), schedule)
            .await;
        // 100 pages in the first 5 s and 100 in the next 10 leave 300 at 20/s: 30 s at best.
        eprintln!("Retry-After {retry_after}: {secs:.2} s for a bound of 30 s, {refused} 429s");
        // Settled: the raised limit is found by probes, whose spacing grew while the lower
        // one held, so the last phase starts late; the steady test holds the 1.15× target.
        assert!(secs <= 1.3 * 30.0, "Retry-After {retry_after}: {secs:.2} s");
        // The halving costs about one 429 per request the server's history holds above the
        // new limit (it drains one at a time), on top of the first storm and the probes.
        assert!(
            refused * 12 <= pages,
            "Retry-After {retry_after}: {refused} 429s"
        );
        let learnt = limiter.learnt_limit().unwrap();
        assert!(
            (19.0..=21.0).contains(&learnt),
            "learnt {learnt} at the end"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn one_storm_shows_the_limit_and_when_the_window_frees() {
    let limiter = RateLimiter::new(None);
    tokio::time::advance(Duration::from_secs(2)).await;
    // 10 served, sent 10 ms apart, then 8 in flight come back 429.
    let mut sent = Vec::new();
    for _ in 0..10 {
        limiter.observe(limiter.acquire().await, Outcome::Served);
        tokio::time::advance(ms(10)).await;
    }
    let first = Instant::now() - ms(100);
    for _ in 0..8 {
        sent.push(limiter.acquire().await);
    }
    tokio::time::advance(ms(50)).await;
    for p in sent {
        let retry_after = Some(Duration::from_secs(1));
        limiter.observe(p, Outcome::Throttled { retry_after });
    }
    assert_eq!(limiter.learnt_limit(), Some(10.0));
    let rate = limiter.current_rate().unwrap();
    assert!((rate - 10.0 * HEADROOM).abs() < 1e-9, "{rate}");
    // The next request goes when the first of the ten leaves the window, well before the
    // whole second Retry-After rounds up to; then they are spaced to HEADROOM × 10/s.
    limiter.acquire().await;
    assert_eq!(Instant::now() - first, WINDOW + SLACK);
    let t = Instant::now();
    limiter.acquire().await;
    // (The timer rounds up to whole milliseconds.)
    let spacing = t.elapsed();
    assert!(
        spacing >= interval(10.0 * HEADROOM) && spacing <= interval(10.0 * HEADROOM) + ms(1),
        "{spacing:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_longer_than_the_window_is_obeyed_and_nothing_to_count_waits_a_window() {
    let limiter = RateLimiter::new(None);
    limiter.observe(limiter.acquire().await, Outcome::Served);
    let p = limiter.acquire().await;
    let retry_after = Some(Duration::from_secs(30));
    limiter.observe(p, Outcome::Throttled { retry_after });
    let t = Instant::now();
    limiter.acquire().await;
    assert_eq!(t.elapsed(), Duration::from_secs(30));

    // A first request refused: no rate is made up, and everyone waits a window.
    let limiter = RateLimiter::new(None);
    let p = limiter.acquire().await;
    limiter.observe(p, Outcome::Throttled { retry_after: None });
    assert_eq!(limiter.current_rate(), None);
    let t = Instant::now();
    limiter.acquire().await;
    assert_eq!(t.elapsed(), PAUSE_WITHOUT_RETRY_AFTER);
}

#[tokio::test(start_paused = true)]
async fn a_confirmed_limit_is_probed_less_and_less_often() {
    // 120 s at 20/s: probes at 2, 3, 4.5, 6.75, 10, 15, 16... s after each 429 cost one 429 each.
    let limiter = Arc::new(RateLimiter::new(None));
    let (secs, refused) = Drive::new(2400, true).run(limiter, |_| 20).await;
    eprintln!("{secs:.1} s, {refused} 429s");
    assert!(secs <= 1.05 * 120.0, "{secs:.1} s");
    // The first storm (8 in flight) and about ten probes.
    assert!(refused <= 24, "{refused} 429s in {secs:.1} s");
}

#[test]
fn drf_throttle_hint() {
    let hint = |s| throttle_hint(s);
    assert_eq!(
        hint("Request was throttled. Expected available in 1 second."),
        Some(Duration::from_secs(1))
    );
    assert_eq!(
        hint("Request was throttled. Expected available in 12 seconds."),
        Some(Duration::from_secs(12))
    );
    assert_eq!(
        hint("Expected available in 0.25 seconds."),
        Some(Duration::from_millis(250))
    );
    assert_eq!(hint("Request was throttled."), None);
    assert_eq!(hint("Expected available in -3 seconds."), None);
    assert_eq!(hint("Expected available in soon."), None);
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
async fn the_cap_holds_and_a_learnt_limit_stays_under_it() {
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
    // Probes raise the learnt limit only while it holds requests back; the cap stays.
    for _ in 0..200 {
        limiter.observe(limiter.acquire().await, Outcome::Served);
    }
    assert_eq!(limiter.current_rate(), Some(4.0), "never above the cap");
}
