//! `AppState`: everything a request needs, built once and shared as `Arc<AppState>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio_util::sync::CancellationToken;

use crate::capacity::Capacity;
use crate::client::{self, UpstreamClient};
use crate::config::{ApiKey, Config, ConfigError, Problem};
use crate::error::ProxyError;
use crate::headers::CredentialValues;
use crate::logging::Throttle;
use crate::metrics::Metrics;
use crate::quota::QuotaStatus;
use crate::ratelimit::Limiter;
use crate::routes;
use crate::streams::StreamHot;

/// Shortest interval between two "upstream rejected the credential" warnings.
pub const AUTH_WARNING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Label value for models that are not in `KNOWN_MODELS`.
pub const OTHER_MODEL: &str = "other";

/// A request's bounded `model` label value, with its slot (a typed index into the label
/// values: `KNOWN_MODELS` in order, then `other`, then `TOKENIZER_MODEL`), so per-model
/// series can be resolved once per slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLabel {
    slot: usize,
    name: Arc<str>,
}

impl ModelLabel {
    /// The slot (0 ≤ slot < [`AppState::model_slots`]).
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// The label value.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The label value.
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

const STARTING: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;

/// Readiness (`/readyz`): starting → ready (start-up work done) → draining (after SIGTERM).
#[derive(Debug, Default)]
pub struct Readiness(AtomicU8);

/// Where [`Readiness`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadinessPhase {
    /// Start-up work is still running.
    Starting,
    /// Serving.
    Ready,
    /// Shutdown has begun.
    Draining,
}

impl Readiness {
    /// Start-up work is done (tokenizer loaded, state restored). No effect once draining.
    pub fn mark_ready(&self) {
        let _ = self
            .0
            .compare_exchange(STARTING, READY, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Shutdown began: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.0.store(DRAINING, Ordering::Release);
    }

    /// Ready and not draining.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire) == READY
    }

    /// Shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Acquire) == DRAINING
    }

    /// The phase (one read).
    pub fn phase(&self) -> ReadinessPhase {
        match self.0.load(Ordering::Acquire) {
            READY => ReadinessPhase::Ready,
            DRAINING => ReadinessPhase::Draining,
            _ => ReadinessPhase::Starting,
        }
    }
}

/// Shared state of one proxy.
#[derive(Debug)]
pub struct AppState {
    /// The validated configuration.
    pub config: Config,
    /// Every metric family (own registry).
    pub metrics: Arc<Metrics>,
    /// Pooled upstream client.
    pub upstream: UpstreamClient,
    /// The credential header values (sensitive).
    pub credentials: CredentialValues,
    /// Adaptive rate limiter (admission).
    pub limiter: Arc<Limiter>,
    /// MAX_WORKERS guard.
    pub capacity: Arc<Capacity>,
    /// Readiness (`/readyz`).
    pub readiness: Readiness,
    /// Last known quota state (`/health`).
    pub quota: Arc<QuotaStatus>,
    /// Cancelled when the proxy shuts down (background tasks stop).
    pub shutdown: CancellationToken,
    /// The token counter, set by start-up work once the tokenizer is loaded (before
    /// readiness); stays empty when TOKEN_COUNTING_ENABLED is off.
    pub tokens: std::sync::OnceLock<crate::tokens::Tokenizers>,
    /// The stream series (`zai_proxy_streams_total`, time to first token, output rate).
    pub streams: StreamHot,
    /// At most one "upstream rejected our credential" warning per minute.
    pub auth_warning: Throttle,
    model_labels: Vec<Arc<str>>,
    other_model: Arc<str>,
    default_model: Arc<str>,
}

impl AppState {
    /// Builds the state. Logs start-up lines 1, 2 and 4 of the original (variant, build info,
    /// max workers); the limiter logs its own lines.
    pub fn new(config: Config) -> Result<Arc<Self>, ProxyError> {
        let variant = config.variant.clone();
        if variant != "production" {
            tracing::info!("Deployment variant: {variant}");
        }
        let b = &config.build;
        tracing::info!(
            "Build info: version={}, variant={variant}, commit={}, build_time={}",
            b.version,
            b.commit,
            b.build_time
        );
        tracing::info!("Starting zai-proxy with DEPLOYMENT_VARIANT={variant}");

        let metrics = Arc::new(Metrics::new(
            &variant,
            &config.build,
            config.max_workers,
            &routes::chat_routes(),
            &config.tokenizer_model,
        )?);
        // TOKENS: the "Token counting enabled (...)" / "disabled" line belongs here (order).
        tracing::info!("Max workers: {}", config.max_workers);
        let limiter = Arc::new(Limiter::with_budget(
            &config.rate_limit,
            &config.budget,
            &config.api_key,
            Arc::clone(&metrics),
            &variant,
        )?);
        let quota = Arc::new(QuotaStatus::new(
            &config.quota,
            Arc::clone(&metrics),
            &variant,
        ));
        let capacity = Arc::new(Capacity::new(config.max_workers, &metrics, &variant));
        let credentials = credentials(&config.api_key)?;
        let model_labels = config
            .known_models
            .iter()
            .map(|m| Arc::<str>::from(m.as_str()))
            .collect();
        // TOKENIZER_MODEL is configuration (bounded), so it keeps its own label even when
        // it is not in KNOWN_MODELS.
        let default_model = Arc::from(config.tokenizer_model.as_str());
        let streams = StreamHot::new(&metrics, &variant, config.known_models.len() + 2);
        Ok(Arc::new(Self {
            streams,
            auth_warning: Throttle::new(AUTH_WARNING_INTERVAL),
            upstream: client::build_client()?,
            credentials,
            limiter,
            capacity,
            readiness: Readiness::default(),
            quota,
            shutdown: CancellationToken::new(),
            tokens: std::sync::OnceLock::new(),
            model_labels,
            other_model: Arc::from(OTHER_MODEL),
            default_model,
            metrics,
            config,
        }))
    }

    /// The token counters, when counting is on and the tokenizer is loaded.
    pub fn tokens(&self) -> Option<&crate::tokens::Tokenizers> {
        self.tokens.get()
    }

    /// The `variant` label value.
    pub fn variant(&self) -> &str {
        &self.config.variant
    }

    /// The bounded `model` label of a request's `model` field: a known model, `other`, or
    /// `TOKENIZER_MODEL` when the request names none.
    pub fn model_label(&self, requested: Option<&str>) -> ModelLabel {
        let known = self.model_labels.len();
        match requested {
            None | Some("") => ModelLabel {
                slot: known + 1,
                name: Arc::clone(&self.default_model),
            },
            Some(model) => match self.model_labels.iter().position(|k| &**k == model) {
                Some(slot) => ModelLabel {
                    slot,
                    name: Arc::clone(&self.model_labels[slot]),
                },
                None => ModelLabel {
                    slot: known,
                    name: Arc::clone(&self.other_model),
                },
            },
        }
    }

    /// Number of `model` label slots (`KNOWN_MODELS`, `other`, `TOKENIZER_MODEL`).
    pub fn model_slots(&self) -> usize {
        self.model_labels.len() + 2
    }

    /// An upstream 401/403 (each attempt; they are not retried): `zai_proxy_upstream_errors_total{error_type="auth"}`
    /// += 1, and a warning at most once per [`AUTH_WARNING_INTERVAL`]. The credential is
    /// never logged; upstream's body is relayed to the client unchanged and not read here.
    pub fn record_upstream_auth_failure(&self, status: http::StatusCode) {
        self.count_upstream_error(crate::metrics::UPSTREAM_AUTH_ERROR);
        if self.auth_warning.allow() {
            tracing::warn!(
                status = status.as_u16(),
                "Upstream rejected the proxy's credential (HTTP {}): check ZAI_API_KEY; every request fails until it is fixed (logged at most once a minute, counted in zai_proxy_upstream_errors_total{{error_type=\"auth\"}})",
                status.as_u16()
            );
        }
    }

    /// `zai_proxy_upstream_errors_total{error_type}` += 1.
    pub fn count_upstream_error(&self, error_type: &str) {
        self.metrics
            .upstream_errors_total
            .with_label_values(&[error_type, self.variant()])
            .inc();
    }
}

/// The credential header values (built once).
fn credentials(key: &ApiKey) -> Result<CredentialValues, ProxyError> {
    CredentialValues::new(key).ok_or_else(|| {
        ProxyError::Config(ConfigError {
            problems: vec![Problem {
                variable: "ZAI_API_KEY",
                reason: "contains characters not allowed in an HTTP header".to_owned(),
            }],
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_moves_forward_only() {
        let r = Readiness::default();
        assert!(!r.is_ready());
        assert_eq!(r.phase(), ReadinessPhase::Starting);
        r.mark_ready();
        assert!(r.is_ready());
        assert_eq!(r.phase(), ReadinessPhase::Ready);
        r.start_draining();
        r.mark_ready();
        assert!(r.is_draining() && !r.is_ready());
        assert_eq!(r.phase(), ReadinessPhase::Draining);
    }
}
