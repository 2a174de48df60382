//! What a deployment is made of: versions (tag → binary/image + config), pod templates,
//! readiness probes, the rolling-update strategy and the restart back-off.
//!
//! These are plain data; the controller ([`super::controller`]) turns them into pods.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zai_promoter::Variant;

/// What runs a version: a binary on this machine, or a locally built container image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Artifact {
    /// A local executable (the `zai-proxy` binary).
    Binary(PathBuf),
    /// A container image reference (`zai-proxy-rehearsal:1.2.1`), already present locally.
    Image(String),
}

/// One version: the tag operators see plus what it is made of.
///
/// A tag like `1.2.1-canary` and its promoted twin `1.2.1` normally share the artifact and the
/// configuration; a scenario may give them different environments (e.g. its own fake-upstream
/// URL), exactly as two manifests could.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionSpec {
    /// The image tag, e.g. `1.2.1-canary`.
    pub tag: String,
    /// Binary or image.
    pub artifact: Artifact,
    /// Container environment (the platform adds `LISTEN_ADDR`, `DEPLOYMENT_VARIANT`,
    /// `ZAI_PROXY_VERSION`).
    pub env: BTreeMap<String, String>,
    /// Where the readiness probe looks.
    pub probe: ReadinessProbe,
}

/// The port a readiness probe targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbePort {
    /// The container port the proxy listens on (the correct spec).
    #[default]
    Container,
    /// A port the container does not listen on — the classic spec mistake
    /// (`readinessProbe.httpGet.port: 8081` while the proxy listens on 8080). The platform
    /// reserves such a port per pod so nothing else answers on it.
    Mismatched,
}

/// An HTTP readiness probe (`readinessProbe.httpGet`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessProbe {
    /// Path, `/readyz` for the proxy.
    pub path: String,
    /// Which port.
    pub port: ProbePort,
}

impl Default for ReadinessProbe {
    fn default() -> Self {
        ReadinessProbe {
            path: "/readyz".to_owned(),
            port: ProbePort::Container,
        }
    }
}

/// One revision of a deployment's pod template.
///
/// Two templates are the same revision when they are equal — the Kubernetes object included —
/// so setting an old image again (or `rollout undo`) re-activates the old revision, as a
/// Deployment re-uses the ReplicaSet whose template matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodTemplate {
    /// The image string the promoter sees (`zai-proxy:1.2.1`).
    pub image: String,
    /// The `version` label.
    pub version: String,
    /// Resolved from the version catalog.
    pub spec: VersionSpec,
    /// The Kubernetes `PodTemplateSpec` as JSON (canonical: typed round trip, without
    /// `pod-template-hash`); `Null` when the template was not made through the API.
    #[serde(default)]
    pub manifest: serde_json::Value,
}

/// Rolling update parameters (Kubernetes `RollingUpdate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollingUpdate {
    /// Extra pods allowed above `replicas` during an update.
    pub max_surge: u32,
    /// Pods allowed to be unavailable below `replicas` during an update.
    pub max_unavailable: u32,
}

impl Default for RollingUpdate {
    fn default() -> Self {
        RollingUpdate {
            max_surge: 1,
            max_unavailable: 0,
        }
    }
}

/// Restart back-off after a container exits (kubelet's CrashLoopBackOff).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Delay before the first restart.
    pub initial: Duration,
    /// Upper bound for the delay.
    pub max: Duration,
    /// A container that ran this long without exiting resets the back-off.
    pub reset_after: Duration,
}

impl Backoff {
    /// Delay before restart number `restarts + 1`: `initial × 2^restarts`, capped at `max`.
    pub fn delay(&self, restarts: u32) -> Duration {
        let factor = 2u32.saturating_pow(restarts.min(16));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(8),
            reset_after: Duration::from_secs(30),
        }
    }
}

/// Timing of the controller and the kubelet-like parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// How often readiness is probed and the rollout reconciled.
    pub probe_period: Duration,
    /// Probe timeout.
    pub probe_timeout: Duration,
    /// `terminationGracePeriodSeconds`: SIGTERM, then SIGKILL after this.
    pub termination_grace: Duration,
    /// Restart back-off.
    pub backoff: Backoff,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            probe_period: Duration::from_millis(200),
            probe_timeout: Duration::from_secs(1),
            termination_grace: Duration::from_secs(15),
            backoff: Backoff::default(),
        }
    }
}

/// A deployment as created by the harness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentSpec {
    /// Which of the two deployments.
    pub variant: Variant,
    /// Kubernetes-style name (`zai-proxy`, `zai-proxy-test`).
    pub name: String,
    /// Desired replicas.
    pub replicas: u32,
    /// Initial template.
    pub template: PodTemplate,
    /// Strategy.
    pub strategy: RollingUpdate,
}

/// The default deployment name of a variant, as in the original manifests.
pub fn deployment_name(variant: Variant) -> &'static str {
    match variant {
        Variant::Production => "zai-proxy",
        Variant::Test => "zai-proxy-test",
    }
}

/// Builds a pod's environment: the version's env plus what the platform owns. The platform's
/// keys win only where the version does not set them (a spec may deliberately set its own
/// `DEPLOYMENT_VARIANT`).
pub fn pod_env(
    spec: &VersionSpec,
    variant: Variant,
    version: &str,
    listen: &str,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("LISTEN_ADDR".to_owned(), listen.to_owned());
    env.insert("DEPLOYMENT_VARIANT".to_owned(), variant.label().to_owned());
    env.insert("ZAI_PROXY_VERSION".to_owned(), version.to_owned());
    for (k, v) in &spec.env {
        env.insert(k.clone(), v.clone());
    }
    // The listen address is the platform's: the container port is what the service and the
    // probe are wired to.
    env.insert("LISTEN_ADDR".to_owned(), listen.to_owned());
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            reset_after: Duration::from_secs(1),
        };
        assert_eq!(b.delay(0), Duration::from_millis(100));
        assert_eq!(b.delay(1), Duration::from_millis(200));
        assert_eq!(b.delay(3), Duration::from_millis(800));
        assert_eq!(b.delay(4), Duration::from_millis(1000));
        assert_eq!(b.delay(60), Duration::from_millis(1000));
    }

    #[test]
    fn pod_env_keeps_platform_listen_addr() {
        let mut env = BTreeMap::new();
        env.insert("LISTEN_ADDR".to_owned(), "0.0.0.0:8080".to_owned());
        env.insert("MAX_WORKERS".to_owned(), "2".to_owned());
        let spec = VersionSpec {
            tag: "1.0.0".into(),
            artifact: Artifact::Binary("/bin/true".into()),
            env,
            probe: ReadinessProbe::default(),
        };
        let env = pod_env(&spec, Variant::Test, "1.0.0", "127.0.0.1:5000");
        assert_eq!(env["LISTEN_ADDR"], "127.0.0.1:5000");
        assert_eq!(env["DEPLOYMENT_VARIANT"], "test");
        assert_eq!(env["MAX_WORKERS"], "2");
        assert_eq!(env["ZAI_PROXY_VERSION"], "1.0.0");
    }
}
