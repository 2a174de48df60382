//! Phase 4 checks: production after the rollout.

use super::*;

/// Evaluates a check of this phase into `s` (every id of the phase has its arm).
pub(super) fn evaluate(id: PostCheck, e: &Eval<'_>, mut s: Sample) -> Sample {
    let Eval {
        spec,
        config,
        ctx,
        history,
        snap,
        min,
        t,
        now,
        ..
    } = *e;
    match id {
        PostCheck::AllPodsNewVersion => {
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
        PostCheck::DeploymentImage => {
            s.threshold = "production image = stable image".into();
            s.source = "platform: production image".into();
            if ctx.dry_run {
                return Sample::skipped(now, "dry run: production unchanged");
            }
            image_is_target(&mut s, snap, ctx);
        }
        PostCheck::WorkersRequests => {
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
        PostCheck::TokenCountingIncrementing => {
            s.threshold = format!(">= {t:.0} tokens counted by production");
            tokens_check(&mut s, snap, Variant::Production, spec, t, min);
        }
        PostCheck::NoErrorLogs => {
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
        PostCheck::StartupConfig => {
            s.threshold =
                "\"Token counting enabled\" and \"DEPLOYMENT_VARIANT=production\" per new pod"
                    .into();
            s.source = "platform: production logs since the rollout began".into();
            if ctx.dry_run {
                return Sample::skipped(now, "dry run: no new pods started");
            }
            startup_check(&mut s, snap);
        }
        PostCheck::RequestRateHealthy => {
            let base = ctx.baseline.request_rate;
            s.threshold = match base {
                Some(b) if b > 0.0 => {
                    format!("> 0 and >= {:.0}% of pre-rollout {b:.3} req/s", t * 100.0)
                }
                Some(_) => "> 0 (no production requests before the rollout)".into(),
                None => format!(">= {:.0}% of the pre-rollout rate", t * 100.0),
            };
            let query = q(Signal::RequestRate, Variant::Production, spec.window);
            if let Some(rate) = read(snap, query, &mut s) {
                s.value = Some(rate);
                s.observed = format!("{rate:.3} req/s");
                match base {
                    // Without the rate before the rollout, "traffic held up" cannot be told
                    // from "traffic fell by half": no data, never a pass on `rate > 0`.
                    None => {
                        s.status = Status::NoData;
                        s.evidence.push(
                            "no pre-rollout request rate was captured (no data at the end of phase 1): nothing to compare with"
                                .into(),
                        );
                    }
                    Some(b) if b > 0.0 => judge(&mut s, rate > 0.0 && rate >= b * t),
                    Some(_) => {
                        s.evidence.push(
                            "production served no requests before the rollout: only `> 0` can be checked"
                                .into(),
                        );
                        judge(&mut s, rate > 0.0);
                    }
                }
            }
        }
        PostCheck::SuccessRate => {
            s.threshold = format!("> {t}");
            ratio_check(&mut s, snap, Signal::SuccessRatio, spec, min, |v| v > t);
        }
    }
    s
}
