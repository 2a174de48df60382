//! The crate's one error type.
//!
//! Platform and signal implementations outside this crate (the e2e harness) build these
//! variants too, through the small constructors below.

use std::path::PathBuf;

/// Everything that can go wrong in the promoter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file or a command-line value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A configuration file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The platform (Kubernetes, local processes, Docker) refused or failed an operation.
    #[error("platform {platform}: {operation} failed: {message}")]
    Platform {
        /// Which platform ("kube", "local", "docker", …).
        platform: String,
        /// What was attempted ("list pods", "set image", …).
        operation: String,
        /// Why it failed.
        message: String,
    },
    /// A pod's HTTP endpoints cannot be reached at all (pod proxy turned off, or the API
    /// server forbids `pods/proxy`): what needs them is not evaluated, never guessed.
    #[error("pod {pod} cannot be reached: {reason}")]
    PodUnreachable {
        /// The pod.
        pod: String,
        /// Why (`--no-pod-proxy`, 403 Forbidden, …).
        reason: String,
    },
    /// A signal source could not answer (HTTP error, timeout, malformed response).
    #[error("signals: {0}")]
    Signals(String),
    /// Finalisation (VERSION file, git) refused or failed.
    #[error("finalisation: {0}")]
    Finalise(String),
    /// Writing a report failed.
    #[error("cannot write report {path}: {source}")]
    Report {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A platform failure: `Error::platform("docker", "set image", "no such container")`.
    pub fn platform(
        platform: impl Into<String>,
        operation: impl Into<String>,
        message: impl std::fmt::Display,
    ) -> Self {
        Error::Platform {
            platform: platform.into(),
            operation: operation.into(),
            message: message.to_string(),
        }
    }

    /// A signal-source failure.
    pub fn signals(message: impl std::fmt::Display) -> Self {
        Error::Signals(message.to_string())
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
