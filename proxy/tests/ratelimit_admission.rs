//! Admission through the proxy over loopback: requests queue at the configured rate, every
//! admission is observed in the wait histogram, a queued request whose client disconnects
//! never reaches the upstream, and /health shows the limiter block.

mod support;

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use support::{client, metrics_text, start_proxy, start_upstream, test_config};

const OK_JSON: &str = r#"{"id":"msg_1","type":"message","content":[]}"#;

async fn ok_upstream() -> support::Upstream {
    start_upstream(Router::new().route(
        "/v1/messages",
        post(|| async { ([("content-type", "application/json")], OK_JSON) }),
    ))
    .await
}

fn fixed_rate(url: &str, rate: f64) -> zai_proxy::Config {
    let mut config = test_config(url);
    config.rate_limit.initial = rate;
    config.rate_limit.min = rate;
    config.rate_limit.max = rate;
    config.max_workers = 100;
    config
}

fn wait_count(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("zai_proxy_rate_limit_wait_seconds_count{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn requests_beyond_the_burst_wait_for_tokens() {
    let upstream = ok_upstream().await;
    let proxy = start_proxy(fixed_rate(&upstream.url(), 4.0)).await;
    let url = format!("{}/v1/messages", proxy.url());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            client()
                .post(url)
                .body("{}")
                .send()
                .await
                .expect("send")
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 200);
    }
    // Burst 8 passes at once; the other 4 need 4 tokens at 4 req/s.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(upstream.requests().len(), 12);
    let metrics = metrics_text(&proxy.url()).await;
    assert_eq!(wait_count(&metrics), 12.0);
    assert!(metrics.contains("zai_proxy_rate_limit_requests_per_second{variant=\"production\"} 4"));
}

#[tokio::test]
async fn a_queued_request_whose_client_left_never_goes_upstream() {
    let upstream = ok_upstream().await;
    let proxy = start_proxy(fixed_rate(&upstream.url(), 1.0)).await;
    let url = format!("{}/v1/messages", proxy.url());
    for _ in 0..2 {
        let r = client().post(&url).body("{}").send().await.expect("send");
        assert_eq!(r.status(), 200);
    }
    // The bucket is empty: the next token is ~1 s away. This client gives up first.
    let gone = client()
        .post(&url)
        .body("{}")
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(gone.is_err());
    // Had it stayed queued, it would have been admitted and forwarded by now.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(upstream.requests().len(), 2);
    let metrics = metrics_text(&proxy.url()).await;
    assert_eq!(
        wait_count(&metrics),
        2.0,
        "the abandoned request was never admitted"
    );
    // The queue is not stuck: the next request goes through.
    let r = client().post(&url).body("{}").send().await.expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.requests().len(), 3);
}

#[tokio::test]
async fn health_shows_the_rate_limit_block() {
    let upstream = ok_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state_file = dir.path().join("ceiling.json");
    let mut config = test_config(&upstream.url());
    config.rate_limit.state_file = Some(state_file.clone());
    let proxy = start_proxy(config).await;
    let health: serde_json::Value = client()
        .get(format!("{}/health", proxy.url()))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "ok");
    let rl = &health["rate_limit"];
    assert_eq!(rl["current_rate"], 10.0);
    assert_eq!(rl["ceiling"], 50.0);
    assert_eq!(rl["hold"], 49.0);
    assert_eq!(rl["restored_from_state"], false);
    assert_eq!(rl["state_file"], state_file.to_string_lossy().as_ref());
    assert!(rl.get("ceiling_updated_at").is_none());
}
