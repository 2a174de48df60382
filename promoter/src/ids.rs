//! Typed ids of the checklist's checks and rollback triggers.
//!
//! Every id the promoter knows is a variant here, grouped by phase, so that each phase's
//! evaluator can `match` exhaustively: a check added to the catalog without an evaluator (or
//! a misspelt id in code) is a compile error, not a silent pass. On the outside — the TOML
//! configuration, report.json, JUnit, run state, `--disable` — an id is its stable string
//! (`pre.canary_latency`); [`CheckId::from_str`] and [`TriggerId::from_str`] are the only way
//! in, and an unknown string is an error that names the known ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::catalog::Phase;

/// Declares one phase's check enum: variants with their stable ids.
macro_rules! phase_ids {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $id:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every id of this phase, in checklist order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stable string id.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $id,)+
                }
            }
        }
    };
}

phase_ids! {
    /// Phase 1: pre-promotion validation.
    PreCheck {
        /// `pre.canary_pods_ready`
        CanaryPodsReady = "pre.canary_pods_ready",
        /// `pre.no_canary_alerts`
        NoCanaryAlerts = "pre.no_canary_alerts",
        /// `pre.canary_error_rate` (judged)
        CanaryErrorRate = "pre.canary_error_rate",
        /// `pre.canary_latency` (judged)
        CanaryLatency = "pre.canary_latency",
        /// `pre.canary_stream_cuts` (judged)
        CanaryStreamCuts = "pre.canary_stream_cuts",
        /// `pre.canary_receiving_traffic`
        CanaryReceivingTraffic = "pre.canary_receiving_traffic",
        /// `pre.health_ok`
        HealthOk = "pre.health_ok",
        /// `pre.token_usage_logged`
        TokenUsageLogged = "pre.token_usage_logged",
        /// `pre.token_metrics_exported`
        TokenMetricsExported = "pre.token_metrics_exported",
        /// `pre.worker_used_canary`
        WorkerUsedCanary = "pre.worker_used_canary",
        /// `pre.worker_token_counting`
        WorkerTokenCounting = "pre.worker_token_counting",
        /// `pre.no_upstream_auth_failures`
        NoUpstreamAuthFailures = "pre.no_upstream_auth_failures",
        /// `pre.version_confirmed`
        VersionConfirmed = "pre.version_confirmed",
        /// `pre.stable_version`
        StableVersion = "pre.stable_version",
    }
}

phase_ids! {
    /// Phase 2: promotion execution.
    ExecCheck {
        /// `exec.image_updated`
        ImageUpdated = "exec.image_updated",
    }
}

phase_ids! {
    /// Phase 3: during-rollout monitoring.
    RolloutCheck {
        /// `rollout.pods_ready`
        PodsReady = "rollout.pods_ready",
        /// `rollout.no_crash_loops`
        NoCrashLoops = "rollout.no_crash_loops",
        /// `rollout.error_rate`
        ErrorRate = "rollout.error_rate",
        /// `rollout.p95_latency`
        P95Latency = "rollout.p95_latency",
        /// `rollout.token_metrics`
        TokenMetrics = "rollout.token_metrics",
        /// `rollout.token_count_p99`
        TokenCountP99 = "rollout.token_count_p99",
        /// `rollout.new_version_errors`
        NewVersionErrors = "rollout.new_version_errors",
    }
}

phase_ids! {
    /// Phase 4: post-rollout verification.
    PostCheck {
        /// `post.all_pods_new_version`
        AllPodsNewVersion = "post.all_pods_new_version",
        /// `post.deployment_image`
        DeploymentImage = "post.deployment_image",
        /// `post.workers_requests`
        WorkersRequests = "post.workers_requests",
        /// `post.token_counting_incrementing`
        TokenCountingIncrementing = "post.token_counting_incrementing",
        /// `post.no_error_logs`
        NoErrorLogs = "post.no_error_logs",
        /// `post.startup_config`
        StartupConfig = "post.startup_config",
        /// `post.request_rate_healthy`
        RequestRateHealthy = "post.request_rate_healthy",
        /// `post.success_rate`
        SuccessRate = "post.success_rate",
    }
}

phase_ids! {
    /// Phase 5: finalisation (performed by the driver, not sampled).
    FinalCheck {
        /// `final.version_file`
        VersionFile = "final.version_file",
        /// `final.commit`
        Commit = "final.commit",
        /// `final.tag`
        Tag = "final.tag",
        /// `final.push`
        Push = "final.push",
    }
}

phase_ids! {
    /// Optional cleanup (performed by the driver, not sampled).
    CleanupCheck {
        /// `cleanup.canary_scaled_down`
        CanaryScaledDown = "cleanup.canary_scaled_down",
    }
}

phase_ids! {
    /// The rollback triggers (phases 3 and 4, and `watch`).
    TriggerId {
        /// `trigger.error_rate`
        ErrorRate = "trigger.error_rate",
        /// `trigger.p95_latency`
        P95Latency = "trigger.p95_latency",
        /// `trigger.pods_not_ready`
        PodsNotReady = "trigger.pods_not_ready",
        /// `trigger.crash_loop`
        CrashLoop = "trigger.crash_loop",
        /// `trigger.token_counting_stopped`
        TokenCountingStopped = "trigger.token_counting_stopped",
        /// `trigger.worker_failures`
        WorkerFailures = "trigger.worker_failures",
    }
}

/// Declares [`CheckId`] over the phase enums: one list gives the variants, `as_str`,
/// `phase`, `all` and the `From` conversions.
macro_rules! check_id {
    ($($variant:ident($inner:ident) = $phase:ident, $doc:literal;)+) => {
        /// The id of one checklist check.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum CheckId {
            $(#[doc = $doc] $variant($inner),)+
        }

        impl CheckId {
            /// The stable string id.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(CheckId::$variant(c) => c.as_str(),)+
                }
            }

            /// The phase the check belongs to.
            pub const fn phase(self) -> Phase {
                match self {
                    $(CheckId::$variant(_) => Phase::$phase,)+
                }
            }

            /// Every check id, phase by phase in checklist order.
            pub fn all() -> impl Iterator<Item = CheckId> {
                std::iter::empty()
                    $(.chain($inner::ALL.iter().map(|&c| CheckId::$variant(c))))+
            }
        }

        $(impl From<$inner> for CheckId {
            fn from(c: $inner) -> Self {
                CheckId::$variant(c)
            }
        })+
    };
}

check_id! {
    Pre(PreCheck) = Pre, "Phase 1.";
    Exec(ExecCheck) = Exec, "Phase 2.";
    Rollout(RolloutCheck) = Rollout, "Phase 3.";
    Post(PostCheck) = Post, "Phase 4.";
    Final(FinalCheck) = Final, "Phase 5.";
    Cleanup(CleanupCheck) = Cleanup, "Cleanup.";
}

/// A string that names no check or trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownId {
    /// What was given.
    pub given: String,
    /// `"check"` or `"trigger"`.
    pub kind: &'static str,
}

impl fmt::Display for UnknownId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} id {:?}", self.kind, self.given)
    }
}

impl std::error::Error for UnknownId {}

impl FromStr for CheckId {
    type Err = UnknownId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CheckId::all()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownId {
                given: s.to_owned(),
                kind: "check",
            })
    }
}

impl FromStr for TriggerId {
    type Err = UnknownId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TriggerId::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownId {
                given: s.to_owned(),
                kind: "trigger",
            })
    }
}

macro_rules! string_like {
    ($($t:ty),+) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    )+};
}

string_like!(CheckId, TriggerId);

impl<'de> Deserialize<'de> for CheckId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for TriggerId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_id_round_trips_through_its_string() {
        let mut seen = HashSet::new();
        for id in CheckId::all() {
            assert!(seen.insert(id.as_str()), "duplicate {id}");
            assert_eq!(id.as_str().parse::<CheckId>(), Ok(id));
            assert!(id.as_str().starts_with(&format!("{}.", id.phase().key())));
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(serde_json::from_str::<CheckId>(&json).unwrap(), id);
        }
        for &t in TriggerId::ALL {
            assert!(seen.insert(t.as_str()), "duplicate {t}");
            assert_eq!(t.as_str().parse::<TriggerId>(), Ok(t));
            assert!(t.as_str().starts_with("trigger."));
        }
    }

    #[test]
    fn a_misspelt_id_is_an_error() {
        let err = "pre.canary_latncy".parse::<CheckId>().unwrap_err();
        assert_eq!(err.to_string(), "unknown check id \"pre.canary_latncy\"");
        assert!("trigger.error_rate".parse::<CheckId>().is_err());
        assert!("pre.canary_latency".parse::<TriggerId>().is_err());
        assert!(serde_json::from_str::<CheckId>("\"post.nope\"").is_err());
    }
}
