//! `zai-rehearse`'s `--seed`, `--repeat` and `--jobs` are checked before anything starts: bad values
//! are refused with a message naming the flag and the accepted range. So is `--platform kind`
//! without a usable kind cluster (no kubeconfig, a context that is not kind's, an API server
//! that does not answer, `--signals prometheus`): exit 2 with the reason, nothing started.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test on purpose")]

use std::process::Command;

fn rehearse(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_zai-rehearse"))
        .args(args)
        .env_remove("ZAI_REHEARSE_SEED")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_repeat_and_seed_values_are_refused_with_a_clear_error() {
    for bad in ["0", "-3", "many", "1.5", "1001"] {
        let (code, stderr) = rehearse(&[&format!("--repeat={bad}"), "--scenario", "healthy"]);
        assert_eq!(code, 2, "--repeat {bad}: {stderr}");
        assert!(
            stderr.contains("--repeat")
                && stderr.contains("repeat must be a whole number of runs from 1 to 1000"),
            "--repeat {bad}: {stderr}"
        );
    }
    for bad in ["-1", "abc", "18446744073709551616", "2.5"] {
        let (code, stderr) = rehearse(&[&format!("--seed={bad}"), "--scenario", "healthy"]);
        assert_eq!(code, 2, "--seed {bad}: {stderr}");
        assert!(
            stderr.contains("--seed") && stderr.contains("seed must be a whole number"),
            "--seed {bad}: {stderr}"
        );
    }
}

#[test]
fn bad_jobs_values_and_jobs_with_kind_or_hold_are_refused_before_anything_starts() {
    for bad in ["0", "9", "many"] {
        let (code, stderr) = rehearse(&[&format!("--jobs={bad}"), "--scenario", "healthy"]);
        assert_eq!(code, 2, "--jobs {bad}: {stderr}");
        assert!(
            stderr.contains("jobs must be a whole number of scenarios run at once from 1 to 8"),
            "--jobs {bad}: {stderr}"
        );
    }
    for extra in [["--platform", "kind"], ["--hold", "--scenario=healthy"]] {
        let mut args = vec!["--jobs", "3"];
        args.extend(extra);
        let (code, stderr) = rehearse(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains("run one at a time (drop --jobs)"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn the_seed_can_come_from_the_environment_and_is_checked_there_too() {
    let output = Command::new(env!("CARGO_BIN_EXE_zai-rehearse"))
        .args(["--scenario", "no-such-scenario"])
        .env("ZAI_REHEARSE_SEED", "nope")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("seed must be a whole number"));
    // A valid seed passes parsing; the unknown scenario is then the error.
    let (code, stderr) = rehearse(&[
        "--seed",
        "0",
        "--repeat",
        "3",
        "--scenario",
        "no-such-scenario",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("unknown scenario"), "{stderr}");
}

/// A kubeconfig whose one context points at `server`.
fn kubeconfig(dir: &std::path::Path, context: &str, server: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{context}.kubeconfig"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n  - name: c\n    cluster:\n      server: {server}\nusers:\n  - name: u\n    user: {{}}\ncontexts:\n  - name: {context}\n    context:\n      cluster: c\n      user: u\ncurrent-context: {context}\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn platform_kind_without_a_usable_cluster_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-kubeconfig");
    // Nothing listens on port 9 of loopback: the API server does not answer.
    let gone = kubeconfig(dir.path(), "kind-gone", "https://127.0.0.1:9");
    let not_kind = kubeconfig(dir.path(), "production", "https://127.0.0.1:9");
    let cases: [(Vec<String>, &str); 5] = [
        (
            vec!["--kubeconfig".into(), missing.display().to_string()],
            "no kubeconfig at",
        ),
        (
            vec!["--kubeconfig".into(), gone.display().to_string()],
            "does not answer",
        ),
        (
            vec!["--kubeconfig".into(), not_kind.display().to_string()],
            "is not a kind cluster's",
        ),
        (
            vec![
                "--kubeconfig".into(),
                gone.display().to_string(),
                "--signals".into(),
                "prometheus".into(),
            ],
            "--signals prometheus is not supported",
        ),
        (
            vec!["--kind-cluster".into(), "Not_A_Name".into()],
            "is not a kind cluster name",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["--platform", "kind", "--scenario", "healthy"];
        args.extend(extra.iter().map(String::as_str));
        let output = Command::new(env!("CARGO_BIN_EXE_zai-rehearse"))
            .args(&args)
            .env_remove("ZAI_REHEARSE_SEED")
            .env_remove("KUBECONFIG")
            .env("HOME", dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("--platform kind: ") && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // Without --kubeconfig: $KUBECONFIG, then ~/.kube/config.
    let output = Command::new(env!("CARGO_BIN_EXE_zai-rehearse"))
        .args(["--platform", "kind", "--scenario", "healthy"])
        .env_remove("KUBECONFIG")
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let default = dir.path().join(".kube").join("config");
    assert!(
        stderr.contains(&format!("no kubeconfig at {}", default.display())),
        "{stderr}"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_zai-rehearse"))
        .args(["--platform", "kind", "--scenario", "healthy"])
        .env("KUBECONFIG", &gone)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("does not answer"), "{stderr}");
}
