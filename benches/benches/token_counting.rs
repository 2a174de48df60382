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
    let inputs = [
        ("1K", 1_000),
        ("10K", 10_000),
        ("100K", 100_000),
        ("1M", 1_000_000),
    ]
    .map(|(label, chars)| (label, corpus::mixed(chars)));
    let mut g = quick(c, "engines_cl100k_mixed");
    every_engine(&mut g, &inputs);
    g.finish();
}

fn pathological(c: &mut Criterion) {
    let mut g = quick(c, "pathological_cl100k");
    g.sample_size(10).measurement_time(Duration::from_secs(1));
    every_engine(&mut g, &corpus::pathological());
    g.finish();
}

/// Benches each text with `tiktoken-rs`, the proxy's engine (cl100k, glm4 and glm5), and each
/// cl100k engine alone, after checking the proxy's count against `tiktoken-rs` (cl100k) and
/// the `tiktoken` crate's own encoder (glm5; `tiktoken4-glm5` times that reference).
fn every_engine(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    inputs: &[(&str, String)],
) {
    let cl = counter(Encoding::Cl100kBase);
    let glm = counter(Encoding::Glm4);
    let glm5 = counter(Encoding::Glm5);
    let glm5_reference = tiktoken::get_encoding("glm5").expect("glm5 compiled in");
    let reference = tiktoken_rs::cl100k_base_singleton();
    for (label, text) in inputs {
        assert_eq!(
            cl.count(text),
            reference.encode_ordinary(text).len(),
            "exact before timing: {label}"
        );
        assert_eq!(
            glm5.count(text),
            glm5_reference.count(text),
            "glm5 exact before timing: {label}"
        );
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::new("tiktoken-rs", label), text, |b, t| {
            b.iter(|| reference.encode_ordinary(t).len());
        });
        g.bench_with_input(BenchmarkId::new("proxy", label), text, |b, t| {
            b.iter(|| cl.count(t));
        });
        g.bench_with_input(BenchmarkId::new("tiktoken4", label), text, |b, t| {
            b.iter(|| cl.engine().count_with(EngineKind::Fast, t));
        });
        g.bench_with_input(BenchmarkId::new("bpe-openai", label), text, |b, t| {
            b.iter(|| cl.engine().count_with(EngineKind::Linear, t));
        });
        g.bench_with_input(BenchmarkId::new("proxy-glm4", label), text, |b, t| {
            b.iter(|| glm.count(t));
        });
        g.bench_with_input(BenchmarkId::new("proxy-glm5", label), text, |b, t| {
            b.iter(|| glm5.count(t));
        });
        g.bench_with_input(BenchmarkId::new("tiktoken4-glm5", label), text, |b, t| {
            b.iter(|| glm5_reference.count(t));
        });
    }
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

/// Ratios measured interleaved. On a shared machine the load changes between criterion's
/// groups and skews ratios of benches timed minutes apart, so here each (tiktoken-rs, proxy)
/// pair is timed back to back, several times, and the median of the per-pair ratios is
/// reported (with the lowest and highest). Printed as a table and written to
/// `bench-results/token_counting_ratios.json`. Runs unless a criterion filter excludes it
/// (`-- interleaved` runs only this).
fn interleaved_ratios(_c: &mut Criterion) {
    const NAME: &str = "interleaved_ratios";
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| NAME.contains(f.as_str())) {
        return;
    }
    let cl = counter(Encoding::Cl100kBase);
    let reference = tiktoken_rs::cl100k_base_singleton();
    let mut inputs: Vec<(String, String)> = [1_000, 10_000, 100_000, 1_000_000]
        .into_iter()
        .map(|n| (format!("mixed_{}K", n / 1000), corpus::mixed(n)))
        .collect();
    inputs.push(("chinese_100K".to_owned(), corpus::chinese(100_000)));
    inputs.extend(
        corpus::pathological()
            .into_iter()
            .take(3)
            .map(|(label, text)| (label.to_owned(), text)),
    );
    let mut rows = Vec::new();
    for (label, text) in &inputs {
        let (proxy, rs) = (|| cl.count(text), || reference.encode_ordinary(text).len());
        assert_eq!(proxy(), rs(), "exact before timing: {label}");
        rows.push(pairwise(label, text.len(), proxy, rs));
    }
    for (label, body) in [
        ("request_anthropic", corpus::anthropic_body(10_000)),
        ("request_openai", corpus::openai_body(10_000)),
    ] {
        let proxy = || cl.input_tokens(&body).tokens as usize;
        let rs = || reference_input_tokens(&body);
        assert_eq!(proxy(), rs(), "exact before timing: {label}");
        rows.push(pairwise(label, body.len(), proxy, rs));
    }
    eprintln!("\n{NAME} (cl100k, one thread, pairs timed back to back):");
    eprintln!("| input | bytes | tiktoken-rs | proxy | ratio (median) | ratio (min–max) |");
    eprintln!("|---|---|---|---|---|---|");
    for r in &rows {
        eprintln!(
            "| {} | {} | {:.1} µs | {:.1} µs | {:.1}× | {:.1}–{:.1}× |",
            r.label, r.bytes, r.reference_us, r.proxy_us, r.ratio, r.ratio_min, r.ratio_max
        );
    }
    let out = std::env::var_os("ZAI_BENCH_OUT").map_or_else(
        || {
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(
                    || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
                    std::path::PathBuf::from,
                )
                .join("bench-results")
        },
        std::path::PathBuf::from,
    );
    let json = serde_json::to_string_pretty(&rows).unwrap_or_default();
    if std::fs::create_dir_all(&out).is_ok() {
        let path = out.join("token_counting_ratios.json");
        match std::fs::write(&path, json) {
            Ok(()) => eprintln!("written to {}", path.display()),
            Err(e) => eprintln!("could not write {}: {e}", path.display()),
        }
    }
}

#[derive(serde::Serialize)]
struct RatioRow {
    label: String,
    bytes: usize,
    reference_us: f64,
    proxy_us: f64,
    ratio: f64,
    ratio_min: f64,
    ratio_max: f64,
}

/// Times `proxy` and `reference` back to back (each over a batch of at least ~5 ms), 15
/// times (7 for inputs where one reference call takes over 50 ms).
fn pairwise(
    label: &str,
    bytes: usize,
    proxy: impl Fn() -> usize,
    reference: impl Fn() -> usize,
) -> RatioRow {
    let time = |f: &dyn Fn() -> usize, iters: u32| {
        let start = std::time::Instant::now();
        for _ in 0..iters {
            std::hint::black_box(f());
        }
        start.elapsed().as_secs_f64() / f64::from(iters)
    };
    let one = time(&reference, 1);
    let rounds = if one > 0.05 { 7 } else { 15 };
    let iters_ref = ((0.005 / one).ceil() as u32).max(1);
    let iters_proxy = ((0.005 / time(&proxy, 1)).ceil() as u32).clamp(1, 100_000);
    let mut pairs = Vec::new();
    for round in 0..rounds {
        // Alternate which side goes first.
        let (p, r) = if round % 2 == 0 {
            let p = time(&proxy, iters_proxy);
            (p, time(&reference, iters_ref))
        } else {
            let r = time(&reference, iters_ref);
            (time(&proxy, iters_proxy), r)
        };
        pairs.push((p, r));
    }
    let mut ratios: Vec<f64> = pairs.iter().map(|(p, r)| r / p).collect();
    ratios.sort_by(f64::total_cmp);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    RatioRow {
        label: label.to_owned(),
        bytes,
        reference_us: median(pairs.iter().map(|(_, r)| r * 1e6).collect()),
        proxy_us: median(pairs.iter().map(|(p, _)| p * 1e6).collect()),
        ratio: ratios[ratios.len() / 2],
        ratio_min: ratios[0],
        ratio_max: ratios[ratios.len() - 1],
    }
}

criterion_group!(
    benches,
    interleaved_ratios,
    engines,
    pathological,
    requests,
    sse
);
criterion_main!(benches);
