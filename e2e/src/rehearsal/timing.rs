//! Compressed time: the seed's minutes become a few seconds.
//!
//! `--time-scale S` means "one minute of the checklist lasts S seconds". Every promoter window,
//! `for`, deadline and interval is multiplied by S/60 and rounded to whole seconds (at least
//! one), so "error rate > 10% for 2 minutes" becomes "for 4 s" at the default S = 2.

use std::path::Path;
use std::time::Duration;

use zai_promoter::Config;
use zai_promoter::signals::scrape::AlertTiming;

use crate::platform::Timing;
use crate::platform::spec::Backoff;

/// Default seconds per seed minute.
pub const DEFAULT_TIME_SCALE: f64 = 2.0;

/// The rehearsals' `min_requests` (checks, triggers and locally evaluated alerts): fewer
/// requests fit in a compressed window than in production's five minutes.
pub const REHEARSAL_MIN_REQUESTS: u64 = 20;

/// The rehearsals' shortest judge deadline: at ~40 canary requests per second a healthy
/// canary without errors reaches its verdict in about half a minute.
pub const REHEARSAL_JUDGE_DEADLINE: Duration = Duration::from_secs(90);

/// A time compression factor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeScale {
    seconds_per_minute: f64,
}

impl TimeScale {
    /// `seconds_per_minute` must be finite and > 0.
    pub fn new(seconds_per_minute: f64) -> Result<Self, String> {
        if seconds_per_minute.is_finite() && seconds_per_minute > 0.0 {
            Ok(TimeScale { seconds_per_minute })
        } else {
            Err(format!(
                "--time-scale must be > 0 seconds, got {seconds_per_minute}"
            ))
        }
    }

    /// Seconds per seed minute.
    pub fn seconds_per_minute(self) -> f64 {
        self.seconds_per_minute
    }

    /// A seed duration compressed, in whole seconds (zero stays zero, otherwise ≥ 1 s).
    pub fn scale(self, seed: Duration) -> Duration {
        if seed.is_zero() {
            return Duration::ZERO;
        }
        let secs = (seed.as_secs_f64() * self.seconds_per_minute / 60.0).round();
        Duration::from_secs((secs as u64).max(1))
    }

    /// The promoter's default configuration compressed, with finalisation into `repo` and the
    /// given checks/triggers disabled.
    pub fn promoter_config(self, repo: &Path, disable: &[String]) -> Result<Config, String> {
        let mut config = Config::default();
        config.interval = self.scale(config.interval);
        config.no_data_deadline = self.scale(config.no_data_deadline);
        config.rollout_deadline = self.scale(config.rollout_deadline);
        config.post_min_duration = self.scale(config.post_min_duration);
        config.post_deadline = self.scale(config.post_deadline);
        config.rollback_timeout = self
            .scale(config.rollback_timeout)
            .max(Duration::from_secs(30));
        config.http_timeout = Duration::from_secs(2);
        // Renewed every tick: a killed promoter's run is taken over a few ticks later.
        // Renewed once a third of it passed: a killed promoter's run is taken over a few
        // seconds later.
        config.run.lease = self.scale(config.run.lease);
        // Fewer requests fit in a compressed window; keep the guard meaningful.
        config.min_requests = REHEARSAL_MIN_REQUESTS;
        // Evidence is counted in requests, not minutes: compressing the judge's deadline as
        // hard as the rest would leave it too few requests to decide on at rehearsal traffic.
        config.judge.lookback = self.scale(config.judge.lookback);
        config.judge.deadline = self
            .scale(config.judge.deadline)
            .max(REHEARSAL_JUDGE_DEADLINE);
        config.finalise.repo = Some(repo.to_path_buf());
        for check in &mut config.checks {
            check.window = self.scale(check.window);
        }
        for trigger in &mut config.triggers {
            trigger.window = self.scale(trigger.window);
            trigger.hold_for = self.scale(trigger.hold_for);
        }
        for id in disable {
            let mut found = false;
            for check in config.checks.iter_mut().filter(|c| c.id == id.as_str()) {
                check.enabled = false;
                found = true;
            }
            for trigger in config.triggers.iter_mut().filter(|t| t.id == id.as_str()) {
                trigger.enabled = false;
                found = true;
            }
            if !found {
                return Err(format!("cannot disable {id:?}: no such check or trigger"));
            }
        }
        Ok(config)
    }

    /// The scrape source's locally evaluated alert timing, compressed, with the rehearsal
    /// configuration's request guard (`min_requests` = [`REHEARSAL_MIN_REQUESTS`]).
    pub fn alert_timing(self) -> AlertTiming {
        let seed = AlertTiming::default();
        AlertTiming {
            window: self.scale(seed.window),
            down_for: self.scale(seed.down_for),
            degraded_for: self.scale(seed.degraded_for),
            min_requests: REHEARSAL_MIN_REQUESTS,
        }
    }

    /// Platform timing: fast probes, a generous grace period, back-off compressed from the
    /// kubelet's 10 s → 5 min.
    pub fn platform_timing(self) -> Timing {
        Timing {
            probe_period: Duration::from_millis(200),
            probe_timeout: Duration::from_secs(1),
            termination_grace: Duration::from_secs(15),
            backoff: Backoff {
                initial: Duration::from_millis(500),
                max: self
                    .scale(Duration::from_secs(300))
                    .max(Duration::from_secs(2)),
                reset_after: self.scale(Duration::from_secs(600)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use zai_promoter::catalog::{CheckId, PreCheck, TriggerId};

    use super::*;

    #[test]
    fn minutes_become_seconds() {
        let t = TimeScale::new(2.0).expect("valid");
        assert_eq!(t.scale(Duration::from_secs(120)), Duration::from_secs(4));
        assert_eq!(t.scale(Duration::from_secs(300)), Duration::from_secs(10));
        assert_eq!(t.scale(Duration::from_secs(1)), Duration::from_secs(1));
        assert_eq!(t.scale(Duration::ZERO), Duration::ZERO);
        assert!(TimeScale::new(0.0).is_err());
        assert!(TimeScale::new(f64::NAN).is_err());
    }

    #[test]
    fn config_is_compressed_and_disables_by_id() {
        let t = TimeScale::new(2.0).expect("valid");
        let disable = vec!["trigger.p95_latency".to_owned(), "pre.health_ok".to_owned()];
        let c = t
            .promoter_config(Path::new("/tmp/repo"), &disable)
            .expect("config");
        let trig = c.trigger(TriggerId::ErrorRate).expect("trigger");
        assert_eq!(trig.hold_for, Duration::from_secs(4));
        assert!(!c.trigger(TriggerId::P95Latency).expect("t").enabled);
        assert!(
            !c.check(CheckId::Pre(PreCheck::HealthOk))
                .expect("c")
                .enabled
        );
        assert!(
            t.promoter_config(Path::new("/tmp"), &["nope".to_owned()])
                .is_err()
        );
    }
}
