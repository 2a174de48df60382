//! `/health`, `/readyz` and `/admin/*` of an in-process proxy.

mod support;

use support::{client, dead_address, start_proxy, test_config};

#[tokio::test]
async fn health_has_the_original_shape_and_never_calls_upstream() {
    // The upstream is unreachable: /health must still be 200.
    let dead = dead_address().await;
    let proxy = start_proxy(test_config(&format!("http://{dead}"))).await;

    for method in [
        reqwest::Method::GET,
        reqwest::Method::HEAD,
        reqwest::Method::POST,
    ] {
        let response = client()
            .request(method.clone(), format!("{}/health", proxy.url()))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200, "{method}");
    }
    let body: serde_json::Value = client()
        .get(format!("{}/health", proxy.url()))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(body["status"], "ok");
    assert_eq!(
        body["quota"],
        serde_json::json!({"enabled": false, "fresh": false})
    );
    let rl = &body["rate_limit"];
    for field in ["current_rate", "ceiling", "hold"] {
        assert!(rl[field].is_number(), "rate_limit.{field} missing: {body}");
    }
    assert_eq!(rl["restored_from_state"], false);
    assert!(
        rl.get("state_file").is_none(),
        "state file disabled in tests"
    );
    assert_eq!(
        proxy
            .state
            .metrics
            .upstream_errors_total
            .with_label_values(&["upstream_connection", "production"])
            .get(),
        0.0,
        "/health must not touch upstream"
    );
}

#[tokio::test]
async fn readyz_is_ready_then_draining_after_shutdown_begins() {
    let dead = dead_address().await;
    let mut config = test_config(&format!("http://{dead}"));
    config.shutdown_readiness_delay = std::time::Duration::from_secs(2);
    let proxy = start_proxy(config).await;
    let url = format!("{}/readyz", proxy.url());

    let response = client().get(&url).send().await.expect("send");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body, serde_json::json!({"status": "ready"}));

    proxy.begin_shutdown();
    assert!(
        support::eventually(std::time::Duration::from_secs(2), || proxy
            .state
            .readiness
            .is_draining())
        .await
    );
    let response = client()
        .get(&url)
        .send()
        .await
        .expect("still serving during the delay");
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body, serde_json::json!({"status": "draining"}));
    // Liveness stays 200 while draining.
    let response = client()
        .get(format!("{}/health", proxy.url()))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    proxy.join().await.expect("clean stop");
}

#[tokio::test]
async fn admin_routes_are_hidden_without_a_token_and_guarded_with_one() {
    let dead = dead_address().await;
    let proxy = start_proxy(test_config(&format!("http://{dead}"))).await;
    let response = client()
        .post(format!("{}/admin/anything", proxy.url()))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 404);

    let mut config = test_config(&format!("http://{dead}"));
    config.admin_token = Some(zai_proxy::ApiKey::new("admin-secret"));
    let proxy = start_proxy(config).await;
    let response = client()
        .post(format!("{}/admin/anything", proxy.url()))
        .header("authorization", "Bearer wrong")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 401);
    let response = client()
        .post(format!("{}/admin/anything", proxy.url()))
        .header("authorization", "Bearer admin-secret")
        .send()
        .await
        .expect("send");
    assert_eq!(
        response.status(),
        404,
        "authorised, but no such admin route"
    );
}
