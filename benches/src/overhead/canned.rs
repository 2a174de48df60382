//! Canned Anthropic and OpenAI request bodies, responses and SSE streams (small, realistic,
//! carrying `usage` where the real APIs put it).

use bytes::Bytes;

/// The two wire formats the bench drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /v1/messages`.
    Anthropic,
    /// `POST /v1/chat/completions`.
    OpenAi,
}

impl Api {
    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            Self::Anthropic => "/v1/messages",
            Self::OpenAi => "/v1/chat/completions",
        }
    }

    /// The format of an upstream path, if it is one the mock serves.
    pub fn from_path(path: &str) -> Option<Self> {
        if path.ends_with("/v1/messages") {
            Some(Self::Anthropic)
        } else if path.ends_with("/chat/completions") {
            Some(Self::OpenAi)
        } else {
            None
        }
    }
}

const PROMPT: &str = "You are a careful assistant. Summarise in two sentences why a reverse \
proxy in front of a language-model API should relay streamed responses chunk by chunk instead \
of buffering them, and what it should count while doing so.";

/// A chat request body (~400 bytes), streaming or not.
pub fn request_body(api: Api, stream: bool) -> Bytes {
    request_body_sized(api, stream, 0)
}

/// A chat request body of at least `min_bytes` (when above ~400): earlier conversation turns
/// of English prose and Rust code fill it, as in a coding assistant's requests.
pub fn request_body_sized(api: Api, stream: bool, min_bytes: usize) -> Bytes {
    const FILLER: &str = "Here is the module again. fn relay(chunk: &Bytes) -> Result<(), Error> { \
        for tap in &mut self.taps { tap.on_chunk(chunk); } Ok(()) } The relay must not buffer: \
        each chunk goes to the client as soon as it arrives, and the taps only look at it. ";
    let mut history = Vec::new();
    let mut size = 0;
    while size + 400 < min_bytes {
        let text = FILLER.repeat(16);
        size += text.len() + 40;
        history.push(serde_json::json!({"role": "user", "content": text}));
        history.push(serde_json::json!({"role": "assistant", "content": "Understood."}));
    }
    let question = serde_json::json!({"role": "user", "content": PROMPT});
    let anthropic_messages: Vec<serde_json::Value> =
        history.iter().cloned().chain([question.clone()]).collect();
    let openai_messages: Vec<serde_json::Value> =
        [serde_json::json!({"role": "system", "content": "Be brief."})]
            .into_iter()
            .chain(history.iter().cloned())
            .chain([question])
            .collect();
    let body = match api {
        Api::Anthropic => serde_json::json!({
            "model": "glm-4.6",
            "max_tokens": 256,
            "stream": stream,
            "messages": anthropic_messages,
        }),
        Api::OpenAi => serde_json::json!({
            "model": "glm-4.6",
            "max_tokens": 256,
            "stream": stream,
            "messages": openai_messages,
        }),
    };
    Bytes::from(body.to_string())
}

/// Whether a request body asks for a stream (`"stream": true`, with or without a space).
pub fn wants_stream(body: &[u8]) -> bool {
    contains(body, b"\"stream\":true") || contains(body, b"\"stream\": true")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A complete (non-streaming) response body.
pub fn response_body(api: Api) -> Bytes {
    let body = match api {
        Api::Anthropic => serde_json::json!({
            "id": "msg_bench",
            "type": "message",
            "role": "assistant",
            "model": "glm-4.6",
            "content": [{"type": "text", "text": "A proxy that buffers adds the whole generation time before the first token. It should count tokens from the usage the upstream reports."}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 61, "output_tokens": 29}
        }),
        Api::OpenAi => serde_json::json!({
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1_764_000_000,
            "model": "glm-4.6",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "A proxy that buffers adds the whole generation time before the first token. It should count tokens from the usage the upstream reports."},
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 66, "completion_tokens": 29, "total_tokens": 95}
        }),
    };
    Bytes::from(body.to_string())
}

/// The SSE events of a stream with `deltas` text deltas, one event per chunk (the mock paces
/// them). Anthropic: message_start, content_block_start, deltas, content_block_stop,
/// message_delta (usage), message_stop. OpenAI/Z.AI: deltas, the last one with
/// `finish_reason` and `usage`, then `[DONE]`.
pub fn stream_events(api: Api, deltas: usize) -> Vec<Bytes> {
    let mut events = Vec::with_capacity(deltas + 6);
    match api {
        Api::Anthropic => {
            let start = serde_json::json!({"type":"message_start","message":{"id":"msg_bench","type":"message","role":"assistant","model":"glm-4.6","content":[],"stop_reason":null,"usage":{"input_tokens":61,"output_tokens":0}}});
            events.push(sse(Some("message_start"), &start.to_string()));
            events.push(sse(
                Some("content_block_start"),
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ));
            for i in 0..deltas {
                let delta = serde_json::json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":format!("word{i} ")}});
                events.push(sse(Some("content_block_delta"), &delta.to_string()));
            }
            events.push(sse(
                Some("content_block_stop"),
                r#"{"type":"content_block_stop","index":0}"#,
            ));
            let end = serde_json::json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":deltas}});
            events.push(sse(Some("message_delta"), &end.to_string()));
            events.push(sse(Some("message_stop"), r#"{"type":"message_stop"}"#));
        }
        Api::OpenAi => {
            for i in 0..deltas {
                let last = i + 1 == deltas;
                let chunk = serde_json::json!({
                    "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_764_000_000, "model": "glm-4.6",
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": format!("word{i} ")}, "finish_reason": if last { serde_json::json!("stop") } else { serde_json::Value::Null }}],
                });
                let mut chunk = chunk;
                if last {
                    chunk["usage"] = serde_json::json!({"prompt_tokens": 66, "completion_tokens": deltas, "total_tokens": 66 + deltas});
                }
                events.push(sse(None, &chunk.to_string()));
            }
            events.push(sse(None, "[DONE]"));
        }
    }
    events
}

fn sse(event: Option<&str>, data: &str) -> Bytes {
    let mut s = String::with_capacity(data.len() + 32);
    if let Some(event) = event {
        s.push_str("event: ");
        s.push_str(event);
        s.push('\n');
    }
    s.push_str("data: ");
    s.push_str(data);
    s.push_str("\n\n");
    Bytes::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_flag_is_detected_in_both_spellings() {
        assert!(wants_stream(&request_body(Api::Anthropic, true)));
        assert!(!wants_stream(&request_body(Api::OpenAi, false)));
        assert!(wants_stream(br#"{"stream": true}"#));
    }

    #[test]
    fn sized_bodies_reach_the_requested_size() {
        let small = request_body(Api::Anthropic, false);
        assert!(small.len() < 1000);
        let big = request_body_sized(Api::OpenAi, true, 40_000);
        assert!(big.len() >= 40_000, "{}", big.len());
        assert!(wants_stream(&big));
        let v: serde_json::Value = serde_json::from_slice(&big).expect("json");
        assert!(v["messages"].as_array().is_some_and(|m| m.len() > 3));
    }

    #[test]
    fn streams_end_with_usage_and_terminator() {
        let a = stream_events(Api::Anthropic, 3);
        assert_eq!(a.len(), 8);
        assert!(a[6].starts_with(b"event: message_delta"));
        let o = stream_events(Api::OpenAi, 3);
        assert_eq!(o.len(), 4);
        assert!(
            std::str::from_utf8(&o[2])
                .expect("utf8")
                .contains("\"usage\"")
        );
        assert_eq!(&o[3][..], b"data: [DONE]\n\n");
    }

    #[test]
    fn paths_map_to_formats() {
        assert_eq!(Api::from_path("/v1/messages"), Some(Api::Anthropic));
        assert_eq!(Api::from_path("/v1/chat/completions"), Some(Api::OpenAi));
        assert_eq!(Api::from_path("/v1/models"), None);
    }
}
