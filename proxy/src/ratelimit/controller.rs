//! The adaptive rate controller (reference §3.4): a pure state machine.
//!
//! It learns an EWMA estimate of the upstream's request-rate ceiling from 429 feedback and
//! decides the admission rate. It owns no clock and does no IO: every input carries the
//! monotonic time of the event, and every output is a value the caller applies (new rate,
//! log line, metric, persistence). Windows are evaluated lazily: a window only closes when
//! the next event arrives at least one window (`RATE_LIMIT_WINDOW`) after the last
//! adjustment.

use std::time::{Duration, Instant};

use crate::config::CeilingSample;

/// Smallest upward step while converging toward the hold point, in req/s.
pub const MIN_CONVERGE_STEP: f64 = 0.25;

/// Error ratio above which a window lowers the ceiling.
const DECREASE_ABOVE: f64 = 0.05;

/// Error ratio below which a window counts as clean.
const CLEAN_BELOW: f64 = 0.01;

/// Tuning of the controller (RATE_LIMIT_* settings).
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerParams {
    /// Starting rate and the reset target, req/s.
    pub initial: f64,
    /// Lower bound of the rate, req/s.
    pub min: f64,
    /// Upper bound of the rate and the initial ceiling estimate, req/s.
    pub max: f64,
    /// EWMA weight of the current rate when a window lowers the ceiling, in (0, 1].
    pub alpha: f64,
    /// Hold below / probe above the ceiling by this fraction, in (0, 1).
    pub hold_margin: f64,
    /// Clean windows between probes (0 disables probing).
    pub probe_interval: u32,
    /// Window length (`RATE_LIMIT_WINDOW`,
    /// [`DEFAULT_RATE_LIMIT_WINDOW`](crate::config::DEFAULT_RATE_LIMIT_WINDOW) by default).
    pub window: Duration,
    /// What a > 5 % window takes as its ceiling sample (`RATE_LIMIT_CEILING_SAMPLE`).
    pub sample: CeilingSample,
}

// The setting's type lives in `config` (the bottom layer); the arithmetic is the
// controller's.
impl CeilingSample {
    /// The sample for a window at `rate` with `error_ratio` 429s.
    pub fn of(self, rate: f64, error_ratio: f64) -> f64 {
        match self {
            CeilingSample::Rate => rate,
            CeilingSample::Goodput => rate * (1.0 - error_ratio.clamp(0.0, 1.0)),
        }
    }
}

/// One feedback event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    /// A request whose final upstream status was 2xx.
    Success,
    /// An upstream 429 of a class that signals request frequency.
    TooManyRequests,
}

/// What a closed window decided. Every variant except [`Decision::Unchanged`] carries the
/// numbers the caller needs for its log line.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// More than 5 % 429s: the ceiling was lowered and the rate set just below it.
    Decrease {
        /// Ceiling before the window.
        old_ceiling: f64,
        /// Ceiling after the EWMA update.
        new_ceiling: f64,
        /// The rate now in force.
        rate: f64,
        /// Share of 429s in the window, 0..=1.
        error_ratio: f64,
    },
    /// A clean window after `probe_interval` clean windows: rate set just above the ceiling.
    Probe {
        /// The probing rate now in force.
        rate: f64,
        /// The current ceiling estimate.
        ceiling: f64,
        /// Clean windows counted before this probe.
        clean_windows: u32,
    },
    /// A clean window below the hold point: rate stepped toward it.
    Converge {
        /// The rate now in force.
        rate: f64,
        /// The hold point being approached.
        target: f64,
        /// The current ceiling estimate.
        ceiling: f64,
    },
    /// The window closed without a rate change (clean at/above hold, or 1–5 % 429s).
    Unchanged,
}

impl Decision {
    /// Value of the `direction` label of `zai_proxy_rate_limit_adjustments_total`, if any.
    pub fn direction(&self) -> Option<&'static str> {
        match self {
            Decision::Decrease { .. } => Some("decrease"),
            Decision::Probe { .. } => Some("probe"),
            Decision::Converge { .. } => Some("increase"),
            Decision::Unchanged => None,
        }
    }
}

/// Outcome of feeding one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// What the window decided.
    pub decision: Decision,
    /// Whether the rate differs from before (the caller must swap its bucket).
    pub rate_changed: bool,
}

/// The controller state.
#[derive(Debug, Clone)]
pub struct Controller {
    params: ControllerParams,
    current_rate: f64,
    ceiling: f64,
    clean_windows: u32,
    too_many: u64,
    successes: u64,
    last_adjustment: Instant,
}

/// Clamp that tolerates `min > max` (the upper bound wins) and NaN (mapped to `min`).
fn clamp(value: f64, min: f64, max: f64) -> f64 {
    if value.is_nan() {
        return min.min(max);
    }
    value.max(min).min(max)
}

impl Controller {
    /// A controller at the initial rate with the ceiling assumed at `max` ("assume max until
    /// learned"), starting its first window at `now`.
    pub fn new(params: ControllerParams, now: Instant) -> Self {
        let current_rate = clamp(params.initial, params.min, params.max);
        let ceiling = params.max;
        Controller {
            params,
            current_rate,
            ceiling,
            clean_windows: 0,
            too_many: 0,
            successes: 0,
            last_adjustment: now,
        }
    }

    /// The rate in force, req/s.
    pub fn current_rate(&self) -> f64 {
        self.current_rate
    }

    /// The EWMA ceiling estimate, req/s.
    pub fn ceiling(&self) -> f64 {
        self.ceiling
    }

    /// The hold point: clamp(ceiling × (1 − margin), min, max).
    pub fn hold(&self) -> f64 {
        clamp(
            self.ceiling * (1.0 - self.params.hold_margin),
            self.params.min,
            self.params.max,
        )
    }

    /// Clean windows counted since the last probe or decrease.
    pub fn clean_windows(&self) -> u32 {
        self.clean_windows
    }

    /// The parameters in use.
    pub fn params(&self) -> &ControllerParams {
        &self.params
    }

    /// Records one event at `now`; returns the window decision when the event closed a window.
    pub fn record(&mut self, feedback: Feedback, now: Instant) -> Option<Step> {
        match feedback {
            Feedback::Success => self.successes += 1,
            Feedback::TooManyRequests => self.too_many += 1,
        }
        self.try_adjust(now)
    }

    fn try_adjust(&mut self, now: Instant) -> Option<Step> {
        if now.saturating_duration_since(self.last_adjustment) < self.params.window {
            return None;
        }
        let too_many = std::mem::take(&mut self.too_many);
        let total = too_many + std::mem::take(&mut self.successes);
        if total == 0 {
            return None;
        }
        let error_ratio = too_many as f64 / total as f64;
        let old_rate = self.current_rate;
        let p = &self.params;
        let decision = if error_ratio > DECREASE_ABOVE {
            let old_ceiling = self.ceiling;
            let sample = p.sample.of(self.current_rate, error_ratio);
            self.ceiling = p.alpha * sample + (1.0 - p.alpha) * self.ceiling;
            self.clean_windows = 0;
            self.current_rate = (self.ceiling * (1.0 - p.hold_margin)).max(p.min);
            Decision::Decrease {
                old_ceiling,
                new_ceiling: self.ceiling,
                rate: self.current_rate,
                error_ratio,
            }
        } else if error_ratio < CLEAN_BELOW {
            self.clean_windows += 1;
            let target = self.ceiling * (1.0 - p.hold_margin);
            if p.probe_interval > 0
                && self.clean_windows >= p.probe_interval
                && self.current_rate < p.max
            {
                let clean_windows = self.clean_windows;
                self.current_rate = (self.ceiling * (1.0 + p.hold_margin)).min(p.max);
                self.clean_windows = 0;
                Decision::Probe {
                    rate: self.current_rate,
                    ceiling: self.ceiling,
                    clean_windows,
                }
            } else if self.current_rate < target {
                let step = (0.5 * (target - self.current_rate)).max(MIN_CONVERGE_STEP);
                self.current_rate = (self.current_rate + step).min(target);
                Decision::Converge {
                    rate: self.current_rate,
                    target,
                    ceiling: self.ceiling,
                }
            } else {
                Decision::Unchanged
            }
        } else {
            Decision::Unchanged
        };
        self.last_adjustment = now;
        Some(Step {
            rate_changed: self.current_rate != old_rate,
            decision,
        })
    }

    /// Admin reset (reference §3.6): rate and ceiling both to `initial`, counters zeroed, a
    /// new window starting at `now`.
    pub fn reset(&mut self, now: Instant) {
        let p = &self.params;
        self.current_rate = clamp(p.initial, p.min, p.max);
        self.ceiling = self.current_rate;
        self.clean_windows = 0;
        self.too_many = 0;
        self.successes = 0;
        self.last_adjustment = now;
    }

    /// Adopts the rate and ceiling another replica published (shared budget): both clamped
    /// to [min, max] (a probing rate may stand above the ceiling), clean windows and
    /// counters zeroed, a new window starting at `now` — so the replicas that saw the same
    /// 429s do not lower the ceiling again for them.
    pub fn adopt(&mut self, ceiling: f64, rate: f64, now: Instant) {
        let p = &self.params;
        self.ceiling = clamp(ceiling, p.min, p.max);
        self.current_rate = clamp(rate, p.min, p.max);
        self.clean_windows = 0;
        self.too_many = 0;
        self.successes = 0;
        self.last_adjustment = now;
    }

    /// Restores a persisted ceiling (reference §3.5): ceiling clamped to [min, max], rate
    /// clamped to [min, ceiling], clean windows zeroed, a new window starting at `now`.
    pub fn restore(&mut self, ceiling: f64, hold: f64, now: Instant) {
        let p = &self.params;
        self.ceiling = clamp(ceiling, p.min, p.max);
        self.current_rate = clamp(hold, p.min, self.ceiling);
        self.clean_windows = 0;
        self.too_many = 0;
        self.successes = 0;
        self.last_adjustment = now;
    }
}

/// Token-bucket burst for a rate: ⌊2r⌋, at least 1 when r > 0, 0 otherwise.
pub fn burst_for(rate: f64) -> u32 {
    if rate.is_nan() || rate <= 0.0 {
        return 0;
    }
    let burst = (2.0 * rate).floor();
    if burst >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        (burst as u32).max(1)
    }
}

#[cfg(test)]
mod tests;
