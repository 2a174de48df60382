//! The crate's one error enum, [`ProxyError`].
//!
//! Not errors in this sense: the answers the proxy makes itself ([`crate::wire::LocalFailure`],
//! HTTP responses in the client's wire format) and what a Z.AI 429 body says
//! ([`crate::zai_codes`], a classification of upstream's business codes).

use std::time::Duration;

/// Errors of the zai-proxy library.
///
/// Start-up and serving errors leave the library; the per-request ones (an upstream attempt,
/// the retries, relaying a body) stay inside the forward handler, which answers the client
/// with a [`crate::wire::LocalFailure`], or, once the answer has started, ends the body.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    // ---- start-up and serving
    /// The configuration was invalid (every problem listed).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A metric family could not be registered or encoded.
    #[error("metrics: {0}")]
    Metrics(String),
    /// Binding, accepting or serving failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS set-up for the upstream client failed.
    #[error("tls: {0}")]
    Tls(String),
    /// A background task panicked or was cancelled.
    #[error("task: {0}")]
    Task(String),
    /// A call of the shared budget to Redis failed or timed out (handled by falling back).
    #[error("redis: {0}")]
    Redis(String),

    // ---- one upstream attempt (`forward::upstream::send`)
    /// Connecting or exchanging with the upstream failed (DNS, refused, TLS, reset...).
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    /// No response head within `UPSTREAM_TIMEOUT`.
    #[error("upstream did not answer within {0:?}")]
    UpstreamTimeout(Duration),
    /// The upstream request could not be built (bad URL after appending the path).
    #[error("could not build the upstream request: {0}")]
    UpstreamRequest(String),

    // ---- the retries (`forward::retry`): the last attempt's answer was unusable
    /// The last 2xx non-streaming body was empty or not valid JSON.
    #[error("Upstream returned empty or malformed response after retries")]
    UpstreamMalformed,
    /// The last 2xx stream ended before its first chunk.
    #[error("Upstream returned empty streaming response after retries")]
    UpstreamEmptyStream,

    // ---- relaying a response body (`relay::RelayBody`, surfaced to the server)
    /// No data from upstream for longer than the idle timeout.
    #[error("upstream body idle for more than {0:?}")]
    RelayIdle(Duration),
    /// The upstream body failed.
    #[error("upstream body failed: {0}")]
    RelayUpstream(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ProxyError {
    /// One upstream attempt failed at the transport level (no response at all).
    pub fn is_upstream_transport(&self) -> bool {
        matches!(
            self,
            Self::UpstreamUnreachable(_) | Self::UpstreamTimeout(_) | Self::UpstreamRequest(_)
        )
    }
}

impl From<prometheus::Error> for ProxyError {
    fn from(e: prometheus::Error) -> Self {
        Self::Metrics(e.to_string())
    }
}
