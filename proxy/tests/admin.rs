//! `POST /admin/reset-rate-limit`: 404 without ADMIN_TOKEN, bearer auth, reset semantics
//! (reference §3.6); through the real binary: ceiling restored from the state file, shown on
//! /health, and deleted by the reset.

mod support;

use std::time::Duration;

use support::{BinaryProxy, FAKE_KEY, client, start_proxy, test_config};
use zai_proxy::ApiKey;

const TOKEN: &str = "admin-test-token-4711";

async fn reset(url: &str, auth: Option<&str>) -> reqwest::Response {
    let mut request = client().post(format!("{url}/admin/reset-rate-limit"));
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    request.send().await.expect("send")
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

#[tokio::test]
async fn without_admin_token_the_route_does_not_exist() {
    let proxy = start_proxy(test_config("http://127.0.0.1:9")).await;
    assert_eq!(reset(&proxy.url(), None).await.status(), 404);
    assert_eq!(
        reset(&proxy.url(), Some(&format!("Bearer {TOKEN}")))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn reset_needs_the_bearer_token_and_resets_to_initial() {
    let mut config = test_config("http://127.0.0.1:9");
    config.admin_token = Some(ApiKey::new(TOKEN));
    let proxy = start_proxy(config).await;
    let url = proxy.url();
    assert_eq!(health(&url).await["rate_limit"]["ceiling"], 50.0);

    assert_eq!(reset(&url, None).await.status(), 401);
    assert_eq!(reset(&url, Some("Bearer wrong")).await.status(), 401);
    assert_eq!(
        reset(&url, Some(TOKEN)).await.status(),
        401,
        "scheme required"
    );
    assert_eq!(
        health(&url).await["rate_limit"]["ceiling"],
        50.0,
        "unauthorised calls change nothing"
    );

    let response = reset(&url, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(
        body,
        serde_json::json!({"current_rate": 10.0, "status": "reset"})
    );
    let rl = &health(&url).await["rate_limit"];
    assert_eq!(rl["current_rate"], 10.0);
    assert_eq!(
        rl["ceiling"], 10.0,
        "reset sets the ceiling to the initial rate"
    );
    assert_eq!(rl["hold"], 9.8);

    let get = client()
        .get(format!("{url}/admin/reset-rate-limit"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .expect("send");
    assert_eq!(get.status(), 405);
}

#[tokio::test]
async fn binary_restores_the_ceiling_and_reset_deletes_the_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state_file = dir.path().join("ceiling.json");
    let ts = chrono::Utc::now() - chrono::Duration::minutes(5);
    std::fs::write(
        &state_file,
        format!(
            r#"{{"ceiling":30.4,"hold":29.79,"ts":"{}"}}"#,
            ts.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        ),
    )
    .expect("write state");
    let path = state_file.to_string_lossy().into_owned();
    let mut proxy = BinaryProxy::spawn(&[
        ("ZAI_API_KEY", FAKE_KEY),
        ("ZAI_TARGET_URL", "http://127.0.0.1:9"),
        ("ADMIN_TOKEN", TOKEN),
        ("RATE_LIMIT_MAX", "40"),
        ("RATE_LIMIT_STATE_FILE", &path),
        ("SHUTDOWN_READINESS_DELAY", "0s"),
    ]);
    let addr = proxy.wait_listening(Duration::from_secs(30)).await;
    let url = format!("http://{addr}");

    let rl = health(&url).await["rate_limit"].clone();
    assert_eq!(rl["restored_from_state"], true, "{rl}");
    assert_eq!(rl["ceiling"], 30.4);
    assert_eq!(rl["current_rate"], 29.79);
    assert_eq!(rl["state_file"], path.as_str());
    let learned = rl["ceiling_updated_at"].as_str().expect("timestamp");
    let learned = chrono::DateTime::parse_from_rfc3339(learned).expect("RFC3339");
    assert!((learned.timestamp() - ts.timestamp()).abs() <= 1);
    let metrics = support::metrics_text(&url).await;
    assert!(
        metrics.contains("zai_proxy_rate_limit_requests_per_second{variant=\"production\"} 29.79"),
        "gauge shows the restored rate"
    );

    let response = reset(&url, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(response.status(), 200);
    assert!(!state_file.exists(), "reset deletes the state file");
    let rl = health(&url).await["rate_limit"].clone();
    assert_eq!(rl["restored_from_state"], false);
    assert_eq!(rl["ceiling"], 10.0);
    assert!(rl.get("ceiling_updated_at").is_none());

    proxy.sigterm();
    let _ = proxy.wait_exit(Duration::from_secs(10)).await;
    let logs = proxy.output().join("\n");
    assert!(
        logs.contains("Rate limit: restored ceiling 30.40 req/s (hold 29.79)"),
        "{logs}"
    );
    assert!(
        logs.contains("Rate limiter reset: rate=10.0, ceiling=10.0"),
        "{logs}"
    );
    assert!(!logs.contains(TOKEN), "the admin token is never logged");
}
