//! The judged phase-1 checks through the pure engine: thin data waits and ends "insufficient
//! evidence" at the judge's deadline, a regression with enough requests fails, a healthy canary
//! with enough requests passes; the latency bound is fixed once; `pre.no_canary_alerts` counts
//! firing alerts only and leaves the comparative ones to the judge.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use zai_promoter::catalog::{CheckId, Phase, PreCheck};
use zai_promoter::config::Config;
use zai_promoter::engine::{Decision, History, RunContext, Snapshot, Status, tick};
use zai_promoter::platform::Variant::{self, Production as P, Test as T};
use zai_promoter::signals::{Alert, AlertState, Reading, Signal};

/// Only the two judged checks and the alert check are enabled.
fn config() -> Config {
    let mut c = Config::default();
    for check in &mut c.checks {
        check.enabled = matches!(
            check.id,
            CheckId::Pre(
                PreCheck::CanaryErrorRate | PreCheck::CanaryLatency | PreCheck::NoCanaryAlerts
            )
        );
    }
    c
}

/// A phase-1 snapshot at `secs` with the judge's counts: `n` requests and `e` 5xx per side,
/// latency buckets with `slow` of the requests above 0.25 s.
fn judged(
    config: &Config,
    secs: i64,
    side: &[(Variant, f64, f64, f64)], // (variant, requests, errors, slow share)
) -> Snapshot {
    let mut s = snapshot(secs);
    let window =
        zai_promoter::engine::judge_window(config, Phase::Pre, Duration::from_secs(secs as u64));
    s.judge_window = Some(window);
    s.alerts = Some(Ok(Vec::new()));
    for &(v, n, e, slow) in side {
        measure(&mut s, Signal::RequestCount, v, window, Reading::Value(n));
        measure(&mut s, Signal::ErrorCount, v, window, Reading::Value(e));
        measure(
            &mut s,
            Signal::LatencyBuckets,
            v,
            window,
            Reading::Buckets(vec![
                (0.1, n * 0.5),
                (0.25, n * (1.0 - slow)),
                (f64::INFINITY, n),
            ]),
        );
    }
    s
}

fn run(config: &Config, ticks: i64, make: impl Fn(i64) -> Snapshot) -> (Decision, History) {
    let mut h = History::default();
    let ctx = RunContext::default();
    let mut last = Decision::Hold {
        waiting: Vec::new(),
    };
    for i in 0..ticks {
        last = tick(config, &ctx, &mut h, Phase::Pre, at(0), &make(i * 30));
        if !matches!(last, Decision::Hold { .. }) {
            break;
        }
    }
    (last, h)
}

#[test]
fn thin_data_waits_then_ends_for_insufficient_evidence() {
    let c = config();
    // One 5xx among 37 canary requests: the old rule's false abort. Traffic stays thin.
    let (d, h) = run(&c, 200, |t| {
        judged(&c, t, &[(T, 37.0, 1.0, 0.1), (P, 74.0, 0.0, 0.1)])
    });
    let last = h
        .check(CheckId::Pre(PreCheck::CanaryErrorRate))
        .unwrap()
        .last()
        .unwrap();
    assert_eq!(last.status, Status::Inconclusive, "{}", last.summary());
    let cmp = last.comparison.as_ref().unwrap();
    assert!(cmp.more_canary_trials.unwrap() > 100, "{}", cmp.summary());
    match d {
        Decision::Abort { reason } => {
            assert!(reason.contains("insufficient evidence"), "{reason}");
            assert!(reason.contains("pre.canary_"), "{reason}");
        }
        other => panic!("expected an abort at the judge's deadline, got {other:?}"),
    }
    // It waited the whole deadline, not less.
    let first = h
        .check(CheckId::Pre(PreCheck::CanaryErrorRate))
        .unwrap()
        .first_at
        .unwrap();
    assert!(last.at - first >= chrono::Duration::from_std(c.judge.deadline).unwrap());
}

#[test]
fn a_regression_with_enough_requests_fails() {
    let c = config();
    // Canary 4 % vs production 1 %, traffic growing 600 / 1200 requests per tick.
    let (d, h) = run(&c, 60, |t| {
        let k = (t / 30 + 1) as f64;
        judged(
            &c,
            t,
            &[
                (T, 600.0 * k, 24.0 * k, 0.1),
                (P, 1200.0 * k, 12.0 * k, 0.1),
            ],
        )
    });
    match d {
        Decision::Abort { reason } => assert!(reason.contains("pre.canary_error_rate"), "{reason}"),
        other => panic!("expected an abort by the error comparison, got {other:?}"),
    }
    let last = h
        .check(CheckId::Pre(PreCheck::CanaryErrorRate))
        .unwrap()
        .last()
        .unwrap();
    let cmp = last.comparison.as_ref().unwrap();
    assert!(cmp.confidence_reached >= cmp.required_confidence);
    assert!(cmp.effect_interval.low > 0.0, "{}", cmp.summary());
}

#[test]
fn slow_canary_fails_the_latency_comparison() {
    let c = config();
    let (d, h) = run(&c, 60, |t| {
        let k = (t / 30 + 1) as f64;
        judged(
            &c,
            t,
            &[(T, 600.0 * k, 0.0, 0.45), (P, 1200.0 * k, 0.0, 0.1)],
        )
    });
    match d {
        Decision::Abort { reason } => assert!(reason.contains("pre.canary_latency"), "{reason}"),
        other => panic!("expected an abort by the latency comparison, got {other:?}"),
    }
    // The bound chosen from production's buckets: 0.25 s leaves 10 % slower.
    assert_eq!(h.latency_boundary, Some(0.25));
}

#[test]
fn healthy_canary_with_enough_requests_passes() {
    let c = config();
    let (d, h) = run(&c, 60, |t| {
        let k = (t / 30 + 1) as f64;
        judged(
            &c,
            t,
            &[(T, 600.0 * k, 6.0 * k, 0.1), (P, 1200.0 * k, 12.0 * k, 0.1)],
        )
    });
    assert_eq!(
        d,
        Decision::Passed,
        "{:?}",
        h.check(CheckId::Pre(PreCheck::CanaryErrorRate))
    );
    for id in [PreCheck::CanaryErrorRate, PreCheck::CanaryLatency] {
        assert_eq!(h.check(id).unwrap().last().unwrap().status, Status::Pass);
    }
}

#[test]
fn the_latency_bound_is_fixed_once() {
    let c = config();
    let mut h = History::default();
    let ctx = RunContext::default();
    // Too few production requests: no bound yet.
    tick(
        &c,
        &ctx,
        &mut h,
        Phase::Pre,
        at(0),
        &judged(&c, 0, &[(T, 10.0, 0.0, 0.1), (P, 10.0, 0.0, 0.1)]),
    );
    assert_eq!(h.latency_boundary, None);
    tick(
        &c,
        &ctx,
        &mut h,
        Phase::Pre,
        at(0),
        &judged(&c, 30, &[(T, 100.0, 0.0, 0.1), (P, 100.0, 0.0, 0.1)]),
    );
    assert_eq!(h.latency_boundary, Some(0.25));
    // Production's tail moves later: the question stays the same.
    tick(
        &c,
        &ctx,
        &mut h,
        Phase::Pre,
        at(0),
        &judged(&c, 60, &[(T, 200.0, 0.0, 0.5), (P, 200.0, 0.0, 0.5)]),
    );
    assert_eq!(h.latency_boundary, Some(0.25));
}

#[test]
fn only_firing_alerts_count_and_comparative_ones_are_left_to_the_judge() {
    let c = config();
    let alert = |name: &str, state| Alert {
        name: name.into(),
        state,
        evaluated_locally: true,
        detail: "d".into(),
    };
    let sample = |alerts: Vec<Alert>| {
        let mut s = judged(&c, 0, &[(T, 10.0, 0.0, 0.1), (P, 10.0, 0.0, 0.1)]);
        s.alerts = Some(Ok(alerts));
        let mut h = History::default();
        tick(&c, &RunContext::default(), &mut h, Phase::Pre, at(0), &s);
        h.check(CheckId::Pre(PreCheck::NoCanaryAlerts))
            .unwrap()
            .last()
            .unwrap()
            .clone()
    };
    // Pending (its `for` not elapsed): not counted, listed.
    let s = sample(vec![alert(
        "ZaiProxyCanaryHighErrorRate",
        AlertState::Pending,
    )]);
    assert_eq!(s.status, Status::Pass, "{}", s.summary());
    assert!(s.evidence.iter().any(|e| e.contains("pending")));
    // Firing: counted.
    let s = sample(vec![alert(
        "ZaiProxyCanaryHighErrorRate",
        AlertState::Firing,
    )]);
    assert_eq!(s.status, Status::Fail, "{}", s.summary());
    // The comparative alert firing: the judge decides that comparison.
    let s = sample(vec![alert(
        "ZaiProxyCanaryErrorRateHigherThanProduction",
        AlertState::Firing,
    )]);
    assert_eq!(s.status, Status::Pass, "{}", s.summary());
    assert!(s.evidence.iter().any(|e| e.contains("judge")));
    // With the judge's check off, the alert counts again.
    let mut off = config();
    for check in &mut off.checks {
        if check.id == "pre.canary_error_rate" {
            check.enabled = false;
        }
    }
    let mut s = judged(&off, 0, &[(T, 10.0, 0.0, 0.1), (P, 10.0, 0.0, 0.1)]);
    s.alerts = Some(Ok(vec![alert(
        "ZaiProxyCanaryErrorRateHigherThanProduction",
        AlertState::Firing,
    )]));
    let mut h = History::default();
    tick(&off, &RunContext::default(), &mut h, Phase::Pre, at(0), &s);
    let last = h
        .check(CheckId::Pre(PreCheck::NoCanaryAlerts))
        .unwrap()
        .last()
        .unwrap();
    assert_eq!(last.status, Status::Fail, "{}", last.summary());
}
