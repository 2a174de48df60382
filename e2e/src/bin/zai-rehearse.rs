//! `zai-rehearse`: rehearses canary → production promotions of the real proxy with the real
//! promoter, for the quick set of built-in scenarios (`--scenario all` for every one, or the
//! ones asked for), and checks each verdict
//! against the scenario's expectation. Exit 0 only when every scenario met it.
//!
//! Every random choice (fake upstreams, workers) derives from `--seed` (default 1, printed);
//! `--repeat N` runs every scenario N times with N seeds and reports the pass rates.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use futures::StreamExt as _;
use zai_e2e::platform::local::binary::proxy_binary;
use zai_e2e::rehearsal::driver::HoldView;
use zai_e2e::rehearsal::junit::render_junit;
use zai_e2e::rehearsal::kind::{KindRequest, KindSession, Refusal, preflight};
use zai_e2e::rehearsal::repeat::{parse_jobs, parse_repeat, pass_table, replay_command, summarise};
use zai_e2e::rehearsal::seeds::{parse_seed, run_seeds};
use zai_e2e::rehearsal::step_summary::render_step_summary;
use zai_e2e::rehearsal::suite::{PlatformKind, runtime_choice};
use zai_e2e::rehearsal::summary::{Summary, table};
use zai_e2e::rehearsal::{
    DEFAULT_SEED, DEFAULT_TIME_SCALE, RunOptions, Scenario, ScenarioResult, ScenarioSeeds,
    SignalsChoice, TimeScale, builtin, interruptions, parse_scenario_file, quick,
    run_scenario_then,
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
    /// A real kind cluster (--kubeconfig / --kind-cluster); fakes and workers run in it.
    Kind,
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
    /// A built-in scenario name, `quick` (the default: nine scenarios covering every outcome,
    /// a few minutes), `all` (every built-in scenario, adding the three slow ones), or
    /// `interruptions` (the promoter binary stopped/killed during the rollout and run again;
    /// not part of `all`). Repeatable.
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
    /// Keep the last scenario's simulated cluster (API server and pods) up after its verdict
    /// until Ctrl-C, to look at it with `kubectl --kubeconfig <report-dir>/<scenario>/kubeconfig`.
    #[arg(long)]
    hold: bool,
    /// Base seed of every random choice (fake upstreams' faults and jitter, workers' request
    /// mix); each scenario's seeds derive from it and the scenario's name, so
    /// `--scenario NAME --seed S` replays a run.
    #[arg(long, env = "ZAI_REHEARSE_SEED", default_value_t = DEFAULT_SEED, value_parser = parse_seed)]
    seed: u64,
    /// Run every selected scenario N times, each run with its own seed (the first is --seed,
    /// the others derived from it), and report each scenario's pass rate.
    #[arg(long, default_value_t = 1, value_parser = parse_repeat)]
    repeat: u32,
    /// Scenarios run at once (1 to 8), each on its own stack and ports; results are reported
    /// in the selection's order. The README's main job uses 3 on local processes (its
    /// scenarios mostly wait: docs/REHEARSALS.md, "Running scenarios at once"). Not with
    /// --platform kind or --hold.
    #[arg(long, default_value_t = 1, value_parser = parse_jobs)]
    jobs: usize,
    /// Also write a compact Markdown verdict here (replaced); with `$GITHUB_STEP_SUMMARY` set
    /// it is appended there too (docs/CI.md).
    #[arg(long, value_name = "FILE", env = "ZAI_REHEARSE_SUMMARY")]
    summary: Option<PathBuf>,
    /// With --platform kind: the cluster's kubeconfig (default $KUBECONFIG, else
    /// ~/.kube/config); its current context must be a kind cluster's (kind-NAME).
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// With --platform kind: the kind cluster NAME (context kind-NAME), created from
    /// deploy/kind/cluster.yaml and deleted at the end when it does not exist; an existing
    /// one is reused and kept.
    #[arg(long, value_name = "NAME")]
    kind_cluster: Option<String>,
}

impl Args {
    /// The flags besides scenario and seed that a replay needs (non-default ones).
    fn replay_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        match self.platform {
            PlatformArg::Local => {}
            PlatformArg::Docker => flags.push("--platform docker".to_owned()),
            PlatformArg::Kind => {
                flags.push("--platform kind".to_owned());
                if let Some(path) = &self.kubeconfig {
                    flags.push(format!("--kubeconfig {}", path.display()));
                }
                if let Some(name) = &self.kind_cluster {
                    flags.push(format!("--kind-cluster {name}"));
                }
            }
        }
        if self.signals != SignalsArg::Scrape {
            flags.push("--signals prometheus".to_owned());
        }
        if (self.time_scale - DEFAULT_TIME_SCALE).abs() > f64::EPSILON {
            flags.push(format!("--time-scale {}", self.time_scale));
        }
        flags
    }
}

/// The scenarios to run and which of them came from `--scenario-file`.
struct Selection {
    scenarios: Vec<Scenario>,
    custom: Vec<String>,
}

fn select(args: &Args) -> anyhow::Result<Selection> {
    let all = builtin();
    let custom = match &args.scenario_file {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            parse_scenario_file(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
        }
        None => Vec::new(),
    };
    // `--scenario NAME` may name a scenario of the file (as a replay does): then only the
    // named ones of the file run; otherwise all of them.
    let named_custom: Vec<Scenario> = custom
        .iter()
        .filter(|s| args.scenarios.contains(&s.name))
        .cloned()
        .collect();
    let mut chosen = Vec::new();
    let names: Vec<&str> = if args.scenarios.is_empty() && args.scenario_file.is_none() {
        vec!["quick"]
    } else {
        args.scenarios.iter().map(String::as_str).collect()
    };
    let extra = interruptions();
    for name in names {
        if name == "all" {
            chosen.extend(all.iter().cloned());
        } else if name == "quick" {
            chosen.extend(quick());
        } else if name == "interruptions" {
            chosen.extend(extra.iter().cloned());
        } else if let Some(s) = all.iter().chain(&extra).find(|s| s.name == name) {
            chosen.push(s.clone());
        } else if custom.iter().any(|s| s.name == name) {
            // Added below, in the file's order.
        } else {
            let known: Vec<&str> = all.iter().chain(&extra).map(|s| s.name.as_str()).collect();
            bail!("unknown scenario {name:?}; built-in: {}", known.join(", "));
        }
    }
    let custom = if named_custom.is_empty() {
        custom
    } else {
        named_custom
    };
    let custom_names = custom.iter().map(|s| s.name.clone()).collect();
    chosen.extend(custom);
    Ok(Selection {
        scenarios: chosen,
        custom: custom_names,
    })
}

/// `--hold`: the cluster stays up until Ctrl-C.
async fn hold_until_interrupted(view: &HoldView) {
    eprintln!(
        "   holding the cluster; try: {} get deployments,replicasets,pods\n   Ctrl-C to tear it down",
        view.kubectl
    );
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("   cannot wait for Ctrl-C ({e}); tearing down");
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // kube-client's HTTP layer logs every 5xx answer at ERROR: a crash-looping
                // pod's scrapes through the pod proxy print dozens in a passing run. The
                // promoter handles those answers and its report shows the scrape failures;
                // `RUST_LOG` brings the lines back.
                .unwrap_or_else(|_| "warn,zai_e2e=info,kube_client::client::builder=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.jobs > 1 && (args.platform == PlatformArg::Kind || args.hold) {
        // A usage error, like clap's: nothing started.
        eprintln!(
            "Error: --jobs {} runs scenarios at once on local processes or Docker; --platform kind and --hold run one at a time (drop --jobs)",
            args.jobs
        );
        std::process::exit(2);
    }
    let targets = summary_targets(
        args.summary.as_deref(),
        std::env::var(STEP_SUMMARY_ENV).ok().as_deref(),
    );
    match run(args, &targets).await {
        Ok(code) => std::process::exit(code),
        // `--platform kind` refused before anything started: a usage error, like clap's.
        Err(e) if e.downcast_ref::<Refusal>().is_some() => {
            eprintln!("Error: {e:#}");
            std::process::exit(2);
        }
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
    let selection = select(&args)?;
    let signals = match args.signals {
        SignalsArg::Scrape => SignalsChoice::Scrape,
        SignalsArg::Prometheus => SignalsChoice::Prometheus,
    };
    let platform = match args.platform {
        PlatformArg::Local => PlatformKind::Local,
        PlatformArg::Docker => PlatformKind::Docker,
        PlatformArg::Kind => PlatformKind::Kind,
    };
    let kind_target = match args.platform {
        PlatformArg::Kind => Some(
            preflight(&KindRequest {
                kubeconfig: args.kubeconfig.clone(),
                cluster: args.kind_cluster.clone(),
                prometheus: signals == SignalsChoice::Prometheus,
            })
            .await?,
        ),
        _ => None,
    };
    let seeds = run_seeds(args.seed, args.repeat);
    let repeated = args.repeat > 1;
    eprintln!(
        "seed {} ({}; replay with --seed {})",
        args.seed,
        if args.seed == DEFAULT_SEED {
            "the default"
        } else {
            "given"
        },
        args.seed
    );
    let binary = proxy_binary(true)?;
    let kind = match kind_target {
        Some(target) => Some(KindSession::open(target, &binary).await?),
        None => None,
    };
    let started = Instant::now();
    let mut results = Vec::new();
    for (run, &run_seed) in seeds.iter().enumerate() {
        // With --repeat, each run's promoter reports go to their own directory.
        let report_dir = if repeated {
            args.report_dir.join(format!("seed-{run_seed}"))
        } else {
            args.report_dir.clone()
        };
        let options = RunOptions {
            time,
            signals: signals.clone(),
            report_dir,
            seed: run_seed,
        };
        let parallel = args.jobs > 1;
        let mut runs: Vec<_> = futures::stream::iter(selection.scenarios.iter().enumerate())
            .map(|(i, scenario)| {
                let hold =
                    args.hold && run + 1 == seeds.len() && i + 1 == selection.scenarios.len();
                let (options, kind, binary) = (&options, &kind, &binary);
                let repeat = args.repeat;
                async move {
                    if repeated {
                        eprintln!(
                            "== {}: {} (expect {}) [run {}/{repeat}, seed {run_seed}]",
                            scenario.name,
                            scenario.description,
                            scenario.expect.outcome.label(),
                            run + 1,
                        );
                    } else {
                        eprintln!(
                            "== {}: {} (expect {})",
                            scenario.name,
                            scenario.description,
                            scenario.expect.outcome.label()
                        );
                    }
                    let before_shutdown = |view: HoldView| async move {
                        if hold {
                            hold_until_interrupted(&view).await;
                        }
                    };
                    let outcome = match kind {
                        Some(session) => {
                            session
                                .run_scenario_then(scenario, options, before_shutdown)
                                .await
                        }
                        None => match runtime_choice(platform, binary, time).await {
                            Ok(choice) => {
                                run_scenario_then(scenario, choice, options, before_shutdown).await
                            }
                            Err(error) => Err(error),
                        },
                    };
                    if let Ok(result) = &outcome {
                        eprintln!(
                            "   {}{} in {:.1}s: {} ({})",
                            if parallel {
                                format!("{}: ", scenario.name)
                            } else {
                                String::new()
                            },
                            result.outcome,
                            result.decision_seconds,
                            if result.passed { "PASS" } else { "FAIL" },
                            result.verdict
                        );
                    }
                    (i, scenario, outcome)
                }
            })
            .buffer_unordered(args.jobs)
            .collect()
            .await;
        // Reported in the selection's order, whatever order they finished in.
        runs.sort_by_key(|(i, _, _)| *i);
        for (_, scenario, outcome) in runs {
            let result = match outcome {
                Ok(result) => result,
                // One run that cannot be set up is a failed run of the repeat, not the end
                // of it.
                Err(error) if repeated => {
                    let seeds = ScenarioSeeds::derive(run_seed, &scenario.name);
                    ScenarioResult::not_run(scenario, seeds, &error.to_string())
                }
                Err(error) => {
                    return Err(error).with_context(|| format!("scenario {}", scenario.name));
                }
            };
            results.push(result);
        }
    }
    let extra = args.replay_flags();
    let replay: Vec<String> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| {
            let file = args
                .scenario_file
                .as_deref()
                .filter(|_| selection.custom.contains(&r.name));
            replay_command(&r.name, file, r.seeds.run, &extra)
        })
        .collect();
    let summary = Summary {
        platform: platform.label().to_owned(),
        cluster: kind.as_ref().map(KindSession::record),
        signals: format!("{:?}", args.signals).to_lowercase(),
        time_scale: time.seconds_per_minute(),
        passed: results.iter().all(|r| r.passed),
        suite_seconds: started.elapsed().as_secs_f64(),
        seed: args.seed,
        repeat: repeated.then(|| summarise(&seeds, &results)),
        scenarios: results,
        replay,
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
        match &summary.repeat {
            None => print!("{}", table(&summary.scenarios)),
            Some(repeat) => {
                for (run, &run_seed) in seeds.iter().enumerate() {
                    let of_run: Vec<ScenarioResult> = summary
                        .scenarios
                        .iter()
                        .filter(|r| r.seeds.run == run_seed)
                        .cloned()
                        .collect();
                    println!("run {}/{} (seed {run_seed}):", run + 1, args.repeat);
                    print!("{}", table(&of_run));
                }
                print!("{}", pass_table(repeat));
            }
        }
        println!(
            "suite: {:.1}s on {} with {} signals; report: {}",
            summary.suite_seconds,
            summary.platform,
            summary.signals,
            path.display()
        );
        println!("seed: {}", summary.seed);
        if !summary.replay.is_empty() {
            println!("replay a failed run:");
            for command in &summary.replay {
                println!("  {command}");
            }
        }
    }
    if let Some(session) = kind {
        session.close().await;
    }
    Ok(if summary.passed { 0 } else { 1 })
}
