//! fake-zai: the fake Z.AI upstream as a process.
//!
//! Prints the bound port as the FIRST stdout line (so `--listen 127.0.0.1:0` can be used by
//! harnesses), then serves until SIGINT/SIGTERM. Logs go to stderr.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use zai_e2e::fake::{FakeConfig, FakeZai, Faults, QuotaShape};
use zai_e2e::seed;

/// Fake Z.AI upstream for tests: Anthropic and OpenAI surfaces, quota, models, faults.
#[derive(Debug, Parser)]
#[command(name = "fake-zai", version)]
struct Args {
    /// Listen address (loopback only, unless --pod-network); port 0 picks a free port.
    #[arg(long, env = "FAKE_ZAI_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Allow a non-loopback --listen address: only inside a Kubernetes pod (the kind
    /// rehearsal), where a Service and the API server's pod proxy must reach the port.
    #[arg(long)]
    pod_network: bool,
    /// The key clients must present (x-api-key or Authorization: Bearer).
    #[arg(
        long,
        env = "FAKE_ZAI_API_KEY",
        default_value = "fake-zai-key",
        hide_env_values = true
    )]
    api_key: String,
    /// Seed of every random draw (fault picks, latency jitter, omitted usage) and of the
    /// content; the same seed and the same sequence of requests replay the same answers.
    /// Shown in GET /__fake/stats.
    #[arg(long, env = "FAKE_ZAI_SEED", default_value_t = 42, value_parser = seed::parse_seed)]
    seed: u64,
    /// Keep the last N requests for GET /__fake/requests (0 = off).
    #[arg(long, env = "FAKE_ZAI_RECORD", default_value_t = 0)]
    record: usize,
    /// Quota document shape.
    #[arg(
        long,
        value_enum,
        env = "FAKE_ZAI_QUOTA_SHAPE",
        default_value = "credit"
    )]
    quota_shape: QuotaShape,
    /// Faults as one JSON object (the POST /__fake/faults body); the flags below override it.
    #[arg(long, env = "FAKE_ZAI_FAULTS")]
    faults: Option<String>,
    /// Fraction of requests answered with --error-status.
    #[arg(long)]
    error_rate: Option<f64>,
    /// Status for --error-rate (500, 502, 503…).
    #[arg(long)]
    error_status: Option<u16>,
    /// Fraction of requests answered with 429 and --code-429.
    #[arg(long)]
    rate_429: Option<f64>,
    /// Business code of the 429s (1302, 1303, 1305, 1308, 1310, 1312, 1113…).
    #[arg(long)]
    code_429: Option<u32>,
    /// `retry_after` seconds in 429 bodies.
    #[arg(long)]
    retry_after_s: Option<u64>,
    /// `reset_time` this many seconds ahead in 429 bodies.
    #[arg(long)]
    reset_in_s: Option<u64>,
    /// Latency before response headers, ms.
    #[arg(long)]
    latency_ms: Option<u64>,
    /// Uniform jitter added to the latency, ms.
    #[arg(long)]
    latency_jitter_ms: Option<u64>,
    /// Delay between stream chunks, ms.
    #[arg(long)]
    chunk_delay_ms: Option<u64>,
    /// Fraction of 200s cut short.
    #[arg(long)]
    truncate_rate: Option<f64>,
    /// Cut streams only; non-streaming answers whose draw falls in --truncate-rate come whole.
    #[arg(long)]
    truncate_streams_only: bool,
    /// Fraction of connections reset.
    #[arg(long)]
    reset_rate: Option<f64>,
    /// Fraction of empty 200 bodies.
    #[arg(long)]
    empty_rate: Option<f64>,
    /// Fraction of answers without usage.
    #[arg(long)]
    omit_usage: Option<f64>,
    /// Path prefixes the faults apply to (comma-separated; default all).
    #[arg(long, value_delimiter = ',')]
    routes: Option<Vec<String>>,
    /// Per-key limit: concurrent model requests (beyond it: 429 code 1302).
    #[arg(long, env = "FAKE_ZAI_MAX_CONCURRENCY")]
    max_concurrency: Option<u32>,
    /// Per-key limit: model requests per second, token bucket (beyond it: 429 --rps-code).
    #[arg(long, env = "FAKE_ZAI_MAX_RPS")]
    max_rps: Option<f64>,
    /// Token bucket size for --max-rps (default: one second of it).
    #[arg(long)]
    rps_burst: Option<f64>,
    /// Code of frequency rejections: 1303 (default) or 1305.
    #[arg(long)]
    rps_code: Option<u32>,
}

impl Args {
    fn faults(&self) -> anyhow::Result<Faults> {
        let mut faults: Faults = match &self.faults {
            Some(json) => {
                serde_json::from_str(json).context("--faults is not a valid faults object")?
            }
            None => Faults::default(),
        };
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(value) = self.$field { faults.$field = value; } )* };
        }
        set!(
            error_rate,
            rate_429,
            latency_ms,
            latency_jitter_ms,
            chunk_delay_ms,
            truncate_rate,
            reset_rate,
            empty_rate,
            omit_usage
        );
        if self.truncate_streams_only {
            faults.truncate_streams_only = true;
        }
        if self.error_status.is_some() {
            faults.error_status = self.error_status;
        }
        if self.code_429.is_some() {
            faults.code_429 = self.code_429;
        }
        if self.retry_after_s.is_some() {
            faults.retry_after_s = self.retry_after_s;
        }
        if self.reset_in_s.is_some() {
            faults.reset_in_s = self.reset_in_s;
        }
        if self.routes.is_some() {
            faults.routes = self.routes.clone();
        }
        if self.max_concurrency.is_some() {
            faults.max_concurrency = self.max_concurrency;
        }
        if self.max_rps.is_some() {
            faults.max_rps = self.max_rps;
        }
        if self.rps_burst.is_some() {
            faults.rps_burst = self.rps_burst;
        }
        if self.rps_code.is_some() {
            faults.rps_code = self.rps_code;
        }
        faults.validate()?;
        Ok(faults)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let config = FakeConfig {
        listen: args.listen,
        pod_network: args.pod_network,
        api_key: args.api_key.clone(),
        seed: args.seed,
        faults: args.faults()?,
        record: args.record,
        quota_shape: args.quota_shape,
        ..FakeConfig::default()
    };
    let fake = FakeZai::start(config)
        .await
        .context("cannot start fake-zai")?;
    println!("{}", fake.addr().port());
    tracing::info!(url = %fake.url(), seed = fake.seed(), "fake-zai listening");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("fake-zai stopping");
    fake.shutdown();
    Ok(())
}
