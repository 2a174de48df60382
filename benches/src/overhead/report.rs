//! The results: serialisable structs, the goal checks (pure), the text table and the JSON
//! file.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::loadgen::Samples;
use super::machine::MachineInfo;
use super::stats::{Delta, Summary};

/// One side (direct or proxied) of a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// Scheduled send → end of body.
    pub latency: Summary,
    /// Scheduled send → first body chunk (streams only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttfb: Option<Summary>,
    /// Gap between consecutive chunks (streams only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap: Option<Summary>,
    /// Requests sent / ok / failed / not sent.
    pub sent: u64,
    /// 2xx with a complete body.
    pub ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// Scheduled but dropped (too many unfinished).
    pub dropped: u64,
    /// Chunk gaps over the stall threshold.
    pub stalls: u64,
    /// Worst lateness of the generator's own schedule, ms.
    pub worst_send_lag_ms: f64,
    /// Most requests unfinished at once.
    pub peak_in_flight: usize,
}

impl Side {
    /// Summarises `samples`.
    pub fn of(samples: &Samples, stream: bool) -> Self {
        Self {
            latency: samples.latency.summary(),
            ttfb: stream.then(|| samples.ttfb.summary()),
            gap: stream.then(|| samples.gap.summary()),
            sent: samples.sent,
            ok: samples.ok,
            errors: samples.errors,
            dropped: samples.dropped,
            stalls: samples.stalls,
            worst_send_lag_ms: samples.worst_send_lag.as_secs_f64() * 1000.0,
            peak_in_flight: samples.peak_in_flight,
        }
    }

    /// Failed + dropped over scheduled.
    pub fn failure_ratio(&self) -> f64 {
        let scheduled = self.sent + self.dropped;
        if scheduled == 0 {
            0.0
        } else {
            (self.errors + self.dropped) as f64 / scheduled as f64
        }
    }
}

/// Direct vs proxied at one rate, measured alternately in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Offered rate, req/s.
    pub rate: f64,
    /// Streaming requests.
    pub stream: bool,
    /// To the mock directly.
    pub direct: Side,
    /// Through the proxy.
    pub proxied: Side,
    /// proxied − direct, end-to-end latency.
    pub added_latency: Delta,
    /// proxied − direct, time to first chunk (streams).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added_ttfb: Option<Delta>,
    /// proxied − direct, inter-chunk gap (streams).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added_gap: Option<Delta>,
    /// The proxy's RSS right after the proxied runs, MiB.
    pub proxy_rss_mib: Option<f64>,
    /// The proxy's CPU time per proxied request (all its threads, user + kernel), µs.
    pub proxy_cpu_us_per_request: Option<f64>,
    /// Load average (1 min) right after the step.
    pub load_average_1m: f64,
}

impl Comparison {
    /// Builds the comparison from both sides' samples.
    pub fn new(rate: f64, stream: bool, direct: &Samples, proxied: &Samples) -> Self {
        let d = Side::of(direct, stream);
        let p = Side::of(proxied, stream);
        let added_ttfb = match (&p.ttfb, &d.ttfb) {
            (Some(p), Some(d)) => Some(p.minus(d)),
            _ => None,
        };
        let added_gap = match (&p.gap, &d.gap) {
            (Some(p), Some(d)) => Some(p.minus(d)),
            _ => None,
        };
        Self {
            rate,
            stream,
            added_latency: p.latency.minus(&d.latency),
            added_ttfb,
            added_gap,
            direct: d,
            proxied: p,
            proxy_rss_mib: None,
            proxy_cpu_us_per_request: None,
            load_average_1m: 0.0,
        }
    }
}

/// One step of the search for the highest rate with added p99 < 10 ms.
#[derive(Debug, Clone, Serialize)]
pub struct SustainStep {
    /// The comparison at this rate.
    pub comparison: Comparison,
    /// Added p99 < bound and < 0.1 % failures through the proxy.
    pub pass: bool,
    /// The direct baseline itself failed (the rig, not the proxy, is the limit).
    pub baseline_failed: bool,
}

/// The sustained-rate result.
#[derive(Debug, Clone, Serialize)]
pub struct Sustained {
    /// The bound on added p99, ms.
    pub added_p99_bound_ms: f64,
    /// Every step tried, in order.
    pub steps: Vec<SustainStep>,
    /// The highest rate that passed (all lower ones passed too).
    pub highest_passing_rate: Option<f64>,
    /// Why the search stopped.
    pub stopped_because: String,
}

/// The proxy's memory.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryReport {
    /// RSS once ready (tokenizer loaded), before any request, MiB.
    pub idle_rss_mib: f64,
    /// RSS just before the concurrent streams were opened, MiB.
    pub before_streams_rss_mib: f64,
    /// Streams opened at once for the concurrency check.
    pub concurrent_streams: usize,
    /// Of those, how many were open at the same time at the peak (client side).
    pub concurrent_streams_peak_open: usize,
    /// Of those, how many completed OK.
    pub concurrent_streams_ok: u64,
    /// Chunk gaps over 10× the pacing interval during that run.
    pub concurrent_streams_stalls: u64,
    /// Highest RSS sampled while they were open, MiB.
    pub concurrent_peak_rss_mib: f64,
    /// RSS a moment after everything finished, MiB.
    pub idle_after_rss_mib: f64,
    /// VmHWM at the end (peak over the whole run), MiB.
    pub hwm_mib: f64,
}

/// One goal of issue 9 and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    /// What is measured.
    pub name: String,
    /// The target, in words.
    pub target: String,
    /// The measured value, in words.
    pub measured: String,
    /// Met in this run (never when inconclusive).
    pub met: bool,
    /// False when the direct baseline's own tail shows the machine was too noisy to judge
    /// (its p99 more than [`NOISE_FACTOR`] times its p50).
    pub conclusive: bool,
}

/// A baseline whose p99 exceeds this many times its p50 is dominated by machine noise (on a
/// quiet machine the mock's p99/p50 stays near 1.5).
pub const NOISE_FACTOR: f64 = 4.0;

fn quiet(baseline: &Summary) -> bool {
    baseline.count > 0 && baseline.p99_ms <= NOISE_FACTOR * baseline.p50_ms
}

fn noise_note(conclusive: bool, baseline: &Summary) -> String {
    if conclusive {
        String::new()
    } else {
        format!(
            " — INCONCLUSIVE: direct p99 {:.1} ms is {:.0}x its p50 (machine noise)",
            baseline.p99_ms,
            baseline.p99_ms / baseline.p50_ms.max(1e-9)
        )
    }
}

/// Everything one bench run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The machine and its load at the start.
    pub machine: MachineInfo,
    /// Load averages at the end.
    pub load_average_end: [f64; 3],
    /// What ran as the proxy.
    pub proxy_program: String,
    /// `--quick` run.
    pub quick: bool,
    /// Mock upstream and schedule settings, in words.
    pub settings: Vec<(String, String)>,
    /// Non-streaming comparisons, one per rate.
    pub rates: Vec<Comparison>,
    /// The streaming comparison.
    pub streams: Option<Comparison>,
    /// The sustained-rate search.
    pub sustained: Option<Sustained>,
    /// Memory.
    pub memory: MemoryReport,
    /// The goals and whether they were met.
    pub goals: Vec<Goal>,
}

/// Checks the goals against the measurements (pure).
pub fn goals(
    rates: &[Comparison],
    streams: Option<&Comparison>,
    sustained: Option<&Sustained>,
    memory: &MemoryReport,
) -> Vec<Goal> {
    let mut out = Vec::new();
    if let Some(c) = rates.iter().find(|c| (c.rate - 1000.0).abs() < 0.5) {
        let added = c.added_latency.p99_ms;
        let conclusive = quiet(&c.direct.latency);
        out.push(Goal {
            name: "added p99 latency at 1000 req/s (non-streaming)".into(),
            target: "<= 1 ms".into(),
            measured: format!(
                "{added:.3} ms (direct {:.3}, proxied {:.3}){}",
                c.direct.latency.p99_ms,
                c.proxied.latency.p99_ms,
                noise_note(conclusive, &c.direct.latency)
            ),
            met: conclusive && added <= 1.0 && c.proxied.failure_ratio() < 0.001,
            conclusive,
        });
    }
    if let Some(s) = streams {
        if let (Some(ttfb), Some(base)) = (s.added_ttfb, s.direct.ttfb) {
            let conclusive = quiet(&base);
            out.push(Goal {
                name: format!(
                    "added time to first byte on streams ({} streams/s), p50 / p99",
                    s.rate
                ),
                target: "<= 0.5 ms".into(),
                measured: format!(
                    "{:.3} ms / {:.3} ms{}",
                    ttfb.p50_ms,
                    ttfb.p99_ms,
                    noise_note(conclusive, &base)
                ),
                met: conclusive && ttfb.p50_ms <= 0.5 && ttfb.p99_ms <= 0.5,
                conclusive,
            });
        }
        if let (Some(gap), Some(base)) = (s.added_gap, s.direct.gap) {
            let conclusive = quiet(&base);
            out.push(Goal {
                name: "added inter-chunk gap on streams, p50 / p99".into(),
                target: "none (<= 0.1 ms at p50 and p99, no stalls)".into(),
                measured: format!(
                    "{:.3} ms / {:.3} ms, stalls {} (direct {}){}",
                    gap.p50_ms,
                    gap.p99_ms,
                    s.proxied.stalls,
                    s.direct.stalls,
                    noise_note(conclusive, &base)
                ),
                met: conclusive && gap.p50_ms <= 0.1 && gap.p99_ms <= 0.1 && s.proxied.stalls == 0,
                conclusive,
            });
        }
    }
    if let Some(s) = sustained {
        out.push(Goal {
            name: format!("highest rate with added p99 < {} ms", s.added_p99_bound_ms),
            target: "reported".into(),
            measured: match s.highest_passing_rate {
                Some(r) => format!("{r} req/s ({})", s.stopped_because),
                None => format!("none ({})", s.stopped_because),
            },
            met: s.highest_passing_rate.is_some(),
            conclusive: true,
        });
    }
    out.push(Goal {
        name: "proxy RSS idle".into(),
        target: "<= 64 MB".into(),
        measured: format!("{:.1} MiB", memory.idle_rss_mib),
        met: memory.idle_rss_mib > 0.0 && memory.idle_rss_mib <= 64.0,
        conclusive: true,
    });
    if memory.concurrent_streams > 0 {
        out.push(Goal {
            name: format!(
                "proxy RSS with {} concurrent streams",
                memory.concurrent_streams
            ),
            target: "<= 160 MB".into(),
            measured: format!(
                "{:.1} MiB peak sampled (VmHWM {:.1} MiB), {} open at once, {} ok",
                memory.concurrent_peak_rss_mib,
                memory.hwm_mib,
                memory.concurrent_streams_peak_open,
                memory.concurrent_streams_ok
            ),
            met: memory.concurrent_peak_rss_mib > 0.0
                && memory.concurrent_peak_rss_mib <= 160.0
                && memory.concurrent_streams_peak_open >= memory.concurrent_streams
                && memory.concurrent_streams_ok == memory.concurrent_streams as u64,
            conclusive: true,
        });
    }
    out
}

fn row(label: &str, rate: f64, side: &Side, s: &Summary, rss: &str, cpu: &str) -> String {
    format!(
        "| {rate:>6} | {label:<8} | {:>8.3} | {:>8.3} | {:>8.3} | {:>8.3} | {:>6} | {:>6} | {rss:>7} | {cpu:>7} |\n",
        s.p50_ms,
        s.p90_ms,
        s.p99_ms,
        s.max_ms,
        side.ok,
        side.errors + side.dropped
    )
}

fn delta_row(rate: f64, d: &Delta) -> String {
    format!(
        "| {rate:>6} | **added** | {:>+8.3} | {:>+8.3} | {:>+8.3} | {:>+8.3} |        |        |         |         |\n",
        d.p50_ms, d.p90_ms, d.p99_ms, d.max_ms
    )
}

const HEADER: &str = "| req/s  | path     | p50 ms   | p90 ms   | p99 ms   | max ms   | ok     | failed | RSS MiB | CPU µs/req |\n|-------:|----------|---------:|---------:|---------:|---------:|-------:|-------:|--------:|--------:|\n";

/// The report as Markdown tables (what the bench prints and docs/BENCHMARKS.md shows).
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let m = &report.machine;
    let _ = writeln!(
        out,
        "Machine: {} CPUs ({}), {} MiB RAM; load average at start {:.2} {:.2} {:.2}, at end {:.2} {:.2} {:.2}",
        m.nproc,
        m.cpu_model,
        m.mem_total_mib,
        m.load_average[0],
        m.load_average[1],
        m.load_average[2],
        report.load_average_end[0],
        report.load_average_end[1],
        report.load_average_end[2]
    );
    let _ = writeln!(out, "Proxy: {}", report.proxy_program);
    for (k, v) in &report.settings {
        let _ = writeln!(out, "  {k}: {v}");
    }
    let _ = writeln!(
        out,
        "\nNon-streaming, open loop (latency from the scheduled send time):\n"
    );
    out.push_str(HEADER);
    for c in &report.rates {
        let rss = c
            .proxy_rss_mib
            .map_or_else(String::new, |r| format!("{r:.1}"));
        let cpu = c
            .proxy_cpu_us_per_request
            .map_or_else(String::new, |u| format!("{u:.0}"));
        out.push_str(&row("direct", c.rate, &c.direct, &c.direct.latency, "", ""));
        out.push_str(&row(
            "proxied",
            c.rate,
            &c.proxied,
            &c.proxied.latency,
            &rss,
            &cpu,
        ));
        out.push_str(&delta_row(c.rate, &c.added_latency));
    }
    if let Some(s) = &report.streams {
        let _ = writeln!(
            out,
            "\nStreams at {} streams/s: time to first chunk, inter-chunk gap, whole stream:\n",
            s.rate
        );
        for (what, d, p, added) in [
            ("TTFB", s.direct.ttfb, s.proxied.ttfb, s.added_ttfb),
            ("gap", s.direct.gap, s.proxied.gap, s.added_gap),
            (
                "total",
                Some(s.direct.latency),
                Some(s.proxied.latency),
                Some(s.added_latency),
            ),
        ] {
            if let (Some(d), Some(p), Some(added)) = (d, p, added) {
                let _ = writeln!(out, "{what}:");
                out.push_str(HEADER);
                out.push_str(&row("direct", s.rate, &s.direct, &d, "", ""));
                out.push_str(&row("proxied", s.rate, &s.proxied, &p, "", ""));
                out.push_str(&delta_row(s.rate, &added));
            }
        }
        let _ = writeln!(
            out,
            "stalls (gap > 10x pacing): direct {}, proxied {}",
            s.direct.stalls, s.proxied.stalls
        );
    }
    if let Some(s) = &report.sustained {
        let _ = writeln!(
            out,
            "\nSustained rate search (added p99 < {} ms, < 0.1 % failures):\n",
            s.added_p99_bound_ms
        );
        let _ = writeln!(
            out,
            "| req/s | direct p99 ms | proxied p99 ms | added p99 ms | failed direct/proxied | proxy CPU µs/req | pass |"
        );
        let _ = writeln!(
            out,
            "|------:|--------------:|---------------:|-------------:|----------------------:|-----------------:|------|"
        );
        for step in &s.steps {
            let c = &step.comparison;
            let _ = writeln!(
                out,
                "| {} | {:.3} | {:.3} | {:+.3} | {}/{} | {} | {} |",
                c.rate,
                c.direct.latency.p99_ms,
                c.proxied.latency.p99_ms,
                c.added_latency.p99_ms,
                c.direct.errors + c.direct.dropped,
                c.proxied.errors + c.proxied.dropped,
                c.proxy_cpu_us_per_request
                    .map_or_else(String::new, |u| format!("{u:.0}")),
                if step.pass { "yes" } else { "no" }
            );
        }
        let _ = writeln!(
            out,
            "highest passing rate: {} ({})",
            s.highest_passing_rate
                .map_or_else(|| "none".to_owned(), |r| format!("{r} req/s")),
            s.stopped_because
        );
    }
    let mem = &report.memory;
    let _ = writeln!(
        out,
        "\nProxy memory: idle {:.1} MiB; {:.1} MiB before the streams; {} concurrent streams: peak sampled RSS {:.1} MiB ({} open at once, {} ok, {} stalls); after {:.1} MiB; VmHWM {:.1} MiB",
        mem.idle_rss_mib,
        mem.before_streams_rss_mib,
        mem.concurrent_streams,
        mem.concurrent_peak_rss_mib,
        mem.concurrent_streams_peak_open,
        mem.concurrent_streams_ok,
        mem.concurrent_streams_stalls,
        mem.idle_after_rss_mib,
        mem.hwm_mib
    );
    let _ = writeln!(out, "\nGoals:");
    for g in &report.goals {
        let _ = writeln!(
            out,
            "  [{}] {}: target {}, measured {}",
            if g.met {
                "met"
            } else if g.conclusive {
                "NOT MET"
            } else {
                "inconclusive"
            },
            g.name,
            g.target,
            g.measured
        );
    }
    out
}

/// Writes the report as pretty JSON.
pub fn write_json(report: &Report, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(report)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overhead::stats::Latencies;
    use std::time::Duration;

    fn samples(micros: u64, n: u64) -> Samples {
        let mut latency = Latencies::new();
        for _ in 0..n {
            latency.record(Duration::from_micros(micros));
        }
        Samples {
            latency,
            sent: n,
            ok: n,
            ..Samples::default()
        }
    }

    #[test]
    fn goal_at_1000_fails_when_added_p99_is_over_1ms() {
        let c = Comparison::new(1000.0, false, &samples(2_000, 100), &samples(3_500, 100));
        let g = goals(&[c], None, None, &MemoryReport::default());
        let at_1000 = &g[0];
        assert!(!at_1000.met, "{at_1000:?}");
        let c = Comparison::new(1000.0, false, &samples(2_000, 100), &samples(2_400, 100));
        assert!(goals(&[c], None, None, &MemoryReport::default())[0].met);
    }

    #[test]
    fn a_noisy_baseline_makes_the_goal_inconclusive() {
        let mut direct = samples(2_000, 95);
        for _ in 0..5 {
            direct.latency.record(Duration::from_millis(100));
        }
        let c = Comparison::new(1000.0, false, &direct, &samples(2_100, 100));
        let g = &goals(&[c], None, None, &MemoryReport::default())[0];
        assert!(!g.conclusive && !g.met, "{g:?}");
    }

    #[test]
    fn memory_goals_need_a_measurement() {
        let g = goals(&[], None, None, &MemoryReport::default());
        assert!(!g[0].met, "zero RSS means not measured");
        let mem = MemoryReport {
            idle_rss_mib: 30.0,
            concurrent_streams: 10,
            concurrent_streams_peak_open: 10,
            concurrent_streams_ok: 9,
            concurrent_peak_rss_mib: 50.0,
            ..MemoryReport::default()
        };
        let g = goals(&[], None, None, &mem);
        assert!(g[0].met);
        assert!(!g[1].met, "a failed stream fails the goal");
    }
}
