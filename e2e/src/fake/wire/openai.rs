//! OpenAI chat completions as Z.AI serves them: a JSON completion, or `data:` SSE with Z.AI's
//! quirks — no `object` field on chunks, `role` on every delta, `reasoning_content` deltas
//! before the content, usage on the last content chunk (the one with `finish_reason`), then
//! `data: [DONE]`.

use bytes::Bytes;
use serde_json::{Value, json};

use super::Answer;

/// The `[DONE]` terminator.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// Groups pieces into stream chunks of up to three pieces (boundaries stay on pieces).
pub fn chunk_pieces(pieces: &[String]) -> Vec<String> {
    pieces.chunks(3).map(|group| group.concat()).collect()
}

fn usage(answer: &Answer) -> Value {
    json!({
        "prompt_tokens": answer.usage.input,
        "completion_tokens": answer.usage.output,
        "total_tokens": answer.usage.input + answer.usage.output,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": answer.usage.reasoning},
    })
}

/// The non-streaming body; `with_usage` false leaves `usage` out.
pub fn json_body(answer: &Answer, with_usage: bool) -> Value {
    let mut body = json!({
        "id": answer.id,
        "request_id": answer.id,
        "object": "chat.completion",
        "created": answer.created,
        "model": answer.model,
        "choices": [{
            "index": 0,
            "finish_reason": "stop",
            "message": {
                "role": "assistant",
                "content": answer.reply.text(),
                "reasoning_content": answer.reply.reasoning(),
            },
        }],
    });
    if with_usage {
        body["usage"] = usage(answer);
    }
    body
}

fn data(chunk: &Value) -> Bytes {
    Bytes::from(format!("data: {chunk}\n\n"))
}

/// The SSE events, one `Bytes` per event; the last is `data: [DONE]`.
pub fn sse_events(answer: &Answer, with_usage: bool) -> Vec<Bytes> {
    let mut events = Vec::new();
    let chunk = |delta: Value| {
        json!({
            "id": answer.id,
            "created": answer.created,
            "model": answer.model,
            "choices": [{"index": 0, "delta": delta}],
        })
    };
    for text in chunk_pieces(&answer.reply.reasoning) {
        events.push(data(&chunk(
            json!({"role": "assistant", "reasoning_content": text}),
        )));
    }
    for text in chunk_pieces(&answer.reply.text) {
        events.push(data(&chunk(
            json!({"role": "assistant", "content": text, "reasoning_content": ""}),
        )));
    }
    let mut last = json!({
        "id": answer.id,
        "created": answer.created,
        "model": answer.model,
        "choices": [{"index": 0, "finish_reason": "stop", "delta": {"role": "assistant", "content": ""}}],
    });
    if with_usage {
        last["usage"] = usage(answer);
    }
    events.push(data(&last));
    events.push(Bytes::from_static(DONE));
    events
}
