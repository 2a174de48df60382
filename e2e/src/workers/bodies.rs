//! Realistic request bodies, shaped like Claude Code's traffic: a long system prompt,
//! several turns, tool calls with their results, some Chinese text.

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

const SYSTEM_PROMPT: &str = "You are an interactive CLI tool that helps users with software engineering tasks. \
Use the instructions below and the tools available to you to assist the user. \
IMPORTANT: Refuse to write code or explain code that may be used maliciously. \
When you edit files, keep the existing style, run the tests and report what changed. \
Keep your responses short, since they will be displayed on a command line interface. \
Answer in the language the user writes in.";

const TASKS: &[&str] = &[
    "The proxy returns 502 when the upstream resets the connection. Find out why and fix it.",
    "Add a metric for the time to first byte of streamed responses.",
    "Refactor the retry loop so that quota errors are never retried.",
    "请帮我检查一下为什么令牌计数和上游的账单不一致。",
    "Write a test for the canary promotion checklist that fails when the error rate doubles.",
    "把限流器的状态文件改成原子写入，然后补充测试。",
    "Explain why the stream is cut after exactly five minutes.",
];

const FILES: &[(&str, &str)] = &[
    (
        "src/forward/mod.rs",
        "pub async fn forward(state: &AppState, request: Request) -> Response {\n    let body = read_body(request).await?;\n    let upstream = send(state, &body).await?;\n    relay(upstream).await\n}\n",
    ),
    (
        "src/ratelimit/controller.rs",
        "impl Controller {\n    pub fn on_429(&mut self, now: Instant) {\n        self.ceiling = self.rate * (1.0 - self.alpha);\n        self.rate = self.ceiling * 0.5;\n    }\n}\n",
    ),
    (
        "README.md",
        "# zai-proxy\n\nA reverse proxy in front of Z.AI's GLM API. 代理负责计数令牌并自适应限流。\n",
    ),
];

const FOLLOW_UPS: &[&str] = &[
    "Good. Now run the tests again and tell me what failed.",
    "继续，把剩下的部分也改完。",
    "Can you make the change smaller? Only touch the retry module.",
    "Looks right. Also update the documentation.",
];

/// An Anthropic Messages request body.
pub fn anthropic(rng: &mut StdRng, stream: bool) -> Value {
    let task = TASKS[rng.random_range(0..TASKS.len())];
    let (file, contents) = FILES[rng.random_range(0..FILES.len())];
    let tool_id = format!("toolu_{:016x}", rng.random::<u64>());
    let mut messages = vec![
        json!({"role": "user", "content": [{"type": "text", "text": task}]}),
        json!({"role": "assistant", "content": [
            {"type": "text", "text": format!("Let me read {file} first.")},
            {"type": "tool_use", "id": tool_id, "name": "Read", "input": {"file_path": file}}
        ]}),
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tool_id, "content": contents}
        ]}),
    ];
    for _ in 0..rng.random_range(0..=2) {
        messages.push(json!({"role": "assistant", "content": [
            {"type": "text", "text": "I changed the function and the tests pass locally."}
        ]}));
        messages.push(
            json!({"role": "user", "content": FOLLOW_UPS[rng.random_range(0..FOLLOW_UPS.len())]}),
        );
    }
    json!({
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 32000,
        "stream": stream,
        "system": [{"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}],
        "messages": messages,
        "tools": [{
            "name": "Read",
            "description": "Reads a file from the local filesystem.",
            "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}
        }],
        "metadata": {"user_id": format!("user_{:016x}_session", rng.random::<u64>())},
    })
}

/// An OpenAI chat completions request body.
pub fn openai(rng: &mut StdRng, stream: bool) -> Value {
    let task = TASKS[rng.random_range(0..TASKS.len())];
    let (file, contents) = FILES[rng.random_range(0..FILES.len())];
    let call_id = format!("call_{:016x}", rng.random::<u64>());
    let mut messages = vec![
        json!({"role": "system", "content": SYSTEM_PROMPT}),
        json!({"role": "user", "content": task}),
        json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": call_id, "type": "function",
            "function": {"name": "read_file", "arguments": json!({"path": file}).to_string()}
        }]}),
        json!({"role": "tool", "tool_call_id": call_id, "content": contents}),
    ];
    for _ in 0..rng.random_range(0..=2) {
        messages.push(json!({"role": "assistant", "content": "Done. The tests pass."}));
        messages.push(
            json!({"role": "user", "content": FOLLOW_UPS[rng.random_range(0..FOLLOW_UPS.len())]}),
        );
    }
    let mut body = json!({
        "model": "glm-4.6",
        "stream": stream,
        "temperature": 0.6,
        "messages": messages,
        "tools": [{"type": "function", "function": {
            "name": "read_file",
            "description": "Read a file",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
        }}],
    });
    if stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn bodies_have_messages_and_stream_flag() {
        let mut rng = StdRng::seed_from_u64(1);
        let body = anthropic(&mut rng, true);
        assert_eq!(body["stream"], true);
        assert!(body["messages"].as_array().unwrap().len() >= 3);
        let body = openai(&mut rng, false);
        assert_eq!(body["stream"], false);
        assert_eq!(body["messages"][0]["role"], "system");
    }
}
