//! What a scenario creates in its namespace of a kind cluster, and the images its proxy
//! versions are built as. Pure: rendered as k8s-openapi objects, created by
//! [`super::stack`].
//!
//! * The proxies' Deployments and Services are the simulated cluster's
//!   ([`crate::rehearsal::manifests`], rendered from deploy/k8s), with the resource *requests*
//!   lowered as deploy/kind/demo.sh does (limits, probes, security context as in deploy/k8s);
//!   the `zai-api-key` Secret they read holds the fake upstreams' key.
//! * The promoter's ServiceAccount, Role and RoleBinding are deploy/k8s/shared/promoter-rbac.yaml;
//!   the promoter runs with a token of that ServiceAccount.
//! * Two fake upstreams (`fake-zai-old` for 1.2.0, `fake-zai-new` for 1.2.1[-canary]) and the
//!   workers (`zai-workers`, the driver's `WorkersConfig` as JSON) run as Deployments of the
//!   tools image (fake-zai and zai-workers, `FROM scratch`).
//!
//! **A version's configuration travels with its image.** On the simulated cluster a tag maps
//! to an environment (the version catalog); on a real cluster the promoter changes only the
//! image, so each version's differences (its upstream, a broken setting) are built into its
//! image: settings the deploy/k8s container sets in `env` (which would override an image's
//! `ENV`) become the image's `CMD` flags (`--max-workers=0`; flags override the environment),
//! the others image `ENV`. The images are rebuilt for every scenario.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use zai_promoter::Variant;

use crate::Error;
use crate::fake::Faults;
use crate::platform::spec::{Artifact, ProbePort};
use crate::rehearsal::manifests;
use crate::rehearsal::scenario::Scenario;
use crate::rehearsal::seeds::ScenarioSeeds;
use crate::rehearsal::stack::{UPSTREAM_KEY, catalog, image};
use crate::workers::WorkersConfig;

/// The fake upstreams' port.
pub const FAKE_PORT: u16 = 9100;
/// The workers' status port (`GET /report`, `POST /stop`).
pub const WORKERS_PORT: u16 = 9200;
/// Label on every namespace a kind rehearsal creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "zai-rehearse");
/// Label naming the `zai-rehearse` process (session) that created a namespace.
pub const SESSION_LABEL: &str = "zai-rehearse/session";
/// The port a version listens on when its scenario has `new_probe_port_mismatch`.
pub const MISMATCHED_LISTEN: &str = "0.0.0.0:8081";

const PROMOTER_RBAC: (&str, &str) = (
    "deploy/k8s/shared/promoter-rbac.yaml",
    include_str!("../../../../deploy/k8s/shared/promoter-rbac.yaml"),
);

/// Which fake upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// Behind 1.2.0.
    Old,
    /// Behind 1.2.1-canary and 1.2.1.
    New,
}

impl Upstream {
    /// `old` / `new`.
    pub fn label(self) -> &'static str {
        match self {
            Upstream::Old => "old",
            Upstream::New => "new",
        }
    }

    /// The Deployment and Service name.
    pub fn name(self) -> String {
        format!("fake-zai-{}", self.label())
    }

    /// Its URL inside the namespace (the Service's DNS name).
    pub fn url(self) -> String {
        format!("http://{}:{FAKE_PORT}", self.name())
    }
}

/// The base URL of a proxy Service inside the namespace (what the workers are given).
pub fn service_url(route: crate::service::Route) -> String {
    let name = match route {
        crate::service::Route::Split => "zai-proxy-canary",
        crate::service::Route::Variant(Variant::Production) => "zai-proxy",
        crate::service::Route::Variant(Variant::Test) => "zai-proxy-test",
    };
    format!("http://{name}:8080")
}

/// One proxy version's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionImage {
    /// The tag (`1.2.1-canary`).
    pub tag: String,
    /// The image reference (`zai-proxy:1.2.1-canary`).
    pub image: String,
    /// Built in as `ENV` (settings deploy/k8s does not set).
    pub env: BTreeMap<String, String>,
    /// Built in as `CMD`: flags of settings deploy/k8s sets in the container's `env`.
    pub args: Vec<String>,
}

/// The names the deploy/k8s proxy container sets in `env` (an image `ENV` of the same name
/// would be overridden by them).
pub fn manifest_env_names() -> Result<BTreeSet<String>, Error> {
    let d = manifests::deployment(Variant::Production, &image("0.0.0"), 1)?;
    Ok(proxy_container(&d)?
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect())
}

/// The zai-proxy flag of a setting (`MAX_WORKERS` → `--max-workers`; clap's names).
pub fn flag_of(env_name: &str) -> String {
    format!("--{}", env_name.to_ascii_lowercase().replace('_', "-"))
}

/// The images of the scenario's three versions: the version catalog of the simulated cluster
/// (same upstreams, same settings) turned into what an image carries. Differences from the
/// simulated platform, all for a real cluster's sake: the upstream key comes from the
/// `zai-api-key` Secret unless a version has its own (wrong-key); the drain timing is
/// deploy/k8s's (5 s readiness delay: endpoints take that long to drop a pod across nodes)
/// unless the scenario sets it; a mismatched readiness probe becomes a version that listens
/// on another port than the one the manifest's probes and Services use.
pub fn version_images(scenario: &Scenario) -> Result<Vec<VersionImage>, Error> {
    let from_manifest = manifest_env_names()?;
    let scenario_sets = |name: &str| {
        scenario.env.contains_key(name)
            || scenario.new_env.contains_key(name)
            || scenario.canary_env.contains_key(name)
    };
    let versions = catalog(
        scenario,
        &Artifact::Image(String::new()),
        &Upstream::Old.url(),
        &Upstream::New.url(),
    );
    let mut out = Vec::new();
    for version in versions {
        let mut settings = version.env.clone();
        if settings.get("ZAI_API_KEY").map(String::as_str) == Some(UPSTREAM_KEY) {
            settings.remove("ZAI_API_KEY");
        }
        for drain in ["SHUTDOWN_READINESS_DELAY", "SHUTDOWN_GRACE_PERIOD"] {
            if !scenario_sets(drain) {
                settings.remove(drain);
            }
        }
        if version.probe.port == ProbePort::Mismatched {
            settings.insert("LISTEN_ADDR".to_owned(), MISMATCHED_LISTEN.to_owned());
        }
        let mut env = BTreeMap::new();
        let mut args = Vec::new();
        for (name, value) in settings {
            if from_manifest.contains(&name) {
                args.push(format!("{}={value}", flag_of(&name)));
            } else {
                env.insert(name, value);
            }
        }
        out.push(VersionImage {
            image: image(&version.tag),
            tag: version.tag,
            env,
            args,
        });
    }
    Ok(out)
}

/// A Dockerfile `ENV` value: double-quoted, with `\`, `"` and `$` escaped (Docker expands
/// variables in `ENV`).
fn env_value(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The Dockerfile of one version: deploy/docker/Dockerfile (`base`, its last stage is the
/// proxy) with the version's `ENV` and `CMD` appended.
pub fn dockerfile(base: &str, version: &VersionImage) -> String {
    let mut text = base.trim_end().to_owned();
    text.push_str(&format!(
        "\n\n# zai-rehearse --platform kind: version {} of this scenario; its configuration\n# travels with the image (e2e/src/rehearsal/kind/manifests.rs).\n",
        version.tag
    ));
    for (name, value) in &version.env {
        text.push_str(&format!("ENV {name}={}\n", env_value(value)));
    }
    // Exec form: JSON strings, no variable expansion.
    let cmd = serde_json::to_string(&version.args).unwrap_or_else(|_| "[]".to_owned());
    text.push_str(&format!("CMD {cmd}\n"));
    text
}

/// A namespace name for scenario number `index` of session `session`: a DNS label.
pub fn namespace_name(session: &str, index: u32, scenario: &str) -> String {
    let mut name = format!("zr-{session}-{index}-");
    for c in scenario.chars() {
        let c = c.to_ascii_lowercase();
        name.push(if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        });
    }
    name.truncate(63);
    name.trim_end_matches('-').to_owned()
}

/// Everything a scenario creates before its workers.
#[derive(Debug, Clone, PartialEq)]
pub struct KindObjects {
    /// The scenario's namespace (labelled [`MANAGED_BY`] and [`SESSION_LABEL`]).
    pub namespace: Namespace,
    /// `zai-api-key`.
    pub secret: Secret,
    /// The promoter's ServiceAccount (deploy/k8s).
    pub service_account: ServiceAccount,
    /// Its Role.
    pub role: Role,
    /// Its RoleBinding.
    pub role_binding: RoleBinding,
    /// The fake upstreams' Deployments (old, new).
    pub fakes: Vec<Deployment>,
    /// Their Services.
    pub fake_services: Vec<Service>,
    /// `zai-proxy`, `zai-proxy-test`, `zai-proxy-canary`.
    pub services: Vec<Service>,
    /// Production (1.2.0) and the canary (1.2.1-canary).
    pub proxies: Vec<Deployment>,
}

/// `value` as its k8s-openapi type, strictly: it must come back unchanged when the typed
/// object is serialised again — serde ignores unknown fields, so a misspelt or misplaced one
/// would otherwise vanish without a word.
pub fn strict<T: DeserializeOwned + Serialize>(what: &str, value: Value) -> Result<T, Error> {
    let typed: T =
        serde_json::from_value(value.clone()).map_err(|e| Error::Setup(format!("{what}: {e}")))?;
    let back = serde_json::to_value(&typed)?;
    if back != value {
        return Err(Error::Setup(format!(
            "{what}: not a valid object of its kind (fields lost or changed in the round trip): {}",
            first_difference(&value, &back, "")
        )));
    }
    Ok(typed)
}

/// The path of the first place where `a` and `b` differ.
pub fn first_difference(a: &Value, b: &Value, at: &str) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) if w == v => {}
                    Some(w) => return first_difference(v, w, &format!("{at}.{k}")),
                    None => return format!("{at}.{k} dropped"),
                }
            }
            match y.keys().find(|k| !x.contains_key(*k)) {
                Some(k) => format!("{at}.{k} added"),
                None => format!("{at}: differs"),
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find(|(_, (v, w))| v != w)
            .map(|(i, (v, w))| first_difference(v, w, &format!("{at}[{i}]")))
            .unwrap_or_else(|| format!("{at}: differs")),
        _ => format!("{at}: {a} became {b}"),
    }
}

fn typed<T: DeserializeOwned + Serialize>(what: &str, value: Value) -> Result<T, Error> {
    strict(what, value)
}

fn proxy_container(d: &Deployment) -> Result<&k8s_openapi::api::core::v1::Container, Error> {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == "proxy"))
        .ok_or_else(|| Error::Setup("deployment.yaml has no container \"proxy\"".to_owned()))
}

/// The restricted container security context of deploy/k8s (also used for the tools).
fn restricted() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "capabilities": {"drop": ["ALL"]}
    })
}

fn pod_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"}
    })
}

/// A Deployment of one tools container (`command`) with an HTTP readiness probe.
fn tool_deployment(
    name: &str,
    labels: &Value,
    image: &str,
    command: Vec<String>,
    port: u16,
    probe_path: &str,
    env: Value,
) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": false,
                    "terminationGracePeriodSeconds": 5,
                    "securityContext": pod_security(),
                    "containers": [{
                        "name": name,
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": command,
                        "env": env,
                        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
                        "readinessProbe": {
                            "httpGet": {"path": probe_path, "port": "http"},
                            "periodSeconds": 1,
                            "failureThreshold": 3
                        },
                        "resources": {
                            "requests": {"cpu": "50m", "memory": "64Mi"},
                            "limits": {"memory": "256Mi"}
                        },
                        "securityContext": restricted()
                    }]
                }
            }
        }
    })
}

/// The fake upstream `which`, seeded, with its canary-phase faults.
pub fn fake(
    which: Upstream,
    tools_image: &str,
    seed: u64,
    faults: &Faults,
) -> Result<(Deployment, Service), Error> {
    let name = which.name();
    let labels = json!({"app": "fake-zai", "upstream": which.label()});
    let faults = serde_json::to_string(faults)?;
    let command = vec![
        "/usr/local/bin/fake-zai".to_owned(),
        "--listen".to_owned(),
        format!("0.0.0.0:{FAKE_PORT}"),
        "--pod-network".to_owned(),
        "--seed".to_owned(),
        seed.to_string(),
        "--faults".to_owned(),
        faults,
    ];
    let env = json!([{
        "name": "FAKE_ZAI_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "zai-api-key", "key": "api-key"}}
    }]);
    let deployment = typed(
        &name,
        tool_deployment(
            &name,
            &labels,
            tools_image,
            command,
            FAKE_PORT,
            "/__fake/health",
            env,
        ),
    )?;
    let service = typed(
        &name,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "type": "ClusterIP",
                "selector": labels,
                "ports": [{"name": "http", "port": FAKE_PORT, "targetPort": "http", "protocol": "TCP"}]
            }
        }),
    )?;
    Ok((deployment, service))
}

/// The workers: `config` (the driver's, as in process) as JSON, a status endpoint.
pub fn workers(config: &WorkersConfig, tools_image: &str) -> Result<Deployment, Error> {
    let labels = json!({"app": "zai-workers"});
    let command = vec![
        "/usr/local/bin/zai-workers".to_owned(),
        "--config-json".to_owned(),
        serde_json::to_string(config)?,
        "--status-listen".to_owned(),
        format!("0.0.0.0:{WORKERS_PORT}"),
        "--pod-network".to_owned(),
    ];
    let mut value = tool_deployment(
        "zai-workers",
        &labels,
        tools_image,
        command,
        WORKERS_PORT,
        "/report",
        json!([]),
    );
    // An open loop of a few hundred requests per second.
    value["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] =
        json!("200m");
    typed("zai-workers", value)
}

/// A proxy Deployment as deploy/k8s renders it, with the requests lowered for a kind node.
pub fn proxy(variant: Variant, image: &str, replicas: u32) -> Result<Deployment, Error> {
    let mut d = manifests::deployment(variant, image, replicas)?;
    let pod = d
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .ok_or_else(|| Error::Setup("deployment.yaml has no pod spec".to_owned()))?;
    for c in &mut pod.containers {
        if let Some(requests) = c.resources.as_mut().and_then(|r| r.requests.as_mut()) {
            requests.insert("cpu".to_owned(), Quantity("100m".to_owned()));
            requests.insert("memory".to_owned(), Quantity("128Mi".to_owned()));
        }
    }
    Ok(d)
}

/// deploy/k8s/shared/promoter-rbac.yaml.
pub fn promoter_rbac() -> Result<(ServiceAccount, Role, RoleBinding), Error> {
    let (name, text) = PROMOTER_RBAC;
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value = <Value as serde::Deserialize>::deserialize(doc)
            .map_err(|e| Error::Setup(format!("{name}: {e}")))?;
        docs.push(value);
    }
    let find = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .cloned()
            .ok_or_else(|| Error::Setup(format!("{name} has no {kind}")))
    };
    Ok((
        typed(name, find("ServiceAccount")?)?,
        typed(name, find("Role")?)?,
        typed(name, find("RoleBinding")?)?,
    ))
}

/// Everything of `scenario` in `namespace` before the workers.
pub fn render(
    scenario: &Scenario,
    namespace: &str,
    session: &str,
    tools_image: &str,
    seeds: &ScenarioSeeds,
) -> Result<KindObjects, Error> {
    let ns: Namespace = typed(
        "namespace",
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": namespace,
                "labels": {MANAGED_BY.0: MANAGED_BY.1, SESSION_LABEL: session, "zai-rehearse/scenario": namespace_label(&scenario.name)}
            }
        }),
    )?;
    let secret: Secret = typed(
        "secret",
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "zai-api-key"},
            "type": "Opaque",
            "stringData": {"api-key": UPSTREAM_KEY}
        }),
    )?;
    let (service_account, role, role_binding) = promoter_rbac()?;
    let mut fakes = Vec::new();
    let mut fake_services = Vec::new();
    for (which, seed, faults) in [
        (Upstream::Old, seeds.fake_old, &scenario.faults.old.canary),
        (Upstream::New, seeds.fake_new, &scenario.faults.new.canary),
    ] {
        let (d, s) = fake(which, tools_image, seed, faults)?;
        fakes.push(d);
        fake_services.push(s);
    }
    let proxies = vec![
        proxy(
            Variant::Production,
            &image(crate::rehearsal::scenario::OLD_VERSION),
            scenario.production_replicas,
        )?,
        proxy(
            Variant::Test,
            &image(crate::rehearsal::scenario::CANARY_VERSION),
            scenario.canary_replicas,
        )?,
    ];
    let mut objects = KindObjects {
        namespace: ns,
        secret,
        service_account,
        role,
        role_binding,
        fakes,
        fake_services,
        services: manifests::services()?,
        proxies,
    };
    objects.set_namespace(namespace);
    Ok(objects)
}

/// A label value from a scenario name (at most 63 characters of `[a-z0-9-]`).
fn namespace_label(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .collect();
    out.truncate(63);
    out.trim_matches('-').to_owned()
}

impl KindObjects {
    fn set_namespace(&mut self, namespace: &str) {
        let ns = Some(namespace.to_owned());
        self.secret.metadata.namespace.clone_from(&ns);
        self.service_account.metadata.namespace.clone_from(&ns);
        self.role.metadata.namespace.clone_from(&ns);
        self.role_binding.metadata.namespace.clone_from(&ns);
        for s in self.fake_services.iter_mut().chain(&mut self.services) {
            s.metadata.namespace.clone_from(&ns);
        }
        for d in self.fakes.iter_mut().chain(&mut self.proxies) {
            d.metadata.namespace.clone_from(&ns);
        }
    }

    /// The objects as JSON values with `apiVersion` and `kind`, in creation order.
    pub fn values(&self) -> Result<Vec<Value>, Error> {
        let mut out = vec![
            serde_json::to_value(&self.namespace)?,
            serde_json::to_value(&self.secret)?,
            serde_json::to_value(&self.service_account)?,
            serde_json::to_value(&self.role)?,
            serde_json::to_value(&self.role_binding)?,
        ];
        for (d, s) in self.fakes.iter().zip(&self.fake_services) {
            out.push(serde_json::to_value(d)?);
            out.push(serde_json::to_value(s)?);
        }
        for s in &self.services {
            out.push(serde_json::to_value(s)?);
        }
        for d in &self.proxies {
            out.push(serde_json::to_value(d)?);
        }
        Ok(out)
    }

    /// A multi-document YAML of [`KindObjects::values`] (plus `extra`), as `kubectl apply -f`
    /// takes it.
    pub fn to_yaml(&self, extra: &[Value]) -> Result<String, Error> {
        let mut text = String::new();
        for value in self.values()?.iter().chain(extra) {
            text.push_str("---\n");
            text.push_str(
                &serde_yaml_ng::to_string(value).map_err(|e| Error::Setup(e.to_string()))?,
            );
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rehearsal::scenario::builtin;

    fn scenario(name: &str) -> Scenario {
        builtin()
            .into_iter()
            .find(|s| s.name == name)
            .expect("scenario")
    }

    fn by_tag<'a>(images: &'a [VersionImage], tag: &str) -> &'a VersionImage {
        images.iter().find(|v| v.tag == tag).expect("tag")
    }

    #[test]
    fn a_versions_configuration_is_built_into_its_image() {
        let images = version_images(&scenario("crash-loop")).expect("images");
        let canary = by_tag(&images, "1.2.1-canary");
        assert_eq!(canary.image, "zai-proxy:1.2.1-canary");
        assert!(
            canary.args.contains(&"--max-workers=0".to_owned()),
            "{canary:?}"
        );
        assert!(
            canary
                .args
                .contains(&"--zai-target-url=http://fake-zai-new:9100".to_owned()),
            "{canary:?}"
        );
        // The Secret gives the key; the drain timing is deploy/k8s's.
        assert!(!canary.args.iter().any(|a| a.starts_with("--zai-api-key")));
        assert!(!canary.args.iter().any(|a| a.starts_with("--shutdown-")));
        // Settings deploy/k8s does not set are ENV.
        assert_eq!(canary.env["RATE_LIMIT_INITIAL"], "1000");
        let old = by_tag(&images, "1.2.0");
        assert!(old.args.contains(&"--max-workers=50".to_owned()), "{old:?}");
        assert!(
            old.args
                .contains(&"--zai-target-url=http://fake-zai-old:9100".to_owned())
        );

        let wrong_key = version_images(&scenario("wrong-key")).expect("images");
        assert!(
            by_tag(&wrong_key, "1.2.1")
                .args
                .iter()
                .any(|a| a.starts_with("--zai-api-key="))
        );
        assert!(
            !by_tag(&wrong_key, "1.2.0")
                .args
                .iter()
                .any(|a| a.starts_with("--zai-api-key="))
        );

        let not_ready = version_images(&scenario("not-ready")).expect("images");
        assert_eq!(
            by_tag(&not_ready, "1.2.1").env["LISTEN_ADDR"],
            MISMATCHED_LISTEN
        );
        assert!(
            !by_tag(&not_ready, "1.2.1-canary")
                .env
                .contains_key("LISTEN_ADDR")
        );
    }

    #[test]
    fn the_dockerfile_appends_quoted_env_and_an_exec_form_cmd() {
        let version = VersionImage {
            tag: "1.2.1".to_owned(),
            image: "zai-proxy:1.2.1".to_owned(),
            env: BTreeMap::from([("LOG_FORMAT".to_owned(), "a \"$b\" \\c".to_owned())]),
            args: vec![
                "--max-workers=0".to_owned(),
                "--rate-limit-state-file=".to_owned(),
            ],
        };
        let text = dockerfile("FROM scratch AS proxy\n", &version);
        assert!(text.starts_with("FROM scratch AS proxy\n"));
        assert!(
            text.contains("ENV LOG_FORMAT=\"a \\\"\\$b\\\" \\\\c\"\n"),
            "{text}"
        );
        assert!(
            text.ends_with("CMD [\"--max-workers=0\",\"--rate-limit-state-file=\"]\n"),
            "{text}"
        );
    }

    #[test]
    fn namespace_names_are_dns_labels() {
        assert_eq!(
            namespace_name("a1b2c3", 0, "healthy"),
            "zr-a1b2c3-0-healthy"
        );
        let odd = namespace_name(
            "a1b2c3",
            12,
            "My Scenario_ÄÖ/very-long-name-that-goes-on-and-on-and-on-forever",
        );
        assert!(odd.len() <= 63, "{odd}");
        assert!(
            odd.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{odd}"
        );
        assert!(!odd.ends_with('-'));
    }
}
