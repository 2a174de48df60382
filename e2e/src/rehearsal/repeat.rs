//! `zai-rehearse --repeat N`: flakiness as a number. Every selected scenario runs N times,
//! each run with its own seed ([`super::seeds::run_seeds`]), and the pass rate of each
//! scenario is reported with the seeds of the failed runs and the command that replays one.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::driver::ScenarioResult;

/// Largest `--repeat`.
pub const MAX_REPEAT: u32 = 1000;

/// Parses a `--repeat` value: a whole number of runs from 1 to [`MAX_REPEAT`].
pub fn parse_repeat(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_REPEAT).contains(&n) => Ok(n),
        _ => Err(format!(
            "repeat must be a whole number of runs from 1 to {MAX_REPEAT}, got {text:?}"
        )),
    }
}

/// Most scenarios `zai-rehearse --jobs` runs at once.
pub const MAX_JOBS: usize = 8;

/// Parses `--jobs`: scenarios run at once, 1 to [`MAX_JOBS`].
pub fn parse_jobs(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_JOBS).contains(&n) => Ok(n),
        _ => Err(format!(
            "jobs must be a whole number of scenarios run at once from 1 to {MAX_JOBS}, got {text:?}"
        )),
    }
}

/// The pass rate of one scenario over its runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepeatEntry {
    /// Scenario name.
    pub name: String,
    /// Runs made.
    pub runs: u32,
    /// Runs that met the expectation.
    pub passes: u32,
    /// `passes / runs`.
    pub pass_rate: f64,
    /// Run seeds of the failed runs, in run order.
    pub failed_seeds: Vec<u64>,
}

impl RepeatEntry {
    /// `healthy 5/5` or `canary-errors 4/5 (failed seeds: 123)`.
    pub fn line(&self) -> String {
        let mut line = format!("{:<20} {}/{}", self.name, self.passes, self.runs);
        if !self.failed_seeds.is_empty() {
            let seeds: Vec<String> = self.failed_seeds.iter().map(u64::to_string).collect();
            let _ = write!(line, "  (failed seeds: {})", seeds.join(", "));
        }
        line
    }
}

/// The `repeat` section of `rehearsal.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepeatSummary {
    /// Runs per scenario (`--repeat`).
    pub runs: u32,
    /// The seed of each run, in order (the first is the base seed).
    pub run_seeds: Vec<u64>,
    /// Per scenario, in the order they first ran.
    pub scenarios: Vec<RepeatEntry>,
}

/// Pass rates from `(scenario, run seed, passed)`, scenarios in order of first appearance.
pub fn tally<'a>(runs: impl IntoIterator<Item = (&'a str, u64, bool)>) -> Vec<RepeatEntry> {
    let mut entries: Vec<RepeatEntry> = Vec::new();
    for (name, seed, passed) in runs {
        let index = match entries.iter().position(|e| e.name == name) {
            Some(index) => index,
            None => {
                entries.push(RepeatEntry {
                    name: name.to_owned(),
                    runs: 0,
                    passes: 0,
                    pass_rate: 0.0,
                    failed_seeds: Vec::new(),
                });
                entries.len() - 1
            }
        };
        let entry = &mut entries[index];
        entry.runs += 1;
        if passed {
            entry.passes += 1;
        } else {
            entry.failed_seeds.push(seed);
        }
        entry.pass_rate = f64::from(entry.passes) / f64::from(entry.runs);
    }
    entries
}

/// The `repeat` section for `results` (every run of every scenario) made with `run_seeds`.
pub fn summarise(run_seeds: &[u64], results: &[ScenarioResult]) -> RepeatSummary {
    RepeatSummary {
        runs: u32::try_from(run_seeds.len()).unwrap_or(u32::MAX),
        run_seeds: run_seeds.to_vec(),
        scenarios: tally(
            results
                .iter()
                .map(|r| (r.name.as_str(), r.seeds.run, r.passed)),
        ),
    }
}

/// The console table of pass rates.
pub fn pass_table(summary: &RepeatSummary) -> String {
    let mut out = String::new();
    let seeds: Vec<String> = summary.run_seeds.iter().map(u64::to_string).collect();
    let _ = writeln!(
        out,
        "pass rate over {} runs (run seeds: {}):",
        summary.runs,
        seeds.join(", ")
    );
    for entry in &summary.scenarios {
        let _ = writeln!(out, "  {}", entry.line());
    }
    out
}

/// The command that replays one run of one scenario: `zai-rehearse --scenario NAME --seed
/// SEED`, with `--scenario-file FILE` for a custom scenario and the run's other non-default
/// flags (`extra`: platform, signals, time scale).
pub fn replay_command(
    name: &str,
    custom_file: Option<&Path>,
    seed: u64,
    extra: &[String],
) -> String {
    let mut command = format!("zai-rehearse --scenario {name}");
    if let Some(file) = custom_file {
        let _ = write!(command, " --scenario-file {}", file.display());
    }
    let _ = write!(command, " --seed {seed}");
    for flag in extra {
        let _ = write!(command, " {flag}");
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_parses_strictly() {
        assert_eq!(parse_repeat("1"), Ok(1));
        assert_eq!(parse_repeat(" 5 "), Ok(5));
        assert_eq!(parse_repeat("1000"), Ok(1000));
        for bad in ["0", "-1", "", "two", "1.5", "1001", "99999999999"] {
            let error = parse_repeat(bad).expect_err(bad);
            assert!(error.contains("repeat must be"), "{error}");
        }
    }

    #[test]
    fn jobs_parse_strictly() {
        assert_eq!(parse_jobs("1"), Ok(1));
        assert_eq!(parse_jobs(" 3 "), Ok(3));
        assert_eq!(parse_jobs("8"), Ok(MAX_JOBS));
        for bad in ["0", "-1", "", "three", "2.5", "9"] {
            let error = parse_jobs(bad).expect_err(bad);
            assert!(error.contains("jobs must be"), "{error}");
        }
    }

    #[test]
    fn tally_counts_passes_and_failing_seeds_per_scenario() {
        let runs = [
            ("healthy", 1, true),
            ("canary-errors", 1, true),
            ("healthy", 20, true),
            ("canary-errors", 20, false),
            ("healthy", 30, true),
            ("canary-errors", 30, true),
            ("healthy", 40, false),
            ("canary-errors", 40, false),
        ];
        let entries = tally(runs);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].name, "healthy");
        assert_eq!((entries[0].runs, entries[0].passes), (4, 3));
        assert_eq!(entries[0].failed_seeds, vec![40]);
        assert!((entries[0].pass_rate - 0.75).abs() < 1e-12);
        assert_eq!(entries[1].name, "canary-errors");
        assert_eq!((entries[1].runs, entries[1].passes), (4, 2));
        assert_eq!(entries[1].failed_seeds, vec![20, 40]);
        assert!((entries[1].pass_rate - 0.5).abs() < 1e-12);
        assert_eq!(
            entries[0].line(),
            "healthy              3/4  (failed seeds: 40)"
        );
        let all_pass = tally([("healthy", 1, true), ("healthy", 2, true)]);
        assert_eq!(all_pass[0].line(), "healthy              2/2");
        assert!((all_pass[0].pass_rate - 1.0).abs() < 1e-12);
        assert!(tally([]).is_empty());
    }

    #[test]
    fn replay_names_scenario_seed_and_flags() {
        assert_eq!(
            replay_command("healthy", None, 7, &[]),
            "zai-rehearse --scenario healthy --seed 7"
        );
        assert_eq!(
            replay_command(
                "slow",
                Some(Path::new("my.toml")),
                9,
                &["--signals prometheus".to_owned()]
            ),
            "zai-rehearse --scenario slow --scenario-file my.toml --seed 9 --signals prometheus"
        );
    }
}
