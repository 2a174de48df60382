//! `zai-rehearse --platform kind`: the rehearsal driver against a real cluster from a
//! kubeconfig — a kind cluster, because the images are built locally and copied into its
//! nodes with `kind load docker-image` (nothing is pulled).
//!
//! One [`KindSession`] per `zai-rehearse` run: the checks before anything starts
//! ([`preflight`]), the cluster created when `--kind-cluster NAME` does not exist yet (and then
//! deleted at the end), the tools image. Each scenario gets its own namespace
//! (`zr-<session>-<n>-<scenario>`, labelled `app.kubernetes.io/managed-by=zai-rehearse` and
//! `zai-rehearse/session=<session>`), its proxy images, and a [`stack::KindStack`]; the same
//! [`crate::rehearsal::driver`] runs it as on the simulated cluster. The namespace is deleted
//! after the scenario; on SIGINT/SIGTERM every namespace of the session is deleted (and a
//! cluster the session created), then the process exits 130.
//!
//! What the simulated cluster has and a real one does not: no fault switch is needed by any
//! built-in scenario (every defect is a configuration built into the new version's image, or
//! the fake upstream's faults), so every scenario runs; `--signals prometheus` does not (the
//! rehearsal's Prometheus is a loopback process that discovers simulated pods) and is refused
//! before anything starts — see docs/KIND_DEMO.md.

pub mod images;
pub mod manifests;
pub mod preflight;
pub mod stack;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams};
use serde::{Deserialize, Serialize};

use self::images::{Binaries, Images, TOOLS_IMAGE};
use self::preflight::KindTarget;
use self::stack::{KindStack, StackInput};
use super::driver::{HoldView, RunOptions, ScenarioResult, drive};
use super::scenario::Scenario;
use super::seeds::ScenarioSeeds;
use crate::Error;

pub use self::preflight::{KindRequest, Refusal, preflight};

/// deploy/kind/cluster.yaml (one control-plane, one worker), for a cluster the session
/// creates.
const CLUSTER_CONFIG: &str = include_str!("../../../../deploy/kind/cluster.yaml");

/// The cluster of a kind run, as `rehearsal.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// The kubeconfig used (the user's file; never copied).
    pub kubeconfig: std::path::PathBuf,
    /// Its context.
    pub context: String,
    /// The kind cluster.
    pub kind_cluster: String,
    /// Created by this run (and deleted at its end).
    pub created: bool,
    /// The label selecting this run's namespaces (`zai-rehearse/session=…`).
    pub namespaces: String,
}

/// One `zai-rehearse --platform kind` run.
pub struct KindSession {
    target: KindTarget,
    id: String,
    admin: kube::Client,
    images: Arc<Images>,
    scenarios: AtomicU32,
    holding: Arc<Hold>,
    signals: tokio::task::JoinHandle<()>,
    deleted: AtomicBool,
}

fn run_kind(args: &[&str]) -> Result<(), Error> {
    crate::platform::docker::run(std::process::Command::new("kind").args(args))
        .map_err(|e| Error::Setup(e.to_string()))
}

/// Deletes every namespace of `session` (without waiting).
async fn delete_session_namespaces(client: &kube::Client, session: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let selector = format!("{}={session}", manifests::SESSION_LABEL);
    match namespaces
        .list(&ListParams::default().labels(&selector))
        .await
    {
        Ok(list) => {
            for ns in list.items {
                if let Some(name) = ns.metadata.name {
                    eprintln!("   deleting namespace {name}");
                    let _ = namespaces.delete(&name, &DeleteParams::background()).await;
                }
            }
        }
        Err(e) => eprintln!("   cannot list this run's namespaces ({selector}): {e}"),
    }
}

impl KindSession {
    /// Creates the cluster when asked, builds and loads the tools image, and installs the
    /// SIGINT/SIGTERM clean-up. `proxy` is the zai-proxy binary.
    pub async fn open(target: KindTarget, proxy: &std::path::Path) -> Result<KindSession, Error> {
        let binaries = Binaries::find(proxy)?;
        if target.create {
            eprintln!(
                "creating kind cluster {} (deploy/kind/cluster.yaml); it is deleted at the end",
                target.cluster
            );
            let dir = tempfile::tempdir()?;
            let config = dir.path().join("cluster.yaml");
            std::fs::write(&config, CLUSTER_CONFIG)?;
            let (cluster, kubeconfig) = (target.cluster.clone(), target.kubeconfig.clone());
            tokio::task::spawn_blocking(move || {
                run_kind(&[
                    "create",
                    "cluster",
                    "--name",
                    &cluster,
                    "--config",
                    &config.to_string_lossy(),
                    "--kubeconfig",
                    &kubeconfig.to_string_lossy(),
                    "--wait",
                    "180s",
                ])
            })
            .await
            .map_err(|e| Error::Setup(e.to_string()))??;
        }
        let opened = Self::open_created(target.clone(), binaries).await;
        if opened.is_err() && target.create {
            delete_cluster(&target);
        }
        opened
    }

    async fn open_created(target: KindTarget, binaries: Binaries) -> Result<KindSession, Error> {
        let version = preflight::reachable(
            &target.kubeconfig,
            &target.context,
            std::time::Duration::from_secs(30),
        )
        .await
        .map_err(|e| Error::Setup(e.to_string()))?;
        eprintln!(
            "kind cluster {} (context {} in {}, Kubernetes {version})",
            target.cluster,
            target.context,
            target.kubeconfig.display()
        );
        let admin = preflight::admin_client(&target.kubeconfig, &target.context)
            .await
            .map_err(|e| Error::Setup(e.to_string()))?;
        eprintln!("building and loading {TOOLS_IMAGE} (fake-zai, zai-workers)");
        let cluster = target.cluster.clone();
        let images = tokio::task::spawn_blocking(move || {
            let images = Images::contexts(&binaries)?;
            Images::load(&cluster, &[images.build_tools()?])?;
            Ok::<_, Error>(images)
        })
        .await
        .map_err(|e| Error::Setup(e.to_string()))??;
        let id = session_id();
        let holding = Arc::new(Hold::default());
        let signals = clean_up_on_signal(
            admin.clone(),
            id.clone(),
            target.clone(),
            Arc::clone(&holding),
        );
        Ok(KindSession {
            target,
            id,
            admin,
            images: Arc::new(images),
            scenarios: AtomicU32::new(0),
            holding,
            signals,
            deleted: AtomicBool::new(false),
        })
    }

    /// What `rehearsal.json` records about the cluster.
    pub fn record(&self) -> ClusterRecord {
        ClusterRecord {
            kubeconfig: self.target.kubeconfig.clone(),
            context: self.target.context.clone(),
            kind_cluster: self.target.cluster.clone(),
            created: self.target.create,
            namespaces: format!("{}={}", manifests::SESSION_LABEL, self.id),
        }
    }

    /// Runs one scenario in a namespace of its own and awaits `before_shutdown` before the
    /// namespace is deleted (`--hold`: Ctrl-C then ends the hold, not the process).
    pub async fn run_scenario_then<F, Fut>(
        &self,
        scenario: &Scenario,
        options: &RunOptions,
        before_shutdown: F,
    ) -> Result<ScenarioResult, Error>
    where
        F: FnOnce(HoldView) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let wall = Instant::now();
        let seeds = ScenarioSeeds::derive(options.seed, &scenario.name);
        let index = self.scenarios.fetch_add(1, Ordering::Relaxed);
        let namespace = manifests::namespace_name(&self.id, index, &scenario.name);
        eprintln!("   namespace {namespace}: building the versions' images");
        let versions = manifests::version_images(scenario)?;
        let images = Arc::clone(&self.images);
        let cluster = self.target.cluster.clone();
        tokio::task::spawn_blocking(move || {
            Images::load(&cluster, &images.build_versions(&versions)?)
        })
        .await
        .map_err(|e| Error::Setup(e.to_string()))??;
        let objects = manifests::render(scenario, &namespace, &self.id, TOOLS_IMAGE, &seeds)?;
        let kubeconfig = options.report_dir.join(&scenario.name).join("kubeconfig");
        let stack = KindStack::start(StackInput {
            target: &self.target,
            admin: self.admin.clone(),
            namespace: namespace.clone(),
            objects,
            tools_image: TOOLS_IMAGE.to_owned(),
            kubeconfig: kubeconfig.clone(),
        })
        .await?;
        let result = drive(scenario, &stack, options, &seeds).await;
        self.holding.begin();
        before_shutdown(HoldView {
            kubeconfig,
            kubectl: format!(
                "kubectl --kubeconfig {} --context {} -n {namespace}",
                self.target.kubeconfig.display(),
                self.target.context
            ),
        })
        .await;
        self.holding.end();
        stack.shutdown().await;
        let mut result = result?;
        result.wall_seconds = wall.elapsed().as_secs_f64();
        Ok(result)
    }

    /// Deletes the cluster if this session created it.
    pub async fn close(self) {
        self.signals.abort();
        delete_session_namespaces(&self.admin, &self.id).await;
        if self.target.create && !self.deleted.swap(true, Ordering::SeqCst) {
            let target = self.target.clone();
            let _ = tokio::task::spawn_blocking(move || delete_cluster(&target)).await;
        }
    }
}

impl Drop for KindSession {
    fn drop(&mut self) {
        self.signals.abort();
        if self.target.create && !self.deleted.swap(true, Ordering::SeqCst) {
            delete_cluster(&self.target);
        }
    }
}

fn delete_cluster(target: &KindTarget) {
    eprintln!("deleting kind cluster {}", target.cluster);
    if let Err(e) = run_kind(&[
        "delete",
        "cluster",
        "--name",
        &target.cluster,
        "--kubeconfig",
        &target.kubeconfig.to_string_lossy(),
    ]) {
        eprintln!("   {e}");
    }
}

/// Six hex digits, different per run (time and process id).
fn session_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seed = (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32);
    format!(
        "{:06x}",
        crate::seed::derive(seed, "kind-session", 0) & 0xff_ffff
    )
}

/// Whether a scenario is being held before its tear-down (`--hold`, whose Ctrl-C is its own).
#[derive(Default)]
struct Hold {
    state: std::sync::Mutex<(bool, Option<Instant>)>,
}

impl Hold {
    fn begin(&self) {
        *crate::fake::state::lock(&self.state) = (true, None);
    }

    fn end(&self) {
        *crate::fake::state::lock(&self.state) = (false, Some(Instant::now()));
    }

    /// A signal now belongs to the hold: one is on, or one ended a moment ago (the same
    /// Ctrl-C ended it).
    fn owns_signal(&self) -> bool {
        let (on, ended) = *crate::fake::state::lock(&self.state);
        on || ended.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(2))
    }
}

/// On SIGINT/SIGTERM: delete this session's namespaces (and the cluster it created), exit 130.
/// While a scenario is held (`--hold`), Ctrl-C ends the hold instead.
fn clean_up_on_signal(
    admin: kube::Client,
    session: String,
    target: KindTarget,
    holding: Arc<Hold>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut terminate) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            if holding.owns_signal() {
                continue;
            }
            eprintln!("\ninterrupted: cleaning up the kind rehearsal (session {session})");
            delete_session_namespaces(&admin, &session).await;
            if target.create {
                let target = target.clone();
                let _ = tokio::task::spawn_blocking(move || delete_cluster(&target)).await;
            }
            std::process::exit(130);
        }
    })
}
