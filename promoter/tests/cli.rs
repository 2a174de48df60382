//! The binary: help, configuration errors and an unreachable cluster exit 1 with a clear
//! message.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zai-promoter"))
}

#[test]
fn help_lists_the_subcommands() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in [
        "check",
        "promote",
        "rollback",
        "watch",
        "--report-dir",
        "--dry-run",
    ] {
        assert!(text.contains(sub), "{sub} missing from:\n{text}");
    }
}

#[test]
fn a_bad_config_exits_1_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("promotion.toml");
    std::fs::write(&cfg, "[checks.\"rollout.typo\"]\nthreshold = 1\n").unwrap();
    let out = bin()
        .arg("--config")
        .arg(&cfg)
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown check id") && err.contains("rollout.typo"),
        "{err}"
    );
    let out = bin()
        .args(["--config", "/nonexistent/promotion.toml", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn an_unreachable_cluster_exits_1() {
    let out = bin()
        .args(["--prometheus-url", "http://127.0.0.1:9", "check"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach Kubernetes"));
}
