//! One tick: evaluate, remember, decide.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::checks::evaluate_check;
use super::history::History;
use super::sample::{Sample, Status};
use super::snapshot::{RunContext, Snapshot};
use super::triggers::evaluate_trigger;
use crate::catalog::{CheckId, Phase, TriggerId};
use crate::config::{Config, NoDataPolicy};
use crate::platform::Variant;

/// What the driver does after a tick.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Keep sampling; `waiting` lists the checks not yet passing.
    Hold {
        /// "rollout.error_rate: no_data — 12 requests < 50".
        waiting: Vec<String>,
    },
    /// Every check of the phase passes (and phase 4 observed long enough).
    Passed,
    /// End the run without (further) changes: before the rollout production is untouched;
    /// after it (no-data policy `keep`) production stays on the new version.
    Abort {
        /// Why.
        reason: String,
    },
    /// Roll production back.
    Rollback {
        /// Why.
        reason: String,
        /// The trigger that fired, if one did.
        trigger: Option<TriggerId>,
    },
}

fn elapsed(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or(Duration::ZERO)
}

/// Evaluates the phase's checks (and, in phases 3–4, the triggers) on `snap`, records the
/// samples in `history`, and decides.
pub fn tick(
    config: &Config,
    ctx: &RunContext,
    history: &mut History,
    phase: Phase,
    phase_started: DateTime<Utc>,
    snap: &Snapshot,
) -> Decision {
    if let Some(Ok(pods)) = snap.pods.get(&Variant::Production) {
        history.note_pods(pods, ctx.rollout_started);
    }
    super::compare::freeze_latency_boundary(config, history, snap);
    let samples: Vec<(CheckId, Sample)> = config
        .phase_checks(phase)
        .map(|spec| (spec.id, evaluate_check(spec, config, ctx, history, snap)))
        .collect();
    for (id, s) in samples {
        history.record_check(id, s);
    }
    let mut fired = Vec::new();
    if matches!(phase, Phase::Rollout | Phase::Post) {
        fired = observe_triggers(config, ctx, history, snap);
    }
    if let Some(workers) = &snap.workers {
        history.note_workers(snap.at, workers);
    }
    decide(config, history, phase, phase_started, snap.at, &fired)
}

/// Evaluates every trigger once and returns the ids that fired on this sample.
pub(crate) fn observe_triggers(
    config: &Config,
    ctx: &RunContext,
    history: &mut History,
    snap: &Snapshot,
) -> Vec<TriggerId> {
    let mut fired = Vec::new();
    for spec in &config.triggers {
        let sample = evaluate_trigger(spec, config, ctx, history, snap);
        let state = history.triggers.entry(spec.id).or_default();
        if state.observe(sample, spec.hold_for) {
            fired.push(spec.id);
        }
    }
    fired
}

/// The decision for a phase given what has been recorded (pure).
pub fn decide(
    config: &Config,
    history: &History,
    phase: Phase,
    phase_started: DateTime<Utc>,
    now: DateTime<Utc>,
    fired: &[TriggerId],
) -> Decision {
    let after_rollout = matches!(phase, Phase::Rollout | Phase::Post);
    if let Some(&id) = fired.first() {
        let state = history.triggers.get(&id);
        let spec = config.trigger(id);
        let detail = state
            .and_then(|s| s.last.as_ref())
            .map(|s| format!("{} ({})", s.observed, s.threshold))
            .unwrap_or_default();
        let since = state
            .and_then(|s| s.first_seen)
            .map(|t| format!(", held since {}", t.format("%H:%M:%S")))
            .unwrap_or_default();
        return Decision::Rollback {
            reason: format!(
                "{id} fired: {} — {detail}{since}",
                spec.map(|s| s.title).unwrap_or_default()
            ),
            trigger: Some(id),
        };
    }
    let end = |reason: String| -> Decision {
        if after_rollout && config.no_data_after_rollout == NoDataPolicy::Rollback {
            Decision::Rollback {
                reason,
                trigger: None,
            }
        } else {
            Decision::Abort { reason }
        }
    };
    let mut waiting = Vec::new();
    // A skipped check (disabled, or not evaluable here) is reported as skipped and never
    // stands in for a pass: a sampled phase passes only on at least one check's evidence.
    let mut evidence = false;
    for spec in config.phase_checks(phase) {
        let Some(h) = history.check(spec.id) else {
            waiting.push(format!("{}: not sampled", spec.id));
            continue;
        };
        let Some(last) = h.last() else { continue };
        match last.status {
            Status::Pass => evidence = true,
            Status::Skipped | Status::Pending => {}
            Status::Fail if phase == Phase::Pre => {
                return Decision::Abort {
                    reason: format!("{} failed: {}", spec.id, last.summary()),
                };
            }
            // A judged comparison's failure is a confident verdict: undo at once.
            Status::Fail if after_rollout && super::compare::is_judged(spec.id) => {
                return Decision::Rollback {
                    reason: format!("{} failed: {}", spec.id, last.summary()),
                    trigger: None,
                };
            }
            Status::Fail => waiting.push(format!("{}: {}", spec.id, last.summary())),
            Status::Inconclusive => {
                // Phase 3's comparison waits for its verdict as long as both versions serve
                // (then it is not evaluated); only phase 1 ends on insufficient evidence.
                if phase == Phase::Pre && elapsed(phase_started, now) >= config.judge.deadline {
                    return end(format!(
                        "insufficient evidence: {} still inconclusive after {} ([judge] deadline): {}",
                        spec.id,
                        crate::duration_serde::human(config.judge.deadline),
                        last.summary()
                    ));
                }
                waiting.push(format!("{}: {}", spec.id, last.summary()));
            }
            Status::NoData => {
                let since = h.no_data_since.unwrap_or(last.at);
                if elapsed(since, now) >= config.no_data_deadline {
                    return end(format!(
                        "{} had no data for {} (no_data_deadline): {}",
                        spec.id,
                        crate::duration_serde::human(elapsed(since, now)),
                        last.summary()
                    ));
                }
                waiting.push(format!("{}: {}", spec.id, last.summary()));
            }
            Status::Error => {
                if h.consecutive_errors > config.max_consecutive_errors {
                    return end(format!(
                        "{}: {} provider errors in a row (max_consecutive_errors {}): {}",
                        spec.id,
                        h.consecutive_errors,
                        config.max_consecutive_errors,
                        last.summary()
                    ));
                }
                waiting.push(format!("{}: {}", spec.id, last.summary()));
            }
        }
    }
    let observed = elapsed(phase_started, now);
    let sampled = matches!(phase, Phase::Pre | Phase::Rollout | Phase::Post);
    if waiting.is_empty() && sampled && !evidence {
        return end(format!(
            "no evidence: no check of {} passed (every one was skipped or disabled)",
            phase.title()
        ));
    }
    if waiting.is_empty() && (phase != Phase::Post || observed >= config.post_min_duration) {
        return Decision::Passed;
    }
    let deadline = match phase {
        Phase::Rollout => Some(config.rollout_deadline),
        Phase::Post => Some(config.post_deadline),
        _ => None,
    };
    if let Some(d) = deadline
        && observed >= d
    {
        return Decision::Rollback {
            reason: format!(
                "{} did not pass within {}: {}",
                phase.title(),
                crate::duration_serde::human(d),
                waiting.join("; ")
            ),
            trigger: None,
        };
    }
    Decision::Hold { waiting }
}
