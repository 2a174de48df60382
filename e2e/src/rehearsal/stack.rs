//! The environment of one rehearsal: two fake Z.AI upstreams (one per version), the version
//! catalog, a simulated cluster on a runtime with its Kubernetes API server and a kubeconfig
//! for it, both Deployments and the three Services created through that API (rendered from
//! deploy/k8s), the front services workers connect to, and a throwaway git repository holding
//! `VERSION` for the promoter's finalisation. Everything the driver and the promoter read or
//! change afterwards goes through the API server, with the promoter's own `KubePlatform`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use zai_promoter::config::KubeSettings;
use zai_promoter::platform::kube::KubePlatform;
use zai_promoter::{Platform, Variant};

use super::manifests;
use super::prometheus::NAMESPACE;
use super::rig::{Rig, Workers};
use super::scenario::{CANARY_VERSION, NEW_VERSION, OLD_VERSION, Scenario};
use super::seeds::ScenarioSeeds;
use super::timing::TimeScale;
use crate::Error;
use crate::fake::{FakeConfig, FakeZai, Faults};
use crate::platform::apiserver::kubeconfig;
use crate::platform::runtime::Runtime;
use crate::platform::spec::{Artifact, ProbePort, ReadinessProbe, VersionSpec};
use crate::platform::{ApiServer, Cluster, PlatformEvent};
use crate::service::{Endpoints, FrontService, Route};
use crate::workers::WorkersConfig;

/// The upstream credential the proxies are configured with (never printed).
pub(crate) const UPSTREAM_KEY: &str = "rehearsal-upstream-key";

/// How to run the proxy: which runtime and what each version's artifact is.
pub struct RuntimeChoice {
    /// The container runtime.
    pub runtime: Arc<dyn Runtime>,
    /// The artifact every version runs (binary path or image).
    pub artifact: Artifact,
}

/// A running rehearsal environment.
pub struct Stack {
    /// Upstream of 1.2.0.
    pub fake_old: FakeZai,
    /// Upstream of 1.2.1 and 1.2.1-canary.
    pub fake_new: FakeZai,
    /// The simulated cluster (the API server's state).
    pub cluster: Arc<Cluster>,
    /// Its API server.
    pub api: ApiServer,
    /// The kubeconfig pointing at it.
    pub kubeconfig: PathBuf,
    /// The promoter's Kubernetes platform over that kubeconfig.
    pub platform: Arc<KubePlatform>,
    /// The front services.
    pub service: FrontService,
    /// The git work tree with `VERSION`.
    pub repo: tempfile::TempDir,
}

/// Image reference of a tag.
pub fn image(tag: &str) -> String {
    format!("zai-proxy:{tag}")
}

impl Stack {
    /// Starts everything, writes the kubeconfig to `kubeconfig_path` and waits until both
    /// deployments are ready; the fakes are seeded from `seeds`.
    pub async fn start(
        scenario: &Scenario,
        choice: RuntimeChoice,
        time: TimeScale,
        kubeconfig_path: &Path,
        seeds: &ScenarioSeeds,
    ) -> Result<Stack, Error> {
        let fake_old = FakeZai::start(FakeConfig {
            faults: scenario.faults.old.canary.clone(),
            seed: seeds.fake_old,
            ..FakeConfig::with_key(UPSTREAM_KEY)
        })
        .await
        .map_err(|e| Error::Setup(format!("fake upstream: {e}")))?;
        let fake_new = FakeZai::start(FakeConfig {
            faults: scenario.faults.new.canary.clone(),
            seed: seeds.fake_new,
            ..FakeConfig::with_key(UPSTREAM_KEY)
        })
        .await
        .map_err(|e| Error::Setup(format!("fake upstream: {e}")))?;

        let catalog = catalog(scenario, &choice.artifact, &fake_old.url(), &fake_new.url());
        let endpoints = Endpoints::new();
        let cluster = Arc::new(Cluster::new(
            choice.runtime,
            NAMESPACE,
            catalog,
            Arc::clone(&endpoints),
            time.platform_timing(),
        ));
        let api = ApiServer::start(Arc::clone(&cluster)).await?;
        kubeconfig::write(kubeconfig_path, &api.url(), NAMESPACE)
            .map_err(|e| Error::Setup(format!("kubeconfig {}: {e}", kubeconfig_path.display())))?;
        create_objects(kubeconfig_path, scenario).await?;
        let platform = Arc::new(
            KubePlatform::from_kubeconfig(kubeconfig_path, kube_settings())
                .await
                .map_err(|e| Error::Setup(e.to_string()))?,
        );
        let service = FrontService::start(endpoints)
            .await
            .map_err(|e| Error::Setup(format!("front service: {e}")))?;
        let repo = release_repo()?;
        let stack = Stack {
            fake_old,
            fake_new,
            cluster,
            api,
            kubeconfig: kubeconfig_path.to_path_buf(),
            platform,
            service,
            repo,
        };
        // Production must come up; the canary may be broken on purpose (crash loop, bad
        // probe): wait until it is ready or has visibly failed, as an operator would before
        // starting the promoter.
        wait_rolled_out(
            &stack.platform,
            Variant::Production,
            Duration::from_secs(60),
        )
        .await?;
        wait_canary_settled(&stack.platform, Duration::from_secs(30)).await;
        Ok(stack)
    }

    /// Stops the pods (short grace) and the fakes.
    pub async fn shutdown(&self) {
        self.service.stop();
        self.api.stop();
        self.cluster.shutdown(Duration::from_secs(3)).await;
        self.fake_old.shutdown();
        self.fake_new.shutdown();
    }

    /// Path of the release repository.
    pub fn repo_path(&self) -> PathBuf {
        self.repo.path().to_path_buf()
    }
}

#[async_trait::async_trait]
impl Rig for Stack {
    fn platform(&self) -> Arc<KubePlatform> {
        Arc::clone(&self.platform)
    }

    fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    fn namespace(&self) -> &str {
        NAMESPACE
    }

    fn repo_path(&self) -> PathBuf {
        Stack::repo_path(self)
    }

    fn events(&self) -> tokio::sync::broadcast::Receiver<PlatformEvent> {
        self.cluster.subscribe()
    }

    fn service_url(&self, route: Route) -> String {
        self.service.url(route)
    }

    async fn set_faults(&self, old: Faults, new: Faults) -> Result<(), Error> {
        self.fake_old.set_faults(old)?;
        self.fake_new.set_faults(new)
    }

    async fn spawn_workers(&self, config: WorkersConfig) -> Result<Workers, Error> {
        Workers::local(config)
    }

    fn simulated(&self) -> Option<Arc<Cluster>> {
        Some(Arc::clone(&self.cluster))
    }
}

/// Waits until `variant`'s rollout is complete, at most `timeout`.
pub(crate) async fn wait_rolled_out(
    platform: &KubePlatform,
    variant: Variant,
    timeout: Duration,
) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let status = platform
            .rollout_status(variant)
            .await
            .map_err(|e| Error::Setup(e.to_string()))?;
        if status.complete {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Setup(format!(
                "{variant} never became ready: {}",
                status.message
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the canary is ready or has visibly failed (restarted), at most `timeout`.
pub(crate) async fn wait_canary_settled(platform: &KubePlatform, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if let Ok(pods) = platform.list_pods(Variant::Test).await {
            let all_ready = !pods.is_empty() && pods.iter().all(|p| p.ready);
            let failing = pods.iter().any(|p| p.restarts > 0);
            if all_ready || failing {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The promoter's `[kube]` settings for the rehearsal namespace.
pub fn kube_settings() -> KubeSettings {
    kube_settings_in(NAMESPACE)
}

/// The promoter's `[kube]` settings for `namespace` (kind: one namespace per scenario).
pub fn kube_settings_in(namespace: &str) -> KubeSettings {
    KubeSettings {
        namespace: namespace.to_owned(),
        ..KubeSettings::default()
    }
}

/// A kube client from a kubeconfig file.
pub async fn kube_client(path: &Path) -> Result<kube::Client, Error> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| Error::Setup(format!("kubeconfig {}: {e}", path.display())))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| Error::Setup(format!("kubeconfig {}: {e}", path.display())))?;
    kube::Client::try_from(config).map_err(|e| Error::Setup(format!("kube client: {e}")))
}

/// Creates production (1.2.0) and the canary (1.2.1-canary) Deployments and the Services
/// through the API, as `kubectl apply -k deploy/k8s/...` would.
async fn create_objects(path: &Path, scenario: &Scenario) -> Result<(), Error> {
    let client = kube_client(path).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let services: Api<Service> = Api::namespaced(client, NAMESPACE);
    let pp = PostParams::default();
    for (variant, tag, replicas) in [
        (
            Variant::Production,
            OLD_VERSION,
            scenario.production_replicas,
        ),
        (Variant::Test, CANARY_VERSION, scenario.canary_replicas),
    ] {
        let d = manifests::deployment(variant, &image(tag), replicas)?;
        deployments
            .create(&pp, &d)
            .await
            .map_err(|e| Error::Setup(format!("create deployment ({variant}): {e}")))?;
    }
    for s in manifests::services()? {
        services
            .create(&pp, &s)
            .await
            .map_err(|e| Error::Setup(format!("create service: {e}")))?;
    }
    Ok(())
}

/// The three versions: 1.2.0 on the old fake; 1.2.1-canary and 1.2.1 on the new one, with the
/// scenario's overrides.
pub(crate) fn catalog(
    scenario: &Scenario,
    artifact: &Artifact,
    old_url: &str,
    new_url: &str,
) -> Vec<VersionSpec> {
    let mut common: BTreeMap<String, String> = [
        ("ZAI_API_KEY", UPSTREAM_KEY),
        // The original's manifests run 20–50 workers per pod.
        ("MAX_WORKERS", "50"),
        ("SHUTDOWN_READINESS_DELAY", "1s"),
        ("SHUTDOWN_GRACE_PERIOD", "10s"),
        ("RATE_LIMIT_INITIAL", "1000"),
        ("RATE_LIMIT_MAX", "1000"),
        ("RATE_LIMIT_STATE_FILE", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    common.extend(scenario.env.clone());

    let mut old = common.clone();
    old.insert("ZAI_TARGET_URL".to_owned(), old_url.to_owned());

    let mut new = common;
    new.insert("ZAI_TARGET_URL".to_owned(), new_url.to_owned());
    new.extend(scenario.new_env.clone());
    let mut canary = new.clone();
    canary.extend(scenario.canary_env.clone());

    let probe = ReadinessProbe::default();
    let new_probe = ReadinessProbe {
        port: if scenario.new_probe_port_mismatch {
            ProbePort::Mismatched
        } else {
            ProbePort::Container
        },
        ..ReadinessProbe::default()
    };
    vec![
        VersionSpec {
            tag: OLD_VERSION.to_owned(),
            artifact: artifact.clone(),
            env: old,
            probe: probe.clone(),
        },
        VersionSpec {
            tag: CANARY_VERSION.to_owned(),
            artifact: artifact.clone(),
            env: canary,
            probe,
        },
        VersionSpec {
            tag: NEW_VERSION.to_owned(),
            artifact: artifact.clone(),
            env: new,
            probe: new_probe,
        },
    ]
}

/// A git repository with `VERSION` = the canary version, committed.
pub(crate) fn release_repo() -> Result<tempfile::TempDir, Error> {
    let dir = tempfile::Builder::new()
        .prefix("zai-rehearsal-repo-")
        .tempdir()
        .map_err(|e| Error::Setup(format!("temp dir: {e}")))?;
    std::fs::write(dir.path().join("VERSION"), format!("{CANARY_VERSION}\n"))
        .map_err(|e| Error::Setup(format!("VERSION: {e}")))?;
    git(dir.path(), &["init", "-q", "-b", "main"])?;
    git(dir.path(), &["config", "user.name", "zai-rehearsal"])?;
    git(dir.path(), &["config", "user.email", "rehearsal@localhost"])?;
    git(dir.path(), &["config", "commit.gpgsign", "false"])?;
    git(dir.path(), &["config", "tag.gpgsign", "false"])?;
    git(dir.path(), &["add", "VERSION"])?;
    git(
        dir.path(),
        &["commit", "-q", "-m", "chore: zai-proxy 1.2.1-canary"],
    )?;
    Ok(dir)
}

/// Runs git in `dir`; its stdout on success.
pub fn git(dir: &Path, args: &[&str]) -> Result<String, Error> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| Error::Setup(format!("git {}: {e}", args.join(" "))))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Setup(format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
