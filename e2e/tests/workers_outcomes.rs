//! Workers against the fake: each fault maps to its outcome, counters are live, runs stop
//! on count, duration or cancellation.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test on purpose")]

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use zai_e2e::fake::{FakeConfig, FakeZai, Faults};
use zai_e2e::workers::{self, LoadMode, Target, WorkersConfig};

const KEY: &str = "workers-key";

async fn fake(faults: Faults) -> FakeZai {
    FakeZai::start(FakeConfig {
        faults,
        ..FakeConfig::with_key(KEY)
    })
    .await
    .unwrap()
}

fn config(fake: &FakeZai, requests: u64, stream_fraction: f64) -> WorkersConfig {
    let mut config = WorkersConfig::new(&fake.anthropic_base(), KEY, 4).unwrap();
    config.requests = Some(requests);
    config.stream_fraction = stream_fraction;
    config.openai_fraction = 0.5;
    config.request_timeout = Duration::from_secs(20);
    config
}

#[tokio::test]
async fn clean_run_is_all_ok_with_latency_percentiles() {
    let fake = fake(Faults::default()).await;
    let report = workers::run(config(&fake, 40, 0.5), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.sent, 40);
    assert_eq!(report.ok, 40, "{report:?}");
    assert_eq!((report.failed, report.lost), (0, 0));
    assert!(report.latency_ms.p50 > 0.0 && report.latency_ms.p99 >= report.latency_ms.p50);
    assert!(report.ttfb_ms.count == 40);
    let stats = fake.stats();
    assert_eq!(stats.total, 40);
    assert_eq!(stats.outcome_total("ok"), 40);
    assert!(
        stats.streams > 5 && stats.streams < 35,
        "mix of streams: {}",
        stats.streams
    );
    assert!(stats.count("openai_chat", "ok") > 5 && stats.count("anthropic_messages", "ok") > 5);
}

#[tokio::test]
async fn cut_streams_are_truncated_and_resets_are_transport_errors() {
    let fake = fake(Faults {
        truncate_rate: 1.0,
        ..Faults::default()
    })
    .await;
    let report = workers::run(config(&fake, 12, 1.0), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.outcomes["truncated"], 12, "{report:?}");
    assert_eq!(report.lost, 12);
    // Cut JSON answers are truncated too.
    let report = workers::run(config(&fake, 6, 0.0), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.outcomes["truncated"], 6, "{report:?}");
    fake.set_faults(Faults {
        empty_rate: 1.0,
        ..Faults::default()
    })
    .unwrap();
    let report = workers::run(config(&fake, 6, 0.5), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        report.outcomes["truncated"], 6,
        "empty 200s are lost answers: {report:?}"
    );

    fake.set_faults(Faults {
        reset_rate: 1.0,
        ..Faults::default()
    })
    .unwrap();
    let report = workers::run(config(&fake, 12, 0.5), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.outcomes["transport_error"], 12, "{report:?}");
    assert_eq!((report.ok, report.lost), (0, 12));
}

#[tokio::test]
async fn statuses_and_timeouts_are_their_own_outcomes() {
    let fake = fake(Faults {
        rate_429: 1.0,
        code_429: Some(1305),
        ..Faults::default()
    })
    .await;
    let report = workers::run(config(&fake, 8, 0.5), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.outcomes["http_429"], 8, "{report:?}");
    assert_eq!((report.failed, report.lost), (8, 0));

    fake.set_faults(Faults {
        latency_ms: 2_000,
        ..Faults::default()
    })
    .unwrap();
    let mut slow = config(&fake, 4, 0.5);
    slow.request_timeout = Duration::from_millis(200);
    let report = workers::run(slow, CancellationToken::new()).await.unwrap();
    assert_eq!(report.outcomes["timeout"], 4, "{report:?}");

    let mut bad_key = config(&fake, 3, 0.5);
    fake.set_faults(Faults::default()).unwrap();
    bad_key.api_key = "wrong".into();
    let report = workers::run(bad_key, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.outcomes["http_401"], 3);
}

#[tokio::test]
async fn live_counters_per_target_and_cancellation() {
    let stable = fake(Faults {
        chunk_delay_ms: 5,
        ..Faults::default()
    })
    .await;
    let canary = fake(Faults {
        error_rate: 1.0,
        error_status: Some(503),
        chunk_delay_ms: 5,
        ..Faults::default()
    })
    .await;
    let mut config = config(&stable, 0, 0.5);
    config.requests = None; // until cancelled
    config.targets = vec![
        Target::from_base(
            "stable",
            &stable.anthropic_base(),
            workers::DEFAULT_OPENAI_PATH,
        )
        .unwrap(),
        Target::from_base(
            "canary",
            &canary.anthropic_base(),
            workers::DEFAULT_OPENAI_PATH,
        )
        .unwrap(),
    ];
    let cancel = CancellationToken::new();
    let handle = workers::spawn(config, cancel.clone()).unwrap();
    let live = handle.live();
    let mut seen = 0;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        seen = live.snapshot().completed();
        if seen >= 20 {
            break;
        }
    }
    assert!(seen >= 20, "counters move while the run goes on");
    let phase_start = live.snapshot();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let phase = live.snapshot().since(&phase_start);
    assert!(phase.sent > 0);
    cancel.cancel();
    let report = handle.join().await;
    assert_eq!(
        report.sent,
        report.ok + report.failed,
        "every request ends in exactly one outcome"
    );
    let stable_counts = &report.targets["stable"];
    let canary_counts = &report.targets["canary"];
    assert_eq!(stable_counts.ok, stable_counts.sent);
    assert_eq!(
        canary_counts.http_errors.get(&503).copied(),
        Some(canary_counts.sent)
    );
    assert_eq!(stable_counts.sent + canary_counts.sent, report.sent);
    assert_eq!(stable.stats().total + canary.stats().total, report.sent);
}

#[tokio::test]
async fn open_loop_sends_the_requested_count() {
    let fake = fake(Faults::default()).await;
    let mut config = config(&fake, 20, 0.5);
    config.mode = LoadMode::Open {
        rate: 200.0,
        max_in_flight: 64,
    };
    let report = workers::run(config, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.sent + report.skipped, 20 + report.skipped);
    assert_eq!(report.ok, report.sent);
    assert_eq!(report.sent, 20);
}
