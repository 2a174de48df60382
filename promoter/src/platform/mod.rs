//! Platforms: where the two deployments live and how they are changed.
//!
//! The [`Platform`] trait holds exactly what the checklist needs: list pods (ready, restarts,
//! waiting reason, version, image), read and set the image, rollout status, undo to the previous
//! revision, scale, logs since a time, and a slot for the run record (read, and written only
//! if nobody wrote in between). `kube` implements it for Kubernetes; the e2e crate
//! adds local-process and Docker platforms. Implementations are used as `Arc<dyn Platform>`.

pub mod kube;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which of the two deployments: production (`zai-proxy`) or the canary (`zai-proxy-test`).
///
/// The string form is the proxy's `variant` metric label (`production` / `test`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// The production deployment, `variant="production"`.
    Production,
    /// The canary deployment, `variant="test"`.
    Test,
}

impl Variant {
    /// Both variants, production first.
    pub const ALL: [Variant; 2] = [Variant::Production, Variant::Test];

    /// The `variant` label value: `production` or `test`.
    pub fn label(self) -> &'static str {
        match self {
            Variant::Production => "production",
            Variant::Test => "test",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One pod (or local process / container) of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodInfo {
    /// Pod name (unique within the platform).
    pub name: String,
    /// The deployment it belongs to.
    pub variant: Variant,
    /// Phase as the platform reports it (`Running`, `Pending`, `Exited`, …).
    pub phase: String,
    /// Ready (readiness probe passing / process answering `/health`).
    pub ready: bool,
    /// Container restarts since the pod was created.
    pub restarts: u32,
    /// Why the container is waiting, e.g. `CrashLoopBackOff`, `ImagePullBackOff`.
    pub waiting_reason: Option<String>,
    /// The pod's `version` label.
    pub version: Option<String>,
    /// The container image (for local processes: whatever names the binary/version).
    pub image: String,
    /// Base URL where `/metrics` and `/health` answer (`http://127.0.0.1:PORT`); `None` for
    /// pods only reachable through Prometheus or the API server.
    pub base_url: Option<String>,
    /// When the pod (process) started, if known.
    pub started_at: Option<DateTime<Utc>>,
}

/// Rollout state of one deployment, as `kubectl rollout status` would judge it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RolloutStatus {
    /// Desired replicas (`spec.replicas`).
    pub desired: u32,
    /// Replicas running the current template.
    pub updated: u32,
    /// Ready replicas (all templates).
    pub ready: u32,
    /// Available replicas (all templates).
    pub available: u32,
    /// Total replicas including old ones still terminating.
    pub total: u32,
    /// The controller has observed the latest spec.
    pub observed: bool,
    /// The rollout finished: every replica updated and available, no old ones left.
    pub complete: bool,
    /// The platform gave up (e.g. `ProgressDeadlineExceeded`); informational, the engine
    /// detects crash loops itself.
    pub failure: Option<String>,
    /// Human-readable summary.
    pub message: String,
}

/// One log line of one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// The pod that wrote it.
    pub pod: String,
    /// When, if the platform knows.
    pub timestamp: Option<DateTime<Utc>>,
    /// The text, without the trailing newline.
    pub line: String,
}

/// A plain HTTP answer from a pod (for `/health`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// Body as text (lossy UTF-8).
    pub body: String,
}

/// Where the run record ([`crate::runstate`]) is kept: its text (`None`: no record) and the
/// version a write must name (the object's `resourceVersion` on Kubernetes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSlot {
    /// The stored record, if any.
    pub text: Option<String>,
    /// The version to write against.
    pub version: String,
}

/// The result of a conditional write of the run record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordWrite {
    /// Written; the slot's new version.
    Written(String),
    /// Somebody wrote in between (409 Conflict): read again.
    Conflict,
}

/// The operations the checklist needs from wherever the proxy runs.
///
/// Every method is a single step; waiting and retrying are the engine's job. Implementations
/// must be cheap to call every tick.
#[async_trait]
pub trait Platform: Send + Sync {
    /// Short name for messages and reports: `kube`, `local`, `docker`, `fake`.
    fn name(&self) -> &str;

    /// Human-readable location for the report's sign-off block (cluster/namespace, host, …).
    fn location(&self) -> String {
        self.name().to_owned()
    }

    /// The pods of one deployment (terminating ones excluded).
    async fn list_pods(&self, variant: Variant) -> Result<Vec<PodInfo>>;

    /// The image of the deployment's pod template (`proxy` container).
    async fn image(&self, variant: Variant) -> Result<String>;

    /// Sets the deployment's image and its pod template's `version` label; starts a rollout.
    async fn set_image(&self, variant: Variant, image: &str, version: &str) -> Result<()>;

    /// The rollout state of the deployment.
    async fn rollout_status(&self, variant: Variant) -> Result<RolloutStatus>;

    /// Rolls the deployment back to its previous revision (`kubectl rollout undo`).
    async fn undo(&self, variant: Variant) -> Result<()>;

    /// Sets the deployment's replica count.
    async fn scale(&self, variant: Variant, replicas: u32) -> Result<()>;

    /// The deployment's desired replica count.
    async fn replicas(&self, variant: Variant) -> Result<u32>;

    /// Log lines of the deployment's pods written at or after `since`.
    async fn logs_since(&self, variant: Variant, since: DateTime<Utc>) -> Result<Vec<LogLine>>;

    /// Reads the run record's slot (kept with the production deployment).
    async fn read_record(&self) -> Result<RecordSlot>;

    /// Writes (`Some`) or removes (`None`) the run record if the slot is still at `version`.
    async fn write_record(&self, text: Option<&str>, version: &str) -> Result<RecordWrite>;

    /// `GET path` on one pod. The default uses the pod's `base_url`; platforms whose pods have no
    /// reachable URL (kube) override it, e.g. through the API server's pod proxy.
    async fn pod_get(&self, pod: &PodInfo, path: &str, timeout: Duration) -> Result<HttpReply> {
        let Some(base) = &pod.base_url else {
            return Err(Error::platform(
                self.name(),
                format!("GET {path} on {}", pod.name),
                "the pod has no reachable URL",
            ));
        };
        http_get(&format!("{}{path}", base.trim_end_matches('/')), timeout)
            .await
            .map_err(|e| Error::platform(self.name(), format!("GET {path} on {}", pod.name), e))
    }
}

/// A plain GET with a timeout; the error is a message. One client (and its connection pool)
/// for every call: pods are asked every tick.
pub(crate) async fn http_get(
    url: &str,
    timeout: Duration,
) -> std::result::Result<HttpReply, String> {
    static CLIENT: std::sync::OnceLock<std::result::Result<reqwest::Client, String>> =
        std::sync::OnceLock::new();
    let client = CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)?;
    let response = client
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| e.to_string())?;
    Ok(HttpReply { status, body })
}

/// The tag of an image reference: `repo/zai-proxy:1.2.1-canary` → `1.2.1-canary`.
/// A digest (`@sha256:…`) or a missing tag gives `None`.
pub fn image_tag(image: &str) -> Option<&str> {
    if image.contains('@') {
        return None;
    }
    let last_segment = image.rsplit('/').next().unwrap_or(image);
    let (_, tag) = last_segment.rsplit_once(':')?;
    (!tag.is_empty()).then_some(tag)
}

/// The image with its tag replaced: (`repo/zai-proxy:1.2.1-canary`, `1.2.1`) → `repo/zai-proxy:1.2.1`.
pub fn with_tag(image: &str, tag: &str) -> String {
    let repo = match image_tag(image) {
        Some(old) => &image[..image.len() - old.len() - 1],
        None => image.split('@').next().unwrap_or(image),
    };
    format!("{repo}:{tag}")
}

/// The stable version of a canary version: `1.2.1-canary` → `1.2.1` (unchanged without suffix).
pub fn stable_version(version: &str) -> &str {
    version.strip_suffix("-canary").unwrap_or(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_read_and_replaced() {
        assert_eq!(
            image_tag("ronaldraygun/zai-proxy:1.2.1-canary"),
            Some("1.2.1-canary")
        );
        assert_eq!(image_tag("localhost:5000/zai-proxy:1.0.0"), Some("1.0.0"));
        assert_eq!(image_tag("localhost:5000/zai-proxy"), None);
        assert_eq!(image_tag("zai-proxy@sha256:abc"), None);
        assert_eq!(
            with_tag("ronaldraygun/zai-proxy:1.2.1-canary", "1.2.1"),
            "ronaldraygun/zai-proxy:1.2.1"
        );
        assert_eq!(
            with_tag("localhost:5000/zai-proxy", "2"),
            "localhost:5000/zai-proxy:2"
        );
        assert_eq!(stable_version("1.2.1-canary"), "1.2.1");
        assert_eq!(stable_version("1.2.1"), "1.2.1");
    }
}

#[cfg(test)]
mod object_safety {
    use std::sync::Arc;

    use super::Platform;
    use crate::signals::SignalSource;

    #[allow(dead_code)]
    fn platforms_and_sources_are_objects(p: Arc<dyn Platform>, s: Box<dyn SignalSource>) {
        fn send<T: Send>(_: &T) {}
        send(&p);
        send(&s);
    }
}
