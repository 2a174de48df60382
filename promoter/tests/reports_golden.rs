//! report.json, report.md and junit.xml of deterministic runs compared with golden files.
//! Regenerate with `UPDATE_GOLDEN=1 cargo test -p zai-promoter --test reports_golden`.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use zai_promoter::platform::Variant::{Production as P, Test as T};
use zai_promoter::signals::{Reading, Signal};
use zai_promoter::{Config, ManualClock, Mode, Promoter, Report};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/");

async fn run(name: &str) -> Report {
    let platform = FakePlatform::new("1.2.0", "1.2.1-canary");
    let script = Script::default();
    script.healthy(P, 0.2);
    script.healthy(T, 0.2);
    if name == "rolled_back" {
        platform
            .behaviour
            .lock()
            .unwrap()
            .insert("1.2.1".into(), (false, true));
    }
    if name == "aborted" {
        script.set(Signal::TokenSeries, T, Reading::Value(0.0));
    }
    let config = Config::from_toml("interval = \"10s\"\npost_min_duration = \"30s\"\n").unwrap();
    let mut r = Promoter::new(
        config,
        Arc::new(platform),
        Box::new(ScriptedSignals(script)),
        Arc::new(ManualClock::new(t0())),
    )
    .operator("release-bot")
    .run(Mode::Promote)
    .await;
    r.sign_off.host = "ci-runner".into();
    r
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

#[tokio::test]
async fn reports_match_golden_files() {
    for name in ["promoted", "rolled_back", "aborted"] {
        let report = run(name).await;
        let dir = tempfile::tempdir().unwrap();
        report.write_to(dir.path()).unwrap();
        for file in ["report.json", "report.md", "junit.xml"] {
            let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
            compare(&format!("{name}.{file}"), &text);
        }
        // The JSON round-trips into the same report.
        let json = std::fs::read_to_string(dir.path().join("report.json")).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back.outcome, report.outcome);
        assert_eq!(back.phases.len(), report.phases.len());
    }
}

#[tokio::test]
async fn junit_has_one_testcase_per_check_and_failures_with_reasons() {
    let report = run("aborted").await;
    let xml = zai_promoter::report::render_junit(&report);
    let checks = Config::default().checks.len() + Config::default().triggers.len();
    assert_eq!(xml.matches("<testcase ").count(), checks);
    assert!(
        xml.contains(
            "name=\"pre.token_metrics_exported\"><failure message=\"fail: no token series"
        ),
        "{xml}"
    );
    let md = zai_promoter::report::render_markdown(&report);
    assert!(md.contains("- [✗] Metrics are being exported"), "{md}");
    assert!(md.contains("Promotion completed by: — (aborted)"), "{md}");
}
