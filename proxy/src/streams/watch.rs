//! Reads one SSE stream's events for the stream metrics (both wire formats).
//!
//! Only a handful of fields are looked at, each event parsed in place (no copy of the
//! payload, no allocation unless a string holds escapes):
//!
//! * **content-bearing** (the first one is the time to first token): Anthropic
//!   `content_block_delta`; OpenAI/Z.AI a chunk whose `choices[].delta` has a non-empty
//!   `content` or `reasoning_content`, or `tool_calls`;
//! * **terminal**: Anthropic `message_stop`; OpenAI/Z.AI `data: [DONE]` or any non-null
//!   `finish_reason`;
//! * **error**: Anthropic `{"type":"error"}`, an `error` object on an OpenAI chunk, or an
//!   error `finish_reason` ([`ERROR_FINISH_REASONS`]);
//! * **output tokens** as upstream reported them: the last Anthropic `usage.output_tokens`
//!   (cumulative) or OpenAI `usage.completion_tokens`.
//!
//! Memory per stream is the SSE reader's (bounded, [`crate::tokens::sse`]).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde_json::Number;

use crate::tokens::sse::SseParser;

/// `finish_reason` values that mean the generation failed (Z.AI: `network_error`).
pub const ERROR_FINISH_REASONS: &[&str] = &["network_error", "error"];

/// What the watch learnt from one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventFacts {
    /// The event carries generated content.
    pub content: bool,
    /// The event ends the stream.
    pub terminal: bool,
    /// The event reports a failure.
    pub error: bool,
    /// Output tokens upstream reported (cumulative), if any.
    pub output_tokens: Option<u64>,
}

/// The facts of one stream so far. See the module documentation.
#[derive(Debug, Default)]
pub struct StreamWatch {
    parser: SseParser,
    /// Number of content-bearing events seen.
    pub content_events: u64,
    /// A terminal event was seen.
    pub terminal: bool,
    /// An error event was seen.
    pub error_event: bool,
    /// The last output-token count upstream reported.
    pub output_tokens: Option<u64>,
}

impl StreamWatch {
    /// A fresh watch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk (any split). Returns true when this chunk completed the
    /// stream's first content-bearing event.
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        let before = self.content_events;
        let Self {
            parser,
            content_events,
            terminal,
            error_event,
            output_tokens,
        } = self;
        parser.feed(chunk, &mut |data| {
            apply(
                event_facts(data),
                content_events,
                terminal,
                error_event,
                output_tokens,
            );
        });
        before == 0 && self.content_events > 0
    }

    /// The stream ended: an event left without its blank line is still read. Returns true
    /// when that event was the first content-bearing one.
    pub fn finish(&mut self) -> bool {
        let before = self.content_events;
        let Self {
            parser,
            content_events,
            terminal,
            error_event,
            output_tokens,
        } = self;
        parser.finish(&mut |data| {
            apply(
                event_facts(data),
                content_events,
                terminal,
                error_event,
                output_tokens,
            );
        });
        before == 0 && self.content_events > 0
    }
}

fn apply(
    facts: EventFacts,
    content_events: &mut u64,
    terminal: &mut bool,
    error_event: &mut bool,
    output_tokens: &mut Option<u64>,
) {
    if facts.content {
        *content_events += 1;
    }
    *terminal |= facts.terminal;
    *error_event |= facts.error;
    if facts.output_tokens.is_some() {
        *output_tokens = facts.output_tokens;
    }
}

/// The facts of one SSE `data` payload (pure).
pub fn event_facts(data: &[u8]) -> EventFacts {
    let trimmed = data.trim_ascii();
    if trimmed == b"[DONE]" {
        return EventFacts {
            terminal: true,
            ..EventFacts::default()
        };
    }
    if trimmed.first() != Some(&b'{') {
        return EventFacts::default();
    }
    let Ok(event) = serde_json::from_slice::<Event<'_>>(trimmed) else {
        return EventFacts::default();
    };
    let output_tokens = event.usage.as_ref().and_then(|u| {
        u.output_tokens
            .as_ref()
            .or(u.completion_tokens.as_ref())
            .and_then(number)
    });
    let mut facts = EventFacts {
        output_tokens,
        error: event.error.is_some(),
        ..EventFacts::default()
    };
    match event.kind.as_deref() {
        Some("content_block_delta") => facts.content = true,
        Some("message_stop") => facts.terminal = true,
        Some("error") => facts.error = true,
        _ => {}
    }
    for choice in event.choices.iter().flatten() {
        if let Some(delta) = &choice.delta {
            facts.content |= delta.content.is_some_and(|s| s.0)
                || delta.reasoning_content.is_some_and(|s| s.0)
                || delta.tool_calls.is_some();
        }
        if let Some(reason) = choice.finish_reason.as_deref() {
            facts.terminal = true;
            facts.error |= ERROR_FINISH_REASONS.contains(&reason);
        }
    }
    facts
}

fn number(n: &Number) -> Option<u64> {
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f as u64)
    })
}

// === wire shapes: only the fields read ===

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(borrow, default)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    output_tokens: Option<Number>,
    #[serde(default)]
    completion_tokens: Option<Number>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<NonEmpty>,
    #[serde(default)]
    reasoning_content: Option<NonEmpty>,
    #[serde(default)]
    tool_calls: Option<IgnoredAny>,
}

/// Whether a string is non-empty, read without keeping (or allocating) it. Non-string
/// values (OpenAI content parts) count as content.
#[derive(Debug, Clone, Copy)]
struct NonEmpty(bool);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NonEmpty;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NonEmpty, E> {
                Ok(NonEmpty(!v.is_empty()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<NonEmpty, A::Error> {
                let mut any = false;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    any = true;
                }
                Ok(NonEmpty(any))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<NonEmpty, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(NonEmpty(true))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANTHROPIC: &str = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\ndata: {\"type\":\"ping\"}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" there\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":14}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    const OPENAI: &str = concat!(
        "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"reasoning_content\":\" The\"}}]}\n\n",
        "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\".\",\"reasoning_content\":\"\"}}]}\n\n",
        "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"finish_reason\":\"stop\",\"delta\":{\"content\":\"\"}}],\"usage\":{\"prompt_tokens\":18,\"completion_tokens\":202}}\n\n",
        "data: [DONE]\n\n",
    );

    fn watch_all(text: &str, split: usize) -> (StreamWatch, usize) {
        let mut w = StreamWatch::new();
        let mut firsts = 0;
        let bytes = text.as_bytes();
        let split = split.min(bytes.len());
        firsts += usize::from(w.feed(&bytes[..split]));
        firsts += usize::from(w.feed(&bytes[split..]));
        firsts += usize::from(w.finish());
        (w, firsts)
    }

    #[test]
    fn complete_streams_in_both_formats_at_every_split() {
        for (text, contents, tokens) in [(ANTHROPIC, 2, 14), (OPENAI, 2, 202)] {
            for split in 0..=text.len() {
                let (w, firsts) = watch_all(text, split);
                assert_eq!(firsts, 1, "first content once (split {split})");
                assert_eq!(w.content_events, contents);
                assert!(w.terminal && !w.error_event, "split {split}");
                assert_eq!(w.output_tokens, Some(tokens));
            }
        }
    }

    #[test]
    fn a_cut_after_the_first_chunk_has_no_terminal_event() {
        for text in [ANTHROPIC, OPENAI] {
            let cut = text
                .find("[DONE]")
                .or_else(|| text.find("event: message_delta"))
                .unwrap();
            let (w, _) = watch_all(&text[..cut / 2], 0);
            assert!(!w.terminal, "{}", &text[..cut / 2]);
        }
        // `message_delta` alone (stop_reason, usage) is not the terminal event.
        let cut = ANTHROPIC.find("event: message_stop").unwrap();
        let (w, _) = watch_all(&ANTHROPIC[..cut], 0);
        assert!(!w.terminal);
        assert_eq!(w.output_tokens, Some(14));
        // An OpenAI stream cut before any finish_reason.
        let cut = OPENAI.find("finish_reason").unwrap();
        let (w, _) = watch_all(&OPENAI[..cut], 0);
        assert!(!w.terminal);
    }

    #[test]
    fn error_events_and_error_finish_reasons() {
        let anthropic = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"x\"}}\n\n";
        let (w, _) = watch_all(anthropic, 3);
        assert!(w.error_event);
        let zai = "data: {\"choices\":[{\"index\":0,\"finish_reason\":\"network_error\",\"delta\":{}}]}\n\n";
        let (w, _) = watch_all(zai, 7);
        assert!(w.error_event && w.terminal);
        let openai_err = "data: {\"error\":{\"message\":\"boom\",\"code\":\"500\"}}\n\n";
        let (w, _) = watch_all(openai_err, 0);
        assert!(w.error_event);
        // "error" inside generated text is content, not an error.
        let text = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"{\\\"type\\\":\\\"error\\\"}\"}}]}\n\n";
        let (w, firsts) = watch_all(text, 0);
        assert!(!w.error_event && !w.terminal);
        assert_eq!(firsts, 1);
    }

    #[test]
    fn role_only_and_keep_alive_events_are_not_content() {
        for data in [
            &b"{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}"[..],
            b"{\"type\":\"ping\"}",
            b"{\"type\":\"message_start\",\"message\":{}}",
            b"not json",
            b"",
            b"{\"choices\":[{\"delta\":{\"content\":null}}]}",
        ] {
            assert_eq!(event_facts(data), EventFacts::default(), "{data:?}");
        }
        assert!(
            event_facts(b"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0}]}}]}").content
        );
        assert!(event_facts(b" [DONE] ").terminal);
    }
}
