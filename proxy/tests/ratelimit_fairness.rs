//! Fair admission through the public limiter API on virtual (paused) time: one busy source
//! cannot starve another, sources alternate, abandoned waiters leave the queue.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use zai_proxy::Metrics;
use zai_proxy::config::{BuildInfo, RateLimitSettings};
use zai_proxy::ratelimit::{Limiter, SourceBucket};

fn limiter(rate: f64) -> Arc<Limiter> {
    let build = BuildInfo {
        version: "t".into(),
        commit: "t".into(),
        build_time: "t".into(),
    };
    let metrics = Arc::new(Metrics::new("test", &build, 100, &[], "glm-4").expect("metrics"));
    let settings = RateLimitSettings {
        initial: rate,
        min: rate,
        max: rate,
        state_file: None,
        ..RateLimitSettings::default()
    };
    Arc::new(Limiter::new(&settings, metrics, "test"))
}

/// Two hosts that land in different buckets.
fn two_sources() -> (SourceBucket, SourceBucket) {
    let a = SourceBucket::from_host(b"10.1.0.1");
    let b = (2..255)
        .map(|i| SourceBucket::from_host(format!("10.1.0.{i}").as_bytes()))
        .find(|b| *b != a)
        .expect("some other bucket");
    (a, b)
}

/// Spawns an admission that reports `tag` once admitted; returns after it is queued.
async fn queue(
    l: &Arc<Limiter>,
    source: SourceBucket,
    tag: &'static str,
    done: &mpsc::UnboundedSender<&'static str>,
) -> tokio::task::JoinHandle<()> {
    let before = l.queued();
    let (l2, done) = (Arc::clone(l), done.clone());
    let handle = tokio::spawn(async move {
        l2.admit(source).await;
        let _ = done.send(tag);
    });
    while l.queued() == before {
        tokio::task::yield_now().await;
    }
    handle
}

async fn drain_burst(l: &Limiter, rate: f64) {
    let burst = (2.0 * rate).floor() as usize;
    for _ in 0..burst {
        l.admit(SourceBucket::from_host(b"warm-up")).await;
    }
}

#[tokio::test(start_paused = true)]
async fn busy_source_cannot_starve_a_single_request_of_another() {
    let l = limiter(5.0);
    drain_burst(&l, 5.0).await;
    let (a, b) = two_sources();
    let (tx, mut rx) = mpsc::unbounded_channel();
    for _ in 0..50 {
        queue(&l, a, "a", &tx).await;
    }
    assert_eq!(l.queued(), 50);
    queue(&l, b, "b", &tx).await;
    let next_two = [rx.recv().await, rx.recv().await];
    assert!(next_two.contains(&Some("b")), "{next_two:?}");
    for _ in 0..49 {
        assert_eq!(rx.recv().await, Some("a"));
    }
    assert_eq!(l.queued(), 0);
}

#[tokio::test(start_paused = true)]
async fn active_sources_alternate() {
    let l = limiter(2.0);
    drain_burst(&l, 2.0).await;
    let (a, b) = two_sources();
    let (tx, mut rx) = mpsc::unbounded_channel();
    queue(&l, a, "first-a", &tx).await;
    queue(&l, a, "second-a", &tx).await;
    queue(&l, a, "third-a", &tx).await;
    queue(&l, b, "first-b", &tx).await;
    queue(&l, b, "second-b", &tx).await;
    let mut order = Vec::new();
    for _ in 0..5 {
        order.push(rx.recv().await.expect("admitted"));
    }
    assert_eq!(
        order,
        ["first-a", "first-b", "second-a", "second-b", "third-a"]
    );
}

#[tokio::test(start_paused = true)]
async fn abandoned_waiters_leave_and_pass_the_turn_on() {
    let l = limiter(1.0);
    drain_burst(&l, 1.0).await;
    let (a, b) = two_sources();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let head = queue(&l, a, "a-head", &tx).await;
    let second = queue(&l, a, "a-second", &tx).await;
    queue(&l, b, "b", &tx).await;
    head.abort();
    second.abort();
    let _ = (head.await, second.await);
    assert_eq!(l.queued(), 1, "aborted requests are gone from the queue");
    let started = tokio::time::Instant::now();
    assert_eq!(rx.recv().await, Some("b"));
    assert!(started.elapsed() <= Duration::from_secs(1));
    assert_eq!(l.queued(), 0);
}

#[test]
fn buckets_come_from_the_peer_ip_only() {
    let one = SourceBucket::from_ip("127.0.0.1".parse().expect("ip"));
    assert_eq!(one, SourceBucket::from_host(b"127.0.0.1"));
    assert!(one.index() < 64);
    let label = one.label();
    assert_eq!(label.len(), "source-00".len());
    assert_eq!(label, format!("source-{:02}", one.index()));
}
