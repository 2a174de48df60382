//! What the model reads: the text of a request body, for the local input estimate.
//!
//! One walker serves both wire formats (a body is read for whichever fields it has):
//!
//! * `system`: a string, or an array of `{"type":"text","text":…}` blocks (Anthropic);
//! * `messages[].content`: a string, or an array of blocks/parts — `text`, `thinking`,
//!   `tool_use` (its `name` and `input` as compact JSON), `tool_result` (its `content`,
//!   string or text blocks);
//! * OpenAI assistant `tool_calls[].function.{name,arguments}`, the `name` of a message;
//! * tool definitions: Anthropic `tools[].{name,description,input_schema}` and OpenAI
//!   `tools[].function.{name,description,parameters}` (schemas as compact JSON), legacy
//!   `functions[]`;
//! * OpenAI-style `prompt` / `input` (string or array of strings) when there are no messages.
//!
//! Not counted: images, documents and other binary blocks, roles, and any chat-template
//! framing (see docs/TOKEN_COUNTING.md). Each text is counted on its own and the counts are
//! summed, so no per-message framing is added.

use serde_json::Value;

/// Calls `visit` with every text of `body` that the model reads. Returns `false` when the
/// body is not a JSON object (nothing visited).
pub fn visit_input_texts(body: &Value, visit: &mut dyn FnMut(&str)) -> bool {
    let Some(obj) = body.as_object() else {
        return false;
    };
    if let Some(system) = obj.get("system") {
        visit_content(system, visit);
    }
    let mut has_messages = false;
    if let Some(Value::Array(messages)) = obj.get("messages") {
        has_messages = true;
        for message in messages {
            visit_message(message, visit);
        }
    }
    for key in ["tools", "functions"] {
        if let Some(Value::Array(tools)) = obj.get(key) {
            for tool in tools {
                visit_tool_definition(tool, visit);
            }
        }
    }
    if !has_messages {
        for key in ["prompt", "input"] {
            match obj.get(key) {
                Some(Value::String(s)) => visit(s),
                Some(Value::Array(items)) => {
                    for item in items {
                        if let Value::String(s) = item {
                            visit(s);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    true
}

fn visit_message(message: &Value, visit: &mut dyn FnMut(&str)) {
    let Some(m) = message.as_object() else {
        return;
    };
    if let Some(content) = m.get("content") {
        visit_content(content, visit);
    }
    if let Some(Value::String(name)) = m.get("name") {
        visit(name);
    }
    if let Some(Value::Array(calls)) = m.get("tool_calls") {
        for call in calls {
            if let Some(function) = call.get("function") {
                visit_function_call(function, visit);
            }
        }
    }
    if let Some(function) = m.get("function_call") {
        visit_function_call(function, visit);
    }
}

fn visit_function_call(function: &Value, visit: &mut dyn FnMut(&str)) {
    if let Some(Value::String(name)) = function.get("name") {
        visit(name);
    }
    match function.get("arguments") {
        Some(Value::String(args)) => visit(args),
        Some(other @ Value::Object(_)) => visit_json(other, visit),
        _ => {}
    }
}

/// A `content`/`system` value: a string or an array of blocks.
fn visit_content(content: &Value, visit: &mut dyn FnMut(&str)) {
    match content {
        Value::String(s) => visit(s),
        Value::Array(blocks) => {
            for block in blocks {
                visit_block(block, visit);
            }
        }
        _ => {}
    }
}

fn visit_block(block: &Value, visit: &mut dyn FnMut(&str)) {
    let Some(b) = block.as_object() else {
        if let Value::String(s) = block {
            visit(s);
        }
        return;
    };
    match b.get("type").and_then(Value::as_str) {
        Some("text") | Some("input_text") | None => {
            if let Some(Value::String(text)) = b.get("text") {
                visit(text);
            }
        }
        Some("thinking") => {
            if let Some(Value::String(text)) = b.get("thinking") {
                visit(text);
            }
        }
        Some("tool_use") | Some("server_tool_use") => {
            if let Some(Value::String(name)) = b.get("name") {
                visit(name);
            }
            if let Some(input) = b.get("input") {
                visit_json(input, visit);
            }
        }
        Some("tool_result") => {
            if let Some(content) = b.get("content") {
                visit_content(content, visit);
            }
        }
        // Images, documents, redacted thinking, audio…: not counted.
        Some(_) => {}
    }
}

fn visit_tool_definition(tool: &Value, visit: &mut dyn FnMut(&str)) {
    // OpenAI wraps the definition in `function`; Anthropic puts it at the top level.
    let def = tool.get("function").unwrap_or(tool);
    if let Some(Value::String(name)) = def.get("name") {
        visit(name);
    }
    if let Some(Value::String(description)) = def.get("description") {
        visit(description);
    }
    for key in ["input_schema", "parameters"] {
        if let Some(schema) = def.get(key) {
            visit_json(schema, visit);
        }
    }
}

/// Structured values (tool inputs, schemas) are read by the model as JSON text.
fn visit_json(value: &Value, visit: &mut dyn FnMut(&str)) {
    match value {
        Value::Null => {}
        Value::String(s) => visit(s),
        other => visit(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn texts(body: Value) -> Vec<String> {
        let mut out = Vec::new();
        visit_input_texts(&body, &mut |s| out.push(s.to_owned()));
        out
    }

    #[test]
    fn anthropic_body_everything_the_model_reads() {
        let body = json!({
            "model": "glm-4.6",
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Calling."},
                    {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "Sunny"}]},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
                ]}
            ],
            "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}]
        });
        assert_eq!(
            texts(body),
            vec![
                "Be brief.",
                "Hi",
                "Calling.",
                "get_weather",
                r#"{"city":"Paris"}"#,
                "Sunny",
                "get_weather",
                "Weather",
                r#"{"type":"object"}"#
            ]
        );
    }

    #[test]
    fn openai_body_everything_the_model_reads() {
        let body = json!({
            "model": "glm-4.6",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": "x"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}]
        });
        assert_eq!(
            texts(body),
            vec![
                "Be brief.",
                "Hi",
                "f",
                "{\"a\":1}",
                "42",
                "f",
                "d",
                r#"{"type":"object"}"#
            ]
        );
    }

    #[test]
    fn prompt_only_without_messages_and_non_objects() {
        assert_eq!(texts(json!({"prompt": "abc"})), vec!["abc"]);
        assert_eq!(texts(json!({"input": ["a", "b"]})), vec!["a", "b"]);
        assert!(texts(json!({"messages": [], "input": "x"})).is_empty());
        let mut n = 0;
        assert!(!visit_input_texts(&json!([1, 2]), &mut |_| n += 1));
        assert_eq!(n, 0);
    }
}
