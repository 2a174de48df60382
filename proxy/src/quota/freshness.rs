//! Last-known-good quota state and freshness (reference §6), as a pure state machine.
//!
//! A failed poll keeps the previous sample. The state is fresh while a sample exists and is
//! at most `stale_after` old; a `stale` outcome is counted once per transition into
//! staleness (a poller that never succeeded is stale from its first poll), and a success
//! re-arms it.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::normalize::QuotaSample;

/// Result of one poll (the `result` label of `zai_proxy_quota_poll_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollOutcome {
    /// A usable sample.
    Success,
    /// Transport failure, timeout, non-200, oversize body or provider rejection.
    Error,
    /// Not the expected JSON.
    Malformed,
}

impl PollOutcome {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PollOutcome::Success => "success",
            PollOutcome::Error => "error",
            PollOutcome::Malformed => "malformed",
        }
    }
}

/// What the poller knows.
#[derive(Debug, Clone, Default)]
pub struct QuotaState {
    /// The last good sample.
    pub sample: Option<QuotaSample>,
    /// When it was taken.
    pub last_success_at: Option<DateTime<Utc>>,
    /// The latest poll's result.
    pub last_outcome: Option<PollOutcome>,
    stale_counted: bool,
}

/// Counter increments one poll causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollCounts {
    /// The poll's own result.
    pub result: PollOutcome,
    /// Whether this poll moved the state into staleness (count one `stale`).
    pub became_stale: bool,
}

impl QuotaState {
    /// Applies one poll at `now`.
    pub fn on_poll(
        &mut self,
        result: Result<QuotaSample, PollOutcome>,
        now: DateTime<Utc>,
        stale_after: Duration,
    ) -> PollCounts {
        let outcome = match result {
            Ok(sample) => {
                self.sample = Some(sample);
                self.last_success_at = Some(now);
                PollOutcome::Success
            }
            Err(PollOutcome::Success) => PollOutcome::Error,
            Err(failure) => failure,
        };
        self.last_outcome = Some(outcome);
        let fresh = self.is_fresh(now, stale_after);
        let became_stale = !fresh && !self.stale_counted;
        self.stale_counted = !fresh;
        PollCounts {
            result: outcome,
            became_stale,
        }
    }

    /// A sample exists and is at most `stale_after` old.
    pub fn is_fresh(&self, now: DateTime<Utc>, stale_after: Duration) -> bool {
        self.sample.is_some() && self.sample_age(now).is_some_and(|age| age <= stale_after)
    }

    /// Age of the sample (negative ages clamp to zero).
    pub fn sample_age(&self, now: DateTime<Utc>) -> Option<Duration> {
        let at = self.last_success_at?;
        Some((now - at).to_std().unwrap_or(Duration::ZERO))
    }
}

/// Go's `time.Duration` text (`1m0s`, `15m0s`, `5s`, `1h0m0s`, `1.5s`, `250ms`), as the
/// original's `/health` shows `interval` and `stale_after`.
pub fn go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    if d < Duration::from_secs(1) {
        let nanos = d.as_nanos();
        return if nanos < 1_000 {
            format!("{nanos}ns")
        } else if nanos < 1_000_000 {
            format!("{}µs", trim_fraction(nanos as f64 / 1e3))
        } else {
            format!("{}ms", trim_fraction(nanos as f64 / 1e6))
        };
    }
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    let frac = d.subsec_nanos();
    let secs = if frac == 0 {
        s.to_string()
    } else {
        trim_fraction(s as f64 + f64::from(frac) / 1e9)
    };
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

fn trim_fraction(x: f64) -> String {
    let text = format!("{x:.9}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("ts")
    }

    const STALE: Duration = Duration::from_secs(900);

    #[test]
    fn never_succeeded_is_stale_from_the_first_poll_and_counted_once() {
        let mut s = QuotaState::default();
        let c = s.on_poll(Err(PollOutcome::Error), t(0), STALE);
        assert_eq!(
            c,
            PollCounts {
                result: PollOutcome::Error,
                became_stale: true
            }
        );
        let c = s.on_poll(Err(PollOutcome::Malformed), t(60), STALE);
        assert_eq!(
            c,
            PollCounts {
                result: PollOutcome::Malformed,
                became_stale: false
            }
        );
        assert!(!s.is_fresh(t(60), STALE));
    }

    #[test]
    fn failures_keep_the_last_good_sample_until_it_ages_out() {
        let mut s = QuotaState::default();
        let sample = QuotaSample {
            plan_tier: Some("max".into()),
            windows: vec![],
        };
        assert!(!s.on_poll(Ok(sample.clone()), t(0), STALE).became_stale);
        assert!(
            !s.on_poll(Err(PollOutcome::Error), t(60), STALE)
                .became_stale
        );
        assert!(s.is_fresh(t(60), STALE));
        assert_eq!(s.sample, Some(sample));
        assert_eq!(s.last_outcome, Some(PollOutcome::Error));
        assert_eq!(s.sample_age(t(60)), Some(Duration::from_secs(60)));
        // Exactly stale_after old is still fresh; one second more is stale, counted once.
        assert!(
            !s.on_poll(Err(PollOutcome::Error), t(900), STALE)
                .became_stale
        );
        assert!(
            s.on_poll(Err(PollOutcome::Error), t(901), STALE)
                .became_stale
        );
        assert!(
            !s.on_poll(Err(PollOutcome::Error), t(960), STALE)
                .became_stale
        );
        assert!(
            s.sample.is_some(),
            "last known good is kept even when stale"
        );
        // A success re-arms.
        s.on_poll(Ok(QuotaSample::default()), t(1000), STALE);
        assert!(
            s.on_poll(Err(PollOutcome::Error), t(2000), STALE)
                .became_stale
        );
    }

    #[test]
    fn go_duration_text() {
        assert_eq!(go_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(go_duration(Duration::from_secs(900)), "15m0s");
        assert_eq!(go_duration(Duration::from_secs(5)), "5s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_secs(6 * 3600 + 61)), "6h1m1s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }
}
