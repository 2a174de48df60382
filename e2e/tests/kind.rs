//! The kind demo (`deploy/kind/demo.sh`) and `zai-rehearse --platform kind`.
//!
//! * Always: the deploy scripts pass `bash -n` and `shellcheck` (shellcheck required when `CI`
//!   is set), and `demo.sh --render-only` renders, for both scenarios, manifests that parse
//!   into their Kubernetes types and differ only where the scenario says.
//! * Always: what `zai-rehearse --platform kind` would create for every built-in scenario
//!   (namespace, Secret, the promoter's RBAC, fakes, proxies, Services, workers) is valid as
//!   k8s-openapi objects (a strict round trip: no field lost), hangs together (selectors,
//!   Secret keys, image names, in-cluster URLs), and each version's image configures the proxy
//!   as the simulated cluster's version catalog does (parsed with zai-proxy's own `Args`).
//! * With `ZAI_E2E_KIND=1`: the real thing against kind clusters — the demo (the healthy
//!   scenario must promote, exit 0; bad-canary must be refused before production is touched,
//!   exit 2) and `zai-rehearse --platform kind` (healthy and canary-errors meet their
//!   expectations on a throw-away cluster). They need Docker, kind and kubectl (the demo also
//!   network access to pull `kindest/node` and `prom/prometheus`; the rehearsal only
//!   `kindest/node`), so they cannot run in this project's CI (no image can be pulled there);
//!   without the variable they skip with that reason, with it a missing tool fails them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use serde::Deserialize;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ lives inside the workspace root")
        .to_path_buf()
}

const SCRIPTS: &[&str] = &[
    "deploy/kind/demo.sh",
    "deploy/docker/build-context.sh",
    "deploy/prometheus/generate.sh",
];

/// Whether `tool` runs. Without it: fail under CI, skip (with a reason) otherwise.
fn tool_available(tool: &str, test: &str) -> bool {
    // kubectl has no --version flag.
    let probe: &[&str] = if tool == "kubectl" {
        &["version", "--client"]
    } else {
        &["--version"]
    };
    let ok = Command::new(tool)
        .args(probe)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: {tool} is required when CI is set"
        );
        eprintln!("{test}: skipped: {tool} not found");
    }
    ok
}

#[test]
fn deploy_scripts_pass_bash_n_and_shellcheck() -> Result<()> {
    for script in SCRIPTS {
        let out = Command::new("bash")
            .arg("-n")
            .arg(repo().join(script))
            .output()?;
        ensure!(
            out.status.success(),
            "bash -n {script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if !tool_available("shellcheck", "deploy_scripts_pass_bash_n_and_shellcheck") {
        return Ok(());
    }
    for script in SCRIPTS {
        let out = Command::new("shellcheck")
            .arg(script)
            .current_dir(repo())
            .output()?;
        ensure!(
            out.status.success(),
            "shellcheck {script}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(())
}

#[test]
fn shellcheck_is_not_a_rubber_stamp() -> Result<()> {
    if !tool_available("shellcheck", "shellcheck_is_not_a_rubber_stamp") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.sh");
    std::fs::write(&bad, "#!/usr/bin/env bash\nrm -rf $1/*\n")?;
    let out = Command::new("shellcheck").arg(&bad).output()?;
    ensure!(
        !out.status.success(),
        "shellcheck accepted an unquoted rm -rf $1/*"
    );
    Ok(())
}

/// `demo.sh --render-only` output as Deployments (other kinds are not expected).
fn render_demo(scenario: &str) -> Result<Vec<Deployment>> {
    let out = Command::new(repo().join("deploy/kind/demo.sh"))
        .args(["--render-only", "--scenario", scenario])
        .output()
        .context("running demo.sh --render-only")?;
    ensure!(
        out.status.success(),
        "demo.sh --render-only --scenario {scenario}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut deployments = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&String::from_utf8(out.stdout)?) {
        let value = Value::deserialize(doc)?;
        match value["kind"].as_str() {
            Some("Deployment") => deployments.push(serde_json::from_value(value)?),
            Some("Service") => {}
            other => anyhow::bail!("unexpected {other:?} in the demo render"),
        }
    }
    Ok(deployments)
}

/// (image of proxy, args of the fake-zai sidecar, ZAI_TARGET_URL) of one deployment.
fn demo_pod(d: &Deployment) -> Result<(String, Vec<String>, String)> {
    let pod = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .context("pod spec")?;
    let proxy = pod
        .containers
        .iter()
        .find(|c| c.name == "proxy")
        .context("proxy container")?;
    let fake = pod
        .containers
        .iter()
        .find(|c| c.name == "fake-zai")
        .context("fake-zai sidecar")?;
    let target = proxy
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "ZAI_TARGET_URL")
        .and_then(|e| e.value.clone())
        .context("ZAI_TARGET_URL")?;
    Ok((
        proxy.image.clone().unwrap_or_default(),
        fake.command.clone().unwrap_or_default(),
        target,
    ))
}

#[test]
fn demo_render_only_gives_the_scenarios_manifests() -> Result<()> {
    if !tool_available("kubectl", "demo_render_only_gives_the_scenarios_manifests") {
        return Ok(());
    }
    // Sequential on purpose: both renders use the same work directory.
    for scenario in ["healthy", "bad-canary"] {
        let deployments = render_demo(scenario)?;
        let names: Vec<&str> = deployments
            .iter()
            .filter_map(|d| d.metadata.name.as_deref())
            .collect();
        ensure!(
            names == ["zai-proxy", "zai-proxy-test"],
            "{scenario}: deployments {names:?}"
        );
        for d in &deployments {
            let name = d.metadata.name.as_deref().unwrap_or("");
            let (image, fake_args, target) = demo_pod(d)?;
            let canary = name == "zai-proxy-test";
            ensure!(
                image
                    == if canary {
                        "zai-proxy:0.2.0-canary"
                    } else {
                        "zai-proxy:0.1.0"
                    },
                "{name}: {image}"
            );
            let version = d
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.as_ref())
                .and_then(|l| l.get("version"))
                .cloned();
            ensure!(
                version.as_deref() == image.split_once(':').map(|x| x.1),
                "{name}: version label {version:?}"
            );
            ensure!(
                target == "http://127.0.0.1:9100",
                "{name}: upstream {target}"
            );
            ensure!(
                fake_args
                    .windows(2)
                    .any(|w| w == ["--listen", "127.0.0.1:9100"]),
                "{name}: {fake_args:?}"
            );
            let faulty = fake_args.iter().any(|a| a == "--error-rate");
            ensure!(
                faulty == (canary && scenario == "bad-canary"),
                "{scenario}/{name}: fake-zai faults {fake_args:?}"
            );
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct ReportOutcome {
    outcome: String,
}

fn run_demo(scenario: &str, report_dir: &Path) -> Result<(Option<i32>, String)> {
    let status = Command::new(repo().join("deploy/kind/demo.sh"))
        .args(["--scenario", scenario, "--report-dir"])
        .arg(report_dir)
        .status()
        .context("running deploy/kind/demo.sh")?;
    let report = std::fs::read_to_string(report_dir.join("report.json"))
        .with_context(|| format!("{scenario}: no report.json (exit {:?})", status.code()))?;
    let outcome: ReportOutcome = serde_json::from_str(&report).context("report.json")?;
    Ok((status.code(), outcome.outcome))
}

#[test]
fn kind_demo_promotes_a_healthy_canary_and_refuses_a_bad_one() -> Result<()> {
    if std::env::var("ZAI_E2E_KIND").as_deref() != Ok("1") {
        eprintln!(
            "kind_demo_promotes_a_healthy_canary_and_refuses_a_bad_one: skipped: set ZAI_E2E_KIND=1 \
             (needs docker, kind, kubectl and image pulls; cannot run in this project's CI)"
        );
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let healthy = dir.path().join("healthy");
    let (code, outcome) = run_demo("healthy", &healthy)?;
    ensure!(
        code == Some(0),
        "healthy scenario exited {code:?} with outcome {outcome}"
    );
    ensure!(outcome == "promoted", "healthy scenario outcome {outcome}");

    let bad = dir.path().join("bad");
    let (code, outcome) = run_demo("bad-canary", &bad)?;
    // Refused before production was touched: aborted, exit 2.
    ensure!(
        code == Some(2) && outcome == "aborted",
        "bad canary: exit {code:?}, outcome {outcome}"
    );

    if std::env::var_os("ZAI_E2E_KIND_KEEP").is_none() {
        let status = Command::new(repo().join("deploy/kind/demo.sh"))
            .arg("--down")
            .status()?;
        ensure!(status.success(), "demo.sh --down failed");
    }
    Ok(())
}

// ---------------------------------------------------------------- zai-rehearse --platform kind

use std::collections::BTreeMap;

use clap::{CommandFactory, Parser};
use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use zai_e2e::rehearsal::ScenarioSeeds;
use zai_e2e::rehearsal::kind::images::TOOLS_IMAGE;
use zai_e2e::rehearsal::kind::manifests::{
    self, FAKE_PORT, KindObjects, Upstream, VersionImage, service_url, strict, version_images,
};
use zai_e2e::rehearsal::scenario::{CANARY_VERSION, NEW_VERSION, OLD_VERSION, Scenario};
use zai_e2e::rehearsal::{builtin, interruptions};
use zai_e2e::service::Route;
use zai_e2e::workers::{LoadMode, Target, WorkersConfig};
use zai_promoter::Variant;

fn all_scenarios() -> Vec<Scenario> {
    builtin().into_iter().chain(interruptions()).collect()
}

/// The workers' configuration as the driver builds it for `scenario`.
fn workers_config(scenario: &Scenario) -> Result<WorkersConfig> {
    let load = &scenario.load;
    let mut targets = Vec::new();
    for (label, route, weight) in [
        ("split", Route::Split, load.split),
        (
            "production",
            Route::Variant(Variant::Production),
            load.production,
        ),
        ("test", Route::Variant(Variant::Test), load.test),
    ] {
        if weight > 0.0 {
            let base = format!("{}/api/anthropic", service_url(route));
            let mut target =
                Target::from_base(label, &base, zai_e2e::workers::DEFAULT_OPENAI_PATH)?;
            target.weight = weight;
            targets.push(target);
        }
    }
    Ok(WorkersConfig {
        targets,
        api_key: "proxy-handles-auth".to_owned(),
        mode: LoadMode::Open {
            rate: load.rate,
            max_in_flight: load.max_in_flight,
        },
        duration: None,
        requests: None,
        stream_fraction: load.stream_fraction,
        openai_fraction: 0.3,
        request_timeout: std::time::Duration::from_secs(30),
        seed: 99,
    })
}

fn render_kind(scenario: &Scenario) -> Result<(KindObjects, Deployment, String)> {
    let seeds = ScenarioSeeds::derive(1, &scenario.name);
    let objects = manifests::render(scenario, "zr-abc123-0-test", "abc123", TOOLS_IMAGE, &seeds)?;
    let workers = manifests::workers(&workers_config(scenario)?, TOOLS_IMAGE)?;
    let yaml = zai_e2e::rehearsal::kind::stack::render_all(&objects, &workers)?;
    Ok((objects, workers, yaml))
}

/// Every document of `yaml` strictly as its k8s-openapi type, by `kind`.
fn parse_strictly(yaml: &str) -> Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value = Value::deserialize(doc)?;
        let kind = value["kind"]
            .as_str()
            .context("a document without kind")?
            .to_owned();
        let name = format!("{kind} {}", value["metadata"]["name"]);
        match kind.as_str() {
            "Namespace" => drop(strict::<Namespace>(&name, value.clone())?),
            "Secret" => drop(strict::<Secret>(&name, value.clone())?),
            "ServiceAccount" => drop(strict::<ServiceAccount>(&name, value.clone())?),
            "Role" => drop(strict::<Role>(&name, value.clone())?),
            "RoleBinding" => drop(strict::<RoleBinding>(&name, value.clone())?),
            "Service" => drop(strict::<Service>(&name, value.clone())?),
            "Deployment" => drop(strict::<Deployment>(&name, value.clone())?),
            other => anyhow::bail!("unexpected kind {other}"),
        }
        ensure!(
            value["apiVersion"].is_string() && value["metadata"]["name"].is_string(),
            "{name}: apiVersion and metadata.name"
        );
        out.push((kind, value));
    }
    Ok(out)
}

#[test]
fn kind_sources_from_deploy_are_strictly_valid_objects() -> Result<()> {
    // What the kind rehearsal renders from: a field the types do not know would be dropped
    // silently when parsed.
    for (file, kinds) in [
        ("deploy/k8s/base/deployment.yaml", "Deployment"),
        ("deploy/k8s/base/service.yaml", "Service"),
        ("deploy/k8s/shared/service-canary-split.yaml", "Service"),
        (
            "deploy/k8s/shared/promoter-rbac.yaml",
            "ServiceAccount|Role|RoleBinding",
        ),
    ] {
        let text = std::fs::read_to_string(repo().join(file))?;
        let parsed = parse_strictly(&text).with_context(|| file.to_owned())?;
        ensure!(!parsed.is_empty(), "{file}: no document");
        for (kind, _) in parsed {
            ensure!(kinds.split('|').any(|k| k == kind), "{file}: {kind}");
        }
    }
    Ok(())
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

#[test]
fn kind_rehearsal_manifests_render_as_valid_objects_that_hang_together() -> Result<()> {
    for scenario in all_scenarios() {
        let name = scenario.name.clone();
        let (objects, workers, yaml) = render_kind(&scenario)?;
        let docs = parse_strictly(&yaml).with_context(|| name.clone())?;
        let count = |kind: &str| docs.iter().filter(|(k, _)| k == kind).count();
        ensure!(
            (
                count("Namespace"),
                count("Secret"),
                count("Deployment"),
                count("Service")
            ) == (1, 1, 5, 5),
            "{name}: kinds {:?}",
            docs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>()
        );
        // Every namespaced object is in the scenario's namespace, labelled for clean-up.
        let ns = objects
            .namespace
            .metadata
            .name
            .clone()
            .context("namespace name")?;
        for (kind, v) in docs.iter().filter(|(k, _)| k != "Namespace") {
            ensure!(
                v["metadata"]["namespace"] == ns.as_str(),
                "{name}: {kind} namespace"
            );
        }
        let ns_labels = objects
            .namespace
            .metadata
            .labels
            .clone()
            .unwrap_or_default();
        ensure!(
            ns_labels
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str)
                == Some("zai-rehearse")
                && ns_labels.get(manifests::SESSION_LABEL).map(String::as_str) == Some("abc123"),
            "{name}: namespace labels {ns_labels:?}"
        );
        // Every Service selects the pods of a rendered Deployment; its targetPort is theirs.
        let deployments: Vec<&Value> = docs
            .iter()
            .filter(|(k, _)| k == "Deployment")
            .map(|(_, v)| v)
            .collect();
        for (_, service) in docs.iter().filter(|(k, _)| k == "Service") {
            let selector = labels_of(&service["spec"]["selector"]);
            let target = service["spec"]["ports"][0]["targetPort"].clone();
            let matched: Vec<&&Value> = deployments
                .iter()
                .filter(|d| {
                    let labels = labels_of(&d["spec"]["template"]["metadata"]["labels"]);
                    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
                })
                .collect();
            ensure!(
                !matched.is_empty(),
                "{name}: service {} selects nothing",
                service["metadata"]["name"]
            );
            for d in matched {
                let ports = &d["spec"]["template"]["spec"]["containers"][0]["ports"];
                ensure!(
                    ports
                        .as_array()
                        .is_some_and(|p| p.iter().any(|p| p["name"] == target)),
                    "{name}: service {} targets {target}, not a port of {}",
                    service["metadata"]["name"],
                    d["metadata"]["name"]
                );
            }
        }
        // Secret references name the rendered Secret and one of its keys.
        let secret = objects.secret.string_data.clone().unwrap_or_default();
        for d in &deployments {
            for c in d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
            {
                for e in c["env"].as_array().into_iter().flatten() {
                    let r = &e["valueFrom"]["secretKeyRef"];
                    if !r.is_null() {
                        ensure!(
                            r["name"] == "zai-api-key"
                                && r["key"].as_str().is_some_and(|k| secret.contains_key(k)),
                            "{name}: {} refers to {r}",
                            d["metadata"]["name"]
                        );
                    }
                }
            }
        }
        // Images: the tools image or one of the versions built for the scenario.
        let versions: Vec<String> = version_images(&scenario)?
            .into_iter()
            .map(|v| v.image)
            .collect();
        for tag in [OLD_VERSION, CANARY_VERSION, NEW_VERSION] {
            ensure!(
                versions.contains(&format!("zai-proxy:{tag}")),
                "{name}: no image for {tag}"
            );
        }
        for d in &deployments {
            let image = d["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or("");
            ensure!(
                image == TOOLS_IMAGE || versions.iter().any(|v| v == image),
                "{name}: image {image}"
            );
        }
        // The proxies are deploy/k8s's (probes, security, limits), requests lowered.
        for (d, variant) in objects.proxies.iter().zip(Variant::ALL) {
            let reference = zai_e2e::rehearsal::manifests::deployment(variant, "x:1", 1)?;
            let ours = d
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .context("pod")?;
            let theirs = reference
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .context("pod")?;
            let (c, r) = (&ours.containers[0], &theirs.containers[0]);
            ensure!(
                c.readiness_probe == r.readiness_probe
                    && c.startup_probe == r.startup_probe
                    && c.liveness_probe == r.liveness_probe
                    && c.security_context == r.security_context
                    && c.env == r.env
                    && c.resources.as_ref().map(|x| &x.limits)
                        == r.resources.as_ref().map(|x| &x.limits),
                "{name}: {:?} differs from deploy/k8s beyond images and requests",
                d.metadata.name
            );
        }
        // The promoter's Role lets it read pods through the pod proxy.
        ensure!(
            objects.role.rules.iter().flatten().any(|r| r
                .resources
                .iter()
                .flatten()
                .any(|x| x == "pods/proxy")
                && r.verbs.iter().any(|v| v == "get")),
            "{name}: the Role has no get pods/proxy"
        );
        // The fakes listen where the versions' images send the proxies.
        for v in version_images(&scenario)? {
            let url = v
                .args
                .iter()
                .find_map(|a| a.strip_prefix("--zai-target-url="))
                .context("a version without its upstream")?;
            let fake = [Upstream::Old, Upstream::New]
                .into_iter()
                .find(|u| u.url() == url);
            ensure!(fake.is_some(), "{name}: {} sends to {url}", v.tag);
            let service = objects.fake_services.iter().find(|s| {
                Some(format!(
                    "http://{}:{FAKE_PORT}",
                    s.metadata.name.clone().unwrap_or_default()
                )) == Some(url.to_owned())
            });
            ensure!(service.is_some(), "{name}: no Service for {url}");
        }
        // The fakes start with the scenario's canary-phase faults, seeded.
        for (d, faults) in objects
            .fakes
            .iter()
            .zip([&scenario.faults.old.canary, &scenario.faults.new.canary])
        {
            let command = d
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|p| p.containers[0].command.clone())
                .unwrap_or_default();
            let json = command
                .windows(2)
                .find(|w| w[0] == "--faults")
                .map(|w| w[1].clone())
                .context("fake without --faults")?;
            let started: zai_e2e::fake::Faults = serde_json::from_str(&json)?;
            ensure!(
                &started == faults,
                "{name}: {:?} starts with {started:?}",
                d.metadata.name
            );
            ensure!(
                command.iter().any(|a| a == "--pod-network")
                    && command.iter().any(|a| a == "--seed"),
                "{name}: {command:?}"
            );
        }
        // The workers run the driver's configuration against the proxies' Services.
        let command = workers
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.containers[0].command.clone())
            .unwrap_or_default();
        let json = command
            .windows(2)
            .find(|w| w[0] == "--config-json")
            .map(|w| w[1].clone())
            .context("workers without --config-json")?;
        let config: WorkersConfig = serde_json::from_str(&json)?;
        ensure!(
            config == workers_config(&scenario)?,
            "{name}: workers config changed in the manifest"
        );
        let proxy_services: Vec<String> = objects
            .services
            .iter()
            .filter_map(|s| s.metadata.name.clone())
            .collect();
        for t in &config.targets {
            let host = t
                .anthropic_url
                .trim_start_matches("http://")
                .split(':')
                .next()
                .unwrap_or("");
            ensure!(
                proxy_services.iter().any(|s| s == host) && t.anthropic_url.contains(":8080/"),
                "{name}: workers target {}",
                t.anthropic_url
            );
        }
    }
    Ok(())
}

/// `--flag=value` → (env name, value) through zai-proxy's own arguments.
fn setting_of_flag(flag: &str) -> Result<(String, String)> {
    let (long, value) = flag
        .strip_prefix("--")
        .and_then(|f| f.split_once('='))
        .with_context(|| format!("{flag} is not --name=value"))?;
    let command = zai_proxy::config::Args::command();
    let arg = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .with_context(|| format!("zai-proxy has no flag --{long}"))?;
    let env = arg
        .get_env()
        .with_context(|| format!("--{long} has no environment variable"))?;
    Ok((env.to_string_lossy().into_owned(), value.to_owned()))
}

/// A pod's effective settings: the container's env (the Secret resolved), then the image's
/// ENV for names the container does not set, then the image's CMD flags over both.
fn effective(
    container_env: &[(String, String)],
    version: &VersionImage,
) -> Result<BTreeMap<String, String>> {
    let mut out: BTreeMap<String, String> = version.env.clone();
    for (k, v) in container_env {
        out.insert(k.clone(), v.clone());
    }
    for flag in &version.args {
        let (k, v) = setting_of_flag(flag)?;
        out.insert(k, v);
    }
    Ok(out)
}

#[test]
fn kind_version_images_configure_each_version_like_the_simulated_catalog() -> Result<()> {
    for scenario in all_scenarios() {
        let name = scenario.name.clone();
        let (objects, _, _) = render_kind(&scenario)?;
        let key = objects
            .secret
            .string_data
            .clone()
            .unwrap_or_default()
            .get("api-key")
            .cloned()
            .context("secret key")?;
        for version in version_images(&scenario)? {
            let variant = if version.tag == OLD_VERSION {
                Variant::Production
            } else {
                Variant::Test
            };
            let d = objects
                .proxies
                .iter()
                .find(|d| {
                    d.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("variant"))
                        .map(String::as_str)
                        == Some(variant.label())
                })
                .context("deployment")?;
            let env: Vec<(String, String)> = d
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .map(|p| p.containers[0].env.clone().unwrap_or_default())
                .unwrap_or_default()
                .into_iter()
                .map(|e| {
                    let value = match e.value_from {
                        Some(_) => key.clone(),
                        None => e.value.unwrap_or_default(),
                    };
                    (e.name, value)
                })
                .collect();
            let settings =
                effective(&env, &version).with_context(|| format!("{name} {}", version.tag))?;
            let old = version.tag == OLD_VERSION;
            // The version's upstream and the scenario's settings reach the process.
            let upstream = if old { Upstream::Old } else { Upstream::New };
            ensure!(
                settings["ZAI_TARGET_URL"] == upstream.url(),
                "{name} {}: {settings:?}",
                version.tag
            );
            let mut wanted = scenario.env.clone();
            if !old {
                wanted.extend(scenario.new_env.clone());
            }
            if version.tag == CANARY_VERSION {
                wanted.extend(scenario.canary_env.clone());
            }
            for (k, v) in &wanted {
                ensure!(
                    settings.get(k) == Some(v),
                    "{name} {}: {k} is {:?}, not {v}",
                    version.tag,
                    settings.get(k)
                );
            }
            if !wanted.contains_key("ZAI_API_KEY") {
                ensure!(
                    settings["ZAI_API_KEY"] == key,
                    "{name} {}: the key",
                    version.tag
                );
            }
            ensure!(
                settings["DEPLOYMENT_VARIANT"] == variant.label(),
                "{name}: variant"
            );
            ensure!(
                settings["RATE_LIMIT_STATE_FILE"].is_empty(),
                "{name}: no ceiling file"
            );
            // zai-proxy itself takes the result: start-up validation passes, except where
            // the scenario breaks it on purpose (MAX_WORKERS=0).
            let mut argv = vec!["zai-proxy".to_owned()];
            for (k, v) in &settings {
                let command = zai_proxy::config::Args::command();
                if let Some(arg) = command
                    .get_arguments()
                    .find(|a| a.get_env().is_some_and(|e| e == k.as_str()))
                {
                    argv.push(format!("--{}={v}", arg.get_long().unwrap_or_default()));
                }
            }
            let args = zai_proxy::config::Args::try_parse_from(&argv)
                .with_context(|| format!("{name} {}: {argv:?}", version.tag))?;
            let config = zai_proxy::config::Config::from_args(args);
            let breaks = settings.get("MAX_WORKERS").map(String::as_str) == Some("0");
            ensure!(
                config.is_ok() != breaks,
                "{name} {}: start-up validation {:?} (MAX_WORKERS {:?})",
                version.tag,
                config.err().map(|e| e.to_string()),
                settings.get("MAX_WORKERS")
            );
        }
    }
    Ok(())
}

fn require_tool(tool: &str, args: &[&str]) {
    let ok = Command::new(tool)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "ZAI_E2E_KIND=1 but `{tool} {}` does not run: install {tool} (docs/KIND_DEMO.md) or unset ZAI_E2E_KIND",
        args.join(" ")
    );
}

#[test]
fn kind_rehearsal_runs_the_driver_on_a_real_cluster() -> Result<()> {
    if std::env::var("ZAI_E2E_KIND").as_deref() != Ok("1") {
        eprintln!(
            "kind_rehearsal_runs_the_driver_on_a_real_cluster: skipped: set ZAI_E2E_KIND=1 \
             (needs docker, kind, kubectl and the kindest/node image; cannot run in this project's CI)"
        );
        return Ok(());
    }
    require_tool("kind", &["version"]);
    require_tool("docker", &["info"]);
    require_tool("kubectl", &["version", "--client"]);
    let dir = tempfile::tempdir()?;
    let cluster =
        std::env::var("ZAI_E2E_KIND_CLUSTER").unwrap_or_else(|_| "zai-rehearsal-test".to_owned());
    let status = Command::new(env!("CARGO_BIN_EXE_zai-rehearse"))
        .args(["--platform", "kind", "--kind-cluster", &cluster])
        .args([
            "--scenario",
            "healthy",
            "--scenario",
            "canary-errors",
            "--report-dir",
        ])
        .arg(dir.path())
        .env("ZAI_PROXY_BIN", zai_e2e::proxy_binary(false)?)
        .status()
        .context("running zai-rehearse --platform kind")?;
    let text = std::fs::read_to_string(dir.path().join("rehearsal.json"))
        .with_context(|| format!("no rehearsal.json (exit {:?})", status.code()))?;
    let summary: Value = serde_json::from_str(&text)?;
    ensure!(
        summary["platform"] == "kind",
        "platform {}",
        summary["platform"]
    );
    ensure!(
        summary["cluster"]["kind_cluster"] == cluster.as_str()
            && summary["cluster"]["kubeconfig"].is_string(),
        "cluster record {}",
        summary["cluster"]
    );
    for s in summary["scenarios"].as_array().into_iter().flatten() {
        ensure!(
            s["passed"] == true,
            "{} did not pass: {}",
            s["name"],
            s["problems"]
        );
        ensure!(s["kubeconfig"].is_string(), "{}: no kubeconfig", s["name"]);
    }
    ensure!(
        status.success(),
        "zai-rehearse --platform kind exited {:?}",
        status.code()
    );
    Ok(())
}

/// `docker run` arguments for a proxy container of `d` as the kubelet would start it: the
/// container's `env` (the Secret resolved to `key`), nothing else.
fn kubelet_env(d: &Deployment, key: &str) -> Vec<String> {
    let env = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers[0].env.clone().unwrap_or_default())
        .unwrap_or_default();
    env.into_iter()
        .flat_map(|e| {
            let value = match e.value_from {
                Some(_) => key.to_owned(),
                None => e.value.unwrap_or_default(),
            };
            ["-e".to_owned(), format!("{}={value}", e.name)]
        })
        .collect()
}

fn docker(args: &[&str]) -> Result<std::process::Output> {
    Command::new("docker")
        .args(args)
        .output()
        .with_context(|| format!("docker {}", args.join(" ")))
}

/// `docker run --name NAME args…` bounded to `limit`: (exit code, None if still running at
/// the limit; logs); the container is removed either way.
fn docker_run_bounded(
    name: &str,
    args: &[String],
    limit: std::time::Duration,
) -> Result<(Option<i32>, String)> {
    let mut child = Command::new("docker")
        .args(["run", "--name", name])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let deadline = std::time::Instant::now() + limit;
    let code = loop {
        if let Some(status) = child.try_wait()? {
            break status.code();
        }
        if std::time::Instant::now() >= deadline {
            let _ = docker(&["kill", name]);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let logs = docker(&["logs", name])?;
    let _ = docker(&["rm", "-f", name]);
    Ok((
        code,
        format!(
            "{}{}",
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr)
        ),
    ))
}

/// The images a kind rehearsal builds, built with the local Docker daemon (no kind needed)
/// and started as the kubelet would start them from the rendered Deployments: the
/// configuration built into a version's image is what the proxy runs with. (The tags are the
/// same for every scenario — a kind run rebuilds and reloads them per scenario — so the
/// containers are started from the last scenario built, crash-loop.)
#[tokio::test]
async fn kind_version_images_build_and_start_like_in_the_cluster() -> Result<()> {
    let gate = zai_e2e::platform::docker::docker_available().await;
    if !zai_e2e::rehearsal::suite::dependency_gate(
        "kind_version_images_build_and_start_like_in_the_cluster",
        gate,
    ) {
        return Ok(());
    }
    let binaries =
        zai_e2e::rehearsal::kind::images::Binaries::find(&zai_e2e::proxy_binary(false)?)?;
    let images = tokio::task::spawn_blocking(move || {
        zai_e2e::rehearsal::kind::images::Images::contexts(&binaries)
    })
    .await??;
    let images = std::sync::Arc::new(images);
    for name in ["not-ready", "crash-loop"] {
        let scenario = builtin()
            .into_iter()
            .find(|s| s.name == name)
            .context("scenario")?;
        let versions = version_images(&scenario)?;
        let built = {
            let (images, versions) = (std::sync::Arc::clone(&images), versions.clone());
            tokio::task::spawn_blocking(move || images.build_versions(&versions)).await??
        };
        ensure!(built.len() == 3, "{name}: {built:?}");
        for v in &versions {
            let out = docker(&["image", "inspect", &v.image, "--format", "{{json .Config}}"])?;
            ensure!(out.status.success(), "{name}: inspect {}", v.image);
            let config: Value = serde_json::from_slice(&out.stdout)?;
            let cmd: Vec<String> =
                serde_json::from_value(config["Cmd"].clone()).unwrap_or_default();
            ensure!(cmd == v.args, "{name} {}: Cmd {cmd:?}", v.tag);
            let env: Vec<String> =
                serde_json::from_value(config["Env"].clone()).unwrap_or_default();
            ensure!(
                env.contains(&format!("ZAI_PROXY_VERSION={}", v.tag)),
                "{name} {}: {env:?}",
                v.tag
            );
            for (k, value) in &v.env {
                ensure!(
                    env.contains(&format!("{k}={value}")),
                    "{name} {}: {k} not in {env:?}",
                    v.tag
                );
            }
        }
    }
    // crash-loop's images are the last built: the canary (MAX_WORKERS=0 built in) fails
    // start-up validation although the Deployment's env says MAX_WORKERS=50; production
    // (1.2.0) starts and serves.
    let scenario = builtin()
        .into_iter()
        .find(|s| s.name == "crash-loop")
        .context("scenario")?;
    let versions = version_images(&scenario)?;
    let (objects, _, _) = render_kind(&scenario)?;
    let key = objects.secret.string_data.clone().unwrap_or_default()["api-key"].clone();
    let mut args: Vec<String> = vec!["--network".into(), "none".into()];
    args.extend(kubelet_env(&objects.proxies[1], &key));
    args.push("zai-proxy:1.2.1-canary".into());
    let canary = format!("zai-kind-image-test-canary-{}", std::process::id());
    let (code, logs) = tokio::task::spawn_blocking(move || {
        docker_run_bounded(&canary, &args, std::time::Duration::from_secs(60))
    })
    .await??;
    ensure!(
        code == Some(2) && logs.contains("MAX_WORKERS"),
        "crash-loop canary: exit {code:?} (None: still running after 60 s): {logs}"
    );
    let port = zai_e2e::platform::ports::free_port()?;
    let name = format!("zai-kind-image-test-{port}");
    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--name".into(),
        name.clone(),
        "--network".into(),
        "host".into(),
        "-e".into(),
        format!("LISTEN_ADDR=127.0.0.1:{port}"),
    ];
    args.extend(kubelet_env(&objects.proxies[0], &key));
    args.push("zai-proxy:1.2.0".into());
    let out = docker(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    ensure!(
        out.status.success(),
        "docker run 1.2.0: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut metrics = String::new();
    for _ in 0..150 {
        if let Ok(answer) = client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            && answer.status().is_success()
        {
            metrics = answer.text().await.unwrap_or_default();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let logs = docker(&["logs", &name])?;
    let _ = docker(&["rm", "-f", &name])?;
    ensure!(
        metrics.contains("version=\"1.2.0\""),
        "1.2.0 did not serve its metrics: {}{}",
        String::from_utf8_lossy(&logs.stdout),
        String::from_utf8_lossy(&logs.stderr)
    );
    ensure!(versions.iter().any(|v| v.tag == "1.2.0"));
    Ok(())
}
