//! The Kubernetes objects the API server shows, built from the controller's state (pure):
//! Deployments with their status and conditions, ReplicaSets (one per template revision,
//! owned by the Deployment, with `deployment.kubernetes.io/revision`), Pods with container
//! statuses, Endpoints; plus validation of a Deployment and label/field selectors.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
    ReplicaSetStatus,
};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference,
    Pod, PodCondition, PodStatus, PodTemplateSpec, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use zai_promoter::Variant;

use super::status::ApiError;
use crate::platform::controller::{Observed, PodSnapshot, RevisionSnapshot, template_hash};
use crate::platform::spec::{PodTemplate, RollingUpdate};

/// The revision annotation of Deployments and ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The label that ties a ReplicaSet's pods to its template.
pub const TEMPLATE_HASH: &str = "pod-template-hash";

/// What a valid Deployment tells the controller.
#[derive(Debug, Clone)]
pub struct CheckedDeployment {
    /// From the template's `variant` label.
    pub variant: Variant,
    /// `spec.replicas` (default 1).
    pub replicas: u32,
    /// `spec.strategy.rollingUpdate`.
    pub strategy: RollingUpdate,
    /// `spec.template`.
    pub template: PodTemplateSpec,
}

/// Validates a Deployment as the API server would (422 with the field), `old` for updates
/// (the selector is immutable).
pub fn validate_deployment(
    d: &Deployment,
    old: Option<&Deployment>,
) -> Result<CheckedDeployment, ApiError> {
    let name = d.metadata.name.clone().unwrap_or_default();
    let invalid = |field: &str, why: &str| ApiError::invalid("deployments", &name, field, why);
    if name.is_empty() {
        return Err(invalid("metadata.name", "Required value"));
    }
    let spec = d
        .spec
        .as_ref()
        .ok_or_else(|| invalid("spec", "Required value"))?;
    let selector = spec.selector.match_labels.clone().unwrap_or_default();
    if selector.is_empty() {
        return Err(invalid(
            "spec.selector",
            "Invalid value: empty selector is invalid for deployment",
        ));
    }
    if let Some(old) = old {
        let old_selector = old.spec.as_ref().map(|s| s.selector.clone());
        if old_selector.as_ref() != Some(&spec.selector) {
            return Err(invalid(
                "spec.selector",
                "Invalid value: field is immutable",
            ));
        }
    }
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    if selector.iter().any(|(k, v)| labels.get(k) != Some(v)) {
        return Err(invalid(
            "spec.template.metadata.labels",
            "Invalid value: `selector` does not match template `labels`",
        ));
    }
    let containers = spec
        .template
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    if containers.is_empty() {
        return Err(invalid("spec.template.spec.containers", "Required value"));
    }
    for (i, c) in containers.iter().enumerate() {
        if c.image.as_deref().unwrap_or_default().is_empty() {
            return Err(invalid(
                &format!("spec.template.spec.containers[{i}].image"),
                "Required value",
            ));
        }
    }
    let replicas = spec.replicas.unwrap_or(1);
    let replicas = u32::try_from(replicas).map_err(|_| {
        invalid(
            "spec.replicas",
            &format!("Invalid value: {replicas}: must be greater than or equal to 0"),
        )
    })?;
    let variant = match labels.get("variant").map(String::as_str) {
        Some("production") => Variant::Production,
        Some("test") => Variant::Test,
        other => {
            return Err(invalid(
                "spec.template.metadata.labels[variant]",
                &format!(
                    "Unsupported value: {other:?}: the simulated cluster runs variant=production|test"
                ),
            ));
        }
    };
    let rolling = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.clone())
        .unwrap_or_default();
    let surge = int_or_percent(rolling.max_surge.as_ref(), replicas, true, 1);
    let unavailable = int_or_percent(rolling.max_unavailable.as_ref(), replicas, false, 0);
    if surge == 0 && unavailable == 0 {
        return Err(invalid(
            "spec.strategy.rollingUpdate.maxUnavailable",
            "Invalid value: may not be 0 when `maxSurge` is 0",
        ));
    }
    Ok(CheckedDeployment {
        variant,
        replicas,
        strategy: RollingUpdate {
            max_surge: surge,
            max_unavailable: unavailable,
        },
        template: spec.template.clone(),
    })
}

/// `maxSurge` rounds percentages up, `maxUnavailable` down (Kubernetes' rule).
fn int_or_percent(v: Option<&IntOrString>, replicas: u32, round_up: bool, default: u32) -> u32 {
    match v {
        None => default,
        Some(IntOrString::Int(n)) => u32::try_from(*n).unwrap_or(0),
        Some(IntOrString::String(s)) => {
            let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            let exact = f64::from(replicas) * pct / 100.0;
            (if round_up {
                exact.ceil()
            } else {
                exact.floor()
            }) as u32
        }
    }
}

/// The first container's image.
pub fn container_image(t: &PodTemplateSpec) -> Option<String> {
    t.spec.as_ref()?.containers.first()?.image.clone()
}

/// The first container's name.
pub fn container_name(t: &PodTemplate) -> String {
    t.manifest
        .pointer("/spec/containers/0/name")
        .and_then(|v| v.as_str())
        .unwrap_or("proxy")
        .to_owned()
}

/// The template as stored with a revision: typed round trip, without `pod-template-hash`.
pub fn canonical_template(t: &PodTemplateSpec) -> serde_json::Value {
    let mut t = t.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(TEMPLATE_HASH);
    }
    serde_json::to_value(&t).unwrap_or_default()
}

/// A spec as JSON, for "did it change" (generation).
pub fn spec_json(s: &DeploymentSpec) -> serde_json::Value {
    serde_json::to_value(s).unwrap_or_default()
}

fn non_zero(n: u32) -> Option<i32> {
    (n > 0).then(|| i32::try_from(n).unwrap_or(i32::MAX))
}

fn condition(type_: &str, ok: bool, reason: &str, message: String) -> DeploymentCondition {
    let now = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    DeploymentCondition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_update_time: now.clone(),
        last_transition_time: now,
    }
}

/// The stored Deployment with the controller's last status, the revision annotation and a
/// resource version.
pub fn deployment_with_status(
    stored: &Deployment,
    spec_version: u64,
    observed: Observed,
    revision: i64,
) -> Deployment {
    let mut d = stored.clone();
    let name = d.metadata.name.clone().unwrap_or_default();
    d.metadata.resource_version = Some(spec_version.max(observed.resource_version).to_string());
    d.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(REVISION.to_owned(), revision.to_string());
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as u32;
    let max_unavailable = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref())
        .map(|r| int_or_percent(r.max_unavailable.as_ref(), desired, false, 0))
        .unwrap_or(0);
    let available_ok = observed.available + max_unavailable >= desired;
    let complete = observed.updated == desired
        && observed.replicas == desired
        && observed.available >= desired;
    d.status = Some(DeploymentStatus {
        observed_generation: (observed.generation > 0).then_some(observed.generation),
        replicas: non_zero(observed.replicas),
        updated_replicas: non_zero(observed.updated),
        ready_replicas: non_zero(observed.ready),
        available_replicas: non_zero(observed.available),
        unavailable_replicas: non_zero(desired.saturating_sub(observed.available)),
        terminating_replicas: None,
        collision_count: None,
        conditions: (observed.generation > 0).then(|| {
            vec![
                condition(
                    "Available",
                    available_ok,
                    if available_ok {
                        "MinimumReplicasAvailable"
                    } else {
                        "MinimumReplicasUnavailable"
                    },
                    if available_ok {
                        "Deployment has minimum availability.".to_owned()
                    } else {
                        "Deployment does not have minimum availability.".to_owned()
                    },
                ),
                if complete {
                    condition(
                        "Progressing",
                        true,
                        "NewReplicaSetAvailable",
                        format!("ReplicaSet \"{name}\" has successfully progressed."),
                    )
                } else {
                    condition(
                        "Progressing",
                        true,
                        "ReplicaSetUpdated",
                        format!("ReplicaSet \"{name}\" is progressing."),
                    )
                },
            ]
        }),
    });
    d
}

fn selector_labels(d: &Deployment) -> BTreeMap<String, String> {
    d.spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default()
}

fn template_of(r: &PodTemplate) -> PodTemplateSpec {
    serde_json::from_value(r.manifest.clone()).unwrap_or_default()
}

fn rs_name(d: &Deployment, t: &PodTemplate) -> String {
    format!(
        "{}-{}",
        d.metadata.name.as_deref().unwrap_or_default(),
        template_hash(t)
    )
}

fn owner(kind: &str, name: String, uid: String) -> OwnerReference {
    OwnerReference {
        api_version: if kind == "Deployment" || kind == "ReplicaSet" {
            "apps/v1"
        } else {
            "v1"
        }
        .to_owned(),
        kind: kind.to_owned(),
        name,
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A pod's labels: the template's plus `pod-template-hash`.
pub fn pod_labels(_d: &Deployment, p: &PodSnapshot) -> BTreeMap<String, String> {
    let mut labels = template_of(&p.template)
        .metadata
        .and_then(|m| m.labels)
        .unwrap_or_default();
    labels.insert(TEMPLATE_HASH.to_owned(), template_hash(&p.template));
    labels
}

/// One ReplicaSet per template revision.
pub fn replica_set(
    d: &Deployment,
    r: &RevisionSnapshot,
    desired: u32,
    resource_version: u64,
) -> ReplicaSet {
    let hash = template_hash(&r.template);
    let mut template = template_of(&r.template);
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(TEMPLATE_HASH.to_owned(), hash.clone());
    let mut labels = meta.labels.clone().unwrap_or_default();
    labels.insert(TEMPLATE_HASH.to_owned(), hash.clone());
    let mut selector = selector_labels(d);
    selector.insert(TEMPLATE_HASH.to_owned(), hash.clone());
    let replicas = if r.current { desired } else { r.pods };
    let uid = d.metadata.uid.clone().unwrap_or_default();
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(rs_name(d, &r.template)),
            namespace: d.metadata.namespace.clone(),
            uid: Some(format!("{uid}-rs{}", r.id)),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([
                (REVISION.to_owned(), r.number.to_string()),
                (
                    "deployment.kubernetes.io/desired-replicas".to_owned(),
                    desired.to_string(),
                ),
            ])),
            owner_references: Some(vec![owner(
                "Deployment",
                d.metadata.name.clone().unwrap_or_default(),
                uid,
            )]),
            creation_timestamp: d.metadata.creation_timestamp.clone(),
            generation: Some(1),
            resource_version: Some(resource_version.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            },
            template: Some(template),
            min_ready_seconds: None,
        }),
        status: Some(ReplicaSetStatus {
            replicas: i32::try_from(r.pods).unwrap_or(i32::MAX),
            ready_replicas: non_zero(r.ready),
            available_replicas: non_zero(r.ready),
            fully_labeled_replicas: non_zero(r.pods),
            observed_generation: Some(1),
            ..ReplicaSetStatus::default()
        }),
    }
}

fn to_time(t: chrono::DateTime<chrono::Utc>) -> Option<Time> {
    k8s_openapi::jiff::Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32)
        .ok()
        .map(Time)
}

/// A pod with its container status.
pub fn pod(d: &Deployment, p: &PodSnapshot, resource_version: u64) -> Pod {
    let template = template_of(&p.template);
    let mut spec = template.spec.unwrap_or_default();
    spec.node_name = Some("rehearsal-node".to_owned());
    let container = container_name(&p.template);
    let running = p.status.running;
    let state = if running {
        ContainerState {
            running: Some(ContainerStateRunning {
                started_at: p.status.started_at.and_then(to_time),
            }),
            ..ContainerState::default()
        }
    } else {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(
                    p.status
                        .waiting_reason
                        .clone()
                        .unwrap_or_else(|| "ContainerCreating".to_owned()),
                ),
                message: None,
            }),
            ..ContainerState::default()
        }
    };
    let last_state = p.status.last_exit_code.map(|code| ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: i32::try_from(code).unwrap_or(-1),
            reason: Some(if code == 0 { "Completed" } else { "Error" }.to_owned()),
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    });
    let flag = |b: bool| if b { "True" } else { "False" }.to_owned();
    let cond = |t: &str, ok: bool| PodCondition {
        type_: t.to_owned(),
        status: flag(ok),
        ..PodCondition::default()
    };
    let hash = template_hash(&p.template);
    Pod {
        metadata: ObjectMeta {
            name: Some(p.name.clone()),
            namespace: d.metadata.namespace.clone(),
            uid: Some(format!(
                "{}-{}",
                d.metadata.uid.as_deref().unwrap_or_default(),
                p.name
            )),
            labels: Some(pod_labels(d, p)),
            annotations: template.metadata.and_then(|m| m.annotations),
            owner_references: Some(vec![owner(
                "ReplicaSet",
                rs_name(d, &p.template),
                format!(
                    "{}-rs{}",
                    d.metadata.uid.as_deref().unwrap_or_default(),
                    p.revision
                ),
            )]),
            creation_timestamp: to_time(p.created_at),
            resource_version: Some(resource_version.to_string()),
            generate_name: Some(format!(
                "{}-{hash}-",
                d.metadata.name.as_deref().unwrap_or_default()
            )),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: Some(PodStatus {
            phase: Some(
                if running || p.status.restarts > 0 {
                    "Running"
                } else {
                    "Pending"
                }
                .to_owned(),
            ),
            conditions: Some(vec![
                cond("PodScheduled", true),
                cond("Initialized", true),
                cond("ContainersReady", p.ready),
                cond("Ready", p.ready),
            ]),
            host_ip: Some("127.0.0.1".to_owned()),
            pod_ip: Some("127.0.0.1".to_owned()),
            start_time: to_time(p.created_at),
            container_statuses: Some(vec![ContainerStatus {
                name: container,
                image: p.template.image.clone(),
                image_id: String::new(),
                ready: p.ready,
                restart_count: i32::try_from(p.status.restarts).unwrap_or(i32::MAX),
                started: Some(running),
                state: Some(state),
                last_state,
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

/// Endpoints of a Service: one subset per ready pod (each listens on its own port).
pub fn endpoints(service: &Service, ready: &[(String, u16)], resource_version: u64) -> Endpoints {
    let mut meta = service.metadata.clone();
    meta.resource_version = Some(resource_version.to_string());
    meta.uid = None;
    Endpoints {
        metadata: meta,
        subsets: Some(
            ready
                .iter()
                .map(|(pod, port)| EndpointSubset {
                    addresses: Some(vec![EndpointAddress {
                        ip: "127.0.0.1".to_owned(),
                        target_ref: Some(ObjectReference {
                            kind: Some("Pod".to_owned()),
                            name: Some(pod.clone()),
                            namespace: service.metadata.namespace.clone(),
                            ..ObjectReference::default()
                        }),
                        ..EndpointAddress::default()
                    }]),
                    ports: Some(vec![EndpointPort {
                        name: Some("http".to_owned()),
                        port: i32::from(*port),
                        protocol: Some("TCP".to_owned()),
                        ..EndpointPort::default()
                    }]),
                    not_ready_addresses: None,
                })
                .collect(),
        ),
    }
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

/// A `labelSelector` plus the `fieldSelector` fields that matter here (`metadata.name`,
/// `metadata.namespace`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    labels: Vec<Requirement>,
    name: Option<String>,
}

impl Selector {
    /// Parses `app=zai-proxy,variant!=test,tier,!legacy` and `metadata.name=x`; anything else
    /// (set-based `in (…)`, other fields) is a 400.
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, ApiError> {
        let mut out = Selector::default();
        for part in labels.unwrap_or_default().split(',').map(str::trim) {
            if part.is_empty() {
                continue;
            }
            let bad = || ApiError::bad_request(&format!("unable to parse requirement: {part:?}"));
            let req = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::NotExists(k.trim().to_owned())
            } else if part.contains(' ') || part.contains('(') {
                return Err(bad());
            } else {
                Requirement::Exists(part.to_owned())
            };
            out.labels.push(req);
        }
        for part in fields.unwrap_or_default().split(',').map(str::trim) {
            if part.is_empty() {
                continue;
            }
            let (k, v) = part
                .split_once("==")
                .or_else(|| part.split_once('='))
                .ok_or_else(|| {
                    ApiError::bad_request(&format!("invalid field selector: {part:?}"))
                })?;
            match k.trim() {
                "metadata.name" => out.name = Some(v.trim().to_owned()),
                // One namespace; kubectl sends these.
                "metadata.namespace" | "involvedObject.namespace" => {}
                other => {
                    return Err(ApiError::bad_request(&format!(
                        "field label not supported: {other}"
                    )));
                }
            }
        }
        Ok(out)
    }

    /// Whether an object's metadata is selected.
    pub fn matches(&self, meta: &ObjectMeta) -> bool {
        if let Some(name) = &self.name
            && meta.name.as_ref() != Some(name)
        {
            return false;
        }
        let empty = BTreeMap::new();
        let labels = meta.labels.as_ref().unwrap_or(&empty);
        self.labels.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn selectors_match_labels_and_names() {
        let m = meta("a", &[("app", "zai-proxy"), ("variant", "test")]);
        let s = |l: &str| Selector::parse(Some(l), None).expect("parses");
        assert!(s("app=zai-proxy,variant=test").matches(&m));
        assert!(s("app==zai-proxy").matches(&m));
        assert!(!s("app=zai-proxy,variant=production").matches(&m));
        assert!(s("variant!=production").matches(&m));
        assert!(s("variant").matches(&m));
        assert!(!s("!variant").matches(&m));
        assert!(s("").matches(&m));
        let by_name = Selector::parse(None, Some("metadata.name=a")).expect("parses");
        assert!(by_name.matches(&m));
        assert!(!by_name.matches(&meta("b", &[])));
        assert_eq!(
            Selector::parse(Some("variant in (a,b)"), None)
                .map_err(|e| e.code)
                .err(),
            Some(400)
        );
        assert!(Selector::parse(None, Some("spec.nodeName=x")).is_err());
    }

    #[test]
    fn percentages_round_like_kubernetes() {
        let pct = |s: &str| IntOrString::String(s.to_owned());
        assert_eq!(int_or_percent(Some(&pct("25%")), 3, true, 1), 1);
        assert_eq!(int_or_percent(Some(&pct("25%")), 3, false, 0), 0);
        assert_eq!(int_or_percent(Some(&IntOrString::Int(2)), 3, false, 0), 2);
        assert_eq!(int_or_percent(None, 3, true, 1), 1);
    }
}
