//! Deterministic reply content: the same seed and the same request body give the same reply.
//!
//! A reply is a list of *pieces*. Every piece starts on a cl100k pre-token boundary (a word
//! with its leading space, a punctuation mark, or a punctuation mark glued to the Chinese
//! clause that follows it), so counting the pieces one by one — as a proxy does while it
//! relays a stream chunk by chunk — gives exactly the count of the whole text.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const WORDS: &[&str] = &[
    "the", "proxy", "request", "stream", "token", "upstream", "client", "function", "module",
    "config", "error", "retry", "limit", "handler", "buffer", "latency", "metric", "worker",
    "deploy", "canary", "route", "header", "timeout", "parser", "value", "field", "should",
    "returns", "checks", "builds", "reads", "writes", "before", "after", "every", "small", "clear",
    "simple", "careful", "first", "then", "also", "because", "when", "with", "from", "into",
    "test", "file", "line", "change", "update", "keep", "make", "that", "this", "and", "for",
    "each", "only",
];

const CLAUSES: &[&str] = &[
    "我们先检查代理的配置",
    "然后重新运行测试",
    "这个函数需要处理错误",
    "上游返回了限流响应",
    "令牌计数应该保持一致",
    "请确认日志里没有密钥",
    "流式响应按事件转发",
    "金丝雀发布需要观察指标",
];

/// A generated reply: optional reasoning and the visible text, both as pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Reasoning pieces (OpenAI `reasoning_content`); empty when not asked for.
    pub reasoning: Vec<String>,
    /// Visible text pieces.
    pub text: Vec<String>,
}

impl Reply {
    /// The whole visible text.
    pub fn text(&self) -> String {
        self.text.concat()
    }

    /// The whole reasoning text.
    pub fn reasoning(&self) -> String {
        self.reasoning.concat()
    }
}

/// 64-bit FNV-1a of `bytes`, mixed with `seed`.
pub fn seed_for(seed: u64, bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The reply for `request_body` under `seed`; `with_reasoning` adds reasoning pieces.
pub fn generate(seed: u64, request_body: &[u8], with_reasoning: bool) -> Reply {
    let mut rng = StdRng::seed_from_u64(seed_for(seed, request_body));
    let reasoning = if with_reasoning {
        let sentences = rng.random_range(1..=2);
        sentences_pieces(&mut rng, sentences, false)
    } else {
        Vec::new()
    };
    let sentences = rng.random_range(2..=6);
    let text = sentences_pieces(&mut rng, sentences, true);
    Reply { reasoning, text }
}

fn sentences_pieces(rng: &mut StdRng, sentences: usize, allow_chinese: bool) -> Vec<String> {
    let mut pieces = Vec::new();
    for index in 0..sentences {
        if allow_chinese && rng.random_bool(0.25) {
            chinese_sentence(rng, &mut pieces);
        } else {
            english_sentence(rng, &mut pieces, index == 0);
        }
    }
    pieces
}

fn english_sentence(rng: &mut StdRng, pieces: &mut Vec<String>, first: bool) {
    let words = rng.random_range(5..=14);
    for index in 0..words {
        let word = WORDS[rng.random_range(0..WORDS.len())];
        let word = if index == 0 {
            capitalise(word)
        } else {
            word.to_string()
        };
        if first && index == 0 && pieces.is_empty() {
            pieces.push(word);
        } else {
            pieces.push(format!(" {word}"));
        }
        if index + 1 < words && rng.random_bool(0.08) {
            pieces.push(",".to_string());
        }
    }
    pieces.push(".".to_string());
}

fn chinese_sentence(rng: &mut StdRng, pieces: &mut Vec<String>) {
    let clauses = rng.random_range(1..=3);
    for index in 0..clauses {
        let clause = CLAUSES[rng.random_range(0..CLAUSES.len())];
        if index == 0 {
            pieces.push(format!(" {clause}"));
        } else {
            // A punctuation mark followed by letters is one cl100k pre-token.
            pieces.push(format!("，{clause}"));
        }
    }
    pieces.push("。".to_string());
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::tokens::count;

    #[test]
    fn same_seed_and_body_give_same_reply() {
        assert_eq!(generate(7, b"abc", true), generate(7, b"abc", true));
        assert_ne!(generate(7, b"abc", true), generate(8, b"abc", true));
    }

    #[test]
    fn piecewise_counts_equal_the_whole_count() {
        for seed in 0..200 {
            let reply = generate(seed, b"body", true);
            let whole = count(&reply.text());
            let pieces: u64 = reply.text.iter().map(|p| count(p)).sum();
            assert_eq!(whole, pieces, "seed {seed}: {:?}", reply.text());
            let whole = count(&reply.reasoning());
            let pieces: u64 = reply.reasoning.iter().map(|p| count(p)).sum();
            assert_eq!(whole, pieces, "seed {seed}: {:?}", reply.reasoning());
        }
    }
}
