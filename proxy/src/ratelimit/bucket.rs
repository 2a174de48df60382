//! The global token bucket (governor GCRA), swappable when the rate changes.
//!
//! Rate r req/s with burst ⌊2r⌋ (≥ 1). The bucket in use is replaced as a whole when the
//! controller changes the rate; a waiter sleeping on the old bucket is woken by the swap and
//! re-checks against the new one, so nobody is stranded on a stale rate. Time comes from
//! tokio's clock, so tests can run the bucket on paused (virtual) time.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::Notify;

use super::controller::burst_for;

/// governor clock reading tokio's (pausable) monotonic time as an offset from an origin.
#[derive(Debug, Clone)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        tokio::time::Instant::now().saturating_duration_since(self.origin)
    }
}

type Gcra = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// How a freshly swapped-in bucket starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// With a full burst (start-up and admin reset).
    Full,
    /// Empty (controller adjustments: a decrease after a 429 storm must not release a burst).
    Empty,
}

/// The quota of a rate, or `None` when nothing may pass (r ≤ 0 or not finite).
pub fn quota_for(rate: f64) -> Option<Quota> {
    if !rate.is_finite() || rate <= 0.0 {
        return None;
    }
    let burst = std::num::NonZeroU32::new(burst_for(rate))?;
    let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
    Some(Quota::with_period(period)?.allow_burst(burst))
}

/// The bucket in use plus the wake-up for waiters when it is replaced.
#[derive(Debug)]
pub struct SwappableBucket {
    clock: TokioClock,
    current: Mutex<Option<Arc<Gcra>>>,
    swapped: Notify,
}

impl SwappableBucket {
    /// A full bucket at `rate`.
    pub fn new(rate: f64) -> Self {
        let clock = TokioClock::default();
        let current = Mutex::new(Self::build(&clock, rate, Fill::Full));
        SwappableBucket {
            clock,
            current,
            swapped: Notify::new(),
        }
    }

    fn build(clock: &TokioClock, rate: f64, fill: Fill) -> Option<Arc<Gcra>> {
        let quota = quota_for(rate)?;
        let gcra = RateLimiter::direct_with_clock(quota, clock.clone());
        if fill == Fill::Empty {
            // A fresh bucket always holds exactly its burst, so this drains it.
            let _ = gcra.check_n(quota.burst_size());
        }
        Some(Arc::new(gcra))
    }

    /// Replaces the bucket by one at `rate` and wakes every waiter.
    pub fn set_rate(&self, rate: f64, fill: Fill) {
        let next = Self::build(&self.clock, rate, fill);
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = next;
        self.swapped.notify_waiters();
    }

    /// Waits for one token. Cancel-safe: dropping the future consumes nothing.
    pub async fn acquire(&self) {
        loop {
            // Register for the swap notification before reading the bucket, so a swap
            // between the read and the sleep cannot be missed.
            let swapped = self.swapped.notified();
            tokio::pin!(swapped);
            swapped.as_mut().enable();
            let bucket = self
                .current
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let Some(bucket) = bucket else {
                // Rate 0: only a swap (reset, restore) can let anyone through.
                swapped.await;
                continue;
            };
            match bucket.check() {
                Ok(()) => return,
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.clock.now());
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = &mut swapped => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[test]
    fn quota_matches_rate_and_burst() {
        for (rate, period, burst) in [
            (1.0, Duration::from_secs(1), 2),
            (10.0, Duration::from_millis(100), 20),
            (100.0, Duration::from_millis(10), 200),
            (0.1, Duration::from_secs(10), 1),
            (1000.0, Duration::from_millis(1), 2000),
        ] {
            let q = quota_for(rate).expect("positive rate");
            assert_eq!(q.replenish_interval(), period, "rate {rate}");
            assert_eq!(q.burst_size().get(), burst, "rate {rate}");
        }
        assert!(quota_for(0.0).is_none());
        assert!(quota_for(-1.0).is_none());
        assert!(quota_for(f64::NAN).is_none());
        assert!(quota_for(f64::INFINITY).is_none());
    }

    async fn time_for(bucket: &SwappableBucket, n: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            bucket.acquire().await;
        }
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn full_bucket_releases_a_burst_then_paces() {
        let bucket = SwappableBucket::new(10.0);
        assert_eq!(time_for(&bucket, 20).await, Duration::ZERO);
        let paced = time_for(&bucket, 10).await;
        assert!(
            paced >= Duration::from_millis(990) && paced <= Duration::from_millis(1_020),
            "{paced:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn wait_scales_inversely_with_rate() {
        let mut per_token = Vec::new();
        for rate in [1.0, 10.0, 100.0] {
            let bucket = SwappableBucket::new(rate);
            bucket.set_rate(rate, Fill::Empty);
            per_token.push(time_for(&bucket, 5).await / 5);
        }
        assert!(per_token[0] > per_token[1] && per_token[1] > per_token[2]);
        let ratio = per_token[0].as_secs_f64() / per_token[2].as_secs_f64();
        assert!((90.0..=110.0).contains(&ratio), "{per_token:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn extreme_rates_are_sane() {
        let slow = SwappableBucket::new(0.1);
        assert_eq!(time_for(&slow, 1).await, Duration::ZERO);
        let second = time_for(&slow, 1).await;
        assert!(second >= Duration::from_millis(9_990), "{second:?}");
        let fast = SwappableBucket::new(1000.0);
        assert!(time_for(&fast, 3_000).await <= Duration::from_millis(1_010));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_rate_blocks_until_a_swap() {
        let bucket = Arc::new(SwappableBucket::new(0.0));
        let waiter = tokio::spawn({
            let bucket = bucket.clone();
            async move { bucket.acquire().await }
        });
        tokio::time::sleep(Duration::from_secs(3_600)).await;
        assert!(!waiter.is_finished(), "rate 0 must block");
        bucket.set_rate(5.0, Fill::Full);
        tokio::time::timeout(Duration::from_millis(1), waiter)
            .await
            .expect("woken by the swap")
            .expect("no panic");
    }

    #[tokio::test(start_paused = true)]
    async fn waiter_on_a_slow_bucket_is_woken_by_a_faster_one() {
        let bucket = Arc::new(SwappableBucket::new(0.01));
        bucket.acquire().await; // the single burst token
        let waiter = tokio::spawn({
            let bucket = bucket.clone();
            async move { bucket.acquire().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished(), "next token is 100 s away");
        bucket.set_rate(100.0, Fill::Empty);
        tokio::time::timeout(Duration::from_millis(50), waiter)
            .await
            .expect("re-checked against the new bucket")
            .expect("no panic");
    }

    #[tokio::test(start_paused = true)]
    async fn empty_fill_releases_no_burst() {
        let bucket = SwappableBucket::new(50.0);
        bucket.set_rate(50.0, Fill::Empty);
        let t = time_for(&bucket, 10).await;
        assert!(t >= Duration::from_millis(190), "{t:?}");
    }
}
