//! The fake Z.AI upstream ("fake-zai"): Z.AI's surfaces with faithful wire formats,
//! deterministic content, usage counted with cl100k_base, and faults on demand.
//!
//! # Surfaces
//! * `POST /api/anthropic/v1/messages` — Anthropic Messages, JSON or named-event SSE.
//! * `POST /api/anthropic/v1/messages/count_tokens` — `{"input_tokens": n}`.
//! * `POST /api/paas/v4/chat/completions`, `/api/coding/paas/v4/chat/completions`,
//!   `/v1/chat/completions` — OpenAI chat completions, JSON or `data:` SSE with Z.AI's quirks.
//! * `GET /api/monitor/usage/quota/limit` — the quota document, credit or legacy shape.
//! * `GET /v1/models`, `/api/paas/v4/models` — the model list.
//! * Control (no auth): `GET|DELETE /__fake/stats`, `GET|POST /__fake/faults` (JSON
//!   [`Faults`]; `{}` clears), `GET|DELETE /__fake/requests` (with recording on),
//!   `GET|POST /__fake/quota` (`{"shape":"credit"|"legacy"}`), `GET /__fake/health`.
//! * Per-key limits ([`limits`]): `max_concurrency` (429 code 1302 beyond it) and `max_rps`
//!   (token bucket; 429 code 1303 or 1305 beyond it), set with the faults; `/__fake/stats`
//!   shows `limits` (in flight, peak concurrency, rejected counts, busy request·ms).
//!
//! Every surface except unknown paths checks the credential (`x-api-key`, or
//! `Authorization` with or without `Bearer`) and answers a Z.AI-shaped 401 otherwise.
//!
//! # What wiremock does and what it cannot
//! wiremock's `ResponseTemplate` is one complete body after an optional delay: it cannot
//! send a stream chunk by chunk with delays, cut a stream in the middle, or reset a
//! connection. So the fake has one listening port served by a small hyper server of its own
//! ([`front`]) which decides each request's outcome and:
//! * answers **streams** itself (SSE with `chunk_delay_ms` between events, truncation
//!   mid-event, latency before the headers), and **resets** (SO_LINGER 0 + close → TCP RST);
//! * forwards everything else to a wiremock [`MockServer`] on an internal loopback port
//!   ([`mock`]): JSON answers, count_tokens, models, quota, 401/400/429/5xx bodies and empty
//!   200s, with latency through `ResponseTemplate::set_delay`; custom `Respond`
//!   implementations render bodies from the request. A truncated JSON answer is the mock's
//!   body cut in half by the front.
//!
//! # Seed
//! One seed (`--seed`, [`FakeConfig::seed`], shown in `/__fake/stats`) decides every random
//! thing the fake does: request number `n` (in arrival order, from 0) gets its fault pick,
//! `omit_usage` draw and latency jitter from [`faults::Draws::for_request`]`(seed, n)`; reply
//! content comes from the seed and the request body ([`content`]); response ids from the seed
//! and a counter. Only the arrival order of concurrent requests is not reproducible.
//!
//! Request recording is off by default (wiremock's own recording is disabled too), so
//! memory stays flat under load; `record > 0` keeps the last N requests.

pub mod content;
pub mod faults;
pub mod front;
pub mod limits;
pub mod mock;
pub mod record;
pub mod state;
pub mod stats;
pub mod tokens;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wiremock::MockServer;

use crate::Error;

pub use faults::Faults;
pub use record::RecordedRequest;
pub use stats::FakeStats;
pub use wire::quota::{QuotaAllowance, QuotaShape};

/// Settings of a fake upstream.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Listen address (loopback only, unless `pod_network`); port 0 picks a free port.
    pub listen: SocketAddr,
    /// Allow a non-loopback listen address. Only for running inside a Kubernetes pod (the
    /// kind rehearsal, `fake-zai --pod-network`), where the pod's own network namespace is the
    /// boundary and the API server's pod proxy or a Service must reach the port.
    pub pod_network: bool,
    /// The key clients must present.
    pub api_key: String,
    /// Seed of every random draw (fault picks, latency jitter, `omit_usage`) and of the
    /// content; shown in `/__fake/stats`.
    pub seed: u64,
    /// Faults at start.
    pub faults: Faults,
    /// Keep the last N requests (0 = off).
    pub record: usize,
    /// Quota document shape.
    pub quota_shape: QuotaShape,
    /// Quota allowances.
    pub quota_allowance: QuotaAllowance,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            pod_network: false,
            api_key: "fake-zai-key".to_string(),
            seed: 42,
            faults: Faults::default(),
            record: 0,
            quota_shape: QuotaShape::Credit,
            quota_allowance: QuotaAllowance::default(),
        }
    }
}

impl FakeConfig {
    /// Defaults with `api_key`.
    pub fn with_key(api_key: impl Into<String>) -> Self {
        FakeConfig {
            api_key: api_key.into(),
            ..FakeConfig::default()
        }
    }
}

/// A running fake upstream. Dropping it stops it.
pub struct FakeZai {
    shared: Arc<state::Shared>,
    addr: SocketAddr,
    cancel: CancellationToken,
    _mock: MockServer,
}

impl std::fmt::Debug for FakeZai {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeZai")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeZai {
    /// Starts the fake (must be called inside a tokio runtime).
    pub async fn start(config: FakeConfig) -> Result<FakeZai, Error> {
        if !config.listen.ip().is_loopback() && !config.pod_network {
            return Err(Error::NotLoopback(config.listen));
        }
        config.faults.validate()?;
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let mock_listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        let mock_origin = format!("http://{}", mock_listener.local_addr()?);
        let mock = MockServer::builder()
            .listener(mock_listener)
            .disable_request_recording()
            .start()
            .await;
        let shared = Arc::new(state::Shared::new(
            config.api_key,
            config.seed,
            config.faults,
            config.record,
            config.quota_shape,
            config.quota_allowance,
        ));
        mock::mount(&mock, &shared).await;
        let cancel = CancellationToken::new();
        let front = Arc::new(front::Front::new(Arc::clone(&shared), mock_origin));
        tokio::spawn(front::serve(listener, front, cancel.clone()));
        Ok(FakeZai {
            shared,
            addr,
            cancel,
            _mock: mock,
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The Anthropic base URL (`{url}/api/anthropic`), as `ANTHROPIC_BASE_URL` would be.
    pub fn anthropic_base(&self) -> String {
        format!("{}/api/anthropic", self.url())
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The key clients must present.
    pub fn api_key(&self) -> &str {
        &self.shared.api_key
    }

    /// Replaces the faults; takes effect on the next request.
    pub fn set_faults(&self, faults: Faults) -> Result<(), Error> {
        faults.validate()?;
        self.shared.set_faults(faults);
        Ok(())
    }

    /// The current faults.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Changes the quota document's shape.
    pub fn set_quota_shape(&self, shape: QuotaShape) {
        self.shared.set_quota_shape(shape);
    }

    /// Counts per route/outcome, billed tokens and the per-key limit counters.
    pub fn stats(&self) -> FakeStats {
        self.shared.stats_snapshot()
    }

    /// Zeroes the stats (the seed stays; requests in flight stay counted as in flight).
    pub fn reset_stats(&self) {
        self.shared.reset_stats();
    }

    /// The seed of the fake's draws and content.
    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    /// The recorded requests (empty unless `record > 0`).
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.shared.recorder().list()
    }

    /// Stops accepting and closes open connections.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

impl Drop for FakeZai {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
