//! `cargo bench -p zai-benches --bench decision_quality`: the decision-quality Monte Carlo of
//! issue 14 (see docs/DECISIONS.md). Writes docs/decisions/decision_quality.{json,md} and
//! prints the tables.
//!
//! Environment: `ZAI_DQ_QUICK=1` (or `-- --quick`) runs 200/100 runs per scenario and writes
//! to target/decision_quality/ instead; `ZAI_DQ_SEED` (default 14), `ZAI_DQ_RUNS_HEALTHY`,
//! `ZAI_DQ_RUNS_DEFECT`, `ZAI_DQ_LOOKBACK_S` (default 0), `ZAI_DQ_THREADS` (default: the
//! machine's cores), `ZAI_DQ_OUT` (output directory).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use zai_benches::decision::judges::NewJudgeSettings;
use zai_benches::decision::report::{self, Report};
use zai_benches::decision::run::{Settings, simulate_all};
use zai_benches::decision::scenarios;

/// Default master seed.
const DEFAULT_SEED: u64 = 14;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --benches` runs bench binaries without `--bench`: do nothing then.
    if !args.iter().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    match bench(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("decision_quality: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a valid number")),
        Err(_) => Ok(default),
    }
}

fn bench(args: &[String]) -> anyhow::Result<()> {
    let quick = args.iter().any(|a| a == "--quick")
        || std::env::var("ZAI_DQ_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let lookback_s: u32 = env_num("ZAI_DQ_LOOKBACK_S", 0)?;
    if !lookback_s.is_multiple_of(30) {
        anyhow::bail!("ZAI_DQ_LOOKBACK_S={lookback_s} must be a multiple of the 30 s interval");
    }
    let settings = Settings {
        seed: env_num("ZAI_DQ_SEED", DEFAULT_SEED)?,
        runs_healthy: env_num("ZAI_DQ_RUNS_HEALTHY", if quick { 200 } else { 2000 })?,
        runs_defect: env_num("ZAI_DQ_RUNS_DEFECT", if quick { 100 } else { 1000 })?,
        lookback_intervals: lookback_s / 30,
        deadline_intervals: 60,
        new_judge: NewJudgeSettings::default(),
    };
    let threads: usize = env_num(
        "ZAI_DQ_THREADS",
        std::thread::available_parallelism().map_or(1, usize::from),
    )?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out_dir = match std::env::var("ZAI_DQ_OUT") {
        Ok(d) => PathBuf::from(d),
        Err(_) if quick => root.join("target/decision_quality"),
        Err(_) => root.join("docs/decisions"),
    };
    let grid = scenarios();
    eprintln!(
        "decision_quality: {} run, seed {}, {} scenarios, {}/{} runs each (healthy/defect), look-back {lookback_s} s, {threads} threads",
        if quick { "quick" } else { "full" },
        settings.seed,
        grid.len(),
        settings.runs_healthy,
        settings.runs_defect,
    );
    let started = Instant::now();
    let results = simulate_all(&grid, &settings, threads, &|done, total| {
        if done % 16 == 0 || done == total {
            eprintln!(
                "  {done}/{total} scenarios, {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    });
    let rows = report::summarise_all(&grid, &results);
    let floors = report::floors(&settings);
    let mut command = String::new();
    for (k, v) in std::env::vars() {
        if k.starts_with("ZAI_DQ_") && k != "ZAI_DQ_OUT" {
            command.push_str(&format!("{k}={v} "));
        }
    }
    command.push_str("cargo bench -p zai-benches --bench decision_quality");
    let report = Report {
        command,
        quick,
        settings,
        elapsed_seconds: started.elapsed().as_secs_f64(),
        goals: report::goals(&rows, &floors),
        floors,
        scenarios: rows,
    };
    let json = out_dir.join("decision_quality.json");
    report::write_json(&report, &json).with_context(|| format!("writing {}", json.display()))?;
    let md = report::markdown(&report);
    let md_path = out_dir.join("decision_quality.md");
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    println!("{md}");
    println!("JSON: {}\nTables: {}", json.display(), md_path.display());
    Ok(())
}
