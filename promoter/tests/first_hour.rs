//! The checklist's first-hour monitoring after a promotion (`promote --watch`): its own
//! thresholds (error rate < 5 %, p95 ≤ +20 % of the pre-rollout baseline) where the rollback
//! triggers would let the same production through (10 %, +100 %), and its report section.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use zai_promoter::platform::Variant::{Production as P, Test as T};
use zai_promoter::runstate::Stage;
use zai_promoter::signals::{Reading, Signal};
use zai_promoter::{Config, Event, ManualClock, Mode, Outcome, Promoter, Report};

const HOUR: Duration = Duration::from_secs(3600);

/// Runs a promotion with a first-hour watch; `after` changes production's signals once the
/// watch begins.
async fn promote(
    watch: Option<Duration>,
    after: impl Fn(&Script) + Send + Sync + 'static,
) -> (Report, FakePlatform) {
    let script = Script::default();
    script.healthy(P, 0.2);
    script.healthy(T, 0.2);
    let platform = FakePlatform::new("1.2.0", "1.2.1-canary");
    let s = script.clone();
    let report = Promoter::new(
        Config::from_toml("interval = \"10s\"\npost_min_duration = \"30s\"\n").unwrap(),
        Arc::new(platform.clone()),
        Box::new(ScriptedSignals(script.clone())),
        Arc::new(ManualClock::new(t0())),
    )
    .first_hour(watch)
    .on_event(move |e| {
        if let Event::Action { message, .. } = e
            && message.starts_with("first-hour monitoring")
        {
            after(&s);
        }
    })
    .run(Mode::Promote)
    .await;
    (report, platform)
}

fn first_hour_trigger<'a>(r: &'a Report, id: &str) -> &'a zai_promoter::report::TriggerReport {
    r.first_hour
        .as_ref()
        .unwrap()
        .triggers
        .iter()
        .find(|t| t.id == id)
        .unwrap()
}

#[tokio::test]
async fn a_healthy_first_hour_keeps_the_promotion_and_is_reported() {
    let (report, platform) = promote(Some(HOUR), |_| {}).await;
    assert_eq!(report.outcome, Outcome::Promoted, "{report:#?}");
    assert!(
        report.verdict.contains("first hour healthy"),
        "{}",
        report.verdict
    );
    let fh = report.first_hour.as_ref().unwrap();
    assert_eq!(fh.status, zai_promoter::report::FirstHourStatus::Healthy);
    assert!(fh.watched >= HOUR);
    assert_eq!(
        first_hour_trigger(&report, "trigger.error_rate").status,
        zai_promoter::report::TriggerStatus::Clear
    );
    // The promotion's own trigger section is kept as it was.
    let t = report
        .triggers
        .iter()
        .find(|t| t.id == "trigger.error_rate")
        .unwrap();
    assert_eq!(t.title, "Error rate exceeds 10% for more than 2 minutes");
    let md = zai_promoter::report::render_markdown(&report);
    assert!(
        md.contains("Post-Promotion Monitoring (First Hour)"),
        "{md}"
    );
    assert_eq!(platform.run_record().unwrap().stage, Stage::Done);
    // Without --watch there is no section.
    let (report, _) = promote(None, |_| {}).await;
    assert!(report.first_hour.is_none());
}

#[tokio::test]
async fn seven_percent_errors_in_the_first_hour_roll_back_though_the_triggers_allow_ten() {
    let bad = |s: &Script| {
        s.set(Signal::ErrorRatio, P, Reading::Value(0.07));
        s.set(Signal::SuccessRatio, P, Reading::Value(0.93));
    };
    let (report, platform) = promote(Some(HOUR), bad).await;
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:#?}");
    assert_eq!(report.exit_code(), 3);
    assert!(report.verdict.contains("first hour"), "{}", report.verdict);
    assert_eq!(platform.get(P).image, "ronaldraygun/zai-proxy:1.2.0");
    let fh = report.first_hour.as_ref().unwrap();
    assert_eq!(fh.status, zai_promoter::report::FirstHourStatus::Breached);
    assert_eq!(
        first_hour_trigger(&report, "trigger.error_rate").status,
        zai_promoter::report::TriggerStatus::Fired
    );
    assert!(fh.watched < HOUR);
}

#[tokio::test]
async fn a_p95_thirty_percent_over_the_baseline_rolls_back_in_the_first_hour() {
    let slower = |s: &Script| {
        s.set(
            Signal::LatencyQuantile { permille: 950 },
            P,
            Reading::Value(0.26),
        );
    };
    let (report, _) = promote(Some(HOUR), slower).await;
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:#?}");
    assert_eq!(
        first_hour_trigger(&report, "trigger.p95_latency").status,
        zai_promoter::report::TriggerStatus::Fired
    );
    // +10 % stays inside the first hour's +20 %.
    let a_bit = |s: &Script| {
        s.set(
            Signal::LatencyQuantile { permille: 950 },
            P,
            Reading::Value(0.22),
        );
    };
    let (report, _) = promote(Some(HOUR), a_bit).await;
    assert_eq!(report.outcome, Outcome::Promoted, "{report:#?}");
}
