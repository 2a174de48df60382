//! The deployment controller: one reconcile loop per deployment, shared by every runtime.
//!
//! Each pass: read every container's state, probe readiness, plan the rolling update with
//! [`super::rollout::plan`], create/terminate pods, publish the ready pods as the service's
//! endpoints. Termination takes the pod out of the endpoints *first*, then SIGTERMs it with
//! the grace period (Kubernetes' endpoint removal racing the kubelet, minus the race).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use zai_promoter::{LogLine, PodInfo, RolloutStatus, Variant};

use super::ports::{ClosedPort, free_port};
use super::probe::{http_ready, probe_client};
use super::rollout::{PodView, Step, plan};
use super::runtime::{Container, ContainerStatus, Launch, Runtime};
use super::spec::{DeploymentSpec, PodTemplate, ProbePort, RollingUpdate, Timing, pod_env};
use crate::Error;
use crate::service::{Endpoint, Endpoints};

struct Pod {
    id: u64,
    name: String,
    revision: u64,
    template: PodTemplate,
    port: u16,
    /// Keeps a mismatched probe port reserved (closed) for the pod's lifetime.
    probe_port: Option<ClosedPort>,
    container: Arc<dyn Container>,
    status: ContainerStatus,
    ready: bool,
    /// Consecutive failed probes of a running container.
    probe_failures: u32,
}

/// Consecutive probe failures before a ready pod turns NotReady (`failureThreshold`).
const FAILURE_THRESHOLD: u32 = 3;

struct State {
    replicas: u32,
    strategy: RollingUpdate,
    /// Templates by revision id.
    revisions: BTreeMap<u64, PodTemplate>,
    /// Revision ids in activation order; the last one is current.
    history: Vec<u64>,
    pods: Vec<Pod>,
    terminating: u32,
    next_pod: u64,
    next_revision: u64,
}

impl State {
    fn current(&self) -> u64 {
        self.history.last().copied().unwrap_or(0)
    }
}

/// One deployment and its reconcile loop.
pub struct Deployment {
    variant: Variant,
    name: String,
    platform: &'static str,
    state: Mutex<State>,
    runtime: Arc<dyn Runtime>,
    endpoints: Arc<Endpoints>,
    timing: Timing,
    wake: Notify,
    stop: CancellationToken,
}

impl Deployment {
    /// Creates the deployment and starts its controller loop.
    pub fn start(
        spec: DeploymentSpec,
        runtime: Arc<dyn Runtime>,
        endpoints: Arc<Endpoints>,
        timing: Timing,
    ) -> Arc<Self> {
        let mut revisions = BTreeMap::new();
        revisions.insert(1, spec.template);
        let deployment = Arc::new(Deployment {
            variant: spec.variant,
            name: spec.name,
            platform: runtime.name(),
            state: Mutex::new(State {
                replicas: spec.replicas,
                strategy: spec.strategy,
                revisions,
                history: vec![1],
                pods: Vec::new(),
                terminating: 0,
                next_pod: 1,
                next_revision: 2,
            }),
            runtime,
            endpoints,
            timing,
            wake: Notify::new(),
            stop: CancellationToken::new(),
        });
        tokio::spawn(run(Arc::clone(&deployment)));
        deployment
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The deployment's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current pod template.
    pub fn template(&self) -> Option<PodTemplate> {
        let s = self.lock();
        s.revisions.get(&s.current()).cloned()
    }

    /// Changes the pod template; an identical template re-activates its old revision.
    pub fn set_template(&self, template: PodTemplate) {
        {
            let mut s = self.lock();
            let existing = s
                .revisions
                .iter()
                .find(|(_, t)| **t == template)
                .map(|(id, _)| *id);
            let id = match existing {
                Some(id) => id,
                None => {
                    let id = s.next_revision;
                    s.next_revision += 1;
                    s.revisions.insert(id, template);
                    id
                }
            };
            if s.current() != id {
                s.history.retain(|r| *r != id);
                s.history.push(id);
            }
        }
        self.wake.notify_one();
    }

    /// `rollout undo`: back to the revision active before the current one.
    pub fn undo(&self) -> Result<(), Error> {
        {
            let mut s = self.lock();
            if s.history.len() < 2 {
                return Err(Error::NoPreviousRevision(self.name.clone()));
            }
            let len = s.history.len();
            s.history.swap(len - 2, len - 1);
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Sets the replica count.
    pub fn scale(&self, replicas: u32) {
        self.lock().replicas = replicas;
        self.wake.notify_one();
    }

    /// Desired replicas.
    pub fn replicas(&self) -> u32 {
        self.lock().replicas
    }

    /// Live (non-terminating) pods.
    pub fn pods(&self) -> Vec<PodInfo> {
        let s = self.lock();
        s.pods
            .iter()
            .map(|p| PodInfo {
                name: p.name.clone(),
                variant: self.variant,
                phase: if p.status.running || p.status.restarts > 0 {
                    "Running".to_owned()
                } else {
                    "Pending".to_owned()
                },
                ready: p.ready,
                restarts: p.status.restarts,
                waiting_reason: p.status.waiting_reason.clone(),
                version: Some(p.template.version.clone()),
                image: p.template.image.clone(),
                base_url: Some(format!("http://127.0.0.1:{}", p.port)),
                started_at: p.status.started_at,
            })
            .collect()
    }

    /// Rollout status as `kubectl rollout status` judges it.
    pub fn rollout_status(&self) -> RolloutStatus {
        let s = self.lock();
        let current = s.current();
        let updated = count(s.pods.iter().filter(|p| p.revision == current));
        let ready = count(s.pods.iter().filter(|p| p.ready));
        let live = count(s.pods.iter());
        let complete = updated == s.replicas && live == s.replicas && ready >= s.replicas;
        let message = if complete {
            format!("deployment {:?} successfully rolled out", self.name)
        } else if updated < s.replicas {
            format!(
                "Waiting for deployment {:?} rollout to finish: {updated} of {} updated replicas are available",
                self.name, s.replicas
            )
        } else if live > updated {
            format!(
                "Waiting for deployment {:?} rollout to finish: {} old replicas are pending termination",
                self.name,
                live - updated
            )
        } else {
            format!(
                "Waiting for deployment {:?} rollout to finish: {ready} of {updated} updated replicas are available",
                self.name
            )
        };
        RolloutStatus {
            desired: s.replicas,
            updated,
            ready,
            available: ready,
            total: live + s.terminating,
            observed: true,
            complete,
            failure: None,
            message,
        }
    }

    /// Log lines of the live pods since `since`, oldest first.
    pub async fn logs_since(&self, since: DateTime<Utc>) -> Vec<LogLine> {
        let containers: Vec<Arc<dyn Container>> = self
            .lock()
            .pods
            .iter()
            .map(|p| Arc::clone(&p.container))
            .collect();
        let mut lines = Vec::new();
        for c in containers {
            lines.extend(c.logs_since(since).await);
        }
        lines.sort_by_key(|l| l.timestamp);
        lines
    }

    /// Stops the loop and terminates every pod with `grace`.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.stop.cancel();
        let pods: Vec<Pod> = std::mem::take(&mut self.lock().pods);
        self.endpoints.publish(self.variant, Vec::new());
        let stops = pods.iter().map(|p| p.container.terminate(grace));
        futures::future::join_all(stops).await;
    }

    /// One reconcile pass.
    async fn reconcile(self: &Arc<Self>, client: &reqwest::Client) {
        // 1. Observe: container state and readiness, outside the lock.
        let observed: Vec<(u64, Arc<dyn Container>, u16, String)> = {
            let s = self.lock();
            s.pods
                .iter()
                .map(|p| {
                    let probe_port = p.probe_port.as_ref().map_or(p.port, ClosedPort::port);
                    (
                        p.id,
                        Arc::clone(&p.container),
                        probe_port,
                        p.template.spec.probe.path.clone(),
                    )
                })
                .collect()
        };
        let checks = observed
            .into_iter()
            .map(|(id, container, port, path)| async move {
                let status = container.status().await;
                let passed = status.running
                    && http_ready(client, port, &path, self.timing.probe_timeout).await;
                (id, status, passed)
            });
        let results = futures::future::join_all(checks).await;

        // 2. Decide.
        let (steps, current, template) = {
            let mut s = self.lock();
            for (id, status, passed) in results {
                if let Some(pod) = s.pods.iter_mut().find(|p| p.id == id) {
                    if !status.running {
                        pod.ready = false;
                        pod.probe_failures = 0;
                    } else if passed {
                        pod.ready = true;
                        pod.probe_failures = 0;
                    } else {
                        pod.probe_failures += 1;
                        if pod.probe_failures >= FAILURE_THRESHOLD {
                            pod.ready = false;
                        }
                    }
                    pod.status = status;
                }
            }
            let views: Vec<PodView> = s
                .pods
                .iter()
                .map(|p| PodView {
                    id: p.id,
                    revision: p.revision,
                    ready: p.ready,
                })
                .collect();
            let current = s.current();
            let steps = plan(current, s.replicas, s.strategy, &views);
            (steps, current, s.revisions.get(&current).cloned())
        };

        // 3. Act: removals first (endpoints, then SIGTERM), then creations.
        for step in &steps {
            if let Step::Terminate(id) = step {
                self.terminate_pod(*id);
            }
        }
        if let Some(template) = template {
            for step in &steps {
                if *step == Step::Create
                    && let Err(e) = self.create_pod(current, &template).await
                {
                    tracing::warn!(deployment = %self.name, error = %e, "cannot create pod");
                }
            }
        }
        self.publish();
    }

    fn publish(&self) {
        let endpoints = self
            .lock()
            .pods
            .iter()
            .filter(|p| p.ready)
            .map(|p| Endpoint {
                pod: p.name.clone(),
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, p.port)),
            })
            .collect();
        self.endpoints.publish(self.variant, endpoints);
    }

    fn terminate_pod(self: &Arc<Self>, id: u64) {
        let pod = {
            let mut s = self.lock();
            let Some(index) = s.pods.iter().position(|p| p.id == id) else {
                return;
            };
            s.terminating += 1;
            s.pods.remove(index)
        };
        // Out of the service before the signal.
        self.endpoints.remove(self.variant, &pod.name);
        tracing::debug!(deployment = %self.name, pod = %pod.name, "terminating pod");
        let deployment = Arc::clone(self);
        let grace = self.timing.termination_grace;
        tokio::spawn(async move {
            pod.container.terminate(grace).await;
            drop(pod);
            let mut s = deployment.lock();
            s.terminating = s.terminating.saturating_sub(1);
        });
    }

    async fn create_pod(&self, revision: u64, template: &PodTemplate) -> Result<(), Error> {
        let port = free_port()?;
        let probe_port = match template.spec.probe.port {
            ProbePort::Container => None,
            ProbePort::Mismatched => Some(ClosedPort::reserve()?),
        };
        let id = {
            let mut s = self.lock();
            let id = s.next_pod;
            s.next_pod += 1;
            id
        };
        let name = format!("{}-r{revision}-{id}", self.name);
        let env = pod_env(
            &template.spec,
            self.variant,
            &template.version,
            &format!("127.0.0.1:{port}"),
        );
        let container = self
            .runtime
            .start(Launch {
                pod: name.clone(),
                variant: self.variant,
                artifact: template.spec.artifact.clone(),
                env,
                port,
            })
            .await?;
        tracing::debug!(deployment = %self.name, pod = %name, port, "created pod");
        let status = ContainerStatus {
            running: false,
            restarts: 0,
            waiting_reason: Some("ContainerCreating".to_owned()),
            last_exit_code: None,
            started_at: None,
        };
        self.lock().pods.push(Pod {
            id,
            name,
            revision,
            template: template.clone(),
            port,
            probe_port,
            container,
            status,
            ready: false,
            probe_failures: 0,
        });
        Ok(())
    }

    /// The platform name (`local`, `docker`).
    pub fn platform(&self) -> &'static str {
        self.platform
    }
}

fn count<T>(iter: impl Iterator<Item = T>) -> u32 {
    u32::try_from(iter.count()).unwrap_or(u32::MAX)
}

async fn run(deployment: Arc<Deployment>) {
    let client = probe_client();
    loop {
        deployment.reconcile(&client).await;
        tokio::select! {
            () = tokio::time::sleep(deployment.timing.probe_period) => {}
            () = deployment.wake.notified() => {}
            () = deployment.stop.cancelled() => return,
        }
    }
}
