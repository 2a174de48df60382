//! Evaluation of each checklist item: pure functions of (config, context, history, snapshot).
//!
//! Here: the queries each check needs, the dispatch and the shared helpers; one module per
//! phase holds its checks (`pre`, `rollout` with phase 2, `post`); the judged comparisons are
//! `engine::compare`.

use std::time::Duration;

use super::history::History;
use super::sample::{Sample, Status};
use super::snapshot::{RunContext, Snapshot};
use crate::catalog::{CheckId, ExecCheck, PostCheck, PreCheck, RolloutCheck};
use crate::config::{CheckSpec, Config};
use crate::platform::{PodInfo, Variant, image_tag};
use crate::signals::{Reading, Signal, SignalQuery};

mod post;
mod pre;
mod rollout;

/// What every check's evaluation reads.
#[derive(Clone, Copy)]
struct Eval<'a> {
    spec: &'a CheckSpec,
    config: &'a Config,
    ctx: &'a RunContext,
    history: &'a History,
    snap: &'a Snapshot,
    min: u64,
    t: f64,
    now: chrono::DateTime<chrono::Utc>,
}

const CANARY_ALERTS: [&str; 4] = [
    "ZaiProxyCanaryDeploymentDown",
    "ZaiProxyCanaryErrorRateHigherThanProduction",
    "ZaiProxyCanaryHighErrorRate",
    "ZaiProxyCanaryLatencyDegraded",
];

fn q(signal: Signal, variant: Variant, window: Duration) -> SignalQuery {
    SignalQuery::new(signal, variant, window)
}

/// The window used as traffic guard by a check (its own window, else the seed's 5 m).
fn guard_window(spec: &CheckSpec) -> Duration {
    if spec.window.is_zero() {
        Duration::from_secs(300)
    } else {
        spec.window
    }
}

/// Signal queries a check needs.
pub fn queries_for_check(
    spec: &CheckSpec,
    _config: &Config,
    worker_feed: bool,
) -> Vec<SignalQuery> {
    use Signal::*;
    use Variant::{Production as P, Test as T};
    let w = spec.window;
    let g = guard_window(spec);
    match spec.id {
        CheckId::Pre(PreCheck::CanaryReceivingTraffic) => vec![q(RequestCount, T, w)],
        CheckId::Pre(PreCheck::TokenUsageLogged) => vec![q(RequestCount, T, g)],
        CheckId::Pre(PreCheck::TokenMetricsExported) => {
            vec![q(TokenSeries, T, g), q(RequestCount, T, g)]
        }
        CheckId::Pre(PreCheck::WorkerUsedCanary) if !worker_feed => {
            vec![q(RequestCount, T, w), q(SuccessRatio, T, w)]
        }
        CheckId::Pre(PreCheck::WorkerTokenCounting) => {
            vec![q(TokensIncrease, T, w), q(RequestCount, T, w)]
        }
        CheckId::Pre(PreCheck::NoUpstreamAuthFailures) => {
            vec![q(UpstreamAuthFailures, T, w), q(RequestCount, T, w)]
        }
        CheckId::Rollout(RolloutCheck::ErrorRate) => {
            vec![q(ErrorRatio, P, w), q(RequestCount, P, w)]
        }
        CheckId::Rollout(RolloutCheck::P95Latency) => {
            vec![
                q(LatencyQuantile { permille: 950 }, P, w),
                q(RequestCount, P, w),
            ]
        }
        CheckId::Rollout(RolloutCheck::TokenMetrics) => {
            vec![q(TokenSeries, P, g), q(RequestCount, P, g)]
        }
        CheckId::Rollout(RolloutCheck::TokenCountP99) => {
            vec![q(TokenCountQuantile { permille: 990 }, P, w)]
        }
        CheckId::Post(PostCheck::WorkersRequests) if !worker_feed => {
            vec![q(RequestCount, P, w), q(SuccessRatio, P, w)]
        }
        CheckId::Post(PostCheck::TokenCountingIncrementing) => {
            vec![q(TokensIncrease, P, w), q(RequestCount, P, w)]
        }
        CheckId::Post(PostCheck::RequestRateHealthy) => vec![q(RequestRate, P, w)],
        CheckId::Post(PostCheck::SuccessRate) => vec![q(SuccessRatio, P, w), q(RequestCount, P, w)],
        _ => Vec::new(),
    }
}

/// Traffic in a window: enough, too little, or unknown.
enum Traffic {
    Enough(f64),
    Low(Sample),
}

fn traffic(
    snap: &Snapshot,
    variant: Variant,
    window: Duration,
    min: u64,
    base: &Sample,
) -> Traffic {
    let query = q(Signal::RequestCount, variant, window);
    let mut s = base.clone();
    match snap.measurements.get(&query) {
        None => {
            s.status = Status::NoData;
            s.evidence
                .push(format!("request count of {variant} was not collected"));
        }
        Some(m) => match &m.reading {
            Reading::Value(c) if *c >= min as f64 => return Traffic::Enough(*c),
            Reading::Value(c) => {
                s.status = Status::NoData;
                s.evidence.push(format!(
                    "{c:.0} {variant} requests in {} < min_requests {min}",
                    crate::duration_serde::human(window)
                ));
            }
            Reading::NoData(why) => {
                s.status = Status::NoData;
                s.evidence
                    .push(format!("request count of {variant}: {why}"));
            }
            Reading::Buckets(_) => {
                s.status = Status::Error;
                s.evidence
                    .push(format!("request count of {variant}: buckets, not a number"));
            }
            Reading::Error(e) => {
                s.status = Status::Error;
                s.evidence.push(format!("request count of {variant}: {e}"));
            }
        },
    }
    Traffic::Low(s)
}

/// Reads a measurement into `s`: returns the value, or sets no_data/error on `s`.
fn read(snap: &Snapshot, query: SignalQuery, s: &mut Sample) -> Option<f64> {
    let Some(m) = snap.measurements.get(&query) else {
        s.status = Status::NoData;
        s.evidence.push(format!(
            "{} of {} was not collected",
            query.signal, query.variant
        ));
        return None;
    };
    if s.source.is_empty() {
        s.source = m.source.clone();
    } else {
        s.source = format!("{}\n{}", s.source, m.source);
    }
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

fn pods<'a>(snap: &'a Snapshot, variant: Variant, s: &mut Sample) -> Option<&'a [PodInfo]> {
    s.source = format!("platform: list {variant} pods");
    match snap.pods.get(&variant) {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            s.status = Status::Error;
            s.evidence.push(e.clone());
            None
        }
        None => {
            s.status = Status::NoData;
            s.evidence
                .push(format!("{variant} pods were not collected"));
            None
        }
    }
}

fn judge(s: &mut Sample, ok: bool) {
    s.status = if ok { Status::Pass } else { Status::Fail };
}

fn fmt_ratio(v: f64) -> String {
    format!("{v:.4}")
}

/// Evaluates one check on one snapshot.
pub fn evaluate_check(
    spec: &CheckSpec,
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
    let min = config.min_requests;
    let t = spec.threshold;
    let e = Eval {
        spec,
        config,
        ctx,
        history,
        snap,
        min,
        t,
        now,
    };
    match spec.id {
        CheckId::Pre(id) => pre::evaluate(id, &e, s),
        CheckId::Exec(id) => rollout::evaluate_exec(id, &e, s),
        CheckId::Rollout(id) => rollout::evaluate(id, &e, s),
        CheckId::Post(id) => post::evaluate(id, &e, s),
        // Recorded by the driver as it performs them; never sampled, never decided on.
        CheckId::Final(_) | CheckId::Cleanup(_) => {
            Sample::skipped(now, format!("{} is evaluated when performed", spec.id))
        }
    }
}

fn health_body_ok(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(|s| s == "ok"))
        .unwrap_or(false)
}

fn is_semver(v: &str) -> bool {
    let parts: Vec<_> = v.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

fn ready_fraction(s: &mut Sample, pods: &[PodInfo], t: f64, version: Option<&str>) {
    if pods.is_empty() {
        s.status = Status::Fail;
        s.value = Some(0.0);
        s.observed = "0 pods".into();
        s.evidence.push("no pod".into());
        return;
    }
    let good = pods
        .iter()
        .filter(|p| p.ready && version.is_none_or(|v| p.version.as_deref() == Some(v)))
        .count();
    for p in pods {
        if !p.ready {
            let why = p.waiting_reason.as_deref().unwrap_or(p.phase.as_str());
            s.evidence.push(format!("{} not Ready ({why})", p.name));
        } else if let Some(v) = version
            && p.version.as_deref() != Some(v)
        {
            s.evidence.push(format!(
                "{} on version {}",
                p.name,
                p.version.as_deref().unwrap_or("(none)")
            ));
        }
    }
    let frac = good as f64 / pods.len() as f64;
    s.value = Some(frac);
    s.observed = format!("{good}/{} Ready", pods.len());
    judge(s, frac >= t);
}

fn image_is_target(s: &mut Sample, snap: &Snapshot, ctx: &RunContext) {
    match (snap.images.get(&Variant::Production), &ctx.target_image) {
        (Some(Ok(image)), Some(target)) => {
            s.observed = image.clone();
            if image != target {
                s.evidence.push(format!("expected {target}"));
            }
            judge(s, image == target);
        }
        (Some(Err(e)), _) => {
            s.status = Status::Error;
            s.evidence.push(e.clone());
        }
        (_, None) => {
            s.status = Status::Fail;
            s.evidence.push("no target image".into());
        }
        (None, _) => s.evidence.push("production image was not collected".into()),
    }
}

fn ratio_check(
    s: &mut Sample,
    snap: &Snapshot,
    signal: Signal,
    spec: &CheckSpec,
    min: u64,
    ok: impl Fn(f64) -> bool,
) {
    let base = s.clone();
    match traffic(snap, Variant::Production, spec.window, min, &base) {
        Traffic::Low(low) => {
            *s = low;
            let query = q(signal, Variant::Production, spec.window);
            if let Some(m) = snap.measurements.get(&query) {
                s.source = m.source.clone();
                if let Reading::Value(v) = m.reading {
                    s.observed = format!("{} (too few requests)", fmt_ratio(v));
                }
            }
        }
        Traffic::Enough(count) => {
            if let Some(v) = read(snap, q(signal, Variant::Production, spec.window), s) {
                s.value = Some(v);
                s.observed = format!("{} over {count:.0} requests", fmt_ratio(v));
                judge(s, ok(v));
            }
        }
    }
}

fn series_check(
    s: &mut Sample,
    snap: &Snapshot,
    variant: Variant,
    spec: &CheckSpec,
    t: f64,
    min: u64,
) {
    let g = guard_window(spec);
    if let Some(n) = read(snap, q(Signal::TokenSeries, variant, g), s) {
        s.value = Some(n);
        s.observed = format!("{n:.0} series");
        if n >= t {
            s.status = Status::Pass;
        } else {
            let base = s.clone();
            match traffic(snap, variant, g, min, &base) {
                Traffic::Enough(c) => {
                    s.status = Status::Fail;
                    s.evidence
                        .push(format!("no token series after {c:.0} requests"));
                }
                Traffic::Low(low) => *s = low,
            }
        }
    }
}

fn tokens_check(
    s: &mut Sample,
    snap: &Snapshot,
    variant: Variant,
    spec: &CheckSpec,
    t: f64,
    min: u64,
) {
    if let Some(n) = read(snap, q(Signal::TokensIncrease, variant, spec.window), s) {
        s.value = Some(n);
        s.observed = format!("{n:.0} tokens");
        if n >= t && n > 0.0 {
            s.status = Status::Pass;
        } else {
            let base = s.clone();
            match traffic(snap, variant, spec.window, min, &base) {
                Traffic::Enough(c) => {
                    s.status = Status::Fail;
                    s.evidence
                        .push(format!("{n:.0} tokens counted over {c:.0} requests"));
                }
                Traffic::Low(low) => *s = low,
            }
        }
    }
}

/// Upstream refused the proxy's credential more than `t` times: fail at once, whatever the
/// traffic (one refusal is proof of a wrong key); none over too little traffic is no data.
fn auth_failures_check(
    s: &mut Sample,
    snap: &Snapshot,
    variant: Variant,
    spec: &CheckSpec,
    t: f64,
    min: u64,
) {
    if let Some(n) = read(
        snap,
        q(Signal::UpstreamAuthFailures, variant, spec.window),
        s,
    ) {
        s.value = Some(n);
        s.observed = format!("{n:.0} upstream auth failures");
        if n > t {
            s.status = Status::Fail;
            s.evidence.push(format!(
                "upstream answered 401/403 {n:.0} times: the {variant}'s ZAI_API_KEY is refused"
            ));
        } else {
            let base = s.clone();
            match traffic(snap, variant, spec.window, min, &base) {
                Traffic::Enough(_) => s.status = Status::Pass,
                Traffic::Low(low) => *s = low,
            }
        }
    }
}

fn log_lines_check(
    s: &mut Sample,
    snap: &Snapshot,
    variant: Variant,
    t: f64,
    needle: &str,
    spec: &CheckSpec,
    min: u64,
) {
    s.source = format!(
        "platform: {variant} logs, last {}",
        crate::duration_serde::human(spec.window)
    );
    match snap.logs.get(&variant) {
        Some(Ok(lines)) => {
            let hits: Vec<_> = lines.iter().filter(|l| l.line.contains(needle)).collect();
            s.value = Some(hits.len() as f64);
            s.observed = format!("{} lines", hits.len());
            if let Some(l) = hits.last() {
                s.evidence.push(format!("{}: {}", l.pod, l.line));
            }
            if hits.len() as f64 >= t && !hits.is_empty() {
                s.status = Status::Pass;
            } else {
                let base = s.clone();
                match traffic(snap, variant, guard_window(spec), min, &base) {
                    Traffic::Enough(c) => {
                        s.status = Status::Fail;
                        s.evidence
                            .push(format!("no \"{needle}\" line after {c:.0} requests"));
                    }
                    Traffic::Low(low) => *s = low,
                }
            }
        }
        Some(Err(e)) => {
            s.status = Status::Error;
            s.evidence.push(e.clone());
        }
        None => s
            .evidence
            .push(format!("{variant} logs were not collected")),
    }
}

fn workers_check(
    s: &mut Sample,
    snap: &Snapshot,
    history: &History,
    variant: Variant,
    spec: &CheckSpec,
    t: f64,
    min: u64,
) {
    if let Some(feed) = &snap.workers {
        s.source = format!("worker feed, {variant}");
        let current = feed.get(&variant).copied().unwrap_or_default();
        // Before the window has filled, the counters since the feed started are the evidence.
        let delta = history
            .worker_delta(variant, snap.at, spec.window, current)
            .unwrap_or(current);
        s.value = Some(delta.ok as f64);
        s.observed = format!(
            "{} ok, {} failed of {} sent",
            delta.ok, delta.failed, delta.sent
        );
        if delta.ok as f64 >= t && delta.ok > 0 {
            s.status = Status::Pass;
        } else if delta.sent > 0 {
            s.status = Status::Fail;
            s.evidence.push(format!(
                "{} of {} worker requests failed",
                delta.failed, delta.sent
            ));
        } else {
            s.status = Status::NoData;
            s.evidence
                .push(format!("no worker request to {variant} in the window"));
        }
        return;
    }
    // No feed: the proxy's own count of 2xx answers by variant stands in for worker success.
    let base = s.clone();
    match traffic(snap, variant, spec.window, min, &base) {
        Traffic::Low(low) => *s = low,
        Traffic::Enough(count) => {
            if let Some(ratio) = read(snap, q(Signal::SuccessRatio, variant, spec.window), s) {
                let ok = (ratio * count).round();
                s.value = Some(ok);
                s.observed = format!("{ok:.0} 2xx of {count:.0} requests (proxy metrics)");
                judge(s, ok >= t && ok > 0.0);
            }
        }
    }
}

fn startup_check(s: &mut Sample, snap: &Snapshot) {
    let lines = match snap.logs.get(&Variant::Production) {
        Some(Ok(l)) => l,
        Some(Err(e)) => {
            s.status = Status::Error;
            s.evidence.push(e.clone());
            return;
        }
        None => {
            s.evidence.push("production logs were not collected".into());
            return;
        }
    };
    let pods: Vec<&PodInfo> = match snap.pods.get(&Variant::Production) {
        Some(Ok(p)) => p.iter().collect(),
        _ => Vec::new(),
    };
    let names: Vec<&str> = if pods.is_empty() {
        let mut n: Vec<&str> = lines.iter().map(|l| l.pod.as_str()).collect();
        n.sort_unstable();
        n.dedup();
        n
    } else {
        pods.iter().map(|p| p.name.as_str()).collect()
    };
    if names.is_empty() || lines.is_empty() {
        s.status = Status::NoData;
        s.evidence
            .push("no production log lines since the rollout began".into());
        return;
    }
    let mut good = 0;
    for name in &names {
        let mine: Vec<_> = lines.iter().filter(|l| l.pod == *name).collect();
        let counting = mine
            .iter()
            .any(|l| l.line.contains("Token counting enabled"));
        let variant = mine
            .iter()
            .any(|l| l.line.contains("DEPLOYMENT_VARIANT=production"));
        if counting && variant {
            good += 1;
        } else {
            let mut missing = Vec::new();
            if !counting {
                missing.push("\"Token counting enabled\"");
            }
            if !variant {
                missing.push("\"DEPLOYMENT_VARIANT=production\"");
            }
            s.evidence
                .push(format!("{name}: missing {}", missing.join(" and ")));
        }
    }
    s.value = Some(good as f64);
    s.observed = format!("{good}/{} pods", names.len());
    judge(s, good == names.len());
}
