//! State shared by the front server and the wiremock responders.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

use super::faults::{Draws, Faults};
use super::limits::{KeyLimits, Verdict};
use super::record::Recorder;
use super::stats::FakeStats;
use super::wire::Usage;
use super::wire::quota::{QuotaAllowance, QuotaShape};

/// Locks a mutex, recovering the data if a holder panicked (counters stay usable).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The fake's shared state.
#[derive(Debug)]
pub struct Shared {
    /// Credential clients must present.
    pub api_key: String,
    /// The seed of every random draw (faults, jitter) and of the content.
    pub seed: u64,
    /// When the fake started (epoch ms), for quota reset times.
    pub started_ms: i64,
    /// Quota allowances.
    pub allowance: QuotaAllowance,
    faults: RwLock<Faults>,
    quota_shape: RwLock<QuotaShape>,
    stats: Mutex<FakeStats>,
    recorder: Mutex<Recorder>,
    drawn: AtomicU64,
    next_id: AtomicU64,
    limits: Mutex<KeyLimits>,
}

impl Shared {
    /// New state.
    pub fn new(
        api_key: String,
        seed: u64,
        faults: Faults,
        record: usize,
        quota_shape: QuotaShape,
        allowance: QuotaAllowance,
    ) -> Self {
        Shared {
            api_key,
            seed,
            started_ms: chrono::Utc::now().timestamp_millis(),
            allowance,
            faults: RwLock::new(faults),
            quota_shape: RwLock::new(quota_shape),
            stats: Mutex::new(FakeStats::new(seed)),
            recorder: Mutex::new(Recorder::new(record)),
            drawn: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            limits: Mutex::new(KeyLimits::new(std::time::Instant::now())),
        }
    }

    /// Applies the key's limits to a model request arriving now.
    pub fn enter(&self) -> Verdict {
        let settings = self.faults().limits();
        lock(&self.limits).try_enter(&settings, std::time::Instant::now())
    }

    /// An admitted model request finished.
    pub fn leave(&self) {
        lock(&self.limits).leave(std::time::Instant::now());
    }

    /// The stats with the limit counters as of now.
    pub fn stats_snapshot(&self) -> FakeStats {
        let limits = lock(&self.limits).stats(std::time::Instant::now());
        let mut stats = self.stats().clone();
        stats.limits = limits;
        stats
    }

    /// Zeroes the counters and the limit counters (the seed stays; requests in flight stay
    /// counted as in flight) and returns the fresh stats.
    pub fn reset_stats(&self) -> FakeStats {
        lock(&self.limits).reset_stats(std::time::Instant::now());
        *self.stats() = FakeStats::new(self.seed);
        self.stats_snapshot()
    }

    /// Current faults.
    pub fn faults(&self) -> Faults {
        self.faults
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the faults (already validated).
    pub fn set_faults(&self, faults: Faults) {
        *self
            .faults
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = faults;
    }

    /// Current quota shape.
    pub fn quota_shape(&self) -> QuotaShape {
        *self
            .quota_shape
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces the quota shape.
    pub fn set_quota_shape(&self, shape: QuotaShape) {
        *self
            .quota_shape
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = shape;
    }

    /// The draws of the next request (numbered in the order the requests claim them).
    pub fn draws(&self) -> Draws {
        let n = self.drawn.fetch_add(1, Ordering::Relaxed);
        Draws::for_request(self.seed, n)
    }

    /// A fresh response id suffix.
    pub fn next_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!(
            "{:016x}",
            super::content::seed_for(self.seed, &n.to_le_bytes())
        )
    }

    /// Stats access.
    pub fn stats(&self) -> MutexGuard<'_, FakeStats> {
        lock(&self.stats)
    }

    /// Adds billed usage.
    pub fn bill(&self, usage: Usage) {
        let mut stats = self.stats();
        stats.billed_input_tokens += usage.input;
        stats.billed_output_tokens += usage.output;
    }

    /// Tokens billed so far (input + output).
    pub fn billed_total(&self) -> u64 {
        let stats = self.stats();
        stats.billed_input_tokens + stats.billed_output_tokens
    }

    /// Recorder access.
    pub fn recorder(&self) -> MutexGuard<'_, Recorder> {
        lock(&self.recorder)
    }
}
