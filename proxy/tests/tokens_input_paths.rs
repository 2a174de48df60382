//! The input estimate takes one of four paths by body size — counted inline (tiny), parsed
//! once on the async worker and counted on the counting threads, parsed and counted on the
//! counting threads (large), or bytes ÷ 4 (over `TOKEN_COUNT_MAX_BYTES`) — and every path
//! gives `X-Token-Input` the same number as `TokenCounter::input_tokens`, while the request
//! itself (model label, stream flag) is read the same way.

mod support;

use axum::Router;
use axum::routing::post;
use http::header;
use support::{client, metrics_text, start_proxy, start_upstream, test_config};
use zai_proxy::tokens::hooks::{INLINE_INPUT_MAX_BYTES, SINGLE_PARSE_MAX_BYTES};
use zai_proxy::tokens::{Encoding, TokenCounter};

const OPENAI_JSON: &str = r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":18,"completion_tokens":7,"total_tokens":25}}"#;

/// A chat body of at least `size` bytes with escapes, non-ASCII text and a tool call.
fn body_of(size: usize) -> String {
    let turn = r#"{"role":"user","content":"Fix this:\n\tlet x = \"quoted\"; // 世界 ✓"},{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"edit","arguments":"{\"path\":\"a.rs\"}"}}]},"#;
    let mut messages = String::new();
    while messages.len() < size {
        messages.push_str(turn);
    }
    messages.pop();
    format!(
        r#"{{"model":"glm-4.6","messages":[{messages}],"tools":[{{"type":"function","function":{{"name":"edit","parameters":{{"type":"object","required":["path"]}}}}}}]}}"#
    )
}

fn requests_for_model(metrics: &str, model: &str) -> f64 {
    let prefix = format!("zai_proxy_tokens_total{{direction=\"output\",model=\"{model}\",");
    metrics
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn every_size_path_gives_the_same_estimate_as_input_tokens() {
    let upstream = start_upstream(Router::new().route(
        "/chat/completions",
        post(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAI_JSON) }),
    ))
    .await;
    let max_bytes = 4 * SINGLE_PARSE_MAX_BYTES;
    let mut config = test_config(&upstream.url());
    config.tokens.max_bytes = max_bytes;
    config.known_models = vec!["glm-4.6".to_owned()];
    let proxy = start_proxy(config).await;
    let counter = TokenCounter::load(Encoding::Cl100kBase, max_bytes).expect("loads");
    let sizes = [
        INLINE_INPUT_MAX_BYTES / 2,
        INLINE_INPUT_MAX_BYTES * 4,
        SINGLE_PARSE_MAX_BYTES * 2,
        max_bytes + 1000,
    ];
    for (i, size) in sizes.into_iter().enumerate() {
        let body = body_of(size);
        let expected = counter.input_tokens(body.as_bytes());
        assert_eq!(
            expected.method == zai_proxy::tokens::InputMethod::OverLimit,
            body.len() > max_bytes
        );
        let resp = client()
            .post(format!("{}/chat/completions", proxy.url()))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()
                .get("x-token-input")
                .and_then(|v| v.to_str().ok()),
            Some(expected.tokens.to_string().as_str()),
            "{} bytes",
            body.len()
        );
        assert_eq!(resp.text().await.expect("body"), OPENAI_JSON);
        // The model label came from the same read of the body on every path.
        let mut recorded = 0.0;
        for _ in 0..200 {
            recorded = requests_for_model(&metrics_text(&proxy.url()).await, "glm-4.6");
            if recorded >= 7.0 * (i + 1) as f64 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(recorded, 7.0 * (i + 1) as f64, "{} bytes", body.len());
    }
    // The upstream got every body unchanged.
    let bodies: Vec<usize> = upstream.requests().iter().map(|r| r.body.len()).collect();
    let sent: Vec<usize> = sizes.iter().map(|&s| body_of(s).len()).collect();
    assert_eq!(bodies, sent);
    proxy.shutdown().await.expect("shutdown");
}
