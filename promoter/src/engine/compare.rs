//! The checks the judge decides: the canary against production on counts since a fixed start
//! (`[judge] lookback` before the run began), re-evaluated every tick with anytime-valid
//! verdicts (see [`super::judge`] and docs/DECISIONS.md).
//!
//! * `pre.canary_error_rate` — 5xx answers out of requests, per variant.
//! * `pre.canary_stream_cuts` — requests answered with a stream that upstream cut (no
//!   terminal event: the client got a truncated answer) out of requests, per variant
//!   (`zai_proxy_streams_total{outcome="upstream_cut"}`). A cut that comes fast is invisible
//!   to the other two. Out of requests, not out of streams: a workload that streams rarely (or
//!   never) gets its verdict as fast as the error comparison, instead of waiting for hundreds
//!   of streams; a canary that cuts 20 % of streams where half the requests stream still
//!   truncates 10 % of all answers.
//! * `pre.canary_latency` — requests slower than a fixed histogram bound out of requests: the
//!   bound is chosen once from production's own histogram (the bucket bound whose share of
//!   slower production requests is nearest `[judge] latency_tail`) and then kept, so every look
//!   asks the same question. It works from bucket counts alone, so Prometheus histograms and
//!   scraped ones give the same answer.
//!
//! * `rollout.new_version_errors` (phase 3) — 5xx answers out of requests of production's
//!   pods, the new version's against the old version's ([`Cohort`]), since the image change,
//!   while both serve. A confident failure rolls back at once; a pass counts as evidence;
//!   still inconclusive when no old-version pod is Ready any more, it is "not evaluated"
//!   (skipped, with the counts): a rollout that replaces every pod in seconds leaves too few
//!   old-version requests to compare, and that is no reason to hold or undo it.
//!
//! A source that has nothing yet (no scrape pair, an empty vector) counts as zero trials: the
//! verdict is inconclusive and the run waits, up to `[judge] deadline` in phase 1 (in phase 3
//! the rollout's own deadline applies).

use std::time::Duration;

use super::history::History;
use super::judge::{self, Proportion, Tolerance, Verdict};
use super::sample::{Sample, Status};
use super::snapshot::RunContext;
use super::snapshot::Snapshot;
use crate::catalog::{CheckId, Phase, PreCheck, RolloutCheck};
use crate::config::{CheckSpec, Config};
use crate::platform::Variant;
use crate::signals::{Cohort, Reading, Signal, SignalQuery};

/// The 5xx comparison.
pub const ERRORS: CheckId = CheckId::Pre(PreCheck::CanaryErrorRate);
/// The latency comparison.
pub const LATENCY: CheckId = CheckId::Pre(PreCheck::CanaryLatency);
/// The cut-stream comparison.
pub const STREAM_CUTS: CheckId = CheckId::Pre(PreCheck::CanaryStreamCuts);
/// The rollout's new-version-against-old-version 5xx comparison.
pub const NEW_VERSION_ERRORS: CheckId = CheckId::Rollout(RolloutCheck::NewVersionErrors);

/// Whether the judge decides this check.
pub fn is_judged(id: CheckId) -> bool {
    id == ERRORS || id == LATENCY || id == STREAM_CUTS || id == NEW_VERSION_ERRORS
}

fn q(signal: Signal, variant: Variant, window: Duration) -> SignalQuery {
    SignalQuery::new(signal, variant, window)
}

/// The judge's window at `elapsed` into `phase`: in phase 1 look-back plus elapsed (the run
/// started with phase 1); in phase 3 elapsed since the image change plus one interval (so a
/// scraping source's pair before the change is inside). Whole seconds, at least two intervals
/// (a scraping source needs two scrapes).
pub fn judge_window(config: &Config, phase: Phase, elapsed: Duration) -> Duration {
    let before = match phase {
        Phase::Rollout => config.interval,
        _ => config.judge.lookback,
    };
    let secs = (before + elapsed).as_secs_f64().ceil() as u64;
    Duration::from_secs(secs).max(config.interval * 2)
}

/// The signal queries of `phase`'s enabled judged checks over `window`.
pub fn judge_queries(config: &Config, phase: Phase, window: Duration) -> Vec<SignalQuery> {
    let mut out = Vec::new();
    for spec in config.judged_checks().filter(|c| c.phase == phase) {
        if spec.id == NEW_VERSION_ERRORS {
            for cohort in [Cohort::NewVersion, Cohort::OldVersion] {
                let p = Variant::Production;
                out.push(q(Signal::RequestCount, p, window).of(cohort));
                out.push(q(Signal::ErrorCount, p, window).of(cohort));
            }
            continue;
        }
        for v in [Variant::Test, Variant::Production] {
            match spec.id {
                ERRORS => {
                    out.push(q(Signal::RequestCount, v, window));
                    out.push(q(Signal::ErrorCount, v, window));
                }
                LATENCY => out.push(q(Signal::LatencyBuckets, v, window)),
                STREAM_CUTS => {
                    out.push(q(Signal::RequestCount, v, window));
                    out.push(q(Signal::StreamCutCount, v, window));
                }
                _ => {}
            }
        }
    }
    out
}

/// A count for the judge: a value, or zero with the reason (nothing yet is no evidence).
fn count(snap: &Snapshot, query: SignalQuery, s: &mut Sample) -> Result<f64, ()> {
    let of = match query.cohort {
        Cohort::All => query.variant.to_string(),
        cohort => format!("{} {}", query.variant, cohort.label()),
    };
    match snap.measurements.get(&query).map(|m| &m.reading) {
        Some(Reading::Value(v)) => Ok(*v),
        Some(Reading::NoData(why)) => {
            s.evidence
                .push(format!("{} of {of}: {why} (counted as 0)", query.signal));
            Ok(0.0)
        }
        Some(Reading::Error(e)) => {
            s.status = Status::Error;
            s.evidence.push(format!("{} of {of}: {e}", query.signal));
            Err(())
        }
        Some(Reading::Buckets(_)) => {
            s.status = Status::Error;
            s.evidence.push(format!(
                "{}: buckets where a number was expected",
                query.signal
            ));
            Err(())
        }
        None => {
            s.evidence.push(format!(
                "{} of {of} was not collected (counted as 0)",
                query.signal
            ));
            Ok(0.0)
        }
    }
}

/// Histogram buckets for the judge: the buckets, or none with the reason.
fn buckets(snap: &Snapshot, query: SignalQuery, s: &mut Sample) -> Result<Vec<(f64, f64)>, ()> {
    match snap.measurements.get(&query).map(|m| &m.reading) {
        Some(Reading::Buckets(b)) => Ok(b.clone()),
        Some(Reading::Error(e)) => {
            s.status = Status::Error;
            s.evidence
                .push(format!("{} of {}: {e}", query.signal, query.variant));
            Err(())
        }
        Some(Reading::NoData(why)) => {
            s.evidence
                .push(format!("{} of {}: {why}", query.signal, query.variant));
            Ok(Vec::new())
        }
        Some(Reading::Value(_)) | None => {
            s.evidence.push(format!(
                "{} of {} was not collected",
                query.signal, query.variant
            ));
            Ok(Vec::new())
        }
    }
}

/// Total observations of a cumulative histogram (its `+Inf` bucket, else its largest).
fn total(b: &[(f64, f64)]) -> f64 {
    b.last().map(|x| x.1).unwrap_or(0.0)
}

/// Observations slower than `bound`: total minus the cumulative count at the largest bucket
/// bound ≤ `bound`.
pub fn slower_than(b: &[(f64, f64)], bound: f64) -> f64 {
    let at = b
        .iter()
        .filter(|(le, _)| *le <= bound)
        .map(|x| x.1)
        .next_back()
        .unwrap_or(0.0);
    (total(b) - at).max(0.0)
}

/// The finite bucket bound whose share of slower observations is nearest `tail` (ties: the
/// larger bound). `None` without observations or finite bounds.
pub fn choose_latency_boundary(b: &[(f64, f64)], tail: f64) -> Option<f64> {
    let n = total(b);
    if n <= 0.0 {
        return None;
    }
    b.iter()
        .filter(|(le, _)| le.is_finite())
        .map(|(le, c)| (*le, ((n - c) / n - tail).abs()))
        .min_by(|x, y| x.1.total_cmp(&y.1).then(y.0.total_cmp(&x.0)))
        .map(|x| x.0)
}

/// Fixes the latency boundary once production has `min_requests` in the judge's window.
pub fn freeze_latency_boundary(config: &Config, history: &mut History, snap: &Snapshot) {
    if history.latency_boundary.is_some() {
        return;
    }
    let Some(window) = snap.judge_window else {
        return;
    };
    let query = q(Signal::LatencyBuckets, Variant::Production, window);
    if let Some(Reading::Buckets(b)) = snap.measurements.get(&query).map(|m| &m.reading)
        && total(b) >= config.min_requests as f64
    {
        history.latency_boundary = choose_latency_boundary(b, config.judge.latency_tail);
    }
}

/// The two sides of a comparison: whose requests, and how reports name them.
#[derive(Clone, Copy)]
struct Sides {
    candidate: (Variant, Cohort, &'static str),
    baseline: (Variant, Cohort, &'static str),
}

/// Phase 1: the canary deployment against production.
const CANARY_VS_PRODUCTION: Sides = Sides {
    candidate: (Variant::Test, Cohort::All, "canary"),
    baseline: (Variant::Production, Cohort::All, "production"),
};

/// Phase 3: production's pods of the new version against those of the old one.
const NEW_VS_OLD: Sides = Sides {
    candidate: (Variant::Production, Cohort::NewVersion, "new version"),
    baseline: (Variant::Production, Cohort::OldVersion, "old version"),
};

fn apply(s: &mut Sample, c: judge::Comparison, sides: Sides) {
    s.status = match c.verdict {
        Verdict::Pass => Status::Pass,
        Verdict::Fail => Status::Fail,
        Verdict::Inconclusive => Status::Inconclusive,
    };
    s.value = Some(c.effect);
    s.observed = format!(
        "{} {:.2} % vs {} {:.2} %",
        sides.candidate.2,
        c.canary.estimate() * 100.0,
        sides.baseline.2,
        c.baseline.estimate() * 100.0
    );
    s.threshold = c.tolerance.describe_against(sides.baseline.2);
    s.evidence
        .insert(0, c.summary_as(sides.candidate.2, sides.baseline.2));
    s.comparison = Some(Box::new(c));
}

/// Judges `events` out of requests, one side against the other, into `s`; false (and `s`
/// left inconclusive or in error, with the reason) when a count could not be read.
#[allow(clippy::too_many_arguments)]
fn compare_counts(
    s: &mut Sample,
    snap: &Snapshot,
    sides: Sides,
    events: Signal,
    window: Duration,
    tol: Tolerance,
    alpha: f64,
) -> bool {
    let mut side = |(v, cohort, _): (Variant, Cohort, &str)| -> Result<Proportion, ()> {
        let n = count(snap, q(Signal::RequestCount, v, window).of(cohort), s)?;
        let e = count(snap, q(events, v, window).of(cohort), s)?;
        Ok(Proportion::new(e, n))
    };
    let (Ok(c), Ok(b)) = (side(sides.candidate), side(sides.baseline)) else {
        return false;
    };
    apply(s, judge::compare(c, b, tol, alpha), sides);
    true
}

/// Whether a Ready production pod of another version than `to_version` is in the snapshot
/// (`None` when the pods could not be listed).
fn old_version_serving(snap: &Snapshot, to_version: &str) -> Option<bool> {
    let pods = snap.pods.get(&Variant::Production)?.as_ref().ok()?;
    Some(
        pods.iter()
            .any(|p| p.ready && p.version.as_deref().is_some_and(|v| v != to_version)),
    )
}

/// Evaluates a judged check (pure).
pub fn evaluate(
    spec: &CheckSpec,
    config: &Config,
    ctx: &RunContext,
    history: &History,
    snap: &Snapshot,
) -> Sample {
    if spec.id != NEW_VERSION_ERRORS {
        return evaluate_on(spec, config, history, snap);
    }
    if ctx.dry_run {
        return Sample::skipped(snap.at, "dry run: no pod of the new version to compare");
    }
    let Some(to_version) = ctx.to_version.as_deref() else {
        return Sample::skipped(snap.at, "no version is being rolled out");
    };
    let s = evaluate_on(spec, config, history, snap);
    if s.status != Status::Inconclusive || old_version_serving(snap, to_version) != Some(false) {
        return s;
    }
    // Still inconclusive and the old version no longer serves: not evaluated, with what
    // was counted (a final verdict on the same counts later still counts).
    let mut s = s;
    let counts = s.evidence.join("; ");
    s.status = Status::Skipped;
    s.threshold.clear();
    s.evidence = vec![format!(
        "not evaluated: no old-version pod serves any more and the comparison was not conclusive ({counts})"
    )];
    s
}

fn evaluate_on(spec: &CheckSpec, config: &Config, history: &History, snap: &Snapshot) -> Sample {
    let mut s = Sample::new(Status::Inconclusive, snap.at);
    let Some(window) = snap.judge_window else {
        s.evidence
            .push("the judge's window was not set for this tick".into());
        return s;
    };
    s.window = Some(window);
    let alpha = config.judge_alpha_per_check();
    match spec.id {
        ERRORS => {
            s.source = format!(
                "judge: 5xx / requests per variant since {} before now",
                crate::duration_serde::human(window)
            );
            let tol = config.judge.errors.into();
            let sides = CANARY_VS_PRODUCTION;
            compare_counts(&mut s, snap, sides, Signal::ErrorCount, window, tol, alpha);
        }
        NEW_VERSION_ERRORS => {
            s.source = format!(
                "judge: 5xx / requests of production pods, new version against old version, since {} before now",
                crate::duration_serde::human(window)
            );
            let tol = config.judge.errors.into();
            compare_counts(
                &mut s,
                snap,
                NEW_VS_OLD,
                Signal::ErrorCount,
                window,
                tol,
                alpha,
            );
        }
        STREAM_CUTS => {
            s.source = format!(
                "judge: requests answered with a cut stream / requests per variant since {} before now",
                crate::duration_serde::human(window)
            );
            let tol = config.judge.streams.into();
            let sides = CANARY_VS_PRODUCTION;
            if compare_counts(
                &mut s,
                snap,
                sides,
                Signal::StreamCutCount,
                window,
                tol,
                alpha,
            ) {
                s.observed = format!("answers cut: {}", s.observed);
            }
        }
        LATENCY => {
            let (Ok(cb), Ok(pb)) = (
                buckets(
                    snap,
                    q(Signal::LatencyBuckets, Variant::Test, window),
                    &mut s,
                ),
                buckets(
                    snap,
                    q(Signal::LatencyBuckets, Variant::Production, window),
                    &mut s,
                ),
            ) else {
                return s;
            };
            let Some(bound) = history.latency_boundary else {
                s.evidence.push(format!(
                    "no latency boundary yet: production has {:.0} requests < min_requests {}",
                    total(&pb),
                    config.min_requests
                ));
                return s;
            };
            s.source = format!(
                "judge: requests slower than {bound} s / requests per variant (request-duration buckets) since {} before now",
                crate::duration_serde::human(window)
            );
            let c = Proportion::new(slower_than(&cb, bound), total(&cb));
            let b = Proportion::new(slower_than(&pb, bound), total(&pb));
            let tol: Tolerance = config.judge.latency.into();
            apply(
                &mut s,
                judge::compare(c, b, tol, alpha),
                CANARY_VS_PRODUCTION,
            );
            s.observed = format!("slower than {bound} s: {}", s.observed);
        }
        other => s.evidence.push(format!("{other} is not a judged check")),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_is_the_bound_nearest_the_tail_share() {
        // 100 requests: 50 ≤ 0.05 s, 85 ≤ 0.1 s, 97 ≤ 0.25 s.
        let b = vec![
            (0.05, 50.0),
            (0.1, 85.0),
            (0.25, 97.0),
            (f64::INFINITY, 100.0),
        ];
        assert_eq!(choose_latency_boundary(&b, 0.1), Some(0.1));
        assert_eq!(choose_latency_boundary(&b, 0.03), Some(0.25));
        assert_eq!(choose_latency_boundary(&[], 0.1), None);
        assert_eq!(slower_than(&b, 0.1), 15.0);
        assert_eq!(slower_than(&b, 0.2), 15.0);
        assert_eq!(slower_than(&b, 0.01), 100.0);
    }
}
