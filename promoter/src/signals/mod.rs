//! Signal sources: the metric quantities and alerts the checks are evaluated on.
//!
//! Two implementations answer the same [`SignalQuery`]s: [`prometheus`] (PromQL over the
//! Prometheus HTTP API, alerts from `/api/v1/alerts`) and [`scrape`] (scrapes each pod's
//! `/metrics` itself, keeps a bounded window of samples, evaluates the canary alerts locally).

pub mod canary_rules;
pub mod cohort;
pub mod histogram;
pub mod prometheus;
pub mod scrape;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use cohort::Cohort;

use crate::error::Result;
use crate::platform::{PodInfo, Variant};

/// A quantity the checks need, computed per variant over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Signal {
    /// Requests per second, every status: `sum(rate(zai_proxy_requests_total[w]))`.
    RequestRate,
    /// Requests finished in the window: `sum(increase(zai_proxy_requests_total[w]))`.
    RequestCount,
    /// 5xx share of requests.
    ErrorRatio,
    /// 2xx share of requests.
    SuccessRatio,
    /// Request-duration quantile in seconds, `permille`/1000 (950 = p95).
    LatencyQuantile {
        /// The quantile in thousandths.
        permille: u16,
    },
    /// Token-counting duration quantile in seconds (`zai_proxy_token_count_duration_seconds`).
    TokenCountQuantile {
        /// The quantile in thousandths.
        permille: u16,
    },
    /// Tokens counted in the window: `sum(increase(zai_proxy_tokens_total[w]))`.
    TokensIncrease,
    /// Number of `zai_proxy_tokens_total` series exported by the variant (window ignored).
    TokenSeries,
    /// 5xx answers in the window: `sum(increase(zai_proxy_requests_total{status_code=~"5.."}[w]))`.
    ErrorCount,
    /// Cumulative request-duration bucket counts over the window, by upper bound
    /// (`sum by (le) (increase(zai_proxy_request_duration_seconds_bucket[w]))`), as
    /// [`Reading::Buckets`].
    LatencyBuckets,
    /// Upstream 401/403 answers in the window (the proxy's key refused):
    /// `sum(increase(zai_proxy_upstream_errors_total{error_type="auth"}[w]))`.
    UpstreamAuthFailures,
    /// Streams upstream cut in the window (no terminal event; the client got a truncated
    /// answer): `sum(increase(zai_proxy_streams_total{outcome="upstream_cut"}[w]))`.
    StreamCutCount,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signal::RequestRate => f.write_str("request rate"),
            Signal::RequestCount => f.write_str("request count"),
            Signal::ErrorRatio => f.write_str("5xx ratio"),
            Signal::SuccessRatio => f.write_str("2xx ratio"),
            Signal::LatencyQuantile { permille } => write!(f, "request latency p{}", permille / 10),
            Signal::TokenCountQuantile { permille } => {
                write!(f, "token-count latency p{}", permille / 10)
            }
            Signal::TokensIncrease => f.write_str("tokens counted"),
            Signal::TokenSeries => f.write_str("token series"),
            Signal::ErrorCount => f.write_str("5xx count"),
            Signal::LatencyBuckets => f.write_str("request latency buckets"),
            Signal::UpstreamAuthFailures => f.write_str("upstream auth failures"),
            Signal::StreamCutCount => f.write_str("cut-stream count"),
        }
    }
}

/// One question to a signal source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignalQuery {
    /// What to compute.
    pub signal: Signal,
    /// For which deployment (`variant` label).
    pub variant: Variant,
    /// Over which window.
    #[serde(with = "crate::duration_serde")]
    pub window: Duration,
    /// Which of the variant's pods count (all, or one version's during a rollout).
    #[serde(default, skip_serializing_if = "Cohort::is_all")]
    pub cohort: Cohort,
}

impl SignalQuery {
    /// A query over every pod of `variant`.
    pub fn new(signal: Signal, variant: Variant, window: Duration) -> Self {
        SignalQuery {
            signal,
            variant,
            window,
            cohort: Cohort::All,
        }
    }

    /// The same query over `cohort`'s pods only.
    pub fn of(self, cohort: Cohort) -> Self {
        SignalQuery { cohort, ..self }
    }
}

/// The outcome of one query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum Reading {
    /// A finite number (a ratio with no requests is `NoData`, never 0 or NaN).
    Value(f64),
    /// Cumulative histogram counts by upper bound, sorted by bound, `+Inf` last.
    Buckets(Vec<(f64, f64)>),
    /// Nothing to judge: empty vector, NaN, not enough samples, no series.
    NoData(String),
    /// The source failed: HTTP error, timeout, malformed answer.
    Error(String),
}

impl Reading {
    /// The value, if there is one.
    pub fn value(&self) -> Option<f64> {
        match self {
            Reading::Value(v) => Some(*v),
            _ => None,
        }
    }

    /// The buckets, if there are some.
    pub fn buckets(&self) -> Option<&[(f64, f64)]> {
        match self {
            Reading::Buckets(b) => Some(b),
            _ => None,
        }
    }
}

/// A reading plus where it came from (rendered PromQL, or the scrape computation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// The result.
    pub reading: Reading,
    /// The query or computation, for the report.
    pub source: String,
}

/// State of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Condition true for less than its `for`.
    Pending,
    /// Firing.
    Firing,
    /// The condition could not be evaluated (a locally evaluated alert below `min_requests`):
    /// neither firing nor clear.
    NotEvaluated,
}

/// One active alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// `alertname`.
    pub name: String,
    /// Pending or firing.
    pub state: AlertState,
    /// `true` when evaluated by the promoter itself (scrape source) rather than Prometheus.
    pub evaluated_locally: bool,
    /// Value or description, for the report.
    pub detail: String,
}

/// A source of metric quantities and alerts.
///
/// `refresh` is called once per tick with the current pods of both deployments before any
/// `measure`; a scraping source fetches `/metrics` there, a Prometheus source does nothing.
#[async_trait]
pub trait SignalSource: Send {
    /// Short name for reports: `prometheus`, `scrape`.
    fn name(&self) -> &str;

    /// Prepares for a tick at `now` (scrape the pods; remember their versions for
    /// [`Cohort`] queries).
    async fn refresh(&mut self, pods: &[PodInfo], now: DateTime<Utc>) -> Result<()>;

    /// The version being rolled out: from now on [`Cohort::NewVersion`] means the pods
    /// labelled with it and [`Cohort::OldVersion`] the pods labelled with another.
    fn set_new_version(&mut self, version: &str);

    /// Answers one query as of the last refresh.
    async fn measure(&mut self, query: &SignalQuery, now: DateTime<Utc>) -> Measurement;

    /// Alerts currently pending or firing that concern the proxy.
    async fn alerts(&mut self, now: DateTime<Utc>) -> Result<Vec<Alert>>;
}
