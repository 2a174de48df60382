//! The local platform: every pod is a child process of the real `zai-proxy` binary on a free
//! loopback port. No Docker, nothing to install.

pub mod binary;
pub mod process;

use std::sync::Arc;

use async_trait::async_trait;

use super::runtime::{Container, Launch, Runtime};
use super::spec::{Artifact, Backoff};
use crate::Error;

/// Runs containers as supervised child processes.
#[derive(Debug, Clone)]
pub struct LocalRuntime {
    backoff: Backoff,
}

impl LocalRuntime {
    /// A runtime restarting exited processes with `backoff`.
    pub fn new(backoff: Backoff) -> Self {
        LocalRuntime { backoff }
    }
}

#[async_trait]
impl Runtime for LocalRuntime {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn start(&self, launch: Launch) -> Result<Arc<dyn Container>, Error> {
        let Artifact::Binary(binary) = launch.artifact.clone() else {
            return Err(Error::Start {
                pod: launch.pod,
                message: "the local platform runs binaries, not images".to_owned(),
            });
        };
        Ok(Arc::new(process::ProcessContainer::start(
            binary,
            launch,
            self.backoff,
        )))
    }
}
