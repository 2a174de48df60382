//! The real binary: start-up lines, one log line per request, the key in no log line, and
//! SIGTERM during a long stream (readiness 503 at once, the stream completes, exit 0).

mod support;

use std::time::Duration;

use axum::Router;
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use futures::StreamExt as _;
use support::{BinaryProxy, DropFlag, FAKE_KEY, client, dead_address, paced_body, start_upstream};

fn events(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            Bytes::from(format!(
                "event: content_block_delta\ndata: {{\"i\":{i}}}\n\n"
            ))
        })
        .collect()
}

#[tokio::test]
async fn sigterm_during_a_stream_drains_then_exits_0_and_logs_never_hold_the_key() {
    // A 40-event stream, one event every 100 ms (about 4 s): it outlasts the 3 s readiness
    // delay, so it is still in flight when the listener stops accepting.
    let upstream = start_upstream(
        Router::new()
            .route(
                "/v1/messages",
                post(|| async {
                    Response::new(paced_body(
                        events(40),
                        Duration::from_millis(100),
                        false,
                        DropFlag::default(),
                    ))
                }),
            )
            .route("/api/anthropic/v1/messages", post(|| async { "{}" })),
    )
    .await;
    let mut proxy = BinaryProxy::spawn(&[
        ("ZAI_API_KEY", FAKE_KEY),
        ("ZAI_TARGET_URL", &upstream.url()),
        ("DEPLOYMENT_VARIANT", "canary"),
        ("SHUTDOWN_READINESS_DELAY", "3s"),
        ("SHUTDOWN_GRACE_PERIOD", "20s"),
        ("RUST_LOG", "debug"),
    ]);
    let addr = proxy.wait_listening(Duration::from_secs(30)).await;
    let base = format!("http://{addr}");
    let mut ready = false;
    for _ in 0..500 {
        if let Ok(r) = client().get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ready, "never ready");

    // A few requests that exercise error paths too (the key must not leak through them).
    let r = client()
        .post(format!("{base}/api/anthropic/v1/messages"))
        .header("x-api-key", "client-key")
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await;

    // The long stream.
    let response = client()
        .post(format!("{base}/v1/messages"))
        .body(r#"{"model":"glm-4.6","stream":true}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut received = Vec::new();
    let first = stream.next().await.expect("first chunk").expect("ok");
    received.push(first);

    proxy.sigterm();
    let mut draining = false;
    for _ in 0..250 {
        match client().get(format!("{base}/readyz")).send().await {
            Ok(r) if r.status() == 503 => {
                draining = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    assert!(draining, "/readyz did not turn 503 after SIGTERM");

    while let Some(chunk) = stream.next().await {
        received.push(chunk.expect("stream broke during drain"));
    }
    assert_eq!(received.concat(), events(40).concat(), "stream incomplete");

    let code = proxy.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "{}", proxy.output().join("\n"));

    let logs = proxy.output();
    let all = logs.join("\n");
    assert!(all.contains("DEPLOYMENT_VARIANT=canary"), "{all}");
    assert!(all.contains("Deployment variant: canary"), "{all}");
    assert!(all.contains("Build info: version="), "{all}");
    assert!(all.contains("Max workers: 10"), "{all}");
    assert!(all.contains("Metrics available at"), "{all}");
    assert!(
        all.contains("no longer accepting connections; waiting up to 20s for 1 in-flight"),
        "the stream was not in flight when accepting stopped:\n{all}"
    );
    for route in ["/api/anthropic/v1/messages", "/v1/messages"] {
        let lines = logs
            .iter()
            .filter(|l| l.contains(" request ") && l.contains(&format!("route={route} ")))
            .count();
        assert_eq!(lines, 1, "one log line per request ({route}):\n{all}");
    }
    assert!(
        !all.contains(FAKE_KEY),
        "the API key appeared in the logs:\n{all}"
    );
}

#[tokio::test]
async fn error_paths_and_json_logs_never_print_the_key() {
    let dead = dead_address().await;
    let target = format!("http://{dead}/api/anthropic");
    let mut proxy = BinaryProxy::spawn(&[
        ("ZAI_API_KEY", FAKE_KEY),
        ("ZAI_TARGET_URL", &target),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "trace"),
        ("MAX_REQUEST_BODY_BYTES", "64"),
        ("SHUTDOWN_READINESS_DELAY", "0s"),
    ]);
    let addr = proxy.wait_listening(Duration::from_secs(30)).await;
    let base = format!("http://{addr}");
    let r = client()
        .post(format!("{base}/v1/messages"))
        .header("authorization", format!("Bearer {FAKE_KEY}"))
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 502);
    assert!(!r.text().await.expect("body").contains(FAKE_KEY));
    let r = client()
        .post(format!("{base}/chat/completions"))
        .body("x".repeat(100))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 413);
    proxy.sigterm();
    assert_eq!(proxy.wait_exit(Duration::from_secs(30)).await, Some(0));
    let logs = proxy.output();
    assert!(!logs.is_empty());
    for line in &logs {
        assert!(!line.contains(FAKE_KEY), "key in log line: {line}");
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "LOG_FORMAT=json printed a non-JSON line: {line}"
        );
    }
    assert!(
        logs.iter().any(|l| l.contains("\"status\":502")),
        "{logs:?}"
    );
}
