//! Log set-up: `tracing` to stderr, text or JSON (`LOG_FORMAT`), level from `RUST_LOG`
//! (default `info`). The API key never reaches a log line: it lives only in
//! [`crate::config::ApiKey`] (redacted `Debug`/`Display`) and sensitive header values.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Lets a repeated warning through at most once per interval (the upstream-auth warning:
/// every request fails the same way, one line a minute says so). Lock-free; the decision
/// is [`Throttle::allow_at`], a function of the time given.
#[derive(Debug)]
pub struct Throttle {
    interval_ms: u64,
    /// Milliseconds since `origin` of the last line let through, plus one (0 = never).
    last: std::sync::atomic::AtomicU64,
    origin: std::time::Instant,
}

impl Throttle {
    /// At most one line per `interval`.
    pub fn new(interval: std::time::Duration) -> Self {
        Self {
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            last: std::sync::atomic::AtomicU64::new(0),
            origin: std::time::Instant::now(),
        }
    }

    /// Whether a line may be written now; if so, the interval starts again.
    pub fn allow(&self) -> bool {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.allow_at(now)
    }

    /// [`Throttle::allow`] at `now_ms` milliseconds after creation.
    pub fn allow_at(&self, now_ms: u64) -> bool {
        use std::sync::atomic::Ordering;
        let stamp = now_ms.saturating_add(1);
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && stamp.saturating_sub(last) < self.interval_ms {
            return false;
        }
        // One caller wins a race for the same interval.
        self.last
            .compare_exchange(last, stamp, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn throttle_lets_one_line_through_per_interval() {
        let t = Throttle::new(Duration::from_secs(60));
        assert!(t.allow_at(0));
        assert!(!t.allow_at(1));
        assert!(!t.allow_at(59_999));
        assert!(t.allow_at(60_000));
        assert!(!t.allow_at(60_001));
        assert!(!t.allow_at(119_999));
        assert!(t.allow_at(200_000));
    }
}
