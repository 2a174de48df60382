//! Configuration: every setting is an environment variable with a `--flag` twin.
//!
//! [`Args`] is what clap parses (every value as a raw string, so that *all* invalid values can
//! be reported together instead of stopping at the first); [`Config::from_args`] validates it
//! into a typed [`Config`] or a [`ConfigError`] listing every invalid variable and why. The
//! binary exits with code 2 on such an error (unlike the Go original, which silently fell back
//! to defaults).
//!
//! Rules shared by all variables: unset or empty means "use the default" (except
//! `ZAI_API_KEY`, which is required, and `RATE_LIMIT_STATE_FILE`, where empty disables
//! persistence); values are not trimmed; durations accept humantime (`300s`, `1m`, `6h`,
//! `1m30s`) or plain seconds (`300`, `0.5`); booleans accept `true/false/1/0/yes/no/y/n` in any
//! case.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use http::HeaderValue;

/// Default upstream base URL (the Z.AI Anthropic-compatible endpoint, as in the original).
pub const DEFAULT_TARGET_URL: &str = "https://api.z.ai/api/anthropic";
/// Default listen address.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:8080";
/// Default `variant` label value.
pub const DEFAULT_VARIANT: &str = "production";
/// Default models that get their own `model` label value; anything else is `other`.
pub const DEFAULT_KNOWN_MODELS: &str = "glm-5.3,glm-5.2,glm-5.1,glm-5-turbo,glm-5,glm-4.7,glm-4.6,glm-4.5,glm-4.5-air,glm-4.5-x,glm-4.5-airx,glm-4.5-flash,glm-4.5v,glm-4.6v,glm-4,glm-4-plus,glm-4-air,glm-4-airx,glm-4-flash,glm-4-long,glm-z1-air,glm-z1-airx,glm-z1-flash";
/// Default `model` label when a request names no model.
pub const DEFAULT_TOKENIZER_MODEL: &str = "glm-4";
/// Default request body limit: 32 MiB.
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Default upstream timeout (the original's 5 minutes).
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(300);
/// Default time readiness reports 503 before the listener stops accepting.
pub const DEFAULT_SHUTDOWN_READINESS_DELAY: Duration = Duration::from_secs(5);
/// Default time in-flight requests get to finish after the listener stopped accepting.
pub const DEFAULT_SHUTDOWN_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// Default MAX_WORKERS (in-flight + queued requests).
pub const DEFAULT_MAX_WORKERS: u32 = 10;
/// Default byte budget for local token counting of one body: 8 MiB.
pub const DEFAULT_TOKEN_COUNT_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Default TOKEN_COUNT_CACHE_BYTES: text bytes the token count cache may hold (32 MiB).
pub const DEFAULT_TOKEN_COUNT_CACHE_BYTES: usize = 32 * 1024 * 1024;
/// Default RATE_LIMIT_WINDOW: one evaluation window of the rate controller (a constant in
/// the original).
pub const DEFAULT_RATE_LIMIT_WINDOW: Duration = Duration::from_secs(30);
/// Default ceiling state file.
pub const DEFAULT_RATE_LIMIT_STATE_FILE: &str = "/var/lib/zai-proxy/ceiling.json";
/// Default quota origin.
pub const DEFAULT_QUOTA_BASE_URL: &str = "https://api.z.ai";

/// Command line and environment of `zai-proxy`. Every value is kept as a string here and
/// validated in [`Config::from_args`], so that every invalid variable is reported at once.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "zai-proxy",
    version,
    about = "Reverse proxy in front of Z.AI's GLM API"
)]
pub struct Args {
    /// Upstream credential (required). Sent as x-api-key or Authorization: Bearer.
    #[arg(long, env = "ZAI_API_KEY", hide_env_values = true)]
    pub zai_api_key: Option<String>,
    /// Upstream base URL; the incoming path and query are appended verbatim.
    #[arg(long, env = "ZAI_TARGET_URL")]
    pub zai_target_url: Option<String>,
    /// How the key is sent upstream: auto | x-api-key | bearer.
    #[arg(long, env = "ZAI_AUTH_HEADER")]
    pub zai_auth_header: Option<String>,
    /// Address to listen on (host:port).
    #[arg(long, env = "LISTEN_ADDR")]
    pub listen_addr: Option<String>,
    /// Value of every `variant` metric label (production, canary, test...).
    #[arg(long, env = "DEPLOYMENT_VARIANT")]
    pub deployment_variant: Option<String>,
    /// Comma-separated models with their own `model` label value; others are `other`.
    #[arg(long, env = "KNOWN_MODELS")]
    pub known_models: Option<String>,
    /// Model label used when a request names no model.
    #[arg(long, env = "TOKENIZER_MODEL")]
    pub tokenizer_model: Option<String>,
    /// Largest accepted request body in bytes (413 above).
    #[arg(long, env = "MAX_REQUEST_BODY_BYTES")]
    pub max_request_body_bytes: Option<String>,
    /// Time to wait for the upstream response head, and the longest silence inside a body.
    #[arg(long, env = "UPSTREAM_TIMEOUT")]
    pub upstream_timeout: Option<String>,
    /// After SIGTERM: how long /readyz answers 503 while the listener still accepts.
    #[arg(long, env = "SHUTDOWN_READINESS_DELAY")]
    pub shutdown_readiness_delay: Option<String>,
    /// After the listener stopped accepting: how long in-flight requests may take to finish.
    #[arg(long, env = "SHUTDOWN_GRACE_PERIOD")]
    pub shutdown_grace_period: Option<String>,
    /// Log format: text | json.
    #[arg(long, env = "LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Bearer token for /admin/* routes; unset disables them (404).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Bound on in-flight plus queued requests (503 above).
    #[arg(long, env = "MAX_WORKERS")]
    pub max_workers: Option<String>,
    /// Version reported in zai_proxy_build_info (default: the crate version).
    #[arg(long, env = "ZAI_PROXY_VERSION")]
    pub zai_proxy_version: Option<String>,
    /// Commit reported in zai_proxy_build_info.
    #[arg(long, env = "ZAI_PROXY_COMMIT")]
    pub zai_proxy_commit: Option<String>,
    /// Build time reported in zai_proxy_build_info.
    #[arg(long, env = "ZAI_PROXY_BUILD_TIME")]
    pub zai_proxy_build_time: Option<String>,
    /// Count tokens locally and from upstream usage (true/false).
    #[arg(long, env = "TOKEN_COUNTING_ENABLED")]
    pub token_counting_enabled: Option<String>,
    /// Tokenizer encoding: cl100k_base | o200k_base | glm4 | glm5 | auto.
    #[arg(long, env = "TOKENIZER_ENCODING")]
    pub tokenizer_encoding: Option<String>,
    /// Answer count_tokens requests locally (true/false).
    #[arg(long, env = "LOCAL_COUNT_TOKENS")]
    pub local_count_tokens: Option<String>,
    /// Largest body counted locally, in bytes.
    #[arg(long, env = "TOKEN_COUNT_MAX_BYTES")]
    pub token_count_max_bytes: Option<String>,
    /// Bytes of input text whose counts are remembered (0 turns the cache off).
    #[arg(long, env = "TOKEN_COUNT_CACHE_BYTES")]
    pub token_count_cache_bytes: Option<String>,
    /// Starting rate in requests per second (also the reset target).
    #[arg(long, env = "RATE_LIMIT_INITIAL")]
    pub rate_limit_initial: Option<String>,
    /// Lowest rate in requests per second.
    #[arg(long, env = "RATE_LIMIT_MIN")]
    pub rate_limit_min: Option<String>,
    /// Highest rate in requests per second (also the initial ceiling estimate).
    #[arg(long, env = "RATE_LIMIT_MAX")]
    pub rate_limit_max: Option<String>,
    /// EWMA weight of the current rate on a 429 window, in (0, 1].
    #[arg(long, env = "RATE_LIMIT_CEILING_ALPHA")]
    pub rate_limit_ceiling_alpha: Option<String>,
    /// Hold below / probe above the ceiling by this fraction, in (0, 1).
    #[arg(long, env = "RATE_LIMIT_HOLD_MARGIN")]
    pub rate_limit_hold_margin: Option<String>,
    /// Clean windows between probes (> 0).
    #[arg(long, env = "RATE_LIMIT_PROBE_INTERVAL")]
    pub rate_limit_probe_interval: Option<String>,
    /// Ceiling snapshot file; empty disables persistence.
    #[arg(long, env = "RATE_LIMIT_STATE_FILE")]
    pub rate_limit_state_file: Option<String>,
    /// Oldest snapshot accepted on restore.
    #[arg(long, env = "RATE_LIMIT_STATE_MAX_AGE")]
    pub rate_limit_state_max_age: Option<String>,
    /// Retries after the first upstream attempt.
    #[arg(long, env = "MAX_RETRIES")]
    pub max_retries: Option<String>,
    /// Base of the exponential retry backoff.
    #[arg(long, env = "RETRY_BASE_DELAY")]
    pub retry_base_delay: Option<String>,
    /// Poll the Z.AI quota endpoint (observe-only; true/false).
    #[arg(long, env = "QUOTA_POLL_ENABLED")]
    pub quota_poll_enabled: Option<String>,
    /// Quota poll cadence.
    #[arg(long, env = "QUOTA_POLL_INTERVAL")]
    pub quota_poll_interval: Option<String>,
    /// Budget of one quota poll.
    #[arg(long, env = "QUOTA_POLL_TIMEOUT")]
    pub quota_poll_timeout: Option<String>,
    /// Age after which the last quota sample is stale.
    #[arg(long, env = "QUOTA_STALE_AFTER")]
    pub quota_stale_after: Option<String>,
    /// Quota origin (trailing / trimmed).
    #[arg(long, env = "ZAI_QUOTA_BASE_URL")]
    pub zai_quota_base_url: Option<String>,
    /// Largest quota response read, in bytes.
    #[arg(long, env = "QUOTA_MAX_RESPONSE_BYTES")]
    pub quota_max_response_bytes: Option<String>,
    /// Length of one adaptive-limiter evaluation window (default 30s).
    #[arg(long, env = "RATE_LIMIT_WINDOW")]
    pub rate_limit_window: Option<String>,
    /// Ceiling sample of a window with > 5 % 429s: rate (the original) | goodput.
    #[arg(long, env = "RATE_LIMIT_CEILING_SAMPLE")]
    pub rate_limit_ceiling_sample: Option<String>,
    /// Redis shared by every replica using the same key (redis://host:port[/db]); unset:
    /// every limit is per process.
    #[arg(long, env = "RATE_LIMIT_REDIS_URL", hide_env_values = true)]
    pub rate_limit_redis_url: Option<String>,
    /// The key's concurrency budget for upstream attempts (shared through Redis when
    /// RATE_LIMIT_REDIS_URL is set, else per process); unset: no limit.
    #[arg(long, env = "MAX_UPSTREAM_CONCURRENCY")]
    pub max_upstream_concurrency: Option<String>,
    /// When Redis fails, how long a replica takes leases only up to those it held then
    /// (and its share), so the fleet never exceeds the budget; set it to the longest an
    /// upstream attempt lasts. Default 0: its share at once.
    #[arg(long, env = "RATE_LIMIT_REDIS_FALLBACK_HOLD")]
    pub rate_limit_redis_fallback_hold: Option<String>,
}

/// A secret (the upstream API key, the admin token). `Debug` and `Display` print
/// `[redacted]`; the value is only reachable through [`ApiKey::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself. Call sites are the only places the key leaves this type.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How the API key is sent upstream (`ZAI_AUTH_HEADER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthHeaderMode {
    /// `x-api-key` for Anthropic routes, `Authorization: Bearer` for OpenAI routes; other
    /// paths follow the upstream URL (x-api-key if it contains `/anthropic`, else Bearer).
    Auto,
    /// Always `x-api-key: <key>`.
    XApiKey,
    /// Always `Authorization: Bearer <key>`.
    Bearer,
}

/// Log output format (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which tokenizer the token counter uses (`TOKENIZER_ENCODING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerEncoding {
    /// tiktoken cl100k_base (the original's encoding).
    Cl100kBase,
    /// tiktoken o200k_base.
    O200kBase,
    /// GLM-4's own tokenizer.
    Glm4,
    /// GLM-5's own tokenizer.
    Glm5,
    /// The vocabulary follows the request's model (glm-4.x → glm4, glm-5.x → glm5, others →
    /// cl100k_base); loads all three.
    Auto,
}

/// The ceiling sample of a rate-controller window with more than 5 % 429s
/// (`RATE_LIMIT_CEILING_SAMPLE`); the controller computes it ([`CeilingSample::of`], in
/// `ratelimit::controller`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CeilingSample {
    /// The rate in force (the original): each such window keeps
    /// α·(1 − margin) + (1 − α) of the ceiling (99.4 % with the defaults), so the estimate
    /// comes down from `RATE_LIMIT_MAX` to a real limit only over hundreds of windows.
    #[default]
    Rate,
    /// The rate that got through: rate × (1 − 429 share). When demand fills the admission
    /// rate r and the upstream admits L < r, the 429 share is (r − L)/r, so the sample is L
    /// itself and the ceiling closes (1 − α) of its gap to L per window.
    Goodput,
}

/// Values reported by `zai_proxy_build_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// `ZAI_PROXY_VERSION`, else the crate version.
    pub version: String,
    /// `ZAI_PROXY_COMMIT`, else `unknown`.
    pub commit: String,
    /// `ZAI_PROXY_BUILD_TIME`, else `unknown`.
    pub build_time: String,
}

impl Default for BuildInfo {
    fn default() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            commit: "unknown".to_owned(),
            build_time: "unknown".to_owned(),
        }
    }
}

/// Token counting settings (issue 3).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenSettings {
    /// `TOKEN_COUNTING_ENABLED` (default true).
    pub enabled: bool,
    /// `TOKENIZER_ENCODING` (default cl100k_base).
    pub encoding: TokenizerEncoding,
    /// `LOCAL_COUNT_TOKENS` (default true).
    pub local_count_tokens: bool,
    /// `TOKEN_COUNT_MAX_BYTES` (default 8 MiB).
    pub max_bytes: usize,
    /// `TOKEN_COUNT_CACHE_BYTES` (default 32 MiB; 0 = no cache).
    pub cache_bytes: usize,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            encoding: TokenizerEncoding::Cl100kBase,
            local_count_tokens: true,
            max_bytes: DEFAULT_TOKEN_COUNT_MAX_BYTES,
            cache_bytes: DEFAULT_TOKEN_COUNT_CACHE_BYTES,
        }
    }
}

/// Adaptive rate limiter settings (issue 4).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitSettings {
    /// `RATE_LIMIT_INITIAL` (10 req/s).
    pub initial: f64,
    /// `RATE_LIMIT_MIN` (1 req/s).
    pub min: f64,
    /// `RATE_LIMIT_MAX` (50 req/s).
    pub max: f64,
    /// `RATE_LIMIT_CEILING_ALPHA` (0.3).
    pub ceiling_alpha: f64,
    /// `RATE_LIMIT_HOLD_MARGIN` (0.02).
    pub hold_margin: f64,
    /// `RATE_LIMIT_PROBE_INTERVAL` (10 windows).
    pub probe_interval: u32,
    /// `RATE_LIMIT_STATE_FILE` (`/var/lib/zai-proxy/ceiling.json`; empty: `None`).
    pub state_file: Option<PathBuf>,
    /// `RATE_LIMIT_STATE_MAX_AGE` (6 h).
    pub state_max_age: Duration,
    /// `RATE_LIMIT_WINDOW` (30 s): one evaluation window of the controller.
    pub window: Duration,
    /// `RATE_LIMIT_CEILING_SAMPLE` (rate): what a 429 window teaches the ceiling.
    pub ceiling_sample: CeilingSample,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            initial: 10.0,
            min: 1.0,
            max: 50.0,
            ceiling_alpha: 0.3,
            hold_margin: 0.02,
            probe_interval: 10,
            state_file: Some(PathBuf::from(DEFAULT_RATE_LIMIT_STATE_FILE)),
            state_max_age: Duration::from_secs(6 * 3600),
            window: DEFAULT_RATE_LIMIT_WINDOW,
            ceiling_sample: CeilingSample::Rate,
        }
    }
}

/// The key's budget shared by replicas (issue 19).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BudgetSettings {
    /// `RATE_LIMIT_REDIS_URL` (unset: limits per process). A secret: it may hold a password.
    pub redis_url: Option<ApiKey>,
    /// `MAX_UPSTREAM_CONCURRENCY` (unset: no concurrency budget).
    pub max_upstream_concurrency: Option<u32>,
    /// `RATE_LIMIT_REDIS_FALLBACK_HOLD` (0: none): see
    /// [`crate::ratelimit::shared::policy::fallback_cap`].
    pub fallback_hold: Duration,
}

/// Upstream retry settings (issue 4).
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySettings {
    /// `MAX_RETRIES` (3).
    pub max_retries: u32,
    /// `RETRY_BASE_DELAY` (1 s).
    pub base_delay: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_secs(1),
        }
    }
}

/// Observe-only quota polling settings (issue 4).
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaSettings {
    /// `QUOTA_POLL_ENABLED` (false).
    pub enabled: bool,
    /// `QUOTA_POLL_INTERVAL` (1 m).
    pub interval: Duration,
    /// `QUOTA_POLL_TIMEOUT` (5 s).
    pub timeout: Duration,
    /// `QUOTA_STALE_AFTER` (15 m).
    pub stale_after: Duration,
    /// `ZAI_QUOTA_BASE_URL` (`https://api.z.ai`, trailing `/` trimmed).
    pub base_url: String,
    /// `QUOTA_MAX_RESPONSE_BYTES` (65536).
    pub max_response_bytes: usize,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            stale_after: Duration::from_secs(15 * 60),
            base_url: DEFAULT_QUOTA_BASE_URL.to_owned(),
            max_response_bytes: 65536,
        }
    }
}

/// The validated configuration of one proxy.
#[derive(Debug, Clone)]
pub struct Config {
    /// `LISTEN_ADDR` (0.0.0.0:8080).
    pub listen_addr: SocketAddr,
    /// `ZAI_TARGET_URL`, without a trailing `/`.
    pub target_url: String,
    /// `ZAI_API_KEY` (required).
    pub api_key: ApiKey,
    /// `ZAI_AUTH_HEADER` (auto).
    pub auth_header: AuthHeaderMode,
    /// `DEPLOYMENT_VARIANT` (production).
    pub variant: String,
    /// `KNOWN_MODELS` (see [`DEFAULT_KNOWN_MODELS`]).
    pub known_models: Vec<String>,
    /// `TOKENIZER_MODEL` (glm-4).
    pub tokenizer_model: String,
    /// `MAX_REQUEST_BODY_BYTES` (32 MiB).
    pub max_request_body_bytes: usize,
    /// `UPSTREAM_TIMEOUT` (300 s).
    pub upstream_timeout: Duration,
    /// `SHUTDOWN_READINESS_DELAY` (5 s).
    pub shutdown_readiness_delay: Duration,
    /// `SHUTDOWN_GRACE_PERIOD` (30 s).
    pub shutdown_grace_period: Duration,
    /// `LOG_FORMAT` (text).
    pub log_format: LogFormat,
    /// `ADMIN_TOKEN` (unset: /admin/* answers 404).
    pub admin_token: Option<ApiKey>,
    /// `MAX_WORKERS` (10).
    pub max_workers: u32,
    /// `ZAI_PROXY_VERSION`, `ZAI_PROXY_COMMIT`, `ZAI_PROXY_BUILD_TIME`.
    pub build: BuildInfo,
    /// Token counting (issue 3).
    pub tokens: TokenSettings,
    /// Adaptive rate limiting (issue 4).
    pub rate_limit: RateLimitSettings,
    /// Retries (issue 4).
    pub retry: RetrySettings,
    /// Quota polling (issue 4).
    pub quota: QuotaSettings,
    /// Shared budget: Redis and the upstream concurrency budget (issue 19).
    pub budget: BudgetSettings,
}

impl Config {
    /// Every default, with the given upstream and key; handy for tests and benches.
    /// (Note: the ceiling state file default points at `/var/lib/zai-proxy`; tests usually
    /// set `rate_limit.state_file = None`.)
    pub fn with_defaults(target_url: &str, api_key: &str) -> Self {
        Self {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            target_url: target_url.trim_end_matches('/').to_owned(),
            api_key: ApiKey::new(api_key),
            auth_header: AuthHeaderMode::Auto,
            variant: DEFAULT_VARIANT.to_owned(),
            known_models: split_list(DEFAULT_KNOWN_MODELS),
            tokenizer_model: DEFAULT_TOKENIZER_MODEL.to_owned(),
            max_request_body_bytes: DEFAULT_MAX_REQUEST_BODY_BYTES,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            shutdown_readiness_delay: DEFAULT_SHUTDOWN_READINESS_DELAY,
            shutdown_grace_period: DEFAULT_SHUTDOWN_GRACE_PERIOD,
            log_format: LogFormat::Text,
            admin_token: None,
            max_workers: DEFAULT_MAX_WORKERS,
            build: BuildInfo::default(),
            tokens: TokenSettings::default(),
            rate_limit: RateLimitSettings::default(),
            retry: RetrySettings::default(),
            quota: QuotaSettings::default(),
            budget: BudgetSettings::default(),
        }
    }

    /// Parses the process environment and command line. Clap usage errors (unknown flag)
    /// exit the process through clap (code 2); invalid values are returned together.
    pub fn from_env_and_args() -> Result<Self, ConfigError> {
        Self::from_args(Args::parse())
    }

    /// Validates raw [`Args`] into a [`Config`], collecting every problem.
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let mut v = Validator::default();

        let api_key = match args.zai_api_key.as_deref() {
            None | Some("") => {
                v.fail("ZAI_API_KEY", "is required (the upstream credential)");
                None
            }
            Some(key) if HeaderValue::from_str(key).is_err() => {
                v.fail(
                    "ZAI_API_KEY",
                    "contains characters not allowed in an HTTP header",
                );
                None
            }
            Some(key) => Some(ApiKey::new(key)),
        };
        let admin_token = match args.admin_token.as_deref() {
            None | Some("") => None,
            Some(token) if HeaderValue::from_str(token).is_err() => {
                v.fail(
                    "ADMIN_TOKEN",
                    "contains characters not allowed in an HTTP header",
                );
                None
            }
            Some(token) => Some(ApiKey::new(token)),
        };

        let target_url = v
            .parse("ZAI_TARGET_URL", &args.zai_target_url, parse_http_url)
            .unwrap_or_else(|| DEFAULT_TARGET_URL.to_owned());
        let auth_header = v
            .parse("ZAI_AUTH_HEADER", &args.zai_auth_header, parse_auth_header)
            .unwrap_or(AuthHeaderMode::Auto);
        let listen_addr = v
            .parse("LISTEN_ADDR", &args.listen_addr, |s| {
                s.parse::<SocketAddr>()
                    .map_err(|_| "must be host:port with an IP host, e.g. 0.0.0.0:8080".into())
            })
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8080)));
        let variant = v
            .parse(
                "DEPLOYMENT_VARIANT",
                &args.deployment_variant,
                parse_label_value,
            )
            .unwrap_or_else(|| DEFAULT_VARIANT.to_owned());
        let known_models = v
            .parse("KNOWN_MODELS", &args.known_models, parse_model_list)
            .unwrap_or_else(|| split_list(DEFAULT_KNOWN_MODELS));
        let tokenizer_model = v
            .parse("TOKENIZER_MODEL", &args.tokenizer_model, parse_label_value)
            .unwrap_or_else(|| DEFAULT_TOKENIZER_MODEL.to_owned());
        let max_request_body_bytes = v
            .parse(
                "MAX_REQUEST_BODY_BYTES",
                &args.max_request_body_bytes,
                parse_positive::<usize>,
            )
            .unwrap_or(DEFAULT_MAX_REQUEST_BODY_BYTES);
        let upstream_timeout = v
            .parse(
                "UPSTREAM_TIMEOUT",
                &args.upstream_timeout,
                parse_positive_duration,
            )
            .unwrap_or(DEFAULT_UPSTREAM_TIMEOUT);
        let shutdown_readiness_delay = v
            .parse(
                "SHUTDOWN_READINESS_DELAY",
                &args.shutdown_readiness_delay,
                parse_duration,
            )
            .unwrap_or(DEFAULT_SHUTDOWN_READINESS_DELAY);
        let shutdown_grace_period = v
            .parse(
                "SHUTDOWN_GRACE_PERIOD",
                &args.shutdown_grace_period,
                parse_duration,
            )
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE_PERIOD);
        let log_format = v
            .parse("LOG_FORMAT", &args.log_format, |s| {
                match s.to_ascii_lowercase().as_str() {
                    "text" => Ok(LogFormat::Text),
                    "json" => Ok(LogFormat::Json),
                    _ => Err("must be text or json".into()),
                }
            })
            .unwrap_or(LogFormat::Text);
        let max_workers = v
            .parse("MAX_WORKERS", &args.max_workers, parse_positive::<u32>)
            .unwrap_or(DEFAULT_MAX_WORKERS);

        let defaults = BuildInfo::default();
        let build = BuildInfo {
            version: non_empty(&args.zai_proxy_version).unwrap_or(defaults.version),
            commit: non_empty(&args.zai_proxy_commit).unwrap_or(defaults.commit),
            build_time: non_empty(&args.zai_proxy_build_time).unwrap_or(defaults.build_time),
        };

        let token_defaults = TokenSettings::default();
        let tokens = TokenSettings {
            enabled: v
                .parse(
                    "TOKEN_COUNTING_ENABLED",
                    &args.token_counting_enabled,
                    parse_bool,
                )
                .unwrap_or(token_defaults.enabled),
            encoding: v
                .parse(
                    "TOKENIZER_ENCODING",
                    &args.tokenizer_encoding,
                    parse_encoding,
                )
                .unwrap_or(token_defaults.encoding),
            local_count_tokens: v
                .parse("LOCAL_COUNT_TOKENS", &args.local_count_tokens, parse_bool)
                .unwrap_or(token_defaults.local_count_tokens),
            max_bytes: v
                .parse(
                    "TOKEN_COUNT_MAX_BYTES",
                    &args.token_count_max_bytes,
                    parse_positive::<usize>,
                )
                .unwrap_or(token_defaults.max_bytes),
            cache_bytes: v
                .parse(
                    "TOKEN_COUNT_CACHE_BYTES",
                    &args.token_count_cache_bytes,
                    parse_non_negative::<usize>,
                )
                .unwrap_or(token_defaults.cache_bytes),
        };

        let rl = RateLimitSettings::default();
        let rate_limit = RateLimitSettings {
            initial: v
                .parse("RATE_LIMIT_INITIAL", &args.rate_limit_initial, |s| {
                    parse_f64_in(s, Bound::Open(0.0), Bound::Unbounded)
                })
                .unwrap_or(rl.initial),
            min: v
                .parse("RATE_LIMIT_MIN", &args.rate_limit_min, |s| {
                    parse_f64_in(s, Bound::Open(0.0), Bound::Unbounded)
                })
                .unwrap_or(rl.min),
            max: v
                .parse("RATE_LIMIT_MAX", &args.rate_limit_max, |s| {
                    parse_f64_in(s, Bound::Open(0.0), Bound::Unbounded)
                })
                .unwrap_or(rl.max),
            ceiling_alpha: v
                .parse(
                    "RATE_LIMIT_CEILING_ALPHA",
                    &args.rate_limit_ceiling_alpha,
                    |s| parse_f64_in(s, Bound::Open(0.0), Bound::Closed(1.0)),
                )
                .unwrap_or(rl.ceiling_alpha),
            hold_margin: v
                .parse(
                    "RATE_LIMIT_HOLD_MARGIN",
                    &args.rate_limit_hold_margin,
                    |s| parse_f64_in(s, Bound::Open(0.0), Bound::Open(1.0)),
                )
                .unwrap_or(rl.hold_margin),
            probe_interval: v
                .parse(
                    "RATE_LIMIT_PROBE_INTERVAL",
                    &args.rate_limit_probe_interval,
                    parse_positive::<u32>,
                )
                .unwrap_or(rl.probe_interval),
            state_file: match args.rate_limit_state_file.as_deref() {
                None => rl.state_file,
                Some("") => None,
                Some(path) => Some(PathBuf::from(path)),
            },
            state_max_age: v
                .parse(
                    "RATE_LIMIT_STATE_MAX_AGE",
                    &args.rate_limit_state_max_age,
                    parse_positive_duration,
                )
                .unwrap_or(rl.state_max_age),
            window: v
                .parse(
                    "RATE_LIMIT_WINDOW",
                    &args.rate_limit_window,
                    parse_positive_duration,
                )
                .unwrap_or(rl.window),
            ceiling_sample: v
                .parse(
                    "RATE_LIMIT_CEILING_SAMPLE",
                    &args.rate_limit_ceiling_sample,
                    |s| match s.to_ascii_lowercase().as_str() {
                        "rate" => Ok(CeilingSample::Rate),
                        "goodput" => Ok(CeilingSample::Goodput),
                        _ => Err("must be rate or goodput".into()),
                    },
                )
                .unwrap_or(rl.ceiling_sample),
        };
        if rate_limit.min > rate_limit.max {
            v.fail(
                "RATE_LIMIT_MIN",
                format!(
                    "({}) must not exceed RATE_LIMIT_MAX ({})",
                    rate_limit.min, rate_limit.max
                ),
            );
        } else if !(rate_limit.min..=rate_limit.max).contains(&rate_limit.initial) {
            v.fail(
                "RATE_LIMIT_INITIAL",
                format!(
                    "({}) must lie between RATE_LIMIT_MIN ({}) and RATE_LIMIT_MAX ({})",
                    rate_limit.initial, rate_limit.min, rate_limit.max
                ),
            );
        }

        let rd = RetrySettings::default();
        let retry = RetrySettings {
            max_retries: v
                .parse("MAX_RETRIES", &args.max_retries, |s| {
                    s.parse::<u32>()
                        .map_err(|_| "must be a whole number >= 0".into())
                })
                .unwrap_or(rd.max_retries),
            base_delay: v
                .parse("RETRY_BASE_DELAY", &args.retry_base_delay, parse_duration)
                .unwrap_or(rd.base_delay),
        };

        let qd = QuotaSettings::default();
        let quota = QuotaSettings {
            enabled: v
                .parse("QUOTA_POLL_ENABLED", &args.quota_poll_enabled, parse_bool)
                .unwrap_or(qd.enabled),
            interval: v
                .parse(
                    "QUOTA_POLL_INTERVAL",
                    &args.quota_poll_interval,
                    parse_positive_duration,
                )
                .unwrap_or(qd.interval),
            timeout: v
                .parse(
                    "QUOTA_POLL_TIMEOUT",
                    &args.quota_poll_timeout,
                    parse_positive_duration,
                )
                .unwrap_or(qd.timeout),
            stale_after: v
                .parse(
                    "QUOTA_STALE_AFTER",
                    &args.quota_stale_after,
                    parse_positive_duration,
                )
                .unwrap_or(qd.stale_after),
            base_url: v
                .parse(
                    "ZAI_QUOTA_BASE_URL",
                    &args.zai_quota_base_url,
                    parse_http_url,
                )
                .unwrap_or(qd.base_url),
            max_response_bytes: v
                .parse(
                    "QUOTA_MAX_RESPONSE_BYTES",
                    &args.quota_max_response_bytes,
                    parse_positive::<usize>,
                )
                .unwrap_or(qd.max_response_bytes),
        };

        let budget = BudgetSettings {
            redis_url: match args.rate_limit_redis_url.as_deref() {
                None | Some("") => None,
                // The URL may carry a password: the reason never repeats it.
                Some(url) => match parse_redis_url(url) {
                    Ok(()) => Some(ApiKey::new(url)),
                    Err(reason) => {
                        v.fail("RATE_LIMIT_REDIS_URL", reason);
                        None
                    }
                },
            },
            max_upstream_concurrency: v.parse(
                "MAX_UPSTREAM_CONCURRENCY",
                &args.max_upstream_concurrency,
                parse_positive::<u32>,
            ),
            fallback_hold: v
                .parse(
                    "RATE_LIMIT_REDIS_FALLBACK_HOLD",
                    &args.rate_limit_redis_fallback_hold,
                    parse_duration,
                )
                .unwrap_or_default(),
        };

        if !v.problems.is_empty() {
            return Err(ConfigError {
                problems: v.problems,
            });
        }
        let api_key = api_key.ok_or_else(|| ConfigError {
            problems: vec![Problem {
                variable: "ZAI_API_KEY",
                reason: "is required (the upstream credential)".to_owned(),
            }],
        })?;
        Ok(Self {
            listen_addr,
            target_url,
            api_key,
            auth_header,
            variant,
            known_models,
            tokenizer_model,
            max_request_body_bytes,
            upstream_timeout,
            shutdown_readiness_delay,
            shutdown_grace_period,
            log_format,
            admin_token,
            max_workers,
            build,
            tokens,
            rate_limit,
            retry,
            quota,
            budget,
        })
    }
}

/// One invalid variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The environment variable's name.
    pub variable: &'static str,
    /// Why its value was rejected (never contains a secret's value).
    pub reason: String,
}

/// Every invalid variable found while validating the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in the order the variables are documented.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration ({} problem{}):",
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {}: {}", p.variable, p.reason)?;
        }
        Ok(())
    }
}

/// Collects problems while parsing.
#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn fail(&mut self, variable: &'static str, reason: impl Into<String>) {
        self.problems.push(Problem {
            variable,
            reason: reason.into(),
        });
    }

    /// `None` for unset/empty (use the default) or invalid (recorded).
    fn parse<T>(
        &mut self,
        variable: &'static str,
        raw: &Option<String>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let raw = raw.as_deref().filter(|s| !s.is_empty())?;
        match parse(raw) {
            Ok(value) => Some(value),
            Err(reason) => {
                self.fail(variable, format!("{reason} (got {raw:?})"));
                None
            }
        }
    }
}

fn non_empty(raw: &Option<String>) -> Option<String> {
    raw.as_deref().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// Splits a comma list, trimming items and dropping empty ones.
pub fn split_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses a boolean: true/false/1/0/yes/no/y/n/on/off in any case.
pub fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "on" => Ok(true),
        "false" | "0" | "no" | "n" | "off" => Ok(false),
        _ => Err("must be true or false (also 1/0, yes/no)".into()),
    }
}

/// Parses a duration: humantime (`300s`, `1m`, `6h`, `1m30s`, `500ms`) or plain seconds
/// (`300`, `0.5`).
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    if let Ok(secs) = raw.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| "must be a non-negative finite number of seconds".into());
    }
    humantime::parse_duration(raw)
        .map_err(|_| "must be a duration such as 300s, 1m, 6h or plain seconds".into())
}

fn parse_positive_duration(raw: &str) -> Result<Duration, String> {
    let d = parse_duration(raw)?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

fn parse_positive<T>(raw: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + Default,
{
    match raw.parse::<T>() {
        Ok(n) if n > T::default() => Ok(n),
        _ => Err("must be a whole number greater than zero".into()),
    }
}

fn parse_non_negative<T: std::str::FromStr>(raw: &str) -> Result<T, String> {
    raw.parse::<T>()
        .map_err(|_| "must be a whole number (0 or more)".to_string())
}

enum Bound {
    Open(f64),
    Closed(f64),
    Unbounded,
}

fn parse_f64_in(raw: &str, low: Bound, high: Bound) -> Result<f64, String> {
    let describe = || {
        let lo = match low {
            Bound::Open(x) => format!("> {x}"),
            Bound::Closed(x) => format!(">= {x}"),
            Bound::Unbounded => String::new(),
        };
        let hi = match high {
            Bound::Open(x) => format!("< {x}"),
            Bound::Closed(x) => format!("<= {x}"),
            Bound::Unbounded => String::new(),
        };
        let range = [lo, hi]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" and ");
        format!("must be a number {range}")
    };
    let x: f64 = raw.parse().map_err(|_| describe())?;
    let ok_low = match low {
        Bound::Open(l) => x > l,
        Bound::Closed(l) => x >= l,
        Bound::Unbounded => true,
    };
    let ok_high = match high {
        Bound::Open(h) => x < h,
        Bound::Closed(h) => x <= h,
        Bound::Unbounded => true,
    };
    if x.is_finite() && ok_low && ok_high {
        Ok(x)
    } else {
        Err(describe())
    }
}

fn parse_auth_header(raw: &str) -> Result<AuthHeaderMode, String> {
    match raw.to_ascii_lowercase().as_str() {
        "auto" => Ok(AuthHeaderMode::Auto),
        "x-api-key" => Ok(AuthHeaderMode::XApiKey),
        "bearer" => Ok(AuthHeaderMode::Bearer),
        _ => Err("must be auto, x-api-key or bearer".into()),
    }
}

fn parse_encoding(raw: &str) -> Result<TokenizerEncoding, String> {
    match raw.to_ascii_lowercase().as_str() {
        "cl100k_base" | "cl100k" => Ok(TokenizerEncoding::Cl100kBase),
        "o200k_base" | "o200k" => Ok(TokenizerEncoding::O200kBase),
        "glm4" | "glm-4" => Ok(TokenizerEncoding::Glm4),
        "glm5" | "glm-5" => Ok(TokenizerEncoding::Glm5),
        "auto" => Ok(TokenizerEncoding::Auto),
        _ => Err("must be cl100k_base, o200k_base, glm4, glm5 or auto".into()),
    }
}

/// An http(s) URL with a host; returned without trailing `/`.
fn parse_http_url(raw: &str) -> Result<String, String> {
    let uri: http::Uri = raw
        .parse()
        .map_err(|_| "must be an http:// or https:// URL".to_owned())?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("must start with http:// or https://".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    if uri.query().is_some() {
        return Err("must not contain a query string".into());
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// A Redis URL the client accepts: `redis://[user:password@]host[:port][/db]` or
/// `redis+unix:///path` / `unix:///path`. The reason never contains the URL.
fn parse_redis_url(raw: &str) -> Result<(), String> {
    use redis::IntoConnectionInfo as _;
    if raw.starts_with("rediss://") {
        return Err("must be redis:// (TLS, rediss://, is not built in)".into());
    }
    let scheme_ok = ["redis://", "redis+unix://", "unix://"]
        .iter()
        .any(|scheme| raw.starts_with(scheme));
    if !scheme_ok || raw.into_connection_info().is_err() {
        return Err("must be a Redis URL such as redis://127.0.0.1:6379/0 (value not shown: it may hold a password)".into());
    }
    Ok(())
}

/// A label value: 1–64 characters, no control characters.
fn parse_label_value(raw: &str) -> Result<String, String> {
    if raw.len() > 64 || raw.chars().any(char::is_control) {
        return Err("must be at most 64 printable characters".into());
    }
    Ok(raw.to_owned())
}

fn parse_model_list(raw: &str) -> Result<Vec<String>, String> {
    let models = split_list(raw);
    if models.is_empty() {
        return Err("must list at least one model".into());
    }
    if models.len() > 100 {
        return Err("must list at most 100 models (each is a metric label value)".into());
    }
    for m in &models {
        parse_label_value(m)?;
        if m == "other" {
            return Err("must not contain `other` (reserved for unknown models)".into());
        }
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokenizer_encodings_parse() {
        assert_eq!(parse_encoding("glm5"), Ok(TokenizerEncoding::Glm5));
        assert_eq!(parse_encoding("GLM-5"), Ok(TokenizerEncoding::Glm5));
        assert_eq!(parse_encoding("auto"), Ok(TokenizerEncoding::Auto));
        assert_eq!(parse_encoding("glm4"), Ok(TokenizerEncoding::Glm4));
        let err = parse_encoding("p50k_base").expect_err("unknown");
        assert!(err.contains("glm5") && err.contains("auto"), "{err}");
    }

    use super::*;

    fn args(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut argv = vec!["zai-proxy".to_owned()];
        for (flag, value) in pairs {
            argv.push(format!("--{flag}={value}"));
        }
        let parsed = Args::try_parse_from(argv).expect("flags parse");
        Config::from_args(parsed)
    }

    #[test]
    fn defaults_need_only_the_key() {
        let c = args(&[("zai-api-key", "k")]).expect("valid");
        assert_eq!(c.target_url, DEFAULT_TARGET_URL);
        assert_eq!(c.max_workers, 10);
        assert_eq!(c.upstream_timeout, Duration::from_secs(300));
        assert_eq!(c.max_request_body_bytes, 32 * 1024 * 1024);
        assert_eq!(c.variant, "production");
        assert_eq!(c.auth_header, AuthHeaderMode::Auto);
        assert_eq!(c.rate_limit, RateLimitSettings::default());
        assert_eq!(c.quota, QuotaSettings::default());
        assert!(c.known_models.iter().any(|m| m == "glm-4.6"));
    }

    #[test]
    fn token_count_cache_bytes_accepts_zero_and_rejects_words() {
        let c = args(&[("zai-api-key", "k")]).expect("valid");
        assert_eq!(c.tokens.cache_bytes, 32 * 1024 * 1024);
        let c = args(&[("zai-api-key", "k"), ("token-count-cache-bytes", "0")]).expect("valid");
        assert_eq!(c.tokens.cache_bytes, 0);
        let e = args(&[("zai-api-key", "k"), ("token-count-cache-bytes", "lots")])
            .expect_err("invalid");
        assert_eq!(e.problems[0].variable, "TOKEN_COUNT_CACHE_BYTES");
    }

    #[test]
    fn missing_key_is_an_error() {
        let e = args(&[]).expect_err("key required");
        assert_eq!(e.problems.len(), 1);
        assert_eq!(e.problems[0].variable, "ZAI_API_KEY");
    }

    #[test]
    fn all_problems_are_collected() {
        let e = args(&[
            ("max-workers", "zero"),
            ("upstream-timeout", "soon"),
            ("rate-limit-ceiling-alpha", "1.5"),
            ("zai-target-url", "ftp://x"),
            ("log-format", "xml"),
        ])
        .expect_err("invalid");
        let vars: Vec<_> = e.problems.iter().map(|p| p.variable).collect();
        assert_eq!(
            vars,
            [
                "ZAI_API_KEY",
                "ZAI_TARGET_URL",
                "UPSTREAM_TIMEOUT",
                "LOG_FORMAT",
                "MAX_WORKERS",
                "RATE_LIMIT_CEILING_ALPHA"
            ]
        );
        let text = e.to_string();
        assert!(text.contains("6 problems"), "{text}");
        assert!(text.contains("\"zero\""), "{text}");
    }

    #[test]
    fn secrets_are_never_echoed() {
        let e = args(&[("zai-api-key", "sec\u{1}ret")]).expect_err("invalid header");
        assert!(!e.to_string().contains("sec"));
        let c = args(&[("zai-api-key", "s3cr3t-key")]).expect("valid");
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn durations_accept_humantime_and_seconds() {
        assert_eq!(parse_duration("300s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("6h"), Ok(Duration::from_secs(6 * 3600)));
        assert_eq!(parse_duration("42"), Ok(Duration::from_secs(42)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn booleans_are_case_insensitive() {
        assert_eq!(parse_bool("FALSE"), Ok(false));
        assert_eq!(parse_bool("Yes"), Ok(true));
        assert_eq!(parse_bool("0"), Ok(false));
        assert!(parse_bool("maybe").is_err());
    }

    #[test]
    fn empty_state_file_disables_persistence() {
        let c = args(&[("zai-api-key", "k"), ("rate-limit-state-file", "")]).expect("valid");
        assert_eq!(c.rate_limit.state_file, None);
    }

    #[test]
    fn rate_limit_cross_checks() {
        let e = args(&[
            ("zai-api-key", "k"),
            ("rate-limit-min", "20"),
            ("rate-limit-max", "5"),
        ])
        .expect_err("min > max");
        assert_eq!(e.problems[0].variable, "RATE_LIMIT_MIN");
        let e = args(&[("zai-api-key", "k"), ("rate-limit-initial", "100")])
            .expect_err("initial > max");
        assert_eq!(e.problems[0].variable, "RATE_LIMIT_INITIAL");
    }

    #[test]
    fn budget_settings_are_validated_together_and_never_echo_the_url() {
        let c = args(&[("zai-api-key", "k")]).expect("valid");
        assert_eq!(c.budget, BudgetSettings::default());
        assert_eq!(c.rate_limit.window, Duration::from_secs(30));
        let c = args(&[
            ("zai-api-key", "k"),
            ("rate-limit-redis-url", "redis://:pw@127.0.0.1:6379/2"),
            ("max-upstream-concurrency", "20"),
            ("rate-limit-window", "2s"),
            ("rate-limit-redis-fallback-hold", "5m"),
        ])
        .expect("valid");
        assert_eq!(c.budget.max_upstream_concurrency, Some(20));
        assert_eq!(c.budget.fallback_hold, Duration::from_secs(300));
        assert!(c.budget.redis_url.is_some());
        assert_eq!(c.rate_limit.window, Duration::from_secs(2));
        assert!(!format!("{c:?}").contains("pw@"), "the URL is a secret");
        let e = args(&[
            ("zai-api-key", "k"),
            ("rate-limit-redis-url", "http://:hunter2@x"),
            ("max-upstream-concurrency", "0"),
            ("rate-limit-window", "0s"),
            ("rate-limit-redis-fallback-hold", "a while"),
        ])
        .expect_err("invalid");
        let vars: Vec<_> = e.problems.iter().map(|p| p.variable).collect();
        assert_eq!(
            vars,
            [
                "RATE_LIMIT_WINDOW",
                "RATE_LIMIT_REDIS_URL",
                "MAX_UPSTREAM_CONCURRENCY",
                "RATE_LIMIT_REDIS_FALLBACK_HOLD"
            ]
        );
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = args(&[("zai-api-key", "k"), ("rate-limit-redis-url", "rediss://h")])
            .expect_err("no TLS");
        assert!(e.to_string().contains("TLS"), "{e}");
    }

    #[test]
    fn target_url_loses_trailing_slash() {
        let c = args(&[
            ("zai-api-key", "k"),
            ("zai-target-url", "http://127.0.0.1:9/"),
        ])
        .expect("valid");
        assert_eq!(c.target_url, "http://127.0.0.1:9");
    }
}
