//! The fake's surfaces: wire formats parse as typed Anthropic/OpenAI payloads, usage equals
//! the tokenizer's count of the content, auth, models, quota, recording.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test on purpose")]

use serde::Deserialize;
use serde_json::{Value, json};
use zai_e2e::fake::{FakeConfig, FakeZai, QuotaShape, tokens};

const KEY: &str = "test-key";

async fn fake() -> FakeZai {
    FakeZai::start(FakeConfig {
        record: 16,
        ..FakeConfig::with_key(KEY)
    })
    .await
    .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn anthropic_request(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": stream,
        "system": "You are a helpful assistant.",
        "messages": [
            {"role": "user", "content": "Explain the retry loop. 请简单说明。"},
            {"role": "assistant", "content": [{"type": "text", "text": "Sure."}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "fn retry() {}"}]}
        ]
    })
}

fn openai_request(stream: bool) -> Value {
    json!({
        "model": "glm-4.6",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Explain the retry loop. 请简单说明。"}
        ]
    })
}

// --- typed Anthropic payloads ---

#[derive(Debug, Deserialize)]
struct AnthropicUsage {
    input_tokens: u64,
    output_tokens: u64,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum AnthropicBlock {
    Text { text: String },
}

#[derive(Debug, Deserialize)]
struct AnthropicMessage {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    role: String,
    model: String,
    content: Vec<AnthropicBlock>,
    stop_reason: Option<String>,
    usage: Option<AnthropicUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum TextDelta {
    TextDelta { text: String },
}

#[derive(Debug, Deserialize)]
struct MessageDeltaBody {
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum AnthropicEvent {
    MessageStart {
        message: AnthropicMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: AnthropicBlock,
    },
    Ping,
    ContentBlockDelta {
        index: u32,
        delta: TextDelta,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: MessageDeltaBody,
        usage: Option<AnthropicUsage>,
    },
    MessageStop,
}

// --- typed OpenAI payloads ---

#[derive(Debug, Deserialize)]
struct OpenAiUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

#[derive(Debug, Deserialize)]
struct OpenAiMessage {
    role: String,
    content: Option<String>,
    reasoning_content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OpenAiChoice {
    index: u32,
    message: OpenAiMessage,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OpenAiCompletion {
    id: String,
    object: String,
    created: i64,
    model: String,
    choices: Vec<OpenAiChoice>,
    usage: Option<OpenAiUsage>,
}

#[derive(Debug, Deserialize)]
struct OpenAiDelta {
    role: Option<String>,
    content: Option<String>,
    reasoning_content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OpenAiChunkChoice {
    index: u32,
    delta: OpenAiDelta,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OpenAiChunk {
    id: String,
    created: i64,
    model: String,
    choices: Vec<OpenAiChunkChoice>,
    usage: Option<OpenAiUsage>,
}

/// Splits an SSE body into (event name, data) pairs.
fn sse(body: &str) -> Vec<(Option<String>, String)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = Some(name.to_string());
                } else if let Some(payload) = line.strip_prefix("data: ") {
                    data.push_str(payload);
                }
            }
            (event, data)
        })
        .collect()
}

async fn post(fake: &FakeZai, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", fake.url()))
        .header("x-api-key", KEY)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn anthropic_json_is_a_valid_message_with_exact_usage() {
    let fake = fake().await;
    let request = anthropic_request(false);
    let response = post(&fake, "/api/anthropic/v1/messages", &request).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let message: AnthropicMessage = response.json().await.unwrap();
    assert!(message.id.starts_with("msg_"));
    assert_eq!(
        (message.kind.as_str(), message.role.as_str()),
        ("message", "assistant")
    );
    assert_eq!(
        message.model, "glm-4.6",
        "Claude model names are rewritten like Z.AI does"
    );
    assert_eq!(message.stop_reason.as_deref(), Some("end_turn"));
    let AnthropicBlock::Text { text } = &message.content[0];
    assert!(!text.is_empty());
    let usage = message.usage.unwrap();
    assert_eq!(usage.output_tokens, tokens::count(text));
    let expected_input = tokens::count("You are a helpful assistant.")
        + tokens::count("Explain the retry loop. 请简单说明。")
        + tokens::count("Sure.")
        + tokens::count("fn retry() {}");
    assert_eq!(usage.input_tokens, expected_input);
    let stats = fake.stats();
    assert_eq!(stats.count("anthropic_messages", "ok"), 1);
    assert_eq!(stats.billed_output_tokens, usage.output_tokens);
    assert_eq!(stats.billed_input_tokens, usage.input_tokens);
}

#[tokio::test]
async fn anthropic_stream_has_every_named_event_and_cumulative_usage() {
    let fake = fake().await;
    let response = post(
        &fake,
        "/api/anthropic/v1/messages",
        &anthropic_request(true),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = response.text().await.unwrap();
    let events: Vec<(String, AnthropicEvent)> = sse(&body)
        .into_iter()
        .map(|(name, data)| {
            (
                name.expect("every event is named"),
                serde_json::from_str(&data).unwrap(),
            )
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        &names[..3],
        ["message_start", "content_block_start", "ping"]
    );
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(
        names
            .iter()
            .filter(|n| **n == "content_block_delta")
            .count()
            >= 2
    );
    let mut text = String::new();
    let mut deltas = Vec::new();
    let mut input = None;
    let mut output = None;
    for (_, event) in &events {
        match event {
            AnthropicEvent::MessageStart { message } => {
                assert!(message.content.is_empty());
                input = message.usage.as_ref().map(|u| u.input_tokens);
            }
            AnthropicEvent::ContentBlockDelta {
                index: 0,
                delta: TextDelta::TextDelta { text: t },
            } => {
                text.push_str(t);
                deltas.push(t.clone());
            }
            AnthropicEvent::MessageDelta { delta, usage } => {
                assert_eq!(delta.stop_reason.as_deref(), Some("end_turn"));
                output = usage.as_ref().map(|u| u.output_tokens);
            }
            AnthropicEvent::ContentBlockStart {
                index,
                content_block: AnthropicBlock::Text { text },
            } => {
                assert_eq!((*index, text.as_str()), (0, ""));
            }
            AnthropicEvent::ContentBlockStop { index } => assert_eq!(*index, 0),
            _ => {}
        }
    }
    assert_eq!(
        output,
        Some(tokens::count(&text)),
        "cumulative output_tokens = count of the text"
    );
    let per_delta: u64 = deltas.iter().map(|d| tokens::count(d)).sum();
    assert_eq!(
        per_delta,
        tokens::count(&text),
        "counting delta by delta gives the bill exactly"
    );
    assert_eq!(
        input,
        Some(tokens::input_tokens(
            tokens::Api::Anthropic,
            &anthropic_request(true)
        ))
    );
    assert_eq!(fake.stats().count("anthropic_messages", "ok"), 1);
    assert_eq!(fake.stats().streams, 1);
}

#[tokio::test]
async fn openai_json_is_a_valid_completion_with_exact_usage() {
    let fake = fake().await;
    for path in [
        "/api/paas/v4/chat/completions",
        "/v1/chat/completions",
        "/api/coding/paas/v4/chat/completions",
    ] {
        let response = client()
            .post(format!("{}{path}", fake.url()))
            .bearer_auth(KEY)
            .json(&openai_request(false))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let completion: OpenAiCompletion = response.json().await.unwrap();
        assert!(!completion.id.is_empty() && completion.created > 0);
        assert_eq!(completion.object, "chat.completion");
        assert_eq!(completion.model, "glm-4.6");
        let choice = &completion.choices[0];
        assert_eq!(
            (choice.index, choice.message.role.as_str()),
            (0, "assistant")
        );
        assert_eq!(choice.finish_reason.as_deref(), Some("stop"));
        let content = choice.message.content.clone().unwrap();
        let reasoning = choice.message.reasoning_content.clone().unwrap();
        let usage = completion.usage.unwrap();
        assert_eq!(
            usage.completion_tokens,
            tokens::count(&content) + tokens::count(&reasoning)
        );
        assert_eq!(
            usage.prompt_tokens,
            tokens::input_tokens(tokens::Api::OpenAi, &openai_request(false))
        );
        assert_eq!(
            usage.total_tokens,
            usage.prompt_tokens + usage.completion_tokens
        );
    }
}

#[tokio::test]
async fn openai_stream_has_zai_quirks_and_ends_with_done() {
    let fake = fake().await;
    let response = client()
        .post(format!("{}/api/paas/v4/chat/completions", fake.url()))
        .bearer_auth(KEY)
        .json(&openai_request(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream;charset=UTF-8"
    );
    let body = response.text().await.unwrap();
    let events = sse(&body);
    assert_eq!(events.last().unwrap().1, "[DONE]");
    assert!(
        events.iter().all(|(name, _)| name.is_none()),
        "OpenAI streams have no event names"
    );
    let chunks: Vec<OpenAiChunk> = events[..events.len() - 1]
        .iter()
        .map(|(_, data)| serde_json::from_str(data).unwrap())
        .collect();
    let raw: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        raw.iter().all(|chunk| chunk.get("object").is_none()),
        "Z.AI chunks carry no object field"
    );
    let (mut content, mut reasoning) = (String::new(), String::new());
    for chunk in &chunks {
        assert!(!chunk.id.is_empty() && chunk.created > 0 && chunk.model == "glm-4.6");
        let choice = &chunk.choices[0];
        assert_eq!(choice.index, 0);
        assert_eq!(choice.delta.role.as_deref(), Some("assistant"));
        content.push_str(choice.delta.content.as_deref().unwrap_or(""));
        reasoning.push_str(choice.delta.reasoning_content.as_deref().unwrap_or(""));
    }
    assert!(!reasoning.is_empty(), "reasoning_content deltas come first");
    assert!(
        chunks[0].choices[0]
            .delta
            .reasoning_content
            .as_deref()
            .is_some_and(|r| !r.is_empty())
    );
    let last = chunks.last().unwrap();
    assert_eq!(last.choices[0].finish_reason.as_deref(), Some("stop"));
    assert!(
        chunks[..chunks.len() - 1].iter().all(|c| c.usage.is_none()),
        "usage only on the last chunk"
    );
    let usage = last.usage.as_ref().unwrap();
    assert_eq!(
        usage.completion_tokens,
        tokens::count(&content) + tokens::count(&reasoning)
    );
    assert_eq!(
        usage.prompt_tokens,
        tokens::input_tokens(tokens::Api::OpenAi, &openai_request(true))
    );
}

#[tokio::test]
async fn content_is_deterministic_per_seed_and_request() {
    let a = fake().await;
    let b = fake().await;
    let other = FakeZai::start(FakeConfig {
        seed: 7,
        ..FakeConfig::with_key(KEY)
    })
    .await
    .unwrap();
    let text = |fake: &FakeZai| {
        let fake_url = fake.url();
        async move {
            let body: Value = client()
                .post(format!("{fake_url}/api/anthropic/v1/messages"))
                .header("x-api-key", KEY)
                .json(&anthropic_request(false))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["content"][0]["text"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(text(&a).await, text(&b).await);
    assert_ne!(text(&a).await, text(&other).await);
}

#[tokio::test]
async fn wrong_or_missing_credentials_get_zai_401() {
    let fake = fake().await;
    let url = format!("{}/api/anthropic/v1/messages", fake.url());
    let missing = client()
        .post(&url)
        .json(&anthropic_request(false))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["code"], "1001");
    let wrong = client()
        .post(format!("{}/api/paas/v4/chat/completions", fake.url()))
        .bearer_auth("nope")
        .json(&openai_request(false))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "1000");
    let quota = client()
        .get(format!("{}/api/monitor/usage/quota/limit", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(quota.status(), 401);
    assert_eq!(fake.stats().outcome_total("unauthorized"), 3);
    assert_eq!(fake.stats().billed_output_tokens, 0);
}

#[tokio::test]
async fn models_quota_and_count_tokens() {
    let fake = fake().await;
    let models: Value = client()
        .get(format!("{}/v1/models", fake.url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "glm-4.6" && m["object"] == "model")
    );

    // The quota poller sends the raw key in Authorization (no Bearer).
    let quota = |fake_url: String| async move {
        client()
            .get(format!("{fake_url}/api/monitor/usage/quota/limit"))
            .header("authorization", KEY)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let before = quota(fake.url()).await;
    assert_eq!(before["success"], true);
    assert_eq!(before["data"]["limits"][0]["type"], "CREDIT_LIMIT");
    assert_eq!(before["data"]["limits"][0]["unit"], 3);
    assert_eq!(before["data"]["limits"][1]["unit"], 6);
    assert_eq!(before["data"]["limits"][0]["currentValue"], 0);
    post(
        &fake,
        "/api/anthropic/v1/messages",
        &anthropic_request(false),
    )
    .await
    .bytes()
    .await
    .unwrap();
    let after = quota(fake.url()).await;
    let stats = fake.stats();
    assert_eq!(
        after["data"]["limits"][0]["currentValue"],
        stats.billed_input_tokens + stats.billed_output_tokens,
        "quota usage follows the tokens billed"
    );
    fake.set_quota_shape(QuotaShape::Legacy);
    let legacy = quota(fake.url()).await;
    assert_eq!(legacy["data"]["limits"][0]["type"], "TOKENS_LIMIT");
    assert!(legacy["data"]["limits"][0].get("currentValue").is_none());
    assert!(legacy["data"]["limits"][0]["percentage"].is_u64());

    let counted: Value = post(
        &fake,
        "/api/anthropic/v1/messages/count_tokens",
        &anthropic_request(false),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        counted["input_tokens"].as_u64(),
        Some(tokens::input_tokens(
            tokens::Api::Anthropic,
            &anthropic_request(false)
        ))
    );
    let unknown = client()
        .get(format!("{}/nope", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn bad_body_gets_400_and_recording_keeps_headers() {
    let fake = fake().await;
    let response = client()
        .post(format!("{}/api/paas/v4/chat/completions", fake.url()))
        .bearer_auth(KEY)
        .header("x-trace", "abc")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "1214");
    let recorded = fake.recorded();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].path, "/api/paas/v4/chat/completions");
    assert_eq!(recorded[0].header("x-trace"), Some("abc"));
    assert_eq!(recorded[0].body, "not json");
    let listed: Vec<Value> = client()
        .get(format!("{}/__fake/requests", fake.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let off = FakeZai::start(FakeConfig::with_key(KEY)).await.unwrap();
    post(
        &off,
        "/api/anthropic/v1/messages",
        &anthropic_request(false),
    )
    .await;
    assert!(off.recorded().is_empty(), "recording is off by default");
}
