//! Checks of everything under `deploy/` that needs no cluster:
//!
//! * every kustomize render (`kubectl kustomize`) parses into its k8s-openapi type (or, for
//!   the Prometheus Operator CRDs, a strict local struct) and survives a round trip, so a
//!   misspelt field fails;
//! * the canary and production renders differ in exactly names, labels, variant and image;
//! * the promoter's kube platform finds its objects by the labels it uses;
//! * the PrometheusRule and `canary-alerts.json` are generated from the plain rules file
//!   (`ZAI_UPDATE_GENERATED=1` rewrites them; `deploy/prometheus/generate.sh` does that);
//! * the Grafana dashboard compares both variants with queries on real metric names.
//!
//! `kubectl` (with its built-in kustomize) is required when `CI` is set; elsewhere the
//! render tests skip with a one-line reason.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Repository root (the workspace), from this crate's manifest dir.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ lives inside the workspace root")
        .to_path_buf()
}

/// Whether `kubectl kustomize` can run. Without it: fail under CI, skip (with a reason) otherwise.
fn kubectl_available(test: &str) -> bool {
    let ok = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: kubectl (with kustomize) is required when CI is set"
        );
        eprintln!("{test}: skipped: kubectl not found (needed for `kubectl kustomize`)");
    }
    ok
}

/// Render a kustomization directory (relative to the repo) into JSON documents.
fn render(dir: &str) -> Result<Vec<Value>> {
    let path = repo().join(dir);
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&path)
        .output()
        .context("running kubectl kustomize")?;
    ensure!(
        out.status.success(),
        "kubectl kustomize {dir} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_yaml_documents(&String::from_utf8(out.stdout)?)
}

/// Split a multi-document YAML stream into JSON values (empty documents dropped).
fn parse_yaml_documents(text: &str) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(doc).context("parsing YAML document")?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

fn kind_of(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or("<no kind>")
}

fn name_of(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or("<no name>")
}

/// Deserialize into `T`, serialize back, and require the same JSON: a field `T` does not
/// know (a typo, a wrong nesting level) is dropped by the round trip and fails here.
fn round_trip<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<T> {
    let typed: T = serde_json::from_value(doc.clone())
        .with_context(|| format!("{} {} does not parse", kind_of(doc), name_of(doc)))?;
    let back = serde_json::to_value(&typed)?;
    if &back != doc {
        bail!(
            "{} {} changes in a round trip through its type (unknown or misplaced field?)\n\
             rendered: {doc:#}\nre-serialised: {back:#}",
            kind_of(doc),
            name_of(doc),
        );
    }
    Ok(typed)
}

/// Prometheus Operator `ServiceMonitor` (only the fields we use; unknown fields rejected).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitor {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: ServiceMonitorSpec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitorSpec {
    selector: LabelSelector,
    endpoints: Vec<ServiceMonitorEndpoint>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitorEndpoint {
    port: String,
    path: String,
    interval: String,
    scrape_timeout: String,
}

/// Prometheus Operator `PrometheusRule`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PrometheusRule {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: RuleFile,
}

/// A Prometheus rules file (also the PrometheusRule's `spec`).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleGroup {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    alert: String,
    expr: String,
    #[serde(rename = "for")]
    for_: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

/// Type-check one rendered object by its kind.
fn check_typed(doc: &Value) -> Result<()> {
    match (doc["apiVersion"].as_str().unwrap_or(""), kind_of(doc)) {
        ("apps/v1", "Deployment") => round_trip::<Deployment>(doc).map(drop),
        ("v1", "Service") => round_trip::<Service>(doc).map(drop),
        ("v1", "ServiceAccount") => round_trip::<ServiceAccount>(doc).map(drop),
        ("v1", "ConfigMap") => round_trip::<ConfigMap>(doc).map(drop),
        ("rbac.authorization.k8s.io/v1", "Role") => round_trip::<Role>(doc).map(drop),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => round_trip::<RoleBinding>(doc).map(drop),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => round_trip::<ClusterRole>(doc).map(drop),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            round_trip::<ClusterRoleBinding>(doc).map(drop)
        }
        ("monitoring.coreos.com/v1", "ServiceMonitor") => {
            round_trip::<ServiceMonitor>(doc).map(drop)
        }
        ("monitoring.coreos.com/v1", "PrometheusRule") => {
            round_trip::<PrometheusRule>(doc).map(drop)
        }
        (api, kind) => bail!("unexpected object {api} {kind} {}", name_of(doc)),
    }
}

const KUSTOMIZATIONS: &[&str] = &[
    "deploy/k8s/base",
    "deploy/k8s/overlays/production",
    "deploy/k8s/overlays/canary",
    "deploy/k8s/shared",
    "deploy/k8s",
    "deploy/k8s/fleet",
    "deploy/kind/prometheus",
];

#[test]
fn every_rendered_manifest_parses_into_its_kubernetes_type() -> Result<()> {
    if !kubectl_available("every_rendered_manifest_parses_into_its_kubernetes_type") {
        return Ok(());
    }
    for dir in KUSTOMIZATIONS {
        let docs = render(dir)?;
        ensure!(!docs.is_empty(), "{dir} renders nothing");
        for doc in &docs {
            check_typed(doc).with_context(|| format!("in {dir}"))?;
        }
    }
    Ok(())
}

#[test]
fn round_trip_rejects_a_misspelt_field() {
    // The check above is only worth something if a typo fails it.
    let doc = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "zai-proxy"},
        "spec": {"selector": {"matchLabels": {"app": "zai-proxy"}},
                 "template": {"spec": {"containers": [{"name": "proxy", "livenesProbe": {}}]}}}
    });
    assert!(check_typed(&doc).is_err());
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
    docs.iter()
        .find(|d| kind_of(d) == kind && name_of(d) == name)
        .with_context(|| format!("no {kind} {name} in the render"))
}

/// Every leaf path where `a` and `b` differ (arrays compared by index).
fn diff_paths(a: &Value, b: &Value, path: String, out: &mut BTreeSet<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                diff_paths(va, vb, format!("{path}/{k}"), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff_paths(va, vb, format!("{path}/{i}"), out);
            }
        }
        _ if a != b => {
            out.insert(path);
        }
        _ => {}
    }
}

fn env_value<'a>(deployment: &'a Value, name: &str) -> Option<&'a str> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

/// deploy/k8s/fleet: the shared-budget component adds one Redis and points every replica
/// of both variants at it (the Service's name and port), with the key's concurrency budget;
/// the plain install stays without Redis; the Redis pod is hardened too.
#[test]
fn fleet_shares_the_budget_through_one_redis() -> Result<()> {
    if !kubectl_available("fleet_shares_the_budget_through_one_redis") {
        return Ok(());
    }
    let fleet = render("deploy/k8s/fleet")?;
    let service = find(&fleet, "Service", "zai-proxy-redis")?;
    let port = service["spec"]["ports"][0]["port"]
        .as_i64()
        .context("redis service port")?;
    let url = format!("redis://zai-proxy-redis:{port}/0");
    for name in ["zai-proxy", "zai-proxy-test"] {
        let deployment = find(&fleet, "Deployment", name)?;
        ensure!(
            env_value(deployment, "RATE_LIMIT_REDIS_URL") == Some(url.as_str()),
            "{name}: RATE_LIMIT_REDIS_URL is not {url}"
        );
        let budget: u32 = env_value(deployment, "MAX_UPSTREAM_CONCURRENCY")
            .context("MAX_UPSTREAM_CONCURRENCY")?
            .parse()?;
        ensure!(budget > 0, "{name}: budget {budget}");
        // The variant of every other setting is untouched by the component.
        ensure!(env_value(deployment, "ZAI_TARGET_URL").is_some(), "{name}");
    }
    let redis: Deployment = round_trip(find(&fleet, "Deployment", "zai-proxy-redis")?)?;
    let selector = redis.spec.as_ref().context("spec")?.selector.clone();
    let labels = service["spec"]["selector"].clone();
    ensure!(
        serde_json::to_value(selector.match_labels)? == labels,
        "the Service selects the Redis pods"
    );
    let pod = redis
        .spec
        .and_then(|s| s.template.spec)
        .context("redis pod spec")?;
    let c = &pod.containers[0];
    let sc = c
        .security_context
        .as_ref()
        .context("redis securityContext")?;
    ensure!(
        sc.read_only_root_filesystem == Some(true),
        "redis: read-only root"
    );
    ensure!(
        sc.allow_privilege_escalation == Some(false),
        "redis: no escalation"
    );
    ensure!(
        pod.security_context.and_then(|p| p.run_as_non_root) == Some(true),
        "redis: non-root"
    );
    ensure!(c.readiness_probe.is_some(), "redis: readiness probe");
    // Redis selectors never pick proxy pods, and the plain install has no Redis.
    ensure!(labels["app"] != "zai-proxy", "{labels}");
    let plain = render("deploy/k8s")?;
    ensure!(
        plain.iter().all(|d| name_of(d) != "zai-proxy-redis"),
        "deploy/k8s stays without Redis"
    );
    for name in ["zai-proxy", "zai-proxy-test"] {
        ensure!(env_value(find(&plain, "Deployment", name)?, "RATE_LIMIT_REDIS_URL").is_none());
    }
    Ok(())
}

#[test]
fn canary_and_production_differ_only_in_name_labels_variant_and_image() -> Result<()> {
    if !kubectl_available("canary_and_production_differ_only_in_name_labels_variant_and_image") {
        return Ok(());
    }
    let prod = render("deploy/k8s/overlays/production")?;
    let canary = render("deploy/k8s/overlays/canary")?;
    ensure!(
        prod.len() == 2 && canary.len() == 2,
        "each overlay is one Deployment + one Service"
    );

    let (pd, cd) = (
        find(&prod, "Deployment", "zai-proxy")?,
        find(&canary, "Deployment", "zai-proxy-test")?,
    );
    let mut diffs = BTreeSet::new();
    diff_paths(pd, cd, String::new(), &mut diffs);
    let env_index = pd["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .context("env list")?
        .iter()
        .position(|e| e["name"] == "DEPLOYMENT_VARIANT")
        .context("DEPLOYMENT_VARIANT set")?;
    let expected: BTreeSet<String> = [
        "/metadata/name".to_string(),
        "/metadata/labels/variant".into(),
        "/metadata/labels/version".into(),
        "/spec/selector/matchLabels/variant".into(),
        "/spec/template/metadata/labels/variant".into(),
        "/spec/template/metadata/labels/version".into(),
        format!("/spec/template/spec/containers/0/env/{env_index}/value"),
        "/spec/template/spec/containers/0/image".into(),
    ]
    .into();
    ensure!(
        diffs == expected,
        "Deployment differences {diffs:?}, expected {expected:?}"
    );

    for (d, variant) in [(pd, "production"), (cd, "test")] {
        ensure!(d["metadata"]["labels"]["variant"] == variant);
        ensure!(env_value(d, "DEPLOYMENT_VARIANT") == Some(variant));
        // The version label is the image tag, so `kubectl get pods -L version` tells the truth.
        let image = d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .context("image")?;
        let tag = image.rsplit_once(':').context("image has a tag")?.1;
        ensure!(
            d["spec"]["template"]["metadata"]["labels"]["version"] == tag,
            "{variant}: version label != image tag {tag}"
        );
        ensure!(
            tag.ends_with("-canary") == (variant == "test"),
            "{variant}: image tag {tag}"
        );
    }

    let (ps, cs) = (
        find(&prod, "Service", "zai-proxy")?,
        find(&canary, "Service", "zai-proxy-test")?,
    );
    let mut diffs = BTreeSet::new();
    diff_paths(ps, cs, String::new(), &mut diffs);
    let expected: BTreeSet<String> = [
        "/metadata/name",
        "/metadata/labels/variant",
        "/metadata/labels/version",
        "/spec/selector/variant",
    ]
    .map(String::from)
    .into();
    ensure!(
        diffs == expected,
        "Service differences {diffs:?}, expected {expected:?}"
    );
    Ok(())
}

fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// What the promoter's kube platform relies on, checked on the full render.
#[test]
fn promoter_finds_its_objects_by_labels_in_the_full_render() -> Result<()> {
    if !kubectl_available("promoter_finds_its_objects_by_labels_in_the_full_render") {
        return Ok(());
    }
    let docs = render("deploy/k8s")?;
    for doc in &docs {
        ensure!(
            doc["metadata"]["namespace"] == "zai-proxy",
            "{} {} has no namespace",
            kind_of(doc),
            name_of(doc)
        );
    }
    let deployments: BTreeMap<String, Deployment> = docs
        .iter()
        .filter(|d| kind_of(d) == "Deployment")
        .map(|d| Ok((name_of(d).to_string(), serde_json::from_value(d.clone())?)))
        .collect::<Result<_>>()?;
    ensure!(
        deployments.keys().map(String::as_str).collect::<Vec<_>>()
            == ["zai-proxy", "zai-proxy-test"],
        "deployments: {:?}",
        deployments.keys()
    );
    let mut pod_labels = BTreeMap::new();
    for (name, variant) in [("zai-proxy", "production"), ("zai-proxy-test", "test")] {
        let d = &deployments[name];
        let spec = d.spec.as_ref().context("spec")?;
        let template_labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .context("template labels")?;
        // kubectl get pods -l app=zai-proxy,variant=<variant>
        let wanted: BTreeMap<String, String> = [
            ("app".to_string(), "zai-proxy".to_string()),
            ("variant".into(), variant.into()),
        ]
        .into();
        ensure!(
            selector_matches(&wanted, &template_labels),
            "{name}: pod labels {template_labels:?}"
        );
        ensure!(
            template_labels.contains_key("version"),
            "{name}: pods need a version label"
        );
        let selector = spec.selector.match_labels.clone().context("matchLabels")?;
        ensure!(
            selector == wanted,
            "{name}: selector {selector:?} (no version: selectors are immutable)"
        );
        let pod = spec.template.spec.as_ref().context("pod spec")?;
        ensure!(
            pod.containers.len() == 1 && pod.containers[0].name == "proxy",
            "{name}: one container named proxy"
        );
        check_pod_hardening(name, pod)?;
        pod_labels.insert(name, template_labels);
    }
    // Each per-variant selector picks its own pods only.
    let prod_sel = deployments["zai-proxy"]
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    ensure!(
        !selector_matches(&prod_sel, &pod_labels["zai-proxy-test"]),
        "production selector matches canary pods"
    );

    let services: BTreeMap<&str, Service> = docs
        .iter()
        .filter(|d| kind_of(d) == "Service")
        .map(|d| Ok((name_of(d), serde_json::from_value(d.clone())?)))
        .collect::<Result<_>>()?;
    for (svc, selects_prod, selects_canary) in [
        ("zai-proxy", true, false),
        ("zai-proxy-test", false, true),
        ("zai-proxy-canary", true, true),
    ] {
        let s = services
            .get(svc)
            .with_context(|| format!("Service {svc}"))?;
        let spec = s.spec.as_ref().context("service spec")?;
        let sel = spec.selector.clone().context("service selector")?;
        ensure!(
            selector_matches(&sel, &pod_labels["zai-proxy"]) == selects_prod,
            "{svc} vs production pods"
        );
        ensure!(
            selector_matches(&sel, &pod_labels["zai-proxy-test"]) == selects_canary,
            "{svc} vs canary pods"
        );
        let ports = spec.ports.as_ref().context("ports")?;
        ensure!(
            ports.len() == 1 && ports[0].port == 8080 && ports[0].name.as_deref() == Some("http"),
            "{svc} ports"
        );
    }

    // The ServiceMonitor scrapes the per-variant Services, not the split one (each pod once).
    let sm: ServiceMonitor =
        serde_json::from_value(find(&docs, "ServiceMonitor", "zai-proxy")?.clone())?;
    let scraped: Vec<&str> = services
        .iter()
        .filter(|(_, s)| label_selector_matches(&sm.spec.selector, s.metadata.labels.as_ref()))
        .map(|(n, _)| *n)
        .collect();
    ensure!(
        scraped == ["zai-proxy", "zai-proxy-test"],
        "ServiceMonitor selects {scraped:?}"
    );

    check_promoter_rbac(&docs)?;
    Ok(())
}

/// Evaluate a LabelSelector (matchLabels + In/NotIn/Exists/DoesNotExist) against labels.
fn label_selector_matches(sel: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let by_labels = sel
        .match_labels
        .as_ref()
        .is_none_or(|m| selector_matches(m, labels));
    let by_exprs = sel.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_labels && by_exprs
}

fn parse_duration(text: &str) -> Result<Duration> {
    humantime::parse_duration(text).with_context(|| format!("duration {text:?}"))
}

/// Non-root, read-only root filesystem, no capabilities, the key from the Secret, probes on
/// the proxy's endpoints, an emptyDir for the ceiling file and a grace period longer than
/// the proxy's own drain.
fn check_pod_hardening(name: &str, pod: &k8s_openapi::api::core::v1::PodSpec) -> Result<()> {
    let c = &pod.containers[0];
    let env: BTreeMap<&str, &k8s_openapi::api::core::v1::EnvVar> = c
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e))
        .collect();
    let value = |k: &str| env.get(k).and_then(|e| e.value.as_deref());

    let drain =
        parse_duration(value("SHUTDOWN_READINESS_DELAY").context("SHUTDOWN_READINESS_DELAY")?)?
            + parse_duration(value("SHUTDOWN_GRACE_PERIOD").context("SHUTDOWN_GRACE_PERIOD")?)?;
    let grace = pod
        .termination_grace_period_seconds
        .context("terminationGracePeriodSeconds")?;
    ensure!(
        Duration::from_secs(u64::try_from(grace)?) > drain,
        "{name}: grace period {grace}s not longer than the drain {drain:?}"
    );

    let key = env
        .get("ZAI_API_KEY")
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.secret_key_ref.as_ref());
    ensure!(
        key.is_some_and(|k| k.name == "zai-api-key" && k.key == "api-key"),
        "{name}: ZAI_API_KEY must come from Secret zai-api-key key api-key"
    );

    let psc = pod
        .security_context
        .as_ref()
        .context("pod securityContext")?;
    let sc = c
        .security_context
        .as_ref()
        .context("container securityContext")?;
    ensure!(
        psc.run_as_non_root == Some(true) && psc.run_as_user.is_some_and(|u| u > 0),
        "{name}: non-root"
    );
    ensure!(
        sc.read_only_root_filesystem == Some(true),
        "{name}: read-only root fs"
    );
    ensure!(
        sc.allow_privilege_escalation == Some(false),
        "{name}: no privilege escalation"
    );
    let dropped = sc
        .capabilities
        .as_ref()
        .and_then(|c| c.drop.clone())
        .unwrap_or_default();
    ensure!(
        dropped == ["ALL"],
        "{name}: capabilities dropped {dropped:?}"
    );

    let port = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("http"))
        .context("port http")?;
    ensure!(port.container_port == 8080, "{name}: port");
    let probe_path = |p: Option<&k8s_openapi::api::core::v1::Probe>| {
        p.and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    ensure!(
        probe_path(c.liveness_probe.as_ref()).as_deref() == Some("/health"),
        "{name}: liveness /health"
    );
    ensure!(
        probe_path(c.readiness_probe.as_ref()).as_deref() == Some("/readyz"),
        "{name}: readiness /readyz"
    );

    let state_file = value("RATE_LIMIT_STATE_FILE").context("RATE_LIMIT_STATE_FILE")?;
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/var/lib/zai-proxy")
        .context("mount /var/lib/zai-proxy")?;
    ensure!(
        state_file.starts_with("/var/lib/zai-proxy/"),
        "{name}: state file {state_file}"
    );
    let vol = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .context("state volume")?;
    ensure!(
        vol.empty_dir.is_some(),
        "{name}: the state volume is an emptyDir"
    );

    let res = c.resources.as_ref().context("resources")?;
    for (what, m) in [("requests", &res.requests), ("limits", &res.limits)] {
        let m = m.as_ref().with_context(|| format!("{name}: {what}"))?;
        ensure!(
            m.contains_key("cpu") && m.contains_key("memory"),
            "{name}: {what} cpu+memory"
        );
    }
    Ok(())
}

/// The promoter's Role grants exactly the verbs its kube platform (promoter/src/platform/kube.rs)
/// uses: nothing more, so a compromised promoter cannot read Secrets or create workloads.
fn check_promoter_rbac(docs: &[Value]) -> Result<()> {
    let role: Role = serde_json::from_value(find(docs, "Role", "zai-promoter")?.clone())?;
    let mut got = BTreeSet::new();
    for PolicyRule {
        api_groups,
        resources,
        verbs,
        ..
    } in role.rules.iter().flatten()
    {
        for g in api_groups.iter().flatten() {
            for r in resources.iter().flatten() {
                for v in verbs {
                    got.insert(format!("{g}/{r}:{v}"));
                }
            }
        }
    }
    let expected: BTreeSet<String> = [
        "apps/deployments:get",
        "apps/deployments:patch",
        "apps/deployments/scale:patch",
        "apps/replicasets:list",
        "/pods:list",
        "/pods/log:get",
        "/pods/proxy:get",
    ]
    .map(String::from)
    .into();
    ensure!(
        got == expected,
        "promoter Role grants {got:?}, expected {expected:?}"
    );

    let binding: RoleBinding =
        serde_json::from_value(find(docs, "RoleBinding", "zai-promoter")?.clone())?;
    ensure!(binding.role_ref.kind == "Role" && binding.role_ref.name == "zai-promoter");
    let subjects = binding.subjects.unwrap_or_default();
    ensure!(
        subjects.len() == 1
            && subjects[0].kind == "ServiceAccount"
            && subjects[0].name == "zai-promoter"
            // no namespace = the RoleBinding's own, wherever it is installed
            && subjects[0].namespace.as_deref().is_none_or(|ns| Some(ns) == binding.metadata.namespace.as_deref()),
        "RoleBinding subjects {subjects:?}"
    );
    find(docs, "ServiceAccount", "zai-promoter")?;
    Ok(())
}

// ------------------------------------------------------------------ generated rule files

const RULES: &str = "deploy/prometheus/zai-proxy-rules.yml";
const PROMETHEUS_RULE: &str = "deploy/k8s/shared/prometheusrule.yaml";
const CANARY_ALERTS_JSON: &str = "deploy/prometheus/canary-alerts.json";
const CANARY_GROUP: &str = "zai-proxy-canary";

/// The PrometheusRule: a fixed header, then the rules file (without its leading comment
/// block) indented under `spec:`.
fn render_prometheus_rule(rules_text: &str) -> String {
    let mut out = String::from(
        "# GENERATED from deploy/prometheus/zai-proxy-rules.yml by deploy/prometheus/generate.sh.\n\
         # Do not edit: change the rules file and regenerate (e2e/tests/deploy_manifests.rs fails\n\
         # when the two differ). Add the label your Prometheus' ruleSelector needs (often\n\
         # `release: <name>` with kube-prometheus-stack) in an overlay.\n\
         apiVersion: monitoring.coreos.com/v1\n\
         kind: PrometheusRule\n\
         metadata:\n  name: zai-proxy-canary\n  labels:\n    app: zai-proxy\n    role: alert-rules\n\
         spec:\n",
    );
    let body = rules_text
        .lines()
        .skip_while(|l| l.starts_with('#') || l.trim().is_empty());
    for line in body {
        if line.is_empty() {
            out.push('\n');
        } else {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The four canary alerts, exactly as in the rules file, for the promoter to mirror.
#[derive(Debug, Serialize)]
struct CanaryAlerts<'a> {
    source: &'a str,
    group: &'a str,
    alerts: Vec<CanaryAlert<'a>>,
}

#[derive(Debug, Serialize)]
struct CanaryAlert<'a> {
    alert: &'a str,
    expr: &'a str,
    #[serde(rename = "for")]
    for_: &'a str,
    for_seconds: u64,
    severity: &'a str,
}

fn render_canary_alerts(rules: &RuleFile) -> Result<String> {
    let group = rules
        .groups
        .iter()
        .find(|g| g.name == CANARY_GROUP)
        .context("canary group")?;
    let alerts = group
        .rules
        .iter()
        .map(|r| {
            Ok(CanaryAlert {
                alert: &r.alert,
                expr: &r.expr,
                for_: &r.for_,
                for_seconds: parse_duration(&r.for_)?.as_secs(),
                severity: r.labels.get("severity").map(String::as_str).unwrap_or(""),
            })
        })
        .collect::<Result<_>>()?;
    let doc = CanaryAlerts {
        source: RULES,
        group: CANARY_GROUP,
        alerts,
    };
    Ok(serde_json::to_string_pretty(&doc)? + "\n")
}

/// Compare a generated file with its checked-in copy, or rewrite it under ZAI_UPDATE_GENERATED=1.
fn check_generated(path: &str, generated: &str) -> Result<()> {
    let full = repo().join(path);
    if std::env::var_os("ZAI_UPDATE_GENERATED").is_some() {
        std::fs::write(&full, generated)?;
        return Ok(());
    }
    let current = std::fs::read_to_string(&full).with_context(|| format!("reading {path}"))?;
    ensure!(
        current == generated,
        "{path} is out of date with {RULES}: run deploy/prometheus/generate.sh"
    );
    Ok(())
}

fn load_rules() -> Result<(String, RuleFile)> {
    let text = std::fs::read_to_string(repo().join(RULES))?;
    let rules: RuleFile = serde_yaml_ng::from_str(&text).context("parsing the rules file")?;
    Ok((text, rules))
}

#[test]
fn generated_prometheus_rule_matches_the_rules_file() -> Result<()> {
    let (text, rules) = load_rules()?;
    let generated = render_prometheus_rule(&text);
    // Same groups, semantically, whatever the text says.
    let cr: PrometheusRule = serde_yaml_ng::from_str(&generated)?;
    ensure!(
        cr.spec == rules,
        "generated PrometheusRule spec differs from the rules file"
    );
    check_generated(PROMETHEUS_RULE, &generated)
}

#[test]
fn generated_canary_alerts_json_matches_the_rules_file() -> Result<()> {
    let (_, rules) = load_rules()?;
    check_generated(CANARY_ALERTS_JSON, &render_canary_alerts(&rules)?)
}

#[test]
fn rules_name_the_checklist_alerts_and_use_status_code() -> Result<()> {
    let (text, rules) = load_rules()?;
    let names = |g: &str| -> Vec<&str> {
        rules
            .groups
            .iter()
            .filter(|x| x.name == g)
            .flat_map(|x| &x.rules)
            .map(|r| r.alert.as_str())
            .collect()
    };
    ensure!(
        names(CANARY_GROUP)
            == [
                "ZaiProxyCanaryDeploymentDown",
                "ZaiProxyCanaryHighErrorRate",
                "ZaiProxyCanaryErrorRateHigherThanProduction",
                "ZaiProxyCanaryLatencyDegraded",
            ],
        "canary alerts {:?}",
        names(CANARY_GROUP)
    );
    // Every rollback trigger that Prometheus can see has an alert pointing at its check id.
    let triggers: BTreeSet<&str> = rules
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter_map(|r| r.annotations.get("promoter_check").map(String::as_str))
        .filter(|c| c.starts_with("trigger."))
        .collect();
    let expected: BTreeSet<&str> = [
        "trigger.error_rate",
        "trigger.p95_latency",
        "trigger.pods_not_ready",
        "trigger.crash_loop",
        "trigger.token_counting_stopped",
    ]
    .into();
    ensure!(triggers == expected, "trigger alerts {triggers:?}");
    for r in rules.groups.iter().flat_map(|g| &g.rules) {
        parse_duration(&r.for_)?;
        ensure!(
            r.labels.contains_key("severity"),
            "{} has no severity",
            r.alert
        );
    }
    // The original's documented queries used `status`, a label the proxy does not have.
    ensure!(
        !uses_status_label(&text),
        "{RULES} filters on `status` instead of `status_code`"
    );
    Ok(())
}

/// Whether PromQL text filters on a label literally named `status`.
fn uses_status_label(text: &str) -> bool {
    text.match_indices("status").any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + "status".len()..].trim_start();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && (after.starts_with('=') || after.starts_with("!="))
    })
}

#[test]
fn status_label_detector_sees_the_originals_mistake() {
    assert!(uses_status_label(
        r#"rate(zai_proxy_requests_total{status=~"5.."}[5m])"#
    ));
    assert!(!uses_status_label(
        r#"rate(zai_proxy_requests_total{status_code=~"5.."}[5m])"#
    ));
}

// ------------------------------------------------------------------ Grafana dashboard

const DASHBOARD: &str = "deploy/grafana/zai-proxy-canary-comparison.json";

#[test]
fn grafana_dashboard_compares_both_variants_on_real_metrics() -> Result<()> {
    let text = std::fs::read_to_string(repo().join(DASHBOARD))?;
    let dash: Value = serde_json::from_str(&text).context("dashboard is JSON")?;
    ensure!(
        dash["uid"].is_string() && dash["title"].is_string(),
        "uid and title"
    );
    let panels = dash["panels"].as_array().context("panels")?;
    let mut exprs = Vec::new();
    let mut titles = Vec::new();
    for p in panels {
        titles.push(p["title"].as_str().unwrap_or("").to_lowercase());
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().context("target expr")?.to_string());
        }
    }
    let known = [
        "zai_proxy_requests_total",
        "zai_proxy_request_duration_seconds_bucket",
        "zai_proxy_tokens_total",
        "zai_proxy_token_count_duration_seconds_bucket",
        "zai_proxy_rate_limit_requests_per_second",
        "zai_proxy_concurrent_requests",
        "zai_proxy_build_info",
        "zai_proxy_max_workers",
        "zai_proxy_time_to_first_token_seconds_bucket",
        "zai_proxy_streams_total",
    ];
    for e in &exprs {
        ensure!(!uses_status_label(e), "dashboard query uses `status`: {e}");
        let metrics: Vec<&str> = e
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("zai_proxy_"))
            .collect();
        ensure!(!metrics.is_empty(), "query without a zai_proxy metric: {e}");
        for m in metrics {
            ensure!(known.contains(&m), "unknown metric {m} in {e}");
        }
    }
    // Each comparison panel has one query per variant (production and the canary "test").
    for (topic, metric) in [
        ("request rate", "zai_proxy_requests_total"),
        ("error rate", "zai_proxy_requests_total"),
        ("p95", "zai_proxy_request_duration_seconds_bucket"),
        ("tokens", "zai_proxy_tokens_total"),
        (
            "token count",
            "zai_proxy_token_count_duration_seconds_bucket",
        ),
        ("rate limit", "zai_proxy_rate_limit_requests_per_second"),
        ("concurren", "zai_proxy_concurrent_requests"),
        (
            "first token",
            "zai_proxy_time_to_first_token_seconds_bucket",
        ),
        ("stream outcomes", "zai_proxy_streams_total"),
    ] {
        let panel = panels
            .iter()
            .find(|p| {
                p["title"]
                    .as_str()
                    .unwrap_or("")
                    .to_lowercase()
                    .contains(topic)
            })
            .with_context(|| format!("no panel about {topic}; titles {titles:?}"))?;
        let targets: Vec<&str> = panel["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["expr"].as_str())
            .collect();
        for variant in ["production", "test"] {
            ensure!(
                targets
                    .iter()
                    .any(|e| e.contains(metric) && e.contains(&format!("variant=\"{variant}\""))),
                "panel {topic:?} lacks a {variant} query on {metric}"
            );
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ the promoter's view

#[test]
fn promoter_mirrors_the_canary_alerts_timing() -> Result<()> {
    // zai-promoter's scrape mode evaluates the four canary alerts itself; its timing must be
    // the rules file's `for` and rate window.
    let (_, rules) = load_rules()?;
    let group = rules
        .groups
        .iter()
        .find(|g| g.name == CANARY_GROUP)
        .context("canary group")?;
    let timing = zai_promoter::signals::scrape::AlertTiming::default();
    for r in &group.rules {
        let want = if r.alert == "ZaiProxyCanaryDeploymentDown" {
            timing.down_for
        } else {
            ensure!(
                r.expr
                    .contains(&format!("[{}m]", timing.window.as_secs() / 60)),
                "{}: rate window differs from the promoter's {:?}",
                r.alert,
                timing.window
            );
            timing.degraded_for
        };
        ensure!(
            parse_duration(&r.for_)? == want,
            "{}: for {} but the promoter waits {want:?}",
            r.alert,
            r.for_
        );
    }
    Ok(())
}

/// One source for the canary alerts' numbers: a threshold changed in the rules file reaches
/// the promoter's locally evaluated condition through the generated file, and the file the
/// promoter embeds is the one generated from today's rules.
#[test]
fn a_canary_threshold_changed_in_the_rules_file_changes_the_promoters_condition() -> Result<()> {
    use zai_promoter::signals::canary_rules::CanaryRules;
    let (text, rules) = load_rules()?;
    let embedded = CanaryRules::embedded();
    ensure!(
        CanaryRules::from_json(&render_canary_alerts(&rules)?).map_err(anyhow::Error::msg)?
            == *embedded,
        "the promoter embeds canary alerts other than the rules file's: run deploy/prometheus/generate.sh"
    );
    // The canary group's absolute error line (the production group has its own 0.10).
    let canary_start = text
        .find("- alert: ZaiProxyCanaryHighErrorRate")
        .context("alert")?;
    let (head, canary) = text.split_at(canary_start);
    let line = "\n          > 0.05\n";
    ensure!(canary.contains(line), "the canary 5 % line moved");
    let changed_text = format!("{head}{}", canary.replacen(line, "\n          > 0.07\n", 1));
    let changed: RuleFile = serde_yaml_ng::from_str(&changed_text)?;
    let changed =
        CanaryRules::from_json(&render_canary_alerts(&changed)?).map_err(anyhow::Error::msg)?;
    ensure!(
        changed.high_error_ratio == 0.07,
        "read {}",
        changed.high_error_ratio
    );
    ensure!(
        embedded.high_error(0.06) && !changed.high_error(0.06),
        "a 6 % canary fires at 5 % and not at 7 %"
    );
    Ok(())
}

#[test]
fn promoter_kube_defaults_name_the_manifests_objects() {
    let kube = zai_promoter::config::KubeSettings::default();
    assert_eq!(kube.production, "zai-proxy");
    assert_eq!(kube.canary, "zai-proxy-test");
    assert_eq!(kube.container, "proxy");
}

#[test]
fn kind_demo_promoter_config_is_valid() -> Result<()> {
    let config = zai_promoter::Config::load(&repo().join("deploy/kind/promoter.toml"))?;
    ensure!(
        config.kube.namespace == "zai-proxy",
        "namespace {}",
        config.kube.namespace
    );
    ensure!(config.prometheus.selector == "namespace=\"zai-proxy\"");
    Ok(())
}

#[test]
fn runbook_maps_every_promoter_check_and_trigger() -> Result<()> {
    let runbook = std::fs::read_to_string(repo().join("docs/RUNBOOK.md"))?;
    let ids: BTreeSet<&str> = zai_promoter::catalog::CHECKS
        .iter()
        .map(|c| c.id.as_str())
        .chain(
            zai_promoter::catalog::TRIGGERS
                .iter()
                .map(|t| t.id.as_str()),
        )
        .collect();
    for id in &ids {
        ensure!(
            runbook.contains(&format!("| `{id}` |")),
            "docs/RUNBOOK.md has no table row for {id}"
        );
    }
    // And no row names an id the promoter does not have.
    for row in runbook.lines().filter(|l| l.starts_with('|')) {
        for cell in row.split('|').map(str::trim) {
            if let Some(id) = cell.strip_prefix('`').and_then(|c| c.strip_suffix('`'))
                && [
                    "pre.", "exec.", "rollout.", "post.", "final.", "cleanup.", "trigger.",
                ]
                .iter()
                .any(|p| id.starts_with(p))
            {
                ensure!(ids.contains(id), "docs/RUNBOOK.md names unknown check {id}");
            }
        }
    }
    Ok(())
}
