//! The fuzz targets: one plain function per target, fed the fuzzer's bytes. A target panics
//! (an `assert!`) when a property fails; a panic inside the product code is a defect too
//! (input must never panic the proxy or the promoter).
//!
//! Shared by `cargo fuzz` (`fuzz/fuzz_targets/<name>.rs`) and by the seed replay that runs
//! with the workspace's `cargo test` (`e2e/tests/fuzz_corpus.rs` includes this file), so the
//! committed seeds (`fuzz/seeds/<name>/`) go through exactly the code the fuzzer ran.
//!
//! | target | drives | checks |
//! | --- | --- | --- |
//! | [`sse_usage`] | `tokens::sse::SseParser`, `tokens::usage::{StreamUsage, body_usage}` | same events and usage whole, byte by byte, at every cut and in random chunks; events equal a reference SSE reader; buffer bounded |
//! | [`request_peek`] | `tokens::input::{RequestDoc, peek_request}`, `tokens::hooks::read_request`, `TokenCounter::input_tokens` | the one-parse tree equals `serde_json::Value`; model/stream equal the minimal parse; texts and token count equal the `Value` walk |
//! | [`zai_error_classify`] | `zai_codes::{classify, parse_retry_after_header, wait_before_retry, backoff}` | class follows the code; codes, resets and `retry_after` in their documented ranges; waits computed for every class |
//! | [`prom_text`] | `signals::scrape::{parse_exposition, ScrapeStore::measure, canary_alert_conditions}` | every reading is a finite value, sorted buckets or an explicit non-answer |
//! | [`prom_api`] | `signals::prometheus::{query_reading, alerts_from_answer}` | the same, for `/api/v1/query` and `/api/v1/alerts` answers under several HTTP statuses |

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use zai_promoter::signals::canary_rules::CanaryRules;
use zai_promoter::signals::prometheus::{alerts_from_answer, query_reading};
use zai_promoter::signals::scrape::{ScrapeStore, canary_alert_conditions, parse_exposition};
use zai_promoter::{AlertState, PodInfo, Reading, Signal, SignalQuery, Variant};
use zai_proxy::routes::WireFormat;
use zai_proxy::tokens::hooks::{InputSource, read_request};
use zai_proxy::tokens::input::peek_request;
use zai_proxy::tokens::input::{Json, RequestDoc, visit_input_texts};
use zai_proxy::tokens::sse::{DEFAULT_MAX_EVENT_BYTES, SseParser};
use zai_proxy::tokens::usage::body_usage;
use zai_proxy::tokens::{Encoding, InputMethod, StreamUsage, TokenCounter, UsageSource};
use zai_proxy::zai_codes::{
    self, ZaiErrorClass, backoff, classify, parse_retry_after_header, wait_before_retry,
};

/// A fuzz target's body: panics when the input breaks a property.
pub type Target = fn(&[u8]);

/// Every target by name: the name of its `cargo fuzz` binary and of its seed directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("sse_usage", sse_usage),
    ("request_peek", request_peek),
    ("zai_error_classify", zai_error_classify),
    ("prom_text", prom_text),
    ("prom_api", prom_api),
];

/// The token counter the proxy would use (`cl100k_base`, no byte limit), loaded once.
fn counter() -> &'static TokenCounter {
    static COUNTER: OnceLock<TokenCounter> = OnceLock::new();
    COUNTER.get_or_init(|| {
        TokenCounter::load(Encoding::Cl100kBase, usize::MAX).expect("cl100k_base is compiled in")
    })
}

/// A small deterministic generator (xorshift64*) seeded from the input, for chunk sizes:
/// every input is cut its own way, and a crash reproduces from the input alone.
struct Rng(u64);

impl Rng {
    fn from_input(data: &[u8]) -> Self {
        // FNV-1a; never zero (xorshift would stay at zero).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in data {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Rng(h | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `data` cut at pseudo-random places, empty chunks included (a body frame can be empty).
fn random_chunks<'a>(data: &'a [u8], rng: &mut Rng) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut at = 0;
    let mut rounds = 0;
    while at < data.len() && rounds < 4 * data.len() + 16 {
        rounds += 1;
        let left = data.len() - at;
        let n = match rng.below(5) {
            0 => 0,
            1 => 1,
            2 => rng.below(4),
            3 => rng.below(32),
            _ => rng.below(left + 1),
        }
        .min(left);
        chunks.push(&data[at..at + n]);
        at += n;
    }
    chunks.push(&data[at..]);
    if rng.below(2) == 0 {
        chunks.push(&[]);
    }
    chunks
}

/// The events of an SSE stream, fed in `chunks` to a reader capped at `cap` bytes per event,
/// and the number of events it skipped as too large. Checks the buffer bound on every feed.
fn sse_events(cap: usize, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, u64) {
    let mut parser = SseParser::new(cap);
    let mut events = Vec::new();
    let bound = 2 * cap.max(1) + 32;
    for chunk in chunks {
        parser.feed(chunk, &mut |d| events.push(d.to_vec()));
        assert!(
            parser.buffered_bytes() <= bound,
            "SSE reader holds {} bytes, cap {cap}",
            parser.buffered_bytes()
        );
    }
    parser.finish(&mut |d| events.push(d.to_vec()));
    (events, parser.skipped_events())
}

/// A reference SSE reader for a whole stream (no cap), written from the specification:
/// lines end at CRLF, LF or CR; a `data` field (`data`, `data:v`, `data: v`) appends its
/// value; a blank line (or the end of the stream) dispatches the event if it had data.
fn reference_events(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<&[u8]> = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < stream.len() {
        match stream[i] {
            b'\n' => {
                lines.push(&stream[start..i]);
                i += 1;
                start = i;
            }
            b'\r' => {
                lines.push(&stream[start..i]);
                i += if stream.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < stream.len() {
        lines.push(&stream[start..]);
    }
    lines.push(b"");
    let mut events = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    let mut has_data = false;
    for line in lines {
        if line.is_empty() {
            if has_data {
                events.push(std::mem::take(&mut data));
            }
            data.clear();
            has_data = false;
            continue;
        }
        let Some(rest) = line.strip_prefix(b"data") else {
            continue;
        };
        let value = match rest.split_first() {
            None => rest,
            Some((b':', v)) => v.strip_prefix(b" ").unwrap_or(v),
            Some(_) => continue,
        };
        if has_data {
            data.push(b'\n');
        }
        data.extend_from_slice(value);
        has_data = true;
    }
    events
}

/// What a usage tracker ends with after `chunks`.
fn stream_usage(chunks: &[&[u8]]) -> zai_proxy::tokens::UsageReport {
    let engine = counter().engine();
    let mut usage = StreamUsage::new();
    for chunk in chunks {
        usage.feed(chunk, engine);
        assert!(usage.buffered_bytes() <= 2 * DEFAULT_MAX_EVENT_BYTES + 32);
    }
    usage.finish(engine, Some(7))
}

/// The proxy's SSE reader and usage extraction (both wire formats: Anthropic named events
/// with `message_start`/`message_delta` usage, OpenAI/Z.AI chunks with a final `usage`).
///
/// `data` is a response stream (or body). Properties:
/// * the events are the same whole, byte by byte, cut once at every byte (inputs up to
///   256 bytes) and in pseudo-random chunks with empty ones, for the default cap and for a
///   small cap chosen from the input (1…64 bytes: oversized events are skipped the same way
///   however the stream is cut), and the buffer never exceeds twice the cap;
/// * with the default cap the events equal a reference reader written from the SSE spec;
/// * the usage tracker ends with the same report whole, byte by byte, at every cut (inputs
///   up to 128 bytes) and in random chunks;
/// * `body_usage` of a body that is an SSE stream equals the stream's report; its ratios are
///   finite and its log line renders.
pub fn sse_usage(data: &[u8]) {
    let mut rng = Rng::from_input(data);
    let bytes: Vec<&[u8]> = data.chunks(1).collect();

    let small_cap = [1, 2, 5, 8, 16, 64][rng.below(6)];
    for cap in [DEFAULT_MAX_EVENT_BYTES, small_cap] {
        let whole = sse_events(cap, &[data]);
        if cap == DEFAULT_MAX_EVENT_BYTES {
            assert_eq!(whole.0, reference_events(data), "reference reader");
            assert_eq!(whole.1, 0);
        }
        assert_eq!(sse_events(cap, &bytes), whole, "byte by byte, cap {cap}");
        if data.len() <= 256 {
            for cut in 0..=data.len() {
                let (a, b) = data.split_at(cut);
                assert_eq!(sse_events(cap, &[a, b]), whole, "cut at {cut}, cap {cap}");
            }
        }
        for _ in 0..4 {
            let chunks = random_chunks(data, &mut rng);
            assert_eq!(sse_events(cap, &chunks), whole, "{chunks:?}, cap {cap}");
        }
    }

    let whole = stream_usage(&[data]);
    assert_eq!(stream_usage(&bytes), whole, "usage byte by byte");
    if data.len() <= 128 {
        for cut in 0..=data.len() {
            let (a, b) = data.split_at(cut);
            assert_eq!(stream_usage(&[a, b]), whole, "usage cut at {cut}");
        }
    }
    for _ in 0..2 {
        let chunks = random_chunks(data, &mut rng);
        assert_eq!(stream_usage(&chunks), whole, "usage in {chunks:?}");
    }
    assert_eq!(
        whole.source,
        UsageSource::Stream {
            from_api: whole.api.is_present()
        }
    );

    let body = body_usage(data, counter().engine(), Some(7));
    let trimmed = data.trim_ascii_start();
    if trimmed.starts_with(b"data:") || trimmed.starts_with(b"event:") {
        let source = if whole.api.is_present() {
            UsageSource::Api
        } else {
            UsageSource::Estimated
        };
        assert_eq!(body, zai_proxy::tokens::UsageReport { source, ..whole });
    }
    for report in [&whole, &body] {
        for ratio in [report.input_ratio(), report.output_ratio()]
            .into_iter()
            .flatten()
        {
            assert!(ratio.is_finite() && ratio > 0.0, "ratio {ratio}");
        }
        let _ = report.log_line();
    }
}

/// The proxy's request-body read: the one borrowed parse (`RequestDoc`) against the
/// minimal `model`/`stream` parse and `serde_json::Value`.
///
/// `data` is a request body. Properties: the borrowed tree converts to exactly the `Value`
/// serde_json parses (or both fail); `model`/`stream` equal `peek_request` for both wire
/// formats (and `Other` reads nothing); `read_request` gives the same `model`/`stream` with
/// counting on (one parse) and off (minimal parse); the input texts are the ones the walk
/// over `Value` visits, and `TokenCounter::input_tokens` is the sum of their counts.
pub fn request_peek(data: &[u8]) {
    let doc = RequestDoc::parse(data);
    let value = serde_json::from_slice::<Value>(data).ok();
    assert_eq!(doc.json.as_ref().map(Json::to_value), value, "same tree");

    let peeked = (doc.model.clone(), doc.stream);
    for format in [WireFormat::Anthropic, WireFormat::OpenAi] {
        assert_eq!(peek_request(format, data), peeked, "peek, {format:?}");
        for counting in [Some(counter()), None] {
            let read = read_request(format, data, counting);
            assert_eq!(
                (read.model, read.stream),
                peeked,
                "read_request, {format:?}"
            );
            if let (Some(_), InputSource::Texts(texts)) = (counting, &read.input) {
                assert_eq!(texts.is_some(), doc.input_texts().is_some());
            }
        }
    }
    assert_eq!(peek_request(WireFormat::Other, data), (None, false));

    let mut expected = Vec::new();
    let is_object = value
        .as_ref()
        .is_some_and(|v| visit_input_texts(v, &mut |t| expected.push(t.to_owned())));
    let texts = doc.input_texts();
    assert_eq!(texts.is_some(), is_object, "object");
    let got: Vec<&str> = texts.iter().flat_map(|t| t.iter()).collect();
    assert_eq!(got, expected, "texts");

    let estimate = counter().input_tokens(data);
    if is_object {
        assert_eq!(estimate.method, InputMethod::Counted);
        let sum: u64 = expected.iter().map(|t| counter().count(t) as u64).sum();
        assert_eq!(estimate.tokens, sum, "input estimate");
    } else {
        assert_eq!(estimate.method, InputMethod::Unparseable);
        assert_eq!(estimate.tokens, 0);
    }
}

/// Z.AI 429 classification and the retry wait computed from it.
///
/// `data` is `Retry-After header value\n429 body` when it holds a line break, else the body
/// alone. Properties: the class is the one of the code found; a code is 1–8 ASCII digits and
/// its label is a known code or `other`; a reset lies in 2001…2603; a body `retry_after` is in
/// (0 s, 7 days]; an oversize body is `unknown`; a header value parses only as positive whole
/// seconds; the wait before a retry is computed for every class, base and hint without
/// overflow, and the derived `Retry-After` and reset header render for any `now`.
pub fn zai_error_classify(data: &[u8]) {
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (Some(&data[..i]), &data[i + 1..]),
        None => (None, data),
    };
    let header_wait = header
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(parse_retry_after_header);
    if let Some(wait) = header_wait {
        assert!(wait >= Duration::from_secs(1));
    }

    let err = classify(body, false);
    let same = classify(body, false);
    assert_eq!(err, same, "pure");
    let oversize = classify(body, true);
    assert_eq!(
        (
            oversize.class,
            oversize.code,
            oversize.reset_at,
            oversize.retry_after
        ),
        (ZaiErrorClass::Unknown, None, None, None)
    );
    if let Some(code) = &err.code {
        assert!((1..=8).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit()));
        let label = err.code_label();
        assert!(
            label == "other" || label == code,
            "label {label} for {code}"
        );
    } else {
        assert_eq!(err.class, ZaiErrorClass::Unknown);
        assert_eq!(err.code_label(), "other");
    }
    let relabelled = classify(
        format!("{{\"code\":\"{}\"}}", err.code.as_deref().unwrap_or("none")).as_bytes(),
        false,
    );
    assert_eq!(relabelled.class, err.class, "class follows the code");
    if let Some(reset) = err.reset_at {
        let secs = reset.timestamp();
        assert!(
            (1_000_000_000..=20_000_000_000).contains(&secs),
            "reset {reset}"
        );
        let _ = zai_codes::reset_header_value(reset);
    }
    if let Some(ra) = err.retry_after {
        assert!(ra > Duration::ZERO && ra <= Duration::from_secs(7 * 24 * 3600));
    }
    let _ = err.policy();

    let nows = [
        DateTime::<Utc>::MIN_UTC,
        DateTime::<Utc>::UNIX_EPOCH,
        DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default(),
        DateTime::<Utc>::MAX_UTC,
    ];
    for now in nows {
        if let Some(secs) = err.derived_retry_after(now) {
            assert!(secs > 0);
        }
    }

    let mut rng = Rng::from_input(data);
    let classes = [
        ZaiErrorClass::Concurrency,
        ZaiErrorClass::Frequency,
        ZaiErrorClass::Quota,
        ZaiErrorClass::ModelCongestion,
        ZaiErrorClass::DailyLimit,
        ZaiErrorClass::PlanExpired,
        ZaiErrorClass::FairUse,
        ZaiErrorClass::Unknown,
    ];
    let base_delays = [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_millis(500),
        Duration::from_secs(60),
    ];
    for class in classes.into_iter().chain([err.class]) {
        for base_delay in base_delays {
            let retry = [1, 2, 5, 31, 32, 200][rng.below(6)];
            let base = backoff(base_delay, retry);
            let u = [0.0, 0.5, 0.999, 1.0, -1.0, f64::NAN][rng.below(6)];
            let wait = wait_before_retry(class, base, header_wait, err.retry_after, u);
            if matches!(class, ZaiErrorClass::Concurrency) {
                assert!(wait >= base);
            }
        }
    }
}

/// Every signal the checks ask for, with the quantiles the checks and alerts use.
fn all_signals() -> Vec<Signal> {
    let mut signals = vec![
        Signal::RequestRate,
        Signal::RequestCount,
        Signal::ErrorRatio,
        Signal::SuccessRatio,
        Signal::TokensIncrease,
        Signal::TokenSeries,
        Signal::ErrorCount,
        Signal::LatencyBuckets,
        Signal::UpstreamAuthFailures,
        Signal::StreamCutCount,
    ];
    for permille in [0, 500, 950, 990, 1000, 1500] {
        signals.push(Signal::LatencyQuantile { permille });
        signals.push(Signal::TokenCountQuantile { permille });
    }
    signals
}

/// The contract of [`Reading`]: a value is finite, buckets are sorted by bound with no NaN
/// bound and finite, non-negative counts. `local`: the promoter computed the reading itself
/// (scrape source), so a ratio is also within 0…1 (from Prometheus it is what PromQL said).
fn check_reading(signal: Signal, reading: &Reading, local: bool) {
    match reading {
        Reading::Value(v) => {
            assert!(v.is_finite(), "{signal}: value {v}");
            if local && matches!(signal, Signal::ErrorRatio | Signal::SuccessRatio) {
                assert!((0.0..=1.0).contains(v), "{signal}: ratio {v}");
            }
        }
        Reading::Buckets(b) => {
            for (le, count) in b {
                assert!(!le.is_nan(), "{signal}: NaN bound in {b:?}");
                assert!(
                    count.is_finite() && *count >= 0.0,
                    "{signal}: count in {b:?}"
                );
            }
            assert!(
                b.windows(2).all(|w| w[0].0 <= w[1].0),
                "{signal}: unsorted {b:?}"
            );
        }
        Reading::NoData(_) | Reading::Error(_) => {}
    }
}

/// A canary pod for the local alert evaluation.
fn pod(name: &str, variant: Variant, ready: bool) -> PodInfo {
    PodInfo {
        name: name.to_owned(),
        variant,
        phase: "Running".to_owned(),
        ready,
        restarts: 0,
        waiting_reason: None,
        version: None,
        image: "zai-proxy".to_owned(),
        base_url: None,
        started_at: None,
    }
}

/// The promoter's scrape source: Prometheus text exposition (what each pod's `/metrics`
/// answers), parsed and turned into every signal.
///
/// `data` is up to four scrapes of one pod separated by `# EOF` lines (one document is one
/// scrape after an empty one). Each is parsed for both variants and added one minute apart
/// to a store; then every signal is measured (canary over 30 s and 5 min, production over 1 h),
/// and the four canary alerts are evaluated. Properties: no panic, and every reading keeps
/// the [`Reading`] contract (finite values, ratios within 0…1, sorted buckets).
pub fn prom_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let t0 = DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default();
    let mut store = ScrapeStore::new(Duration::from_secs(3600));
    let docs: Vec<&str> = text.split("# EOF").take(4).collect();
    for variant in Variant::ALL {
        let pod_name = format!("zai-proxy-{}", variant.label());
        let mut at = t0;
        if docs.len() == 1 {
            store.add(&pod_name, variant, at, Default::default());
        }
        for doc in &docs {
            at += TimeDelta::seconds(60);
            match parse_exposition(doc, variant) {
                Ok(scrape) => {
                    for b in [&scrape.latency, &scrape.token_count] {
                        assert!(b.windows(2).all(|w| w[0].0.total_cmp(&w[1].0).is_le()));
                    }
                    store.add(&pod_name, variant, at, scrape);
                }
                Err(e) => assert!(!e.is_empty()),
            }
        }
    }
    let now = t0 + TimeDelta::seconds(60 * docs.len() as i64);
    for (variant, windows) in [
        (Variant::Test, &[30, 300][..]),
        (Variant::Production, &[3600]),
    ] {
        for window in windows.iter().copied().map(Duration::from_secs) {
            for signal in all_signals() {
                let q = SignalQuery::new(signal, variant, window);
                check_reading(signal, &store.measure(&q, now), true);
                let _ = ScrapeStore::describe(&q);
            }
        }
    }
    let pods = [
        pod("zai-proxy-test", Variant::Test, true),
        pod("zai-proxy-test-2", Variant::Test, false),
    ];
    for (replicas, pods) in [(1, &pods[..]), (2, &pods[1..]), (0, &[][..])] {
        let conditions = canary_alert_conditions(
            &store,
            replicas,
            pods,
            now,
            Duration::from_secs(300),
            1,
            CanaryRules::embedded(),
        );
        assert_eq!(conditions.len(), 4);
    }
}

/// The promoter's Prometheus source: answers of the HTTP API.
///
/// `data` is the body of an answer (read as reqwest reads text: lossy UTF-8), tried as the
/// answer to an instant query (a sample, and histogram buckets) and as the answer of
/// `/api/v1/alerts`, under the statuses 200, 204, 400, 422 and 503. Properties: no panic;
/// readings keep the
/// [`Reading`] contract; a non-2xx status never gives a value, buckets or alerts; alerts
/// from the API are pending or firing and not evaluated locally.
pub fn prom_api(data: &[u8]) {
    let body = String::from_utf8_lossy(data);
    for status in [200, 204, 400, 422, 503] {
        let success = (200..300).contains(&status);
        // `query_reading` reads buckets for LatencyBuckets and one sample for the others.
        for signal in [Signal::ErrorRatio, Signal::LatencyBuckets] {
            let reading = query_reading(signal, status, &body);
            check_reading(signal, &reading, false);
            if !success {
                assert!(
                    matches!(reading, Reading::Error(_)),
                    "{status}: {reading:?}"
                );
            }
            if signal != Signal::LatencyBuckets {
                assert!(!matches!(reading, Reading::Buckets(_)));
            }
        }
        match alerts_from_answer(status, &body) {
            Ok(alerts) => {
                assert!(success);
                for alert in alerts {
                    assert!(!alert.evaluated_locally);
                    assert!(matches!(
                        alert.state,
                        AlertState::Pending | AlertState::Firing
                    ));
                }
            }
            Err(e) => assert!(!e.is_empty()),
        }
    }
}
