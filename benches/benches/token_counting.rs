//! Token counting speed: the proxy's engine (long single-character runs shortened exactly,
//! then the `tiktoken` crate, with `bpe-openai` for long runs) against `tiktoken-rs` (the reference and the baseline in every group) and each
//! engine alone; pathological inputs; whole requests (JSON parse + count); SSE usage
//! extraction. Throughput is reported in bytes.
//!
//! `cargo bench -p zai-benches --bench token_counting` (a few minutes on 2 cores).

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;
use zai_benches::corpus;
use zai_proxy::tokens::{Encoding, EngineKind, StreamUsage, TokenCounter, input};

fn counter(encoding: Encoding) -> TokenCounter {
    TokenCounter::load(encoding, usize::MAX).expect("vocabulary compiled in")
}

fn quick<'c>(
    c: &'c mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    g
}

fn engines(c: &mut Criterion) {
    let cl = counter(Encoding::Cl100kBase);
    let glm = counter(Encoding::Glm4);
    let reference = tiktoken_rs::cl100k_base_singleton();
    let mut g = quick(c, "engines_cl100k_mixed");
    for (label, chars) in [
        ("1K", 1_000),
        ("10K", 10_000),
        ("100K", 100_000),
        ("1M", 1_000_000),
    ] {
        let text = corpus::mixed(chars);
        let expected = reference.encode_ordinary(&text).len();
        assert_eq!(cl.count(&text), expected, "exact before timing");
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::new("tiktoken-rs", label), &text, |b, t| {
            b.iter(|| reference.encode_ordinary(t).len());
        });
        g.bench_with_input(BenchmarkId::new("proxy", label), &text, |b, t| {
            b.iter(|| cl.count(t));
        });
        g.bench_with_input(BenchmarkId::new("tiktoken4", label), &text, |b, t| {
            b.iter(|| cl.engine().count_with(EngineKind::Fast, t));
        });
        g.bench_with_input(BenchmarkId::new("bpe-openai", label), &text, |b, t| {
            b.iter(|| cl.engine().count_with(EngineKind::Linear, t));
        });
        g.bench_with_input(BenchmarkId::new("proxy-glm4", label), &text, |b, t| {
            b.iter(|| glm.count(t));
        });
    }
    g.finish();
}

fn pathological(c: &mut Criterion) {
    let cl = counter(Encoding::Cl100kBase);
    let glm = counter(Encoding::Glm4);
    let reference = tiktoken_rs::cl100k_base_singleton();
    let mut g = quick(c, "pathological_cl100k");
    g.sample_size(10).measurement_time(Duration::from_secs(1));
    for (label, text) in corpus::pathological() {
        assert_eq!(
            cl.count(&text),
            reference.encode_ordinary(&text).len(),
            "exact: {label}"
        );
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::new("tiktoken-rs", label), &text, |b, t| {
            b.iter(|| reference.encode_ordinary(t).len());
        });
        g.bench_with_input(BenchmarkId::new("proxy", label), &text, |b, t| {
            b.iter(|| cl.count(t));
        });
        g.bench_with_input(BenchmarkId::new("tiktoken4", label), &text, |b, t| {
            b.iter(|| cl.engine().count_with(EngineKind::Fast, t));
        });
        g.bench_with_input(BenchmarkId::new("bpe-openai", label), &text, |b, t| {
            b.iter(|| cl.engine().count_with(EngineKind::Linear, t));
        });
        g.bench_with_input(BenchmarkId::new("proxy-glm4", label), &text, |b, t| {
            b.iter(|| glm.count(t));
        });
    }
    g.finish();
}

/// The baseline request count: same walker, tiktoken-rs counting.
fn reference_input_tokens(body: &[u8]) -> usize {
    let reference = tiktoken_rs::cl100k_base_singleton();
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return 0;
    };
    let mut n = 0;
    input::visit_input_texts(&value, &mut |t| n += reference.encode_ordinary(t).len());
    n
}

fn requests(c: &mut Criterion) {
    let cl = counter(Encoding::Cl100kBase);
    let mut g = quick(c, "request_input_10k_tokens");
    for (label, body) in [
        ("anthropic", corpus::anthropic_body(10_000)),
        ("openai", corpus::openai_body(10_000)),
    ] {
        let n = cl.input_tokens(&body).tokens;
        assert_eq!(n as usize, reference_input_tokens(&body));
        eprintln!(
            "request_input_10k_tokens/{label}: {} bytes, {n} tokens",
            body.len()
        );
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("tiktoken-rs", label), &body, |b, body| {
            b.iter(|| reference_input_tokens(body));
        });
        g.bench_with_input(BenchmarkId::new("proxy", label), &body, |b, body| {
            b.iter(|| cl.input_tokens(body).tokens);
        });
    }
    g.finish();
}

/// The baseline stream reader: split on blank lines, parse each event as a `Value`, count
/// the deltas with tiktoken-rs, keep the last usage.
fn reference_stream(stream: &[u8]) -> (usize, Option<Value>) {
    let reference = tiktoken_rs::cl100k_base_singleton();
    let text = String::from_utf8_lossy(stream);
    let mut output = 0;
    let mut usage = None;
    for event in text.split("\n\n") {
        for line in event.lines() {
            let Some(data) = line.strip_prefix("data: ") else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                usage = Some(u.clone());
            }
            for d in [v.get("delta")].into_iter().flatten().chain(
                v.get("choices")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.get("delta")),
            ) {
                for key in ["text", "content", "reasoning_content", "thinking"] {
                    if let Some(s) = d.get(key).and_then(Value::as_str) {
                        output += reference.encode_ordinary(s).len();
                    }
                }
            }
        }
    }
    (output, usage)
}

fn sse(c: &mut Criterion) {
    let cl = counter(Encoding::Cl100kBase);
    let mut g = quick(c, "sse_usage_extraction_300_chunks");
    for (label, stream) in [
        ("zai", corpus::zai_stream(300)),
        ("anthropic", corpus::anthropic_stream(300)),
    ] {
        g.throughput(Throughput::Bytes(stream.len() as u64));
        g.bench_with_input(BenchmarkId::new("tiktoken-rs", label), &stream, |b, s| {
            b.iter(|| reference_stream(s));
        });
        // Fed in 1 KiB reads, as a relay sees it.
        g.bench_with_input(BenchmarkId::new("proxy", label), &stream, |b, s| {
            b.iter(|| {
                let mut usage = StreamUsage::new();
                for chunk in s.chunks(1024) {
                    usage.feed(chunk, cl.engine());
                }
                usage.finish(cl.engine(), Some(25)).usage
            });
        });
    }
    g.finish();
}

criterion_group!(benches, engines, pathological, requests, sse);
criterion_main!(benches);
