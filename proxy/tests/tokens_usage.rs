//! Usage extraction from every response shape, with events split at every byte offset.

use zai_proxy::tokens::{
    ApiUsage, Encoding, StreamUsage, TokenCounter, Usage, UsageReport, UsageSource,
};

fn counter() -> TokenCounter {
    TokenCounter::load(Encoding::Cl100kBase, 8 << 20).expect("loads")
}

const ANTHROPIC_STREAM: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"glm-4.6\",\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":10,\"cache_creation_input_tokens\":5,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me think.\"}}\n\n",
    "event: ping\ndata: {\"type\":\"ping\"}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello, \\\"world\\\" 你好\"}}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":null},\"usage\":{\"output_tokens\":7}}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":12}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

const ZAI_STREAM: &str = concat!(
    "data: {\"id\":\"1\",\"created\":1758884740,\"model\":\"glm-4.5\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"reasoning_content\":\" The\"}}]}\n\n",
    "data: {\"id\":\"1\",\"created\":1758884740,\"model\":\"glm-4.5\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi there.\",\"reasoning_content\":\"\"}}]}\n\n",
    "data: {\"id\":\"1\",\"created\":1758884740,\"model\":\"glm-4.5\",\"choices\":[{\"index\":0,\"finish_reason\":\"stop\",\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":{\"prompt_tokens\":18,\"completion_tokens\":202,\"total_tokens\":220,\"prompt_tokens_details\":{\"cached_tokens\":3}}}\n\n",
    "data: [DONE]\n\n",
);

const OPENAI_STREAM: &str = concat!(
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\r\n\r\n",
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello world\"}}],\"usage\":null}\r\n\r\n",
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]},\"finish_reason\":\"stop\"}],\"usage\":null}\r\n\r\n",
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":40,\"completion_tokens\":9,\"total_tokens\":49,\"prompt_tokens_details\":{\"cached_tokens\":0}}}\r\n\r\n",
    "data: [DONE]\r\n\r\n",
);

/// Gateways that send `input_tokens: 0` in message_start and the real count later.
const LATE_INPUT_STREAM: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"ok\"}}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"input_tokens\":30,\"output_tokens\":4}}\n\n",
);

const NO_USAGE_STREAM: &str = concat!(
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}\n\n",
    "data: {\"choices\":[{\"delta\":{\"content\":\" world\"}}]}\n\n",
);

fn run(counter: &TokenCounter, chunks: &[&[u8]], input_estimate: Option<u64>) -> UsageReport {
    let mut stream = StreamUsage::new();
    for c in chunks {
        stream.feed(c, counter.engine());
    }
    stream.finish(counter.engine(), input_estimate)
}

/// The report for `text` is the same however the bytes are split in two or three chunks.
fn assert_split_invariant(
    counter: &TokenCounter,
    text: &str,
    input_estimate: Option<u64>,
) -> UsageReport {
    let bytes = text.as_bytes();
    let whole = run(counter, &[bytes], input_estimate);
    for i in 0..=bytes.len() {
        let split = run(counter, &[&bytes[..i], &bytes[i..]], input_estimate);
        assert_eq!(split, whole, "split at byte {i}");
    }
    // Three-way splits on a stride (every pair would be quadratic in a debug build).
    for i in (0..bytes.len()).step_by(7) {
        for j in (i..bytes.len()).step_by(13) {
            let split = run(
                counter,
                &[&bytes[..i], &bytes[i..j], &bytes[j..]],
                input_estimate,
            );
            assert_eq!(split, whole, "split at bytes {i} and {j}");
        }
    }
    // One byte at a time.
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(
        run(counter, &singles, input_estimate),
        whole,
        "byte by byte"
    );
    whole
}

#[test]
fn anthropic_stream_message_start_and_last_message_delta() {
    let c = counter();
    let r = assert_split_invariant(&c, ANTHROPIC_STREAM, Some(44));
    assert_eq!(r.source, UsageSource::Stream { from_api: true });
    assert_eq!(
        r.usage,
        Usage {
            input: 25,
            output: 12,
            cache_read: 10,
            cache_write: 5
        },
        "the last cumulative output_tokens, never summed"
    );
    let thinking = c.count("Let me think.") as u64;
    let text = c.count("Hello, \"world\" 你好") as u64;
    assert_eq!(r.output_estimate, thinking + text);
    assert_eq!(r.input_ratio(), Some(44.0 / 40.0));
    assert_eq!(r.output_ratio(), Some((thinking + text) as f64 / 12.0));
    assert_eq!(
        r.log_line(),
        "Token usage (stream, fromAPI=true): input=25 output=12 cache_read=10 cache_write=5"
    );
}

#[test]
fn zai_stream_usage_on_the_last_content_chunk() {
    let c = counter();
    let r = assert_split_invariant(&c, ZAI_STREAM, Some(20));
    assert_eq!(
        r.usage,
        Usage {
            input: 18,
            output: 202,
            cache_read: 3,
            cache_write: 0
        }
    );
    assert_eq!(
        r.output_estimate,
        (c.count(" The") + c.count("Hi there.")) as u64
    );
    assert_eq!(r.api.prompt_total(), Some(18));
}

#[test]
fn openai_stream_usage_on_the_empty_choices_chunk() {
    let c = counter();
    let r = assert_split_invariant(&c, OPENAI_STREAM, None);
    assert_eq!(
        r.usage,
        Usage {
            input: 40,
            output: 9,
            cache_read: 0,
            cache_write: 0
        }
    );
    assert_eq!(
        r.output_estimate,
        (c.count("Hello world") + c.count("{\"a\":1}")) as u64
    );
}

#[test]
fn late_input_on_message_delta_replaces_the_zero() {
    let c = counter();
    let r = assert_split_invariant(&c, LATE_INPUT_STREAM, Some(28));
    assert_eq!(
        r.usage,
        Usage {
            input: 30,
            output: 4,
            cache_read: 0,
            cache_write: 0
        }
    );
}

#[test]
fn stream_without_usage_falls_back_to_the_estimate() {
    let c = counter();
    let r = assert_split_invariant(&c, NO_USAGE_STREAM, Some(17));
    assert_eq!(r.source, UsageSource::Stream { from_api: false });
    assert_eq!(r.api, ApiUsage::default());
    let expected = (c.count("Hello") + c.count("{\"city\": ") + c.count(" world")) as u64;
    assert_eq!(
        r.usage,
        Usage {
            input: 17,
            output: expected,
            cache_read: 0,
            cache_write: 0
        }
    );
    assert_eq!(r.input_ratio(), None);
    assert!(
        r.log_line()
            .starts_with("Token usage (stream, fromAPI=false): input=17 output=")
    );
}

#[test]
fn interrupted_stream_keeps_api_input_and_estimates_output() {
    let c = counter();
    let cut = ANTHROPIC_STREAM
        .find("event: message_delta")
        .expect("fixture has a delta");
    let r = run(&c, &[&ANTHROPIC_STREAM.as_bytes()[..cut]], Some(44));
    assert_eq!(r.usage.input, 25);
    assert_eq!(r.usage.output, r.output_estimate);
    assert!(r.output_estimate > 0);
}

#[test]
fn non_streaming_bodies_of_both_formats() {
    let c = counter();
    let anthropic = br#"{"id":"m","type":"message","role":"assistant","model":"glm-4.6","content":[{"type":"text","text":"Hi"},{"type":"tool_use","id":"t","name":"f","input":{"x":1}}],"stop_reason":"end_turn","usage":{"input_tokens":9,"output_tokens":14,"cache_read_input_tokens":0}}"#;
    let r = c.body_usage(anthropic, Some(8));
    assert_eq!(r.source, UsageSource::Api);
    assert_eq!(
        r.usage,
        Usage {
            input: 9,
            output: 14,
            cache_read: 0,
            cache_write: 0
        }
    );
    assert_eq!(
        r.output_estimate,
        (c.count("Hi") + c.count("{\"x\":1}")) as u64
    );

    let openai = br#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there","reasoning_content":"hmm"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42}}"#;
    let r = c.body_usage(openai, Some(11));
    assert_eq!(
        r.usage,
        Usage {
            input: 12,
            output: 30,
            cache_read: 0,
            cache_write: 0
        }
    );
    assert_eq!(
        r.output_estimate,
        (c.count("Hello there") + c.count("hmm")) as u64
    );

    let no_usage = br#"{"choices":[{"message":{"content":"Hello there"}}]}"#;
    let r = c.body_usage(no_usage, Some(11));
    assert_eq!(r.source, UsageSource::Estimated);
    assert_eq!(
        r.usage,
        Usage {
            input: 11,
            output: 2,
            cache_read: 0,
            cache_write: 0
        }
    );
    assert_eq!(
        r.log_line(),
        "Token usage (estimated): input=11 output=2 cache_read=0 cache_write=0"
    );

    // An SSE body on a non-streaming request is read as a stream.
    let r = c.body_usage(ZAI_STREAM.as_bytes(), Some(1));
    assert_eq!(r.source, UsageSource::Api);
    assert_eq!(r.usage.output, 202);
}

#[test]
fn stream_memory_stays_bounded() {
    let c = counter();
    let mut stream = StreamUsage::new();
    let event = "data: {\"choices\":[{\"delta\":{\"content\":\"token \"}}]}\n\n";
    let chunk = event.repeat(100);
    for _ in 0..200 {
        stream.feed(chunk.as_bytes(), c.engine());
        assert!(
            stream.buffered_bytes() < 4096,
            "{}",
            stream.buffered_bytes()
        );
    }
    let r = stream.finish(c.engine(), None);
    assert_eq!(r.output_estimate, 200 * 100 * c.count("token ") as u64);
}
