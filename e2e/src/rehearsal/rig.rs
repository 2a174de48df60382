//! What the rehearsal driver needs from the environment a scenario runs in, so that one driver
//! ([`super::driver`]) runs on every platform: the simulated cluster (`local`, `docker`:
//! [`super::stack::Stack`]) and a real one (`kind`: [`super::kind::KindStack`]).
//!
//! Both give the promoter's own `KubePlatform` over a kubeconfig; what differs is where the
//! fakes and the workers run and how the driver reaches them — in process on the simulated
//! cluster, inside the cluster (read through the API server's pod proxy) on kind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;
use zai_promoter::Config;
use zai_promoter::platform::kube::KubePlatform;

use crate::Error;
use crate::fake::Faults;
use crate::platform::{Cluster, PlatformEvent};
use crate::service::Route;
use crate::workers::{self, LiveStats, Report, Snapshot, WorkersConfig, WorkersHandle};

/// The environment of one running scenario.
#[async_trait]
pub trait Rig: Send + Sync {
    /// The promoter's Kubernetes platform (also what the driver reads pods and images with).
    fn platform(&self) -> Arc<KubePlatform>;
    /// The kubeconfig the promoter uses.
    fn kubeconfig(&self) -> &Path;
    /// The namespace of the scenario's Deployments.
    fn namespace(&self) -> &str;
    /// The git work tree with `VERSION`, for the promoter's finalisation.
    fn repo_path(&self) -> PathBuf;
    /// Changes made to the Deployments (production's image, the canary's replicas).
    fn events(&self) -> broadcast::Receiver<PlatformEvent>;
    /// The base URL (no path) workers use for a service.
    fn service_url(&self, route: Route) -> String;
    /// Replaces the faults of the old and the new version's fake upstream.
    async fn set_faults(&self, old: Faults, new: Faults) -> Result<(), Error>;
    /// Starts the workers with `config`.
    async fn spawn_workers(&self, config: WorkersConfig) -> Result<Workers, Error>;
    /// The simulated cluster, when there is one (the rehearsal's Prometheus discovers its
    /// pods); `None` on a real cluster.
    fn simulated(&self) -> Option<Arc<Cluster>>;
    /// Adjusts the promoter's (compressed) configuration to the platform's real timing.
    fn adjust(&self, _config: &mut Config) {}
}

/// Per-target counts while the workers run.
pub trait LiveTargets: Send + Sync {
    /// The counts of the target labelled `label` (None before any is known).
    fn target(&self, label: &str) -> Option<Snapshot>;
}

impl LiveTargets for LiveStats {
    fn target(&self, label: &str) -> Option<Snapshot> {
        LiveStats::target(self, label)
    }
}

/// Workers in the caller's process, or elsewhere behind a status endpoint.
pub enum Workers {
    /// In this process.
    Local(WorkersHandle),
    /// Somewhere the driver reads through a [`RemoteWorkers`] implementation.
    Remote(Box<dyn RemoteWorkers>),
}

/// Workers the driver does not run itself.
#[async_trait]
pub trait RemoteWorkers: Send + Sync {
    /// Their live counts (refreshed in the background).
    fn live(&self) -> Arc<dyn LiveTargets>;
    /// Stops them (requests in flight finish) and returns the final report.
    async fn finish(self: Box<Self>) -> Report;
}

impl Workers {
    /// Starts workers in this process.
    pub fn local(config: WorkersConfig) -> Result<Workers, Error> {
        let cancel = tokio_util::sync::CancellationToken::new();
        workers::spawn(config, cancel)
            .map(Workers::Local)
            .map_err(|e| Error::Setup(e.to_string()))
    }

    /// The live counts.
    pub fn live(&self) -> Arc<dyn LiveTargets> {
        match self {
            Workers::Local(handle) => handle.live(),
            Workers::Remote(remote) => remote.live(),
        }
    }

    /// Stops sending and waits for the final report.
    pub async fn finish(self) -> Report {
        match self {
            Workers::Local(handle) => {
                handle.stop();
                handle.join().await
            }
            Workers::Remote(remote) => remote.finish().await,
        }
    }
}
