//! Token counting for the usage the fake reports: tiktoken `cl100k_base`, `encode_ordinary`
//! (no special tokens), the proxy's default tokenizer.
//!
//! Input tokens of a request are the sum of the counts of each text piece in it (see
//! [`input_tokens`]); output tokens are the count of the generated text. No chat-template
//! overhead is added, so "the bill" is reproducible from the request and the response alone.

use serde_json::Value;

/// Number of cl100k_base tokens in `text` (`encode_ordinary`).
pub fn count(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    tiktoken_rs::cl100k_base_singleton()
        .encode_ordinary(text)
        .len() as u64
}

/// Which request format a body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Anthropic Messages (`system`, `messages[].content` string or blocks).
    Anthropic,
    /// OpenAI chat completions (`messages[].content` string or parts).
    OpenAi,
}

/// Input tokens the fake bills for a request body: the sum of the counts of every text
/// piece: Anthropic `system` (string or text blocks), every message's string content,
/// `text` blocks and `tool_result` contents (string or text blocks); OpenAI every message's
/// string content and `text` parts. Images, tool definitions and roles count 0.
pub fn input_tokens(api: Api, body: &Value) -> u64 {
    let mut total = 0;
    if api == Api::Anthropic {
        total += content_tokens(body.get("system"));
    }
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        for message in messages {
            total += content_tokens(message.get("content"));
        }
    }
    total
}

/// Tokens of a `content` value: a string, or an array of blocks.
fn content_tokens(content: Option<&Value>) -> u64 {
    match content {
        Some(Value::String(text)) => count(text),
        Some(Value::Array(blocks)) => blocks.iter().map(block_tokens).sum(),
        _ => 0,
    }
}

fn block_tokens(block: &Value) -> u64 {
    match block.get("type").and_then(Value::as_str) {
        Some("text") => block.get("text").and_then(Value::as_str).map_or(0, count),
        Some("tool_result") => content_tokens(block.get("content")),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_known_strings() {
        assert_eq!(count(""), 0);
        assert_eq!(count("hello world"), 2);
    }

    #[test]
    fn anthropic_input_counts_system_text_and_tool_results() {
        let body = json!({
            "system": [{"type": "text", "text": "hello world"}],
            "messages": [
                {"role": "user", "content": "hello world"},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t", "content": "hello world"},
                    {"type": "image", "source": {}}
                ]}
            ]
        });
        assert_eq!(input_tokens(Api::Anthropic, &body), 6);
        assert_eq!(input_tokens(Api::OpenAi, &body), 4);
    }
}
