//! `cargo bench -p zai-benches --bench shared_admission [-- --quick]`: what admission
//! through the shared budget in Redis adds to a request (issue 19), at 1 000 req/s.
//!
//! Open loop: a request is due every millisecond; each one is admitted by the limiter
//! (`Limiter::admit`: the fair queue, a slot of the admission bucket, a concurrency lease),
//! holds its lease for 20 ms (an upstream attempt) and gives it back. The latency of one
//! admission is measured from the request's *due* time (so a stalled generator cannot hide
//! queueing). Three rigs, the same settings (rate and budget far above the load, so nothing
//! waits for a token or a lease): the local limiter; the limiter sharing its budget
//! through a real `redis-server` started on a loopback port (`RATE_LIMIT_REDIS_URL`), where
//! the fleet's headroom lets Redis grant admissions ahead of use (`ratelimit::prefetch`);
//! and the same with half the budget held by another replica, so that nothing is granted
//! ahead and every admission is one call to Redis (the cost under load). The difference
//! of the percentiles is what Redis adds. Also recorded: the time inside
//! `Limiter::admit` alone (from the call, not the due time), which leaves out the timer's
//! and the scheduler's jitter that dominate the due-time numbers on a busy machine.
//!
//! Writes `target/shared_admission.json` (or `$ZAI_BENCH_OUT/shared_admission.json`) and
//! prints a table. Needs `redis-server` on PATH.

use std::net::TcpListener;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde_json::json;
use zai_proxy::Metrics;
use zai_proxy::config::{ApiKey, BudgetSettings, BuildInfo, RateLimitSettings};
use zai_proxy::ratelimit::{Limiter, SourceBucket};

const RATE: u64 = 1_000;
const BUDGET: u32 = 10_000;
const KEY: &str = "bench-key";
const HOLD: Duration = Duration::from_millis(20);

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> anyhow::Result<(Redis, u16)> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting redis-server (apt-get install redis-server)")?;
    let redis = Redis(child);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok((redis, port));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("redis-server did not listen on port {port}")
}

fn limiter(redis: Option<u16>) -> anyhow::Result<Arc<Limiter>> {
    let metrics = Arc::new(Metrics::new(
        "bench",
        &BuildInfo::default(),
        10_000,
        &[],
        "glm-4",
    )?);
    let settings = RateLimitSettings {
        initial: 50_000.0,
        min: 50_000.0,
        max: 50_000.0,
        state_file: None,
        ..RateLimitSettings::default()
    };
    let budget = BudgetSettings {
        redis_url: redis.map(|port| ApiKey::new(format!("redis://127.0.0.1:{port}/0"))),
        max_upstream_concurrency: Some(BUDGET),
        ..BudgetSettings::default()
    };
    Ok(Arc::new(Limiter::with_budget(
        &settings,
        &budget,
        &ApiKey::new(KEY),
        metrics,
        "bench",
    )?))
}

/// Another replica's leases on half the budget, with deadlines far ahead (one `ZADD` in
/// the wire protocol): Redis then grants nothing ahead of use.
fn hold_half_the_budget(port: u16) -> anyhow::Result<()> {
    use std::io::{BufRead as _, Write as _};
    let key = zai_proxy::ratelimit::shared::Keys::for_key(&ApiKey::new(KEY)).leases;
    let far = "4000000000000000"; // µs since the epoch: the year 2096
    let members: Vec<String> = (0..BUDGET / 2).map(|i| format!("other:{i}")).collect();
    let mut args: Vec<&str> = vec!["ZADD", &key];
    for member in &members {
        args.extend([far, member.as_str()]);
    }
    let mut command = format!("*{}\r\n", args.len());
    for arg in &args {
        command.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.write_all(command.as_bytes())?;
    let mut reply = String::new();
    std::io::BufReader::new(stream).read_line(&mut reply)?;
    if reply.trim() != format!(":{}", BUDGET / 2) {
        bail!("ZADD answered {reply:?}");
    }
    Ok(())
}

/// Runs the open loop for `seconds`; returns the admission latencies (µs) from each
/// request's due time, and the time spent inside `Limiter::admit` alone (µs).
async fn run(
    limiter: Arc<Limiter>,
    seconds: u64,
) -> anyhow::Result<(Histogram<u64>, Histogram<u64>)> {
    let cancel = tokio_util::sync::CancellationToken::new();
    limiter.first_sync().await;
    limiter.start(cancel.clone());
    if limiter.shared_up() == Some(false) {
        bail!("Redis did not answer the first heartbeat");
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, u64)>();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    // Warm-up second (connections, script loading), not recorded.
    let total = (seconds + 1) * RATE;
    for i in 0..total {
        let due = ticker.tick().await;
        let limiter = Arc::clone(&limiter);
        let tx = tx.clone();
        let source = SourceBucket::from_host(format!("10.0.{}.{}", i % 7, i % 250).as_bytes());
        tokio::spawn(async move {
            let called = Instant::now();
            let admission = limiter.admit(source).await;
            let inside = called.elapsed();
            let took = due.elapsed();
            if i >= RATE {
                let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
                let _ = tx.send((us(took), us(inside)));
            }
            tokio::time::sleep(HOLD).await;
            drop(admission);
        });
    }
    drop(tx);
    let mut histogram = Histogram::<u64>::new(3)?;
    let mut inside = Histogram::<u64>::new(3)?;
    while let Some((us, call)) = rx.recv().await {
        histogram.record(us.max(1))?;
        inside.record(call.max(1))?;
    }
    cancel.cancel();
    Ok((histogram, inside))
}

fn summary(h: &Histogram<u64>) -> serde_json::Value {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    json!({"count": h.len(), "p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99),
           "p999_ms": ms(0.999), "max_ms": h.max() as f64 / 1000.0})
}

fn bench(quick: bool) -> anyhow::Result<()> {
    let seconds = if quick { 3 } else { 10 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (_redis, port) = start_redis()?;
    let (local, local_call) = runtime.block_on(run(limiter(None)?, seconds))?;
    let (shared, shared_call) = runtime.block_on(run(limiter(Some(port))?, seconds))?;
    let (_busy_redis, busy_port) = start_redis()?;
    hold_half_the_budget(busy_port)?;
    let (busy, busy_call) = runtime.block_on(run(limiter(Some(busy_port))?, seconds))?;
    let added = |h: &Histogram<u64>, base: &Histogram<u64>| {
        (h.value_at_quantile(0.99) as f64 - base.value_at_quantile(0.99) as f64) / 1000.0
    };
    let added_p99 =
        (shared.value_at_quantile(0.99) as f64 - local.value_at_quantile(0.99) as f64) / 1000.0;
    let added_call_p99 = (shared_call.value_at_quantile(0.99) as f64
        - local_call.value_at_quantile(0.99) as f64)
        / 1000.0;
    let report = json!({
        "bench": "shared_admission",
        "rate_per_s": RATE,
        "seconds": seconds,
        "hold_ms": HOLD.as_millis() as u64,
        "local": summary(&local),
        "redis": summary(&shared),
        "added_p99_ms": added_p99,
        "admit_call": {"local": summary(&local_call), "redis": summary(&shared_call),
                       "added_p99_ms": added_call_p99},
        "half_the_budget_held_elsewhere": {
            "redis": summary(&busy), "added_p99_ms": added(&busy, &local),
            "admit_call": {"redis": summary(&busy_call),
                           "added_p99_ms": added(&busy_call, &local_call)}},
    });
    let out = std::env::var_os("ZAI_BENCH_OUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    std::fs::create_dir_all(&out)?;
    let path = out.join("shared_admission.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!(
        "admission at {RATE} req/s ({seconds} s): local p50 {:.3} ms p99 {:.3} ms | Redis p50 {:.3} ms p99 {:.3} ms | added p99 {added_p99:.3} ms",
        local.value_at_quantile(0.5) as f64 / 1000.0,
        local.value_at_quantile(0.99) as f64 / 1000.0,
        shared.value_at_quantile(0.5) as f64 / 1000.0,
        shared.value_at_quantile(0.99) as f64 / 1000.0,
    );
    println!(
        "inside Limiter::admit: local p50 {:.3} ms p99 {:.3} ms | Redis p50 {:.3} ms p99 {:.3} ms | added p99 {added_call_p99:.3} ms",
        local_call.value_at_quantile(0.5) as f64 / 1000.0,
        local_call.value_at_quantile(0.99) as f64 / 1000.0,
        shared_call.value_at_quantile(0.5) as f64 / 1000.0,
        shared_call.value_at_quantile(0.99) as f64 / 1000.0,
    );
    println!(
        "half the budget held elsewhere (one call per admission): inside Limiter::admit p50 {:.3} ms p99 {:.3} ms | added p99 {:.3} ms",
        busy_call.value_at_quantile(0.5) as f64 / 1000.0,
        busy_call.value_at_quantile(0.99) as f64 / 1000.0,
        added(&busy_call, &local_call),
    );
    println!("JSON: {}", path.display());
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --benches` runs bench binaries without `--bench`: do nothing then.
    if !args.iter().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    let started = Instant::now();
    match bench(args.iter().any(|a| a == "--quick")) {
        Ok(()) => {
            eprintln!("shared_admission: {:.1} s", started.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shared_admission: {e:#}");
            ExitCode::FAILURE
        }
    }
}
