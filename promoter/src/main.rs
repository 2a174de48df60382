//! The `zai-promoter` binary: `check`, `promote`, `resume`, `approve`, `rollback`, `watch`
//! against Kubernetes.
//!
//! Exit codes: 0 promoted/passed, 2 aborted before promotion (production untouched),
//! 3 rolled back, 4 interrupted and left for a resume (`--on-interrupt leave`), 5 another
//! promoter holds the run, 1 could not run (configuration, platform).
//!
//! SIGINT and SIGTERM stop the run at its next safe point (docs/PROMOTER.md); a second one
//! exits at once.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use zai_promoter::ci::{
    ReportLinks, STEP_SUMMARY_ENV, SummaryTarget, summary_targets, write_summary,
};
use zai_promoter::config::Config;
use zai_promoter::notify::{Notifier, Receiver};
use zai_promoter::platform::RecordWrite;
use zai_promoter::platform::kube::KubePlatform;
use zai_promoter::progress::Progress;
use zai_promoter::report::render_step_summary;
use zai_promoter::report::step_summary::render_error_summary;
use zai_promoter::runstate::{Approval, RunRecord, Stage};
use zai_promoter::signals::SignalSource;
use zai_promoter::signals::prometheus::PrometheusSource;
use zai_promoter::signals::scrape::{AlertTiming, ScrapeSource};
use zai_promoter::{Gate, Interrupt, Mode, OnInterrupt, Platform, Promoter, SystemClock};

/// Automates the zai-proxy canary → production promotion checklist.
#[derive(Debug, Parser)]
#[command(name = "zai-promoter", version)]
struct Cli {
    /// TOML file with thresholds, windows and run settings (see docs/PROMOTER.md).
    #[arg(long, global = true, env = "ZAI_PROMOTER_CONFIG")]
    config: Option<PathBuf>,
    /// Kubernetes namespace (overrides [kube] namespace).
    #[arg(long, global = true, env = "ZAI_PROMOTER_NAMESPACE")]
    namespace: Option<String>,
    /// Where metrics come from.
    #[arg(long, global = true, value_enum, env = "ZAI_PROMOTER_SIGNALS", default_value_t = SignalsKind::Auto)]
    signals: SignalsKind,
    /// Prometheus base URL (overrides [prometheus] url; implies --signals prometheus with auto).
    #[arg(long, global = true, env = "PROMETHEUS_URL")]
    prometheus_url: Option<String>,
    /// Do not use the API server's pod proxy (RBAC `get pods/proxy`) for pods' /health and
    /// /metrics: pre.health_ok is then "not evaluated" and scraping is unavailable.
    #[arg(long, global = true, env = "ZAI_PROMOTER_NO_POD_PROXY")]
    no_pod_proxy: bool,
    /// Write report.json, report.md and junit.xml here.
    #[arg(long, global = true, env = "ZAI_PROMOTER_REPORT_DIR")]
    report_dir: Option<PathBuf>,
    /// Also write a compact Markdown verdict here (replaced); with `$GITHUB_STEP_SUMMARY` set
    /// it is appended there too (docs/CI.md).
    #[arg(long, global = true, value_name = "FILE", env = "ZAI_PROMOTER_SUMMARY")]
    summary: Option<PathBuf>,
    /// Evaluate everything, change nothing.
    #[arg(long, global = true)]
    dry_run: bool,
    /// Who signs off in report.md (default: $USER).
    #[arg(long, global = true, env = "ZAI_PROMOTER_OPERATOR")]
    operator: Option<String>,
    /// POST every phase change, action and decision as JSON here (repeatable). Slack webhooks
    /// (`hooks.slack.com`, or any URL written `slack+https://…`) get `text` + `blocks`.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "ZAI_PROMOTER_NOTIFY",
        value_delimiter = ','
    )]
    notify: Vec<String>,
    /// Timeout of one notification POST (3 attempts each).
    #[arg(long, global = true, value_parser = humantime::parse_duration, default_value = "5s")]
    notify_timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SignalsKind {
    /// Prometheus when a URL is given, else scrape.
    Auto,
    /// PromQL over the Prometheus HTTP API.
    Prometheus,
    /// Scrape each pod's /metrics.
    Scrape,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Phase 1 only (read-only).
    Check,
    /// All phases: validate, set the image, monitor, verify, finalise, clean up.
    Promote {
        #[command(flatten)]
        release: ReleaseArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Carry on a promotion recorded in the cluster (interrupted, or whose promoter died);
    /// `promote` does the same when it finds one.
    Resume {
        #[command(flatten)]
        release: ReleaseArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Approve the running promotion's before-promotion gate (recorded in the cluster).
    Approve {
        /// Recorded as the approver (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Roll production back to its previous revision now.
    Rollback {
        /// Recorded in the report.
        #[arg(long, default_value = "manual rollback")]
        reason: String,
    },
    /// Watch production with the rollback triggers armed.
    Watch {
        /// How long (e.g. 1h, 30m).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
        duration: Duration,
    },
}

/// Phase 5 of `promote` and `resume`.
#[derive(Debug, Clone, clap::Args)]
struct ReleaseArgs {
    /// Git work tree with the VERSION file (overrides [finalise] repo).
    #[arg(long, env = "ZAI_PROMOTER_REPO")]
    repo: Option<PathBuf>,
    /// Push the release tag.
    #[arg(long)]
    push: bool,
    /// In the release commit, set the canary overlay's image tag and version label (the
    /// kustomization in this directory, relative to the repo) to the next development
    /// version, e.g. 1.2.2-canary (overrides [finalise] bump_canary).
    #[arg(long, value_name = "DIR")]
    bump_canary: Option<PathBuf>,
}

/// What `promote` and `resume` do on interruption, at the gate, and with a held lease.
#[derive(Debug, Clone, clap::Args)]
struct RunArgs {
    /// On SIGINT/SIGTERM after production's image changed: roll back (exit 3), or leave
    /// production as it is with the run recorded for `resume` (exit 4). Before the image
    /// changed an interruption always aborts (exit 2).
    #[arg(long, value_enum, default_value_t = InterruptArg::Rollback, env = "ZAI_PROMOTER_ON_INTERRUPT")]
    on_interrupt: InterruptArg,
    /// Pause after phase 1 until approved (`zai-promoter approve`, or --gate-url).
    #[arg(long, value_enum)]
    gate: Option<GateArg>,
    /// How long the gate waits before aborting (production untouched).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
    gate_timeout: Duration,
    /// Also approve the gate when this URL answers 2xx to a GET (polled every interval).
    #[arg(long, value_name = "URL")]
    gate_url: Option<String>,
    /// After the promotion, watch production this long with the checklist's first-hour
    /// thresholds ([first_hour]) against the pre-rollout baseline; a breach rolls back.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    watch: Option<Duration>,
    /// Wait up to this long for another promoter's lease to end (overrides [run] lease_wait).
    #[arg(long, value_parser = humantime::parse_duration)]
    lease_wait: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InterruptArg {
    /// Roll production back.
    Rollback,
    /// Leave production as it is; `resume` carries on.
    Leave,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GateArg {
    /// After phase 1, before the production image is set.
    BeforePromotion,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let summary_targets = step_summary_targets(&cli);
    let mode = cli.command.name();
    match run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("zai-promoter: {e:#}");
            let summary = render_error_summary(mode, &format!("{e:#}"));
            if let Err(e) = write_summary(&summary, &summary_targets) {
                eprintln!("zai-promoter: {e}");
            }
            std::process::exit(1);
        }
    }
}

/// `--summary` and `$GITHUB_STEP_SUMMARY`.
fn step_summary_targets(cli: &Cli) -> Vec<SummaryTarget> {
    summary_targets(
        cli.summary.as_deref(),
        std::env::var(STEP_SUMMARY_ENV).ok().as_deref(),
    )
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Check => "check",
            Command::Promote { .. } => "promote",
            Command::Resume { .. } => "resume",
            Command::Approve { .. } => "approve",
            Command::Rollback { .. } => "rollback",
            Command::Watch { .. } => "watch",
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(ns) = &cli.namespace {
        config.kube.namespace = ns.clone();
    }
    if let Some(url) = &cli.prometheus_url {
        config.prometheus.url = url.clone();
    }
    let mut run_args: Option<RunArgs> = None;
    let (mode, push) = match &cli.command {
        Command::Check => (Mode::Check, false),
        Command::Approve { by } => {
            let by = by
                .clone()
                .or_else(|| cli.operator.clone())
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "unknown".into());
            return approve(config, by).await;
        }
        Command::Promote { release, run } | Command::Resume { release, run } => {
            if let Some(r) = &release.repo {
                config.finalise.repo = Some(r.clone());
            }
            if let Some(dir) = &release.bump_canary {
                config.finalise.bump_canary = Some(dir.clone());
            }
            if let Some(w) = run.lease_wait {
                config.run.lease_wait = w;
            }
            run_args = Some(run.clone());
            let mode = if matches!(cli.command, Command::Resume { .. }) {
                Mode::Resume
            } else {
                Mode::Promote
            };
            (mode, release.push)
        }
        Command::Rollback { reason } => (
            Mode::Rollback {
                reason: reason.clone(),
            },
            false,
        ),
        Command::Watch { duration } => (
            Mode::Watch {
                duration: *duration,
            },
            false,
        ),
    };

    let platform: Arc<dyn Platform> = Arc::new(
        KubePlatform::connect(config.kube.clone())
            .await
            .context("cannot reach Kubernetes")?
            .with_pod_proxy(!cli.no_pod_proxy),
    );
    let kind = match cli.signals {
        SignalsKind::Auto if cli.prometheus_url.is_some() => SignalsKind::Prometheus,
        SignalsKind::Auto => SignalsKind::Scrape,
        other => other,
    };
    if kind == SignalsKind::Scrape && cli.no_pod_proxy {
        anyhow::bail!(
            "scraping Kubernetes pods needs the pod proxy (drop --no-pod-proxy); or give --prometheus-url to use Prometheus"
        );
    }
    let signals: Box<dyn SignalSource> = match kind {
        SignalsKind::Prometheus => Box::new(PrometheusSource::new(
            &config.prometheus.url,
            &config.prometheus.selector,
            config.prometheus.timeout,
        )?),
        _ => {
            let retention = config.scrape_retention();
            Box::new(
                ScrapeSource::new(platform.clone(), retention, config.http_timeout)
                    .with_alert_timing(AlertTiming {
                        min_requests: config.min_requests,
                        ..AlertTiming::default()
                    }),
            )
        }
    };

    let receivers = cli
        .notify
        .iter()
        .filter(|u| !u.trim().is_empty())
        .map(|u| Receiver::parse(u.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let notifier = (!receivers.is_empty())
        .then(|| Notifier::new(receivers, cli.notify_timeout))
        .transpose()
        .map_err(anyhow::Error::msg)?
        .map(Arc::new);
    let interrupt = Interrupt::new();
    watch_signals(interrupt.clone());

    let progress = Arc::new(Progress::new(std::io::stderr().is_terminal()));
    let sink = progress.clone();
    let notify_sink = notifier.clone();
    let policy = match run_args.as_ref().map(|r| r.on_interrupt) {
        Some(InterruptArg::Leave) => OnInterrupt::Leave,
        _ => OnInterrupt::Rollback,
    };
    let gate = run_args.as_ref().and_then(|r| {
        r.gate.map(|GateArg::BeforePromotion| Gate {
            timeout: r.gate_timeout,
            url: r.gate_url.clone(),
        })
    });
    let first_hour = run_args.as_ref().and_then(|r| r.watch);
    let mut promoter = Promoter::new(config, platform, signals, Arc::new(SystemClock))
        .dry_run(cli.dry_run)
        .push(push)
        .interrupt(interrupt, policy)
        .gate(gate)
        .first_hour(first_hour)
        .on_event(move |e| {
            sink.show(e);
            if let Some(n) = &notify_sink {
                n.send(e);
            }
        });
    if let Some(who) = &cli.operator {
        promoter = promoter.operator(who.clone());
    }
    let report = promoter.run(mode).await;
    drop(promoter);
    if let Some(n) = notifier {
        // Bounded: every lane gives up after its timeout × attempts.
        let grace = cli.notify_timeout * zai_promoter::notify::ATTEMPTS + Duration::from_secs(1);
        match Arc::try_unwrap(n) {
            Ok(n) => {
                for line in n.finish(grace).await {
                    eprintln!("{line}");
                }
            }
            Err(_) => eprintln!("zai-promoter: notifications still in use; not waited for"),
        }
    }
    if let Some(dir) = &cli.report_dir {
        report.write_to(dir)?;
        eprintln!("report written to {}", dir.display());
    }
    let targets = step_summary_targets(&cli);
    if !targets.is_empty() {
        let links = ReportLinks::from_env(|name| std::env::var(name).ok());
        let summary = render_step_summary(&report, cli.report_dir.as_deref(), &links);
        // The promotion's outcome stands even when its summary cannot be written.
        if let Err(e) = write_summary(&summary, &targets) {
            eprintln!("zai-promoter: {e}");
        }
    }
    println!("{}: {}", report.outcome.as_str(), report.verdict);
    if let Some(reason) = &report.reason {
        println!("reason: {reason}");
    }
    Ok(report.exit_code())
}

/// SIGINT/SIGTERM: the first asks the run to stop at its next safe point, a second exits now.
fn watch_signals(interrupt: Interrupt) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("zai-promoter: cannot install signal handlers; SIGTERM will kill the run");
        return;
    };
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            seen += 1;
            if seen > 1 {
                eprintln!(
                    "zai-promoter: second {name}: exiting now (the run record stays for `resume`)"
                );
                std::process::exit(130);
            }
            eprintln!("zai-promoter: {name}: stopping at the next safe point (again to exit now)");
            interrupt.trigger(format!("interrupted by {name}"));
        }
    });
}

/// `approve`: records an approval in the run record (precondition: its version).
async fn approve(config: Config, by: String) -> anyhow::Result<i32> {
    let platform = KubePlatform::connect(config.kube.clone())
        .await
        .context("cannot reach Kubernetes")?;
    for _ in 0..10 {
        let slot = platform.read_record().await?;
        let Some(text) = slot.text else {
            anyhow::bail!("no promotion is recorded in the cluster: nothing to approve");
        };
        let mut record = RunRecord::parse(&text).map_err(anyhow::Error::msg)?;
        if record.stage > Stage::Gate {
            anyhow::bail!(
                "run {} is at stage {}: past the gate, nothing to approve",
                record.run_id,
                record.stage.as_str()
            );
        }
        if let Some(a) = &record.approval {
            println!(
                "run {} was already approved by {} at {}",
                record.run_id,
                a.by,
                a.at.to_rfc3339()
            );
            return Ok(0);
        }
        let now = chrono::Utc::now();
        record.approval = Some(Approval {
            by: by.clone(),
            at: now,
        });
        record.note(now, format!("gate approved by {by}"));
        match platform
            .write_record(Some(&record.to_text()), &slot.version)
            .await?
        {
            RecordWrite::Written(_) => {
                println!(
                    "approved run {} (stage {}) as {by}",
                    record.run_id,
                    record.stage.as_str()
                );
                return Ok(0);
            }
            RecordWrite::Conflict => continue,
        }
    }
    anyhow::bail!("the run record kept changing; try again")
}
