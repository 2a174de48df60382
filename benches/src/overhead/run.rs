//! The bench plan: options, the rig (mock upstream + proxy child + client), and the phases
//! (rates, streams, sustained-rate search, memory under concurrent streams).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request};
use tokio::runtime::Runtime;

use super::canned::{self, Api};
use super::loadgen::{self, HttpClient, RunSpec, Samples};
use super::machine::{self, MachineInfo, Memory};
use super::proxy_process::ProxyProcess;
use super::report::{self, Comparison, MemoryReport, Report, SustainStep, Sustained};
use super::upstream::{MockUpstream, UpstreamSettings};

/// Bound on added p99 for the sustained-rate search.
pub const SUSTAIN_BOUND_MS: f64 = 10.0;

/// What to run and for how long.
#[derive(Debug, Clone)]
pub struct Options {
    /// Short run (`--quick` or `ZAI_BENCH_QUICK=1`).
    pub quick: bool,
    /// Where the JSON and the proxy log go.
    pub out_dir: PathBuf,
    /// The mock upstream.
    pub upstream: UpstreamSettings,
    /// Non-streaming rates.
    pub rates: Vec<f64>,
    /// Measured time per mode per round.
    pub step: Duration,
    /// Rounds (each: direct then proxied, order flipped every round).
    pub rounds: usize,
    /// Unmeasured warm-up per mode before each rate.
    pub warmup: Duration,
    /// Streams per second for the streaming comparison.
    pub stream_rate: f64,
    /// Rates tried when searching for the highest sustained one.
    pub sustain_rates: Vec<f64>,
    /// Measured time per mode per sustain step.
    pub sustain_step: Duration,
    /// Streams held open at once for the memory check (0: skip).
    pub concurrent_streams: usize,
    /// Over how long they are opened.
    pub concurrent_ramp: Duration,
    /// Minimum request body size (`ZAI_BENCH_BODY_BYTES`; default ~400 bytes).
    pub body_bytes: usize,
}

impl Options {
    /// Defaults (a few minutes), shortened by `--quick` / `ZAI_BENCH_QUICK=1`; the output
    /// directory is `ZAI_BENCH_OUT`, else `$CARGO_TARGET_DIR/bench-results`, else
    /// `<workspace>/target/bench-results`.
    pub fn from_args_and_env(args: &[String]) -> Self {
        let quick = args.iter().any(|a| a == "--quick")
            || std::env::var("ZAI_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let out_dir = std::env::var_os("ZAI_BENCH_OUT").map_or_else(
            || {
                std::env::var_os("CARGO_TARGET_DIR")
                    .map_or_else(
                        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
                        PathBuf::from,
                    )
                    .join("bench-results")
            },
            PathBuf::from,
        );
        let upstream = UpstreamSettings {
            delay: Duration::from_millis(1),
            stream_deltas: 20,
            chunk_interval: Duration::from_millis(5),
            long_deltas: if quick { 30 } else { 50 },
            long_interval: Duration::from_millis(100),
        };
        let secs =
            |full: f64, short: f64| Duration::from_secs_f64(if quick { short } else { full });
        Self {
            quick,
            out_dir,
            upstream,
            rates: vec![100.0, 500.0, 1000.0, 2000.0],
            step: secs(2.5, 1.5),
            rounds: if quick { 2 } else { 4 },
            warmup: secs(1.0, 0.5),
            stream_rate: 100.0,
            sustain_rates: vec![3000.0, 4000.0, 5000.0, 6000.0, 8000.0, 10000.0],
            sustain_step: secs(3.0, 1.0),
            concurrent_streams: 1000,
            concurrent_ramp: secs(2.0, 1.0),
            body_bytes: std::env::var("ZAI_BENCH_BODY_BYTES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }
    }
}

/// One direct-vs-proxied comparison.
#[derive(Debug, Clone, Copy)]
pub struct ComparePlan {
    /// Offered rate, req/s.
    pub rate: f64,
    /// Streaming requests.
    pub stream: bool,
    /// Measured time per mode per round.
    pub step: Duration,
    /// Rounds (order flipped every round).
    pub rounds: usize,
    /// Unmeasured warm-up per mode.
    pub warmup: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Stall threshold for stream chunk gaps.
    pub stall_after: Duration,
}

/// Mock upstream, proxy child, client and runtime, started once per run.
pub struct Rig {
    /// Runtime the client runs on.
    pub runtime: Runtime,
    /// Pooled client.
    pub client: HttpClient,
    /// The mock.
    pub upstream: MockUpstream,
    /// The proxy child.
    pub proxy: ProxyProcess,
    /// Minimum request body size.
    pub body_bytes: usize,
}

impl Rig {
    /// Starts the mock and the proxy (waits for readiness).
    pub fn start(options: &Options) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&options.out_dir)?;
        let upstream = MockUpstream::start(options.upstream)?;
        let proxy = ProxyProcess::spawn(
            &upstream.url(),
            &options.out_dir.join("proxy_overhead.proxy.log"),
        )?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("loadgen")
            .enable_all()
            .build()?;
        let client = {
            let _guard = runtime.enter();
            loadgen::client()
        };
        Ok(Self {
            runtime,
            client,
            upstream,
            proxy,
            body_bytes: options.body_bytes,
        })
    }

    /// One complete non-streaming request, closed loop (criterion's round trip).
    pub fn round_trip(&self, via_proxy: bool, api: Api) -> anyhow::Result<Bytes> {
        let base = if via_proxy {
            self.proxy.url()
        } else {
            self.upstream.url()
        };
        let mut request = Request::new(Full::new(canned::request_body(api, false)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = format!("{base}{}", api.path()).parse()?;
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.runtime.block_on(async {
            let response = self.client.request(request).await?;
            anyhow::ensure!(
                response.status().is_success(),
                "status {}",
                response.status()
            );
            Ok(response.into_body().collect().await?.to_bytes())
        })
    }

    fn step(&self, via_proxy: bool, spec: &RunSpec) -> anyhow::Result<Samples> {
        let base = if via_proxy {
            self.proxy.url()
        } else {
            self.upstream.url()
        };
        loadgen::run(&self.runtime, &self.client, &base, spec)
    }

    /// Direct and proxied at `plan.rate`, alternating (D,P then P,D ...), after a warm-up of
    /// each.
    pub fn compare(&self, plan: &ComparePlan) -> anyhow::Result<Comparison> {
        let ComparePlan {
            rate,
            stream,
            step,
            rounds,
            warmup,
            timeout,
            stall_after,
        } = *plan;
        let spec = |duration| RunSpec {
            rate,
            duration,
            stream,
            timeout,
            max_in_flight: 4096,
            stall_after,
            long_streams: false,
            body_bytes: self.body_bytes,
        };
        if !warmup.is_zero() {
            self.step(false, &spec(warmup))?;
            self.step(true, &spec(warmup))?;
        }
        let mut direct = Samples::default();
        let mut proxied = Samples::default();
        let mut proxy_cpu = Duration::ZERO;
        for round in 0..rounds {
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for via_proxy in order {
                let cpu_before = machine::cpu_time(self.proxy.pid());
                let samples = self.step(via_proxy, &spec(step))?;
                if via_proxy {
                    if let (Some(before), Some(after)) =
                        (cpu_before, machine::cpu_time(self.proxy.pid()))
                    {
                        proxy_cpu += after.saturating_sub(before);
                    }
                    proxied.merge(&samples);
                } else {
                    direct.merge(&samples);
                }
            }
        }
        let mut c = Comparison::new(rate, stream, &direct, &proxied);
        c.proxy_rss_mib = self.proxy.memory().map(|m| m.rss_mib);
        if proxied.sent > 0 && !proxy_cpu.is_zero() {
            c.proxy_cpu_us_per_request = Some(proxy_cpu.as_secs_f64() * 1e6 / proxied.sent as f64);
        }
        c.load_average_1m = machine::load_average()[0];
        Ok(c)
    }
}

/// The step of the sustained-rate search at `rate`: pass or not, and whether the direct
/// baseline already failed (pure).
pub fn judge_sustain(c: Comparison) -> SustainStep {
    let pass = c.added_latency.p99_ms < SUSTAIN_BOUND_MS && c.proxied.failure_ratio() < 0.001;
    let baseline_failed =
        c.direct.failure_ratio() >= 0.001 || c.direct.latency.p99_ms >= 10.0 * SUSTAIN_BOUND_MS;
    SustainStep {
        comparison: c,
        pass,
        baseline_failed,
    }
}

/// The highest rate with added p99 under the bound: the rate table's steps first; if the
/// highest of them passes, `sustain_rates` upward until one fails; then halving the interval
/// between the highest pass and the lowest failure above it a few times.
fn sustain(
    rig: &Rig,
    options: &Options,
    table: &[Comparison],
    log: &mut impl FnMut(&str),
) -> anyhow::Result<Sustained> {
    let mut steps: Vec<SustainStep> = table.iter().cloned().map(judge_sustain).collect();
    // Noise on a shared machine can fail a low rate and pass a higher one: the result is the
    // highest passing rate, and the search refines above it.
    let mut pass = steps
        .iter()
        .filter(|s| s.pass)
        .map(|s| s.comparison.rate)
        .fold(0.0f64, f64::max);
    let mut fail: Option<(f64, bool)> = steps
        .iter()
        .filter(|s| !s.pass && s.comparison.rate > pass)
        .min_by(|a, b| a.comparison.rate.total_cmp(&b.comparison.rate))
        .map(|s| (s.comparison.rate, s.baseline_failed));
    let measure = |rate: f64, log: &mut dyn FnMut(&str)| -> anyhow::Result<SustainStep> {
        let c = rig.compare(&ComparePlan {
            rate,
            stream: false,
            step: options.sustain_step,
            rounds: 1,
            warmup: Duration::from_millis(300),
            timeout: Duration::from_secs(5),
            stall_after: Duration::from_secs(1),
        })?;
        let step = judge_sustain(c);
        log(&format!(
            "  sustain {rate} req/s: added p99 {:+.3} ms, failures direct {:.4} proxied {:.4} -> {}",
            step.comparison.added_latency.p99_ms,
            step.comparison.direct.failure_ratio(),
            step.comparison.proxied.failure_ratio(),
            if step.pass { "pass" } else { "fail" }
        ));
        Ok(step)
    };
    if fail.is_none() {
        let above = pass;
        for &rate in options.sustain_rates.iter().filter(|&&r| r > above) {
            let step = measure(rate, log)?;
            let outcome = (step.pass, step.baseline_failed);
            steps.push(step);
            if outcome.0 {
                pass = rate;
            } else {
                fail = Some((rate, outcome.1));
                break;
            }
        }
    }
    let bisections = if options.quick { 2 } else { 3 };
    for _ in 0..bisections {
        let Some((failed, _)) = fail else { break };
        let mid = ((pass + failed) / 2.0 / 50.0).round() * 50.0;
        if mid <= pass || mid >= failed {
            break;
        }
        let step = measure(mid, log)?;
        let outcome = (step.pass, step.baseline_failed);
        steps.push(step);
        if outcome.0 {
            pass = mid;
        } else {
            fail = Some((mid, outcome.1));
        }
    }
    let stopped_because = match fail {
        None => {
            format!("every rate tried passed (up to {pass} req/s); the bench did not go higher")
        }
        Some((rate, true)) => format!(
            "at {rate} req/s the direct baseline itself failed: the shared 2-core rig (load generator + mock + proxy) is saturated"
        ),
        Some((rate, false)) => format!(
            "at {rate} req/s the added p99 went over {SUSTAIN_BOUND_MS} ms or failures over 0.1 %"
        ),
    };
    Ok(Sustained {
        added_p99_bound_ms: SUSTAIN_BOUND_MS,
        steps,
        highest_passing_rate: (pass > 0.0).then_some(pass),
        stopped_because,
    })
}

/// Opens `options.concurrent_streams` long streams through the proxy and samples its RSS
/// while they are open.
fn concurrent_streams(
    rig: &Rig,
    options: &Options,
    memory: &mut MemoryReport,
) -> anyhow::Result<()> {
    let n = options.concurrent_streams;
    if n == 0 {
        return Ok(());
    }
    let spec = RunSpec {
        rate: n as f64 / options.concurrent_ramp.as_secs_f64(),
        duration: options.concurrent_ramp,
        stream: true,
        timeout: Duration::from_secs(120),
        max_in_flight: n + 16,
        stall_after: options.upstream.long_interval * 10,
        long_streams: true,
        body_bytes: 0,
    };
    let pid = rig.proxy.pid();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut peak = 0.0f64;
            while !done.load(Ordering::Relaxed) {
                if let Some(m) = Memory::of(pid) {
                    peak = peak.max(m.rss_mib);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        })
    };
    let samples = loadgen::run(&rig.runtime, &rig.client, &rig.proxy.url(), &spec);
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0.0);
    let samples = samples?;
    memory.concurrent_streams = n;
    memory.concurrent_streams_peak_open = samples.peak_in_flight;
    memory.concurrent_streams_ok = samples.ok;
    memory.concurrent_streams_stalls = samples.stalls;
    memory.concurrent_peak_rss_mib = peak;
    Ok(())
}

/// Runs every phase and returns the report; `log` receives progress lines.
pub fn run_all(rig: &Rig, options: &Options, mut log: impl FnMut(&str)) -> anyhow::Result<Report> {
    let machine = MachineInfo::read();
    let mut memory = MemoryReport {
        idle_rss_mib: rig.proxy.memory().map_or(0.0, |m| m.rss_mib),
        ..MemoryReport::default()
    };
    log(&format!(
        "proxy ready (pid {}), idle RSS {:.1} MiB",
        rig.proxy.pid(),
        memory.idle_rss_mib
    ));

    let mut rates = Vec::new();
    for &rate in &options.rates {
        let c = rig.compare(&ComparePlan {
            rate,
            stream: false,
            step: options.step,
            rounds: options.rounds,
            warmup: options.warmup,
            timeout: Duration::from_secs(30),
            stall_after: Duration::from_secs(1),
        })?;
        log(&format!(
            "  {rate} req/s: p99 direct {:.3} ms, proxied {:.3} ms, added {:+.3} ms",
            c.direct.latency.p99_ms, c.proxied.latency.p99_ms, c.added_latency.p99_ms
        ));
        rates.push(c);
    }

    let streams = rig.compare(&ComparePlan {
        rate: options.stream_rate,
        stream: true,
        step: options.step,
        rounds: options.rounds,
        warmup: options.warmup,
        timeout: Duration::from_secs(30),
        stall_after: options.upstream.chunk_interval * 10,
    })?;
    log(&format!(
        "  streams: added TTFB p50 {:+.3} / p99 {:+.3} ms; added gap p50 {:+.3} / p99 {:+.3} ms",
        streams.added_ttfb.map_or(0.0, |d| d.p50_ms),
        streams.added_ttfb.map_or(0.0, |d| d.p99_ms),
        streams.added_gap.map_or(0.0, |d| d.p50_ms),
        streams.added_gap.map_or(0.0, |d| d.p99_ms),
    ));

    // Before the sustained-rate search: its overload steps grow the heap (deep queues), which
    // would then count against the streams.
    memory.before_streams_rss_mib = rig.proxy.memory().map_or(0.0, |m| m.rss_mib);
    concurrent_streams(rig, options, &mut memory)?;
    log(&format!(
        "  {} concurrent streams: peak RSS {:.1} MiB, {} open at once, {} ok",
        memory.concurrent_streams,
        memory.concurrent_peak_rss_mib,
        memory.concurrent_streams_peak_open,
        memory.concurrent_streams_ok
    ));
    let sustained = sustain(rig, options, &rates, &mut log)?;

    std::thread::sleep(Duration::from_secs(1));
    if let Some(m) = rig.proxy.memory() {
        memory.idle_after_rss_mib = m.rss_mib;
        memory.hwm_mib = m.hwm_mib;
    }

    let goals = report::goals(&rates, Some(&streams), Some(&sustained), &memory);
    let u = &options.upstream;
    Ok(Report {
        machine,
        load_average_end: machine::load_average(),
        proxy_program: rig.proxy.program.clone(),
        quick: options.quick,
        settings: vec![
            (
                "mock upstream delay".into(),
                format!("{:?} before the head (tokio timer: 1-2 ms)", u.delay),
            ),
            (
                "streams".into(),
                format!(
                    "{} deltas, one SSE event every {:?}",
                    u.stream_deltas, u.chunk_interval
                ),
            ),
            (
                "schedule".into(),
                format!(
                    "{} rounds x {:?} per mode per rate, direct/proxied alternating, {:?} warm-up each",
                    options.rounds, options.step, options.warmup
                ),
            ),
            (
                "requests".into(),
                format!(
                    "alternating POST /v1/messages (Anthropic) and /v1/chat/completions (OpenAI), {} bodies",
                    if options.body_bytes == 0 {
                        "~400-byte".to_owned()
                    } else {
                        format!(">= {}-byte", options.body_bytes)
                    }
                ),
            ),
            (
                "proxy".into(),
                format!(
                    "TOKEN_COUNTING_ENABLED={}, RATE_LIMIT_INITIAL/MIN/MAX=1e6, MAX_WORKERS=100000, logs at info to a file",
                    std::env::var(super::proxy_process::TOKEN_COUNTING_ENV)
                        .unwrap_or_else(|_| "true".to_owned())
                ),
            ),
            (
                "concurrent streams".into(),
                format!(
                    "{} long streams ({} deltas every {:?}) opened over {:?}",
                    options.concurrent_streams,
                    u.long_deltas,
                    u.long_interval,
                    options.concurrent_ramp
                ),
            ),
        ],
        rates,
        streams: Some(streams),
        sustained: Some(sustained),
        memory,
        goals,
    })
}
