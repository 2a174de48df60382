//! Adaptive rate limiting (reference §3): one global admission limiter per process.
//!
//! * [`controller`]: the pure EWMA-ceiling state machine that picks the rate;
//! * [`bucket`]: the governor token bucket at that rate, swapped whole on every change;
//! * [`fair`] + [`admission`]: round-robin over 64 source buckets in front of the bucket;
//!   a request whose client goes away leaves the queue;
//! * [`state`]: the learned ceiling persisted across restarts;
//! * [`admin`]: `POST /admin/reset-rate-limit`.
//!
//! Limits are per process: N replicas admit N times the rate.

pub mod admin;
pub mod admission;
pub mod bucket;
pub mod controller;
pub mod fair;
pub mod state;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::RateLimitSettings;
use crate::metrics::{Metrics, SOURCE_BUCKETS, source_label};

/// One of 64 source buckets, derived from the direct TCP peer (FNV-1a 32-bit of the IP text,
/// mod 64). `X-Forwarded-For` is deliberately ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceBucket(u8);

impl SourceBucket {
    /// The bucket of a peer address (its textual form, as Go's `RemoteAddr` host).
    pub fn from_ip(ip: IpAddr) -> Self {
        use std::io::Write as _;
        let mut buf = [0u8; 64];
        let len = {
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            // 64 bytes hold any IPv4/IPv6 text form; on the impossible overflow we hash the prefix.
            let _ = write!(cursor, "{ip}");
            usize::try_from(cursor.position()).unwrap_or(0)
        };
        Self::from_host(&buf[..len])
    }

    /// The bucket of a host string; empty hashes as `unknown`, as in the original.
    pub fn from_host(host: &[u8]) -> Self {
        let host: &[u8] = if host.is_empty() { b"unknown" } else { host };
        let mut hash: u32 = 0x811c_9dc5;
        for byte in host {
            hash ^= u32::from(*byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        // SOURCE_BUCKETS is 64, so the remainder fits a u8.
        Self((hash % SOURCE_BUCKETS as u32) as u8)
    }

    /// Bucket index, 0..64.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The `client` label (`source-00` … `source-63`).
    pub fn label(self) -> &'static str {
        source_label(self.index())
    }
}

/// What an admission cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Time spent queued for a token.
    pub waited: Duration,
}

/// The `/health` `rate_limit` block (field order as the original).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimitSnapshot {
    /// Live limiter rate, req/s.
    pub current_rate: f64,
    /// EWMA ceiling estimate, req/s.
    pub ceiling: f64,
    /// clamp(ceiling × (1 − hold_margin), min, max).
    pub hold: f64,
    /// When the ceiling was last learned or restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceiling_updated_at: Option<DateTime<Utc>>,
    /// The ceiling state file, if persistence is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_file: Option<String>,
    /// Whether the ceiling came from the state file at start-up.
    pub restored_from_state: bool,
}

use std::sync::{Mutex, MutexGuard, PoisonError};

use bucket::{Fill, SwappableBucket};
use controller::{Controller, ControllerParams, Decision, Feedback, Step, WINDOW};
use state::{CeilingState, Restore};

/// The process-wide adaptive limiter.
#[derive(Debug)]
pub struct Limiter {
    settings: RateLimitSettings,
    metrics: Arc<Metrics>,
    variant: String,
    control: Mutex<Control>,
    bucket: SwappableBucket,
    admission: admission::FairAdmission,
}

/// Controller plus the bookkeeping shown on `/health`.
#[derive(Debug)]
struct Control {
    controller: Controller,
    ceiling_updated_at: Option<DateTime<Utc>>,
    restored_from_state: bool,
}

/// Monotonic now from tokio's clock (pausable in tests).
fn mono_now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Limiter {
    /// Builds the limiter at `RATE_LIMIT_INITIAL`, or at the persisted ceiling when a usable
    /// state file exists (reference §3.5).
    pub fn new(settings: &RateLimitSettings, metrics: Arc<Metrics>, variant: &str) -> Self {
        Self::with_window(settings, metrics, variant, WINDOW)
    }

    /// As [`Limiter::new`] with a different controller window (tests only use this; the
    /// binary always runs with the 30 s window).
    pub fn with_window(
        settings: &RateLimitSettings,
        metrics: Arc<Metrics>,
        variant: &str,
        window: Duration,
    ) -> Self {
        let params = ControllerParams {
            initial: settings.initial,
            min: settings.min,
            max: settings.max,
            alpha: settings.ceiling_alpha,
            hold_margin: settings.hold_margin,
            probe_interval: settings.probe_interval,
            window,
        };
        let mut control = Control {
            controller: Controller::new(params, mono_now()),
            ceiling_updated_at: None,
            restored_from_state: false,
        };
        if let Some(path) = &settings.state_file {
            restore(&mut control, path, settings.state_max_age);
        }
        let c = &control.controller;
        let rate = c.current_rate();
        tracing::info!(
            "Rate limiter: rate={rate:.2} req/s (initial {:.2}, min {:.2}, max {:.2}), ceiling={:.2} req/s, alpha={}, hold margin={}, probe every {} windows",
            settings.initial,
            settings.min,
            settings.max,
            c.ceiling(),
            settings.ceiling_alpha,
            settings.hold_margin,
            settings.probe_interval
        );
        metrics
            .rate_limit_requests_per_second
            .with_label_values(&[variant])
            .set(rate);
        Self {
            settings: settings.clone(),
            metrics,
            variant: variant.to_owned(),
            control: Mutex::new(control),
            bucket: SwappableBucket::new(rate),
            admission: admission::FairAdmission::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the request may go upstream; never rejects. Requests queue fairly per
    /// source bucket; dropping the future (client gone) takes the request out of the queue.
    pub async fn admit(&self, source: SourceBucket) -> Admission {
        let started = tokio::time::Instant::now();
        self.admission
            .admit(source.index(), || self.bucket.acquire())
            .await;
        let waited = started.elapsed();
        self.metrics
            .rate_limit_wait_seconds
            .with_label_values(&[&self.variant, source.label()])
            .observe(waited.as_secs_f64());
        Admission { waited }
    }

    /// Requests currently queued for admission.
    pub fn queued(&self) -> usize {
        self.admission.queued()
    }

    /// Values for `/health`.
    pub fn snapshot(&self) -> RateLimitSnapshot {
        let control = self.lock();
        let c = &control.controller;
        RateLimitSnapshot {
            current_rate: c.current_rate(),
            ceiling: c.ceiling(),
            hold: c.hold(),
            ceiling_updated_at: control.ceiling_updated_at,
            state_file: self
                .settings
                .state_file
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            restored_from_state: control.restored_from_state,
        }
    }

    /// A request's final upstream status was 2xx.
    pub fn record_success(&self) {
        self.record(Feedback::Success);
    }

    /// The upstream answered 429 of a class that feeds the controller.
    pub fn record_429(&self) {
        self.record(Feedback::TooManyRequests);
    }

    fn record(&self, feedback: Feedback) {
        let persist = {
            let mut control = self.lock();
            let Some(step) = control.controller.record(feedback, mono_now()) else {
                return;
            };
            if matches!(step.decision, Decision::Decrease { .. }) {
                control.ceiling_updated_at = Some(Utc::now());
            }
            // Swap under the lock so two adjustments can never apply out of order.
            self.apply(&step, &control.controller);
            match step.decision {
                Decision::Decrease {
                    new_ceiling, rate, ..
                } => Some(CeilingState {
                    ceiling: new_ceiling,
                    hold: rate,
                    ts: control.ceiling_updated_at,
                }),
                _ => None,
            }
        };
        if let (Some(snapshot), Some(path)) = (persist, &self.settings.state_file) {
            // Best effort, outside the lock; at most once per window.
            match state::save(path, &snapshot) {
                Ok(()) => tracing::info!(
                    "Rate limit: persisted ceiling {:.2} req/s (hold {:.2}) to {}",
                    snapshot.ceiling,
                    snapshot.hold,
                    path.display()
                ),
                Err(e) => tracing::warn!(
                    "Rate limit: failed to persist ceiling state to {}: {e}",
                    path.display()
                ),
            }
        }
    }

    fn apply(&self, step: &Step, controller: &Controller) {
        match &step.decision {
            Decision::Decrease {
                old_ceiling,
                new_ceiling,
                rate,
                error_ratio,
            } => tracing::warn!(
                "Rate limit: Ceiling updated {old_ceiling:.2} → {new_ceiling:.2} req/s, holding at {rate:.2} req/s (429 rate: {:.2}%)",
                error_ratio * 100.0
            ),
            Decision::Probe {
                rate,
                ceiling,
                clean_windows,
            } => tracing::info!(
                "Rate limit: Probing ceiling at {rate:.2} req/s (estimated ceiling: {ceiling:.2}, clean windows: {clean_windows})"
            ),
            Decision::Converge {
                rate,
                target,
                ceiling,
            } => tracing::info!(
                "Rate limit: Converging to {rate:.2} req/s (target: {target:.2}, ceiling: {ceiling:.2})"
            ),
            Decision::Unchanged => {}
        }
        if let Some(direction) = step.decision.direction() {
            self.metrics
                .rate_limit_adjustments_total
                .with_label_values(&[direction, &self.variant])
                .inc();
        }
        if step.rate_changed {
            let rate = controller.current_rate();
            self.bucket.set_rate(rate, Fill::Empty);
            self.metrics
                .rate_limit_requests_per_second
                .with_label_values(&[&self.variant])
                .set(rate);
        }
    }

    /// Admin reset (reference §3.6): rate and ceiling to `RATE_LIMIT_INITIAL`, a fresh full
    /// bucket (waiters re-check at once), the state file deleted. Returns the new rate.
    pub fn reset(&self) -> f64 {
        let (rate, ceiling) = {
            let mut control = self.lock();
            control.controller.reset(mono_now());
            control.ceiling_updated_at = None;
            control.restored_from_state = false;
            let rate = control.controller.current_rate();
            self.bucket.set_rate(rate, Fill::Full);
            (rate, control.controller.ceiling())
        };
        self.metrics
            .rate_limit_requests_per_second
            .with_label_values(&[&self.variant])
            .set(rate);
        tracing::info!("Rate limiter reset: rate={rate:.1}, ceiling={ceiling:.1}");
        if let Some(path) = &self.settings.state_file
            && let Err(e) = state::remove(path)
        {
            tracing::warn!(
                "Rate limit: failed to delete ceiling state {}: {e}",
                path.display()
            );
        }
        rate
    }
}

fn restore(control: &mut Control, path: &std::path::Path, max_age: Duration) {
    match state::load(path, max_age, Utc::now()) {
        Restore::Missing => tracing::info!(
            "Rate limit: no ceiling state at {}, starting from RATE_LIMIT_MAX",
            path.display()
        ),
        Restore::Ignored(why) => tracing::warn!(
            "Rate limit: ignoring ceiling state {} ({why}), starting from RATE_LIMIT_MAX",
            path.display()
        ),
        Restore::Restored { state, learned_at } => {
            control
                .controller
                .restore(state.ceiling, state.hold, mono_now());
            control.ceiling_updated_at = learned_at;
            control.restored_from_state = true;
            tracing::info!(
                "Rate limit: restored ceiling {:.2} req/s (hold {:.2}) from {}",
                control.controller.ceiling(),
                control.controller.current_rate(),
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests;
