//! What the numbers were measured on, and a process's memory: `/proc` readers (IO at the
//! edge) over pure parsers.

use serde::Serialize;

/// The machine and its load when a measurement was taken.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MachineInfo {
    /// Logical CPUs available to this process.
    pub nproc: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// `MemTotal` in MiB.
    pub mem_total_mib: u64,
    /// The 1/5/15-minute load averages.
    pub load_average: [f64; 3],
}

impl MachineInfo {
    /// Reads `/proc` (fields stay empty/zero where a file cannot be read).
    pub fn read() -> Self {
        let nproc = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Self {
            nproc,
            cpu_model: cpu_model(&cpuinfo).unwrap_or_default(),
            mem_total_mib: kib_field(&meminfo, "MemTotal:").unwrap_or(0) / 1024,
            load_average: load_average(),
        }
    }
}

/// The 1/5/15-minute load averages from `/proc/loadavg` (zeros if unreadable).
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    parse_loadavg(&text)
}

/// Parses the first three fields of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (slot, field) in out.iter_mut().zip(text.split_whitespace()) {
        *slot = field.parse().unwrap_or(0.0);
    }
    out
}

/// The first `model name` line of `/proc/cpuinfo`.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

/// A `Name:   123 kB` field of `/proc/<pid>/status` or `/proc/meminfo`, in KiB.
pub fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Resident memory of a process: current and peak, MiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Memory {
    /// `VmRSS`.
    pub rss_mib: f64,
    /// `VmHWM` (peak RSS since start).
    pub hwm_mib: f64,
}

impl Memory {
    /// Parses `/proc/<pid>/status` text.
    pub fn parse(status: &str) -> Option<Self> {
        let mib = |kib: u64| kib as f64 / 1024.0;
        Some(Self {
            rss_mib: mib(kib_field(status, "VmRSS:")?),
            hwm_mib: mib(kib_field(status, "VmHWM:")?),
        })
    }

    /// Reads `/proc/<pid>/status`; `None` once the process is gone.
    pub fn of(pid: u32) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        Self::parse(&text)
    }
}

/// CPU time a process has used so far: the sum of its threads' on-CPU time from
/// `/proc/<pid>/task/*/schedstat` (nanosecond precision; threads that already exited are
/// not counted, which is fine for the proxy's long-lived runtime workers).
pub fn cpu_time(pid: u32) -> Option<std::time::Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(task) = task else { continue };
        if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
            total += parse_schedstat(&text).unwrap_or(0);
        }
    }
    Some(std::time::Duration::from_nanos(total))
}

/// The first field of a `schedstat` file: nanoseconds spent on a CPU.
pub fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_memory() {
        let status = "Name:\tzai\nVmHWM:\t   40960 kB\nVmRSS:\t   20480 kB\nThreads:\t3\n";
        let m = Memory::parse(status).expect("fields");
        assert!((m.rss_mib - 20.0).abs() < 1e-9);
        assert!((m.hwm_mib - 40.0).abs() < 1e-9);
        assert_eq!(Memory::parse("Name:\tzai\n"), None);
    }

    #[test]
    fn parses_cpu_and_load() {
        let cpu = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n";
        assert_eq!(
            cpu_model(cpu).as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
        assert_eq!(
            parse_loadavg("1.50 2.25 3.00 4/500 123\n"),
            [1.5, 2.25, 3.0]
        );
        assert_eq!(kib_field("MemTotal:  2048 kB\n", "MemTotal:"), Some(2048));
        assert_eq!(parse_schedstat("123456 789 10\n"), Some(123_456));
    }
}
