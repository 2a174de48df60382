//! The driver with the real scrape source: simulated proxies serve /metrics on loopback; a
//! healthy new version is promoted, one answering half its requests with 5xx is rolled back by
//! `rollout.new_version_errors` (its pods against the old version's, counted per pod by the
//! scrape source) as soon as the new pods are scraped twice, and — with that comparison off —
//! by `trigger.error_rate` after it held for 2 minutes.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::http::{Counters, Traffic, serve_counters};
use common::*;
use zai_promoter::signals::scrape::ScrapeSource;
use zai_promoter::{Config, ManualClock, Mode, Outcome, Platform, Promoter, Variant};

const GOOD: Traffic = Traffic {
    ok: 100.0,
    errors: 0.0,
    tokens: 5000.0,
};

async fn run(bad_after_set_image: bool, extra_toml: &str) -> zai_promoter::Report {
    let platform = FakePlatform::new("1.2.0", "1.2.1-canary");
    let prod = Arc::new(Mutex::new(Counters::new("production", GOOD)));
    let canary = Arc::new(Mutex::new(Counters::new("test", GOOD)));
    let prod_url = serve_counters(prod.clone()).await;
    let canary_url = serve_counters(canary).await;
    {
        let mut urls = platform.metrics_urls.lock().unwrap();
        urls.insert(Variant::Production, prod_url);
        urls.insert(Variant::Test, canary_url);
    }
    if bad_after_set_image {
        let prod = prod.clone();
        *platform.on_set_image.lock().unwrap() = Some(Box::new(move || {
            prod.lock().unwrap().step = Traffic {
                ok: 50.0,
                errors: 50.0,
                tokens: 2500.0,
            };
        }));
    }
    let config = Config::from_toml(&format!(
        "interval = \"10s\"\npost_min_duration = \"30s\"\n{extra_toml}"
    ))
    .unwrap();
    let platform: Arc<dyn Platform> = Arc::new(platform);
    let signals = ScrapeSource::new(
        platform.clone(),
        config.longest_window() + config.interval * 2,
        Duration::from_secs(2),
    );
    Promoter::new(
        config,
        platform,
        Box::new(signals),
        Arc::new(ManualClock::new(t0())),
    )
    .run(Mode::Promote)
    .await
}

#[tokio::test]
async fn promotes_a_healthy_version_on_scraped_metrics() {
    let report = run(false, "").await;
    assert_eq!(
        report.outcome,
        Outcome::Promoted,
        "{:?}\n{report:#?}",
        report.reason
    );
    assert_eq!(report.signals, "scrape");
    let p95 = report.baseline.p95(Duration::from_secs(300)).unwrap();
    // 50 % ≤ 0.1 s, 90 % ≤ 0.25 s, all ≤ 0.5 s: p95 = 0.25 + 0.25 × 0.5 = 0.375 s.
    assert!((p95 - 0.375).abs() < 1e-9, "{p95}");
}

#[tokio::test]
async fn rolls_back_when_the_new_versions_pods_fail_more_than_the_old_versions() {
    let report = run(true, "").await;
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:#?}");
    let reason = report.reason.clone().unwrap();
    assert!(
        reason.contains("rollout.new_version_errors failed"),
        "{reason}"
    );
    assert!(reason.contains("new version"), "{reason}");
    // Before any trigger could hold for its 2 minutes.
    assert!(
        report
            .triggers
            .iter()
            .all(|t| t.status != zai_promoter::report::TriggerStatus::Fired),
        "{:?}",
        report.triggers
    );
}

#[tokio::test]
async fn rolls_back_when_scraped_errors_hold_for_two_minutes() {
    let off = "[checks.\"rollout.new_version_errors\"]\nenabled = false\n";
    let report = run(true, off).await;
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:#?}");
    let t = report
        .triggers
        .iter()
        .find(|t| t.id == "trigger.error_rate")
        .unwrap();
    assert_eq!(
        t.status,
        zai_promoter::report::TriggerStatus::Fired,
        "{:?}",
        report.triggers
    );
    let held = (t.fired_at.unwrap() - t.first_seen.unwrap()).num_seconds();
    assert_eq!(held, 120);
    assert!(report.reason.unwrap().contains("trigger.error_rate"));
}
