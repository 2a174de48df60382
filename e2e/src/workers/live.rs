//! Live counters, readable while the workers run (a rehearsal reads them per phase).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::outcome::Outcome;
use crate::fake::state::lock;

/// Atomic counts of one target (or of all).
#[derive(Debug, Default)]
pub struct Counters {
    sent: AtomicU64,
    ok: AtomicU64,
    transport_error: AtomicU64,
    truncated: AtomicU64,
    timeout: AtomicU64,
    in_flight: AtomicU64,
    http_errors: Mutex<BTreeMap<u16, u64>>,
}

/// A point-in-time copy of [`Counters`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Requests started.
    pub sent: u64,
    /// Requests that ended `ok`.
    pub ok: u64,
    /// `http_error` counts per status.
    pub http_errors: BTreeMap<u16, u64>,
    /// `transport_error` count.
    pub transport_error: u64,
    /// `truncated` count.
    pub truncated: u64,
    /// `timeout` count.
    pub timeout: u64,
    /// Started and not yet ended.
    pub in_flight: u64,
}

impl Snapshot {
    /// Requests that ended in any outcome.
    pub fn completed(&self) -> u64 {
        self.ok + self.http_error_total() + self.transport_error + self.truncated + self.timeout
    }

    /// All `http_error` outcomes.
    pub fn http_error_total(&self) -> u64 {
        self.http_errors.values().sum()
    }

    /// Ended in anything but `ok`.
    pub fn failed(&self) -> u64 {
        self.completed() - self.ok
    }

    /// transport_error + truncated.
    pub fn lost(&self) -> u64 {
        self.transport_error + self.truncated
    }

    /// Counts since `earlier` (a snapshot of the same counters); `in_flight` is the current one.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let mut http_errors = self.http_errors.clone();
        for (status, count) in &earlier.http_errors {
            if let Some(now) = http_errors.get_mut(status) {
                *now = now.saturating_sub(*count);
            }
        }
        http_errors.retain(|_, count| *count > 0);
        Snapshot {
            sent: self.sent.saturating_sub(earlier.sent),
            ok: self.ok.saturating_sub(earlier.ok),
            http_errors,
            transport_error: self.transport_error.saturating_sub(earlier.transport_error),
            truncated: self.truncated.saturating_sub(earlier.truncated),
            timeout: self.timeout.saturating_sub(earlier.timeout),
            in_flight: self.in_flight,
        }
    }

    /// Per-outcome counts keyed by outcome label (`ok`, `http_503`, `transport_error`,
    /// `truncated`, `timeout`; the four non-HTTP keys are always present).
    pub fn outcomes(&self) -> BTreeMap<String, u64> {
        let mut outcomes = BTreeMap::from([
            ("ok".to_string(), self.ok),
            ("transport_error".to_string(), self.transport_error),
            ("truncated".to_string(), self.truncated),
            ("timeout".to_string(), self.timeout),
        ]);
        for (status, count) in &self.http_errors {
            outcomes.insert(Outcome::HttpError { status: *status }.label(), *count);
        }
        outcomes
    }
}

impl Counters {
    /// Marks a request started.
    pub fn started(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks a request ended with `outcome`.
    pub fn ended(&self, outcome: Outcome) {
        match outcome {
            Outcome::Ok => self.ok.fetch_add(1, Ordering::Relaxed),
            Outcome::TransportError => self.transport_error.fetch_add(1, Ordering::Relaxed),
            Outcome::Truncated => self.truncated.fetch_add(1, Ordering::Relaxed),
            Outcome::Timeout => self.timeout.fetch_add(1, Ordering::Relaxed),
            Outcome::HttpError { status } => {
                *lock(&self.http_errors).entry(status).or_default() += 1;
                0
            }
        };
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// A consistent-enough copy (each field read atomically).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            sent: self.sent.load(Ordering::Relaxed),
            ok: self.ok.load(Ordering::Relaxed),
            http_errors: lock(&self.http_errors).clone(),
            transport_error: self.transport_error.load(Ordering::Relaxed),
            truncated: self.truncated.load(Ordering::Relaxed),
            timeout: self.timeout.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }
}

/// p50/p95/p99 in milliseconds (0 when nothing was recorded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Number of samples.
    pub count: u64,
}

/// Histogram of durations in microseconds (1 µs … 1 h, 3 significant digits).
#[derive(Debug)]
pub struct Latency {
    histogram: Mutex<Histogram<u64>>,
}

impl Default for Latency {
    fn default() -> Self {
        let histogram = Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .expect("constant bounds 1..1h with 3 digits are valid");
        Latency {
            histogram: Mutex::new(histogram),
        }
    }
}

impl Latency {
    /// Records one duration.
    pub fn record(&self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        lock(&self.histogram).saturating_record(micros);
    }

    /// Current percentiles.
    pub fn percentiles(&self) -> Percentiles {
        let histogram = lock(&self.histogram);
        if histogram.is_empty() {
            return Percentiles::default();
        }
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            p50: ms(0.50),
            p95: ms(0.95),
            p99: ms(0.99),
            count: histogram.len(),
        }
    }

    /// Current percentiles, then starts over (for per-phase windows).
    pub fn take(&self) -> Percentiles {
        let percentiles = self.percentiles();
        lock(&self.histogram).reset();
        percentiles
    }
}

/// Everything the workers update while they run.
#[derive(Debug, Default)]
pub struct LiveStats {
    /// All targets together.
    pub total: Counters,
    /// Per target, in the order of the config's targets.
    pub targets: Vec<(String, Counters)>,
    /// Open-loop ticks not sent because `max_in_flight` requests were already in flight.
    pub skipped: AtomicU64,
    /// Whole-request latency of `ok` requests (cumulative).
    pub latency: Latency,
    /// Time to first body byte of `ok` requests (cumulative).
    pub ttfb: Latency,
    /// Like `latency`, but reset by [`LiveStats::take_window`].
    pub window_latency: Latency,
    /// Like `ttfb`, but reset by [`LiveStats::take_window`].
    pub window_ttfb: Latency,
}

impl LiveStats {
    /// Stats for targets with these labels.
    pub fn new(labels: impl IntoIterator<Item = String>) -> Self {
        LiveStats {
            targets: labels
                .into_iter()
                .map(|label| (label, Counters::default()))
                .collect(),
            ..LiveStats::default()
        }
    }

    /// Snapshot of all targets together.
    pub fn snapshot(&self) -> Snapshot {
        self.total.snapshot()
    }

    /// Snapshot of one target.
    pub fn target(&self, label: &str) -> Option<Snapshot> {
        self.targets
            .iter()
            .find(|(name, _)| name == label)
            .map(|(_, counters)| counters.snapshot())
    }

    /// Latency and TTFB percentiles since the previous call (and starts a new window).
    pub fn take_window(&self) -> (Percentiles, Percentiles) {
        (self.window_latency.take(), self.window_ttfb.take())
    }

    pub(crate) fn started(&self, target: usize) {
        self.total.started();
        if let Some((_, counters)) = self.targets.get(target) {
            counters.started();
        }
    }

    pub(crate) fn ended(
        &self,
        target: usize,
        outcome: Outcome,
        latency: Duration,
        ttfb: Option<Duration>,
    ) {
        self.total.ended(outcome);
        if let Some((_, counters)) = self.targets.get(target) {
            counters.ended(outcome);
        }
        if outcome == Outcome::Ok {
            self.latency.record(latency);
            self.window_latency.record(latency);
            if let Some(ttfb) = ttfb {
                self.ttfb.record(ttfb);
                self.window_ttfb.record(ttfb);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_arithmetic() {
        let counters = Counters::default();
        for outcome in [
            Outcome::Ok,
            Outcome::Ok,
            Outcome::HttpError { status: 503 },
            Outcome::TransportError,
            Outcome::Truncated,
            Outcome::Timeout,
        ] {
            counters.started();
            counters.ended(outcome);
        }
        let first = counters.snapshot();
        assert_eq!(first.sent, 6);
        assert_eq!(first.completed(), 6);
        assert_eq!(first.failed(), 4);
        assert_eq!(first.lost(), 2);
        assert_eq!(first.outcomes()["http_503"], 1);
        counters.started();
        counters.ended(Outcome::HttpError { status: 503 });
        let delta = counters.snapshot().since(&first);
        assert_eq!(delta.sent, 1);
        assert_eq!(delta.http_errors, BTreeMap::from([(503, 1)]));
        assert_eq!(delta.ok, 0);
    }

    #[test]
    fn percentiles_in_ms() {
        let latency = Latency::default();
        for ms in 1..=100 {
            latency.record(Duration::from_millis(ms));
        }
        let p = latency.take();
        assert!((p.p50 - 50.0).abs() < 0.5, "{p:?}");
        assert!((p.p99 - 99.0).abs() < 0.5, "{p:?}");
        assert_eq!(latency.percentiles().count, 0);
    }
}
