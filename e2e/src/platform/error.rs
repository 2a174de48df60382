//! Errors of the local and Docker platforms.

use zai_promoter::Variant;

/// What can go wrong running deployments.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
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
}

impl PlatformError {
    /// Converts into the promoter's error type for the `Platform` trait.
    pub fn into_promoter(self, platform: &str, action: &str) -> zai_promoter::Error {
        zai_promoter::Error::platform(platform, action.to_owned(), self.to_string())
    }
}
