//! The harness's error type (fake upstream and workers): one `thiserror` enum.

use std::io;

/// Everything that can go wrong starting or driving the fake upstream or the workers.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The fake may only listen on a loopback address.
    #[error("listen address {0} is not a loopback address (only 127.0.0.0/8 or ::1 are allowed)")]
    NotLoopback(std::net::SocketAddr),
    /// Binding or accepting on a socket failed.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// A fault configuration is out of range.
    #[error("invalid faults: {0}")]
    InvalidFaults(String),
    /// A workers configuration is unusable.
    #[error("invalid workers config: {0}")]
    InvalidWorkers(String),
    /// A JSON document could not be parsed.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
    /// The zai-proxy binary could not be located.
    #[error(
        "zai-proxy binary not found at {0} (build it with `cargo build -p zai-proxy` or set ZAI_PROXY_BIN)"
    )]
    ProxyBinMissing(std::path::PathBuf),
}
