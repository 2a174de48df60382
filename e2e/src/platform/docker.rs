//! The Docker platform's runtime: every pod is a container of a locally built image, started
//! through testcontainers with host networking (the proxy binds the pod's free loopback
//! port). Restarts, the restart count and the back-off are Docker's own (`restart: always`);
//! `terminate` is `docker stop -t GRACE` (SIGTERM, then SIGKILL) followed by removal.
//!
//! The image is built once per process, without pulling anything: deploy/docker/
//! build-context.sh packs the `zai-proxy` binary with the shared libraries it needs and
//! deploy/docker/Dockerfile builds it `FROM scratch` (`--build-arg BASE=scratch LIBS=libs`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use testcontainers::bollard::Docker;
use testcontainers::bollard::models::{RestartPolicy, RestartPolicyNameEnum};
use testcontainers::bollard::query_parameters::LogsOptionsBuilder;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio::sync::{Mutex, OnceCell};
use zai_promoter::LogLine;

use super::runtime::{Container, ContainerStatus, Launch, Runtime};
use super::spec::Artifact;
use crate::Error;

/// Repository name of the rehearsal image.
pub const IMAGE_REPO: &str = "zai-proxy-rehearsal";
/// Its tag.
pub const IMAGE_TAG: &str = "local";

/// Is a Docker daemon reachable?
pub async fn docker_available() -> Result<(), String> {
    let docker = Docker::connect_with_local_defaults().map_err(|e| e.to_string())?;
    docker
        .ping()
        .await
        .map(|_| ())
        .map_err(|e| format!("docker daemon: {e}"))
}

/// The image reference every version runs on Docker.
pub fn image_ref() -> String {
    format!("{IMAGE_REPO}:{IMAGE_TAG}")
}

static IMAGE: OnceCell<Result<String, String>> = OnceCell::const_new();

/// Builds the image from `binary` once per process (later calls reuse the result).
pub async fn build_image(binary: &Path) -> Result<String, Error> {
    let binary = binary.to_path_buf();
    IMAGE
        .get_or_init(|| async move {
            tokio::task::spawn_blocking(move || build_image_blocking(&binary))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
        })
        .await
        .clone()
        .map_err(Error::Docker)
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn build_image_blocking(binary: &Path) -> Result<String, String> {
    let root = workspace_root();
    let context = tempfile::Builder::new()
        .prefix("zai-rehearsal-docker-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let out = context.path().join("ctx");
    run(Command::new(root.join("deploy/docker/build-context.sh"))
        .arg("--out")
        .arg(&out)
        .arg(binary))?;
    run(Command::new("docker")
        .args(["build", "-q", "-f"])
        .arg(root.join("deploy/docker/Dockerfile"))
        .args([
            "--build-arg",
            "BASE=scratch",
            "--build-arg",
            "LIBS=libs",
            "-t",
        ])
        .arg(image_ref())
        .arg(&out))?;
    Ok(image_ref())
}

pub(crate) fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Runs containers through testcontainers.
#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
}

impl DockerRuntime {
    /// Connects to the local daemon.
    pub fn connect() -> Result<Self, Error> {
        let docker =
            Docker::connect_with_local_defaults().map_err(|e| Error::Docker(e.to_string()))?;
        Ok(DockerRuntime { docker })
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn start(&self, launch: Launch) -> Result<Arc<dyn Container>, Error> {
        let Artifact::Image(image) = &launch.artifact else {
            return Err(Error::Start {
                pod: launch.pod,
                message: "the docker platform runs images, not binaries".to_owned(),
            });
        };
        let (repo, tag) = image.rsplit_once(':').unwrap_or((image.as_str(), "latest"));
        let mut request = GenericImage::new(repo, tag)
            .with_network("host")
            .with_container_name(format!("{}-{}", launch.pod, std::process::id()));
        for (k, v) in &launch.env {
            request = request.with_env_var(k, v);
        }
        let request = request.with_host_config_modifier(|host| {
            host.restart_policy = Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ALWAYS),
                maximum_retry_count: None,
            });
        });
        let container = request.start().await.map_err(|e| Error::Start {
            pod: launch.pod.clone(),
            message: e.to_string(),
        })?;
        let id = container.id().to_owned();
        Ok(Arc::new(DockerContainer {
            docker: self.docker.clone(),
            id,
            pod: launch.pod,
            container: Mutex::new(Some(container)),
        }))
    }
}

struct DockerContainer {
    docker: Docker,
    id: String,
    pod: String,
    container: Mutex<Option<ContainerAsync<GenericImage>>>,
}

#[async_trait]
impl Container for DockerContainer {
    async fn status(&self) -> ContainerStatus {
        match self.docker.inspect_container(&self.id, None).await {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                let running = state.running.unwrap_or(false) && !state.restarting.unwrap_or(false);
                let restarts = info
                    .restart_count
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0);
                let waiting_reason = if running {
                    None
                } else if state.restarting.unwrap_or(false) || restarts > 0 {
                    Some("CrashLoopBackOff".to_owned())
                } else {
                    Some("ContainerCreating".to_owned())
                };
                ContainerStatus {
                    running,
                    restarts,
                    waiting_reason,
                    last_exit_code: state.exit_code.filter(|_| !running),
                    started_at: state
                        .started_at
                        .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
                        .map(|t| t.with_timezone(&Utc)),
                }
            }
            Err(e) => ContainerStatus {
                running: false,
                restarts: 0,
                waiting_reason: Some(format!("InspectFailed: {e}")),
                last_exit_code: None,
                started_at: None,
            },
        }
    }

    async fn terminate(&self, grace: Duration) {
        let Some(container) = self.container.lock().await.take() else {
            return;
        };
        let secs = i32::try_from(grace.as_secs().max(1)).unwrap_or(i32::MAX);
        if let Err(e) = container.stop_with_timeout(Some(secs)).await {
            tracing::warn!(pod = %self.pod, error = %e, "docker stop failed");
        }
        if let Err(e) = container.rm().await {
            tracing::warn!(pod = %self.pod, error = %e, "docker rm failed");
        }
    }

    async fn logs_since(&self, since: DateTime<Utc>) -> Vec<LogLine> {
        let since_secs = i32::try_from(since.timestamp()).unwrap_or(0);
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .since(since_secs)
            .build();
        let mut stream = self.docker.logs(&self.id, Some(options));
        let mut lines = Vec::new();
        while let Some(Ok(chunk)) = stream.next().await {
            let text = chunk.to_string();
            for raw in text.lines() {
                let (timestamp, line) = match raw.split_once(' ') {
                    Some((ts, rest)) => match DateTime::parse_from_rfc3339(ts) {
                        Ok(t) => (Some(t.with_timezone(&Utc)), rest.to_owned()),
                        Err(_) => (None, raw.to_owned()),
                    },
                    None => (None, raw.to_owned()),
                };
                if timestamp.is_none_or(|t| t >= since) {
                    lines.push(LogLine {
                        pod: self.pod.clone(),
                        timestamp,
                        line,
                    });
                }
            }
        }
        lines
    }
}
