//! zai-rehearse's CI outputs from a recorded run (tests/fixtures/ci/rehearsal.json, written by
//! `zai-rehearse --scenario healthy --scenario canary-errors --scenario-file
//! tests/fixtures/ci/errors-expected-to-pass.toml --report-dir reports/rehearsal`: the last
//! scenario expects a promotion of a canary that fails 30 % of requests, a real miss): the job
//! summary and junit.xml compared with golden files, and the binary writing a summary when it
//! cannot run. Regenerate the golden files with
//! `UPDATE_GOLDEN=1 cargo test -p zai-e2e --test ci_summary`.

use std::path::Path;
use std::process::Command;

use zai_e2e::rehearsal::junit::render_junit;
use zai_e2e::rehearsal::step_summary::render_step_summary;
use zai_e2e::rehearsal::summary::Summary;
use zai_promoter::ci::ReportLinks;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ci/");
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/ci/");

fn recorded() -> Summary {
    let text = std::fs::read_to_string(format!("{FIXTURES}rehearsal.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("recorded rehearsal.json: {e}"))
}

fn compare(file: &str, actual: &str) {
    let path = format!("{GOLDEN}{file}");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("{e}"));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "{file} differs from the golden file (UPDATE_GOLDEN=1 to accept):\n--- actual ---\n{actual}"
    );
}

#[test]
fn summary_and_junit_of_a_recorded_run_match_golden_files() {
    let summary = recorded();
    let json = Path::new("reports/rehearsal/rehearsal.json");
    compare(
        "rehearsal.summary.md",
        &render_step_summary(&summary, json, &ReportLinks::default()),
    );
    let github = ReportLinks::from_env(|name| {
        match name {
            "GITHUB_ACTIONS" => Some("true"),
            "GITHUB_SERVER_URL" => Some("https://github.com"),
            "GITHUB_REPOSITORY" => Some("team/zai-proxy"),
            "GITHUB_RUN_ID" => Some("123456"),
            _ => None,
        }
        .map(str::to_owned)
    });
    compare(
        "rehearsal.github.summary.md",
        &render_step_summary(&summary, json, &github),
    );
    compare("rehearsal.junit.xml", &render_junit(&summary));
}

#[test]
fn a_missed_expectation_heads_the_summary_and_fails_its_testcase() {
    let summary = recorded();
    let missed: Vec<&str> = summary
        .scenarios
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(missed.len(), 1, "the fixture has one missed scenario");
    let md = render_step_summary(&summary, Path::new("r.json"), &ReportLinks::default());
    let total = summary.scenarios.len();
    assert!(
        md.starts_with(&format!(
            "### ❌ zai-rehearse: {}/{total} scenarios met their expectation",
            total - 1
        )),
        "{md}"
    );
    assert!(
        md.contains(&format!("- **{}** expected", missed[0])),
        "{md}"
    );
    let xml = render_junit(&summary);
    assert_eq!(xml.matches("<testcase ").count(), total);
    assert_eq!(xml.matches("<failure ").count(), 1);
    assert!(xml.contains("failures=\"1\""), "{xml}");
}

#[test]
fn a_run_that_cannot_start_writes_a_summary_saying_so() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let own = dir.path().join("summary.md");
    let step = dir.path().join("step.md");
    let out = Command::new(env!("CARGO_BIN_EXE_zai-rehearse"))
        .args(["--scenario", "no-such-scenario", "--summary"])
        .arg(&own)
        .arg("--report-dir")
        .arg(dir.path())
        .env("GITHUB_STEP_SUMMARY", &step)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    let own = std::fs::read_to_string(&own).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        own.starts_with("### ⚠️ zai-rehearse: could not run") && own.contains("no-such-scenario"),
        "{own}"
    );
    assert_eq!(
        std::fs::read_to_string(&step).unwrap_or_default(),
        format!("\n{own}")
    );
}
