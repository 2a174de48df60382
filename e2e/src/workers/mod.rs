//! Simulated Claude-Code-like clients ("zai-workers").
//!
//! Workers send a mix of streaming/non-streaming, Anthropic/OpenAI requests with realistic
//! bodies ([`bodies`]) to one or more targets (e.g. one per deployment variant), open-loop
//! at a rate or closed-loop at a concurrency, for a duration, a request count, or until
//! cancelled. Every request ends in exactly one [`Outcome`]: `ok`, `http_error(status)`,
//! `transport_error`, `truncated` (stream without its terminal event, or JSON that does not
//! parse) or `timeout`; "lost" = transport_error + truncated.
//!
//! Paths: Anthropic requests go to `{base}/v1/messages` (base like
//! `http://host:port/api/anthropic`, as `ANTHROPIC_BASE_URL`); OpenAI requests go to the
//! base URL's origin joined with `openai_path` (default `/api/paas/v4/chat/completions`,
//! Z.AI's general endpoint), because an OpenAI client is configured with Z.AI's own base
//! and not with the Anthropic one.
//!
//! Counters are live ([`LiveStats`]): a caller can read them while the workers run.
//!
//! Seed: request number `i` (target, format, streaming, body) is a pure function of
//! `(seed, i)` ([`request::plan`]); the open loop ticks at a fixed period (no random arrival
//! times), so `seed` is the only source of randomness, and the report carries it.

pub mod bodies;
pub mod live;
pub mod outcome;
pub mod request;
pub mod status;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use live::{LiveStats, Percentiles, Snapshot};
pub use outcome::{ApiKind, Outcome};

use crate::Error;

/// Default OpenAI path joined to the base URL's origin.
pub const DEFAULT_OPENAI_PATH: &str = "/api/paas/v4/chat/completions";

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// Label in per-target counts (e.g. a variant name).
    pub label: String,
    /// Full Anthropic Messages URL.
    pub anthropic_url: String,
    /// Full OpenAI chat completions URL.
    pub openai_url: String,
    /// Relative share of requests.
    pub weight: f64,
}

impl Target {
    /// A target from a base URL (`http://host:port/api/anthropic`) and an OpenAI path.
    pub fn from_base(
        label: impl Into<String>,
        base_url: &str,
        openai_path: &str,
    ) -> Result<Target, Error> {
        let base = base_url.trim_end_matches('/');
        let origin = origin(base)?;
        let path = if openai_path.starts_with('/') {
            openai_path.to_string()
        } else {
            format!("/{openai_path}")
        };
        Ok(Target {
            label: label.into(),
            anthropic_url: format!("{base}/v1/messages"),
            openai_url: format!("{origin}{path}"),
            weight: 1.0,
        })
    }
}

/// `scheme://host:port` of an http URL.
fn origin(url: &str) -> Result<&str, Error> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        Error::InvalidWorkers(format!("base URL must start with http://, got {url:?}"))
    })?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(Error::InvalidWorkers(format!(
            "base URL has no host: {url:?}"
        )));
    }
    let end = rest
        .find('/')
        .map_or(url.len(), |slash| "http://".len() + slash);
    Ok(&url[..end])
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum LoadMode {
    /// `concurrency` workers, each sending its next request when the previous one ends.
    Closed {
        /// Number of workers.
        concurrency: usize,
    },
    /// A request every `1/rate` seconds, whatever the answers; ticks that find
    /// `max_in_flight` requests in flight are skipped and counted.
    Open {
        /// Requests per second.
        rate: f64,
        /// Bound on requests in flight.
        max_in_flight: usize,
    },
}

/// Settings of a workers run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkersConfig {
    /// Targets (at least one).
    pub targets: Vec<Target>,
    /// Credential sent (x-api-key for Anthropic, Bearer for OpenAI).
    pub api_key: String,
    /// Pacing.
    pub mode: LoadMode,
    /// Stop after this long (None = no time limit).
    pub duration: Option<Duration>,
    /// Stop after sending this many requests (None = no count limit).
    pub requests: Option<u64>,
    /// Fraction of streaming requests.
    pub stream_fraction: f64,
    /// Fraction of OpenAI-format requests.
    pub openai_fraction: f64,
    /// Bound on one whole request (→ `timeout`).
    pub request_timeout: Duration,
    /// Seed of the request mix (every random choice of the workers).
    pub seed: u64,
}

impl WorkersConfig {
    /// One target at `base_url` (default OpenAI path), closed loop.
    pub fn new(
        base_url: &str,
        api_key: impl Into<String>,
        concurrency: usize,
    ) -> Result<Self, Error> {
        Ok(WorkersConfig {
            targets: vec![Target::from_base("default", base_url, DEFAULT_OPENAI_PATH)?],
            api_key: api_key.into(),
            mode: LoadMode::Closed { concurrency },
            duration: None,
            requests: None,
            stream_fraction: 0.5,
            openai_fraction: 0.3,
            request_timeout: Duration::from_secs(60),
            seed: 1,
        })
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |message: String| Err(Error::InvalidWorkers(message));
        if self.targets.is_empty() {
            return invalid("at least one target is needed".into());
        }
        if self
            .targets
            .iter()
            .any(|t| !(t.weight.is_finite() && t.weight > 0.0))
        {
            return invalid("target weights must be > 0".into());
        }
        for (name, fraction) in [
            ("stream_fraction", self.stream_fraction),
            ("openai_fraction", self.openai_fraction),
        ] {
            if !(0.0..=1.0).contains(&fraction) {
                return invalid(format!("{name} must be in [0, 1], got {fraction}"));
            }
        }
        match self.mode {
            LoadMode::Closed { concurrency: 0 } => {
                return invalid("concurrency must be >= 1".into());
            }
            LoadMode::Open {
                rate,
                max_in_flight,
            } if !(rate.is_finite() && rate > 0.0) || max_in_flight == 0 => {
                return invalid(format!(
                    "open loop needs rate > 0 and max_in_flight >= 1, got {rate} and {max_in_flight}"
                ));
            }
            _ => {}
        }
        if self.request_timeout.is_zero() {
            return invalid("request_timeout must be > 0".into());
        }
        Ok(())
    }
}

/// The summary of a run (`--json` prints it as the last stdout line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The seed of the request mix (`--seed`).
    #[serde(default)]
    pub seed: u64,
    /// Requests sent.
    pub sent: u64,
    /// Requests that ended ok.
    pub ok: u64,
    /// Requests that ended in anything else.
    pub failed: u64,
    /// transport_error + truncated.
    pub lost: u64,
    /// Count per outcome label.
    pub outcomes: std::collections::BTreeMap<String, u64>,
    /// Latency of ok requests.
    pub latency_ms: Percentiles,
    /// Time to first body byte of ok requests.
    pub ttfb_ms: Percentiles,
    /// Wall time of the run, seconds.
    pub elapsed_s: f64,
    /// Open-loop ticks skipped at `max_in_flight`.
    pub skipped: u64,
    /// Per-target counts.
    pub targets: std::collections::BTreeMap<String, Snapshot>,
}

impl Report {
    fn from_live(live: &LiveStats, seed: u64, elapsed: Duration) -> Report {
        let total = live.snapshot();
        Report {
            seed,
            sent: total.sent,
            ok: total.ok,
            failed: total.failed(),
            lost: total.lost(),
            outcomes: total.outcomes(),
            latency_ms: live.latency.percentiles(),
            ttfb_ms: live.ttfb.percentiles(),
            elapsed_s: elapsed.as_secs_f64(),
            skipped: live.skipped.load(Ordering::Relaxed),
            targets: live
                .targets
                .iter()
                .map(|(label, counters)| (label.clone(), counters.snapshot()))
                .collect(),
        }
    }
}

/// A run in the background.
#[derive(Debug)]
pub struct WorkersHandle {
    live: Arc<LiveStats>,
    seed: u64,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Report>,
}

impl WorkersHandle {
    /// The live counters.
    pub fn live(&self) -> Arc<LiveStats> {
        Arc::clone(&self.live)
    }

    /// Stops sending new requests (requests in flight finish, bounded by the timeout).
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    /// Waits for the run to end and returns its report.
    pub async fn join(self) -> Report {
        match self.task.await {
            Ok(report) => report,
            Err(_) => Report::from_live(&self.live, self.seed, Duration::ZERO),
        }
    }
}

/// Starts a run in the background; `cancel` (or [`WorkersHandle::stop`]) ends it early.
pub fn spawn(config: WorkersConfig, cancel: CancellationToken) -> Result<WorkersHandle, Error> {
    config.validate()?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|error| Error::Client(error.to_string()))?;
    let live = Arc::new(LiveStats::new(
        config.targets.iter().map(|t| t.label.clone()),
    ));
    let seed = config.seed;
    let run = Run {
        config: Arc::new(config),
        client,
        live: Arc::clone(&live),
        issued: AtomicU64::new(0),
    };
    let child = cancel.child_token();
    let stop = child.clone();
    let task = tokio::spawn(async move { Arc::new(run).drive(stop).await });
    Ok(WorkersHandle {
        live,
        seed,
        cancel: child,
        task,
    })
}

/// Runs to the end (duration, count or cancellation) and returns the report.
pub async fn run(config: WorkersConfig, cancel: CancellationToken) -> Result<Report, Error> {
    Ok(spawn(config, cancel)?.join().await)
}

struct Run {
    config: Arc<WorkersConfig>,
    client: reqwest::Client,
    live: Arc<LiveStats>,
    issued: AtomicU64,
}

impl Run {
    /// Claims the next request index, or None when the count limit is reached.
    fn claim(&self) -> Option<u64> {
        let index = self.issued.fetch_add(1, Ordering::Relaxed);
        match self.config.requests {
            Some(limit) if index >= limit => None,
            _ => Some(index),
        }
    }

    async fn one(&self, index: u64) {
        let weights: Vec<f64> = self.config.targets.iter().map(|t| t.weight).collect();
        let plan = request::plan(
            self.config.seed,
            index,
            &weights,
            self.config.stream_fraction,
            self.config.openai_fraction,
        );
        let target_index = plan.target;
        let Some(target) = self.config.targets.get(target_index) else {
            return;
        };
        self.live.started(target_index);
        let done = request::execute(
            &self.client,
            target,
            &self.config.api_key,
            plan,
            self.config.request_timeout,
        )
        .await;
        self.live
            .ended(target_index, done.outcome, done.latency, done.ttfb);
    }

    async fn drive(self: Arc<Self>, cancel: CancellationToken) -> Report {
        let started = Instant::now();
        let stop = cancel.clone();
        if let Some(duration) = self.config.duration {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(duration) => stop.cancel(),
                    () = stop.cancelled() => {}
                }
            });
        }
        let mut tasks = JoinSet::new();
        match self.config.mode {
            LoadMode::Closed { concurrency } => {
                for _ in 0..concurrency {
                    let run = Arc::clone(&self);
                    let stop = stop.clone();
                    tasks.spawn(async move {
                        while !stop.is_cancelled() {
                            let Some(index) = run.claim() else { break };
                            // Cancellation does not cut a request in flight: it finishes.
                            run.one(index).await;
                        }
                    });
                }
            }
            LoadMode::Open {
                rate,
                max_in_flight,
            } => {
                let period = Duration::from_secs_f64(1.0 / rate);
                let mut ticker = tokio::time::interval(period);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        _ = ticker.tick() => {}
                    }
                    while tasks.try_join_next().is_some() {}
                    if tasks.len() >= max_in_flight {
                        self.live.skipped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let Some(index) = self.claim() else { break };
                    let run = Arc::clone(&self);
                    tasks.spawn(async move { run.one(index).await });
                }
            }
        }
        while tasks.join_next().await.is_some() {}
        Report::from_live(&self.live, self.config.seed, started.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_paths_from_base() {
        let target = Target::from_base(
            "stable",
            "http://127.0.0.1:8080/api/anthropic/",
            DEFAULT_OPENAI_PATH,
        )
        .unwrap();
        assert_eq!(
            target.anthropic_url,
            "http://127.0.0.1:8080/api/anthropic/v1/messages"
        );
        assert_eq!(
            target.openai_url,
            "http://127.0.0.1:8080/api/paas/v4/chat/completions"
        );
        let bare = Target::from_base("x", "http://127.0.0.1:9", "v1/chat/completions").unwrap();
        assert_eq!(bare.anthropic_url, "http://127.0.0.1:9/v1/messages");
        assert_eq!(bare.openai_url, "http://127.0.0.1:9/v1/chat/completions");
        assert!(Target::from_base("x", "https://api.z.ai", DEFAULT_OPENAI_PATH).is_err());
        assert!(Target::from_base("x", "http:///x", DEFAULT_OPENAI_PATH).is_err());
    }

    #[test]
    fn validation_rejects_bad_settings() {
        let mut config = WorkersConfig::new("http://127.0.0.1:1", "k", 1).unwrap();
        config.validate().unwrap();
        config.stream_fraction = 1.5;
        assert!(config.validate().is_err());
        config.stream_fraction = 0.5;
        config.mode = LoadMode::Open {
            rate: 0.0,
            max_in_flight: 1,
        };
        assert!(config.validate().is_err());
        config.mode = LoadMode::Closed { concurrency: 0 };
        assert!(config.validate().is_err());
    }
}
