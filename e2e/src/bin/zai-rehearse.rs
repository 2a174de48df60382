//! `zai-rehearse`: rehearses canary → production promotions of the real proxy with the real
//! promoter, for every built-in scenario (or the ones asked for), and checks each verdict
//! against the scenario's expectation. Exit 0 only when every scenario met it.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use zai_e2e::platform::local::binary::proxy_binary;
use zai_e2e::rehearsal::junit::render_junit;
use zai_e2e::rehearsal::step_summary::render_step_summary;
use zai_e2e::rehearsal::suite::{PlatformKind, runtime_choice};
use zai_e2e::rehearsal::summary::{Summary, table};
use zai_e2e::rehearsal::{
    DEFAULT_TIME_SCALE, RunOptions, Scenario, SignalsChoice, TimeScale, builtin,
    parse_scenario_file, run_scenario,
};
use zai_promoter::ci::{
    ReportLinks, STEP_SUMMARY_ENV, SummaryTarget, could_not_run, summary_targets, write_summary,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PlatformArg {
    /// Child processes of the zai-proxy binary (no Docker).
    Local,
    /// Containers of a locally built image (needs a Docker daemon).
    Docker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SignalsArg {
    /// The promoter scrapes each pod's /metrics.
    Scrape,
    /// A real Prometheus on loopback.
    Prometheus,
}

/// Rehearse zai-proxy canary promotions end to end.
#[derive(Debug, Parser)]
#[command(name = "zai-rehearse", version)]
struct Args {
    /// Where the proxies run.
    #[arg(long, value_enum, default_value_t = PlatformArg::Local, env = "ZAI_REHEARSE_PLATFORM")]
    platform: PlatformArg,
    /// A built-in scenario name, or `all` (repeatable; default all).
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// Custom scenarios from a TOML file (`[[scenario]]` tables).
    #[arg(long, value_name = "FILE")]
    scenario_file: Option<PathBuf>,
    /// Metric signals: embedded scraping or a real Prometheus.
    #[arg(long, value_enum, default_value_t = SignalsArg::Scrape, env = "ZAI_REHEARSE_SIGNALS")]
    signals: SignalsArg,
    /// Seconds one minute of the checklist lasts.
    #[arg(long, default_value_t = DEFAULT_TIME_SCALE)]
    time_scale: f64,
    /// Where rehearsal.json, junit.xml (one testcase per scenario) and the per-scenario
    /// promoter reports go.
    #[arg(long, default_value = "target/rehearsal")]
    report_dir: PathBuf,
    /// Print rehearsal.json to stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write a compact Markdown verdict here (replaced); with `$GITHUB_STEP_SUMMARY` set
    /// it is appended there too (docs/CI.md).
    #[arg(long, value_name = "FILE", env = "ZAI_REHEARSE_SUMMARY")]
    summary: Option<PathBuf>,
}

fn select(args: &Args) -> anyhow::Result<Vec<Scenario>> {
    let all = builtin();
    let mut chosen = Vec::new();
    let names: Vec<&str> = if args.scenarios.is_empty() && args.scenario_file.is_none() {
        vec!["all"]
    } else {
        args.scenarios.iter().map(String::as_str).collect()
    };
    for name in names {
        if name == "all" {
            chosen.extend(all.iter().cloned());
        } else if let Some(s) = all.iter().find(|s| s.name == name) {
            chosen.push(s.clone());
        } else {
            let known: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
            bail!("unknown scenario {name:?}; built-in: {}", known.join(", "));
        }
    }
    if let Some(file) = &args.scenario_file {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let custom =
            parse_scenario_file(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        chosen.extend(custom);
    }
    Ok(chosen)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,zai_e2e=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let targets = summary_targets(
        args.summary.as_deref(),
        std::env::var(STEP_SUMMARY_ENV).ok().as_deref(),
    );
    match run(args, &targets).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("Error: {e:#}");
            if let Err(e) =
                write_summary(&could_not_run("zai-rehearse", &format!("{e:#}")), &targets)
            {
                eprintln!("zai-rehearse: {e}");
            }
            std::process::exit(1);
        }
    }
}

/// Runs the scenarios; the exit code is 0 when every one met its expectation, else 1.
async fn run(args: Args, targets: &[SummaryTarget]) -> anyhow::Result<i32> {
    let time = TimeScale::new(args.time_scale).map_err(anyhow::Error::msg)?;
    let scenarios = select(&args)?;
    let signals = match args.signals {
        SignalsArg::Scrape => SignalsChoice::Scrape,
        SignalsArg::Prometheus => SignalsChoice::Prometheus,
    };
    let options = RunOptions {
        time,
        signals,
        report_dir: args.report_dir.clone(),
    };
    let platform = match args.platform {
        PlatformArg::Local => PlatformKind::Local,
        PlatformArg::Docker => PlatformKind::Docker,
    };
    let binary = proxy_binary(true)?;
    let started = Instant::now();
    let mut results = Vec::new();
    for scenario in &scenarios {
        eprintln!(
            "== {}: {} (expect {})",
            scenario.name,
            scenario.description,
            scenario.expect.outcome.label()
        );
        let result = run_scenario(
            scenario,
            runtime_choice(platform, &binary, time).await?,
            &options,
        )
        .await
        .with_context(|| format!("scenario {}", scenario.name))?;
        eprintln!(
            "   {} in {:.1}s: {} ({})",
            result.outcome,
            result.decision_seconds,
            if result.passed { "PASS" } else { "FAIL" },
            result.verdict
        );
        results.push(result);
    }
    let summary = Summary {
        platform: platform.label().to_owned(),
        signals: format!("{:?}", args.signals).to_lowercase(),
        time_scale: time.seconds_per_minute(),
        passed: results.iter().all(|r| r.passed),
        suite_seconds: started.elapsed().as_secs_f64(),
        scenarios: results,
    };
    let path = summary.write(&args.report_dir)?;
    let junit = args.report_dir.join("junit.xml");
    std::fs::write(&junit, render_junit(&summary))
        .with_context(|| format!("writing {}", junit.display()))?;
    if !targets.is_empty() {
        let links = ReportLinks::from_env(|name| std::env::var(name).ok());
        // The rehearsal's result stands even when its summary cannot be written.
        if let Err(e) = write_summary(&render_step_summary(&summary, &path, &links), targets) {
            eprintln!("zai-rehearse: {e}");
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", table(&summary.scenarios));
        println!(
            "suite: {:.1}s on {} with {} signals; report: {}",
            summary.suite_seconds,
            summary.platform,
            summary.signals,
            path.display()
        );
    }
    Ok(if summary.passed { 0 } else { 1 })
}
