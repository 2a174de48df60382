//! Evaluation of each checklist item: pure functions of (config, context, history, snapshot).

use std::time::Duration;

use super::history::History;
use super::sample::{Sample, Status};
use super::snapshot::{RunContext, Snapshot};
use crate::config::{CheckSpec, Config};
use crate::platform::{PodInfo, Variant, image_tag};
use crate::signals::{Reading, Signal, SignalQuery};

const CANARY_ALERTS: [&str; 4] = [
    "ZaiProxyCanaryDeploymentDown",
    "ZaiProxyCanaryErrorRateHigherThanProduction",
    "ZaiProxyCanaryHighErrorRate",
    "ZaiProxyCanaryLatencyDegraded",
];

fn q(signal: Signal, variant: Variant, window: Duration) -> SignalQuery {
    SignalQuery {
        signal,
        variant,
        window,
    }
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
        "pre.canary_receiving_traffic" => vec![q(RequestCount, T, w)],
        "pre.token_usage_logged" => vec![q(RequestCount, T, g)],
        "pre.token_metrics_exported" => vec![q(TokenSeries, T, g), q(RequestCount, T, g)],
        "pre.worker_used_canary" if !worker_feed => {
            vec![q(RequestCount, T, w), q(SuccessRatio, T, w)]
        }
        "pre.worker_token_counting" => vec![q(TokensIncrease, T, w), q(RequestCount, T, w)],
        "pre.no_upstream_auth_failures" => {
            vec![q(UpstreamAuthFailures, T, w), q(RequestCount, T, w)]
        }
        "rollout.error_rate" => vec![q(ErrorRatio, P, w), q(RequestCount, P, w)],
        "rollout.p95_latency" => {
            vec![
                q(LatencyQuantile { permille: 950 }, P, w),
                q(RequestCount, P, w),
            ]
        }
        "rollout.token_metrics" => vec![q(TokenSeries, P, g), q(RequestCount, P, g)],
        "rollout.token_count_p99" => vec![q(TokenCountQuantile { permille: 990 }, P, w)],
        "post.workers_requests" if !worker_feed => {
            vec![q(RequestCount, P, w), q(SuccessRatio, P, w)]
        }
        "post.token_counting_incrementing" => vec![q(TokensIncrease, P, w), q(RequestCount, P, w)],
        "post.request_rate_healthy" => vec![q(RequestRate, P, w)],
        "post.success_rate" => vec![q(SuccessRatio, P, w), q(RequestCount, P, w)],
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
    if super::compare::is_judged(spec.id) {
        return super::compare::evaluate(spec, config, history, snap);
    }
    let mut s = Sample::new(Status::NoData, now);
    s.window = (!spec.window.is_zero()).then_some(spec.window);
    let min = config.min_requests;
    let t = spec.threshold;
    match spec.id {
        "pre.canary_pods_ready" => {
            s.threshold = format!(">= {:.0}% Ready, at least 1 pod", t * 100.0);
            if let Some(pods) = pods(snap, Variant::Test, &mut s) {
                ready_fraction(&mut s, pods, t, None);
            }
        }
        "pre.no_canary_alerts" => {
            // The two comparative alerts are thresholds on whatever sample exists; where the
            // judge compares the same quantities on evidence, they are reported, not counted.
            let superseded = |name: &str| match name {
                "ZaiProxyCanaryErrorRateHigherThanProduction" => config
                    .check(super::compare::ERRORS)
                    .is_some_and(|c| c.enabled),
                "ZaiProxyCanaryLatencyDegraded" => config
                    .check(super::compare::LATENCY)
                    .is_some_and(|c| c.enabled),
                _ => false,
            };
            let counted: Vec<&str> = CANARY_ALERTS
                .iter()
                .copied()
                .filter(|n| !superseded(n))
                .collect();
            s.threshold = format!("<= {t:.0} of {} firing", counted.join(", "));
            s.source = "alerts".into();
            match &snap.alerts {
                Some(Ok(alerts)) => {
                    // Firing only, wherever evaluated: a locally evaluated alert honours its
                    // `for` as Prometheus does, so both sources decide alike.
                    let firing: Vec<_> = alerts
                        .iter()
                        .filter(|a| {
                            a.state == crate::signals::AlertState::Firing
                                && counted.contains(&a.name.as_str())
                        })
                        .collect();
                    s.value = Some(firing.len() as f64);
                    s.observed = format!("{} firing", firing.len());
                    for a in &firing {
                        let how = if a.evaluated_locally {
                            " (evaluated locally)"
                        } else {
                            ""
                        };
                        s.evidence
                            .push(format!("{} firing{how}: {}", a.name, a.detail));
                    }
                    for a in alerts
                        .iter()
                        .filter(|a| CANARY_ALERTS.contains(&a.name.as_str()) && !firing.contains(a))
                    {
                        let why = if superseded(&a.name) {
                            "not counted: the judge compares this on evidence"
                        } else {
                            "not counted until firing"
                        };
                        let state = match a.state {
                            crate::signals::AlertState::Firing => "firing",
                            crate::signals::AlertState::Pending => "pending",
                            crate::signals::AlertState::NotEvaluated => "not evaluated",
                        };
                        s.evidence
                            .push(format!("{} {state} ({why}): {}", a.name, a.detail));
                    }
                    // An alert that could not be evaluated is not a clear one: without a firing
                    // alert, the check waits for data instead of passing on none.
                    let unevaluated: Vec<&str> = alerts
                        .iter()
                        .filter(|a| {
                            a.state == crate::signals::AlertState::NotEvaluated
                                && counted.contains(&a.name.as_str())
                        })
                        .map(|a| a.name.as_str())
                        .collect();
                    if firing.is_empty() && !unevaluated.is_empty() {
                        s.status = Status::NoData;
                        s.observed = format!("{} not evaluated", unevaluated.len());
                    } else {
                        judge(&mut s, firing.len() as f64 <= t);
                    }
                }
                Some(Err(e)) => {
                    s.status = Status::Error;
                    s.evidence.push(e.clone());
                }
                None => s.evidence.push("alerts were not collected".into()),
            }
        }
        "pre.canary_receiving_traffic" => {
            s.threshold = format!(">= {t:.0} requests (0 fails)");
            if let Some(c) = read(
                snap,
                q(Signal::RequestCount, Variant::Test, spec.window),
                &mut s,
            ) {
                s.value = Some(c);
                s.observed = format!("{c:.0} requests");
                if c <= 0.0 {
                    s.status = Status::Fail;
                    s.evidence
                        .push("the canary served no request in the window".into());
                } else if c < t.max(min as f64) {
                    s.status = Status::NoData;
                    s.evidence
                        .push(format!("{c:.0} requests < {:.0}", t.max(min as f64)));
                } else {
                    s.status = Status::Pass;
                }
            }
        }
        "pre.health_ok" => {
            s.threshold = format!(
                ">= {:.0}% of canary pods answer 200 {{\"status\":\"ok\"}}",
                t * 100.0
            );
            if let Some(pods) = pods(snap, Variant::Test, &mut s) {
                s.source = "GET /health on each canary pod".into();
                if let Some(why) = &snap.health_unreachable {
                    s.status = Status::Skipped;
                    s.evidence.push(format!("not evaluated: {why}"));
                } else if pods.is_empty() {
                    s.status = Status::Fail;
                    s.evidence.push("no canary pod".into());
                } else {
                    let mut ok = 0usize;
                    for p in pods {
                        match snap.health.get(&p.name) {
                            Some(Ok(r)) if r.status == 200 && health_body_ok(&r.body) => ok += 1,
                            Some(Ok(r)) => s.evidence.push(format!(
                                "{}: HTTP {} {}",
                                p.name,
                                r.status,
                                r.body.chars().take(120).collect::<String>()
                            )),
                            Some(Err(e)) => s.evidence.push(format!("{}: {e}", p.name)),
                            None => s.evidence.push(format!("{}: not probed", p.name)),
                        }
                    }
                    let frac = ok as f64 / pods.len() as f64;
                    s.value = Some(frac);
                    s.observed = format!("{ok}/{} healthy", pods.len());
                    judge(&mut s, frac >= t);
                }
            }
        }
        "pre.token_usage_logged" => {
            s.threshold = format!(">= {t:.0} \"Token usage\" lines");
            log_lines_check(&mut s, snap, Variant::Test, t, "Token usage", spec, min);
        }
        "pre.token_metrics_exported" => {
            s.threshold = format!(">= {t:.0} zai_proxy_tokens_total{{variant=\"test\"}} series");
            series_check(&mut s, snap, Variant::Test, spec, t, min);
        }
        "pre.worker_used_canary" => {
            s.threshold = format!(">= {t:.0} successful worker requests to the canary");
            workers_check(&mut s, snap, history, Variant::Test, spec, t, min);
        }
        "pre.worker_token_counting" => {
            s.threshold = format!(">= {t:.0} tokens counted by the canary");
            tokens_check(&mut s, snap, Variant::Test, spec, t, min);
        }
        "pre.no_upstream_auth_failures" => {
            s.threshold = format!("<= {t:.0} upstream 401/403 answers to the canary");
            auth_failures_check(&mut s, snap, Variant::Test, spec, t, min);
        }
        "pre.version_confirmed" => {
            s.threshold = "tagged image, every canary pod on it".into();
            s.source = "platform: canary image and pods".into();
            match snap.images.get(&Variant::Test) {
                Some(Ok(image)) => {
                    s.observed = image.clone();
                    match image_tag(image) {
                        None => {
                            s.status = Status::Fail;
                            s.evidence.push(format!("image {image} has no tag"));
                        }
                        Some(_) => {
                            let mut s2 = s.clone();
                            if let Some(pods) = pods(snap, Variant::Test, &mut s2) {
                                let off: Vec<_> =
                                    pods.iter().filter(|p| &p.image != image).collect();
                                for p in &off {
                                    s.evidence.push(format!("{} runs {}", p.name, p.image));
                                }
                                judge(&mut s, off.is_empty() && !pods.is_empty());
                                if pods.is_empty() {
                                    s.evidence.push("no canary pod".into());
                                }
                            } else {
                                s.status = s2.status;
                                s.evidence = s2.evidence;
                            }
                        }
                    }
                }
                Some(Err(e)) => {
                    s.status = Status::Error;
                    s.evidence.push(e.clone());
                }
                None => s.evidence.push("canary image was not collected".into()),
            }
        }
        "pre.stable_version" => {
            s.threshold = "X.Y.Z, different from production".into();
            s.source = "canary image tag without -canary".into();
            match (&ctx.to_version, &ctx.from_version) {
                (Some(to), from) => {
                    s.observed = to.clone();
                    let semver = is_semver(to);
                    if !semver {
                        s.evidence.push(format!("{to} is not X.Y.Z"));
                    }
                    let same = from.as_deref() == Some(to.as_str());
                    if same {
                        s.evidence.push(format!("production already runs {to}"));
                    }
                    judge(&mut s, semver && !same);
                }
                (None, _) => {
                    s.status = Status::Fail;
                    s.evidence.push("no stable version could be derived".into());
                }
            }
        }
        "exec.image_updated" => {
            s.threshold = "production image = stable image".into();
            s.source = "platform: production image".into();
            if ctx.dry_run {
                return Sample::skipped(
                    now,
                    format!(
                        "dry run: would set image {}",
                        ctx.target_image.as_deref().unwrap_or("?")
                    ),
                );
            }
            image_is_target(&mut s, snap, ctx);
        }
        "rollout.pods_ready" => {
            s.threshold = format!(
                "rollout complete, >= {:.0}% Ready on the new version",
                t * 100.0
            );
            let version = if ctx.dry_run {
                None
            } else {
                ctx.to_version.as_deref()
            };
            if let Some(pods) = pods(snap, Variant::Production, &mut s) {
                ready_fraction(&mut s, pods, t, version);
                match &snap.rollout {
                    Some(Ok(r)) => {
                        s.evidence.push(format!("rollout: {}", r.message));
                        if !r.complete && s.status == Status::Pass {
                            s.status = Status::Fail;
                        }
                    }
                    Some(Err(e)) => {
                        s.status = Status::Error;
                        s.evidence.push(e.clone());
                    }
                    None => {}
                }
            }
        }
        "rollout.no_crash_loops" => {
            s.threshold = format!("<= {t:.0} restarts per pod, no CrashLoopBackOff");
            if let Some(pods) = pods(snap, Variant::Production, &mut s) {
                let mut worst = 0u32;
                let mut looping = false;
                for p in pods {
                    worst = worst.max(p.restarts);
                    if p.waiting_reason.as_deref() == Some("CrashLoopBackOff") {
                        looping = true;
                        s.evidence
                            .push(format!("{} is in CrashLoopBackOff", p.name));
                    } else if f64::from(p.restarts) > t {
                        s.evidence
                            .push(format!("{} restarted {} times", p.name, p.restarts));
                    }
                }
                s.value = Some(f64::from(worst));
                s.observed = format!("max {worst} restarts");
                judge(&mut s, !looping && f64::from(worst) <= t);
            }
        }
        "rollout.error_rate" => {
            s.threshold = format!("< {t}");
            ratio_check(&mut s, snap, Signal::ErrorRatio, spec, min, |v| v < t);
        }
        "rollout.p95_latency" => {
            let base = ctx.baseline.p95(spec.window);
            s.threshold = match base {
                Some(b) => format!("<= +{:.0}% over baseline {b:.4}s", t * 100.0),
                None => format!("<= +{:.0}% over baseline", t * 100.0),
            };
            let base_sample = s.clone();
            if let Traffic::Low(low) =
                traffic(snap, Variant::Production, spec.window, min, &base_sample)
            {
                return low;
            }
            let query = q(
                Signal::LatencyQuantile { permille: 950 },
                Variant::Production,
                spec.window,
            );
            if let Some(p95) = read(snap, query, &mut s) {
                s.observed = format!("{p95:.4}s");
                match base {
                    Some(b) if b > 0.0 => {
                        let rel = p95 / b - 1.0;
                        s.value = Some(rel);
                        s.observed = format!("{p95:.4}s ({:+.0}%)", rel * 100.0);
                        judge(&mut s, rel <= t);
                    }
                    _ => {
                        s.status = Status::NoData;
                        s.evidence.push("no pre-rollout p95 baseline".into());
                    }
                }
            }
        }
        "rollout.token_metrics" => {
            s.threshold =
                format!(">= {t:.0} zai_proxy_tokens_total{{variant=\"production\"}} series");
            series_check(&mut s, snap, Variant::Production, spec, t, min);
        }
        "rollout.token_count_p99" => {
            s.threshold = format!("< {t}s");
            let query = q(
                Signal::TokenCountQuantile { permille: 990 },
                Variant::Production,
                spec.window,
            );
            if let Some(v) = read(snap, query, &mut s) {
                s.value = Some(v);
                s.observed = format!("{v:.4}s");
                judge(&mut s, v < t);
            }
        }
        "post.all_pods_new_version" => {
            s.threshold = format!(">= {:.0}% of pods on the stable version", t * 100.0);
            if ctx.dry_run {
                return Sample::skipped(now, "dry run: production unchanged");
            }
            if let Some(pods) = pods(snap, Variant::Production, &mut s) {
                let want = ctx.to_version.as_deref().unwrap_or("?");
                let on: Vec<_> = pods
                    .iter()
                    .filter(|p| p.version.as_deref() == Some(want))
                    .collect();
                for p in pods.iter().filter(|p| p.version.as_deref() != Some(want)) {
                    s.evidence.push(format!(
                        "{} has version {}",
                        p.name,
                        p.version.as_deref().unwrap_or("(none)")
                    ));
                }
                let frac = if pods.is_empty() {
                    0.0
                } else {
                    on.len() as f64 / pods.len() as f64
                };
                s.value = Some(frac);
                s.observed = format!("{}/{} on {want}", on.len(), pods.len());
                judge(&mut s, !pods.is_empty() && frac >= t);
            }
        }
        "post.deployment_image" => {
            s.threshold = "production image = stable image".into();
            s.source = "platform: production image".into();
            if ctx.dry_run {
                return Sample::skipped(now, "dry run: production unchanged");
            }
            image_is_target(&mut s, snap, ctx);
        }
        "post.workers_requests" => {
            s.threshold = format!(">= {t:.0} successful worker requests to production");
            workers_check(&mut s, snap, history, Variant::Production, spec, t, min);
            if let Some(Ok(lines)) = snap.logs.get(&Variant::Production) {
                let n = lines
                    .iter()
                    .filter(|l| l.line.contains("Token usage"))
                    .count();
                s.evidence
                    .push(format!("{n} \"Token usage\" lines in production logs"));
            }
        }
        "post.token_counting_incrementing" => {
            s.threshold = format!(">= {t:.0} tokens counted by production");
            tokens_check(&mut s, snap, Variant::Production, spec, t, min);
        }
        "post.no_error_logs" => {
            s.threshold = format!("<= {t:.0} error lines");
            s.source = "platform: production logs since the rollout began".into();
            match snap.logs.get(&Variant::Production) {
                Some(Ok(lines)) => {
                    let errors: Vec<_> = lines
                        .iter()
                        .filter(|l| l.line.to_lowercase().contains("error"))
                        .filter(|l| {
                            !config
                                .logs
                                .error_ignore
                                .iter()
                                .any(|i| l.line.contains(i.as_str()))
                        })
                        .collect();
                    s.value = Some(errors.len() as f64);
                    s.observed = format!("{} error lines of {}", errors.len(), lines.len());
                    for l in errors.iter().take(5) {
                        s.evidence.push(format!("{}: {}", l.pod, l.line));
                    }
                    judge(&mut s, errors.len() as f64 <= t);
                }
                Some(Err(e)) => {
                    s.status = Status::Error;
                    s.evidence.push(e.clone());
                }
                None => s.evidence.push("production logs were not collected".into()),
            }
        }
        "post.startup_config" => {
            s.threshold =
                "\"Token counting enabled\" and \"DEPLOYMENT_VARIANT=production\" per new pod"
                    .into();
            s.source = "platform: production logs since the rollout began".into();
            if ctx.dry_run {
                return Sample::skipped(now, "dry run: no new pods started");
            }
            startup_check(&mut s, snap);
        }
        "post.request_rate_healthy" => {
            let base = ctx.baseline.request_rate;
            s.threshold = match base {
                Some(b) => format!("> 0 and >= {:.0}% of pre-rollout {b:.3} req/s", t * 100.0),
                None => "> 0 (no pre-rollout rate)".into(),
            };
            let query = q(Signal::RequestRate, Variant::Production, spec.window);
            if let Some(rate) = read(snap, query, &mut s) {
                s.value = Some(rate);
                s.observed = format!("{rate:.3} req/s");
                let enough = match base {
                    Some(b) if b > 0.0 => rate >= b * t,
                    _ => true,
                };
                judge(&mut s, rate > 0.0 && enough);
            }
        }
        "post.success_rate" => {
            s.threshold = format!("> {t}");
            ratio_check(&mut s, snap, Signal::SuccessRatio, spec, min, |v| v > t);
        }
        other => {
            // final.* and cleanup.* are evaluated by the driver as it performs them.
            return Sample::skipped(now, format!("{other} is evaluated when performed"));
        }
    }
    s
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
            "{} ok, {} lost of {} sent",
            delta.ok, delta.lost, delta.sent
        );
        if delta.ok as f64 >= t && delta.ok > 0 {
            s.status = Status::Pass;
        } else if delta.sent > 0 {
            s.status = Status::Fail;
            s.evidence.push(format!(
                "{} of {} worker requests failed",
                delta.lost, delta.sent
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
