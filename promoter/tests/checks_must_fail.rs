//! Every check passes on good data and fails on bad data (a check that passes on bad data is a
//! defect).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use zai_promoter::config::Config;
use zai_promoter::engine::{History, RunContext, Snapshot, Status, evaluate_check};
use zai_promoter::platform::Variant::{Production as P, Test as T};
use zai_promoter::signals::{Alert, AlertState, Cohort, Measurement, Reading, Signal, SignalQuery};
use zai_promoter::{HttpReply, LogLine};

fn ctx() -> RunContext {
    let mut c = RunContext {
        from_version: Some("1.2.0".into()),
        to_version: Some("1.2.1".into()),
        target_image: Some("ronaldraygun/zai-proxy:1.2.1".into()),
        rollout_started: Some(at(-600)),
        ..RunContext::default()
    };
    c.baseline.p95_by_window_secs.insert(300, Some(0.2));
    c.baseline.request_rate = Some(3.0);
    c
}

fn lines(pods: &[&str], texts: &[&str]) -> Vec<LogLine> {
    pods.iter()
        .flat_map(|p| {
            texts.iter().map(|t| LogLine {
                pod: (*p).into(),
                timestamp: None,
                line: (*t).into(),
            })
        })
        .collect()
}

fn good() -> Snapshot {
    let mut s = snapshot(0);
    let mut c0 = pod("c-0", T, true, 0, "1.2.1-canary");
    c0.image = "ronaldraygun/zai-proxy:1.2.1-canary".into();
    s.pods.insert(T, Ok(vec![c0]));
    s.pods.insert(
        P,
        Ok(vec![
            pod("p-0", P, true, 0, "1.2.1"),
            pod("p-1", P, true, 1, "1.2.1"),
        ]),
    );
    s.images
        .insert(T, Ok("ronaldraygun/zai-proxy:1.2.1-canary".into()));
    s.images
        .insert(P, Ok("ronaldraygun/zai-proxy:1.2.1".into()));
    s.alerts = Some(Ok(vec![Alert {
        name: "ZaiProxyCanaryHighErrorRate".into(),
        state: AlertState::Pending,
        evaluated_locally: false,
        detail: "pending in Prometheus only".into(),
    }]));
    s.health.insert(
        "c-0".into(),
        Ok(HttpReply {
            status: 200,
            body: r#"{"status":"ok","variant":"test"}"#.into(),
        }),
    );
    s.logs.insert(
        T,
        Ok(lines(&["c-0"], &["Token usage (API): input=1 output=2"])),
    );
    s.logs.insert(
        P,
        Ok(lines(
            &["p-0", "p-1"],
            &[
                "Token counting enabled (tiktoken cl100k_base encoding, model: glm-4)",
                "DEPLOYMENT_VARIANT=production",
                "Token usage (API): input=1 output=2",
            ],
        )),
    );
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
    for v in [P, T] {
        for w in [300, 600] {
            let w = Duration::from_secs(w);
            measure(&mut s, Signal::RequestCount, v, w, Reading::Value(500.0));
            measure(&mut s, Signal::RequestRate, v, w, Reading::Value(2.0));
            measure(&mut s, Signal::ErrorRatio, v, w, Reading::Value(0.01));
            measure(&mut s, Signal::SuccessRatio, v, w, Reading::Value(0.98));
            measure(
                &mut s,
                Signal::LatencyQuantile { permille: 950 },
                v,
                w,
                Reading::Value(0.25),
            );
            measure(
                &mut s,
                Signal::TokenCountQuantile { permille: 990 },
                v,
                w,
                Reading::Value(0.01),
            );
            measure(&mut s, Signal::TokensIncrease, v, w, Reading::Value(1234.0));
            measure(&mut s, Signal::TokenSeries, v, w, Reading::Value(2.0));
            measure(
                &mut s,
                Signal::UpstreamAuthFailures,
                v,
                w,
                Reading::Value(0.0),
            );
        }
    }
    // The judge's counts since the run began minus the look-back (10m at t = 0).
    let judge = zai_promoter::engine::judge_window(
        &Config::default(),
        zai_promoter::catalog::Phase::Pre,
        Duration::ZERO,
    );
    s.judge_window = Some(judge);
    for v in [P, T] {
        measure(
            &mut s,
            Signal::RequestCount,
            v,
            judge,
            Reading::Value(20_000.0),
        );
        measure(&mut s, Signal::ErrorCount, v, judge, Reading::Value(200.0));
        measure(&mut s, Signal::LatencyBuckets, v, judge, latency(0.1));
        measure(
            &mut s,
            Signal::StreamCutCount,
            v,
            judge,
            Reading::Value(10.0),
        );
    }
    // Phase 3's comparison: production's new-version pods against its old-version pods.
    for cohort in [Cohort::NewVersion, Cohort::OldVersion] {
        set_cohort(&mut s, Signal::RequestCount, cohort, 20_000.0);
        set_cohort(&mut s, Signal::ErrorCount, cohort, 200.0);
    }
    s
}

fn set_cohort(s: &mut Snapshot, signal: Signal, cohort: Cohort, v: f64) {
    let w = s.judge_window.unwrap();
    s.measurements.insert(
        SignalQuery::new(signal, P, w).of(cohort),
        Measurement {
            reading: Reading::Value(v),
            source: format!("test {signal} {}", cohort.label()),
        },
    );
}

/// 20 000 requests, `slow` of them above 0.25 s.
fn latency(slow: f64) -> Reading {
    Reading::Buckets(vec![
        (0.1, 10_000.0),
        (0.25, 20_000.0 * (1.0 - slow)),
        (f64::INFINITY, 20_000.0),
    ])
}

fn set(s: &mut Snapshot, signal: Signal, v: zai_promoter::Variant, r: Reading) {
    for w in [300, 600] {
        measure(s, signal, v, Duration::from_secs(w), r.clone());
    }
}

fn status(id: &str, s: &Snapshot, ctx: &RunContext) -> (Status, String) {
    let c = Config::default();
    let id: zai_promoter::catalog::CheckId = id.parse().unwrap();
    let spec = c.check(id).unwrap();
    let mut h = History::default();
    zai_promoter::engine::compare::freeze_latency_boundary(&c, &mut h, s);
    let sample = evaluate_check(spec, &c, ctx, &h, s);
    (sample.status, sample.summary())
}

type Spoil = fn(&mut Snapshot, &mut RunContext);

#[test]
fn each_check_passes_on_good_data_and_fails_on_bad_data() {
    let cases: Vec<(&str, Spoil)> = vec![
        ("pre.canary_pods_ready", |s, _| {
            s.pods
                .insert(T, Ok(vec![pod("c-0", T, false, 0, "1.2.1-canary")]));
        }),
        ("pre.no_canary_alerts", |s, _| {
            s.alerts = Some(Ok(vec![Alert {
                name: "ZaiProxyCanaryHighErrorRate".into(),
                state: AlertState::Firing,
                evaluated_locally: false,
                detail: "2.1".into(),
            }]));
        }),
        ("pre.canary_error_rate", |s, _| {
            let w = s.judge_window.unwrap();
            measure(s, Signal::ErrorCount, T, w, Reading::Value(800.0));
        }),
        ("pre.canary_latency", |s, _| {
            let w = s.judge_window.unwrap();
            measure(s, Signal::LatencyBuckets, T, w, latency(0.3));
        }),
        ("pre.canary_stream_cuts", |s, _| {
            // One canary answer in forty cut where production cuts one in two thousand.
            let w = s.judge_window.unwrap();
            measure(s, Signal::StreamCutCount, T, w, Reading::Value(500.0));
        }),
        ("pre.canary_receiving_traffic", |s, _| {
            set(s, Signal::RequestCount, T, Reading::Value(0.0))
        }),
        ("pre.health_ok", |s, _| {
            s.health.insert(
                "c-0".into(),
                Ok(HttpReply {
                    status: 200,
                    body: r#"{"status":"degraded"}"#.into(),
                }),
            );
        }),
        ("pre.token_usage_logged", |s, _| {
            s.logs.insert(
                T,
                Ok(lines(
                    &["c-0"],
                    &["Token counting disabled (TOKEN_COUNTING_ENABLED=false)"],
                )),
            );
        }),
        ("pre.token_metrics_exported", |s, _| {
            set(s, Signal::TokenSeries, T, Reading::Value(0.0))
        }),
        ("pre.worker_used_canary", |s, _| {
            set(s, Signal::SuccessRatio, T, Reading::Value(0.0))
        }),
        ("pre.worker_token_counting", |s, _| {
            set(s, Signal::TokensIncrease, T, Reading::Value(0.0))
        }),
        ("pre.no_upstream_auth_failures", |s, _| {
            set(s, Signal::UpstreamAuthFailures, T, Reading::Value(1.0))
        }),
        ("pre.version_confirmed", |s, _| {
            s.images.insert(T, Ok("ronaldraygun/zai-proxy".into()));
        }),
        ("pre.stable_version", |_, c| {
            c.to_version = Some("1.2.0".into())
        }),
        ("exec.image_updated", |s, _| {
            s.images
                .insert(P, Ok("ronaldraygun/zai-proxy:1.2.0".into()));
        }),
        ("rollout.pods_ready", |s, _| {
            s.pods.insert(
                P,
                Ok(vec![
                    pod("p-0", P, true, 0, "1.2.1"),
                    pod("p-old", P, true, 0, "1.2.0"),
                ]),
            );
        }),
        ("rollout.no_crash_loops", |s, _| {
            s.pods.insert(P, Ok(vec![pod("p-0", P, true, 4, "1.2.1")]));
        }),
        ("rollout.new_version_errors", |s, _| {
            set_cohort(s, Signal::ErrorCount, Cohort::NewVersion, 2_000.0);
        }),
        ("rollout.error_rate", |s, _| {
            set(s, Signal::ErrorRatio, P, Reading::Value(0.05))
        }),
        ("rollout.p95_latency", |s, _| {
            set(
                s,
                Signal::LatencyQuantile { permille: 950 },
                P,
                Reading::Value(0.31),
            )
        }),
        ("rollout.token_metrics", |s, _| {
            set(s, Signal::TokenSeries, P, Reading::Value(0.0))
        }),
        ("rollout.token_count_p99", |s, _| {
            set(
                s,
                Signal::TokenCountQuantile { permille: 990 },
                P,
                Reading::Value(0.1),
            )
        }),
        ("post.all_pods_new_version", |s, _| {
            s.pods.insert(
                P,
                Ok(vec![
                    pod("p-0", P, true, 0, "1.2.1"),
                    pod("p-1", P, true, 0, "1.2.0"),
                ]),
            );
        }),
        ("post.deployment_image", |s, _| {
            s.images
                .insert(P, Ok("ronaldraygun/zai-proxy:1.2.1-canary".into()));
        }),
        ("post.workers_requests", |s, _| {
            set(s, Signal::SuccessRatio, P, Reading::Value(0.0))
        }),
        ("post.token_counting_incrementing", |s, _| {
            set(s, Signal::TokensIncrease, P, Reading::Value(0.0))
        }),
        ("post.no_error_logs", |s, _| {
            s.logs.insert(
                P,
                Ok(lines(&["p-0"], &["ERROR upstream connection refused"])),
            );
        }),
        ("post.startup_config", |s, _| {
            s.logs.insert(
                P,
                Ok(lines(
                    &["p-0", "p-1"],
                    &["Token counting enabled (x)", "Deployment variant: test"],
                )),
            );
        }),
        ("post.request_rate_healthy", |s, _| {
            set(s, Signal::RequestRate, P, Reading::Value(1.0))
        }),
        ("post.success_rate", |s, _| {
            set(s, Signal::SuccessRatio, P, Reading::Value(0.95))
        }),
    ];
    let mut ids: Vec<&str> = cases.iter().map(|c| c.0).collect();
    for (id, spoil) in cases {
        let base = good();
        let mut c = ctx();
        let (st, why) = status(id, &base, &c);
        assert_eq!(st, Status::Pass, "{id} should pass on good data: {why}");
        let mut bad = good();
        spoil(&mut bad, &mut c);
        let (st, why) = status(id, &bad, &c);
        assert_eq!(st, Status::Fail, "{id} must fail on bad data: {why}");
    }
    // Every pre/exec/rollout/post check of the catalog is covered.
    ids.sort_unstable();
    for c in Config::default().checks {
        if ["pre", "exec", "rollout", "post"].contains(&c.phase.key()) {
            assert!(
                ids.binary_search(&c.id.as_str()).is_ok(),
                "{} has no must-fail case",
                c.id
            );
        }
    }
}

#[test]
fn too_little_traffic_is_no_data_not_pass() {
    let mut s = good();
    set(&mut s, Signal::RequestCount, P, Reading::Value(49.0));
    for id in [
        "rollout.error_rate",
        "rollout.p95_latency",
        "post.success_rate",
    ] {
        let (st, why) = status(id, &s, &ctx());
        assert_eq!(st, Status::NoData, "{id}: {why}");
    }
    // A provider error is an error, not a pass.
    let mut s = good();
    set(
        &mut s,
        Signal::ErrorRatio,
        P,
        Reading::Error("timeout".into()),
    );
    assert_eq!(status("rollout.error_rate", &s, &ctx()).0, Status::Error);
}

/// Without the pre-rollout rate, "traffic held up" is unknown: no data, never a pass on
/// `rate > 0`; a measured zero before the rollout leaves only `> 0`, and says so.
#[test]
fn request_rate_without_a_baseline_is_no_data() {
    let s = good();
    let mut c = ctx();
    c.baseline.request_rate = None;
    let (st, why) = status("post.request_rate_healthy", &s, &c);
    assert_eq!(st, Status::NoData, "{why}");
    assert!(why.contains("no pre-rollout request rate"), "{why}");
    c.baseline.request_rate = Some(0.0);
    let (st, why) = status("post.request_rate_healthy", &s, &c);
    assert_eq!(st, Status::Pass, "{why}");
    assert!(
        why.contains("no production requests before the rollout"),
        "{why}"
    );
}

#[test]
fn a_locally_evaluated_alert_counts_once_firing_as_in_prometheus() {
    let mut s = good();
    let alert = |state| Alert {
        name: "ZaiProxyCanaryHighErrorRate".into(),
        state,
        evaluated_locally: true,
        detail: "canary 5xx ratio 0.2 > 0.05".into(),
    };
    // Its condition holds but its `for` has not elapsed: pending, listed, not counted.
    s.alerts = Some(Ok(vec![alert(AlertState::Pending)]));
    let (st, why) = status("pre.no_canary_alerts", &s, &ctx());
    assert_eq!(st, Status::Pass, "{why}");
    s.alerts = Some(Ok(vec![alert(AlertState::Firing)]));
    let (st, why) = status("pre.no_canary_alerts", &s, &ctx());
    assert_eq!(st, Status::Fail, "{why}");
    assert!(why.contains("evaluated locally"), "{why}");
    // Other alerts (not the four canary ones) do not count.
    s.alerts = Some(Ok(vec![Alert {
        name: "ZaiProxyProductionHighErrorRate".into(),
        state: AlertState::Firing,
        evaluated_locally: false,
        detail: String::new(),
    }]));
    assert_eq!(status("pre.no_canary_alerts", &s, &ctx()).0, Status::Pass);
    // Too few canary requests to evaluate it: no data, not a pass on nothing.
    let mut unevaluated = alert(AlertState::NotEvaluated);
    unevaluated.detail = "not evaluated: 3 canary requests in the window < min_requests 50".into();
    s.alerts = Some(Ok(vec![unevaluated.clone()]));
    let (st, why) = status("pre.no_canary_alerts", &s, &ctx());
    assert_eq!(st, Status::NoData, "{why}");
    // A firing one still fails, whatever else could not be evaluated.
    s.alerts = Some(Ok(vec![unevaluated, {
        let mut a = alert(AlertState::Firing);
        a.name = "ZaiProxyCanaryDeploymentDown".into();
        a
    }]));
    assert_eq!(status("pre.no_canary_alerts", &s, &ctx()).0, Status::Fail);
}

#[test]
fn health_of_unreachable_pods_is_not_evaluated_never_guessed() {
    let mut s = good();
    s.health.clear();
    s.health_unreachable =
        Some("pod c-0 cannot be reached: the pod proxy is turned off (--no-pod-proxy)".into());
    let (st, why) = status("pre.health_ok", &s, &ctx());
    assert_eq!(st, Status::Skipped, "{why}");
    assert!(why.contains("not evaluated"), "{why}");
    assert!(why.contains("pod proxy is turned off"), "{why}");
}

/// A check id the evaluator does not know falls through to "evaluated when performed" — a
/// skip, which must never happen to a check the engine itself evaluates (a typo in an id
/// would otherwise be a silent pass). Every catalog check of phases 1–4 is evaluated.
#[test]
fn every_engine_check_of_the_catalog_has_an_evaluator() {
    use zai_promoter::Phase;
    let config = Config::default();
    let snap = zai_promoter::engine::Snapshot::default();
    let history = zai_promoter::engine::History::default();
    let ctx = zai_promoter::engine::RunContext::default();
    for spec in config.checks.iter() {
        let s = zai_promoter::engine::evaluate_check(spec, &config, &ctx, &history, &snap);
        let performed = matches!(spec.phase, Phase::Final | Phase::Cleanup);
        let fell_through = s.status == Status::Skipped
            && s.evidence
                .iter()
                .any(|e| e.contains("evaluated when performed"));
        assert_eq!(
            fell_through, performed,
            "{} ({:?}): {:?} {:?}",
            spec.id, spec.phase, s.status, s.evidence
        );
    }
}
