//! Every `zai_proxy_*` metric family, on a registry of its own.
//!
//! Names, types, label names and buckets are byte-identical to the Go original (reference
//! §4.1–4.4), plus `zai_proxy_token_estimate_ratio` and `zai_proxy_zai_errors_total`. Each
//! [`Metrics`] owns a private [`Registry`], so several proxies can live in one process (tests,
//! benches). Fields are public so every module writes its families directly.
//!
//! Visibility: the prometheus crate prints nothing for a vector without children. [`Metrics::new`]
//! therefore pre-creates zero series (with the `variant` label) wherever a zero is harmless,
//! and [`Metrics::render`] prints `# HELP`/`# TYPE` for the few families that must stay empty
//! until written (quota gauges: a zero there would read as "quota exhausted" or "fresh").

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use prometheus::{
    Counter, CounterVec, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, Opts, Registry,
    TextEncoder,
};

use crate::error::ProxyError;

/// Buckets of `zai_proxy_request_duration_seconds`.
pub const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Buckets of `zai_proxy_rate_limit_wait_seconds`.
pub const RATE_LIMIT_WAIT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
];
/// Buckets of `zai_proxy_token_count_duration_seconds`.
pub const TOKEN_COUNT_DURATION_BUCKETS: &[f64] =
    &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1];
/// Buckets of `zai_proxy_token_rate_seconds`.
pub const TOKEN_RATE_SECONDS_BUCKETS: &[f64] = &[
    0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1,
];
/// Buckets of `zai_proxy_token_rate` (tokens per second).
pub const TOKEN_RATE_BUCKETS: &[f64] = &[
    10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 25000.0, 50000.0, 100000.0,
];
/// Buckets of `zai_proxy_token_estimate_ratio` (local estimate / upstream count).
pub const TOKEN_ESTIMATE_RATIO_BUCKETS: &[f64] = &[
    0.25, 0.5, 0.75, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 1.5, 2.0, 4.0,
];

/// `error_type` of `zai_proxy_upstream_errors_total` for an upstream 401/403 (the proxy's
/// credential was refused).
pub const UPSTREAM_AUTH_ERROR: &str = "auth";
/// `error_type` values of `zai_proxy_upstream_errors_total` other than status codes.
pub const UPSTREAM_ERROR_TYPES: &[&str] = &[
    UPSTREAM_AUTH_ERROR,
    "request_creation",
    "upstream_connection",
    "429",
    "422",
    "truncated_response",
    "empty_streaming",
    "read_error",
    "write_error",
];
/// `reason` values of `zai_proxy_retry_attempts_total`.
pub const RETRY_REASONS: &[&str] = &[
    "retry",
    "network_error",
    "429",
    "truncated_response",
    "empty_streaming",
];
/// `direction` values of `zai_proxy_rate_limit_adjustments_total`.
pub const ADJUSTMENT_DIRECTIONS: &[&str] = &["increase", "decrease", "probe"];
/// `direction` values of `zai_proxy_tokens_total`.
pub const TOKEN_DIRECTIONS: &[&str] = &["input", "output", "cache_read", "cache_write"];
/// `pricing_tier` values.
pub const PRICING_TIERS: &[&str] = &["peak", "off_peak"];
/// `result` values of `zai_proxy_quota_poll_total`.
pub const QUOTA_POLL_RESULTS: &[&str] = &["success", "error", "malformed", "stale"];
/// Known (class, code) pairs of `zai_proxy_zai_errors_total` (reference §1.6.1).
pub const ZAI_ERROR_CLASSES: &[(&str, &str)] = &[
    ("concurrency", "1302"),
    ("frequency", "1303"),
    ("frequency", "1305"),
    ("quota", "1308"),
    ("quota", "1310"),
    ("model_congestion", "1312"),
    ("daily_limit", "1304"),
    ("plan_expired", "1309"),
    ("fair_use", "1313"),
];
/// Buckets of `zai_proxy_time_to_first_token_seconds`: LLM first tokens come in ~0.2-2 s
/// for chat models and up to tens of seconds for reasoning models on long prompts; the
/// low buckets resolve a fast upstream (and the fake one in tests), the high ones a
/// reasoning model thinking for minutes.
pub const TIME_TO_FIRST_TOKEN_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0,
    60.0, 120.0,
];
/// Buckets of `zai_proxy_output_tokens_per_second`: GLM models decode at ~20-200 tokens/s
/// per stream (turbo and flash variants faster); finer steps where rates usually are.
pub const OUTPUT_TOKENS_PER_SECOND_BUCKETS: &[f64] = &[
    1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0, 150.0, 200.0, 300.0, 500.0,
    1000.0, 2500.0,
];
/// `outcome` values of `zai_proxy_streams_total` (see `crate::streams::StreamOutcome`).
pub const STREAM_OUTCOMES: [&str; 4] = [
    "complete",
    "upstream_cut",
    "client_gone",
    "upstream_error_event",
];
/// `api` label values of the stream families (wire format of the route).
pub const STREAM_APIS: [&str; 2] = ["anthropic", "openai"];

/// Number of source buckets (`client` label `source-00` … `source-63`).
pub const SOURCE_BUCKETS: usize = 64;

/// `# HELP`/`# TYPE` of one registered family, kept to print empty families.
#[derive(Debug, Clone)]
struct FamilyInfo {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
}

/// All `zai_proxy_*` families of one proxy.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    families: Vec<FamilyInfo>,

    // §4.1 request / capacity
    /// `zai_proxy_requests_total{method,path,status_code,variant}`.
    pub requests_total: CounterVec,
    /// `zai_proxy_request_duration_seconds{method,path,status_code,variant}`.
    pub request_duration_seconds: HistogramVec,
    /// `zai_proxy_request_size_bytes{method,path,variant}`.
    pub request_size_bytes: HistogramVec,
    /// `zai_proxy_response_size_bytes{method,path,status_code,variant}`.
    pub response_size_bytes: HistogramVec,
    /// `zai_proxy_concurrent_requests{variant}`.
    pub concurrent_requests: GaugeVec,
    /// `zai_proxy_max_workers{variant}`.
    pub max_workers: GaugeVec,
    /// `zai_proxy_worker_utilization_ratio{variant}`.
    pub worker_utilization_ratio: GaugeVec,
    /// `zai_proxy_upstream_errors_total{error_type,variant}`.
    pub upstream_errors_total: CounterVec,
    /// `zai_proxy_retry_attempts_total{reason,variant}`.
    pub retry_attempts_total: CounterVec,
    /// `zai_proxy_build_info{version,variant,commit,build_time}` (= 1).
    pub build_info: GaugeVec,

    // §4.2 rate limiter
    /// `zai_proxy_rate_limit_requests_per_second{variant}`.
    pub rate_limit_requests_per_second: GaugeVec,
    /// `zai_proxy_rate_limit_wait_seconds{variant,client}`.
    pub rate_limit_wait_seconds: HistogramVec,
    /// `zai_proxy_rate_limit_adjustments_total{direction,variant}`.
    pub rate_limit_adjustments_total: CounterVec,
    /// `zai_proxy_rate_limit_rejections_total{variant,client}`.
    pub rate_limit_rejections_total: CounterVec,

    // §4.3 tokens and cost
    /// `zai_proxy_tokens_total{direction,model,variant,pricing_tier}`.
    pub tokens_total: CounterVec,
    /// `zai_proxy_estimated_cost_usd_total{direction,model,variant,pricing_tier}`.
    pub estimated_cost_usd_total: CounterVec,
    /// `zai_proxy_token_count_duration_seconds{variant}`.
    pub token_count_duration_seconds: HistogramVec,
    /// `zai_proxy_token_rate_seconds{direction,model,variant}`.
    pub token_rate_seconds: HistogramVec,
    /// `zai_proxy_token_rate{direction,model,variant}` (tokens per second).
    pub token_rate: HistogramVec,
    /// `zai_proxy_token_estimate_ratio{direction,variant}` (local estimate / upstream count).
    pub token_estimate_ratio: HistogramVec,

    // §4.4 quota
    /// `zai_proxy_quota_usage_ratio{window,limit_type,variant}`.
    pub quota_usage_ratio: GaugeVec,
    /// `zai_proxy_quota_remaining_ratio{window,limit_type,variant}`.
    pub quota_remaining_ratio: GaugeVec,
    /// `zai_proxy_quota_reset_time_seconds{window,limit_type,variant}`.
    pub quota_reset_time_seconds: GaugeVec,
    /// `zai_proxy_quota_sample_age_seconds{variant}`.
    pub quota_sample_age_seconds: GaugeVec,
    /// `zai_proxy_quota_poll_total{result,variant}`.
    pub quota_poll_total: CounterVec,
    /// `zai_proxy_quota_rate_cap{variant}` (registered, never written, as in the original).
    pub quota_rate_cap: GaugeVec,
    /// `zai_proxy_quota_gate_open{window,variant}` (registered, never written).
    pub quota_gate_open: GaugeVec,

    // Z.AI business errors
    /// `zai_proxy_zai_errors_total{class,code,variant}`.
    pub zai_errors_total: CounterVec,

    // Streams
    /// `zai_proxy_time_to_first_token_seconds{model,api,variant}`.
    pub time_to_first_token_seconds: HistogramVec,
    /// `zai_proxy_output_tokens_per_second{model,api,variant}`.
    pub output_tokens_per_second: HistogramVec,
    /// `zai_proxy_streams_total{variant,outcome}`.
    pub streams_total: CounterVec,

    /// The per-request series resolved once (see [`HotSeries`]).
    hot: HotSeries,
}

/// Handles of the series that (nearly) every proxied request writes, resolved once so the
/// request path does no label hashing or series lookup for them: the `variant` label is
/// fixed per process and the other labels of these series are bounded.
///
/// Only series that [`Metrics::new`] pre-creates anyway are resolved at start-up; the input
/// counting-rate series are resolved on first use, so `/metrics` shows exactly the same
/// series as before. Any other label set goes through `with_label_values` as usual.
#[derive(Debug, Clone, Default)]
pub struct HotSeries {
    /// `POST <chat route> 200`, per chat route label.
    post_ok: HashMap<String, PostOkSeries>,
    /// `zai_proxy_token_count_duration_seconds{variant}`.
    token_count_duration: OnceLock<Histogram>,
    /// `zai_proxy_token_rate_seconds{input,<TOKENIZER_MODEL>,variant}`.
    input_rate_seconds: OnceLock<Histogram>,
    /// `zai_proxy_token_rate{input,<TOKENIZER_MODEL>,variant}`.
    input_rate: OnceLock<Histogram>,
    variant: String,
    tokenizer_model: String,
}

/// The series of a successful `POST` to one chat route.
#[derive(Debug, Clone)]
pub struct PostOkSeries {
    /// `zai_proxy_requests_total{POST,route,200,variant}`.
    pub requests_total: Counter,
    /// `zai_proxy_request_duration_seconds{POST,route,200,variant}`.
    pub request_duration_seconds: Histogram,
    /// `zai_proxy_response_size_bytes{POST,route,200,variant}`.
    pub response_size_bytes: Histogram,
    /// `zai_proxy_request_size_bytes{POST,route,variant}`.
    pub request_size_bytes: Histogram,
}

impl HotSeries {
    fn resolve(m: &Metrics, variant: &str, chat_routes: &[&str], model: &str) -> Self {
        let v = variant;
        let post_ok = chat_routes
            .iter()
            .map(|route| {
                let series = PostOkSeries {
                    requests_total: m
                        .requests_total
                        .with_label_values(&["POST", route, "200", v]),
                    request_duration_seconds: m
                        .request_duration_seconds
                        .with_label_values(&["POST", route, "200", v]),
                    response_size_bytes: m
                        .response_size_bytes
                        .with_label_values(&["POST", route, "200", v]),
                    request_size_bytes: m.request_size_bytes.with_label_values(&["POST", route, v]),
                };
                ((*route).to_owned(), series)
            })
            .collect();
        Self {
            post_ok,
            token_count_duration: OnceLock::from(
                m.token_count_duration_seconds.with_label_values(&[v]),
            ),
            input_rate_seconds: OnceLock::new(),
            input_rate: OnceLock::new(),
            variant: variant.to_owned(),
            tokenizer_model: model.to_owned(),
        }
    }

    /// The series of `POST <route> 200`, when `route` is a chat route.
    pub fn post_ok(&self, route: &str) -> Option<&PostOkSeries> {
        self.post_ok.get(route)
    }

    /// `zai_proxy_token_count_duration_seconds{variant}`.
    pub fn token_count_duration(&self, m: &Metrics) -> &Histogram {
        self.token_count_duration.get_or_init(|| {
            m.token_count_duration_seconds
                .with_label_values(&[self.variant.as_str()])
        })
    }

    /// `zai_proxy_token_rate_seconds` and `zai_proxy_token_rate` with
    /// `direction="input"`, `model=<TOKENIZER_MODEL>` and this process's variant.
    pub fn input_rates(&self, m: &Metrics) -> (&Histogram, &Histogram) {
        let labels = [
            "input",
            self.tokenizer_model.as_str(),
            self.variant.as_str(),
        ];
        (
            self.input_rate_seconds
                .get_or_init(|| m.token_rate_seconds.with_label_values(&labels)),
            self.input_rate
                .get_or_init(|| m.token_rate.with_label_values(&labels)),
        )
    }
}

/// Registers families and remembers their HELP/TYPE.
struct Builder {
    registry: Registry,
    families: Vec<FamilyInfo>,
}

impl Builder {
    fn remember(&mut self, name: &'static str, help: &'static str, kind: &'static str) {
        self.families.push(FamilyInfo { name, help, kind });
    }

    fn counter(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[&str],
    ) -> Result<CounterVec, ProxyError> {
        let vec = CounterVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(vec.clone()))?;
        self.remember(name, help, "counter");
        Ok(vec)
    }

    fn gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[&str],
    ) -> Result<GaugeVec, ProxyError> {
        let vec = GaugeVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(vec.clone()))?;
        self.remember(name, help, "gauge");
        Ok(vec)
    }

    fn histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[&str],
        buckets: Vec<f64>,
    ) -> Result<HistogramVec, ProxyError> {
        let vec = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)?;
        self.registry.register(Box::new(vec.clone()))?;
        self.remember(name, help, "histogram");
        Ok(vec)
    }
}

/// The label value of source bucket `index` (`source-00` … `source-63`).
pub fn source_label(index: usize) -> &'static str {
    const LABELS: [&str; SOURCE_BUCKETS] = [
        "source-00",
        "source-01",
        "source-02",
        "source-03",
        "source-04",
        "source-05",
        "source-06",
        "source-07",
        "source-08",
        "source-09",
        "source-10",
        "source-11",
        "source-12",
        "source-13",
        "source-14",
        "source-15",
        "source-16",
        "source-17",
        "source-18",
        "source-19",
        "source-20",
        "source-21",
        "source-22",
        "source-23",
        "source-24",
        "source-25",
        "source-26",
        "source-27",
        "source-28",
        "source-29",
        "source-30",
        "source-31",
        "source-32",
        "source-33",
        "source-34",
        "source-35",
        "source-36",
        "source-37",
        "source-38",
        "source-39",
        "source-40",
        "source-41",
        "source-42",
        "source-43",
        "source-44",
        "source-45",
        "source-46",
        "source-47",
        "source-48",
        "source-49",
        "source-50",
        "source-51",
        "source-52",
        "source-53",
        "source-54",
        "source-55",
        "source-56",
        "source-57",
        "source-58",
        "source-59",
        "source-60",
        "source-61",
        "source-62",
        "source-63",
    ];
    LABELS[index % SOURCE_BUCKETS]
}

impl Metrics {
    /// Registers every family on a fresh registry and pre-creates the zero series.
    ///
    /// `chat_routes` are the `path` label values pre-created for the request families
    /// (POST, status 200); `default_model` is the `model` label pre-created for token
    /// families.
    pub fn new(
        variant: &str,
        build: &crate::config::BuildInfo,
        max_workers: u32,
        chat_routes: &[&str],
        default_model: &str,
    ) -> Result<Self, ProxyError> {
        let mut b = Builder {
            registry: Registry::new(),
            families: Vec::new(),
        };
        let size_buckets = prometheus::exponential_buckets(100.0, 10.0, 8)?;

        let mut m = Self {
            requests_total: b.counter(
                "zai_proxy_requests_total",
                "Total number of requests processed by the proxy",
                &["method", "path", "status_code", "variant"],
            )?,
            request_duration_seconds: b.histogram(
                "zai_proxy_request_duration_seconds",
                "Request duration in seconds",
                &["method", "path", "status_code", "variant"],
                REQUEST_DURATION_BUCKETS.to_vec(),
            )?,
            request_size_bytes: b.histogram(
                "zai_proxy_request_size_bytes",
                "Request size in bytes",
                &["method", "path", "variant"],
                size_buckets.clone(),
            )?,
            response_size_bytes: b.histogram(
                "zai_proxy_response_size_bytes",
                "Response size in bytes",
                &["method", "path", "status_code", "variant"],
                size_buckets,
            )?,
            concurrent_requests: b.gauge(
                "zai_proxy_concurrent_requests",
                "Number of requests currently being processed (in flight or queued)",
                &["variant"],
            )?,
            max_workers: b.gauge(
                "zai_proxy_max_workers",
                "Maximum number of concurrent requests (MAX_WORKERS)",
                &["variant"],
            )?,
            worker_utilization_ratio: b.gauge(
                "zai_proxy_worker_utilization_ratio",
                "Concurrent requests divided by MAX_WORKERS",
                &["variant"],
            )?,
            upstream_errors_total: b.counter(
                "zai_proxy_upstream_errors_total",
                "Total number of upstream errors by type",
                &["error_type", "variant"],
            )?,
            retry_attempts_total: b.counter(
                "zai_proxy_retry_attempts_total",
                "Total number of upstream retry attempts by reason",
                &["reason", "variant"],
            )?,
            build_info: b.gauge(
                "zai_proxy_build_info",
                "Build information (always 1)",
                &["version", "variant", "commit", "build_time"],
            )?,
            rate_limit_requests_per_second: b.gauge(
                "zai_proxy_rate_limit_requests_per_second",
                "Current adaptive rate limit in requests per second",
                &["variant"],
            )?,
            rate_limit_wait_seconds: b.histogram(
                "zai_proxy_rate_limit_wait_seconds",
                "Time spent waiting for rate limiter admission",
                &["variant", "client"],
                RATE_LIMIT_WAIT_BUCKETS.to_vec(),
            )?,
            rate_limit_adjustments_total: b.counter(
                "zai_proxy_rate_limit_adjustments_total",
                "Total number of adaptive rate limit adjustments by direction",
                &["direction", "variant"],
            )?,
            rate_limit_rejections_total: b.counter(
                "zai_proxy_rate_limit_rejections_total",
                "Total number of requests rejected due to proxy capacity",
                &["variant", "client"],
            )?,
            tokens_total: b.counter(
                "zai_proxy_tokens_total",
                "Total number of tokens processed",
                &["direction", "model", "variant", "pricing_tier"],
            )?,
            estimated_cost_usd_total: b.counter(
                "zai_proxy_estimated_cost_usd_total",
                "Estimated cost in USD",
                &["direction", "model", "variant", "pricing_tier"],
            )?,
            token_count_duration_seconds: b.histogram(
                "zai_proxy_token_count_duration_seconds",
                "Time spent counting tokens locally",
                &["variant"],
                TOKEN_COUNT_DURATION_BUCKETS.to_vec(),
            )?,
            token_rate_seconds: b.histogram(
                "zai_proxy_token_rate_seconds",
                "Seconds per token of local token counting",
                &["direction", "model", "variant"],
                TOKEN_RATE_SECONDS_BUCKETS.to_vec(),
            )?,
            token_rate: b.histogram(
                "zai_proxy_token_rate",
                "Tokens per second of local token counting",
                &["direction", "model", "variant"],
                TOKEN_RATE_BUCKETS.to_vec(),
            )?,
            token_estimate_ratio: b.histogram(
                "zai_proxy_token_estimate_ratio",
                "Local token estimate divided by the upstream-reported count",
                &["direction", "variant"],
                TOKEN_ESTIMATE_RATIO_BUCKETS.to_vec(),
            )?,
            quota_usage_ratio: b.gauge(
                "zai_proxy_quota_usage_ratio",
                "Used fraction of a Z.AI quota window (observe-only)",
                &["window", "limit_type", "variant"],
            )?,
            quota_remaining_ratio: b.gauge(
                "zai_proxy_quota_remaining_ratio",
                "Remaining fraction of a Z.AI quota window (observe-only)",
                &["window", "limit_type", "variant"],
            )?,
            quota_reset_time_seconds: b.gauge(
                "zai_proxy_quota_reset_time_seconds",
                "Reset time of a Z.AI quota window as Unix seconds",
                &["window", "limit_type", "variant"],
            )?,
            quota_sample_age_seconds: b.gauge(
                "zai_proxy_quota_sample_age_seconds",
                "Age of the last successful quota sample in seconds",
                &["variant"],
            )?,
            quota_poll_total: b.counter(
                "zai_proxy_quota_poll_total",
                "Total number of quota polls by result",
                &["result", "variant"],
            )?,
            quota_rate_cap: b.gauge(
                "zai_proxy_quota_rate_cap",
                "Quota-derived rate cap in requests per second (not enforced)",
                &["variant"],
            )?,
            quota_gate_open: b.gauge(
                "zai_proxy_quota_gate_open",
                "Whether the quota gate of a window is open (not enforced)",
                &["window", "variant"],
            )?,
            zai_errors_total: b.counter(
                "zai_proxy_zai_errors_total",
                "Total number of Z.AI business errors by class and code",
                &["class", "code", "variant"],
            )?,
            time_to_first_token_seconds: b.histogram(
                "zai_proxy_time_to_first_token_seconds",
                "Seconds from the request's arrival to the first content-bearing event of its stream",
                &["model", "api", "variant"],
                TIME_TO_FIRST_TOKEN_BUCKETS.to_vec(),
            )?,
            output_tokens_per_second: b.histogram(
                "zai_proxy_output_tokens_per_second",
                "Output tokens per second of a complete stream, from its first token to its end",
                &["model", "api", "variant"],
                OUTPUT_TOKENS_PER_SECOND_BUCKETS.to_vec(),
            )?,
            streams_total: b.counter(
                "zai_proxy_streams_total",
                "Streamed answers by how they ended",
                &["variant", "outcome"],
            )?,
            registry: b.registry,
            families: b.families,
            hot: HotSeries::default(),
        };
        m.precreate(variant, build, max_workers, chat_routes, default_model);
        m.hot = HotSeries::resolve(&m, variant, chat_routes, default_model);
        Ok(m)
    }

    /// Creates the zero series that make every family visible with its `variant` label.
    fn precreate(
        &self,
        variant: &str,
        build: &crate::config::BuildInfo,
        max_workers: u32,
        chat_routes: &[&str],
        default_model: &str,
    ) {
        let v = variant;
        for route in chat_routes {
            self.requests_total
                .with_label_values(&["POST", route, "200", v]);
            self.request_duration_seconds
                .with_label_values(&["POST", route, "200", v]);
            self.request_size_bytes
                .with_label_values(&["POST", route, v]);
            self.response_size_bytes
                .with_label_values(&["POST", route, "200", v]);
        }
        self.concurrent_requests.with_label_values(&[v]).set(0.0);
        self.max_workers
            .with_label_values(&[v])
            .set(f64::from(max_workers));
        self.worker_utilization_ratio
            .with_label_values(&[v])
            .set(0.0);
        for t in UPSTREAM_ERROR_TYPES {
            self.upstream_errors_total.with_label_values(&[t, v]);
        }
        for r in RETRY_REASONS {
            self.retry_attempts_total.with_label_values(&[r, v]);
        }
        self.build_info
            .with_label_values(&[&build.version, v, &build.commit, &build.build_time])
            .set(1.0);
        self.rate_limit_requests_per_second.with_label_values(&[v]);
        for i in 0..SOURCE_BUCKETS {
            let client = source_label(i);
            self.rate_limit_wait_seconds.with_label_values(&[v, client]);
            self.rate_limit_rejections_total
                .with_label_values(&[v, client]);
        }
        for d in ADJUSTMENT_DIRECTIONS {
            self.rate_limit_adjustments_total.with_label_values(&[d, v]);
        }
        for d in TOKEN_DIRECTIONS {
            for tier in PRICING_TIERS {
                self.tokens_total
                    .with_label_values(&[d, default_model, v, tier]);
                self.estimated_cost_usd_total
                    .with_label_values(&[d, default_model, v, tier]);
            }
        }
        self.token_count_duration_seconds.with_label_values(&[v]);
        self.token_rate_seconds
            .with_label_values(&["output", default_model, v]);
        self.token_rate
            .with_label_values(&["output", default_model, v]);
        for d in ["input", "output"] {
            self.token_estimate_ratio.with_label_values(&[d, v]);
        }
        for r in QUOTA_POLL_RESULTS {
            self.quota_poll_total.with_label_values(&[r, v]);
        }
        for (class, code) in ZAI_ERROR_CLASSES {
            self.zai_errors_total.with_label_values(&[class, code, v]);
        }
        for outcome in STREAM_OUTCOMES {
            self.streams_total.with_label_values(&[v, outcome]);
        }
        // The stream histograms are per model: created on a model's first stream.
        // Deliberately not pre-created (a zero would be a false reading): quota_usage_ratio,
        // quota_remaining_ratio, quota_reset_time_seconds, quota_sample_age_seconds,
        // quota_rate_cap, quota_gate_open. `render` still prints their HELP/TYPE.
    }

    /// The per-request series resolved once ([`HotSeries`]).
    pub fn hot(&self) -> &HotSeries {
        &self.hot
    }

    /// The registry these families live on (to gather or to add collectors).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Names of every registered family.
    pub fn family_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.families.iter().map(|f| f.name)
    }

    /// Prometheus text exposition of every family; families without series get their
    /// `# HELP`/`# TYPE` lines so that each name is always listed.
    pub fn render(&self) -> Result<String, ProxyError> {
        let gathered = self.registry.gather();
        let mut buf = Vec::with_capacity(64 * 1024);
        TextEncoder::new().encode(&gathered, &mut buf)?;
        let mut text = String::from_utf8(buf)
            .map_err(|e| ProxyError::Metrics(format!("non-UTF-8 exposition: {e}")))?;
        for family in &self.families {
            if !gathered.iter().any(|mf| mf.name() == family.name) {
                let _ = write!(
                    text,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n",
                    name = family.name,
                    help = family.help,
                    kind = family.kind
                );
            }
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BuildInfo;

    #[test]
    fn every_family_is_listed_even_when_empty() {
        let m = Metrics::new(
            "canary",
            &BuildInfo::default(),
            7,
            &["/v1/messages"],
            "glm-4",
        )
        .expect("metrics");
        let text = m.render().expect("render");
        for name in m.family_names() {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing from:\n{text}"
            );
        }
        assert!(text.contains("zai_proxy_max_workers{variant=\"canary\"} 7"));
        assert!(!text.contains("zai_proxy_quota_usage_ratio{"));
        assert_eq!(m.family_names().count(), 31);
    }

    #[test]
    fn two_instances_do_not_collide() {
        let a = Metrics::new("a", &BuildInfo::default(), 1, &[], "glm-4");
        let b = Metrics::new("b", &BuildInfo::default(), 1, &[], "glm-4");
        assert!(a.is_ok() && b.is_ok());
    }
}
