//! What the `zai-rehearse` binary and the `rehearsal_*` test suites share: choosing a
//! runtime, gating on optional dependencies (Docker, Prometheus), and a concurrency limit so
//! a test binary runs one rehearsal at a time (latency comparisons are judged on a
//! shared 2-core machine).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{Semaphore, SemaphorePermit};

use super::driver::{RunOptions, ScenarioResult, SignalsChoice, run_scenario};
use super::scenario::Scenario;
use super::stack::RuntimeChoice;
use super::timing::TimeScale;
use crate::Error;
use crate::platform::docker::{DockerRuntime, build_image, docker_available};
use crate::platform::local::LocalRuntime;
use crate::platform::local::binary::proxy_binary;
use crate::platform::spec::Artifact;

/// Which platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformKind {
    /// Child processes.
    Local,
    /// Docker containers.
    Docker,
    /// A real kind cluster ([`super::kind::KindSession`], not a runtime of the simulated one).
    Kind,
}

impl PlatformKind {
    /// `local` / `docker`.
    pub fn label(self) -> &'static str {
        match self {
            PlatformKind::Local => "local",
            PlatformKind::Docker => "docker",
            PlatformKind::Kind => "kind",
        }
    }
}

/// The runtime and artifact for a platform (builds the Docker image on first use).
pub async fn runtime_choice(
    kind: PlatformKind,
    binary: &Path,
    time: TimeScale,
) -> Result<RuntimeChoice, Error> {
    match kind {
        PlatformKind::Local => Ok(RuntimeChoice {
            runtime: Arc::new(LocalRuntime::new(time.platform_timing().backoff)),
            artifact: Artifact::Binary(binary.to_path_buf()),
        }),
        PlatformKind::Docker => {
            docker_available().await.map_err(Error::Setup)?;
            let image = build_image(binary).await?;
            Ok(RuntimeChoice {
                runtime: Arc::new(DockerRuntime::connect()?),
                artifact: Artifact::Image(image),
            })
        }
        PlatformKind::Kind => Err(Error::Setup(
            "kind is a real cluster, not a runtime of the simulated one: run it through rehearsal::kind::KindSession".to_owned(),
        )),
    }
}

static SLOTS: Semaphore = Semaphore::const_new(1);

/// The one rehearsal slot of this process.
pub async fn slot() -> SemaphorePermit<'static> {
    match SLOTS.acquire().await {
        Ok(permit) => permit,
        Err(_) => unreachable!("the semaphore is never closed"),
    }
}

/// Whether an optional dependency lets a suite run: `Ok` runs; a missing dependency skips
/// with a one-line reason, or panics (fails the test) when `CI` is set.
pub fn dependency_gate(suite: &str, availability: Result<(), String>) -> bool {
    match availability {
        Ok(()) => true,
        Err(reason) => {
            if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
                panic!("{suite}: required dependency missing with CI set: {reason}");
            }
            eprintln!("skipping {suite}: {reason}");
            false
        }
    }
}

/// Report directory for tests: `<target>/rehearsal-tests/<name>`.
pub fn test_report_dir(name: &str) -> PathBuf {
    let base = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).map(Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir);
    base.join("rehearsal-tests").join(name)
}

/// The base seed of test rehearsals: `ZAI_REHEARSE_SEED` (to replay a failure seen in CI),
/// else [`DEFAULT_SEED`](super::seeds::DEFAULT_SEED).
pub fn test_seed() -> Result<u64, Error> {
    match std::env::var("ZAI_REHEARSE_SEED") {
        Ok(text) => super::seeds::parse_seed(&text)
            .map_err(|e| Error::Setup(format!("ZAI_REHEARSE_SEED: {e}"))),
        Err(_) => Ok(super::seeds::DEFAULT_SEED),
    }
}

/// Runs one scenario as a test would: a slot, the proxy binary as built by cargo, the
/// default time scale, the seed of [`test_seed`].
pub async fn run_for_test(
    scenario: &Scenario,
    kind: PlatformKind,
    signals: SignalsChoice,
    report_name: &str,
) -> Result<ScenarioResult, Error> {
    let _slot = slot().await;
    let binary = proxy_binary(false)?;
    let time = TimeScale::new(super::timing::DEFAULT_TIME_SCALE).map_err(Error::Setup)?;
    let choice = runtime_choice(kind, &binary, time).await?;
    let options = RunOptions {
        time,
        signals,
        report_dir: test_report_dir(report_name),
        seed: test_seed()?,
    };
    run_scenario(scenario, choice, &options).await
}
