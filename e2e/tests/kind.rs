//! The kind demo (`deploy/kind/demo.sh`).
//!
//! * Always: the deploy scripts pass `bash -n` and `shellcheck` (shellcheck required when `CI`
//!   is set), and `demo.sh --render-only` renders, for both scenarios, manifests that parse
//!   into their Kubernetes types and differ only where the scenario says.
//! * With `ZAI_E2E_KIND=1`: the real thing against a kind cluster — the healthy scenario must
//!   promote (exit 0, report outcome `promoted`), the bad-canary scenario must be refused
//!   before production is touched (exit 2, outcome `aborted`). It needs Docker, kind, kubectl and network access to
//!   pull `kindest/node` and `prom/prometheus`, so it cannot run in this project's CI (no
//!   image can be pulled there); without the variable it skips with that reason.

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
