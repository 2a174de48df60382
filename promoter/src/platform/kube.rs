//! The Kubernetes platform: Deployments `zai-proxy` (production) and `zai-proxy-test`
//! (canary) in one namespace, container `proxy`, pod labels
//! `app=zai-proxy,variant=production|test,version=…`.
//!
//! * set image: strategic-merge patch of the container image and the pod template's (and the
//!   Deployment's) `version` label;
//! * rollout status: from the Deployment's status and conditions, like `kubectl rollout status`;
//! * undo: like `kubectl rollout undo` — the ReplicaSet with the highest revision below the
//!   current one supplies the template (minus `pod-template-hash`);
//! * run record: the annotation `zai-promoter.io/run` on the production Deployment, written
//!   with a merge patch that names the `resourceVersion` read (409 Conflict if anyone wrote
//!   in between);
//! * crash loops: the engine reads container `restartCount` and `CrashLoopBackOff` waiting
//!   reasons from the pods, never the progress deadline.
//!
//! Pods have no `base_url`: a pod's `/health` and `/metrics` are fetched through the API
//! server's pod proxy (`GET pods/NAME:8080/proxy/PATH`, RBAC `get pods/proxy`), on by
//! default. With the proxy turned off ([`KubePlatform::with_pod_proxy`]`(false)`) or forbidden
//! by the API server, [`Platform::pod_get`] fails with [`Error::PodUnreachable`] and the
//! checks that need it say "not evaluated" — nothing is made up from readiness (the readiness
//! probe is `/readyz`, a different question from `/health`).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

use super::{
    HttpReply, LogLine, Platform, PodInfo, RecordSlot, RecordWrite, RolloutStatus, Variant,
};
use crate::config::KubeSettings;
use crate::error::{Error, Result};

const REVISION: &str = "deployment.kubernetes.io/revision";
const FIELD_MANAGER: &str = "zai-promoter";

/// Kubernetes through the API server.
#[derive(Clone)]
pub struct KubePlatform {
    client: Client,
    settings: KubeSettings,
    pod_proxy: bool,
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

fn err(op: &str, e: impl std::fmt::Display) -> Error {
    Error::platform("kube", op, e)
}

impl KubePlatform {
    /// A platform over an existing client (tests pass a mocked one).
    pub fn new(client: Client, settings: KubeSettings) -> Self {
        KubePlatform {
            client,
            settings,
            pod_proxy: true,
        }
    }

    /// Connects with the ambient configuration (kubeconfig or in-cluster).
    pub async fn connect(settings: KubeSettings) -> Result<Self> {
        let client = Client::try_default().await.map_err(|e| err("connect", e))?;
        Ok(KubePlatform::new(client, settings))
    }

    /// Connects with the current context of the kubeconfig file at `path`.
    pub async fn from_kubeconfig(path: &std::path::Path, settings: KubeSettings) -> Result<Self> {
        let kubeconfig = Kubeconfig::read_from(path)
            .map_err(|e| err(&format!("read kubeconfig {}", path.display()), e))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| err(&format!("kubeconfig {}", path.display()), e))?;
        let client = Client::try_from(config).map_err(|e| err("connect", e))?;
        Ok(KubePlatform::new(client, settings))
    }

    /// Whether pods' `/health` and `/metrics` are fetched through the API server's pod proxy
    /// (default on).
    pub fn with_pod_proxy(mut self, yes: bool) -> Self {
        self.pod_proxy = yes;
        self
    }

    fn name_of(&self, v: Variant) -> &str {
        match v {
            Variant::Production => &self.settings.production,
            Variant::Test => &self.settings.canary,
        }
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.settings.namespace)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.settings.namespace)
    }

    async fn deployment(&self, v: Variant) -> Result<Deployment> {
        let name = self.name_of(v);
        self.deployments()
            .get(name)
            .await
            .map_err(|e| err(&format!("get deployment/{name}"), e))
    }

    fn selector(d: &Deployment) -> Result<String> {
        let labels = d
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.clone())
            .unwrap_or_default();
        if labels.is_empty() {
            return Err(err(
                "list pods",
                "the Deployment has no matchLabels selector",
            ));
        }
        Ok(labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","))
    }

    fn pod_info(&self, p: &Pod, variant: Variant) -> PodInfo {
        let status = p.status.clone().unwrap_or_default();
        let container = &self.settings.container;
        let cs = status
            .container_statuses
            .as_ref()
            .and_then(|all| all.iter().find(|c| &c.name == container).cloned());
        let ready = status
            .conditions
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let image = p
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| &c.name == container))
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        PodInfo {
            name: p.metadata.name.clone().unwrap_or_default(),
            variant,
            phase: status.phase.clone().unwrap_or_else(|| "Unknown".into()),
            ready,
            restarts: cs
                .as_ref()
                .map(|c| c.restart_count.max(0) as u32)
                .unwrap_or(0),
            waiting_reason: cs
                .as_ref()
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.clone()),
            version: p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("version").cloned()),
            image,
            base_url: None,
            started_at: status.start_time.map(|t| to_chrono(t.0)),
        }
    }

    async fn pods_of(&self, v: Variant) -> Result<Vec<Pod>> {
        let d = self.deployment(v).await?;
        let selector = Self::selector(&d)?;
        let list = self
            .pods()
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| err("list pods", e))?;
        Ok(list
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect())
    }
}

fn to_chrono(t: k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32).unwrap_or_default()
}

/// The rollout state of a Deployment, judged as `kubectl rollout status` does (pure).
pub fn rollout_status_of(d: &Deployment) -> RolloutStatus {
    let spec = d.spec.clone().unwrap_or_default();
    let st = d.status.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1).max(0) as u32;
    let updated = st.updated_replicas.unwrap_or(0).max(0) as u32;
    let ready = st.ready_replicas.unwrap_or(0).max(0) as u32;
    let available = st.available_replicas.unwrap_or(0).max(0) as u32;
    let total = st.replicas.unwrap_or(0).max(0) as u32;
    let generation = d.metadata.generation.unwrap_or(0);
    let observed = st.observed_generation.unwrap_or(0) >= generation;
    let failure = st
        .conditions
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.type_ == "Progressing"))
        .filter(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
        .map(|c| {
            c.message
                .clone()
                .unwrap_or_else(|| "ProgressDeadlineExceeded".into())
        });
    let (complete, message) = if !observed {
        (false, "waiting for the rollout to be observed".to_owned())
    } else if updated < desired {
        (
            false,
            format!("{updated} of {desired} new replicas updated"),
        )
    } else if total > updated {
        (
            false,
            format!("{} old replicas pending termination", total - updated),
        )
    } else if available < updated {
        (
            false,
            format!("{available} of {updated} updated replicas available"),
        )
    } else {
        (
            true,
            format!("successfully rolled out ({available}/{desired} available)"),
        )
    };
    RolloutStatus {
        desired,
        updated,
        ready,
        available,
        total,
        observed,
        complete,
        failure,
        message,
    }
}

fn revision(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<i64> {
    meta.annotations.as_ref()?.get(REVISION)?.parse().ok()
}

/// The merge patch that makes `current`'s pod template equal to the previous ReplicaSet's
/// (pure). `None` when no earlier revision exists.
pub fn undo_patch(d: &Deployment, replica_sets: &[ReplicaSet]) -> Result<serde_json::Value> {
    let uid = d.metadata.uid.clone();
    let current = revision(&d.metadata)
        .ok_or_else(|| err("undo", "the Deployment has no revision annotation"))?;
    let owned: Vec<&ReplicaSet> = replica_sets
        .iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| o.iter().any(|o| Some(&o.uid) == uid.as_ref()))
        })
        .collect();
    let previous = owned
        .iter()
        .filter_map(|rs| Some((revision(&rs.metadata)?, *rs)))
        .filter(|(r, _)| *r < current)
        .max_by_key(|(r, _)| *r)
        .map(|(_, rs)| rs)
        .ok_or_else(|| {
            err(
                "undo",
                format!("no revision before {current} to roll back to"),
            )
        })?;
    let mut template = previous
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .ok_or_else(|| err("undo", "the previous ReplicaSet has no template"))?;
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove("pod-template-hash");
    }
    let mut value = serde_json::to_value(&template).map_err(|e| err("undo", e))?;
    // A merge patch keeps keys it does not mention: null out template labels/annotations that
    // the previous template did not have.
    let cur_meta = d
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.clone())
        .unwrap_or_default();
    for field in ["labels", "annotations"] {
        let cur: BTreeMap<String, String> = match field {
            "labels" => cur_meta.labels.clone().unwrap_or_default(),
            _ => cur_meta.annotations.clone().unwrap_or_default(),
        };
        for key in cur.keys() {
            let ptr = value.pointer(&format!(
                "/metadata/{field}/{}",
                key.replace('~', "~0").replace('/', "~1")
            ));
            if ptr.is_none() {
                let meta = value
                    .as_object_mut()
                    .map(|o| o.entry("metadata").or_insert_with(|| json!({})));
                if let Some(obj) = meta.and_then(|m| m.as_object_mut()) {
                    let map = obj.entry(field).or_insert_with(|| json!({}));
                    if let Some(m) = map.as_object_mut() {
                        m.insert(key.clone(), serde_json::Value::Null);
                    }
                }
            }
        }
    }
    let version = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .and_then(|l| l.get("version").cloned());
    let mut patch = json!({ "spec": { "template": value } });
    if let Some(v) = version {
        patch["metadata"] = json!({ "labels": { "version": v } });
    }
    Ok(patch)
}

#[async_trait]
impl Platform for KubePlatform {
    fn name(&self) -> &str {
        "kube"
    }

    fn location(&self) -> String {
        format!("kube namespace {}", self.settings.namespace)
    }

    async fn list_pods(&self, variant: Variant) -> Result<Vec<PodInfo>> {
        Ok(self
            .pods_of(variant)
            .await?
            .iter()
            .map(|p| self.pod_info(p, variant))
            .collect())
    }

    async fn image(&self, variant: Variant) -> Result<String> {
        let d = self.deployment(variant).await?;
        d.spec
            .and_then(|s| {
                s.template
                    .spec?
                    .containers
                    .into_iter()
                    .find(|c| c.name == self.settings.container)?
                    .image
            })
            .ok_or_else(|| {
                err(
                    "get image",
                    format!(
                        "no container {} in {}",
                        self.settings.container,
                        self.name_of(variant)
                    ),
                )
            })
    }

    async fn set_image(&self, variant: Variant, image: &str, version: &str) -> Result<()> {
        let patch = json!({
            "metadata": { "labels": { "version": version } },
            "spec": { "template": {
                "metadata": { "labels": { "version": version } },
                "spec": { "containers": [ { "name": self.settings.container, "image": image } ] }
            } }
        });
        let name = self.name_of(variant);
        self.deployments()
            .patch(name, &patch_params(), &Patch::Strategic(patch))
            .await
            .map_err(|e| err(&format!("set image of deployment/{name}"), e))?;
        Ok(())
    }

    async fn rollout_status(&self, variant: Variant) -> Result<RolloutStatus> {
        Ok(rollout_status_of(&self.deployment(variant).await?))
    }

    async fn undo(&self, variant: Variant) -> Result<()> {
        let d = self.deployment(variant).await?;
        let selector = Self::selector(&d)?;
        let rs: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &self.settings.namespace);
        let sets = rs
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| err("list replicasets", e))?;
        let patch = undo_patch(&d, &sets.items)?;
        let name = self.name_of(variant);
        self.deployments()
            .patch(name, &patch_params(), &Patch::Merge(patch))
            .await
            .map_err(|e| err(&format!("undo deployment/{name}"), e))?;
        Ok(())
    }

    async fn scale(&self, variant: Variant, replicas: u32) -> Result<()> {
        let name = self.name_of(variant);
        self.deployments()
            .patch_scale(
                name,
                &patch_params(),
                &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
            )
            .await
            .map_err(|e| err(&format!("scale deployment/{name}"), e))?;
        Ok(())
    }

    async fn replicas(&self, variant: Variant) -> Result<u32> {
        let d = self.deployment(variant).await?;
        Ok(d.spec.and_then(|s| s.replicas).unwrap_or(1).max(0) as u32)
    }

    async fn logs_since(&self, variant: Variant, since: DateTime<Utc>) -> Result<Vec<LogLine>> {
        let since = k8s_openapi::jiff::Timestamp::from_second(since.timestamp())
            .map_err(|e| err("logs", e))?;
        let mut out = Vec::new();
        for p in self.pods_of(variant).await? {
            let name = p.metadata.name.clone().unwrap_or_default();
            let params = LogParams {
                container: Some(self.settings.container.clone()),
                since_time: Some(since),
                timestamps: true,
                ..LogParams::default()
            };
            let text = match self.pods().logs(&name, &params).await {
                Ok(t) => t,
                // A container that has not started yet has no log.
                Err(kube::Error::Api(s)) if s.code == 400 => continue,
                Err(e) => return Err(err(&format!("logs of {name}"), e)),
            };
            out.extend(text.lines().map(|l| {
                let (ts, line) = match l.split_once(' ') {
                    Some((t, rest)) => match DateTime::parse_from_rfc3339(t) {
                        Ok(ts) => (Some(ts.with_timezone(&Utc)), rest),
                        Err(_) => (None, l),
                    },
                    None => (None, l),
                };
                LogLine {
                    pod: name.clone(),
                    timestamp: ts,
                    line: line.to_owned(),
                }
            }));
        }
        Ok(out)
    }

    async fn read_record(&self) -> Result<RecordSlot> {
        let d = self.deployment(Variant::Production).await?;
        Ok(RecordSlot {
            text: d
                .metadata
                .annotations
                .and_then(|mut a| a.remove(crate::runstate::ANNOTATION)),
            version: d.metadata.resource_version.unwrap_or_default(),
        })
    }

    async fn write_record(&self, text: Option<&str>, version: &str) -> Result<RecordWrite> {
        // A merge patch naming the resourceVersion is applied only if the object is still at
        // that version; otherwise the API server answers 409 Conflict.
        let patch = json!({ "metadata": {
            "resourceVersion": version,
            "annotations": { crate::runstate::ANNOTATION: text },
        } });
        let name = self.name_of(Variant::Production);
        match self
            .deployments()
            .patch(name, &patch_params(), &Patch::Merge(patch))
            .await
        {
            Ok(d) => Ok(RecordWrite::Written(
                d.metadata.resource_version.unwrap_or_default(),
            )),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(RecordWrite::Conflict),
            Err(e) => Err(err(
                &format!("write the run record on deployment/{name}"),
                e,
            )),
        }
    }

    async fn pod_get(&self, pod: &PodInfo, path: &str, timeout: Duration) -> Result<HttpReply> {
        if !self.pod_proxy {
            return Err(Error::PodUnreachable {
                pod: pod.name.clone(),
                reason: "the pod proxy is turned off (--no-pod-proxy)".into(),
            });
        }
        let url = format!(
            "/api/v1/namespaces/{}/pods/{}:8080/proxy{path}",
            self.settings.namespace, pod.name
        );
        let op = format!("GET {path} on {}", pod.name);
        let req = http::Request::get(url)
            .body(kube::client::Body::empty())
            .map_err(|e| err("pod proxy", e))?;
        let fetch = async {
            let response = self.client.send(req).await.map_err(|e| err(&op, e))?;
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect_bytes()
                .await
                .map_err(|e| err(&op, e))?;
            Ok::<_, Error>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(timeout, fetch)
            .await
            .map_err(|_| err(&op, format!("timeout after {timeout:?}")))??;
        // The pod's own answer passes through as it is; a `Status` object is the API server
        // speaking (forbidden, no such pod, cannot reach it).
        let is_status = status >= 400
            && serde_json::from_slice::<serde_json::Value>(&bytes)
                .is_ok_and(|v| v.get("kind").and_then(|k| k.as_str()) == Some("Status"));
        if is_status && let Ok(s) = serde_json::from_slice::<kube::core::Status>(&bytes) {
            if status == 401 || status == 403 {
                return Err(Error::PodUnreachable {
                    pod: pod.name.clone(),
                    reason: format!(
                        "the API server refused the pod proxy ({status} {}): {}; grant `get pods/proxy` (deploy/k8s/shared/promoter-rbac.yaml)",
                        s.reason, s.message
                    ),
                });
            }
            return Err(err(&op, format!("{status} {}: {}", s.reason, s.message)));
        }
        Ok(HttpReply {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }
}
