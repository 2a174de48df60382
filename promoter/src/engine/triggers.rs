//! Rollback trigger conditions, one sample per tick. Whether a trigger fires ("held for the
//! whole duration") is decided by [`super::TriggerState::observe`].

use std::time::Duration;

use super::history::History;
use super::sample::{Sample, Status};
use super::snapshot::{RunContext, Snapshot};
use crate::catalog::TriggerId;
use crate::config::{Config, TriggerSpec};
use crate::platform::Variant;
use crate::signals::{Reading, Signal, SignalQuery};

fn q(signal: Signal, window: Duration) -> SignalQuery {
    SignalQuery::new(signal, Variant::Production, window)
}

/// Signal queries a trigger needs.
pub fn queries_for_trigger(spec: &TriggerSpec, worker_feed: bool) -> Vec<SignalQuery> {
    use Signal::*;
    let w = spec.window;
    match spec.id {
        TriggerId::ErrorRate => vec![q(ErrorRatio, w), q(RequestCount, w)],
        TriggerId::P95Latency => vec![q(LatencyQuantile { permille: 950 }, w), q(RequestCount, w)],
        TriggerId::TokenCountingStopped => {
            vec![q(TokensIncrease, w), q(RequestCount, w), q(SuccessRatio, w)]
        }
        TriggerId::WorkerFailures if !worker_feed => vec![q(SuccessRatio, w), q(RequestCount, w)],
        _ => Vec::new(),
    }
}

fn value(snap: &Snapshot, query: SignalQuery, s: &mut Sample) -> Option<f64> {
    let Some(m) = snap.measurements.get(&query) else {
        s.status = Status::NoData;
        s.evidence
            .push(format!("{} was not collected", query.signal));
        return None;
    };
    if !s.source.is_empty() {
        s.source.push('\n');
    }
    s.source.push_str(&m.source);
    match &m.reading {
        Reading::Value(v) => Some(*v),
        Reading::NoData(why) => {
            s.status = Status::NoData;
            s.evidence.push(format!("{}: {why}", query.signal));
            None
        }
        Reading::Error(e) => {
            s.status = Status::Error;
            s.evidence.push(format!("{}: {e}", query.signal));
            None
        }
        Reading::Buckets(_) => {
            s.status = Status::Error;
            s.evidence.push(format!(
                "{}: buckets where a number was expected",
                query.signal
            ));
            None
        }
    }
}

/// Reads the request count and applies the min_requests guard.
fn enough_requests(snap: &Snapshot, window: Duration, min: u64, s: &mut Sample) -> Option<f64> {
    let c = value(snap, q(Signal::RequestCount, window), s)?;
    if c < min as f64 {
        s.status = Status::NoData;
        s.evidence.push(format!(
            "{c:.0} requests in the window < min_requests {min}"
        ));
        return None;
    }
    Some(c)
}

fn held(s: &mut Sample, condition: bool) {
    s.status = if condition {
        Status::Fail
    } else {
        Status::Pass
    };
}

/// Evaluates one trigger's condition on one snapshot: `Fail` = the rollback condition holds.
pub fn evaluate_trigger(
    spec: &TriggerSpec,
    config: &Config,
    ctx: &RunContext,
    history: &History,
    snap: &Snapshot,
) -> Sample {
    let now = snap.at;
    if !spec.enabled {
        return Sample::skipped(now, "disabled in configuration");
    }
    let mut s = Sample::new(Status::NoData, now);
    s.window = (!spec.window.is_zero()).then_some(spec.window);
    let t = spec.threshold;
    let min = config.min_requests;
    match spec.id {
        TriggerId::ErrorRate => {
            s.threshold = format!("> {t}");
            if let Some(c) = enough_requests(snap, spec.window, min, &mut s)
                && let Some(v) = value(snap, q(Signal::ErrorRatio, spec.window), &mut s)
            {
                s.value = Some(v);
                s.observed = format!("{v:.4} over {c:.0} requests");
                held(&mut s, v > t);
            }
        }
        TriggerId::P95Latency => {
            let base = ctx.baseline.p95(spec.window);
            s.threshold = match base {
                Some(b) => format!(
                    "> +{:.0}% over baseline {b:.4}s and > {}s",
                    t * 100.0,
                    spec.floor
                ),
                None => format!("> +{:.0}% over baseline", t * 100.0),
            };
            if enough_requests(snap, spec.window, min, &mut s).is_some() {
                let query = q(Signal::LatencyQuantile { permille: 950 }, spec.window);
                if let Some(p95) = value(snap, query, &mut s) {
                    match base {
                        Some(b) if b > 0.0 => {
                            let rel = p95 / b - 1.0;
                            s.value = Some(rel);
                            s.observed = format!("{p95:.4}s ({:+.0}%)", rel * 100.0);
                            held(&mut s, rel > t && p95 > spec.floor);
                        }
                        _ => {
                            s.status = Status::NoData;
                            s.evidence.push("no pre-rollout p95 baseline".into());
                        }
                    }
                }
            }
        }
        TriggerId::PodsNotReady => {
            s.threshold = format!("> {:.0}% NotReady", t * 100.0);
            s.source = "platform: list production pods".into();
            match snap.pods.get(&Variant::Production) {
                Some(Ok(pods)) if pods.is_empty() => {
                    s.value = Some(1.0);
                    s.observed = "no production pod".into();
                    held(&mut s, true);
                }
                Some(Ok(pods)) => {
                    let not_ready: Vec<_> = pods.iter().filter(|p| !p.ready).collect();
                    let frac = not_ready.len() as f64 / pods.len() as f64;
                    for p in &not_ready {
                        s.evidence.push(format!("{} NotReady", p.name));
                    }
                    s.value = Some(frac);
                    s.observed = format!("{}/{} NotReady", not_ready.len(), pods.len());
                    // With max surge 1 / max unavailable 0 a rollout whose new pods never get
                    // ready is one stuck pod of N+1 — never "more than 50%" of the deployment,
                    // yet 100% of the revision being rolled out. Judge that revision too.
                    let updated: Vec<_> = match ctx.to_version.as_deref() {
                        Some(v) => pods
                            .iter()
                            .filter(|p| p.version.as_deref() == Some(v))
                            .collect(),
                        None => Vec::new(),
                    };
                    let updated_not_ready = updated.iter().filter(|p| !p.ready).count();
                    let updated_frac = if updated.is_empty() {
                        0.0
                    } else {
                        updated_not_ready as f64 / updated.len() as f64
                    };
                    if frac <= t && updated_frac > t {
                        s.value = Some(updated_frac);
                        s.observed = format!(
                            "{}/{} NotReady; {updated_not_ready}/{} of the new version NotReady",
                            not_ready.len(),
                            pods.len(),
                            updated.len()
                        );
                    }
                    held(&mut s, frac > t || updated_frac > t);
                }
                Some(Err(e)) => {
                    s.status = Status::Error;
                    s.evidence.push(e.clone());
                }
                None => s.evidence.push("production pods were not collected".into()),
            }
        }
        TriggerId::CrashLoop => {
            s.threshold = format!("CrashLoopBackOff or >= {t:.0} restarts since first seen");
            s.source = "platform: list production pods".into();
            match snap.pods.get(&Variant::Production) {
                Some(Ok(pods)) => {
                    let mut worst = 0u32;
                    let mut looping = 0usize;
                    for p in pods {
                        let delta = history.restart_delta(p);
                        worst = worst.max(delta);
                        if p.waiting_reason.as_deref() == Some("CrashLoopBackOff") {
                            looping += 1;
                            s.evidence
                                .push(format!("{} is in CrashLoopBackOff", p.name));
                        } else if f64::from(delta) >= t {
                            s.evidence
                                .push(format!("{} restarted {delta} times", p.name));
                        }
                    }
                    s.value = Some(f64::from(worst));
                    s.observed = format!("{looping} in CrashLoopBackOff, max {worst} new restarts");
                    held(&mut s, looping > 0 || f64::from(worst) >= t);
                }
                Some(Err(e)) => {
                    s.status = Status::Error;
                    s.evidence.push(e.clone());
                }
                None => s.evidence.push("production pods were not collected".into()),
            }
        }
        TriggerId::TokenCountingStopped => {
            s.threshold = format!("<= {t:.0} tokens while >= {min} 2xx answers");
            if let Some(c) = enough_requests(snap, spec.window, min, &mut s) {
                let ratio = value(snap, q(Signal::SuccessRatio, spec.window), &mut s);
                let tokens = value(snap, q(Signal::TokensIncrease, spec.window), &mut s);
                if let (Some(ratio), Some(tokens)) = (ratio, tokens) {
                    let ok = (ratio * c).round();
                    s.value = Some(tokens);
                    s.observed = format!("{tokens:.0} tokens over {ok:.0} 2xx answers");
                    if ok < min as f64 {
                        s.status = Status::NoData;
                        s.evidence
                            .push(format!("{ok:.0} 2xx answers < min_requests {min}"));
                    } else {
                        held(&mut s, tokens <= t);
                    }
                }
            }
        }
        TriggerId::WorkerFailures => {
            s.threshold = format!("> {:.0}% of worker requests failed", t * 100.0);
            if let Some(feed) = &snap.workers {
                s.source = "worker feed, production".into();
                let current = feed.get(&Variant::Production).copied().unwrap_or_default();
                match history.worker_delta(Variant::Production, now, spec.window, current) {
                    Some(d) if d.sent >= min => {
                        let frac = d.failed as f64 / d.sent as f64;
                        s.value = Some(frac);
                        s.observed = format!("{} failed of {} sent", d.failed, d.sent);
                        held(&mut s, frac > t);
                    }
                    Some(d) => {
                        s.evidence
                            .push(format!("{} worker requests < min_requests {min}", d.sent));
                    }
                    None => s.evidence.push("first worker sample".into()),
                }
            } else if let Some(c) = enough_requests(snap, spec.window, min, &mut s)
                && let Some(ratio) = value(snap, q(Signal::SuccessRatio, spec.window), &mut s)
            {
                let failed = 1.0 - ratio;
                s.value = Some(failed);
                s.observed = format!("{failed:.4} non-2xx over {c:.0} requests (proxy metrics)");
                held(&mut s, failed > t);
            }
        }
    }
    s
}
