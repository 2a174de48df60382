//! The Monte Carlo: many simulated promotions per scenario, every judge on the same streams.
//!
//! Looks happen every interval from 30 s after the run start to the deadline. With a
//! look-back, the streams start that long before the run: the new judge counts from the data
//! start, the sliding windows and Prometheus's rule evaluations see that time too, and the
//! Kayenta-style judge tests only intervals after the run start (its analysis starts with the
//! run). Each scenario draws from its own `StdRng`, seeded from the master seed and the
//! scenario's index, so results do not depend on threads or order.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use zai_promoter::engine::judge::Verdict;

use super::judges::{Kayenta, NewJudge, NewJudgeSettings, Outcome, Tally, Threshold};
use super::model::{INTERVAL_S, Interval, Scenario, World};

/// The judges, in table order.
pub const JUDGES: [&str; 4] = ["new", "threshold", "threshold_for_5m", "kayenta"];

/// One scenario's run results, per judge in [`JUDGES`] order.
pub type JudgeRuns = [Vec<RunResult>; 4];

/// How a benchmark run is set up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Settings {
    /// Master seed.
    pub seed: u64,
    /// Simulated promotions per healthy scenario.
    pub runs_healthy: u32,
    /// Simulated promotions per defect scenario.
    pub runs_defect: u32,
    /// Intervals of data before the run start.
    pub lookback_intervals: u32,
    /// Looks until the deadline (60 × 30 s = 30 min).
    pub deadline_intervals: u32,
    /// The new judge's settings.
    pub new_judge: NewJudgeSettings,
}

/// One judge's result in one simulated run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RunResult {
    /// The outcome.
    pub outcome: Outcome,
    /// Seconds from the run start to the verdict (the deadline when inconclusive).
    pub seconds: f64,
    /// Canary requests since the data start at the verdict.
    pub canary_requests: u64,
}

/// Splitmix64: independent seeds for scenarios from one master seed.
pub fn derive_seed(master: u64, index: u64) -> u64 {
    let mut z = master ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One simulated promotion: every judge's result, in [`JUDGES`] order.
pub fn simulate_run(scenario: Scenario, settings: &Settings, rng: &mut StdRng) -> [RunResult; 4] {
    let mut world = World::new(scenario, rng);
    let mut tally = Tally::default();
    let mut iv = Interval::default();
    let mut new = NewJudge::new(settings.new_judge);
    let mut thr = Threshold::at_once();
    let mut thr_for = Threshold::with_for_5m();
    let mut kay = Kayenta::default();
    let mut done: [Option<RunResult>; 4] = [None; 4];
    let start = -i64::from(settings.lookback_intervals);
    let end = i64::from(settings.deadline_intervals);
    // Interval k covers ((k−1)·30 s, k·30 s] from the run start; looks at its end.
    for k in (start + 1)..=end {
        let looking = k >= 1;
        let kayenta_open = looking && done[3].is_none();
        world.next(rng, kayenta_open, &mut iv);
        tally.add(&iv);
        let at = |outcome| RunResult {
            outcome,
            seconds: k as f64 * INTERVAL_S,
            canary_requests: tally.canary.requests,
        };
        let decided = |v: Verdict| match v {
            Verdict::Fail => Some(Outcome::Fail),
            Verdict::Pass => Some(Outcome::Pass),
            Verdict::Inconclusive => None,
        };
        // Prometheus evaluates its rules before and after the run start.
        let v_for = thr_for.evaluate(&tally, looking);
        if !looking {
            continue;
        }
        if done[0].is_none() {
            done[0] = decided(new.look(&tally)).map(at);
        }
        if done[1].is_none() {
            done[1] = decided(thr.evaluate(&tally, true)).map(at);
        }
        if done[2].is_none() {
            done[2] = decided(v_for).map(at);
        }
        if kayenta_open {
            done[3] = decided(kay.look(&iv)).map(at);
        }
        if done.iter().all(Option::is_some) {
            break;
        }
    }
    let deadline = RunResult {
        outcome: Outcome::Inconclusive,
        seconds: end as f64 * INTERVAL_S,
        canary_requests: tally.canary.requests,
    };
    let mut out = [deadline; 4];
    for (o, d) in out.iter_mut().zip(done) {
        if let Some(r) = d {
            *o = r;
        }
    }
    // The Kayenta-style judge passes at the deadline when no interval rejected.
    if done[3].is_none() {
        out[3].outcome = Outcome::Pass;
    }
    out
}

/// All runs of one scenario: per judge, the list of run results.
pub fn simulate_scenario(scenario: Scenario, index: u64, settings: &Settings) -> JudgeRuns {
    let mut rng = StdRng::seed_from_u64(derive_seed(settings.seed, index));
    let runs = if scenario.defect.is_healthy() {
        settings.runs_healthy
    } else {
        settings.runs_defect
    };
    let mut out: JudgeRuns = Default::default();
    for _ in 0..runs {
        for (o, r) in out
            .iter_mut()
            .zip(simulate_run(scenario, settings, &mut rng))
        {
            o.push(r);
        }
    }
    out
}

/// Runs every scenario on `threads` threads; `progress` is called after each scenario.
pub fn simulate_all(
    scenarios: &[Scenario],
    settings: &Settings,
    threads: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Vec<JudgeRuns> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<JudgeRuns>>> = Mutex::new(vec![None; scenarios.len()]);
    let finished = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&sc) = scenarios.get(i) else { break };
                    let r = simulate_scenario(sc, i as u64, settings);
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(r);
                    }
                    progress(
                        finished.fetch_add(1, Ordering::Relaxed) + 1,
                        scenarios.len(),
                    );
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect()
}
