//! The alert rules under real `promtool`:
//!
//! * `promtool check rules` on deploy/prometheus/zai-proxy-rules.yml,
//! * `promtool test rules` on its unit tests (every alert: one input that fires it, one
//!   that must not),
//! * every Grafana dashboard query parses as PromQL (promtool check rules on a wrapper),
//! * and a broken copy of the rules must make `promtool test rules` fail, so this suite can
//!   fail at all.
//!
//! promtool (Debian package `prometheus`) is required when `CI` is set; elsewhere these tests
//! skip with a one-line reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, ensure};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ lives inside the workspace root")
        .to_path_buf()
}

/// Whether promtool runs. Without it: fail under CI, skip (with a reason) otherwise.
fn promtool_available(test: &str) -> bool {
    let ok = Command::new("promtool")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: promtool is required when CI is set (apt-get install prometheus)"
        );
        eprintln!("{test}: skipped: promtool not found (apt-get install prometheus)");
    }
    ok
}

fn promtool(args: &[&str], dir: &Path) -> Result<Output> {
    Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running promtool")
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn promtool_check_rules_accepts_the_rules_file() -> Result<()> {
    if !promtool_available("promtool_check_rules_accepts_the_rules_file") {
        return Ok(());
    }
    let out = promtool(
        &["check", "rules", "zai-proxy-rules.yml"],
        &repo().join("deploy/prometheus"),
    )?;
    ensure!(
        out.status.success(),
        "promtool check rules failed: {}",
        describe(&out)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        text.contains("SUCCESS: 11 rules found"),
        "unexpected output: {text}"
    );
    Ok(())
}

#[test]
fn promtool_unit_tests_pass_for_every_alert() -> Result<()> {
    if !promtool_available("promtool_unit_tests_pass_for_every_alert") {
        return Ok(());
    }
    let dir = repo().join("deploy/prometheus");
    let out = promtool(&["test", "rules", "tests/zai-proxy-rules.test.yml"], &dir)?;
    ensure!(
        out.status.success(),
        "promtool test rules failed: {}",
        describe(&out)
    );

    // Every alert of the rules file is exercised by the tests, both ways.
    let rules = std::fs::read_to_string(dir.join("zai-proxy-rules.yml"))?;
    let tests = std::fs::read_to_string(dir.join("tests/zai-proxy-rules.test.yml"))?;
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    ensure!(alerts.len() == 11, "alerts found: {alerts:?}");
    for alert in alerts {
        let blocks: Vec<&str> = tests
            .split("- eval_time:")
            .skip(1)
            .filter(|b| b.contains(&format!("alertname: {alert}\n")))
            .collect();
        ensure!(
            blocks.iter().any(|b| b.contains("exp_alerts: []")),
            "{alert}: no test where it must stay silent"
        );
        ensure!(
            blocks.iter().any(|b| b.contains("exp_labels:")),
            "{alert}: no test where it fires"
        );
    }
    Ok(())
}

#[test]
fn promtool_unit_tests_catch_the_originals_status_label_mistake() -> Result<()> {
    if !promtool_available("promtool_unit_tests_catch_the_originals_status_label_mistake") {
        return Ok(());
    }
    // The original's docs filtered on `status`; rules written that way must fail the tests.
    let tmp = tempfile::tempdir()?;
    let src = repo().join("deploy/prometheus");
    std::fs::create_dir(tmp.path().join("tests"))?;
    let rules = std::fs::read_to_string(src.join("zai-proxy-rules.yml"))?;
    ensure!(rules.contains("status_code=~\"5..\""));
    std::fs::write(
        tmp.path().join("zai-proxy-rules.yml"),
        rules.replace("status_code=~\"5..\"", "status=~\"5..\""),
    )?;
    std::fs::copy(
        src.join("tests/zai-proxy-rules.test.yml"),
        tmp.path().join("tests/zai-proxy-rules.test.yml"),
    )?;
    let out = promtool(
        &["test", "rules", "tests/zai-proxy-rules.test.yml"],
        tmp.path(),
    )?;
    ensure!(
        !out.status.success(),
        "broken rules passed the unit tests: {}",
        describe(&out)
    );
    Ok(())
}

#[test]
fn grafana_dashboard_queries_are_valid_promql() -> Result<()> {
    if !promtool_available("grafana_dashboard_queries_are_valid_promql") {
        return Ok(());
    }
    // promtool parses every expression of a rules file: wrap each panel query in a recording
    // rule (Grafana's $__rate_interval and $namespace replaced by what Grafana would send).
    let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        repo().join("deploy/grafana/zai-proxy-canary-comparison.json"),
    )?)?;
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut count = 0;
    for panel in dash["panels"].as_array().context("panels")? {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().context("expr")?;
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$namespace", "zai-proxy");
            count += 1;
            rules.push_str(&format!(
                "      - record: dashboard_query_{count}\n        expr: {}\n",
                serde_json::to_string(&expr)?
            ));
        }
    }
    ensure!(count >= 14, "only {count} dashboard queries");
    let tmp = tempfile::tempdir()?;
    std::fs::write(tmp.path().join("dashboard.rules.yml"), rules)?;
    let out = promtool(&["check", "rules", "dashboard.rules.yml"], tmp.path())?;
    ensure!(
        out.status.success(),
        "dashboard PromQL rejected: {}",
        describe(&out)
    );
    Ok(())
}
