//! An open-loop load generator: requests leave at fixed, pre-computed times whatever the
//! state of earlier ones, and every latency is measured from the *scheduled* send time, so a
//! slow server cannot hide its queueing (no coordinated omission).
//!
//! A plain OS thread keeps the schedule (`std::thread::sleep`, ~50–100 µs precise, unlike the
//! 1 ms tokio timer) and hands each request to a tokio runtime; the handover cost is the same
//! for direct and proxied runs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::runtime::Runtime;

use super::canned::{self, Api};
use super::stats::Latencies;
use super::upstream::LONG_STREAM_HEADER;

/// The HTTP/1.1 keep-alive client the generator uses.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A pooled loopback client with TCP_NODELAY (many idle connections kept).
pub fn client() -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(4096)
        .build(http)
}

/// One load step.
#[derive(Debug, Clone, Copy)]
pub struct RunSpec {
    /// Requests per second (evenly spaced).
    pub rate: f64,
    /// How long requests keep being sent.
    pub duration: Duration,
    /// Streaming (`"stream": true`) or complete responses.
    pub stream: bool,
    /// A request not finished after this counts as an error.
    pub timeout: Duration,
    /// Above this many unfinished requests, scheduled sends are dropped (counted) instead.
    pub max_in_flight: usize,
    /// A gap between two stream chunks longer than this counts as a stall.
    pub stall_after: Duration,
    /// Ask the mock for its long, slow streams (memory under many open streams).
    pub long_streams: bool,
    /// Minimum request body size (0: the ~400-byte default).
    pub body_bytes: usize,
}

/// What one step measured. Requests alternate between the Anthropic and OpenAI formats.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// Scheduled send → last byte of the body, successful requests.
    pub latency: Latencies,
    /// Scheduled send → first body chunk (streams).
    pub ttfb: Latencies,
    /// Time between two consecutive body chunks (streams).
    pub gap: Latencies,
    /// Requests sent.
    pub sent: u64,
    /// 2xx with a complete body.
    pub ok: u64,
    /// Non-2xx, transport errors, timeouts.
    pub errors: u64,
    /// Scheduled but not sent (too many unfinished).
    pub dropped: u64,
    /// Chunk gaps longer than `stall_after`.
    pub stalls: u64,
    /// How late the generator itself was, worst case (its own scheduling lag).
    pub worst_send_lag: Duration,
    /// Most requests unfinished at once.
    pub peak_in_flight: usize,
    /// Wall time from the first scheduled send to the last completion.
    pub wall: Duration,
}

impl Samples {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Self) {
        self.latency.merge(&other.latency);
        self.ttfb.merge(&other.ttfb);
        self.gap.merge(&other.gap);
        self.sent += other.sent;
        self.ok += other.ok;
        self.errors += other.errors;
        self.dropped += other.dropped;
        self.stalls += other.stalls;
        self.worst_send_lag = self.worst_send_lag.max(other.worst_send_lag);
        self.peak_in_flight = self.peak_in_flight.max(other.peak_in_flight);
        self.wall += other.wall;
    }

    /// Failed or dropped requests as a fraction of scheduled ones.
    pub fn failure_ratio(&self) -> f64 {
        let scheduled = self.sent + self.dropped;
        if scheduled == 0 {
            return 0.0;
        }
        (self.errors + self.dropped) as f64 / scheduled as f64
    }
}

/// The two prepared requests (URI and body per format).
struct Shots {
    uris: [Uri; 2],
    bodies: [Bytes; 2],
    long_streams: bool,
}

impl Shots {
    fn new(base_url: &str, spec: &RunSpec) -> anyhow::Result<Self> {
        let (stream, long_streams) = (spec.stream, spec.long_streams);
        let uri =
            |api: Api| -> anyhow::Result<Uri> { Ok(format!("{base_url}{}", api.path()).parse()?) };
        Ok(Self {
            uris: [uri(Api::Anthropic)?, uri(Api::OpenAi)?],
            bodies: [
                canned::request_body_sized(Api::Anthropic, stream, spec.body_bytes),
                canned::request_body_sized(Api::OpenAi, stream, spec.body_bytes),
            ],
            long_streams,
        })
    }

    fn request(&self, i: usize) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.bodies[i].clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uris[i].clone();
        let h = request.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        if self.long_streams {
            h.insert(LONG_STREAM_HEADER, HeaderValue::from_static("long"));
        }
        request
    }
}

/// Runs one open-loop step against `base_url` (`http://host:port`) and waits for every
/// request to finish (or time out). Blocks the calling thread, which keeps the schedule.
pub fn run(
    runtime: &Runtime,
    client: &HttpClient,
    base_url: &str,
    spec: &RunSpec,
) -> anyhow::Result<Samples> {
    let shots = Arc::new(Shots::new(base_url, spec)?);
    let samples = Arc::new(Mutex::new(Samples::default()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let total = (spec.rate * spec.duration.as_secs_f64()).round() as u64;
    let period = Duration::from_secs_f64(1.0 / spec.rate);
    let start = Instant::now() + Duration::from_millis(2);
    let mut handles = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut worst_lag = Duration::ZERO;
    let mut dropped = 0u64;
    let mut peak = 0usize;
    for i in 0..total {
        let scheduled = start + period.mul_f64(i as f64);
        let now = Instant::now();
        if scheduled > now {
            std::thread::sleep(scheduled - now);
        } else {
            worst_lag = worst_lag.max(now - scheduled);
        }
        if in_flight.load(Ordering::Relaxed) >= spec.max_in_flight {
            dropped += 1;
            continue;
        }
        peak = peak.max(in_flight.fetch_add(1, Ordering::Relaxed) + 1);
        let request = shots.request(usize::from(i % 2 == 1));
        let client = client.clone();
        let samples = Arc::clone(&samples);
        let in_flight = Arc::clone(&in_flight);
        let spec = *spec;
        handles.push(runtime.spawn(async move {
            let outcome = tokio::time::timeout(spec.timeout, exchange(&client, request)).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let mut s = samples.lock().unwrap_or_else(PoisonError::into_inner);
            s.sent += 1;
            match outcome {
                Ok(Some(exchange)) => exchange.record(scheduled, &spec, &mut s),
                Ok(None) | Err(_) => s.errors += 1,
            }
        }));
    }
    runtime.block_on(async {
        for handle in handles {
            let _ = handle.await;
        }
    });
    let wall = start.elapsed();
    let mut samples = Arc::try_unwrap(samples).map_or_else(
        |shared| {
            shared
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        },
        |m| m.into_inner().unwrap_or_else(PoisonError::into_inner),
    );
    samples.dropped += dropped;
    samples.worst_send_lag = worst_lag;
    samples.wall = wall;
    samples.peak_in_flight = peak;
    Ok(samples)
}

/// When the chunks of one successful response arrived.
struct Exchange {
    chunks: Vec<Instant>,
    done: Instant,
}

impl Exchange {
    fn record(&self, scheduled: Instant, spec: &RunSpec, s: &mut Samples) {
        s.ok += 1;
        s.latency
            .record(self.done.saturating_duration_since(scheduled));
        if spec.stream {
            if let Some(first) = self.chunks.first() {
                s.ttfb.record(first.saturating_duration_since(scheduled));
            }
            for pair in self.chunks.windows(2) {
                let gap = pair[1].saturating_duration_since(pair[0]);
                s.gap.record(gap);
                if gap > spec.stall_after {
                    s.stalls += 1;
                }
            }
        }
    }
}

/// Sends one request and reads its whole body; `None` on any failure or a non-2xx status.
async fn exchange(client: &HttpClient, request: Request<Full<Bytes>>) -> Option<Exchange> {
    let response = client.request(request).await.ok()?;
    let ok = response.status().is_success();
    let mut body = response.into_body();
    let mut chunks = Vec::new();
    while let Some(frame) = body.frame().await {
        if frame.ok()?.is_data() {
            chunks.push(Instant::now());
        }
    }
    let done = Instant::now();
    ok.then_some(Exchange { chunks, done })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_ratio_counts_errors_and_drops() {
        let s = Samples {
            sent: 98,
            errors: 1,
            dropped: 2,
            ..Samples::default()
        };
        assert!((s.failure_ratio() - 0.03).abs() < 1e-9);
        assert!(Samples::default().failure_ratio().abs() < 1e-12);
    }
}
