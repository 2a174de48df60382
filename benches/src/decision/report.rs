//! Summaries of the Monte Carlo: rates with Wilson intervals, times and request counts per
//! scenario and judge, the goals of issue 14, the JSON file and the Markdown tables.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use zai_promoter::engine::judge::{self, Proportion, Verdict};

use super::judges::{MIN_REQUESTS, Outcome};
use super::model::{Defect, Scenario};
use super::run::{JUDGES, JudgeRuns, RunResult, Settings};
use super::stats::{Z_95, quantile_sorted, wilson};

/// A rate with its 95 % Wilson interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    /// Runs with the event.
    pub count: u64,
    /// Runs.
    pub runs: u64,
    /// `count / runs`.
    #[serde(skip)]
    pub rate: f64,
    /// Wilson 95 % lower bound.
    pub low: f64,
    /// Wilson 95 % upper bound.
    pub high: f64,
}

impl Rate {
    fn new(count: u64, runs: u64) -> Self {
        let (low, high) = wilson(count, runs, Z_95);
        Rate {
            count,
            runs,
            rate: if runs > 0 {
                count as f64 / runs as f64
            } else {
                0.0
            },
            low: round4(low),
            high: round4(high),
        }
    }

    fn cell(&self) -> String {
        format!("{} [{}–{}]", pct(self.rate), pct(self.low), pct(self.high))
    }
}

fn round4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

fn pct(v: f64) -> String {
    let p = v * 100.0;
    if p == 0.0 || p >= 10.0 {
        format!("{p:.0}")
    } else {
        format!("{p:.1}")
    }
}

/// One judge on one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgeSummary {
    /// Runs that ended in fail (abort/rollback): false aborts when healthy, detections else.
    pub fail: Rate,
    /// Runs that ended in pass (promotion).
    pub pass: Rate,
    /// Runs undecided at the deadline ("aborted: insufficient evidence").
    pub inconclusive: Rate,
    /// Median seconds from the run start to a verdict, over runs with one.
    pub median_seconds: Option<f64>,
    /// 95th percentile of the same.
    pub p95_seconds: Option<f64>,
    /// Median canary requests at the verdict, over runs with one.
    pub median_canary_requests: Option<f64>,
    /// Fewest canary requests at any verdict.
    pub min_canary_requests: Option<u64>,
    /// Fewest canary requests at a pass.
    pub min_canary_requests_pass: Option<u64>,
    /// Fewest canary requests at a fail.
    pub min_canary_requests_fail: Option<u64>,
}

fn summarise(results: &[RunResult]) -> JudgeSummary {
    let n = results.len() as u64;
    let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count() as u64;
    let decided: Vec<&RunResult> = results
        .iter()
        .filter(|r| r.outcome != Outcome::Inconclusive)
        .collect();
    let min_at = |o: Outcome| {
        results
            .iter()
            .filter(|r| r.outcome == o)
            .map(|r| r.canary_requests)
            .min()
    };
    let mut secs: Vec<f64> = decided.iter().map(|r| r.seconds).collect();
    secs.sort_by(f64::total_cmp);
    let mut reqs: Vec<f64> = decided.iter().map(|r| r.canary_requests as f64).collect();
    reqs.sort_by(f64::total_cmp);
    JudgeSummary {
        fail: Rate::new(count(Outcome::Fail), n),
        pass: Rate::new(count(Outcome::Pass), n),
        inconclusive: Rate::new(count(Outcome::Inconclusive), n),
        median_seconds: quantile_sorted(&secs, 0.5),
        p95_seconds: quantile_sorted(&secs, 0.95),
        median_canary_requests: quantile_sorted(&reqs, 0.5),
        min_canary_requests: decided.iter().map(|r| r.canary_requests).min(),
        min_canary_requests_pass: min_at(Outcome::Pass),
        min_canary_requests_fail: min_at(Outcome::Fail),
    }
}

/// One scenario, all judges.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioSummary {
    /// The scenario.
    pub scenario: Scenario,
    /// Defect label.
    pub defect: String,
    /// Canary requests per second.
    pub canary_rate: f64,
    /// Per judge (keys: [`JUDGES`]).
    pub judges: BTreeMap<String, JudgeSummary>,
}

/// One goal, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Goal {
    /// What is asked.
    pub goal: String,
    /// "PASS" or "MISS".
    pub status: String,
    /// The measured number(s) behind the status.
    pub detail: String,
}

/// Everything the benchmark writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The command that made it.
    pub command: String,
    /// Quick (CI) mode or full.
    pub quick: bool,
    /// Settings, master seed included.
    pub settings: Settings,
    /// Wall-clock seconds of the simulation.
    pub elapsed_seconds: f64,
    /// The goals.
    pub goals: Vec<Goal>,
    /// Fewest canary requests with which the new judge can pass / fail at all.
    pub floors: BTreeMap<String, u64>,
    /// Per scenario.
    pub scenarios: Vec<ScenarioSummary>,
}

/// Summaries of every scenario.
pub fn summarise_all(scenarios: &[Scenario], results: &[JudgeRuns]) -> Vec<ScenarioSummary> {
    scenarios
        .iter()
        .zip(results)
        .map(|(sc, r)| ScenarioSummary {
            scenario: *sc,
            defect: sc.defect.label(),
            canary_rate: sc.canary_rate(),
            judges: JUDGES
                .iter()
                .zip(r.iter())
                .map(|(name, rs)| ((*name).to_owned(), summarise(rs)))
                .collect(),
        })
        .collect()
}

/// The fewest canary requests `n` at which `verdict` gives `want` for canary `events(n)` out
/// of `n` (none for a pass, all for a fail) against a production known almost exactly (10⁹
/// requests at proportion `p_prod`): no amount of production data lets the judge decide on
/// fewer (binary search on a monotone boundary; `None` above 10⁷).
fn floor(
    settings: &Settings,
    tolerance: judge::Tolerance,
    p_prod: f64,
    want: Verdict,
) -> Option<u64> {
    let gives = |n: u64| {
        let events = if want == Verdict::Fail { n as f64 } else { 0.0 };
        let prod_n = 1e9;
        judge::verdict(
            Proportion::new(events, n as f64),
            Proportion::new(p_prod * prod_n, prod_n),
            tolerance,
            settings.new_judge.alpha_each,
        ) == want
    };
    let (mut lo, mut hi) = (0u64, 1u64);
    while !gives(hi) {
        lo = hi;
        hi *= 2;
        if hi > 10_000_000 {
            return None;
        }
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if gives(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// The analytical floors of the new judge: with production at the given proportion, the
/// fewest canary requests for a pass (no canary event) and for a fail (every canary request
/// an event).
pub fn floors(settings: &Settings) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let j = settings.new_judge;
    let cases = [
        ("errors_pass_at_0pct", j.errors, 0.0, Verdict::Pass),
        ("errors_pass_at_1pct", j.errors, 0.01, Verdict::Pass),
        ("errors_pass_at_3pct", j.errors, 0.03, Verdict::Pass),
        ("errors_fail_at_0pct", j.errors, 0.0, Verdict::Fail),
        ("latency_pass_at_10pct", j.latency, 0.1, Verdict::Pass),
        ("latency_fail_at_10pct", j.latency, 0.1, Verdict::Fail),
    ];
    for (name, tol, p, want) in cases {
        if let Some(n) = floor(settings, tol, p, want) {
            out.insert(name.to_owned(), n);
        }
    }
    out
}

fn worst<'a>(
    rows: impl Iterator<Item = &'a ScenarioSummary>,
    judge: &str,
    key: impl Fn(&JudgeSummary) -> f64,
    highest: bool,
) -> Option<(&'a ScenarioSummary, f64)> {
    rows.filter_map(|s| s.judges.get(judge).map(|j| (s, key(j))))
        .max_by(|a, b| {
            if highest {
                a.1.total_cmp(&b.1)
            } else {
                b.1.total_cmp(&a.1)
            }
        })
}

fn where_(s: &ScenarioSummary) -> String {
    format!(
        "{} at {} % background, {} req/s, canary share 1/{:.0}",
        s.defect,
        s.scenario.background * 100.0,
        s.scenario.rate,
        1.0 / s.scenario.canary_share
    )
}

/// The goals of issue 14, checked on the new judge (other judges for comparison).
pub fn goals(rows: &[ScenarioSummary], floors: &BTreeMap<String, u64>) -> Vec<Goal> {
    let mut out = Vec::new();
    let status = |ok: bool| if ok { "PASS" } else { "MISS" }.to_owned();
    let healthy = || rows.iter().filter(|s| s.scenario.defect.is_healthy());
    if let Some((s, v)) = worst(healthy(), "new", |j| j.fail.rate, true) {
        let j = &s.judges["new"];
        let others: Vec<String> = JUDGES[1..]
            .iter()
            .filter_map(|name| {
                worst(healthy(), name, |j| j.fail.rate, true)
                    .map(|(_, v)| format!("{name} {}", pct(v)))
            })
            .collect();
        out.push(Goal {
            goal: "false abort (fail verdict) ≤ 1 % for healthy canaries in every noise configuration".into(),
            status: status(v <= 0.01),
            detail: format!(
                "new judge worst {} % ({}, {} of {} runs, Wilson 95 % {}–{} %); worst of the others, %: {}",
                pct(v),
                where_(s),
                j.fail.count,
                j.fail.runs,
                pct(j.fail.low),
                pct(j.fail.high),
                others.join(", ")
            ),
        });
    }
    if let Some((s, v)) = worst(
        healthy(),
        "new",
        |j| j.fail.rate + j.inconclusive.rate,
        true,
    ) {
        out.push(Goal {
            goal: "same, counting \"aborted: insufficient evidence\" at the deadline as an abort"
                .into(),
            status: status(v <= 0.01),
            detail: format!("new judge worst {} % ({})", pct(v), where_(s)),
        });
    }
    for (what, pick) in [
        (
            "detection ≥ 95 % for ×3 error ratio (background ≥ 1 %) at ≥ 20 canary req/s",
            (|d: &Defect, bg: f64| matches!(d, Defect::ErrorRatio(k) if *k == 3.0) && bg >= 0.01)
                as fn(&Defect, f64) -> bool,
        ),
        (
            "detection ≥ 95 % for p95 +100 % at ≥ 20 canary req/s",
            |d: &Defect, _| matches!(d, Defect::LatencyP95(x) if *x == 1.0),
        ),
    ] {
        let sel = || {
            rows.iter().filter(|s| {
                pick(&s.scenario.defect, s.scenario.background) && s.canary_rate >= 20.0 - 1e-9
            })
        };
        if let Some((s, v)) = worst(sel(), "new", |j| j.fail.rate, false) {
            let j = &s.judges["new"];
            out.push(Goal {
                goal: what.into(),
                status: status(v >= 0.95),
                detail: format!(
                    "new judge lowest {} % ({}, Wilson 95 % {}–{} %, median {} s) over {} scenarios",
                    pct(v),
                    where_(s),
                    pct(j.fail.low),
                    pct(j.fail.high),
                    j.median_seconds.unwrap_or(f64::NAN),
                    sel().count()
                ),
            });
        }
    }
    let min_of = |name: &str, f: fn(&JudgeSummary) -> Option<u64>| {
        rows.iter()
            .filter_map(|s| s.judges.get(name).and_then(f))
            .min()
    };
    let min_at = |name: &str| min_of(name, |j| j.min_canary_requests);
    let new_min = min_at("new");
    let new_pass = min_of("new", |j| j.min_canary_requests_pass);
    let new_fail = min_of("new", |j| j.min_canary_requests_fail);
    let floor_of = |kind: &str| {
        floors
            .iter()
            .filter(|(k, _)| k.contains(kind))
            .map(|(_, v)| *v)
            .min()
    };
    let (pass_floor, fail_floor) = (floor_of("_pass_"), floor_of("_fail_"));
    let others: Vec<String> = JUDGES[1..]
        .iter()
        .map(|n| format!("{n} {}", min_at(n).map_or("—".into(), |v| v.to_string())))
        .collect();
    out.push(Goal {
        goal: format!(
            "no verdict from fewer requests than the test needs (new judge: its floors; the promoter's min_requests is {MIN_REQUESTS})"
        ),
        status: status(
            new_pass.is_none_or(|m| m >= pass_floor.unwrap_or(u64::MAX))
                && new_fail.is_none_or(|m| m >= fail_floor.unwrap_or(u64::MAX)),
        ),
        detail: format!(
            "fewest canary requests at any verdict: new {} (at a pass {}, at a fail {}); {}; floors of the new judge (production known exactly at the named proportion) {:?}",
            new_min.map_or("—".into(), |v| v.to_string()),
            new_pass.map_or("—".into(), |v| v.to_string()),
            new_fail.map_or("—".into(), |v| v.to_string()),
            others.join(", "),
            floors
        ),
    });
    out
}

fn secs(v: Option<f64>) -> String {
    v.map_or("—".into(), |s| format!("{s:.0}"))
}

fn row_head(s: &ScenarioSummary) -> String {
    format!(
        "| {} % | {} | 1/{:.0} | {:.1} |",
        s.scenario.background * 100.0,
        s.scenario.rate,
        1.0 / s.scenario.canary_share,
        s.canary_rate
    )
}

/// Markdown: the healthy table, then one table per defect.
pub fn markdown(report: &Report) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Command: `{}` — seed {}, {} runs per healthy scenario, {} per defect scenario, look-back {} s, deadline {} s, {:.0} s.\n",
        report.command,
        report.settings.seed,
        report.settings.runs_healthy,
        report.settings.runs_defect,
        report.settings.lookback_intervals * 30,
        report.settings.deadline_intervals * 30,
        report.elapsed_seconds
    );
    let _ = writeln!(md, "### Goals\n");
    for g in &report.goals {
        let _ = writeln!(md, "- **{}** {}: {}", g.status, g.goal, g.detail);
    }
    let _ = writeln!(
        md,
        "\n### Healthy canaries: false aborts (%, Wilson 95 %)\n\n\
         | background | req/s | share | canary req/s | new: fail | new: insufficient | new: pass | new: median / p95 s | new: median canary req | threshold: fail | threshold for 5m: fail | threshold for 5m: insufficient | Kayenta: fail |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for s in report
        .scenarios
        .iter()
        .filter(|s| s.scenario.defect.is_healthy())
    {
        let j = |n: &str| &s.judges[n];
        let n = j("new");
        let _ = writeln!(
            md,
            "{} {} | {} | {} | {} / {} | {} | {} | {} | {} | {} |",
            row_head(s),
            n.fail.cell(),
            pct(n.inconclusive.rate),
            pct(n.pass.rate),
            secs(n.median_seconds),
            secs(n.p95_seconds),
            n.median_canary_requests
                .map_or("—".into(), |v| format!("{v:.0}")),
            j("threshold").fail.cell(),
            j("threshold_for_5m").fail.cell(),
            pct(j("threshold_for_5m").inconclusive.rate),
            j("kayenta").fail.cell(),
        );
    }
    let mut labels: Vec<String> = Vec::new();
    for s in &report.scenarios {
        if !s.scenario.defect.is_healthy() && !labels.contains(&s.defect) {
            labels.push(s.defect.clone());
        }
    }
    for label in labels {
        let _ = writeln!(
            md,
            "\n### Defect {label}: detection (%, Wilson 95 %)\n\n\
             | background | req/s | share | canary req/s | new: fail | new: insufficient | new: median / p95 s | new: median canary req | threshold: fail | threshold: median s | threshold for 5m: fail | Kayenta: fail | Kayenta: median s |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for s in report.scenarios.iter().filter(|s| s.defect == label) {
            let j = |n: &str| &s.judges[n];
            let n = j("new");
            let _ = writeln!(
                md,
                "{} {} | {} | {} / {} | {} | {} | {} | {} | {} | {} |",
                row_head(s),
                n.fail.cell(),
                pct(n.inconclusive.rate),
                secs(n.median_seconds),
                secs(n.p95_seconds),
                n.median_canary_requests
                    .map_or("—".into(), |v| format!("{v:.0}")),
                j("threshold").fail.cell(),
                secs(j("threshold").median_seconds),
                j("threshold_for_5m").fail.cell(),
                j("kayenta").fail.cell(),
                secs(j("kayenta").median_seconds),
            );
        }
    }
    md
}

/// Writes the report as compact JSON (creating the directory).
pub fn write_json(report: &Report, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string(report)? + "\n")?;
    Ok(())
}
