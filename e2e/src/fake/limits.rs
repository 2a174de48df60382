//! The fake's per-key limits, as Z.AI enforces them: concurrent requests (beyond
//! `max_concurrency`: 429 code 1302) and request frequency (a token bucket of `max_rps`
//! tokens per second holding at most `rps_burst`; beyond it: 429 with `rps_code`, 1303 or
//! 1305).
//!
//! The fake has one valid key, so "per key" is one [`KeyLimits`]. The decision
//! ([`KeyLimits::try_enter`]) is a pure function of the settings, the state and the time
//! passed in; the front server owns the clock and holds an [`Entered`] ticket for as long as
//! the response body is being sent, so a stream counts for its whole life. Requests that are
//! rejected never count as in flight and take no token.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Default business code of a frequency rejection.
pub const DEFAULT_RPS_CODE: u32 = 1303;
/// Business code of a concurrency rejection.
pub const CONCURRENCY_CODE: u32 = 1302;

/// The limit settings (part of [`Faults`](super::Faults)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitSettings {
    /// Concurrent requests allowed (None: unlimited).
    pub max_concurrency: Option<u32>,
    /// Requests per second allowed (None: unlimited).
    pub max_rps: Option<f64>,
    /// Bucket size in requests (default: `max_rps`, at least 1).
    pub rps_burst: Option<f64>,
    /// Code of a frequency rejection (1303 or 1305).
    pub rps_code: u32,
}

/// Counters shown in `/__fake/stats` under `limits`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitStats {
    /// Requests admitted by the limits (and counted as in flight).
    pub admitted: u64,
    /// Requests in flight now.
    pub in_flight: u32,
    /// Highest number of requests in flight at once since the last stats reset.
    pub peak_concurrency: u32,
    /// 429s with code 1302 (over `max_concurrency`).
    pub rejected_concurrency: u64,
    /// 429s with the frequency code (over `max_rps`).
    pub rejected_rps: u64,
    /// Integral of requests in flight over time, in request·milliseconds (divide by the
    /// elapsed milliseconds and the limit for the utilisation).
    pub busy_request_ms: u64,
    /// Milliseconds since the last stats reset.
    pub elapsed_ms: u64,
}

/// What the limits decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted: counted in flight until [`KeyLimits::leave`].
    Enter,
    /// Rejected with a 429 and this business code.
    Reject(u32),
}

/// The state of one key.
#[derive(Debug)]
pub struct KeyLimits {
    in_flight: u32,
    tokens: f64,
    refilled: Instant,
    busy_us: u128,
    last_change: Instant,
    since: Instant,
    stats: LimitStats,
}

impl KeyLimits {
    /// No request in flight, a full bucket, counters at zero.
    pub fn new(now: Instant) -> Self {
        KeyLimits {
            in_flight: 0,
            tokens: f64::INFINITY,
            refilled: now,
            busy_us: 0,
            last_change: now,
            since: now,
            stats: LimitStats::default(),
        }
    }

    fn integrate(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last_change);
        self.busy_us += u128::from(self.in_flight) * dt.as_micros();
        self.last_change = now;
    }

    fn refill(&mut self, settings: &LimitSettings, now: Instant) {
        let Some(rate) = settings.max_rps else {
            self.tokens = f64::INFINITY;
            self.refilled = now;
            return;
        };
        let burst = burst(settings);
        let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.refilled = now;
    }

    /// Decides one request arriving at `now`.
    pub fn try_enter(&mut self, settings: &LimitSettings, now: Instant) -> Verdict {
        self.refill(settings, now);
        if settings
            .max_concurrency
            .is_some_and(|max| self.in_flight >= max)
        {
            self.stats.rejected_concurrency += 1;
            return Verdict::Reject(CONCURRENCY_CODE);
        }
        if settings.max_rps.is_some() {
            if self.tokens < 1.0 {
                self.stats.rejected_rps += 1;
                return Verdict::Reject(settings.rps_code);
            }
            self.tokens -= 1.0;
        }
        self.integrate(now);
        self.in_flight += 1;
        self.stats.admitted += 1;
        self.stats.peak_concurrency = self.stats.peak_concurrency.max(self.in_flight);
        Verdict::Enter
    }

    /// An admitted request finished (its body was sent, or the connection closed).
    pub fn leave(&mut self, now: Instant) {
        self.integrate(now);
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// The counters as of `now`.
    pub fn stats(&mut self, now: Instant) -> LimitStats {
        self.integrate(now);
        let mut stats = self.stats.clone();
        stats.in_flight = self.in_flight;
        stats.busy_request_ms = u64::try_from(self.busy_us / 1000).unwrap_or(u64::MAX);
        stats.elapsed_ms = duration_ms(now.saturating_duration_since(self.since));
        stats
    }

    /// Zeroes the counters (requests in flight stay in flight; the peak restarts from them).
    pub fn reset_stats(&mut self, now: Instant) {
        self.stats = LimitStats {
            peak_concurrency: self.in_flight,
            ..LimitStats::default()
        };
        self.busy_us = 0;
        self.last_change = now;
        self.since = now;
    }
}

fn burst(settings: &LimitSettings) -> f64 {
    settings
        .rps_burst
        .or(settings.max_rps)
        .unwrap_or(1.0)
        .max(1.0)
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_concurrency: Option<u32>, max_rps: Option<f64>) -> LimitSettings {
        LimitSettings {
            max_concurrency,
            max_rps,
            rps_burst: None,
            rps_code: DEFAULT_RPS_CODE,
        }
    }

    #[test]
    fn concurrency_beyond_the_limit_is_1302_and_frees_on_leave() {
        let t0 = Instant::now();
        let s = settings(Some(2), None);
        let mut k = KeyLimits::new(t0);
        assert_eq!(k.try_enter(&s, t0), Verdict::Enter);
        assert_eq!(k.try_enter(&s, t0), Verdict::Enter);
        assert_eq!(k.try_enter(&s, t0), Verdict::Reject(1302));
        k.leave(t0 + Duration::from_millis(100));
        assert_eq!(
            k.try_enter(&s, t0 + Duration::from_millis(100)),
            Verdict::Enter
        );
        let stats = k.stats(t0 + Duration::from_millis(200));
        assert_eq!(stats.peak_concurrency, 2);
        assert_eq!(stats.rejected_concurrency, 1);
        assert_eq!(stats.admitted, 3);
        // 2 in flight for 100 ms, then 2 again for 100 ms.
        assert_eq!(stats.busy_request_ms, 400);
    }

    #[test]
    fn token_bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let s = LimitSettings {
            rps_code: 1305,
            ..settings(None, Some(10.0))
        };
        let mut k = KeyLimits::new(t0);
        let mut admitted = 0;
        for _ in 0..15 {
            if k.try_enter(&s, t0) == Verdict::Enter {
                admitted += 1;
                k.leave(t0);
            }
        }
        assert_eq!(admitted, 10, "a full bucket holds one second");
        assert_eq!(k.try_enter(&s, t0), Verdict::Reject(1305));
        // One second later: ten more, and no more.
        let t1 = t0 + Duration::from_secs(1);
        let mut later = 0;
        for _ in 0..15 {
            if k.try_enter(&s, t1) == Verdict::Enter {
                later += 1;
                k.leave(t1);
            }
        }
        assert_eq!(later, 10);
        assert_eq!(k.stats(t1).rejected_rps, 11);
    }

    #[test]
    fn reset_keeps_requests_in_flight() {
        let t0 = Instant::now();
        let s = settings(Some(5), None);
        let mut k = KeyLimits::new(t0);
        k.try_enter(&s, t0);
        k.try_enter(&s, t0);
        k.reset_stats(t0);
        let stats = k.stats(t0);
        assert_eq!(
            (stats.in_flight, stats.peak_concurrency, stats.admitted),
            (2, 2, 0)
        );
        k.leave(t0);
        k.leave(t0);
        k.leave(t0);
        assert_eq!(k.stats(t0).in_flight, 0, "never below zero");
    }
}
