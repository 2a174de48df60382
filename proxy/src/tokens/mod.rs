//! Token counting: exact local counts, upstream usage extraction, and the local estimates
//! used when upstream says nothing.
//!
//! * [`engine`]: the encodings (`cl100k_base`, `o200k_base`, `glm4`, `glm5`) and the exact
//!   engines (the `tiktoken` crate, with `bpe-openai` for texts with long runs).
//! * [`select`]: which vocabulary counts a request (`TOKENIZER_ENCODING`, `auto` follows the
//!   request's model).
//! * [`cache`]: counts of recently seen input texts (conversation history is resent on
//!   every turn), exact and bounded.
//! * [`runs`]: long runs of one ASCII character shortened exactly before counting.
//! * [`input`]: which parts of a request body the model reads.
//! * [`sse`]: an incremental, bounded SSE reader.
//! * [`usage`]: usage from response bodies and streams, and the output estimate.
//! * [`pricing`]: pricing tier and estimated cost.
//! * [`record`]: token metrics and the "Token usage" log line.
//! * [`hooks`]: the steps the forward handler calls (the one parse, the input estimate,
//!   `X-Token-Input`, local `count_tokens`) and the start-up load. The usage tap is
//!   `forward::usage_tap`: `tokens` sits below the proxy's state and never imports it.
//!
//! [`select::Tokenizers`] is what the proxy holds (`AppState::tokens`): one
//! [`TokenCounter`] per usable vocabulary, loaded once at start-up and shared read-only.

pub mod cache;
pub mod engine;
pub mod han;
pub mod hooks;
pub mod input;
pub mod pricing;
pub mod record;
pub mod runs;
pub mod select;
pub mod sse;
pub mod usage;

pub use engine::{Encoding, Engine, EngineKind, LoadProblem};
pub use select::{Selection, Tokenizers};
pub use usage::{ApiUsage, StreamUsage, Usage, UsageReport, UsageSource};

/// Bodies larger than this are counted on the blocking pool rather than on the async
/// runtime (the count of 64 KiB takes well under a millisecond; larger ones may not).
pub const BLOCKING_THRESHOLD_BYTES: usize = 64 * 1024;

/// How an input estimate was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputMethod {
    /// Exact count of every text the model reads.
    Counted,
    /// The body is larger than `TOKEN_COUNT_MAX_BYTES`: bytes ÷ 4.
    OverLimit,
    /// The body is not a JSON object: 0.
    Unparseable,
}

/// The local input estimate of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputEstimate {
    /// Tokens.
    pub tokens: u64,
    /// How they were obtained.
    pub method: InputMethod,
}

/// The proxy's token counter: one encoding, its engines, and the byte budget.
#[derive(Debug)]
pub struct TokenCounter {
    engine: Engine,
    max_bytes: usize,
    cache: Option<cache::CountCache>,
}

impl TokenCounter {
    /// Loads `encoding` (a few hundred milliseconds: call it before reporting ready).
    /// Bodies above `max_bytes` are estimated as bytes ÷ 4 instead of counted.
    pub fn load(encoding: Encoding, max_bytes: usize) -> Result<Self, LoadProblem> {
        Ok(Self {
            engine: Engine::load(encoding)?,
            max_bytes,
            cache: None,
        })
    }

    /// Remembers the counts of input texts, holding at most `bytes` of text
    /// (`TOKEN_COUNT_CACHE_BYTES`; 0 = no cache). See [`cache`].
    pub fn with_cache_bytes(mut self, bytes: usize) -> Self {
        self.cache = cache::CountCache::new(bytes);
        self
    }

    /// Exact count of one input text (system prompt, message, tool definition…), from the
    /// cache when the same text was counted recently.
    pub fn count_input(&self, text: &str) -> usize {
        match &self.cache {
            Some(cache) => cache.count(text, |t| self.engine.count(t)),
            None => self.engine.count(text),
        }
    }

    /// The input-count cache, if on (tests, logs).
    pub fn cache(&self) -> Option<&cache::CountCache> {
        self.cache.as_ref()
    }

    /// The engine (for the start-up log line and benches).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The encoding.
    pub fn encoding(&self) -> Encoding {
        self.engine.encoding()
    }

    /// `TOKEN_COUNT_MAX_BYTES`.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Exact token count of `text`.
    pub fn count(&self, text: &str) -> usize {
        self.engine.count(text)
    }

    /// The local input estimate of a request body (either wire format): the sum of the
    /// exact counts of every text the model reads ([`input`]). No per-message framing.
    /// CPU-bound: the forward handler runs it off the async workers for large bodies
    /// ([`hooks::start_input_estimate`]).
    pub fn input_tokens(&self, body: &[u8]) -> InputEstimate {
        if body.len() > self.max_bytes {
            let tokens = (body.len() / 4) as u64;
            tracing::info!(
                "Token counting skipped for a {}-byte body (TOKEN_COUNT_MAX_BYTES={}); estimating input={} as bytes/4",
                body.len(),
                self.max_bytes,
                tokens
            );
            return InputEstimate {
                tokens,
                method: InputMethod::OverLimit,
            };
        }
        if body.is_empty() {
            return InputEstimate {
                tokens: 0,
                method: InputMethod::Unparseable,
            };
        }
        let Ok(value) = input::Json::parse(body) else {
            return InputEstimate {
                tokens: 0,
                method: InputMethod::Unparseable,
            };
        };
        let mut tokens = 0u64;
        let parsed =
            input::visit_input_texts(&value, &mut |text| tokens += self.count_input(text) as u64);
        InputEstimate {
            tokens,
            method: if parsed {
                InputMethod::Counted
            } else {
                InputMethod::Unparseable
            },
        }
    }

    /// The body of a local `count_tokens` answer: `{"input_tokens":N}` with N the same
    /// count as [`TokenCounter::input_tokens`].
    pub fn count_tokens_body(estimate: InputEstimate) -> String {
        format!("{{\"input_tokens\":{}}}", estimate.tokens)
    }

    /// Usage of a complete (non-streaming) response body.
    pub fn body_usage(&self, body: &[u8], input_estimate: Option<u64>) -> UsageReport {
        usage::body_usage(body, &self.engine, input_estimate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_answers_repeated_history_with_the_same_counts() {
        let plain = TokenCounter::load(Encoding::Cl100kBase, usize::MAX).expect("loads");
        let cached = TokenCounter::load(Encoding::Cl100kBase, usize::MAX)
            .expect("loads")
            .with_cache_bytes(1 << 20);
        let history = "An earlier turn of the conversation, long enough to be cached. ".repeat(20);
        let turn = |n: usize| {
            let mut messages = vec![serde_json::json!({"role": "user", "content": history})];
            for i in 0..n {
                messages.push(
                    serde_json::json!({"role": "assistant", "content": format!("{i} {history}")}),
                );
            }
            serde_json::json!({"model": "m", "system": history, "messages": messages}).to_string()
        };
        for n in 0..4 {
            let body = turn(n);
            assert_eq!(
                cached.input_tokens(body.as_bytes()),
                plain.input_tokens(body.as_bytes()),
                "turn {n}"
            );
        }
        let stats = cached.cache().expect("cache on").stats();
        // Each text is counted once: system (= the first message), then one new reply per
        // turn; everything else comes from the cache (1 + 2 + 3 + 4 hits).
        assert_eq!(
            stats,
            cache::CacheStats {
                hits: 10,
                misses: 4
            }
        );
        assert!(
            TokenCounter::load(Encoding::Cl100kBase, 1)
                .expect("loads")
                .with_cache_bytes(0)
                .cache()
                .is_none()
        );
    }

    #[test]
    fn input_tokens_counts_each_text_and_estimates_over_the_limit() {
        let counter = TokenCounter::load(Encoding::Cl100kBase, 200).expect("loads");
        let body = br#"{"model":"m","messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello there"}]}"#;
        assert_eq!(
            counter.input_tokens(body),
            InputEstimate {
                tokens: 3,
                method: InputMethod::Counted
            }
        );
        assert_eq!(
            counter.input_tokens(b"{invalid json}").method,
            InputMethod::Unparseable
        );
        let big = vec![b' '; 400];
        assert_eq!(
            counter.input_tokens(&big),
            InputEstimate {
                tokens: 100,
                method: InputMethod::OverLimit
            }
        );
        assert_eq!(
            TokenCounter::count_tokens_body(counter.input_tokens(body)),
            r#"{"input_tokens":3}"#
        );
    }
}
