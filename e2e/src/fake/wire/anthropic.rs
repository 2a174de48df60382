//! Anthropic Messages as Z.AI's `/api/anthropic` serves it: a JSON message, or named-event
//! SSE (`message_start` with usage, `content_block_start`, `ping`, `content_block_delta`…,
//! `content_block_stop`, `message_delta` with cumulative `output_tokens`, `message_stop`).

use bytes::Bytes;
use serde_json::{Value, json};

use super::Answer;

/// The non-streaming body; `with_usage` false leaves `usage` out.
pub fn json_body(answer: &Answer, with_usage: bool) -> Value {
    let mut body = json!({
        "id": answer.id,
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": [{"type": "text", "text": answer.reply.text()}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
    });
    if with_usage {
        body["usage"] = json!({
            "input_tokens": answer.usage.input,
            "output_tokens": answer.usage.output,
            "cache_read_input_tokens": 0,
        });
    }
    body
}

/// `{"input_tokens": n}` for count_tokens.
pub fn count_tokens_body(input_tokens: u64) -> Value {
    json!({"input_tokens": input_tokens})
}

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// The SSE events, one `Bytes` per event; the last is `message_stop`.
pub fn sse_events(answer: &Answer, with_usage: bool) -> Vec<Bytes> {
    let mut events = Vec::with_capacity(answer.reply.text.len() + 8);
    let mut message = json!({
        "id": answer.id,
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": [],
        "stop_reason": null,
        "stop_sequence": null,
    });
    if with_usage {
        message["usage"] = json!({
            "input_tokens": answer.usage.input,
            "output_tokens": 1,
            "cache_read_input_tokens": 0,
        });
    }
    events.push(event(
        "message_start",
        &json!({"type": "message_start", "message": message}),
    ));
    events.push(event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    events.push(event("ping", &json!({"type": "ping"})));
    for chunk in super::openai::chunk_pieces(&answer.reply.text) {
        events.push(event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": chunk}}),
        ));
    }
    events.push(event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    let mut delta = json!({
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": null},
    });
    if with_usage {
        delta["usage"] = json!({
            "input_tokens": answer.usage.input,
            "output_tokens": answer.usage.output,
            "cache_read_input_tokens": 0,
        });
    }
    events.push(event("message_delta", &delta));
    events.push(event("message_stop", &json!({"type": "message_stop"})));
    events
}
