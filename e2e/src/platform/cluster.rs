//! A two-deployment "cluster" (production `zai-proxy` + canary `zai-proxy-test`) on one
//! runtime, implementing the promoter's [`Platform`] trait.
//!
//! Images are resolved through a version catalog: the tag of `zai-proxy:1.2.1` names a
//! [`VersionSpec`] (binary or image + environment). Every change is also announced on a
//! broadcast channel so a rehearsal can switch its fake upstream's faults per phase.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use zai_promoter::platform::image_tag;
use zai_promoter::{LogLine, Platform, PodInfo, RolloutStatus, Variant};

use super::controller::Deployment;
use super::runtime::Runtime;
use super::spec::{
    DeploymentSpec, PodTemplate, RollingUpdate, Timing, VersionSpec, deployment_name,
};
use crate::Error;
use crate::service::Endpoints;

/// A change made through the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformEvent {
    /// `set image` on a deployment.
    SetImage {
        /// Which deployment.
        variant: Variant,
        /// The new image.
        image: String,
    },
    /// `rollout undo`.
    Undo {
        /// Which deployment.
        variant: Variant,
    },
    /// `scale`.
    Scale {
        /// Which deployment.
        variant: Variant,
        /// New replica count.
        replicas: u32,
    },
}

/// The initial shape of one deployment.
#[derive(Debug, Clone)]
pub struct InitialDeployment {
    /// Which one.
    pub variant: Variant,
    /// Its image, e.g. `zai-proxy:1.2.0` (its tag must be in the catalog).
    pub image: String,
    /// Replicas.
    pub replicas: u32,
}

/// Production + canary deployments on one runtime.
pub struct Cluster {
    runtime_name: &'static str,
    catalog: Mutex<BTreeMap<String, VersionSpec>>,
    deployments: BTreeMap<Variant, Arc<Deployment>>,
    events: broadcast::Sender<PlatformEvent>,
    endpoints: Arc<Endpoints>,
}

impl Cluster {
    /// Creates both deployments and starts their controllers.
    pub fn start(
        runtime: Arc<dyn Runtime>,
        catalog: Vec<VersionSpec>,
        initial: &[InitialDeployment],
        endpoints: Arc<Endpoints>,
        timing: Timing,
    ) -> Result<Self, Error> {
        let catalog: BTreeMap<String, VersionSpec> =
            catalog.into_iter().map(|v| (v.tag.clone(), v)).collect();
        let mut deployments = BTreeMap::new();
        for d in initial {
            let template = resolve(&catalog, &d.image)?;
            let spec = DeploymentSpec {
                variant: d.variant,
                name: deployment_name(d.variant).to_owned(),
                replicas: d.replicas,
                template,
                strategy: RollingUpdate::default(),
            };
            let deployment =
                Deployment::start(spec, Arc::clone(&runtime), Arc::clone(&endpoints), timing);
            deployments.insert(d.variant, deployment);
        }
        let (events, _) = broadcast::channel(64);
        Ok(Cluster {
            runtime_name: runtime.name(),
            catalog: Mutex::new(catalog),
            deployments,
            events,
            endpoints,
        })
    }

    /// Subscribes to changes made through the platform.
    pub fn subscribe(&self) -> broadcast::Receiver<PlatformEvent> {
        self.events.subscribe()
    }

    /// The endpoints registry the services read.
    pub fn endpoints(&self) -> Arc<Endpoints> {
        Arc::clone(&self.endpoints)
    }

    /// Adds or replaces a version in the catalog.
    pub fn add_version(&self, version: VersionSpec) {
        let mut catalog = self.catalog.lock().unwrap_or_else(PoisonError::into_inner);
        catalog.insert(version.tag.clone(), version);
    }

    /// Waits until both deployments have rolled out and every pod is ready, or `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let done = self.deployments.values().all(|d| {
                let s = d.rollout_status();
                s.complete && s.ready == s.desired
            });
            if done {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let detail: Vec<String> = self
                    .deployments
                    .values()
                    .map(|d| d.rollout_status().message)
                    .collect();
                return Err(Error::Start {
                    pod: "initial deployments".to_owned(),
                    message: format!("not ready after {timeout:?}: {}", detail.join("; ")),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Terminates every pod (grace `grace`) and stops the controllers.
    pub async fn shutdown(&self, grace: Duration) {
        let stops = self.deployments.values().map(|d| d.shutdown(grace));
        futures::future::join_all(stops).await;
    }

    fn deployment(&self, variant: Variant) -> Result<&Arc<Deployment>, Error> {
        self.deployments
            .get(&variant)
            .ok_or(Error::NoDeployment(variant))
    }

    fn err(&self, action: &str) -> impl Fn(Error) -> zai_promoter::Error + '_ {
        let action = action.to_owned();
        move |e| e.into_promoter(self.runtime_name, &action)
    }
}

/// Looks an image's tag up in the catalog.
fn resolve(catalog: &BTreeMap<String, VersionSpec>, image: &str) -> Result<PodTemplate, Error> {
    let tag = image_tag(image).unwrap_or(image).to_owned();
    let spec = catalog
        .get(&tag)
        .cloned()
        .ok_or_else(|| Error::UnknownVersion {
            image: image.to_owned(),
            tag: tag.clone(),
        })?;
    Ok(PodTemplate {
        image: image.to_owned(),
        version: tag,
        spec,
    })
}

#[async_trait]
impl Platform for Cluster {
    fn name(&self) -> &str {
        self.runtime_name
    }

    fn location(&self) -> String {
        match self.runtime_name {
            "docker" => "docker containers (host network) on 127.0.0.1".to_owned(),
            other => format!("{other} processes on 127.0.0.1"),
        }
    }

    async fn list_pods(&self, variant: Variant) -> zai_promoter::Result<Vec<PodInfo>> {
        Ok(self
            .deployment(variant)
            .map_err(self.err("list pods"))?
            .pods())
    }

    async fn image(&self, variant: Variant) -> zai_promoter::Result<String> {
        let d = self.deployment(variant).map_err(self.err("get image"))?;
        Ok(d.template().map(|t| t.image).unwrap_or_default())
    }

    async fn set_image(
        &self,
        variant: Variant,
        image: &str,
        version: &str,
    ) -> zai_promoter::Result<()> {
        let d = self.deployment(variant).map_err(self.err("set image"))?;
        let mut template = {
            let catalog = self.catalog.lock().unwrap_or_else(PoisonError::into_inner);
            resolve(&catalog, image).map_err(self.err("set image"))?
        };
        template.version = version.to_owned();
        d.set_template(template);
        let _ = self.events.send(PlatformEvent::SetImage {
            variant,
            image: image.to_owned(),
        });
        Ok(())
    }

    async fn rollout_status(&self, variant: Variant) -> zai_promoter::Result<RolloutStatus> {
        Ok(self
            .deployment(variant)
            .map_err(self.err("rollout status"))?
            .rollout_status())
    }

    async fn undo(&self, variant: Variant) -> zai_promoter::Result<()> {
        let d = self.deployment(variant).map_err(self.err("rollout undo"))?;
        d.undo().map_err(self.err("rollout undo"))?;
        let _ = self.events.send(PlatformEvent::Undo { variant });
        Ok(())
    }

    async fn scale(&self, variant: Variant, replicas: u32) -> zai_promoter::Result<()> {
        let d = self.deployment(variant).map_err(self.err("scale"))?;
        d.scale(replicas);
        let _ = self.events.send(PlatformEvent::Scale { variant, replicas });
        Ok(())
    }

    async fn replicas(&self, variant: Variant) -> zai_promoter::Result<u32> {
        Ok(self
            .deployment(variant)
            .map_err(self.err("get replicas"))?
            .replicas())
    }

    async fn logs_since(
        &self,
        variant: Variant,
        since: DateTime<Utc>,
    ) -> zai_promoter::Result<Vec<LogLine>> {
        let d = self.deployment(variant).map_err(self.err("logs"))?;
        Ok(d.logs_since(since).await)
    }
}
