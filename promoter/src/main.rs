//! The `zai-promoter` binary: `check`, `promote`, `rollback`, `watch` against Kubernetes.
//!
//! Exit codes: 0 promoted/passed, 2 aborted before promotion (production untouched),
//! 3 rolled back, 1 could not run (configuration, platform).

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
use zai_promoter::platform::kube::KubePlatform;
use zai_promoter::progress::Progress;
use zai_promoter::report::render_step_summary;
use zai_promoter::report::step_summary::render_error_summary;
use zai_promoter::signals::SignalSource;
use zai_promoter::signals::prometheus::PrometheusSource;
use zai_promoter::signals::scrape::{AlertTiming, ScrapeSource};
use zai_promoter::{Mode, Platform, Promoter, SystemClock};

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
        /// Git work tree with the VERSION file (overrides [finalise] repo).
        #[arg(long, env = "ZAI_PROMOTER_REPO")]
        repo: Option<PathBuf>,
        /// Push the release tag.
        #[arg(long)]
        push: bool,
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
    let (mode, push) = match &cli.command {
        Command::Check => (Mode::Check, false),
        Command::Promote { repo, push } => {
            if let Some(r) = repo {
                config.finalise.repo = Some(r.clone());
            }
            (Mode::Promote, *push)
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

    let progress = Arc::new(Progress::new(std::io::stderr().is_terminal()));
    let sink = progress.clone();
    let mut promoter = Promoter::new(config, platform, signals, Arc::new(SystemClock))
        .dry_run(cli.dry_run)
        .push(push)
        .on_event(move |e| sink.show(e));
    if let Some(who) = &cli.operator {
        promoter = promoter.operator(who.clone());
    }
    let report = promoter.run(mode).await;
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
