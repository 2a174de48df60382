//! Token counting through the running proxy (real HTTP on loopback): `X-Token-Input`, usage
//! recorded from upstream (streaming and not) or estimated, local `count_tokens`, metrics,
//! the log lines, counting off, and a huge body counted off the async runtime.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::post;
use futures::StreamExt as _;
use http::header;
use support::{client, metrics_text, start_proxy, start_upstream, test_config};
use zai_proxy::tokens::{Encoding, TokenCounter};

const ANTHROPIC_SSE: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"content\":[],\"model\":\"glm-4.6\",\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":10,\"cache_creation_input_tokens\":5,\"output_tokens\":1}}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello world\"}}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":12}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

const OPENAI_SSE_NO_USAGE: &str = concat!(
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello there, friend\"}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"thinking hard\"}}]}\n\n",
    "data: [DONE]\n\n",
);

const OPENAI_JSON: &str = r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":18,"completion_tokens":7,"total_tokens":25,"prompt_tokens_details":{"cached_tokens":4}}}"#;

fn upstream_router() -> Router {
    Router::new()
        .route(
            "/v1/messages",
            post(|| async { ([(header::CONTENT_TYPE, "text/event-stream")], ANTHROPIC_SSE) }),
        )
        .route(
            "/v1/messages/count_tokens",
            post(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    r#"{"input_tokens":999}"#,
                )
            }),
        )
        .route(
            "/chat/completions",
            post(|body: String| async move {
                if body.contains("\"stream\":true") {
                    (
                        [(header::CONTENT_TYPE, "text/event-stream")],
                        OPENAI_SSE_NO_USAGE,
                    )
                        .into_response()
                } else {
                    ([(header::CONTENT_TYPE, "application/json")], OPENAI_JSON).into_response()
                }
            }),
        )
}

/// Sum of `zai_proxy_tokens_total` samples with this direction (any model / tier).
fn tokens_total(metrics: &str, direction: &str) -> f64 {
    let prefix = format!("zai_proxy_tokens_total{{direction=\"{direction}\",");
    metrics
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn ratio_count(metrics: &str, direction: &str) -> f64 {
    let prefix = format!("zai_proxy_token_estimate_ratio_count{{direction=\"{direction}\",");
    metrics
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn counter() -> TokenCounter {
    TokenCounter::load(Encoding::Cl100kBase, 8 << 20).expect("loads")
}

/// Waits until the usage tap (which runs when the body ends) has recorded.
async fn metrics_after(url: &str, direction: &str, at_least: f64) -> String {
    let mut text = String::new();
    for _ in 0..200 {
        text = metrics_text(url).await;
        if tokens_total(&text, direction) >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    text
}

#[tokio::test]
async fn streaming_anthropic_usage_is_recorded_from_upstream() {
    let upstream = start_upstream(upstream_router()).await;
    let proxy = start_proxy(test_config(&upstream.url())).await;
    assert!(
        proxy.state.tokens().is_some(),
        "tokenizer loaded before ready"
    );
    let body = r#"{"model":"glm-4.6","stream":true,"system":"Be brief.","messages":[{"role":"user","content":"Say hello to the world"}]}"#;
    let before = metrics_text(&proxy.url()).await;
    assert_eq!(tokens_total(&before, "input"), 0.0);

    let resp = client()
        .post(format!("{}/v1/messages", proxy.url()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let expected_input = counter().input_tokens(body.as_bytes()).tokens;
    assert_eq!(
        resp.headers()
            .get("x-token-input")
            .and_then(|v| v.to_str().ok()),
        Some(expected_input.to_string().as_str())
    );
    assert_eq!(
        resp.text().await.expect("body"),
        ANTHROPIC_SSE,
        "relayed byte for byte"
    );

    let after = metrics_after(&proxy.url(), "input", 25.0).await;
    assert_eq!(tokens_total(&after, "input"), 25.0);
    assert_eq!(
        tokens_total(&after, "output"),
        12.0,
        "last message_delta, not summed"
    );
    assert_eq!(tokens_total(&after, "cache_read"), 10.0);
    assert_eq!(tokens_total(&after, "cache_write"), 5.0);
    assert!(
        after
            .contains("zai_proxy_tokens_total{direction=\"input\",model=\"glm-4.6\",pricing_tier="),
        "{after}"
    );
    assert_eq!(ratio_count(&after, "input"), 1.0);
    assert_eq!(ratio_count(&after, "output"), 1.0);
    let cost: f64 = after
        .lines()
        .filter(|l| l.starts_with("zai_proxy_estimated_cost_usd_total{direction=\"input\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(cost > 0.0, "cost recorded");
    proxy.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn openai_json_usage_and_stream_without_usage() {
    let upstream = start_upstream(upstream_router()).await;
    let proxy = start_proxy(test_config(&upstream.url())).await;
    let body = r#"{"model":"glm-4.6","messages":[{"role":"user","content":"Hi"}]}"#;
    let resp = client()
        .post(format!("{}/chat/completions", proxy.url()))
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.text().await.expect("body"), OPENAI_JSON);
    let m = metrics_after(&proxy.url(), "input", 18.0).await;
    assert_eq!(
        tokens_total(&m, "input"),
        18.0,
        "upstream prompt_tokens preferred"
    );
    assert_eq!(tokens_total(&m, "output"), 7.0);
    assert_eq!(tokens_total(&m, "cache_read"), 4.0);

    // A stream with no usage at all: the local estimates are recorded.
    let body = r#"{"model":"glm-4.6","stream":true,"messages":[{"role":"user","content":"Tell me a long story about dragons"}]}"#;
    let resp = client()
        .post(format!("{}/chat/completions", proxy.url()))
        .body(body)
        .send()
        .await
        .expect("request");
    let header: u64 = resp
        .headers()
        .get("x-token-input")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .expect("x-token-input");
    assert_eq!(resp.text().await.expect("body"), OPENAI_SSE_NO_USAGE);
    let c = counter();
    assert_eq!(header, c.count("Tell me a long story about dragons") as u64);
    let output = (c.count("Hello there, friend") + c.count("thinking hard")) as f64;
    let m = metrics_after(&proxy.url(), "input", 18.0 + header as f64).await;
    assert_eq!(tokens_total(&m, "input"), 18.0 + header as f64);
    assert_eq!(tokens_total(&m, "output"), 7.0 + output);
    proxy.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn count_tokens_is_answered_locally_or_forwarded() {
    let upstream = start_upstream(upstream_router()).await;
    let proxy = start_proxy(test_config(&upstream.url())).await;
    let text = "How many tokens is this sentence, including the 世界?";
    let body =
        format!(r#"{{"model":"glm-4.6","messages":[{{"role":"user","content":"{text}"}}]}}"#);
    let resp = client()
        .post(format!(
            "{}/v1/messages/count_tokens?beta=true",
            proxy.url()
        ))
        .body(body.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let header = resp
        .headers()
        .get("x-token-input")
        .cloned()
        .expect("header");
    let answer: serde_json::Value = resp.json().await.expect("json");
    let n = answer["input_tokens"].as_u64().expect("input_tokens");
    let exact = counter().count(text) as u64;
    assert!(
        n >= exact && n - exact <= 10,
        "framing within 10 tokens: {n} vs {exact}"
    );
    assert_eq!(n, exact, "no framing is added");
    assert_eq!(header.to_str().expect("ascii"), n.to_string());
    assert!(upstream.requests().is_empty(), "answered without upstream");
    // Not JSON: forwarded, upstream answers.
    let resp = client()
        .post(format!("{}/v1/messages/count_tokens", proxy.url()))
        .body("not json")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.text().await.expect("body"), r#"{"input_tokens":999}"#);
    assert_eq!(upstream.requests().len(), 1);
    proxy.shutdown().await.expect("shutdown");

    let mut config = test_config(&upstream.url());
    config.tokens.local_count_tokens = false;
    let proxy = start_proxy(config).await;
    let resp = client()
        .post(format!("{}/v1/messages/count_tokens", proxy.url()))
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.text().await.expect("body"), r#"{"input_tokens":999}"#);
    assert_eq!(upstream.requests().len(), 2);
    proxy.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn counting_disabled_loads_nothing_and_records_nothing() {
    let upstream = start_upstream(upstream_router()).await;
    let mut config = test_config(&upstream.url());
    config.tokens.enabled = false;
    let proxy = start_proxy(config).await;
    assert!(proxy.state.tokens().is_none());
    let resp = client()
        .post(format!("{}/v1/messages", proxy.url()))
        .body(r#"{"model":"glm-4.6","stream":true,"messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .expect("request");
    assert!(resp.headers().get("x-token-input").is_none());
    assert_eq!(resp.text().await.expect("body"), ANTHROPIC_SSE);
    // count_tokens goes upstream when counting is off.
    let resp = client()
        .post(format!("{}/v1/messages/count_tokens", proxy.url()))
        .body(r#"{"messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.text().await.expect("body"), r#"{"input_tokens":999}"#);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let m = metrics_text(&proxy.url()).await;
    for d in ["input", "output", "cache_read", "cache_write"] {
        assert_eq!(tokens_total(&m, d), 0.0, "{d}");
    }
    proxy.shutdown().await.expect("shutdown");
}

/// A 32 MiB adversarial body (one long run) is parsed and counted on the counting threads,
/// concurrently with the upstream call: with a single runtime worker, `/health` keeps
/// answering after the body is sent and before the big request's response arrives (the
/// response head waits for the count). The run is `abab…`: a single repeated character
/// would be counted in milliseconds by the run-length shortcut, leaving no window to test;
/// a two-character pattern is one 32 MiB piece that takes seconds even in the linear engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn huge_adversarial_body_does_not_stall_other_requests() {
    let (_upstream, proxy) = start_for_huge_bodies().await;

    let (big, sent) = send_in_background(&proxy.url(), b"ab".repeat(16 << 20));

    let mut answered_while_counting = 0;
    for _ in 0..20_000 {
        if big.is_finished() {
            break;
        }
        if !sent.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let health = client()
            .get(format!("{}/health", proxy.url()))
            .send()
            .await
            .expect("health");
        assert_eq!(health.status(), 200);
        if !big.is_finished() {
            answered_while_counting += 1;
        }
    }
    let status = big.await.expect("join").expect("big request");
    assert_eq!(status, 200);
    assert!(
        answered_while_counting >= 3,
        "/health answered {answered_while_counting} times while the body was counted"
    );
    proxy.shutdown().await.expect("shutdown");
}

/// An upstream answering `/v1/messages` at once, and a proxy that accepts and counts bodies
/// of up to 40 MiB.
async fn start_for_huge_bodies() -> (support::Upstream, zai_proxy::ProxyHandle) {
    let upstream = start_upstream(Router::new().route(
        "/v1/messages",
        post(|| async {
            (
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"content":[],"usage":{"input_tokens":1,"output_tokens":1}}"#,
            )
        }),
    ))
    .await;
    let mut config = test_config(&upstream.url());
    config.max_request_body_bytes = 40 << 20;
    config.tokens.max_bytes = 40 << 20;
    config.upstream_timeout = Duration::from_secs(300);
    let proxy = start_proxy(config).await;
    (upstream, proxy)
}

/// Sends a `/v1/messages` request whose one message is `text`, streamed in three chunks,
/// from a background task. The flag turns true once the client has sent the whole body.
fn send_in_background(
    proxy_url: &str,
    text: Vec<u8>,
) -> (
    tokio::task::JoinHandle<reqwest::Result<reqwest::StatusCode>>,
    Arc<AtomicBool>,
) {
    let prefix = br#"{"model":"glm-4.6","messages":[{"role":"user","content":""#;
    let suffix = br#""}]}"#;
    let sent = Arc::new(AtomicBool::new(false));
    let sent_flag = Arc::clone(&sent);
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
        Ok(bytes::Bytes::from_static(prefix)),
        Ok(bytes::Bytes::from(text)),
        Ok(bytes::Bytes::from_static(suffix)),
    ];
    let stream = futures::stream::iter(chunks).chain(futures::stream::poll_fn(move |_| {
        sent_flag.store(true, Ordering::SeqCst);
        std::task::Poll::Ready(None)
    }));
    let url = format!("{proxy_url}/v1/messages");
    let task = tokio::spawn(async move {
        client()
            .post(url)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .map(|r| r.status())
    });
    (task, sent)
}

/// A body of several megabytes is counted on a thread of its own: an ordinary request
/// (counted on the shared counting threads) sent while it is counted gets its answer, with
/// `X-Token-Input`, before the huge one — it does not queue behind it.
#[tokio::test]
async fn a_huge_count_does_not_delay_ordinary_requests() {
    let (_upstream, proxy) = start_for_huge_bodies().await;

    // abab… is one piece that takes about a second to count, even in the linear engine.
    let (big, sent) = send_in_background(&proxy.url(), b"ab".repeat(16 << 20));
    while !sent.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Large enough to be counted off the async workers, far below the own-thread size.
    let text = " word".repeat(4000);
    let expected = zai_proxy::tokens::Engine::load(zai_proxy::tokens::Encoding::Cl100kBase)
        .expect("cl100k_base")
        .count(&text)
        .to_string();
    let ordinary = serde_json::json!({
        "model": "glm-4.6",
        "messages": [{"role": "user", "content": text}],
    });
    let resp = client()
        .post(format!("{}/v1/messages", proxy.url()))
        .json(&ordinary)
        .send()
        .await
        .expect("ordinary request");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("x-token-input")
            .and_then(|v| v.to_str().ok()),
        Some(expected.as_str())
    );
    assert!(
        !big.is_finished(),
        "the ordinary request waited for the huge count"
    );
    assert_eq!(big.await.expect("join").expect("big request"), 200);
    proxy.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn binary_logs_start_up_and_token_usage_lines() {
    let upstream = start_upstream(upstream_router()).await;
    let target = upstream.url();
    let proxy = support::BinaryProxy::spawn(&[
        ("ZAI_TARGET_URL", target.as_str()),
        ("ZAI_API_KEY", support::FAKE_KEY),
    ]);
    let addr = proxy.wait_listening(Duration::from_secs(30)).await;
    // The tokenizer loads before /readyz turns 200.
    let mut ready = false;
    for _ in 0..600 {
        let r = client().get(format!("http://{addr}/readyz")).send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "never ready");
    assert!(
        proxy
            .output()
            .iter()
            .any(|l| l.contains("Token counting enabled (")),
        "tokenizer loaded before ready"
    );
    let resp = client()
        .post(format!("http://{addr}/v1/messages"))
        .body(r#"{"model":"glm-4.6","stream":true,"messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.text().await.expect("body"), ANTHROPIC_SSE);
    let want = "Token usage (stream, fromAPI=true): input=25 output=12 cache_read=10 cache_write=5";
    let ok = support::eventually(Duration::from_secs(10), || {
        proxy.output().iter().any(|l| l.contains(want))
    })
    .await;
    let out = proxy.output().join("\n");
    assert!(ok, "no usage line:\n{out}");
    assert!(
        out.contains("Token counting enabled (cl100k_base, engine run-length shortcut + Han cuts + tiktoken 4 + bpe-openai for long runs, model: glm-4)"),
        "{out}"
    );
    assert!(!out.contains(support::FAKE_KEY));
}

/// `zai_proxy_token_rate_seconds_count{direction="input",…}`: one per counted request body.
fn count_observations(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("zai_proxy_token_rate_seconds_count{direction=\"input\","))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn input_estimate_is_the_same_inline_and_on_the_counting_threads() {
    let upstream = start_upstream(upstream_router()).await;
    let proxy = start_proxy(test_config(&upstream.url())).await;
    let inline_max = zai_proxy::tokens::hooks::INLINE_INPUT_MAX_BYTES;
    let before = count_observations(&metrics_text(&proxy.url()).await);
    let mut sent = 0.0;
    // Just under the inline limit (counted on the async worker), and well over it (counted
    // on the counting threads while the request is upstream); the same header either way.
    for target in [inline_max - 200, inline_max * 8] {
        let turn = r#"{"role":"user","content":"Tell me about tokenizers, 世界, and the pool. "},"#;
        let mut messages = String::new();
        while messages.len() < target {
            messages.push_str(turn);
        }
        messages.pop();
        let body = format!(r#"{{"model":"glm-4.6","messages":[{messages}]}}"#);
        assert_eq!(body.len() > inline_max, target > inline_max);
        let expected = counter().input_tokens(body.as_bytes()).tokens;
        for path in ["/chat/completions", "/v1/messages/count_tokens"] {
            let resp = client()
                .post(format!("{}{path}", proxy.url()))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("request");
            assert_eq!(resp.status(), 200, "{path} with {} bytes", body.len());
            assert_eq!(
                resp.headers()
                    .get("x-token-input")
                    .and_then(|v| v.to_str().ok()),
                Some(expected.to_string().as_str()),
                "{path} with {} bytes",
                body.len()
            );
            let text = resp.text().await.expect("body");
            if path.ends_with("count_tokens") {
                assert_eq!(text, format!(r#"{{"input_tokens":{expected}}}"#));
            }
            sent += 1.0;
        }
    }
    // Only the chat completions went upstream; count_tokens was answered locally.
    assert_eq!(upstream.requests().len(), 2);
    // Each count was observed once, before its response head was sent.
    let after = metrics_text(&proxy.url()).await;
    assert_eq!(count_observations(&after) - before, sent);
    proxy.shutdown().await.expect("shutdown");
}
