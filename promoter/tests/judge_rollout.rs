//! Phase 3's judged comparison, `rollout.new_version_errors`, through the pure engine:
//! production's new-version pods against its old-version pods while both serve. A regression
//! with enough requests rolls back at once; equal error rates pass; thin data waits while both
//! serve (no "insufficient evidence" end in phase 3) and is "not evaluated" once the old
//! version stops serving, which neither holds nor undoes the rollout.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use zai_promoter::catalog::{CheckId, Phase, RolloutCheck};
use zai_promoter::config::Config;
use zai_promoter::engine::{Decision, History, RunContext, Snapshot, Status, tick};
use zai_promoter::platform::Variant::Production as P;
use zai_promoter::signals::{Cohort, Measurement, Reading, Signal, SignalQuery};

const ID: CheckId = CheckId::Rollout(RolloutCheck::NewVersionErrors);

/// The comparison and `rollout.no_crash_loops` (something that passes) are enabled.
fn config() -> Config {
    let mut c = Config::default();
    for check in &mut c.checks {
        check.enabled = matches!(
            check.id,
            CheckId::Rollout(RolloutCheck::NewVersionErrors | RolloutCheck::NoCrashLoops)
        );
    }
    c
}

fn ctx() -> RunContext {
    RunContext {
        from_version: Some("1.2.0".into()),
        to_version: Some("1.2.1".into()),
        rollout_started: Some(at(0)),
        ..RunContext::default()
    }
}

/// A phase-3 snapshot at `secs`: per cohort (requests, 5xx); `old_serving` keeps a Ready pod
/// of 1.2.0 in production.
fn rollout(
    config: &Config,
    secs: i64,
    new: (f64, f64),
    old: (f64, f64),
    old_serving: bool,
) -> Snapshot {
    let mut s = snapshot(secs);
    let window = zai_promoter::engine::judge_window(
        config,
        Phase::Rollout,
        Duration::from_secs(secs as u64),
    );
    s.judge_window = Some(window);
    let mut pods = vec![pod("zai-proxy-new", P, true, 0, "1.2.1")];
    if old_serving {
        pods.push(pod("zai-proxy-old", P, true, 0, "1.2.0"));
    }
    s.pods.insert(P, Ok(pods));
    for (cohort, (n, e)) in [(Cohort::NewVersion, new), (Cohort::OldVersion, old)] {
        for (signal, v) in [(Signal::RequestCount, n), (Signal::ErrorCount, e)] {
            s.measurements.insert(
                SignalQuery::new(signal, P, window).of(cohort),
                Measurement {
                    reading: Reading::Value(v),
                    source: format!("test {signal} {}", cohort.label()),
                },
            );
        }
    }
    s
}

fn run(config: &Config, ticks: i64, make: impl Fn(i64) -> Snapshot) -> (Decision, History) {
    let mut h = History::default();
    let mut last = Decision::Hold {
        waiting: Vec::new(),
    };
    for i in 0..ticks {
        last = tick(config, &ctx(), &mut h, Phase::Rollout, at(0), &make(i * 10));
        if !matches!(last, Decision::Hold { .. }) {
            break;
        }
    }
    (last, h)
}

#[test]
fn a_new_version_failing_more_often_rolls_back_at_once() {
    let c = config();
    // New version 5 % vs old 1 %, 300 requests per side per tick.
    let (d, h) = run(&c, 60, |t| {
        let k = (t / 10 + 1) as f64;
        rollout(&c, t, (300.0 * k, 15.0 * k), (300.0 * k, 3.0 * k), true)
    });
    match d {
        Decision::Rollback { reason, trigger } => {
            assert!(reason.contains("rollout.new_version_errors"), "{reason}");
            assert!(reason.contains("new version"), "{reason}");
            assert_eq!(trigger, None);
        }
        other => panic!("expected a rollback by the comparison, got {other:?}"),
    }
    let last = h.check(ID).unwrap().last().unwrap();
    assert_eq!(last.status, Status::Fail);
    let cmp = last.comparison.as_ref().unwrap();
    assert!(cmp.effect_interval.low > 0.0, "{}", cmp.summary());
}

#[test]
fn equal_error_rates_pass() {
    let c = config();
    let (d, h) = run(&c, 120, |t| {
        let k = (t / 10 + 1) as f64;
        rollout(&c, t, (500.0 * k, 5.0 * k), (500.0 * k, 5.0 * k), true)
    });
    assert_eq!(d, Decision::Passed);
    let last = h.check(ID).unwrap().last().unwrap();
    assert_eq!(last.status, Status::Pass, "{}", last.summary());
}

#[test]
fn thin_data_waits_while_both_serve_then_is_not_evaluated() {
    let c = config();
    // Thin, equal traffic up to the rollout's deadline: phase 3 keeps waiting (no
    // "insufficient evidence" end, even with a judge deadline shorter than the rollout's).
    let mut c = c;
    c.judge.deadline = Duration::from_secs(60);
    let ticks = c.rollout_deadline.as_secs() as i64 / 10 - 1;
    let (d, h) = run(&c, ticks, |t| {
        rollout(&c, t, (20.0, 0.0), (20.0, 0.0), true)
    });
    assert!(matches!(d, Decision::Hold { .. }), "{d:?}");
    let last = h.check(ID).unwrap().last().unwrap();
    assert_eq!(last.status, Status::Inconclusive, "{}", last.summary());

    // The old version stops serving: not evaluated, with the counts; the phase passes on the
    // other check's evidence.
    let mut h = History::default();
    let snap = rollout(&c, 30, (20.0, 0.0), (20.0, 0.0), false);
    let d = tick(&c, &ctx(), &mut h, Phase::Rollout, at(0), &snap);
    let last = h.check(ID).unwrap().last().unwrap();
    assert_eq!(last.status, Status::Skipped, "{}", last.summary());
    let why = last.evidence.join(" ");
    assert!(why.contains("not evaluated"), "{why}");
    assert!(why.contains("new version 0/20"), "{why}");
    assert_eq!(d, Decision::Passed);
}

#[test]
fn a_confident_failure_counts_even_after_the_old_version_stopped() {
    let c = config();
    let snap = rollout(&c, 60, (3000.0, 150.0), (3000.0, 30.0), false);
    let mut h = History::default();
    let d = tick(&c, &ctx(), &mut h, Phase::Rollout, at(0), &snap);
    assert!(matches!(d, Decision::Rollback { .. }), "{d:?}");
}
