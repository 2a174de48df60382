//! Z.AI wire formats the fake speaks: routes, Anthropic and OpenAI bodies and streams,
//! error bodies, the quota document. Pure functions from data to bytes.

pub mod anthropic;
pub mod errors;
pub mod openai;
pub mod quota;

use serde_json::{Value, json};

use super::content::Reply;
use super::tokens::{self, Api};

/// Anthropic Messages path.
pub const ANTHROPIC_MESSAGES: &str = "/api/anthropic/v1/messages";
/// Anthropic count_tokens path.
pub const ANTHROPIC_COUNT_TOKENS: &str = "/api/anthropic/v1/messages/count_tokens";
/// OpenAI chat completions paths Z.AI serves (general, coding plan) and the bare OpenAI one.
pub const OPENAI_CHAT: &[&str] = &[
    "/api/paas/v4/chat/completions",
    "/api/coding/paas/v4/chat/completions",
    "/v1/chat/completions",
];
/// Quota monitor path.
pub const QUOTA: &str = "/api/monitor/usage/quota/limit";
/// Model list paths.
pub const MODELS: &[&str] = &["/v1/models", "/api/paas/v4/models"];

/// The surfaces of the fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /api/anthropic/v1/messages`.
    AnthropicMessages,
    /// `POST /api/anthropic/v1/messages/count_tokens`.
    AnthropicCountTokens,
    /// `POST` one of [`OPENAI_CHAT`].
    OpenAiChat,
    /// `GET /api/monitor/usage/quota/limit`.
    Quota,
    /// `GET` one of [`MODELS`].
    Models,
    /// Anything else (404).
    Other,
}

impl Route {
    /// The route of a method and path (query excluded).
    pub fn of(method: &str, path: &str) -> Route {
        match (method, path) {
            ("POST", ANTHROPIC_MESSAGES) => Route::AnthropicMessages,
            ("POST", ANTHROPIC_COUNT_TOKENS) => Route::AnthropicCountTokens,
            ("POST", p) if OPENAI_CHAT.contains(&p) => Route::OpenAiChat,
            ("GET", QUOTA) => Route::Quota,
            ("GET", p) if MODELS.contains(&p) => Route::Models,
            _ => Route::Other,
        }
    }

    /// Bounded label for stats.
    pub fn label(self) -> &'static str {
        match self {
            Route::AnthropicMessages => "anthropic_messages",
            Route::AnthropicCountTokens => "anthropic_count_tokens",
            Route::OpenAiChat => "openai_chat",
            Route::Quota => "quota",
            Route::Models => "models",
            Route::Other => "other",
        }
    }

    /// The request format of a model route.
    pub fn api(self) -> Option<Api> {
        match self {
            Route::AnthropicMessages | Route::AnthropicCountTokens => Some(Api::Anthropic),
            Route::OpenAiChat => Some(Api::OpenAi),
            _ => None,
        }
    }

    /// Whether this route's body must be a model request (JSON with `messages`).
    pub fn needs_messages(self) -> bool {
        self.api().is_some()
    }
}

/// Whether a model request body is usable: a JSON object with a `messages` array.
pub fn parse_request(body: &[u8]) -> Option<Value> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value.get("messages")?.as_array()?;
    Some(value)
}

/// Whether the request asks for a stream.
pub fn wants_stream(request: &Value) -> bool {
    request.get("stream").and_then(Value::as_bool) == Some(true)
}

/// The model name Z.AI reports: GLM names are kept, anything else (Claude names) becomes
/// `glm-4.6`, as Z.AI's Anthropic endpoint rewrites it.
pub fn reported_model(request: &Value) -> String {
    match request.get("model").and_then(Value::as_str) {
        Some(model) if model.starts_with("glm-") => model.to_string(),
        _ => "glm-4.6".to_string(),
    }
}

/// Token usage of one generated answer (what the fake bills).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Request tokens ([`tokens::input_tokens`]).
    pub input: u64,
    /// Reply tokens: visible text plus reasoning.
    pub output: u64,
    /// Reasoning tokens (part of `output`).
    pub reasoning: u64,
}

/// Everything needed to write one answer in either format.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Response id.
    pub id: String,
    /// Reported model.
    pub model: String,
    /// Unix seconds.
    pub created: i64,
    /// The generated reply.
    pub reply: Reply,
    /// Its usage.
    pub usage: Usage,
}

/// Builds the answer to a parsed model request.
pub fn answer(
    api: Api,
    seed: u64,
    body: &[u8],
    request: &Value,
    id: String,
    created: i64,
) -> Answer {
    let reply = super::content::generate(seed, body, api == Api::OpenAi);
    let reasoning = tokens::count(&reply.reasoning());
    let usage = Usage {
        input: tokens::input_tokens(api, request),
        output: tokens::count(&reply.text()) + reasoning,
        reasoning,
    };
    Answer {
        id,
        model: reported_model(request),
        created,
        reply,
        usage,
    }
}

/// The model list (`GET /v1/models`).
pub fn models_body(created: i64) -> Value {
    let data: Vec<Value> = [
        "glm-4.6",
        "glm-4.5",
        "glm-4.5-air",
        "glm-4.5-flash",
        "glm-4-32b-0414-128k",
    ]
    .iter()
    .map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "z-ai"}))
    .collect();
    json!({"object": "list", "data": data})
}
