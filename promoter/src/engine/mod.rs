//! The engine: pure decisions over snapshots of signals.
//!
//! Nothing here does IO. The driver ([`crate::driver`]) collects a [`Snapshot`] per tick,
//! then calls [`tick`] which evaluates the phase's checks and the rollback triggers against the
//! run's [`History`] and returns a [`Decision`]. Tests drive it tick by tick.

mod checks;
pub mod compare;
mod decide;
mod history;
pub mod judge;
mod sample;
mod snapshot;
mod triggers;

pub use checks::{evaluate_check, queries_for_check};
pub use compare::{is_judged, judge_queries, judge_window};
pub(crate) use decide::observe_triggers;
pub use decide::{Decision, decide, tick};
pub use history::{CheckHistory, History, TriggerState};
pub use sample::{Sample, Status};
pub use snapshot::{Baseline, RunContext, Snapshot};
pub use triggers::{evaluate_trigger, queries_for_trigger};

use crate::catalog::Phase;
use crate::catalog::{CheckId, PostCheck, RolloutCheck, TriggerId};
use crate::config::Config;
use crate::platform::Variant;
use crate::signals::{Signal, SignalQuery};

/// Every signal query a tick of `phase` needs (checks, triggers, baseline).
pub fn queries_for_phase(config: &Config, phase: Phase, worker_feed: bool) -> Vec<SignalQuery> {
    let mut out: Vec<SignalQuery> = Vec::new();
    for spec in config.phase_checks(phase).filter(|c| c.enabled) {
        out.extend(queries_for_check(spec, config, worker_feed));
    }
    if matches!(phase, Phase::Rollout | Phase::Post) {
        for t in config.triggers.iter().filter(|t| t.enabled) {
            out.extend(queries_for_trigger(t, worker_feed));
        }
    }
    if phase == Phase::Pre {
        out.extend(baseline_queries(config));
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|q| seen.insert(*q));
    out
}

/// The production quantities captured before the image changes.
pub fn baseline_queries(config: &Config) -> Vec<SignalQuery> {
    let mut out = Vec::new();
    for w in p95_windows(config) {
        out.push(SignalQuery::new(
            Signal::LatencyQuantile { permille: 950 },
            Variant::Production,
            w,
        ));
    }
    if let Some(c) = config.check(CheckId::Post(PostCheck::RequestRateHealthy)) {
        out.push(SignalQuery::new(
            Signal::RequestRate,
            Variant::Production,
            c.window,
        ));
    }
    out
}

fn p95_windows(config: &Config) -> Vec<std::time::Duration> {
    let mut w = Vec::new();
    if let Some(c) = config.check(CheckId::Rollout(RolloutCheck::P95Latency)) {
        w.push(c.window);
    }
    if let Some(t) = config.trigger(TriggerId::P95Latency)
        && !w.contains(&t.window)
    {
        w.push(t.window);
    }
    w
}
