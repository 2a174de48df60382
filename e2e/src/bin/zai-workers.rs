//! zai-workers: simulated Claude-Code-like clients against a base URL.
//!
//! Progress goes to stderr (a refreshed line on a TTY, a plain line every 5 s otherwise).
//! The summary goes to stdout; with `--json` the last stdout line is one JSON object:
//! `sent, ok, failed, lost, outcomes, latency_ms {p50,p95,p99}, ttfb_ms {…}` and more.
//!
//! `--config-json` takes a whole `WorkersConfig` (what a rehearsal runs in process) instead
//! of the flags; `--status-listen ADDR` serves `GET /report` and `POST /stop` while the run
//! lasts and the final report after it, until SIGINT/SIGTERM (the kind rehearsal runs the
//! workers in a pod and reads them through the API server's pod proxy).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use zai_e2e::seed;
use zai_e2e::workers::status::StatusServer;
use zai_e2e::workers::{self, LoadMode, Target, WorkersConfig};

/// Simulated Claude-Code-like clients.
#[derive(Debug, Parser)]
#[command(name = "zai-workers", version)]
struct Args {
    /// Base URL; Anthropic requests go to {base}/v1/messages. Repeat for several targets,
    /// optionally labelled: `--base-url stable=http://127.0.0.1:8080/api/anthropic`.
    #[arg(
        long,
        env = "ZAI_WORKERS_BASE_URL",
        required_unless_present = "config_json"
    )]
    base_url: Vec<String>,
    /// The whole run as one JSON `WorkersConfig` (targets with weights, pacing, mix, seed;
    /// no duration and no count = until stopped); the flags that shape a run are then ignored.
    #[arg(long, env = "ZAI_WORKERS_CONFIG", conflicts_with = "base_url")]
    config_json: Option<String>,
    /// Serve GET /report and POST /stop here (loopback only unless --pod-network); the
    /// process then stays up after the run, serving the final report, until SIGINT/SIGTERM.
    #[arg(long, value_name = "ADDR")]
    status_listen: Option<std::net::SocketAddr>,
    /// Allow a non-loopback --status-listen address: only inside a Kubernetes pod.
    #[arg(long)]
    pod_network: bool,
    /// Path of OpenAI requests, joined to the base URL's origin.
    #[arg(long, env = "ZAI_WORKERS_OPENAI_PATH", default_value = workers::DEFAULT_OPENAI_PATH)]
    openai_path: String,
    /// Credential sent (x-api-key for Anthropic, Authorization: Bearer for OpenAI).
    #[arg(
        long,
        env = "ZAI_WORKERS_API_KEY",
        default_value = "fake-zai-key",
        hide_env_values = true
    )]
    api_key: String,
    /// Closed loop: number of workers. Open loop (--rate): bound on requests in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Open loop at this many requests per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Run this long (e.g. 30s, 2m). Default 10s when --requests is not given either.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many requests.
    #[arg(long)]
    requests: Option<u64>,
    /// Fraction of streaming requests.
    #[arg(long, default_value_t = 0.5)]
    stream_fraction: f64,
    /// Fraction of OpenAI-format requests.
    #[arg(long, default_value_t = 0.3)]
    openai_fraction: f64,
    /// Bound on one whole request.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    timeout: Duration,
    /// Seed of every random choice (target, streaming or not, format, request body); the
    /// same seed sends the same requests in the same order of issue.
    #[arg(long, env = "ZAI_WORKERS_SEED", default_value_t = 1, value_parser = seed::parse_seed)]
    seed: u64,
    /// Print the report as one JSON object on the last stdout line.
    #[arg(long)]
    json: bool,
}

fn targets(args: &Args) -> anyhow::Result<Vec<Target>> {
    args.base_url
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let (label, url) = match spec.split_once('=') {
                Some((label, url)) if !label.contains("://") => (label.to_string(), url),
                _ => (
                    if index == 0 {
                        "default".to_string()
                    } else {
                        format!("target{index}")
                    },
                    spec.as_str(),
                ),
            };
            Ok(Target::from_base(label, url, &args.openai_path)?)
        })
        .collect()
}

fn config(args: &Args) -> anyhow::Result<WorkersConfig> {
    if let Some(json) = &args.config_json {
        return serde_json::from_str(json).context("--config-json is not a WorkersConfig");
    }
    let mode = match args.rate {
        Some(rate) => LoadMode::Open {
            rate,
            max_in_flight: args.concurrency,
        },
        None => LoadMode::Closed {
            concurrency: args.concurrency,
        },
    };
    let duration = match (args.duration, args.requests) {
        (None, None) => Some(Duration::from_secs(10)),
        (duration, _) => duration,
    };
    Ok(WorkersConfig {
        targets: targets(args)?,
        api_key: args.api_key.clone(),
        mode,
        duration,
        requests: args.requests,
        stream_fraction: args.stream_fraction,
        openai_fraction: args.openai_fraction,
        request_timeout: args.timeout,
        seed: args.seed,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = config(&args)?;
    let seed = config.seed;
    let cancel = CancellationToken::new();
    let handle = workers::spawn(config, cancel.clone()).context("invalid workers settings")?;
    let live = handle.live();
    let status = match args.status_listen {
        Some(addr) => Some(
            StatusServer::start(addr, args.pod_network, handle.live(), seed, cancel.clone())
                .await
                .context("--status-listen")?,
        ),
        None => None,
    };
    let interrupt = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            interrupt.cancel();
        }
    });
    let tty = std::io::stderr().is_terminal();
    let progress = tokio::spawn(async move {
        let period = if tty {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(5)
        };
        let mut ticker = tokio::time::interval(period);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let s = live.snapshot();
            let line = format!(
                "sent {} ok {} http_err {} transport {} truncated {} timeout {} in_flight {}",
                s.sent,
                s.ok,
                s.http_error_total(),
                s.transport_error,
                s.truncated,
                s.timeout,
                s.in_flight
            );
            let mut stderr = std::io::stderr().lock();
            let _ = if tty {
                write!(stderr, "\r{line}   ")
            } else {
                writeln!(stderr, "{line}")
            };
            let _ = stderr.flush();
        }
    });
    let report = handle.join().await;
    progress.abort();
    if tty {
        eprintln!();
    }
    println!(
        "sent {} ok {} failed {} lost {} | latency p50 {:.1} ms p95 {:.1} ms p99 {:.1} ms | ttfb p50 {:.1} ms | {:.1} s | seed {}",
        report.sent,
        report.ok,
        report.failed,
        report.lost,
        report.latency_ms.p50,
        report.latency_ms.p95,
        report.latency_ms.p99,
        report.ttfb_ms.p50,
        report.elapsed_s,
        report.seed
    );
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    if let Some(status) = status {
        // Keep answering with the final report until the pod (or the user) stops us.
        status.finish(report);
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        status.shutdown();
    }
    Ok(())
}
