//! The observe-only quota poller against a loopback quota server: authenticated GET, /health
//! quota block, last-known-good on failures, freshness and the `stale` count, the
//! zai_proxy_quota_* gauges; through the real binary, the key never appears in the logs.

mod support;

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use support::{BinaryProxy, FAKE_KEY, client, metrics_text, start_proxy, test_config};

const QUOTA_PATH: &str = "/api/monitor/usage/quota/limit";

#[derive(Clone, Default)]
struct QuotaServer {
    /// Status to answer with (200 serves the fixture).
    status: Arc<AtomicU16>,
    polls: Arc<AtomicUsize>,
    auth_seen: Arc<Mutex<Vec<String>>>,
}

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/quota/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn quota_handler(State(s): State<QuotaServer>, headers: HeaderMap) -> impl IntoResponse {
    s.polls.fetch_add(1, Ordering::SeqCst);
    if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        s.auth_seen.lock().expect("auth").push(auth.to_owned());
    }
    let status = s.status.load(Ordering::SeqCst);
    let code = http::StatusCode::from_u16(status).expect("status");
    (code, fixture("credit_limit_both_windows.json"))
}

async fn start_quota_server() -> (String, QuotaServer) {
    let server = QuotaServer::default();
    server.status.store(200, Ordering::SeqCst);
    let app = Router::new()
        .route(QUOTA_PATH, get(quota_handler))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), server)
}

async fn health(url: &str) -> serde_json::Value {
    client()
        .get(format!("{url}/health"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json")
}

fn series(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
}

#[tokio::test]
async fn disabled_polling_shows_only_the_two_flags() {
    let (quota_url, server) = start_quota_server().await;
    let mut config = test_config("http://127.0.0.1:9");
    config.quota.base_url = quota_url;
    let proxy = start_proxy(config).await;
    let h = health(&proxy.url()).await;
    assert_eq!(
        h["quota"],
        serde_json::json!({"enabled": false, "fresh": false})
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.polls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn polls_publish_windows_keep_last_good_and_go_stale() {
    let (quota_url, server) = start_quota_server().await;
    let mut config = test_config("http://127.0.0.1:9");
    config.quota.enabled = true;
    config.quota.base_url = format!("{quota_url}/");
    config.quota.interval = Duration::from_millis(100);
    config.quota.timeout = Duration::from_secs(2);
    config.quota.stale_after = Duration::from_millis(700);
    let proxy = start_proxy(config).await;
    let url = proxy.url();

    let mut h = serde_json::Value::Null;
    for _ in 0..100 {
        h = health(&url).await;
        if h["quota"]["fresh"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let q = &h["quota"];
    assert_eq!(q["enabled"], true);
    assert_eq!(q["fresh"], true, "{h}");
    assert_eq!(q["interval"], "100ms");
    assert_eq!(q["stale_after"], "700ms");
    assert_eq!(q["last_outcome"], "success");
    assert_eq!(q["plan_tier"], "lite");
    assert!(q["last_success_at"].is_string());
    let windows = q["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 2);
    assert_eq!(windows[0]["window"], "five_hour");
    assert_eq!(windows[0]["limit_type"], "CREDIT_LIMIT");
    assert_eq!(windows[0]["used_fraction"], 0.37);
    assert!(windows[0]["reset_at"].is_string());
    assert_eq!(
        server
            .auth_seen
            .lock()
            .expect("auth")
            .first()
            .map(String::as_str),
        Some(FAKE_KEY),
        "the raw key, no Bearer"
    );

    let m = metrics_text(&url).await;
    assert_eq!(
        series(
            &m,
            "zai_proxy_quota_usage_ratio{limit_type=\"credit_limit\",variant=\"production\",window=\"five_hour\"}"
        ),
        Some(0.37)
    );
    assert_eq!(
        series(
            &m,
            "zai_proxy_quota_remaining_ratio{limit_type=\"credit_limit\",variant=\"production\",window=\"weekly\"}"
        ),
        Some(0.75)
    );
    assert_eq!(
        series(
            &m,
            "zai_proxy_quota_reset_time_seconds{limit_type=\"credit_limit\",variant=\"production\",window=\"weekly\"}"
        ),
        Some(1_789_000_000.0)
    );
    assert!(
        series(
            &m,
            "zai_proxy_quota_sample_age_seconds{variant=\"production\"}"
        )
        .is_some()
    );
    assert!(
        series(
            &m,
            "zai_proxy_quota_poll_total{result=\"success\",variant=\"production\"}"
        )
        .unwrap_or(0.0)
            >= 1.0
    );

    // Failures keep the last good sample; once it is older than stale_after it is stale,
    // counted once.
    server.status.store(503, Ordering::SeqCst);
    let mut stale_health = serde_json::Value::Null;
    for _ in 0..100 {
        stale_health = health(&url).await;
        if stale_health["quota"]["fresh"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let q = &stale_health["quota"];
    assert_eq!(q["fresh"], false, "{stale_health}");
    assert_eq!(q["last_outcome"], "error");
    assert_eq!(
        q["windows"].as_array().map(Vec::len),
        Some(2),
        "last known good kept"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = metrics_text(&url).await;
    assert_eq!(
        series(
            &m,
            "zai_proxy_quota_poll_total{result=\"stale\",variant=\"production\"}"
        ),
        Some(1.0)
    );
    assert!(
        series(
            &m,
            "zai_proxy_quota_poll_total{result=\"error\",variant=\"production\"}"
        )
        .unwrap_or(0.0)
            >= 1.0
    );

    // Recovery makes it fresh again.
    server.status.store(200, Ordering::SeqCst);
    let mut fresh_again = false;
    for _ in 0..100 {
        if health(&url).await["quota"]["fresh"] == true {
            fresh_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fresh_again);
}

#[tokio::test]
async fn binary_polls_quota_and_never_logs_the_key() {
    let (quota_url, server) = start_quota_server().await;
    let mut proxy = BinaryProxy::spawn(&[
        ("ZAI_API_KEY", FAKE_KEY),
        ("ZAI_TARGET_URL", "http://127.0.0.1:9"),
        ("QUOTA_POLL_ENABLED", "true"),
        ("QUOTA_POLL_INTERVAL", "200ms"),
        ("ZAI_QUOTA_BASE_URL", &quota_url),
        ("RUST_LOG", "trace"),
        ("SHUTDOWN_READINESS_DELAY", "0s"),
    ]);
    let addr = proxy.wait_listening(Duration::from_secs(30)).await;
    let url = format!("http://{addr}");
    let mut fresh = false;
    for _ in 0..100 {
        if health(&url).await["quota"]["fresh"] == true {
            fresh = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fresh, "{}", proxy.output().join("\n"));
    assert!(server.polls.load(Ordering::SeqCst) >= 1);
    proxy.sigterm();
    let _ = proxy.wait_exit(Duration::from_secs(10)).await;
    let logs = proxy.output().join("\n");
    assert!(logs.contains("quota poll ok: windows=2"), "{logs}");
    assert!(!logs.contains(FAKE_KEY), "the key appeared in the logs");
    assert!(
        !logs.contains("\"usage\":2000"),
        "the body appeared in the logs"
    );
}
