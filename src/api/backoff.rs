//! Retry waits of one request: exponential from `api.retry_min_delay`, doubling up to
//! `api.retry_max_delay`, each wait drawn at random from the upper half of its step ("equal
//! jitter"). No wait exceeds the cap, and all of them together never exceed
//! [`RetryBackoff::bound`], the figure the first retry announces. (Jitter added on top of the
//! step, as `backon`'s exponential builder does, made waits of up to twice the cap.)

use std::time::Duration;

use rand::Rng;

use crate::config::ApiConfig;

/// The retry schedule of one request; a [`backon::BackoffBuilder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBackoff {
    min: Duration,
    max: Duration,
    retries: u32,
}

impl RetryBackoff {
    pub fn new(cfg: &ApiConfig) -> Self {
        RetryBackoff {
            min: cfg.retry_min_delay.min(cfg.retry_max_delay),
            max: cfg.retry_max_delay,
            retries: cfg.max_retries,
        }
    }

    /// The step of each retry in turn: the longest that wait may be.
    pub fn steps(&self) -> impl Iterator<Item = Duration> + use<> {
        let max = self.max;
        std::iter::successors(Some(self.min), move |d| Some(d.saturating_mul(2).min(max)))
            .take(self.retries as usize)
    }

    /// The longest all the waits of one request can add up to (a server's `Retry-After`
    /// replaces a wait, and may be longer).
    pub fn bound(&self) -> Duration {
        self.steps().fold(Duration::ZERO, Duration::saturating_add)
    }
}

impl backon::BackoffBuilder for RetryBackoff {
    type Backoff = Waits;

    fn build(self) -> Waits {
        Waits {
            next: self.min,
            max: self.max,
            left: self.retries,
        }
    }
}

/// The waits of one request, drawn as they are needed.
#[derive(Debug)]
pub struct Waits {
    next: Duration,
    max: Duration,
    left: u32,
}

impl Iterator for Waits {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.left = self.left.checked_sub(1)?;
        let step = self.next;
        self.next = step.saturating_mul(2).min(self.max);
        Some(jittered(step))
    }
}

/// A wait drawn uniformly from `[step / 2, step]`, in integer nanoseconds (float scaling
/// can round past `step`, or overflow for absurd steps).
fn jittered(step: Duration) -> Duration {
    let half = step / 2;
    let span = step - half;
    let mut rng = rand::rng();
    let extra = match u64::try_from(span.as_nanos()) {
        Ok(n) => Duration::from_nanos(rng.random_range(0..=n)),
        Err(_) => Duration::from_secs(rng.random_range(0..=span.as_secs())),
    };
    half + extra
}

#[cfg(test)]
mod tests {
    use super::*;
    use backon::BackoffBuilder;

    fn backoff(min_ms: u64, max_ms: u64, retries: u32) -> RetryBackoff {
        RetryBackoff {
            min: Duration::from_millis(min_ms),
            max: Duration::from_millis(max_ms),
            retries,
        }
    }

    #[test]
    fn the_defaults_wait_at_most_91_5_seconds_in_all() {
        let cfg = crate::config::ApiConfig::new(
            url::Url::parse("https://oms.example.com").unwrap(),
            crate::config::Secret::new("t"),
        );
        let b = RetryBackoff::new(&cfg);
        let steps: Vec<u64> = b.steps().map(|d| d.as_millis() as u64).collect();
        assert_eq!(steps, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(b.bound(), Duration::from_millis(91_500));
    }

    #[test]
    fn no_wait_exceeds_its_step_nor_the_cap_and_their_sum_stays_under_the_bound() {
        let b = backoff(100, 250, 6);
        let steps: Vec<Duration> = b.steps().collect();
        for _ in 0..2000 {
            let waits: Vec<Duration> = b.build().collect();
            assert_eq!(waits.len(), 6);
            for (w, s) in waits.iter().zip(&steps) {
                assert!(
                    *w <= *s && *w <= Duration::from_millis(250),
                    "{w:?} > {s:?}"
                );
                assert!(*w >= *s / 2, "{w:?} below half of {s:?}");
            }
            assert!(waits.iter().sum::<Duration>() <= b.bound());
        }
    }

    #[test]
    fn no_retries_no_waits_and_a_huge_cap_does_not_overflow() {
        assert_eq!(backoff(100, 200, 0).build().count(), 0);
        assert_eq!(backoff(100, 200, 0).bound(), Duration::ZERO);
        let huge = RetryBackoff {
            min: Duration::from_secs(u64::MAX / 4),
            max: Duration::MAX,
            retries: 10,
        };
        assert_eq!(huge.build().count(), 10);
        assert_eq!(huge.bound(), Duration::MAX);
    }
}
