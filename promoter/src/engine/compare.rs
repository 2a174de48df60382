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
//! A source that has nothing yet (no scrape pair, an empty vector) counts as zero trials: the
//! verdict is inconclusive and the run waits, up to `[judge] deadline`.

use std::time::Duration;

use super::history::History;
use super::judge::{self, Proportion, Tolerance, Verdict};
use super::sample::{Sample, Status};
use super::snapshot::Snapshot;
use crate::catalog::{CheckId, PreCheck};
use crate::config::{CheckSpec, Config};
use crate::platform::Variant;
use crate::signals::{Reading, Signal, SignalQuery};

/// The 5xx comparison.
pub const ERRORS: CheckId = CheckId::Pre(PreCheck::CanaryErrorRate);
/// The latency comparison.
pub const LATENCY: CheckId = CheckId::Pre(PreCheck::CanaryLatency);
/// The cut-stream comparison.
pub const STREAM_CUTS: CheckId = CheckId::Pre(PreCheck::CanaryStreamCuts);

/// Whether the judge decides this check.
pub fn is_judged(id: CheckId) -> bool {
    id == ERRORS || id == LATENCY || id == STREAM_CUTS
}

fn q(signal: Signal, variant: Variant, window: Duration) -> SignalQuery {
    SignalQuery {
        signal,
        variant,
        window,
    }
}

/// The judge's window at `elapsed` into the run: look-back plus elapsed, whole seconds,
/// at least two intervals (a scraping source needs two scrapes).
pub fn judge_window(config: &Config, elapsed: Duration) -> Duration {
    let secs = (config.judge.lookback + elapsed).as_secs_f64().ceil() as u64;
    Duration::from_secs(secs).max(config.interval * 2)
}

/// The signal queries of the enabled judged checks over `window`.
pub fn judge_queries(config: &Config, window: Duration) -> Vec<SignalQuery> {
    let mut out = Vec::new();
    for spec in config.judged_checks() {
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
    match snap.measurements.get(&query).map(|m| &m.reading) {
        Some(Reading::Value(v)) => Ok(*v),
        Some(Reading::NoData(why)) => {
            s.evidence.push(format!(
                "{} of {}: {why} (counted as 0)",
                query.signal, query.variant
            ));
            Ok(0.0)
        }
        Some(Reading::Error(e)) => {
            s.status = Status::Error;
            s.evidence
                .push(format!("{} of {}: {e}", query.signal, query.variant));
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
                "{} of {} was not collected (counted as 0)",
                query.signal, query.variant
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

fn apply(s: &mut Sample, c: judge::Comparison) {
    s.status = match c.verdict {
        Verdict::Pass => Status::Pass,
        Verdict::Fail => Status::Fail,
        Verdict::Inconclusive => Status::Inconclusive,
    };
    s.value = Some(c.effect);
    s.observed = format!(
        "canary {:.2} % vs production {:.2} %",
        c.canary.estimate() * 100.0,
        c.baseline.estimate() * 100.0
    );
    s.threshold = c.tolerance.describe();
    s.evidence.insert(0, c.summary());
    s.comparison = Some(Box::new(c));
}

/// Judges `events` out of requests, canary against production, into `s`; false (and `s`
/// left inconclusive or in error, with the reason) when a count could not be read.
fn compare_counts(
    s: &mut Sample,
    snap: &Snapshot,
    events: Signal,
    window: Duration,
    tol: Tolerance,
    alpha: f64,
) -> bool {
    let mut side = |v: Variant| -> Result<Proportion, ()> {
        let n = count(snap, q(Signal::RequestCount, v, window), s)?;
        let e = count(snap, q(events, v, window), s)?;
        Ok(Proportion::new(e, n))
    };
    let (Ok(c), Ok(b)) = (side(Variant::Test), side(Variant::Production)) else {
        return false;
    };
    apply(s, judge::compare(c, b, tol, alpha));
    true
}

/// Evaluates a judged check (pure).
pub fn evaluate(spec: &CheckSpec, config: &Config, history: &History, snap: &Snapshot) -> Sample {
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
            compare_counts(&mut s, snap, Signal::ErrorCount, window, tol, alpha);
        }
        STREAM_CUTS => {
            s.source = format!(
                "judge: requests answered with a cut stream / requests per variant since {} before now",
                crate::duration_serde::human(window)
            );
            let tol = config.judge.streams.into();
            if compare_counts(&mut s, snap, Signal::StreamCutCount, window, tol, alpha) {
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
            apply(&mut s, judge::compare(c, b, tol, alpha));
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
