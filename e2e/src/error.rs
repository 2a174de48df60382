//! The crate's one error type: starting or driving the fake upstream, the workers, the
//! local and Docker platforms, and the rehearsals. (A rehearsal that runs and misses its
//! expectation is a result, not an error.)

use std::io;

use zai_promoter::Variant;

/// Everything that can go wrong in the harness.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- fake upstream and workers
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
    // ---- platforms
    /// No free loopback port could be found.
    #[error("no free port on 127.0.0.1: {0}")]
    Port(#[source] std::io::Error),
    /// A container could not be started at all.
    #[error("starting {pod}: {message}")]
    Start {
        /// The pod.
        pod: String,
        /// Why.
        message: String,
    },
    /// The image tag is not in the version catalog.
    #[error("unknown image {image:?}: no version {tag:?} in the catalog")]
    UnknownVersion {
        /// The image asked for.
        image: String,
        /// Its tag.
        tag: String,
    },
    /// The deployment does not exist.
    #[error("no deployment for variant {0}")]
    NoDeployment(Variant),
    /// `rollout undo` without an earlier revision.
    #[error("deployment {0} has no previous revision")]
    NoPreviousRevision(String),
    /// The proxy binary could not be found or built.
    #[error("zai-proxy binary: {0}")]
    Binary(String),
    /// Docker failed.
    #[error("docker: {0}")]
    Docker(String),
    /// The test redis-server could not be started.
    #[error("redis-server: {0}")]
    Redis(String),
    // ---- rehearsals
    /// Setting up a rehearsal's environment failed.
    #[error("set-up: {0}")]
    Setup(String),
}

impl Error {
    /// Converts into the promoter's error type for the `Platform` trait.
    pub fn into_promoter(self, platform: &str, action: &str) -> zai_promoter::Error {
        zai_promoter::Error::platform(platform, action.to_owned(), self.to_string())
    }
}
