//! Tick-by-tick tests of the pure engine: every trigger fires exactly when its condition held
//! for the full duration (not before) and resets when it clears; no data holds and then ends
//! the run at the deadline; provider errors are counted separately.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use zai_promoter::catalog::{CheckId, Phase, PreCheck, TriggerId};
use zai_promoter::config::{Config, NoDataPolicy};
use zai_promoter::engine::{Decision, History, RunContext, Snapshot, Status, tick};
use zai_promoter::platform::Variant::{Production as P, Test as T};
use zai_promoter::signals::{Reading, Signal};

const M: Duration = Duration::from_secs(60);

fn ctx_with_baseline(p95: f64) -> RunContext {
    let mut ctx = RunContext {
        to_version: Some("1.2.1".into()),
        from_version: Some("1.2.0".into()),
        target_image: Some("ronaldraygun/zai-proxy:1.2.1".into()),
        rollout_started: Some(at(-60)),
        ..RunContext::default()
    };
    ctx.baseline.p95_by_window_secs.insert(60, Some(p95));
    ctx.baseline.p95_by_window_secs.insert(300, Some(p95));
    ctx.baseline.request_rate = Some(3.0);
    ctx
}

/// Healthy production at `secs`: 2 ready pods on 1.2.1, every quantity fine, for every window.
fn healthy(secs: i64) -> Snapshot {
    let mut s = snapshot(secs);
    s.pods.insert(
        P,
        Ok(vec![
            pod("p-0", P, true, 0, "1.2.1"),
            pod("p-1", P, true, 0, "1.2.1"),
        ]),
    );
    for w in [M, 2 * M, 5 * M] {
        measure(&mut s, Signal::RequestCount, P, w, Reading::Value(1000.0));
        measure(&mut s, Signal::RequestRate, P, w, Reading::Value(3.0));
        measure(&mut s, Signal::ErrorRatio, P, w, Reading::Value(0.01));
        measure(&mut s, Signal::SuccessRatio, P, w, Reading::Value(0.99));
        measure(
            &mut s,
            Signal::LatencyQuantile { permille: 950 },
            P,
            w,
            Reading::Value(0.2),
        );
        measure(
            &mut s,
            Signal::TokenCountQuantile { permille: 990 },
            P,
            w,
            Reading::Value(0.002),
        );
        measure(&mut s, Signal::TokensIncrease, P, w, Reading::Value(9000.0));
        measure(&mut s, Signal::TokenSeries, P, w, Reading::Value(4.0));
    }
    s.rollout = Some(Ok(zai_promoter::RolloutStatus {
        desired: 2,
        updated: 2,
        ready: 2,
        available: 2,
        total: 2,
        observed: true,
        complete: true,
        failure: None,
        message: "complete".into(),
    }));
    s.images
        .insert(P, Ok("ronaldraygun/zai-proxy:1.2.1".into()));
    s
}

/// A healthy canary for phase 1 (without traffic measurements).
fn canary(secs: i64) -> Snapshot {
    let mut s = snapshot(secs);
    let mut p = pod("c-0", T, true, 0, "1.2.1-canary");
    p.image = "ronaldraygun/zai-proxy:1.2.1-canary".into();
    s.pods.insert(T, Ok(vec![p]));
    s.images
        .insert(T, Ok("ronaldraygun/zai-proxy:1.2.1-canary".into()));
    s.alerts = Some(Ok(Vec::new()));
    s.health.insert(
        "c-0".into(),
        Ok(zai_promoter::HttpReply {
            status: 200,
            body: r#"{"status":"ok"}"#.into(),
        }),
    );
    s.logs.insert(T, Ok(Vec::new()));
    s
}

fn set_all(s: &mut Snapshot, signal: Signal, r: Reading) {
    for w in [M, 2 * M, 5 * M] {
        measure(s, signal, P, w, r.clone());
    }
}

/// Runs rollout-phase ticks every 30 s from t=0 with `bad(t)` deciding whether the snapshot is
/// spoiled by `spoil`; returns the time (s) at which the decision was a rollback by `trigger`.
fn first_rollback(
    config: &Config,
    ctx: &RunContext,
    ticks: i64,
    make: impl Fn(i64) -> Snapshot,
) -> Option<(i64, Option<&'static str>)> {
    let mut h = History::default();
    for i in 0..ticks {
        let t = i * 30;
        let d = tick(config, ctx, &mut h, Phase::Rollout, at(0), &make(t));
        if let Decision::Rollback { trigger, .. } = d {
            return Some((t, trigger.map(TriggerId::as_str)));
        }
    }
    None
}

fn config() -> Config {
    // Keep phase 3 from ending (and its deadline from firing) while triggers are exercised.
    Config {
        rollout_deadline: Duration::from_secs(3600),
        no_data_deadline: Duration::from_secs(3600),
        ..Config::default()
    }
}

#[test]
fn error_rate_fires_exactly_after_two_minutes_held() {
    let c = config();
    let ctx = ctx_with_baseline(0.2);
    // Bad from t=60: samples at 60, 90, 120, 150, 180 → held for 120 s at t=180.
    let r = first_rollback(&c, &ctx, 20, |t| {
        let mut s = healthy(t);
        if t >= 60 {
            set_all(&mut s, Signal::ErrorRatio, Reading::Value(0.2));
        }
        s
    });
    assert_eq!(r, Some((180, Some("trigger.error_rate"))));
}

#[test]
fn error_rate_at_threshold_does_not_hold_and_clearing_resets() {
    let c = config();
    let ctx = ctx_with_baseline(0.2);
    // Exactly 10 % is not "> 10 %".
    let r = first_rollback(&c, &ctx, 20, |t| {
        let mut s = healthy(t);
        set_all(&mut s, Signal::ErrorRatio, Reading::Value(0.10));
        s
    });
    assert_eq!(r, None);
    // Bad 0..90, clear at 120, bad again from 150: fires at 150 + 120 = 270, not at 120.
    let r = first_rollback(&c, &ctx, 20, |t| {
        let mut s = healthy(t);
        if t != 120 {
            set_all(&mut s, Signal::ErrorRatio, Reading::Value(0.5));
        }
        s
    });
    assert_eq!(r, Some((270, Some("trigger.error_rate"))));
}

#[test]
fn no_data_sample_breaks_a_trigger_run() {
    let c = config();
    let ctx = ctx_with_baseline(0.2);
    // Bad everywhere except t=90 where traffic is below min_requests.
    let r = first_rollback(&c, &ctx, 20, |t| {
        let mut s = healthy(t);
        set_all(&mut s, Signal::ErrorRatio, Reading::Value(0.5));
        if t == 90 {
            set_all(&mut s, Signal::RequestCount, Reading::Value(10.0));
        }
        s
    });
    assert_eq!(r, Some((90 + 30 + 120, Some("trigger.error_rate"))));
}

#[test]
fn p95_trigger_compares_with_the_baseline_and_respects_the_floor() {
    let c = config();
    let ctx = ctx_with_baseline(0.2);
    // 0.45 s = +125 % over 0.2 s: fires after 2 min.
    let r = first_rollback(&c, &ctx, 20, |t| {
        let mut s = healthy(t);
        set_all(
            &mut s,
            Signal::LatencyQuantile { permille: 950 },
            Reading::Value(0.45),
        );
        s
    });
    assert_eq!(r.map(|x| x.1), Some(Some("trigger.p95_latency")));
    assert_eq!(r.map(|x| x.0), Some(120));
    // +100 % exactly does not hold.
    let r = first_rollback(&c, &ctx, 20, |t| {
        let mut s = healthy(t);
        set_all(
            &mut s,
            Signal::LatencyQuantile { permille: 950 },
            Reading::Value(0.4),
        );
        s
    });
    assert_eq!(r, None);
    // Tiny baseline: 3× of 10 ms is still below the 100 ms floor.
    let ctx = ctx_with_baseline(0.01);
    let r = first_rollback(&c, &ctx, 20, |t| {
        let mut s = healthy(t);
        set_all(
            &mut s,
            Signal::LatencyQuantile { permille: 950 },
            Reading::Value(0.03),
        );
        s
    });
    assert_eq!(r, None);
}

#[test]
fn pods_not_ready_needs_more_than_half_for_a_minute() {
    let c = config();
    let ctx = ctx_with_baseline(0.2);
    let half = |t| {
        let mut s = healthy(t);
        s.pods.insert(
            P,
            Ok(vec![
                pod("a", P, true, 0, "1.2.1"),
                pod("b", P, false, 0, "1.2.1"),
            ]),
        );
        s
    };
    assert_eq!(first_rollback(&c, &ctx, 20, half), None);
    let most = |t| {
        let mut s = healthy(t);
        s.pods.insert(
            P,
            Ok(vec![
                pod("a", P, true, 0, "1.2.1"),
                pod("b", P, false, 0, "1.2.1"),
                pod("c", P, false, 0, "1.2.1"),
            ]),
        );
        s
    };
    assert_eq!(
        first_rollback(&c, &ctx, 20, most),
        Some((60, Some("trigger.pods_not_ready")))
    );
}

#[test]
fn crash_loop_fires_on_backoff_or_new_restarts_not_old_ones() {
    let c = config();
    let ctx = ctx_with_baseline(0.2);
    // Old restarts (5 when first seen, pod older than the rollout) do not count.
    let r = first_rollback(&c, &ctx, 10, |t| {
        let mut s = healthy(t);
        s.pods.insert(P, Ok(vec![pod("old", P, true, 5, "1.2.1")]));
        s
    });
    assert_eq!(r, None);
    // Two new restarts after first sight: fires at once (for = 0).
    let r = first_rollback(&c, &ctx, 10, |t| {
        let mut s = healthy(t);
        let restarts = if t >= 60 { 7 } else { 5 };
        s.pods
            .insert(P, Ok(vec![pod("old", P, true, restarts, "1.2.1")]));
        s
    });
    assert_eq!(r, Some((60, Some("trigger.crash_loop"))));
    // CrashLoopBackOff waiting reason.
    let r = first_rollback(&c, &ctx, 10, |t| {
        let mut s = healthy(t);
        let mut p = pod("new", P, true, 0, "1.2.1");
        if t >= 30 {
            p.waiting_reason = Some("CrashLoopBackOff".into());
        }
        s.pods
            .insert(P, Ok(vec![p, pod("ok", P, true, 0, "1.2.1")]));
        s
    });
    assert_eq!(r, Some((30, Some("trigger.crash_loop"))));
}

#[test]
fn token_counting_stopped_fires_only_with_traffic() {
    let c = config();
    let ctx = ctx_with_baseline(0.2);
    let r = first_rollback(&c, &ctx, 20, |t| {
        let mut s = healthy(t);
        set_all(&mut s, Signal::TokensIncrease, Reading::Value(0.0));
        s
    });
    assert_eq!(r, Some((120, Some("trigger.token_counting_stopped"))));
    // Without traffic, zero tokens is no data, never a rollback by itself.
    let r = first_rollback(&c, &ctx, 20, |t| {
        let mut s = healthy(t);
        set_all(&mut s, Signal::TokensIncrease, Reading::Value(0.0));
        set_all(&mut s, Signal::RequestCount, Reading::Value(3.0));
        s
    });
    assert_eq!(r, None);
}

#[test]
fn worker_failures_from_the_feed() {
    use std::collections::BTreeMap;
    use zai_promoter::WorkerStats;
    let c = config();
    let ctx = ctx_with_baseline(0.2);
    // Workers send 100 requests per tick; from t=60 half of them fail.
    let r = first_rollback(&c, &ctx, 20, |t| {
        let mut s = healthy(t);
        let n = (t / 30) as u64;
        let failed = if t >= 60 { (n - 1) * 50 } else { 0 };
        let mut m = BTreeMap::new();
        m.insert(
            P,
            WorkerStats {
                sent: n * 100,
                ok: n * 100 - failed,
                failed,
            },
        );
        s.workers = Some(m);
        s
    });
    // t=60: 50 failed of 200 sent in the last minute = 25 %, not above 25 %; t=90: 100 of 200
    // → first held sample; held for 2 minutes at t=210.
    assert_eq!(r, Some((210, Some("trigger.worker_failures"))));
}

#[test]
fn no_data_holds_then_aborts_at_the_deadline_before_rollout() {
    let c = Config::default(); // no_data_deadline 10 min
    let ctx = ctx_with_baseline(0.2);
    let mut h = History::default();
    let mut last = None;
    for i in 0..=20 {
        let t = i * 30;
        let mut s = canary(t);
        measure(&mut s, Signal::RequestCount, T, 5 * M, Reading::Value(12.0));
        let d = tick(&c, &ctx, &mut h, Phase::Pre, at(0), &s);
        let rec = h
            .check(CheckId::Pre(PreCheck::CanaryReceivingTraffic))
            .unwrap()
            .last()
            .unwrap()
            .status;
        assert_eq!(rec, Status::NoData);
        if t < 600 {
            assert!(matches!(d, Decision::Hold { .. }), "t={t}: {d:?}");
        } else {
            last = Some(d);
            break;
        }
    }
    match last {
        Some(Decision::Abort { reason }) => {
            assert!(reason.contains("no_data_deadline"), "{reason}")
        }
        other => panic!("expected abort at 10 min, got {other:?}"),
    }
}

#[test]
fn no_data_after_rollout_rolls_back_or_keeps_per_policy() {
    let mut c = Config {
        rollout_deadline: Duration::from_secs(3600),
        ..Config::default()
    };
    let ctx = ctx_with_baseline(0.2);
    let starving = |t| {
        let mut s = healthy(t);
        set_all(&mut s, Signal::RequestCount, Reading::Value(1.0));
        s
    };
    let mut h = History::default();
    let mut end = None;
    for i in 0..=21 {
        if let d @ (Decision::Rollback { .. } | Decision::Abort { .. }) =
            tick(&c, &ctx, &mut h, Phase::Rollout, at(0), &starving(i * 30))
        {
            end = Some((i * 30, d));
            break;
        }
    }
    let (t, d) = end.expect("ends");
    assert_eq!(t, 600);
    assert!(
        matches!(d, Decision::Rollback { trigger: None, .. }),
        "{d:?}"
    );

    c.no_data_after_rollout = NoDataPolicy::Keep;
    let mut h = History::default();
    let mut end = None;
    for i in 0..=21 {
        if let d @ (Decision::Rollback { .. } | Decision::Abort { .. }) =
            tick(&c, &ctx, &mut h, Phase::Rollout, at(0), &starving(i * 30))
        {
            end = Some(d);
            break;
        }
    }
    assert!(matches!(end, Some(Decision::Abort { .. })), "{end:?}");
}

#[test]
fn provider_errors_are_counted_separately() {
    let c = Config::default(); // max_consecutive_errors 4
    let ctx = ctx_with_baseline(0.2);
    let err = |t| {
        let mut s = canary(t);
        measure(
            &mut s,
            Signal::RequestCount,
            T,
            5 * M,
            Reading::Error("HTTP 500".into()),
        );
        s
    };
    let mut h = History::default();
    for i in 0..4 {
        let d = tick(&c, &ctx, &mut h, Phase::Pre, at(0), &err(i * 30));
        assert!(matches!(d, Decision::Hold { .. }), "error {i}: {d:?}");
    }
    let d = tick(&c, &ctx, &mut h, Phase::Pre, at(0), &err(120));
    match d {
        Decision::Abort { reason } => assert!(reason.contains("provider errors"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // An answer in between resets the count.
    let mut h = History::default();
    for i in 0..12 {
        let s = if i % 4 == 3 {
            let mut s = canary(i * 30);
            measure(&mut s, Signal::RequestCount, T, 5 * M, Reading::Value(3.0));
            s
        } else {
            err(i * 30)
        };
        let d = tick(&c, &ctx, &mut h, Phase::Pre, at(0), &s);
        assert!(matches!(d, Decision::Hold { .. }), "tick {i}: {d:?}");
    }
}

#[test]
fn rollout_phase_passes_when_every_check_passes_and_rolls_back_at_its_deadline() {
    let c = Config::default();
    let ctx = ctx_with_baseline(0.2);
    let mut h = History::default();
    assert_eq!(
        tick(&c, &ctx, &mut h, Phase::Rollout, at(0), &healthy(0)),
        Decision::Passed
    );

    // 7 % errors: not a trigger (> 10 %), but rollout.error_rate (< 5 %) never passes.
    let mut h = History::default();
    let mut end = None;
    for i in 0..=21 {
        let mut s = healthy(i * 30);
        set_all(&mut s, Signal::ErrorRatio, Reading::Value(0.07));
        match tick(&c, &ctx, &mut h, Phase::Rollout, at(0), &s) {
            Decision::Hold { waiting } => assert!(waiting[0].starts_with("rollout.error_rate")),
            d => {
                end = Some((i * 30, d));
                break;
            }
        }
    }
    let (t, d) = end.unwrap();
    assert_eq!(t, 600);
    match d {
        Decision::Rollback {
            reason,
            trigger: None,
        } => assert!(reason.contains("rollout.error_rate")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn post_phase_observes_for_its_minimum_duration() {
    let c = Config::default(); // post_min_duration 5 min
    let ctx = ctx_with_baseline(0.2);
    let mut h = History::default();
    for i in 0..=10 {
        let mut s = healthy(i * 30);
        s.logs.insert(
            P,
            Ok(["p-0", "p-1"]
                .iter()
                .flat_map(|p| {
                    [
                        "Token counting enabled (x)",
                        "DEPLOYMENT_VARIANT=production",
                        "Token usage (API): input=1",
                    ]
                    .iter()
                    .map(|l| zai_promoter::LogLine {
                        pod: (*p).into(),
                        timestamp: None,
                        line: (*l).into(),
                    })
                })
                .collect()),
        );
        let d = tick(&c, &ctx, &mut h, Phase::Post, at(0), &s);
        if i * 30 < 300 {
            assert!(
                matches!(d, Decision::Hold { ref waiting } if waiting.is_empty()),
                "{d:?}"
            );
        } else {
            assert_eq!(d, Decision::Passed);
        }
    }
}

#[test]
fn a_phase_whose_checks_were_all_skipped_does_not_pass() {
    // Every phase-1 check disabled: nothing vouches for the canary, so the phase cannot pass.
    let mut c = config();
    for check in c.checks.iter_mut().filter(|c| c.phase == Phase::Pre) {
        check.enabled = false;
    }
    let ctx = ctx_with_baseline(0.2);
    let mut h = History::default();
    let d = tick(&c, &ctx, &mut h, Phase::Pre, at(0), &snapshot(0));
    match d {
        Decision::Abort { reason } => assert!(reason.contains("no evidence"), "{reason}"),
        other => panic!("expected an abort for want of evidence, got {other:?}"),
    }
    let last = h
        .check(CheckId::Pre(PreCheck::HealthOk))
        .and_then(|s| s.last())
        .map(|s| s.status);
    assert_eq!(last, Some(Status::Skipped), "reported as skipped, not pass");

    // One check left on, passing on its evidence: the phase passes.
    let keep = CheckId::Pre(PreCheck::VersionConfirmed);
    for check in c.checks.iter_mut().filter(|c| c.id == keep) {
        check.enabled = true;
    }
    let mut snap = snapshot(0);
    snap.pods
        .insert(T, Ok(vec![pod("c-0", T, true, 0, "1.2.1-canary")]));
    snap.images
        .insert(T, Ok("ronaldraygun/zai-proxy:1.2.1-canary".into()));
    let mut h = History::default();
    let d = tick(&c, &ctx, &mut h, Phase::Pre, at(0), &snap);
    let s = h.check(keep).and_then(|s| s.last()).cloned();
    assert_eq!(d, Decision::Passed, "{s:?}");
}
