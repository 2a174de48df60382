//! The crate's one error enum.

/// Errors of the zai-proxy library (start-up and serving; per-request failures become HTTP
/// responses, see [`crate::wire`] and [`crate::forward::upstream::UpstreamError`]).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
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
}

impl From<prometheus::Error> for ProxyError {
    fn from(e: prometheus::Error) -> Self {
        Self::Metrics(e.to_string())
    }
}
