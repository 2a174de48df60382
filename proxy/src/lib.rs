//! zai-proxy: a reverse proxy in front of Z.AI's GLM API.
//!
//! A Rust reimplementation of the Go zai-proxy's request path: every path except the proxy's
//! own routes (`/health`, `/readyz`, `/metrics`, `/admin/*`) is forwarded to
//! `ZAI_TARGET_URL` + path + query with the proxy's credential; bodies and streams are relayed
//! byte for byte; Prometheus metrics keep the original's names, labels and buckets.
//!
//! Run it in-process (tests, benches):
//!
//! ```no_run
//! # async fn demo() -> Result<(), zai_proxy::ProxyError> {
//! let config = zai_proxy::Config::with_defaults("http://127.0.0.1:9000", "fake-key");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let proxy = zai_proxy::start(config, listener).await?;
//! println!("proxy at {}", proxy.url());
//! proxy.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod capacity;
pub mod client;
pub mod config;
pub mod error;
pub mod forward;
pub mod headers;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod quota;
pub mod ratelimit;
pub mod relay;
pub mod routes;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod streams;
pub mod tokens;
pub mod wire;
pub mod zai_codes;

pub use config::{ApiKey, Config};
pub use error::ProxyError;
pub use metrics::Metrics;
pub use server::{ProxyHandle, app, run, serve, start, wait_ready};
pub use state::AppState;
