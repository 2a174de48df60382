//! The deployment controller: one reconcile loop per deployment, shared by every runtime.
//!
//! Each pass: read every container's state, probe readiness, plan the rolling update with
//! [`super::rollout::plan`], create/terminate pods, publish the ready pods as the service's
//! endpoints, then write the status the API server shows: the generation this pass planned for
//! (`observedGeneration`) and the replica counters, as the Deployment controller does.
//! Termination takes the pod out of the endpoints *first*, then SIGTERMs it with the grace
//! period (Kubernetes' endpoint removal racing the kubelet, minus the race).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use zai_promoter::{LogLine, Variant};

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
    created_at: DateTime<Utc>,
}

/// What the API server shows of one pod.
#[derive(Debug, Clone)]
pub struct PodSnapshot {
    /// Pod name.
    pub name: String,
    /// The template revision id it runs.
    pub revision: u64,
    /// Its template.
    pub template: PodTemplate,
    /// Where the container listens on 127.0.0.1.
    pub port: u16,
    /// The container's state.
    pub status: ContainerStatus,
    /// Passing its readiness probe.
    pub ready: bool,
    /// When the pod was created.
    pub created_at: DateTime<Utc>,
}

/// One template revision (a ReplicaSet).
#[derive(Debug, Clone)]
pub struct RevisionSnapshot {
    /// Revision id (stable for the template).
    pub id: u64,
    /// `deployment.kubernetes.io/revision`: raised each time the template becomes current.
    pub number: i64,
    /// The template.
    pub template: PodTemplate,
    /// Live pods running it.
    pub pods: u32,
    /// Of which ready.
    pub ready: u32,
    /// It is the current revision.
    pub current: bool,
}

/// The status the controller last wrote (`Deployment.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observed {
    /// The generation the last reconcile pass planned for.
    pub generation: i64,
    /// Live pods, terminating ones excluded.
    pub replicas: u32,
    /// Live pods of the current revision.
    pub updated: u32,
    /// Ready pods.
    pub ready: u32,
    /// Ready pods (no `minReadySeconds`, so the same).
    pub available: u32,
    /// Pods still terminating.
    pub terminating: u32,
    /// Resource version of the last status change.
    pub resource_version: u64,
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
    /// Revision numbers by template id.
    numbers: BTreeMap<u64, i64>,
    /// `metadata.generation` of the spec the API server holds.
    generation: i64,
    observed: Observed,
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
    /// The cluster's resource-version counter (status writes take the next number).
    versions: Arc<AtomicU64>,
}

impl Deployment {
    /// Creates the deployment and starts its controller loop.
    pub fn start(
        spec: DeploymentSpec,
        runtime: Arc<dyn Runtime>,
        endpoints: Arc<Endpoints>,
        timing: Timing,
        versions: Arc<AtomicU64>,
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
                numbers: BTreeMap::from([(1, 1)]),
                generation: 1,
                observed: Observed::default(),
            }),
            runtime,
            endpoints,
            timing,
            wake: Notify::new(),
            stop: CancellationToken::new(),
            versions,
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

    /// Applies a new spec at `generation`: the pod template (an identical template
    /// re-activates its old revision, whose number is raised), the replica count and the
    /// strategy. The controller observes it on its next pass.
    pub fn update(
        &self,
        template: PodTemplate,
        replicas: u32,
        strategy: RollingUpdate,
        generation: i64,
    ) {
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
                let number = s.numbers.values().max().copied().unwrap_or(0) + 1;
                s.numbers.insert(id, number);
            }
            s.replicas = replicas;
            s.strategy = strategy;
            s.generation = generation;
        }
        self.wake.notify_one();
    }

    /// Desired replicas.
    pub fn replicas(&self) -> u32 {
        self.lock().replicas
    }

    /// The status the controller last wrote.
    pub fn observed(&self) -> Observed {
        self.lock().observed
    }

    /// The current revision's number.
    pub fn revision_number(&self) -> i64 {
        let s = self.lock();
        s.numbers.get(&s.current()).copied().unwrap_or(1)
    }

    /// Every revision (ReplicaSet) with its pod counts.
    pub fn revisions(&self) -> Vec<RevisionSnapshot> {
        let s = self.lock();
        let current = s.current();
        s.revisions
            .iter()
            .map(|(id, template)| RevisionSnapshot {
                id: *id,
                number: s.numbers.get(id).copied().unwrap_or(0),
                template: template.clone(),
                pods: count(s.pods.iter().filter(|p| p.revision == *id)),
                ready: count(s.pods.iter().filter(|p| p.revision == *id && p.ready)),
                current: *id == current,
            })
            .collect()
    }

    /// Live (non-terminating) pods.
    pub fn pods(&self) -> Vec<PodSnapshot> {
        let s = self.lock();
        s.pods
            .iter()
            .map(|p| PodSnapshot {
                name: p.name.clone(),
                revision: p.revision,
                template: p.template.clone(),
                port: p.port,
                status: p.status.clone(),
                ready: p.ready,
                created_at: p.created_at,
            })
            .collect()
    }

    /// The status of the pods as they are now (written to [`Observed`] after each pass).
    fn status_now(s: &State, generation: i64) -> Observed {
        let current = s.current();
        let ready = count(s.pods.iter().filter(|p| p.ready));
        Observed {
            generation,
            replicas: count(s.pods.iter()),
            updated: count(s.pods.iter().filter(|p| p.revision == current)),
            ready,
            available: ready,
            terminating: s.terminating,
            resource_version: s.observed.resource_version,
        }
    }

    /// Writes the status for `generation` (a new resource version when it changed).
    fn write_status(&self, generation: i64) {
        let mut s = self.lock();
        let now = Self::status_now(&s, generation);
        if now != s.observed {
            s.observed = Observed {
                resource_version: self.versions.fetch_add(1, Ordering::SeqCst) + 1,
                ..now
            };
        }
    }

    /// Log lines of one live pod since `since`, oldest first; `None` if no such pod.
    pub async fn pod_logs(&self, pod: &str, since: DateTime<Utc>) -> Option<Vec<LogLine>> {
        let container = self
            .lock()
            .pods
            .iter()
            .find(|p| p.name == pod)
            .map(|p| Arc::clone(&p.container))?;
        Some(container.logs_since(since).await)
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
        let (steps, current, template, generation) = {
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
            (
                steps,
                current,
                s.revisions.get(&current).cloned(),
                s.generation,
            )
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
        self.write_status(generation);
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
            let generation = {
                let mut s = deployment.lock();
                s.terminating = s.terminating.saturating_sub(1);
                s.observed.generation
            };
            deployment.write_status(generation);
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
        let name = format!("{}-{}-{id:05}", self.name, template_hash(template));
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
            created_at: Utc::now(),
        });
        Ok(())
    }

    /// The platform name (`local`, `docker`).
    pub fn platform(&self) -> &'static str {
        self.platform
    }
}

/// `pod-template-hash`: a stable short hash of the template (FNV-1a of its JSON).
pub fn template_hash(template: &PodTemplate) -> String {
    let text = serde_json::to_string(template).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // Kubernetes' alphabet for generated names: no vowels, no look-alikes.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::new();
    for _ in 0..10 {
        out.push(ALPHABET[(hash % ALPHABET.len() as u64) as usize] as char);
        hash /= ALPHABET.len() as u64;
    }
    out
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
