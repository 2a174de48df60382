//! The suite's outputs: the table printed at the end and `rehearsal.json`.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::driver::ScenarioResult;
use super::repeat::RepeatSummary;

/// `rehearsal.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// `local` or `docker`.
    pub platform: String,
    /// `scrape` or `prometheus`.
    pub signals: String,
    /// Seconds per seed minute.
    pub time_scale: f64,
    /// Every scenario met its expectation.
    pub passed: bool,
    /// Wall time of the whole suite.
    pub suite_seconds: f64,
    /// The base seed (`--seed`); each result carries its run's and processes' seeds.
    #[serde(default)]
    pub seed: u64,
    /// Per scenario (with `--repeat N`: every run of every scenario, run by run).
    pub scenarios: Vec<ScenarioResult>,
    /// Pass rates per scenario, with `--repeat N` (N > 1) only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<RepeatSummary>,
    /// Commands replaying each failed run (empty when every run passed).
    #[serde(default)]
    pub replay: Vec<String>,
}

impl Summary {
    /// Writes `rehearsal.json` into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<std::path::PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("rehearsal.json");
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&path, json + "\n")?;
        Ok(path)
    }
}

/// The table: scenario, expected, outcome, time to decision, worker ok/failed/lost.
pub fn table(results: &[ScenarioResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<20} {:<12} {:>10} {:>8} {:>8} {:>6}  result",
        "scenario", "expected", "outcome", "decision", "ok", "failed", "lost"
    );
    for r in results {
        let _ = writeln!(
            out,
            "{:<20} {:<20} {:<12} {:>9.1}s {:>8} {:>8} {:>6}  {}",
            r.name,
            r.expected,
            r.outcome,
            r.decision_seconds,
            r.workers.ok,
            r.workers.failed,
            r.workers.lost,
            if r.passed { "PASS" } else { "FAIL" }
        );
        if !r.passed {
            let _ = writeln!(out, "    outcomes: {:?}", r.outcomes);
        }
        for p in &r.problems {
            let _ = writeln!(out, "    - {p}");
        }
    }
    out
}
