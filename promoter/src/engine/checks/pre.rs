//! Phase 1 checks: the canary before anything changes (pods, alerts, traffic, /health, token counting, workers, versions). The judged comparisons are in `engine::compare`.

use super::*;

/// Evaluates a check of this phase into `s` (every id of the phase has its arm).
pub(super) fn evaluate(id: PreCheck, e: &Eval<'_>, mut s: Sample) -> Sample {
    let Eval {
        spec,
        config,
        ctx,
        history,
        snap,
        min,
        t,
        ..
    } = *e;
    match id {
        PreCheck::CanaryPodsReady => {
            s.threshold = format!(">= {:.0}% Ready, at least 1 pod", t * 100.0);
            if let Some(pods) = pods(snap, Variant::Test, &mut s) {
                ready_fraction(&mut s, pods, t, None);
            }
        }
        PreCheck::NoCanaryAlerts => {
            // The two comparative alerts are thresholds on whatever sample exists; where the
            // judge compares the same quantities on evidence, they are reported, not counted.
            let superseded = |name: &str| match name {
                "ZaiProxyCanaryErrorRateHigherThanProduction" => config
                    .check(crate::engine::compare::ERRORS)
                    .is_some_and(|c| c.enabled),
                "ZaiProxyCanaryLatencyDegraded" => config
                    .check(crate::engine::compare::LATENCY)
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
        PreCheck::CanaryReceivingTraffic => {
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
        PreCheck::HealthOk => {
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
        PreCheck::TokenUsageLogged => {
            s.threshold = format!(">= {t:.0} \"Token usage\" lines");
            log_lines_check(&mut s, snap, Variant::Test, t, "Token usage", spec, min);
        }
        PreCheck::TokenMetricsExported => {
            s.threshold = format!(">= {t:.0} zai_proxy_tokens_total{{variant=\"test\"}} series");
            series_check(&mut s, snap, Variant::Test, spec, t, min);
        }
        PreCheck::WorkerUsedCanary => {
            s.threshold = format!(">= {t:.0} successful worker requests to the canary");
            workers_check(&mut s, snap, history, Variant::Test, spec, t, min);
        }
        PreCheck::WorkerTokenCounting => {
            s.threshold = format!(">= {t:.0} tokens counted by the canary");
            tokens_check(&mut s, snap, Variant::Test, spec, t, min);
        }
        PreCheck::NoUpstreamAuthFailures => {
            s.threshold = format!("<= {t:.0} upstream 401/403 answers to the canary");
            auth_failures_check(&mut s, snap, Variant::Test, spec, t, min);
        }
        PreCheck::VersionConfirmed => {
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
        PreCheck::StableVersion => {
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
        PreCheck::CanaryErrorRate | PreCheck::CanaryLatency | PreCheck::CanaryStreamCuts => {
            return crate::engine::compare::evaluate(spec, config, ctx, history, snap);
        }
    }
    s
}
