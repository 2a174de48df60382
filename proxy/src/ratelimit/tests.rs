//! Tests of the limiter as a whole: restore, persistence, reset, fairness, metrics.

use super::*;
use std::path::PathBuf;

#[test]
fn source_buckets_are_stable_and_bounded() {
    let a = SourceBucket::from_ip("127.0.0.1".parse().expect("ip"));
    let b = SourceBucket::from_ip("127.0.0.1".parse().expect("ip"));
    assert_eq!(a, b);
    assert!(a.index() < 64);
    assert!(a.label().starts_with("source-"));
    // FNV-1a 32 of "unknown" is 0x9b759fb9, mod 64 = 57
    assert_eq!(SourceBucket::from_host(b"").label(), "source-57");
}

use crate::config::BuildInfo;

const WINDOW_FOR_TESTS: Duration = Duration::from_secs(10);

fn metrics() -> Arc<Metrics> {
    let build = BuildInfo {
        version: "test".into(),
        commit: "test".into(),
        build_time: "test".into(),
    };
    Arc::new(Metrics::new("test", &build, 10, &[], "glm-4").expect("metrics"))
}

fn settings(state_file: Option<PathBuf>) -> RateLimitSettings {
    RateLimitSettings {
        initial: 10.0,
        min: 1.0,
        max: 50.0,
        ceiling_alpha: 0.3,
        hold_margin: 0.02,
        probe_interval: 2,
        state_file,
        state_max_age: Duration::from_secs(6 * 3600),
        window: WINDOW_FOR_TESTS,
        ceiling_sample: crate::config::CeilingSample::Rate,
    }
}

fn limiter(settings: &RateLimitSettings) -> (Limiter, Arc<Metrics>) {
    let m = metrics();
    (
        Limiter::with_window(settings, Arc::clone(&m), "test", WINDOW_FOR_TESTS),
        m,
    )
}

/// One window of feedback on paused time; the last event closes it.
async fn window(l: &Limiter, successes: u32, too_many: u32) {
    for _ in 0..too_many {
        l.record_429();
    }
    for _ in 1..successes {
        l.record_success();
    }
    tokio::time::advance(WINDOW_FOR_TESTS).await;
    l.record_success();
}

fn adjustments(m: &Metrics, direction: &str) -> u64 {
    m.rate_limit_adjustments_total
        .with_label_values(&[direction, "test"])
        .get() as u64
}

fn gauge(m: &Metrics) -> f64 {
    m.rate_limit_requests_per_second
        .with_label_values(&["test"])
        .get()
}

#[tokio::test(start_paused = true)]
async fn only_decrease_windows_persist_and_a_restart_restores_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ceiling.json");
    let s = settings(Some(path.clone()));
    let (l, m) = limiter(&s);
    assert!(!l.snapshot().restored_from_state);
    window(&l, 100, 0).await; // converge
    window(&l, 100, 0).await; // probe (interval 2)
    assert_eq!(adjustments(&m, "increase"), 1);
    assert_eq!(adjustments(&m, "probe"), 1);
    assert!(!path.exists(), "converge/probe windows must not persist");
    window(&l, 50, 50).await; // decrease
    assert_eq!(adjustments(&m, "decrease"), 1);
    let snap = l.snapshot();
    assert_eq!(gauge(&m), snap.current_rate);
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("persisted")).expect("json");
    assert_eq!(on_disk["ceiling"], snap.ceiling);
    assert_eq!(on_disk["hold"], snap.current_rate);
    assert!(snap.ceiling_updated_at.is_some());

    let (restarted, m2) = limiter(&s);
    let r = restarted.snapshot();
    assert!(r.restored_from_state);
    assert_eq!(r.ceiling, snap.ceiling);
    assert_eq!(r.current_rate, snap.current_rate);
    assert_eq!(r.ceiling_updated_at, snap.ceiling_updated_at);
    assert_eq!(
        r.state_file.as_deref(),
        Some(path.to_string_lossy().as_ref())
    );
    assert_eq!(gauge(&m2), r.current_rate);
}

#[tokio::test(start_paused = true)]
async fn restore_clamps_and_ignores_stale_or_corrupt_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ceiling.json");
    let mut s = settings(Some(path.clone()));
    s.max = 40.0;
    let now = Utc::now().to_rfc3339();
    std::fs::write(
        &path,
        format!(r#"{{"ceiling":500,"hold":490,"ts":"{now}"}}"#),
    )
    .expect("w");
    let r = limiter(&s).0.snapshot();
    assert!(r.restored_from_state);
    assert_eq!((r.ceiling, r.current_rate), (40.0, 40.0));

    let old = (Utc::now() - chrono::Duration::hours(7)).to_rfc3339();
    std::fs::write(&path, format!(r#"{{"ceiling":20,"hold":19,"ts":"{old}"}}"#)).expect("w");
    let r = limiter(&s).0.snapshot();
    assert!(!r.restored_from_state, "stale");
    assert_eq!((r.ceiling, r.current_rate), (40.0, 10.0));

    std::fs::write(&path, b"{\"ceiling\":").expect("w");
    let r = limiter(&s).0.snapshot();
    assert!(!r.restored_from_state, "corrupt");
    assert_eq!(r.ceiling_updated_at, None);
}

#[tokio::test(start_paused = true)]
async fn unwritable_state_file_is_tolerated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("missing-dir").join("ceiling.json");
    let (l, m) = limiter(&settings(Some(path.clone())));
    window(&l, 50, 50).await;
    assert_eq!(adjustments(&m, "decrease"), 1);
    assert!(!path.exists());
    assert!(l.snapshot().current_rate < 50.0);
}

#[tokio::test(start_paused = true)]
async fn reset_restores_initial_and_deletes_the_state_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ceiling.json");
    let (l, m) = limiter(&settings(Some(path.clone())));
    window(&l, 100, 0).await;
    window(&l, 10, 90).await;
    assert!(path.exists());
    assert_eq!(l.reset(), 10.0);
    let r = l.snapshot();
    assert_eq!((r.current_rate, r.ceiling), (10.0, 10.0));
    assert!((r.hold - 9.8).abs() < 1e-9);
    assert_eq!(r.ceiling_updated_at, None);
    assert!(!r.restored_from_state);
    assert!(!path.exists());
    assert_eq!(gauge(&m), 10.0);
}

#[tokio::test(start_paused = true)]
async fn reset_wakes_a_queue_stuck_behind_a_tiny_rate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ceiling.json");
    let now = Utc::now().to_rfc3339();
    std::fs::write(
        &path,
        format!(r#"{{"ceiling":0.02,"hold":0.01,"ts":"{now}"}}"#),
    )
    .expect("w");
    let mut s = settings(Some(path));
    s.min = 0.01;
    let l = Arc::new(limiter(&s).0);
    assert_eq!(l.snapshot().current_rate, 0.01);
    let source = SourceBucket::from_host(b"10.0.0.1");
    l.admit(source).await; // the single burst token
    let waiter = tokio::spawn({
        let l = Arc::clone(&l);
        async move { l.admit(source).await }
    });
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!waiter.is_finished(), "next token is 100 s away");
    l.reset();
    let admission = tokio::time::timeout(Duration::from_millis(1), waiter)
        .await
        .expect("reset wakes the waiter")
        .expect("no panic");
    assert!(admission.waited >= Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn dropping_an_admit_future_leaves_the_queue() {
    let (l, m) = limiter(&settings(None));
    let l = Arc::new(l);
    let a = SourceBucket::from_host(b"10.0.0.1");
    for _ in 0..20 {
        l.admit(a).await; // drain the burst of 20
    }
    let mut gone = Box::pin(l.admit(a));
    assert!(
        tokio::time::timeout(Duration::from_millis(10), &mut gone)
            .await
            .is_err()
    );
    assert_eq!(l.queued(), 1);
    drop(gone);
    assert_eq!(l.queued(), 0);
    // The next request takes the turn.
    let admitted = l.admit(SourceBucket::from_host(b"10.0.0.2")).await;
    assert!(admitted.waited <= Duration::from_millis(100));
    let source_a = m
        .rate_limit_wait_seconds
        .with_label_values(&["test", a.label()])
        .get_sample_count();
    assert_eq!(source_a, 20, "the abandoned request is not an admission");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_feedback_admission_and_reads_stay_in_bounds() {
    let mut s = settings(None);
    s.initial = 500.0;
    s.min = 2.0;
    s.max = 1000.0;
    let l = Arc::new(Limiter::with_window(
        &s,
        metrics(),
        "test",
        Duration::from_millis(1),
    ));
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let l = Arc::clone(&l);
        tasks.push(tokio::spawn(async move {
            for i in 0..300u32 {
                match (t + i) % 4 {
                    0 => l.record_429(),
                    1 | 2 => l.record_success(),
                    _ => {
                        let _ = l.admit(SourceBucket::from_host(&t.to_le_bytes())).await;
                    }
                }
                let snap = l.snapshot();
                assert!((2.0..=1000.0).contains(&snap.current_rate), "{snap:?}");
                assert!(snap.ceiling > 0.0 && snap.ceiling <= 1000.0, "{snap:?}");
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("no panic");
    }
    assert_eq!(l.queued(), 0);
}
