//! Usage extraction from upstream responses (both wire formats), streaming and not, plus the
//! local output estimate for when upstream is silent.
//!
//! Upstream `usage` is the truth; it is copied, never recomputed:
//!
//! * Anthropic, non-streaming: `usage.{input_tokens, output_tokens, cache_read_input_tokens,
//!   cache_creation_input_tokens}`.
//! * Anthropic, streaming: `message_start.message.usage` gives input and the two cache
//!   fields; the LAST `message_delta.usage.output_tokens` gives output (it is cumulative, so
//!   it replaces, never adds). A non-zero `input_tokens`/cache field on `message_delta`
//!   (gateways that report input late) replaces the `message_start` value.
//! * OpenAI / Z.AI: `usage.{prompt_tokens, completion_tokens,
//!   prompt_tokens_details.cached_tokens}`; streaming: the last non-null `usage` on any chunk
//!   (Z.AI puts it on the last content chunk, OpenAI on a `choices: []` chunk).
//!
//! The local output estimate counts the text the model generated: text and thinking /
//! `reasoning_content` deltas, plus tool-call arguments (`input_json_delta`,
//! `tool_calls[].function.arguments`). Each delta is counted as it passes, so the estimate
//! needs no buffer.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Number, Value};

use super::engine::Engine;
use super::sse::SseParser;

/// Token counts of one response, by `zai_proxy_tokens_total` direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// `input` (Anthropic `input_tokens`; OpenAI `prompt_tokens`, which includes cached).
    pub input: u64,
    /// `output` (`output_tokens` / `completion_tokens`).
    pub output: u64,
    /// `cache_read` (`cache_read_input_tokens` / `prompt_tokens_details.cached_tokens`).
    pub cache_read: u64,
    /// `cache_write` (`cache_creation_input_tokens`; OpenAI has none).
    pub cache_write: u64,
}

/// Usage as upstream reported it; fields upstream did not send are `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiUsage {
    /// Input tokens.
    pub input: Option<u64>,
    /// Output tokens.
    pub output: Option<u64>,
    /// Cache reads.
    pub cache_read: Option<u64>,
    /// Cache writes.
    pub cache_write: Option<u64>,
    /// OpenAI style: `prompt_tokens` already includes the cached tokens.
    pub prompt_includes_cache: bool,
}

impl ApiUsage {
    /// True when upstream sent at least one usage number.
    pub fn is_present(&self) -> bool {
        self.input.is_some()
            || self.output.is_some()
            || self.cache_read.is_some()
            || self.cache_write.is_some()
    }

    /// Everything the model read according to upstream (input plus cache reads and writes
    /// for Anthropic; `prompt_tokens` for OpenAI) — what the local input estimate is
    /// compared with.
    pub fn prompt_total(&self) -> Option<u64> {
        let input = self.input?;
        if self.prompt_includes_cache {
            Some(input)
        } else {
            // Saturating: the numbers are upstream's, and any u64 parses.
            Some(
                input
                    .saturating_add(self.cache_read.unwrap_or(0))
                    .saturating_add(self.cache_write.unwrap_or(0)),
            )
        }
    }

    fn from_raw(raw: &RawUsage) -> Self {
        if raw.prompt_tokens.is_some() || raw.completion_tokens.is_some() {
            Self {
                input: num(&raw.prompt_tokens),
                output: num(&raw.completion_tokens),
                cache_read: raw
                    .prompt_tokens_details
                    .as_ref()
                    .and_then(|d| num(&d.cached_tokens)),
                cache_write: None,
                prompt_includes_cache: true,
            }
        } else {
            Self {
                input: num(&raw.input_tokens),
                output: num(&raw.output_tokens),
                cache_read: num(&raw.cache_read_input_tokens),
                cache_write: num(&raw.cache_creation_input_tokens),
                prompt_includes_cache: false,
            }
        }
    }
}

/// Where the final numbers came from (the "Token usage" log line's tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageSource {
    /// Non-streaming body with an upstream `usage` block.
    Api,
    /// Non-streaming body without usage: local estimates.
    Estimated,
    /// A stream; `from_api` says whether any upstream usage was seen.
    Stream {
        /// Upstream usage was seen on the stream.
        from_api: bool,
    },
}

/// The outcome for one response: the numbers to record and what they are based on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsageReport {
    /// What gets recorded (upstream values, local estimates where upstream said nothing).
    pub usage: Usage,
    /// Tag of the log line.
    pub source: UsageSource,
    /// What upstream reported.
    pub api: ApiUsage,
    /// The local input estimate (request body), if one was made.
    pub input_estimate: Option<u64>,
    /// The local output estimate (response text).
    pub output_estimate: u64,
}

impl UsageReport {
    fn resolve(
        api: ApiUsage,
        source: UsageSource,
        input_estimate: Option<u64>,
        output_estimate: u64,
    ) -> Self {
        let usage = Usage {
            input: api.input.or(input_estimate).unwrap_or(0),
            output: api.output.unwrap_or(output_estimate),
            cache_read: api.cache_read.unwrap_or(0),
            cache_write: api.cache_write.unwrap_or(0),
        };
        Self {
            usage,
            source,
            api,
            input_estimate,
            output_estimate,
        }
    }

    /// `local input estimate ÷ upstream prompt total`, when both exist and are non-zero.
    pub fn input_ratio(&self) -> Option<f64> {
        ratio(self.input_estimate?, self.api.prompt_total()?)
    }

    /// `local output estimate ÷ upstream output`, when both exist and are non-zero.
    pub fn output_ratio(&self) -> Option<f64> {
        ratio(self.output_estimate, self.api.output?)
    }

    /// The "Token usage" log line (reference §2.5, cache fields on every form).
    pub fn log_line(&self) -> String {
        let tag = match self.source {
            UsageSource::Api => "API".to_owned(),
            UsageSource::Estimated => "estimated".to_owned(),
            UsageSource::Stream { from_api } => format!("stream, fromAPI={from_api}"),
        };
        let u = &self.usage;
        format!(
            "Token usage ({tag}): input={} output={} cache_read={} cache_write={}",
            u.input, u.output, u.cache_read, u.cache_write
        )
    }
}

fn ratio(estimate: u64, upstream: u64) -> Option<f64> {
    (estimate > 0 && upstream > 0).then(|| estimate as f64 / upstream as f64)
}

fn num(n: &Option<Number>) -> Option<u64> {
    let n = n.as_ref()?;
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f as u64)
    })
}

// === wire shapes (only the fields read; everything else is skipped) ===

#[derive(Deserialize, Default)]
struct RawUsage {
    input_tokens: Option<Number>,
    output_tokens: Option<Number>,
    cache_read_input_tokens: Option<Number>,
    cache_creation_input_tokens: Option<Number>,
    prompt_tokens: Option<Number>,
    completion_tokens: Option<Number>,
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize, Default)]
struct PromptDetails {
    cached_tokens: Option<Number>,
}

#[derive(Deserialize)]
struct StreamEvent<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    message: Option<MessageStart>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(borrow, default)]
    choices: Option<Vec<Choice<'a>>>,
}

#[derive(Deserialize)]
struct MessageStart {
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Deserialize, Default)]
struct Delta<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCallDelta<'a>>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
}

#[derive(Deserialize)]
struct ToolCallDelta<'a> {
    #[serde(borrow, default)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

impl Delta<'_> {
    fn count(&self, engine: &Engine) -> u64 {
        let mut n = 0;
        for text in [
            &self.text,
            &self.thinking,
            &self.partial_json,
            &self.content,
            &self.reasoning_content,
        ]
        .into_iter()
        .flatten()
        {
            n += engine.count(text) as u64;
        }
        for call in self.tool_calls.iter().flatten() {
            if let Some(args) = call.function.as_ref().and_then(|f| f.arguments.as_ref()) {
                n += engine.count(args) as u64;
            }
        }
        n
    }
}

// === streaming ===

/// Follows one SSE response: upstream usage as it appears, and the local output estimate.
#[derive(Debug, Default)]
pub struct StreamUsage {
    parser: SseParser,
    api: ApiUsage,
    output_estimate: u64,
    events: u64,
}

impl StreamUsage {
    /// A fresh tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk of the stream (any split).
    pub fn feed(&mut self, chunk: &[u8], engine: &Engine) {
        let Self {
            parser,
            api,
            output_estimate,
            events,
        } = self;
        parser.feed(chunk, &mut |data| {
            *events += 1;
            apply_event(data, api, output_estimate, engine);
        });
    }

    /// The stream ended; returns the report (`input_estimate` from the request).
    pub fn finish(mut self, engine: &Engine, input_estimate: Option<u64>) -> UsageReport {
        let Self {
            parser,
            api,
            output_estimate,
            events,
        } = &mut self;
        parser.finish(&mut |data| {
            *events += 1;
            apply_event(data, api, output_estimate, engine);
        });
        let from_api = self.api.is_present();
        UsageReport::resolve(
            self.api,
            UsageSource::Stream { from_api },
            input_estimate,
            self.output_estimate,
        )
    }

    /// Upstream usage seen so far.
    pub fn api(&self) -> ApiUsage {
        self.api
    }

    /// Local output estimate so far.
    pub fn output_estimate(&self) -> u64 {
        self.output_estimate
    }

    /// Bytes held by the reader (bounded).
    pub fn buffered_bytes(&self) -> usize {
        self.parser.buffered_bytes()
    }
}

/// Applies one SSE `data` payload to the running usage.
fn apply_event(data: &[u8], api: &mut ApiUsage, output_estimate: &mut u64, engine: &Engine) {
    if data.first() != Some(&b'{') {
        return; // `[DONE]`, keep-alives, non-JSON.
    }
    let Ok(event) = serde_json::from_slice::<StreamEvent<'_>>(data) else {
        return;
    };
    match event.kind.as_deref() {
        Some("message_start") => {
            if let Some(raw) = event.message.as_ref().and_then(|m| m.usage.as_ref()) {
                let start = ApiUsage::from_raw(raw);
                api.input = start.input.or(api.input);
                api.cache_read = start.cache_read.or(api.cache_read);
                api.cache_write = start.cache_write.or(api.cache_write);
                // `output_tokens` here is a placeholder (usually 1); message_delta has it.
            }
        }
        Some("message_delta") => {
            if let Some(raw) = event.usage.as_ref() {
                let delta = ApiUsage::from_raw(raw);
                if delta.output.is_some() {
                    api.output = delta.output; // cumulative: the last one wins
                }
                let nonzero = |v: Option<u64>| v.filter(|n| *n > 0);
                api.input = nonzero(delta.input).or(api.input);
                api.cache_read = nonzero(delta.cache_read).or(api.cache_read);
                api.cache_write = nonzero(delta.cache_write).or(api.cache_write);
            }
        }
        Some("content_block_delta") => {
            if let Some(delta) = &event.delta {
                *output_estimate += delta.count(engine);
            }
        }
        _ => {
            // OpenAI / Z.AI chunks (no `type`), or anything else carrying usage.
            if let Some(raw) = event.usage.as_ref() {
                let seen = ApiUsage::from_raw(raw);
                if seen.is_present() {
                    *api = seen; // the last usage seen wins
                }
            }
            for choice in event.choices.iter().flatten() {
                if let Some(delta) = &choice.delta {
                    *output_estimate += delta.count(engine);
                }
            }
        }
    }
}

// === non-streaming ===

/// Usage of a complete (non-streaming) response body. A body that turns out to be an SSE
/// stream is read as one. Non-JSON bodies give no API usage and a zero output estimate.
pub fn body_usage(body: &[u8], engine: &Engine, input_estimate: Option<u64>) -> UsageReport {
    let trimmed = body.trim_ascii_start();
    if trimmed.starts_with(b"data:") || trimmed.starts_with(b"event:") {
        let mut stream = StreamUsage::new();
        stream.feed(body, engine);
        let report = stream.finish(engine, input_estimate);
        let source = if report.api.is_present() {
            UsageSource::Api
        } else {
            UsageSource::Estimated
        };
        return UsageReport { source, ..report };
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return UsageReport::resolve(
            ApiUsage::default(),
            UsageSource::Estimated,
            input_estimate,
            0,
        );
    };
    let api = value
        .get("usage")
        .and_then(|u| RawUsage::deserialize(u).ok())
        .map(|raw| ApiUsage::from_raw(&raw))
        .unwrap_or_default();
    let output_estimate = body_output_estimate(&value, engine);
    let source = if api.is_present() {
        UsageSource::Api
    } else {
        UsageSource::Estimated
    };
    UsageReport::resolve(api, source, input_estimate, output_estimate)
}

/// Local count of the generated text of a non-streaming body (Anthropic `content[]`,
/// OpenAI `choices[].message`).
pub fn body_output_estimate(body: &Value, engine: &Engine) -> u64 {
    let mut n = 0u64;
    let mut add = |s: &str| n += engine.count(s) as u64;
    if let Some(Value::Array(blocks)) = body.get("content") {
        for block in blocks {
            for key in ["text", "thinking"] {
                if let Some(Value::String(s)) = block.get(key) {
                    add(s);
                }
            }
            if let Some(input) = block.get("input").filter(|v| !v.is_null()) {
                add(&input.to_string());
            }
        }
    }
    if let Some(Value::Array(choices)) = body.get("choices") {
        for choice in choices {
            let Some(message) = choice.get("message") else {
                continue;
            };
            for key in ["content", "reasoning_content"] {
                match message.get(key) {
                    Some(Value::String(s)) => add(s),
                    Some(Value::Array(parts)) => {
                        for part in parts {
                            if let Some(Value::String(s)) = part.get("text") {
                                add(s);
                            }
                        }
                    }
                    _ => {}
                }
            }
            if let Some(Value::Array(calls)) = message.get("tool_calls") {
                for call in calls {
                    if let Some(Value::String(args)) =
                        call.get("function").and_then(|f| f.get("arguments"))
                    {
                        add(args);
                    }
                }
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::engine::Encoding;

    fn engine() -> Engine {
        Engine::load(Encoding::Cl100kBase).expect("cl100k_base is compiled in")
    }

    #[test]
    fn anthropic_body_usage_is_copied() {
        let body = br#"{"type":"message","content":[{"type":"text","text":"Hello there"}],
            "usage":{"input_tokens":9,"output_tokens":14,"cache_read_input_tokens":3,"cache_creation_input_tokens":2}}"#;
        let r = body_usage(body, &engine(), Some(7));
        assert_eq!(r.source, UsageSource::Api);
        assert_eq!(
            r.usage,
            Usage {
                input: 9,
                output: 14,
                cache_read: 3,
                cache_write: 2
            }
        );
        assert_eq!(r.output_estimate, 2);
        assert_eq!(r.api.prompt_total(), Some(14));
        assert_eq!(
            r.log_line(),
            "Token usage (API): input=9 output=14 cache_read=3 cache_write=2"
        );
    }

    #[test]
    fn openai_body_usage_is_copied() {
        let body = br#"{"choices":[{"message":{"role":"assistant","content":"Hi","reasoning_content":"think"}}],
            "usage":{"prompt_tokens":18,"completion_tokens":202,"total_tokens":220,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        let r = body_usage(body, &engine(), Some(20));
        assert_eq!(
            r.usage,
            Usage {
                input: 18,
                output: 202,
                cache_read: 4,
                cache_write: 0
            }
        );
        assert_eq!(r.api.prompt_total(), Some(18));
        assert_eq!(r.input_ratio(), Some(20.0 / 18.0));
        assert_eq!(r.output_estimate, 2);
    }

    /// Fuzz finding (sse_usage): usage numbers near `u64::MAX` overflowed the prompt total
    /// ("attempt to add with overflow" with overflow checks, a wrapped total without).
    #[test]
    fn huge_usage_numbers_saturate_the_prompt_total() {
        let body = br#"{"usage":{"input_tokens":18446744073709551615,"cache_read_input_tokens":2,"cache_creation_input_tokens":1}}"#;
        let r = body_usage(body, &engine(), Some(5));
        assert_eq!(r.api.prompt_total(), Some(u64::MAX));
        assert!(r.input_ratio().is_some_and(|x| x.is_finite()));
        let stream = b"data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":18446744073709551615,\"cache_read_input_tokens\":9}}}\n\n";
        let r = body_usage(stream, &engine(), Some(5));
        assert_eq!(r.api.prompt_total(), Some(u64::MAX));
    }

    #[test]
    fn body_without_usage_is_estimated() {
        let r = body_usage(
            br#"{"content":[{"type":"text","text":"Hello there"}]}"#,
            &engine(),
            Some(5),
        );
        assert_eq!(r.source, UsageSource::Estimated);
        assert_eq!(
            r.usage,
            Usage {
                input: 5,
                output: 2,
                cache_read: 0,
                cache_write: 0
            }
        );
        let r = body_usage(b"not json", &engine(), Some(5));
        assert_eq!(r.usage.output, 0);
    }
}
