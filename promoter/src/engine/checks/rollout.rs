//! Phase 2 and 3 checks: the image change and production during the rollout.

use super::*;

/// Evaluates the phase-2 check into `s`.
pub(super) fn evaluate_exec(id: ExecCheck, e: &Eval<'_>, mut s: Sample) -> Sample {
    let Eval { ctx, snap, now, .. } = *e;
    match id {
        ExecCheck::ImageUpdated => {
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
    }
    s
}

/// Evaluates a check of this phase into `s` (every id of the phase has its arm).
pub(super) fn evaluate(id: RolloutCheck, e: &Eval<'_>, mut s: Sample) -> Sample {
    let Eval {
        spec,
        config,
        ctx,
        history,
        snap,
        min,
        t,
        now: _,
    } = *e;
    match id {
        RolloutCheck::NewVersionErrors => {
            return crate::engine::compare::evaluate(spec, config, ctx, history, snap);
        }
        RolloutCheck::PodsReady => {
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
        RolloutCheck::NoCrashLoops => {
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
        RolloutCheck::ErrorRate => {
            s.threshold = format!("< {t}");
            ratio_check(&mut s, snap, Signal::ErrorRatio, spec, min, |v| v < t);
        }
        RolloutCheck::P95Latency => {
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
        RolloutCheck::TokenMetrics => {
            s.threshold =
                format!(">= {t:.0} zai_proxy_tokens_total{{variant=\"production\"}} series");
            series_check(&mut s, snap, Variant::Production, spec, t, min);
        }
        RolloutCheck::TokenCountP99 => {
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
    }
    s
}
