//! Forwarding against a real loopback upstream: byte-identical relay of both wire formats,
//! streaming without buffering, credentials and hop-by-hop headers, proxy-made errors (413,
//! 502, 504, 503) in the client's format, and cancellation on client disconnect.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::{any, post};
use bytes::Bytes;
use futures::StreamExt as _;
use http::{HeaderValue, StatusCode, header};
use support::{
    DropFlag, FAKE_KEY, client, dead_address, metrics_text, paced_body, sample, start_proxy,
    start_upstream, test_config,
};
use tokio::sync::Notify;

const ANTHROPIC_JSON: &str = r#"{"id":"msg_01","type":"message","role":"assistant","model":"glm-4.6","content":[{"type":"text","text":"Hi  there \u00e9"}],"stop_reason":"end_turn","usage":{"input_tokens":9,"output_tokens":14}}"#;
const OPENAI_JSON: &str = r#"{"id":"2025","created":1758884740,"model":"glm-4.5","choices":[{"index":0,"message":{"role":"assistant","content":"ok","reasoning_content":null}, "finish_reason":"stop"}],"usage":{"prompt_tokens":18,"completion_tokens":2,"total_tokens":20}}"#;

fn anthropic_sse() -> Vec<Bytes> {
    [
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel",
        "lo\"}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":2}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ]
    .into_iter()
    .map(|s: &'static str| Bytes::from_static(s.as_bytes()))
    .collect()
}

fn openai_sse() -> Vec<Bytes> {
    [
        "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"reasoning_content\":\" The\"}}]}\n\n",
        "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"finish_reason\":\"stop\",\"delta\":{\"content\":\"\"}}],\"usage\":{\"prompt_tokens\":18,\"completion_tokens\":2,\"total_tokens\":20}}\n\n",
        "data: [DONE]\n\n",
    ]
    .into_iter()
    .map(|s: &'static str| Bytes::from_static(s.as_bytes()))
    .collect()
}

fn json_response(body: &'static str) -> Response {
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert("x-upstream-marker", HeaderValue::from_static("kept"));
    r.headers_mut()
        .insert("keep-alive", HeaderValue::from_static("timeout=5"));
    r
}

fn sse_response(chunks: Vec<Bytes>) -> Response {
    let mut r = Response::new(paced_body(
        chunks,
        Duration::from_millis(5),
        false,
        DropFlag::default(),
    ));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream;charset=UTF-8"),
    );
    r
}

#[tokio::test]
async fn anthropic_non_streaming_is_relayed_byte_identical_with_x_api_key() {
    let upstream = start_upstream(Router::new().route(
        "/api/anthropic/v1/messages",
        post(|| async { json_response(ANTHROPIC_JSON) }),
    ))
    .await;
    let proxy = start_proxy(test_config(&format!("{}/api/anthropic", upstream.url()))).await;

    let request_body =
        r#"{"model":"glm-4.6", "max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    let response = client()
        .post(format!("{}/v1/messages?beta=true", proxy.url()))
        .header("authorization", "Bearer client-secret")
        .header("x-api-key", "client-key")
        .header("anthropic-version", "2023-06-01")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "must-go")
        .header("keep-alive", "timeout=9")
        .header("te", "trailers")
        .body(request_body)
        .send()
        .await
        .expect("send");

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-upstream-marker"], "kept");
    assert!(
        response.headers().get("keep-alive").is_none(),
        "hop-by-hop leaked to client"
    );
    assert_eq!(
        response.bytes().await.expect("body"),
        ANTHROPIC_JSON.as_bytes()
    );

    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.uri, "/api/anthropic/v1/messages?beta=true");
    assert_eq!(
        r.body,
        request_body.as_bytes(),
        "request body must be byte-identical"
    );
    assert_eq!(r.headers["x-api-key"], FAKE_KEY);
    assert!(
        r.headers.get("authorization").is_none(),
        "client Authorization leaked"
    );
    assert_eq!(r.headers.get_all("x-api-key").iter().count(), 1);
    assert_eq!(r.headers["anthropic-version"], "2023-06-01");
    for hop in ["x-hop", "keep-alive", "te"] {
        assert!(r.headers.get(hop).is_none(), "{hop} reached upstream");
    }
    assert_eq!(r.headers["host"], upstream.addr.to_string());
}

#[tokio::test]
async fn openai_non_streaming_is_relayed_byte_identical_with_bearer() {
    let upstream = start_upstream(Router::new().route(
        "/api/paas/v4/chat/completions",
        post(|| async { json_response(OPENAI_JSON) }),
    ))
    .await;
    let proxy = start_proxy(test_config(&upstream.url())).await;

    let request_body = r#"{"model":"glm-4.5","messages":[{"role":"user","content":"hi"}]}"#;
    let response = client()
        .post(format!("{}/api/paas/v4/chat/completions", proxy.url()))
        .header("authorization", "Bearer client-secret")
        .body(request_body)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.bytes().await.expect("body"),
        OPENAI_JSON.as_bytes()
    );

    let r = &upstream.requests()[0];
    assert_eq!(r.headers["authorization"], format!("Bearer {FAKE_KEY}"));
    assert!(r.headers.get("x-api-key").is_none());
    assert_eq!(r.body, request_body.as_bytes());
}

#[tokio::test]
async fn auth_header_mode_overrides_the_format() {
    let upstream = start_upstream(Router::new().route(
        "/v1/messages",
        post(|| async { json_response(ANTHROPIC_JSON) }),
    ))
    .await;
    let mut config = test_config(&upstream.url());
    config.auth_header = zai_proxy::config::AuthHeaderMode::Bearer;
    let proxy = start_proxy(config).await;
    let response = client()
        .post(format!("{}/v1/messages", proxy.url()))
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let r = &upstream.requests()[0];
    assert_eq!(r.headers["authorization"], format!("Bearer {FAKE_KEY}"));
    assert!(r.headers.get("x-api-key").is_none());
}

async fn streamed(url: String, body: &'static str) -> (StatusCode, Vec<Bytes>) {
    let response = client().post(url).body(body).send().await.expect("send");
    let status = response.status();
    let mut chunks = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk.expect("chunk"));
    }
    (status, chunks)
}

#[tokio::test]
async fn anthropic_stream_is_relayed_byte_identical() {
    let upstream = start_upstream(Router::new().route(
        "/api/anthropic/v1/messages",
        post(|| async { sse_response(anthropic_sse()) }),
    ))
    .await;
    let proxy = start_proxy(test_config(&upstream.url())).await;
    let (status, chunks) = streamed(
        format!("{}/api/anthropic/v1/messages", proxy.url()),
        r#"{"model":"glm-4.6","stream":true,"messages":[]}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(chunks.concat(), anthropic_sse().concat());
}

#[tokio::test]
async fn openai_stream_is_relayed_byte_identical_including_done() {
    let upstream = start_upstream(Router::new().route(
        "/api/coding/paas/v4/chat/completions",
        post(|| async { sse_response(openai_sse()) }),
    ))
    .await;
    let proxy = start_proxy(test_config(&upstream.url())).await;
    let (status, chunks) = streamed(
        format!("{}/api/coding/paas/v4/chat/completions", proxy.url()),
        r#"{"model":"glm-4.5","stream":true,"messages":[]}"#,
    )
    .await;
    assert_eq!(status, 200);
    let all = chunks.concat();
    assert_eq!(all, openai_sse().concat());
    assert!(all.ends_with(b"data: [DONE]\n\n"));
}

#[tokio::test]
async fn stream_chunks_reach_the_client_before_the_upstream_finishes() {
    // The upstream sends one event, then waits until the test has received it: a proxy that
    // buffered the stream would deadlock here (caught by the timeout).
    let release = Arc::new(Notify::new());
    let gate = Arc::clone(&release);
    let upstream = start_upstream(Router::new().route(
        "/v1/messages",
        post(move || {
            let gate = Arc::clone(&gate);
            async move {
                let first = Bytes::from_static(b"event: message_start\ndata: {}\n\n");
                let rest = Bytes::from_static(b"event: message_stop\ndata: {}\n\n");
                let stream = futures::stream::unfold(0u8, move |step| {
                    let gate = Arc::clone(&gate);
                    let (first, rest) = (first.clone(), rest.clone());
                    async move {
                        match step {
                            0 => Some((Ok::<_, std::io::Error>(first), 1)),
                            1 => {
                                gate.notified().await;
                                Some((Ok(rest), 2))
                            }
                            _ => None,
                        }
                    }
                });
                Response::new(Body::from_stream(stream))
            }
        }),
    ))
    .await;
    let proxy = start_proxy(test_config(&upstream.url())).await;

    let outcome = tokio::time::timeout(Duration::from_secs(20), async {
        let response = client()
            .post(format!("{}/v1/messages", proxy.url()))
            .body(r#"{"stream":true}"#)
            .send()
            .await
            .expect("send");
        let mut stream = response.bytes_stream();
        let first = stream.next().await.expect("first chunk").expect("ok");
        assert_eq!(&first[..], b"event: message_start\ndata: {}\n\n");
        release.notify_one();
        let mut rest = Vec::new();
        while let Some(chunk) = stream.next().await {
            rest.push(chunk.expect("chunk"));
        }
        assert_eq!(rest.concat(), b"event: message_stop\ndata: {}\n\n");
    })
    .await;
    assert!(
        outcome.is_ok(),
        "stream was buffered: first event never arrived alone"
    );
}

#[tokio::test]
async fn upstream_error_responses_pass_through_unchanged() {
    const BODY: &str = r#"{"error":{"code":"1302","message":"High concurrency"}}"#;
    let upstream = start_upstream(Router::new().route(
        "/api/paas/v4/chat/completions",
        post(|| async {
            let mut r = json_response(BODY);
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            r
        }),
    ))
    .await;
    let proxy = start_proxy(test_config(&upstream.url())).await;
    let response = client()
        .post(format!("{}/api/paas/v4/chat/completions", proxy.url()))
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 422);
    assert_eq!(response.bytes().await.expect("body"), BODY.as_bytes());
    let metrics = metrics_text(&proxy.url()).await;
    assert_eq!(
        sample(
            &metrics,
            "zai_proxy_upstream_errors_total{error_type=\"422\",variant=\"production\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn oversized_bodies_get_413_in_the_client_format_without_calling_upstream() {
    let upstream = start_upstream(Router::new().route("/{*p}", any(|| async { "nope" }))).await;
    let mut config = test_config(&upstream.url());
    config.max_request_body_bytes = 1024;
    let proxy = start_proxy(config).await;
    let big = "x".repeat(2048);

    // Anthropic, with Content-Length.
    let response = client()
        .post(format!("{}/v1/messages", proxy.url()))
        .body(big.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "request_too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("1024")
    );

    // OpenAI, chunked (no Content-Length): the limit applies while reading.
    let chunks = futures::stream::iter(vec![
        Ok::<_, std::io::Error>(Bytes::from(big.clone())),
        Ok(Bytes::from(big)),
    ]);
    let response = client()
        .post(format!("{}/api/paas/v4/chat/completions", proxy.url()))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "request_too_large");
    assert_eq!(body["error"]["type"], "invalid_request_error");

    assert!(
        upstream.requests().is_empty(),
        "upstream must not be called"
    );
}

#[tokio::test]
async fn unreachable_upstream_is_502_json() {
    let dead = dead_address().await;
    let proxy = start_proxy(test_config(&format!("http://{dead}"))).await;
    let response = client()
        .post(format!("{}/v1/messages", proxy.url()))
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 502);
    let text = response.text().await.expect("body");
    assert!(!text.contains(FAKE_KEY));
    let body: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "api_error");

    let response = client()
        .get(format!("{}/api/paas/v4/chat/completions", proxy.url()))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "upstream_unreachable");

    let metrics = metrics_text(&proxy.url()).await;
    assert_eq!(
        sample(
            &metrics,
            "zai_proxy_requests_total{method=\"POST\",path=\"/v1/messages\",status_code=\"502\",variant=\"production\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn slow_upstream_is_504_json() {
    let upstream = start_upstream(Router::new().route(
        "/v1/messages",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "too late"
        }),
    ))
    .await;
    let mut config = test_config(&upstream.url());
    config.upstream_timeout = Duration::from_millis(300);
    let proxy = start_proxy(config).await;
    let response = client()
        .post(format!("{}/v1/messages", proxy.url()))
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 504);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["type"], "timeout_error");
}

#[tokio::test]
async fn client_disconnect_mid_stream_cancels_the_upstream_request() {
    let dropped = DropFlag::default();
    let flag = dropped.clone();
    let upstream = start_upstream(Router::new().route(
        "/v1/messages",
        post(move || {
            let flag = flag.clone();
            async move {
                Response::new(paced_body(
                    vec![Bytes::from_static(b"event: message_start\ndata: {}\n\n")],
                    Duration::from_millis(20),
                    true,
                    flag,
                ))
            }
        }),
    ))
    .await;
    let proxy = start_proxy(test_config(&upstream.url())).await;

    let response = client()
        .post(format!("{}/v1/messages", proxy.url()))
        .body(r#"{"stream":true}"#)
        .send()
        .await
        .expect("send");
    let mut stream = response.bytes_stream();
    let first = stream.next().await.expect("chunk").expect("ok");
    assert!(first.starts_with(b"event: message_start"));
    assert!(!dropped.is_set());
    drop(stream);

    assert!(
        dropped.wait(Duration::from_secs(10)).await,
        "upstream body kept streaming after the client left"
    );
    assert!(
        support::eventually(Duration::from_secs(5), || proxy.state.capacity.in_flight()
            == 0)
        .await,
        "capacity slot not released"
    );
}

#[tokio::test]
async fn beyond_max_workers_is_503_with_retry_after() {
    let release = Arc::new(Notify::new());
    let gate = Arc::clone(&release);
    let upstream = start_upstream(Router::new().route(
        "/v1/messages",
        post(move || {
            let gate = Arc::clone(&gate);
            async move {
                gate.notified().await;
                json_response(ANTHROPIC_JSON)
            }
        }),
    ))
    .await;
    let mut config = test_config(&upstream.url());
    config.max_workers = 1;
    let proxy = start_proxy(config).await;

    let url = format!("{}/v1/messages", proxy.url());
    let held = tokio::spawn(client().post(url.clone()).body("{}").send());
    assert!(
        support::eventually(Duration::from_secs(10), || upstream.requests().len() == 1).await,
        "first request never reached upstream"
    );

    let response = client().post(url).body("{}").send().await.expect("send");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["type"], "overloaded_error");

    let response = client()
        .post(format!("{}/api/paas/v4/chat/completions", proxy.url()))
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "at_capacity");

    release.notify_one();
    let first = held.await.expect("join").expect("first request");
    assert_eq!(first.status(), 200);

    let metrics = metrics_text(&proxy.url()).await;
    let rejections: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("zai_proxy_rate_limit_rejections_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(rejections, 2.0);
    assert_eq!(
        sample(
            &metrics,
            "zai_proxy_requests_total{method=\"POST\",path=\"/v1/messages\",status_code=\"503\",variant=\"production\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "zai_proxy_max_workers{variant=\"production\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn any_method_and_path_is_forwarded_with_query() {
    let upstream = start_upstream(Router::new().route(
        "/api/paas/v4/models",
        any(|| async { json_response(r#"{"object":"list","data":[]}"#) }),
    ))
    .await;
    let proxy = start_proxy(test_config(&upstream.url())).await;
    let response = client()
        .get(format!("{}/api/paas/v4/models?limit=2&x=%20y", proxy.url()))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let r = &upstream.requests()[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.uri, "/api/paas/v4/models?limit=2&x=%20y");
    assert_eq!(r.headers["authorization"], format!("Bearer {FAKE_KEY}"));
}

#[tokio::test]
async fn https_targets_go_through_tls_never_plain_text() {
    // A plain-HTTP server behind an https:// target: the TLS handshake fails, the proxy
    // answers 502, and the server never sees an HTTP request (no fallback to plain text).
    let upstream = start_upstream(Router::new().route("/{*p}", any(|| async { "plain" }))).await;
    let proxy = start_proxy(test_config(&format!("https://{}", upstream.addr))).await;
    let response = client()
        .post(format!("{}/v1/messages", proxy.url()))
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 502);
    assert!(upstream.requests().is_empty());
}
