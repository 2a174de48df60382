//! The environment of one rehearsal: two fake Z.AI upstreams (one per version), the version
//! catalog, both deployments on a platform, the three front services and a throwaway git
//! repository holding `VERSION` for the promoter's finalisation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use zai_promoter::Variant;

use super::scenario::{CANARY_VERSION, NEW_VERSION, OLD_VERSION, Scenario};
use super::seeds::ScenarioSeeds;
use super::timing::TimeScale;
use crate::Error;
use crate::fake::{FakeConfig, FakeZai};
use crate::platform::runtime::Runtime;
use crate::platform::spec::{Artifact, ProbePort, ReadinessProbe, VersionSpec};
use crate::platform::{Cluster, InitialDeployment};
use crate::service::{Endpoints, FrontService};

/// The upstream credential the proxies are configured with (never printed).
const UPSTREAM_KEY: &str = "rehearsal-upstream-key";

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
    /// Both deployments.
    pub cluster: Arc<Cluster>,
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
    /// Starts everything and waits until both deployments are ready; the fakes are seeded
    /// from `seeds`.
    pub async fn start(
        scenario: &Scenario,
        choice: RuntimeChoice,
        time: TimeScale,
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
        let initial = [
            InitialDeployment {
                variant: Variant::Production,
                image: image(OLD_VERSION),
                replicas: scenario.production_replicas,
            },
            InitialDeployment {
                variant: Variant::Test,
                image: image(CANARY_VERSION),
                replicas: scenario.canary_replicas,
            },
        ];
        let cluster = Arc::new(Cluster::start(
            choice.runtime,
            catalog,
            &initial,
            Arc::clone(&endpoints),
            time.platform_timing(),
        )?);
        let service = FrontService::start(endpoints)
            .await
            .map_err(|e| Error::Setup(format!("front service: {e}")))?;
        let repo = release_repo()?;
        let stack = Stack {
            fake_old,
            fake_new,
            cluster,
            service,
            repo,
        };
        // Production must come up; the canary may be broken on purpose (crash loop, bad
        // probe): wait until it is ready or has visibly failed, as an operator would before
        // starting the promoter.
        stack
            .wait_rolled_out(Variant::Production, Duration::from_secs(60))
            .await?;
        stack.wait_canary_settled(Duration::from_secs(30)).await;
        Ok(stack)
    }

    async fn wait_rolled_out(&self, variant: Variant, timeout: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = zai_promoter::Platform::rollout_status(&*self.cluster, variant)
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

    async fn wait_canary_settled(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Ok(pods) = zai_promoter::Platform::list_pods(&*self.cluster, Variant::Test).await
            {
                let all_ready = !pods.is_empty() && pods.iter().all(|p| p.ready);
                let failing = pods.iter().any(|p| p.restarts > 0);
                if all_ready || failing {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the pods (short grace) and the fakes.
    pub async fn shutdown(&self) {
        self.service.stop();
        self.cluster.shutdown(Duration::from_secs(3)).await;
        self.fake_old.shutdown();
        self.fake_new.shutdown();
    }

    /// Path of the release repository.
    pub fn repo_path(&self) -> PathBuf {
        self.repo.path().to_path_buf()
    }
}

/// The three versions: 1.2.0 on the old fake; 1.2.1-canary and 1.2.1 on the new one, with the
/// scenario's overrides.
fn catalog(
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
fn release_repo() -> Result<tempfile::TempDir, Error> {
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
