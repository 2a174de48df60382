//! The simulated cluster's state: the namespace's Deployments and Services as Kubernetes
//! objects (k8s-openapi types), each Deployment driven by its [`controller`](super::controller)
//! on one container runtime. The API server ([`super::apiserver`]) is its only door: every
//! read and change — the promoter's, the rehearsal driver's, kubectl's — goes through it.
//!
//! Images are resolved through a version catalog: the tag of `zai-proxy:1.2.1` names a
//! [`VersionSpec`] (binary or image + environment). Changes of a Deployment's image or replica
//! count are also announced on a broadcast channel so a rehearsal can switch its fake
//! upstream's faults per phase.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Endpoints as K8sEndpoints, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::broadcast;
use zai_promoter::platform::image_tag;
use zai_promoter::{LogLine, Variant};

use super::apiserver::objects::{self, Selector};
use super::apiserver::status::ApiError;
use super::controller::{self, PodSnapshot};
use super::runtime::Runtime;
use super::spec::{DeploymentSpec, PodTemplate, Timing, VersionSpec};
use crate::Error;
use crate::service::Endpoints;

/// A change made through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformEvent {
    /// A Deployment's pod template got another image (`set image`, `rollout undo`).
    SetImage {
        /// Which deployment.
        variant: Variant,
        /// The new image.
        image: String,
    },
    /// A Deployment's replica count changed.
    Scale {
        /// Which deployment.
        variant: Variant,
        /// New replica count.
        replicas: u32,
    },
}

struct DeploymentEntry {
    /// Metadata and spec as stored (status is computed on read).
    object: Deployment,
    variant: Variant,
    controller: Arc<controller::Deployment>,
    /// Resource version of the last metadata/spec write.
    spec_version: u64,
}

#[derive(Default)]
struct Objects {
    deployments: BTreeMap<String, DeploymentEntry>,
    services: BTreeMap<String, Service>,
}

/// One namespace of a simulated cluster on one runtime.
pub struct Cluster {
    runtime: Arc<dyn Runtime>,
    namespace: String,
    catalog: Mutex<BTreeMap<String, VersionSpec>>,
    objects: Mutex<Objects>,
    events: broadcast::Sender<PlatformEvent>,
    endpoints: Arc<Endpoints>,
    timing: Timing,
    versions: Arc<AtomicU64>,
    uids: AtomicU64,
}

impl Cluster {
    /// An empty namespace; Deployments come through the API.
    pub fn new(
        runtime: Arc<dyn Runtime>,
        namespace: &str,
        catalog: Vec<VersionSpec>,
        endpoints: Arc<Endpoints>,
        timing: Timing,
    ) -> Self {
        let catalog = catalog.into_iter().map(|v| (v.tag.clone(), v)).collect();
        let (events, _) = broadcast::channel(64);
        Cluster {
            runtime,
            namespace: namespace.to_owned(),
            catalog: Mutex::new(catalog),
            objects: Mutex::new(Objects::default()),
            events,
            endpoints,
            timing,
            versions: Arc::new(AtomicU64::new(1)),
            uids: AtomicU64::new(1),
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `local` or `docker`.
    pub fn runtime_name(&self) -> &'static str {
        self.runtime.name()
    }

    /// Subscribes to changes made through the API.
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

    /// The current resource version of the namespace (lists carry it).
    pub fn resource_version(&self) -> u64 {
        self.versions.load(Ordering::SeqCst)
    }

    fn next_version(&self) -> u64 {
        self.versions.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn next_uid(&self) -> String {
        let n = self.uids.fetch_add(1, Ordering::SeqCst);
        format!("5e1f0000-0000-4000-8000-{n:012x}")
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Terminates every pod (grace `grace`) and stops the controllers.
    pub async fn shutdown(&self, grace: Duration) {
        let controllers: Vec<Arc<controller::Deployment>> = self
            .objects()
            .deployments
            .values()
            .map(|d| Arc::clone(&d.controller))
            .collect();
        futures::future::join_all(controllers.iter().map(|d| d.shutdown(grace))).await;
    }

    /// `127.0.0.1:PORT` of every live pod with its name (Prometheus' pod discovery).
    pub fn pod_addresses(&self) -> Vec<(String, String)> {
        let controllers = self.controllers();
        controllers
            .iter()
            .flat_map(|(_, _, c)| c.pods())
            .map(|p| (p.name, format!("127.0.0.1:{}", p.port)))
            .collect()
    }

    fn controllers(&self) -> Vec<(Deployment, u64, Arc<controller::Deployment>)> {
        self.objects()
            .deployments
            .values()
            .map(|d| (d.object.clone(), d.spec_version, Arc::clone(&d.controller)))
            .collect()
    }

    /// Resolves a pod template through the catalog.
    fn resolve(
        &self,
        name: &str,
        template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    ) -> Result<PodTemplate, ApiError> {
        let image = objects::container_image(template).ok_or_else(|| {
            ApiError::invalid(
                "deployments",
                name,
                "spec.template.spec.containers[0].image",
                "Required value",
            )
        })?;
        let tag = image_tag(&image).unwrap_or(&image).to_owned();
        let catalog = self.catalog.lock().unwrap_or_else(PoisonError::into_inner);
        let spec = catalog.get(&tag).cloned().ok_or_else(|| {
            ApiError::invalid(
                "deployments",
                name,
                "spec.template.spec.containers[0].image",
                &format!(
                    "{image:?}: tag {tag:?} is not in the rehearsal's version catalog \
                     (a real cluster would accept it and fail to pull the image)"
                ),
            )
        })?;
        let version = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            .and_then(|l| l.get("version").cloned())
            .unwrap_or_else(|| tag.clone());
        Ok(PodTemplate {
            image,
            version,
            spec,
            manifest: objects::canonical_template(template),
        })
    }

    /// `POST deployments`.
    pub fn create_deployment(&self, mut d: Deployment) -> Result<Deployment, ApiError> {
        let name = d.metadata.name.clone().unwrap_or_default();
        let checked = objects::validate_deployment(&d, None)?;
        let template = self.resolve(&name, &checked.template)?;
        let mut objects = self.objects();
        if objects.deployments.contains_key(&name) {
            return Err(ApiError::already_exists("deployments", "apps", &name));
        }
        let version = self.next_version();
        d.metadata.namespace = Some(self.namespace.clone());
        d.metadata.uid = Some(self.next_uid());
        d.metadata.generation = Some(1);
        d.metadata.creation_timestamp = Some(now_time());
        d.metadata.resource_version = None;
        d.status = None;
        if let Some(spec) = d.spec.as_mut() {
            spec.replicas = Some(checked.replicas as i32);
        }
        let controller = controller::Deployment::start(
            DeploymentSpec {
                variant: checked.variant,
                name: name.clone(),
                replicas: checked.replicas,
                template,
                strategy: checked.strategy,
            },
            Arc::clone(&self.runtime),
            Arc::clone(&self.endpoints),
            self.timing,
            Arc::clone(&self.versions),
        );
        objects.deployments.insert(
            name.clone(),
            DeploymentEntry {
                object: d,
                variant: checked.variant,
                controller,
                spec_version: version,
            },
        );
        let entry = &objects.deployments[&name];
        Ok(self.deployment_view(entry))
    }

    fn deployment_view(&self, entry: &DeploymentEntry) -> Deployment {
        objects::deployment_with_status(
            &entry.object,
            entry.spec_version,
            entry.controller.observed(),
            entry.controller.revision_number(),
        )
    }

    /// `GET deployments/NAME`.
    pub fn deployment(&self, name: &str) -> Result<Deployment, ApiError> {
        let objects = self.objects();
        let entry = objects
            .deployments
            .get(name)
            .ok_or_else(|| ApiError::not_found("deployments", "apps", name))?;
        Ok(self.deployment_view(entry))
    }

    /// `GET deployments` (label and field selectors).
    pub fn deployments(&self, selector: &Selector) -> Vec<Deployment> {
        let objects = self.objects();
        objects
            .deployments
            .values()
            .map(|e| self.deployment_view(e))
            .filter(|d| selector.matches(&d.metadata))
            .collect()
    }

    /// Replaces a Deployment's metadata and spec (`PUT`, and every patch after it was
    /// applied): validated, `resourceVersion` checked, generation raised when the spec
    /// changed, the controller told.
    pub fn replace_deployment(
        &self,
        name: &str,
        mut new: Deployment,
    ) -> Result<Deployment, ApiError> {
        let mut events = Vec::new();
        let view = {
            let mut objects = self.objects();
            let entry = objects
                .deployments
                .get_mut(name)
                .ok_or_else(|| ApiError::not_found("deployments", "apps", name))?;
            let current = objects::deployment_with_status(
                &entry.object,
                entry.spec_version,
                entry.controller.observed(),
                entry.controller.revision_number(),
            );
            if let Some(rv) = new.metadata.resource_version.as_deref()
                && Some(rv) != current.metadata.resource_version.as_deref()
            {
                return Err(ApiError::conflict("deployments", "apps", name));
            }
            if new.metadata.name.as_deref() != Some(name) {
                return Err(ApiError::bad_request(&format!(
                    "the name of the object ({:?}) does not match the name on the URL ({name:?})",
                    new.metadata.name.as_deref().unwrap_or_default()
                )));
            }
            let checked = objects::validate_deployment(&new, Some(&entry.object))?;
            let template = self.resolve(name, &checked.template)?;
            let old_spec = entry.object.spec.clone().unwrap_or_default();
            if let Some(spec) = new.spec.as_mut() {
                spec.replicas = Some(checked.replicas as i32);
            }
            let new_spec = new.spec.clone().unwrap_or_default();
            let spec_changed = objects::spec_json(&old_spec) != objects::spec_json(&new_spec);
            let generation =
                entry.object.metadata.generation.unwrap_or(1) + i64::from(spec_changed);
            // Server-owned metadata stays the server's.
            let old_meta = &entry.object.metadata;
            new.metadata.namespace = old_meta.namespace.clone();
            new.metadata.uid = old_meta.uid.clone();
            new.metadata.creation_timestamp = old_meta.creation_timestamp.clone();
            new.metadata.generation = Some(generation);
            new.metadata.resource_version = None;
            if let Some(a) = new.metadata.annotations.as_mut() {
                a.remove(objects::REVISION);
            }
            new.status = None;
            let old_image = objects::container_image(&old_spec.template);
            let old_replicas = old_spec.replicas.unwrap_or(1);
            entry.object = new;
            entry.spec_version = self.next_version();
            if spec_changed {
                let image = template.image.clone();
                entry
                    .controller
                    .update(template, checked.replicas, checked.strategy, generation);
                if old_image.as_deref() != Some(image.as_str()) {
                    events.push(PlatformEvent::SetImage {
                        variant: entry.variant,
                        image,
                    });
                }
                if old_replicas != checked.replicas as i32 {
                    events.push(PlatformEvent::Scale {
                        variant: entry.variant,
                        replicas: checked.replicas,
                    });
                }
            }
            self.deployment_view(entry)
        };
        for e in events {
            let _ = self.events.send(e);
        }
        Ok(view)
    }

    /// `GET replicasets` (label selector).
    pub fn replica_sets(&self, selector: &Selector) -> Vec<ReplicaSet> {
        self.controllers()
            .iter()
            .flat_map(|(d, _, c)| {
                c.revisions()
                    .into_iter()
                    .map(|r| objects::replica_set(d, &r, c.replicas(), self.resource_version()))
                    .collect::<Vec<_>>()
            })
            .filter(|rs| selector.matches(&rs.metadata))
            .collect()
    }

    fn pod_snapshots(&self) -> Vec<(Deployment, PodSnapshot, u64)> {
        self.controllers()
            .into_iter()
            .flat_map(|(d, _, c)| {
                let rv = c.observed().resource_version;
                c.pods()
                    .into_iter()
                    .map(|p| (d.clone(), p, rv))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// `GET pods` (label and field selectors).
    pub fn pods(&self, selector: &Selector) -> Vec<Pod> {
        self.pod_snapshots()
            .iter()
            .map(|(d, p, rv)| objects::pod(d, p, *rv))
            .filter(|p| selector.matches(&p.metadata))
            .collect()
    }

    /// `GET pods/NAME`.
    pub fn pod(&self, name: &str) -> Result<Pod, ApiError> {
        self.pod_snapshots()
            .iter()
            .find(|(_, p, _)| p.name == name)
            .map(|(d, p, rv)| objects::pod(d, p, *rv))
            .ok_or_else(|| ApiError::not_found("pods", "", name))
    }

    /// Where a pod's container listens.
    pub fn pod_port(&self, name: &str) -> Result<u16, ApiError> {
        self.pod_snapshots()
            .iter()
            .find(|(_, p, _)| p.name == name)
            .map(|(_, p, _)| p.port)
            .ok_or_else(|| ApiError::not_found("pods", "", name))
    }

    /// A pod's log lines since `since`; a container that never started has none to give.
    pub async fn pod_logs(
        &self,
        name: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<LogLine>, ApiError> {
        let found = self.controllers().into_iter().find_map(|(_, _, c)| {
            c.pods()
                .into_iter()
                .find(|p| p.name == name)
                .map(|p| (c, p))
        });
        let Some((controller, pod)) = found else {
            return Err(ApiError::not_found("pods", "", name));
        };
        if pod.status.started_at.is_none() {
            let container = objects::container_name(&pod.template);
            let reason = pod
                .status
                .waiting_reason
                .clone()
                .unwrap_or_else(|| "ContainerCreating".to_owned());
            return Err(ApiError::bad_request(&format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
            )));
        }
        controller
            .pod_logs(name, since)
            .await
            .ok_or_else(|| ApiError::not_found("pods", "", name))
    }

    /// `POST services`.
    pub fn create_service(&self, mut s: Service) -> Result<Service, ApiError> {
        let name = s.metadata.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(ApiError::invalid(
                "services",
                &name,
                "metadata.name",
                "Required value: name or generateName is required",
            ));
        }
        let mut objects = self.objects();
        if objects.services.contains_key(&name) {
            return Err(ApiError::already_exists("services", "", &name));
        }
        s.metadata.namespace = Some(self.namespace.clone());
        s.metadata.uid = Some(self.next_uid());
        s.metadata.creation_timestamp = Some(now_time());
        s.metadata.resource_version = Some(self.next_version().to_string());
        objects.services.insert(name, s.clone());
        Ok(s)
    }

    /// `GET services/NAME`.
    pub fn service(&self, name: &str) -> Result<Service, ApiError> {
        self.objects()
            .services
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::not_found("services", "", name))
    }

    /// `GET services`.
    pub fn services(&self, selector: &Selector) -> Vec<Service> {
        self.objects()
            .services
            .values()
            .filter(|s| selector.matches(&s.metadata))
            .cloned()
            .collect()
    }

    /// `GET endpoints/NAME`: the ready pods the Service's selector picks.
    pub fn service_endpoints(&self, name: &str) -> Result<K8sEndpoints, ApiError> {
        let service = self
            .service(name)
            .map_err(|_| ApiError::not_found("endpoints", "", name))?;
        let selector = service
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let ready: Vec<(String, u16)> = self
            .pod_snapshots()
            .iter()
            .filter(|(_, p, _)| p.ready)
            .filter(|(d, p, _)| {
                let labels = objects::pod_labels(d, p);
                selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .map(|(_, p, _)| (p.name.clone(), p.port))
            .collect();
        Ok(objects::endpoints(
            &service,
            &ready,
            self.resource_version(),
        ))
    }
}

fn now_time() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error::Setup(e.to_string())
    }
}
