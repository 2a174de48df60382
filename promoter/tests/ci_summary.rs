//! The CI job summary (`--summary`, `$GITHUB_STEP_SUMMARY`): rendered from the recorded
//! reports in tests/golden/*.report.json and compared with golden files; written by the
//! binary even when it cannot run; and the example pipelines under deploy/ci/ only use flags
//! the binary has. Regenerate the golden files with
//! `UPDATE_GOLDEN=1 cargo test -p zai-promoter --test ci_summary`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use zai_promoter::Report;
use zai_promoter::ci::ReportLinks;
use zai_promoter::report::render_step_summary;
use zai_promoter::report::step_summary::deciders;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/");

fn recorded(name: &str) -> Report {
    let text = std::fs::read_to_string(format!("{GOLDEN}{name}.report.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn compare(file: &str, actual: &str) {
    let path = format!("{GOLDEN}{file}");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "{file} differs from the golden file (UPDATE_GOLDEN=1 to accept):\n--- actual ---\n{actual}"
    );
}

fn gitlab() -> ReportLinks {
    ReportLinks::from_env(|name| {
        match name {
            "GITLAB_CI" => Some("true"),
            "CI_JOB_URL" => Some("https://gitlab.example/team/zai/-/jobs/4242"),
            "CI_PROJECT_DIR" => Some("/builds/team/zai"),
            _ => None,
        }
        .map(str::to_owned)
    })
}

#[test]
fn summaries_of_recorded_reports_match_golden_files() {
    for name in ["promoted", "rolled_back", "aborted"] {
        let report = recorded(name);
        let md = render_step_summary(
            &report,
            Some(Path::new("reports/promotion")),
            &ReportLinks::default(),
        );
        compare(&format!("{name}.summary.md"), &md);
    }
    // On GitLab the reports are links to the job's artifact files.
    let md = render_step_summary(
        &recorded("rolled_back"),
        Some(Path::new("/builds/team/zai/reports/promotion")),
        &gitlab(),
    );
    compare("rolled_back.gitlab.summary.md", &md);
}

#[test]
fn the_summary_names_what_decided_with_its_evidence() {
    let report = recorded("rolled_back");
    let ids: Vec<&str> = deciders(&report).iter().map(|d| d.id).collect();
    assert_eq!(
        ids,
        [
            "rollout.pods_ready",
            "rollout.no_crash_loops",
            "trigger.crash_loop"
        ]
    );
    let md = render_step_summary(&report, None, &ReportLinks::default());
    assert!(
        md.starts_with("### ❌ zai-promoter promote: rolled back"),
        "{md}"
    );
    assert!(
        md.contains("  - production-1.2.1-0 is in CrashLoopBackOff"),
        "{md}"
    );
    assert!(md.contains("No report files written"), "{md}");

    let promoted = recorded("promoted");
    assert!(deciders(&promoted).is_empty());
    let md = render_step_summary(&promoted, None, &ReportLinks::default());
    assert!(
        md.starts_with("### ✅ zai-promoter promote: promoted"),
        "{md}"
    );
    assert!(!md.contains("**Decided by:**"), "{md}");

    // A run that ended on missing data names the checks without data.
    let aborted = recorded("aborted");
    let ids: Vec<&str> = deciders(&aborted).iter().map(|d| d.id).collect();
    assert!(!ids.is_empty(), "aborted run without deciders");
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zai-promoter"))
}

#[test]
fn a_run_that_cannot_start_still_writes_its_summary_and_appends_to_the_step_summary() {
    let dir = tempfile::tempdir().unwrap();
    let own = dir.path().join("out/summary.md");
    let step = dir.path().join("step_summary.md");
    std::fs::write(&step, "## earlier step\n").unwrap();
    let out = bin()
        .args(["--prometheus-url", "http://127.0.0.1:9", "--summary"])
        .arg(&own)
        .arg("check")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("GITHUB_STEP_SUMMARY", &step)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let own = std::fs::read_to_string(&own).unwrap();
    assert!(
        own.starts_with("### ⚠️ zai-promoter check: could not run")
            && own.contains("cannot reach Kubernetes"),
        "{own}"
    );
    let step = std::fs::read_to_string(&step).unwrap();
    assert_eq!(step, format!("## earlier step\n\n{own}"));
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn pipeline_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["deploy/ci/github", "deploy/ci/gitlab"] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `--flags` on the lines that build zai-promoter's command line (cargo's own excluded).
fn promoter_flags(text: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for line in text.lines() {
        let is_promoter = line.contains("zai-promoter \"")
            || line.contains("args=(")
            || line.contains("args+=(")
            || line.contains("promote=(")
            || line.contains("promote+=(")
            || line.trim_start().starts_with("--");
        if !is_promoter || line.contains("cargo ") || line.contains("zai-rehearse") {
            continue;
        }
        for word in line.split(|c: char| c.is_whitespace() || c == '(' || c == ')') {
            if let Some(flag) = word.strip_prefix("--")
                && flag.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            {
                let flag: String = flag
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                flags.insert(format!("--{flag}"));
            }
        }
    }
    flags
}

#[test]
fn the_example_pipelines_only_use_flags_the_binary_has() {
    let help = |args: &[&str]| {
        let out = bin().args(args).output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let known = help(&["--help"]) + &help(&["promote", "--help"]);
    let mut promote_files = 0;
    for file in pipeline_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        if !text.contains("zai-promoter \"${args[@]}\"") {
            continue;
        }
        promote_files += 1;
        let flags = promoter_flags(&text);
        for expected in ["--summary", "--report-dir", "--namespace", "--repo"] {
            assert!(
                flags.contains(expected),
                "{}: {expected} not found among {flags:?}",
                file.display()
            );
        }
        for flag in &flags {
            assert!(
                known.contains(&format!("{flag} ")) || known.contains(&format!("{flag}\n")),
                "{}: zai-promoter has no {flag}",
                file.display()
            );
        }
    }
    assert_eq!(promote_files, 2, "a GitHub and a GitLab promotion");
}
