//! Deterministic inputs for the token-counting bench: a mixed English / code / Chinese
//! corpus generated from a fixed seed (no shipped data, so no licence question), the
//! pathological inputs, request bodies of about 10 K tokens in both wire formats, and SSE
//! streams.

/// A tiny deterministic PRNG (xorshift64*), so every run benches the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let i = usize::try_from(self.next() % items.len() as u64).unwrap_or(0);
        items[i]
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "the",
    "proxy",
    "forwards",
    "every",
    "request",
    "to",
    "upstream",
    "and",
    "counts",
    "tokens",
    "while",
    "streaming",
    "responses",
    "back",
    "model",
    "latency",
    "budget",
    "is",
    "small",
    "because",
    "operators",
    "care",
    "about",
    "throughput",
    "rate",
    "limits",
    "quota",
    "windows",
    "configuration",
    "Kubernetes",
    "deployment",
    "canary",
    "promotion",
    "rollback",
    "metrics",
    "dashboard",
    "alert",
    "histogram",
    "bucket",
    "label",
    "variant",
    "production",
    "server",
    "client",
    "connection",
    "timeout",
    "retry",
    "backoff",
    "jitter",
    "concurrency",
    "worker",
    "a",
    "of",
    "in",
    "for",
    "with",
    "on",
    "that",
    "this",
    "it",
    "we",
    "they",
    "should",
    "could",
    "would",
    "internationalization",
    "misconfiguration",
    "observability",
    "can't",
    "won't",
    "it's",
    "we'll",
    "GLM-4.6",
    "Z.AI",
    "HTTP/2",
    "JSON",
    "SSE",
    "API",
    "p99",
    "2026",
];

const CODE: &[&str] = &[
    "fn count_tokens(text: &str) -> usize {\n    engine.count(text)\n}\n",
    "let mut total = 0u64;\nfor chunk in body.chunks(1024) {\n    total += chunk.len() as u64;\n}\n",
    "if let Some(usage) = event.get(\"usage\") {\n    record(usage)?;\n}\n",
    "def handler(request):\n    payload = json.loads(request.body)\n    return {\"ok\": True, \"n\": len(payload)}\n",
    "const MAX_RETRIES = 3;\nexport async function send(req) {\n  for (let i = 0; i < MAX_RETRIES; i++) {\n    try { return await fetch(req); } catch (e) { await sleep(2 ** i * 100); }\n  }\n}\n",
    "SELECT model, SUM(tokens) AS total FROM usage WHERE ts > now() - interval '1 hour' GROUP BY model;\n",
    "#[derive(Debug, Clone, PartialEq)]\npub struct Usage { pub input: u64, pub output: u64 }\n",
    "    match status.as_u16() {\n        429 => Retry::After(Duration::from_secs(1)),\n        500..=599 => Retry::Backoff,\n        _ => Retry::No,\n    }\n",
];

const HAN: &[&str] = &[
    "今天",
    "天气",
    "很好",
    "我们",
    "一起",
    "去",
    "公园",
    "散步",
    "人工智能",
    "正在",
    "改变",
    "世界",
    "模型",
    "推理",
    "速度",
    "非常",
    "快",
    "代理",
    "服务器",
    "请求",
    "响应",
    "令牌",
    "数量",
    "计算",
    "部署",
    "监控",
    "告警",
    "配置",
    "文件",
    "用户",
    "问题",
    "回答",
    "中文",
    "文本",
    "测试",
    "数据",
];

fn english_paragraph(rng: &mut Rng, out: &mut String) {
    let sentences = 2 + rng.below(4);
    for _ in 0..sentences {
        let words = 6 + rng.below(14);
        for w in 0..words {
            let word = rng.pick(WORDS);
            if w == 0 {
                let mut chars = word.chars();
                if let Some(first) = chars.next() {
                    out.extend(first.to_uppercase());
                    out.push_str(chars.as_str());
                }
            } else {
                out.push(' ');
                out.push_str(word);
            }
            if w + 1 < words && rng.below(10) == 0 {
                out.push(',');
            }
        }
        out.push_str(if rng.below(5) == 0 { "? " } else { ". " });
    }
    out.push_str("\n\n");
}

fn chinese_paragraph(rng: &mut Rng, out: &mut String) {
    let sentences = 2 + rng.below(3);
    for _ in 0..sentences {
        let words = 4 + rng.below(8);
        for w in 0..words {
            out.push_str(rng.pick(HAN));
            if w + 1 < words && rng.below(4) == 0 {
                out.push('，');
            }
        }
        out.push('。');
    }
    out.push_str("\n\n");
}

/// About `chars` characters of mixed text: ~55 % English prose, ~30 % code, ~15 % Chinese
/// (by paragraph), from a fixed seed.
pub fn mixed(chars: usize) -> String {
    let mut rng = Rng(0x5_EED0_F7A1_C0DE);
    let mut out = String::with_capacity(chars * 2);
    let mut count = 0;
    while count < chars {
        let before = out.len();
        match rng.below(20) {
            0..=10 => english_paragraph(&mut rng, &mut out),
            11..=16 => out.push_str(rng.pick(CODE)),
            _ => chinese_paragraph(&mut rng, &mut out),
        }
        count += out[before..].chars().count();
    }
    // Cut at exactly `chars` characters.
    match out.char_indices().nth(chars) {
        Some((at, _)) => out[..at].to_owned(),
        None => out,
    }
}

/// About `chars` characters of Chinese only (the Chinese paragraphs of [`mixed`]), from a
/// fixed seed.
pub fn chinese(chars: usize) -> String {
    let mut rng = Rng(0x5_EED0_C41E_5E00);
    let mut out = String::with_capacity(chars * 3);
    let mut count = 0;
    while count < chars {
        let before = out.len();
        chinese_paragraph(&mut rng, &mut out);
        count += out[before..].chars().count();
    }
    match out.char_indices().nth(chars) {
        Some((at, _)) => out[..at].to_owned(),
        None => out,
    }
}

/// The pathological inputs: (name, text). One megabyte each: the three (one
/// repeated letter, spaces, one repeated punctuation character), then cases the run-length
/// shortcut does not cover (a repeated non-ASCII character, a two-character pattern).
pub fn pathological() -> Vec<(&'static str, String)> {
    const MIB: usize = 1 << 20;
    vec![
        ("1MiB_a", "a".repeat(MIB)),
        ("1MiB_spaces", " ".repeat(MIB)),
        ("1MiB_dashes", "-".repeat(MIB)),
        ("1MiB_newlines", "\n".repeat(MIB)),
        ("1MiB_han", "你".repeat(MIB / 3)),
        ("1MiB_ab", "ab".repeat(MIB / 2)),
        ("1MiB_dash_equals", "-=".repeat(MIB / 2)),
    ]
}

fn texts_for_tokens(rng_seed_chars: usize, approx_tokens: usize) -> Vec<String> {
    // ~3.5 characters per token on this corpus; cut into message-sized parts.
    let text = mixed((approx_tokens as f64 * 3.5) as usize + rng_seed_chars);
    let mut parts = Vec::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let cut = rest.char_indices().nth(2000).map_or(rest.len(), |(i, _)| i);
        parts.push(rest[..cut].to_owned());
        rest = &rest[cut..];
    }
    parts
}

/// An Anthropic `/v1/messages` body of about `approx_tokens` tokens (system, alternating
/// turns with text, a tool_use and a tool_result, and a tool definition).
pub fn anthropic_body(approx_tokens: usize) -> Vec<u8> {
    let parts = texts_for_tokens(0, approx_tokens);
    let mut messages = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        messages
            .push(serde_json::json!({"role": role, "content": [{"type": "text", "text": part}]}));
    }
    messages.push(serde_json::json!({"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "search", "input": {"query": "token counting", "limit": 10}}
    ]}));
    messages.push(serde_json::json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "3 results"}]}
    ]}));
    let body = serde_json::json!({
        "model": "glm-4.6",
        "max_tokens": 1024,
        "stream": true,
        "system": "You are a careful assistant. Answer briefly.",
        "tools": [{"name": "search", "description": "Search the docs", "input_schema": {"type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}}}}],
        "messages": messages,
    });
    body.to_string().into_bytes()
}

/// An OpenAI `/chat/completions` body of about `approx_tokens` tokens.
pub fn openai_body(approx_tokens: usize) -> Vec<u8> {
    let parts = texts_for_tokens(17, approx_tokens);
    let mut messages =
        vec![serde_json::json!({"role": "system", "content": "You are a careful assistant."})];
    for (i, part) in parts.iter().enumerate() {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        messages.push(serde_json::json!({"role": role, "content": part}));
    }
    let body = serde_json::json!({
        "model": "glm-4.6",
        "stream": true,
        "tools": [{"type": "function", "function": {"name": "search", "description": "Search the docs", "parameters": {"type": "object"}}}],
        "messages": messages,
    });
    body.to_string().into_bytes()
}

/// A Z.AI-style OpenAI stream of `chunks` content chunks (a few words each, some
/// `reasoning_content`), usage on the last content chunk, then `[DONE]`.
pub fn zai_stream(chunks: usize) -> Vec<u8> {
    let mut rng = Rng(42);
    let mut out = String::new();
    for i in 0..chunks {
        let mut text = String::new();
        for _ in 0..(1 + rng.below(4)) {
            text.push(' ');
            text.push_str(rng.pick(WORDS));
        }
        let field = if i < chunks / 4 {
            "reasoning_content"
        } else {
            "content"
        };
        let delta = serde_json::json!({"role": "assistant", field: text});
        let mut chunk = serde_json::json!({"id": "20260101", "created": 1_758_884_740, "model": "glm-4.6", "choices": [{"index": 0, "delta": delta}]});
        if i + 1 == chunks {
            chunk["usage"] = serde_json::json!({"prompt_tokens": 18, "completion_tokens": 202, "total_tokens": 220, "prompt_tokens_details": {"cached_tokens": 0}});
        }
        out.push_str("data: ");
        out.push_str(&chunk.to_string());
        out.push_str("\n\n");
    }
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

/// An Anthropic stream of `chunks` text deltas between message_start and message_delta.
pub fn anthropic_stream(chunks: usize) -> Vec<u8> {
    let mut rng = Rng(7);
    let mut out = String::from(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"glm-4.6\",\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\n",
    );
    for _ in 0..chunks {
        let mut text = String::new();
        for _ in 0..(1 + rng.below(4)) {
            text.push(' ');
            text.push_str(rng.pick(WORDS));
        }
        let event = serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}});
        out.push_str("event: content_block_delta\ndata: ");
        out.push_str(&event.to_string());
        out.push_str("\n\n");
    }
    out.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":300}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_deterministic_and_sized() {
        assert_eq!(mixed(1000), mixed(1000));
        assert_eq!(mixed(1000).chars().count(), 1000);
        let text = mixed(20_000);
        assert!(
            text.contains("fn ") && text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
        );
    }
}
