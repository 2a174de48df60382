//! `cargo bench -p zai-benches --bench proxy_overhead [-- --quick]`: the proxy's added
//! latency, time to first byte, inter-chunk gap, sustained rate and memory against a direct
//! baseline (issue 9). See docs/BENCHMARKS.md.
//!
//! The same binary is also the proxy under test: started with `ZAI_BENCH_ROLE=proxy` it runs
//! `zai-proxy` (config from the environment) so the proxy's RSS is its own process's.
//! `ZAI_PROXY_BIN=/path/to/zai-proxy` benches a built binary instead. `--no-criterion` skips
//! the closed-loop round-trip group.

use std::process::ExitCode;
use std::time::Duration;

use criterion::Criterion;
use zai_benches::overhead::canned::Api;
use zai_benches::overhead::proxy_process;
use zai_benches::overhead::report;
use zai_benches::overhead::run::{Options, Rig, run_all};

fn main() -> ExitCode {
    if proxy_process::is_proxy_role() {
        return proxy_process::run_proxy_role();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --benches` runs bench binaries without `--bench`: do nothing then.
    if !args.iter().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    match bench(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy_overhead: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &[String]) -> anyhow::Result<()> {
    let options = Options::from_args_and_env(args);
    eprintln!(
        "proxy_overhead: {} run; results in {}",
        if options.quick { "quick" } else { "full" },
        options.out_dir.display()
    );
    let rig = Rig::start(&options)?;
    let report = run_all(&rig, &options, |line| eprintln!("{line}"))?;
    let json = options.out_dir.join("proxy_overhead.json");
    report::write_json(&report, &json)?;
    println!("{}", report::render(&report));
    println!("JSON: {}", json.display());

    if !args.iter().any(|a| a == "--no-criterion") {
        round_trips(&rig, options.quick)?;
    }
    Ok(())
}

/// Criterion group: one request at a time (closed loop), direct and through the proxy.
fn round_trips(rig: &Rig, quick: bool) -> anyhow::Result<()> {
    // Fail early with a clear error rather than panicking inside criterion.
    rig.round_trip(false, Api::Anthropic)?;
    rig.round_trip(true, Api::Anthropic)?;
    let mut c = Criterion::default()
        .sample_size(if quick { 20 } else { 50 })
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(if quick { 2 } else { 5 }));
    let mut group = c.benchmark_group("round_trip");
    for (name, via_proxy) in [("direct", false), ("proxied", true)] {
        group.bench_function(name, |b| {
            b.iter(|| rig.round_trip(via_proxy, Api::Anthropic).is_ok());
        });
    }
    group.finish();
    c.final_summary();
    Ok(())
}
