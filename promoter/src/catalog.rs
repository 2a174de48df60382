//! The seed checklist as data: every item is a check (or rollback trigger) with a stable id,
//! its checklist wording, and a default threshold and window.
//!
//! Thresholds and windows can be overridden per id in the TOML configuration
//! (see [`crate::config`]); what a threshold means for each id is written in `meaning`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::ids::{
    CheckId, CleanupCheck, ExecCheck, FinalCheck, PostCheck, PreCheck, RolloutCheck, TriggerId,
};

/// The checklist's phases, in execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Phase 1: pre-promotion validation of the canary (read-only).
    Pre,
    /// Phase 2: promotion execution (set the production image).
    Exec,
    /// Phase 3: during-rollout monitoring.
    Rollout,
    /// Phase 4: post-rollout verification.
    Post,
    /// Phase 5: finalisation (VERSION file, commit, tag, push).
    Final,
    /// Optional cleanup (scale the canary down).
    Cleanup,
}

impl Phase {
    /// All phases in order.
    pub const ALL: [Phase; 6] = [
        Phase::Pre,
        Phase::Exec,
        Phase::Rollout,
        Phase::Post,
        Phase::Final,
        Phase::Cleanup,
    ];

    /// The checklist's heading.
    pub fn title(self) -> &'static str {
        match self {
            Phase::Pre => "Phase 1: Pre-Promotion Validation",
            Phase::Exec => "Phase 2: Promotion Execution",
            Phase::Rollout => "Phase 3: During Rollout Monitoring",
            Phase::Post => "Phase 4: Post-Rollout Verification",
            Phase::Final => "Phase 5: Finalization",
            Phase::Cleanup => "Optional Cleanup",
        }
    }

    /// Short name used in ids and progress lines.
    pub fn key(self) -> &'static str {
        match self {
            Phase::Pre => "pre",
            Phase::Exec => "exec",
            Phase::Rollout => "rollout",
            Phase::Post => "post",
            Phase::Final => "final",
            Phase::Cleanup => "cleanup",
        }
    }
}

/// One checklist item with its defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckDef {
    /// Stable id, e.g. `rollout.error_rate`.
    pub id: CheckId,
    /// The checklist's wording.
    pub title: &'static str,
    /// Default threshold (meaning per `meaning`).
    pub threshold: f64,
    /// Default window (for rates, log look-back); zero when the check is instantaneous.
    pub window: Duration,
    /// What the threshold means, for docs and reports.
    pub meaning: &'static str,
}

/// One rollback trigger with its defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TriggerDef {
    /// Stable id, e.g. `trigger.error_rate`.
    pub id: TriggerId,
    /// The checklist's wording.
    pub title: &'static str,
    /// Default threshold.
    pub threshold: f64,
    /// How long the condition must hold (consecutive samples) before the trigger fires.
    pub hold_for: Duration,
    /// Window of the rate/quantile the condition is computed over.
    pub window: Duration,
    /// Default absolute floor of the quantity (seconds for the p95 trigger; 0 = none).
    pub floor: f64,
    /// What the threshold means.
    pub meaning: &'static str,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Every check of the seed checklist, in checklist order.
pub const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: CheckId::Pre(PreCheck::CanaryPodsReady),
        title: "Canary pods are Running and Ready",
        threshold: 1.0,
        window: secs(0),
        meaning: "minimum fraction of canary pods Ready (at least one pod must exist)",
    },
    CheckDef {
        id: CheckId::Pre(PreCheck::NoCanaryAlerts),
        title: "No canary-specific Prometheus alerts firing",
        threshold: 0.0,
        window: secs(0),
        meaning: "maximum number of firing ZaiProxyCanary* alerts",
    },
    CheckDef {
        id: CheckId::Pre(PreCheck::CanaryErrorRate),
        title: "Canary error rate is not higher than production's",
        threshold: 0.0,
        window: secs(0),
        meaning: "judge: canary 5xx share vs production's since the run began (plus [judge] lookback), anytime-valid at [judge] alpha, tolerance [judge.errors]",
    },
    CheckDef {
        id: CheckId::Pre(PreCheck::CanaryLatency),
        title: "Canary latency has not degraded against production",
        threshold: 0.0,
        window: secs(0),
        meaning: "judge: share of canary requests slower than production's tail bucket vs production's own share, anytime-valid at [judge] alpha, tolerance [judge.latency]",
    },
    CheckDef {
        id: CheckId::Pre(PreCheck::CanaryStreamCuts),
        title: "Canary answers are not cut short more often than production's",
        threshold: 0.0,
        window: secs(0),
        meaning: "judge: share of canary requests answered with a stream upstream cut (no terminal event) vs production's, anytime-valid at [judge] alpha, tolerance [judge.streams]",
    },
    CheckDef {
        id: CheckId::Pre(PreCheck::CanaryReceivingTraffic),
        title: "Canary is receiving traffic",
        threshold: 50.0,
        window: secs(300),
        meaning: "minimum canary requests in the window (0 requests fails, fewer than this is no_data)",
    },
    CheckDef {
        id: CheckId::Pre(PreCheck::HealthOk),
        title: "Health endpoint responds",
        threshold: 1.0,
        window: secs(0),
        meaning: "minimum fraction of canary pods whose /health answers 200 {\"status\":\"ok\"}",
    },
    CheckDef {
        id: CheckId::Pre(PreCheck::TokenUsageLogged),
        title: "Token counting is working",
        threshold: 1.0,
        window: secs(600),
        meaning: "minimum \"Token usage\" log lines of the canary in the window",
    },
    CheckDef {
        id: CheckId::Pre(PreCheck::TokenMetricsExported),
        title: "Metrics are being exported",
        threshold: 1.0,
        window: secs(0),
        meaning: "minimum zai_proxy_tokens_total series with variant=\"test\"",
    },
    CheckDef {
        id: CheckId::Pre(PreCheck::WorkerUsedCanary),
        title: "At least one worker has tested canary endpoint",
        threshold: 1.0,
        window: secs(600),
        meaning: "minimum successful worker requests to the canary in the window",
    },
    CheckDef {
        id: CheckId::Pre(PreCheck::WorkerTokenCounting),
        title: "Worker token counting verified",
        threshold: 1.0,
        window: secs(600),
        meaning: "minimum tokens counted by the canary in the window",
    },
    CheckDef {
        id: CheckId::Pre(PreCheck::NoUpstreamAuthFailures),
        title: "Canary's upstream credential is accepted",
        threshold: 0.0,
        window: secs(600),
        meaning: "maximum upstream 401/403 answers to the canary in the window (zai_proxy_upstream_errors_total{error_type=\"auth\"})",
    },
    CheckDef {
        id: CheckId::Pre(PreCheck::VersionConfirmed),
        title: "Canary version is confirmed",
        threshold: 1.0,
        window: secs(0),
        meaning: "the canary image has a tag and every canary pod runs that image",
    },
    CheckDef {
        id: CheckId::Pre(PreCheck::StableVersion),
        title: "Stable version is determined",
        threshold: 1.0,
        window: secs(0),
        meaning: "the tag without -canary is X.Y.Z and differs from production's version",
    },
    CheckDef {
        id: CheckId::Exec(ExecCheck::ImageUpdated),
        title: "Production image updated to canary version (without -canary suffix)",
        threshold: 1.0,
        window: secs(0),
        meaning: "the production Deployment's image reads back as the stable image",
    },
    CheckDef {
        id: CheckId::Rollout(RolloutCheck::PodsReady),
        title: "New pods are becoming Ready",
        threshold: 1.0,
        window: secs(0),
        meaning: "rollout complete and this fraction of production pods Ready on the new version",
    },
    CheckDef {
        id: CheckId::Rollout(RolloutCheck::NoCrashLoops),
        title: "No pod crash loops",
        threshold: 1.0,
        window: secs(0),
        meaning: "maximum restarts per production pod (CrashLoopBackOff always fails)",
    },
    CheckDef {
        id: CheckId::Rollout(RolloutCheck::ErrorRate),
        title: "Error rate below threshold (<5%)",
        threshold: 0.05,
        window: secs(300),
        meaning: "maximum 5xx ratio of production (exclusive)",
    },
    CheckDef {
        id: CheckId::Rollout(RolloutCheck::P95Latency),
        title: "P95 latency hasn't regressed (>50% increase)",
        threshold: 0.5,
        window: secs(300),
        meaning: "maximum relative p95 increase over the pre-rollout baseline",
    },
    CheckDef {
        id: CheckId::Rollout(RolloutCheck::TokenMetrics),
        title: "Token metrics are being exported",
        threshold: 1.0,
        window: secs(0),
        meaning: "minimum zai_proxy_tokens_total series with variant=\"production\"",
    },
    CheckDef {
        id: CheckId::Rollout(RolloutCheck::TokenCountP99),
        title: "Token counting latency is acceptable (<100ms p99)",
        threshold: 0.1,
        window: secs(300),
        meaning: "maximum p99 of zai_proxy_token_count_duration_seconds (exclusive)",
    },
    CheckDef {
        id: CheckId::Rollout(RolloutCheck::NewVersionErrors),
        title: "New-version pods fail no more often than old-version pods while both serve",
        threshold: 0.0,
        window: secs(0),
        meaning: "judge: 5xx share of production requests on pods of the new version vs the old version's, since the image change, anytime-valid at [judge] alpha, tolerance [judge.errors]; not evaluated when the old version stops serving first",
    },
    CheckDef {
        id: CheckId::Post(PostCheck::AllPodsNewVersion),
        title: "All pods running new version",
        threshold: 1.0,
        window: secs(0),
        meaning: "fraction of production pods whose version label is the stable version",
    },
    CheckDef {
        id: CheckId::Post(PostCheck::DeploymentImage),
        title: "Deployment shows updated image",
        threshold: 1.0,
        window: secs(0),
        meaning: "the production Deployment's image is the stable image",
    },
    CheckDef {
        id: CheckId::Post(PostCheck::WorkersRequests),
        title: "Workers are successfully making requests",
        threshold: 1.0,
        window: secs(300),
        meaning: "minimum successful worker requests to production in the window",
    },
    CheckDef {
        id: CheckId::Post(PostCheck::TokenCountingIncrementing),
        title: "Token counting is working for workers",
        threshold: 1.0,
        window: secs(300),
        meaning: "minimum increase of zai_proxy_tokens_total{variant=\"production\"} in the window",
    },
    CheckDef {
        id: CheckId::Post(PostCheck::NoErrorLogs),
        title: "No errors in production logs",
        threshold: 0.0,
        window: secs(0),
        meaning: "maximum production log lines containing \"error\" (case-insensitive) since the rollout started, after `logs.error_ignore`",
    },
    CheckDef {
        id: CheckId::Post(PostCheck::StartupConfig),
        title: "Startup logs show correct configuration",
        threshold: 1.0,
        window: secs(0),
        meaning: "every new production pod logged \"Token counting enabled\" and \"DEPLOYMENT_VARIANT=production\"",
    },
    CheckDef {
        id: CheckId::Post(PostCheck::RequestRateHealthy),
        title: "Request rate is healthy",
        threshold: 0.5,
        window: secs(300),
        meaning: "minimum production request rate as a fraction of the pre-rollout rate (must be > 0)",
    },
    CheckDef {
        id: CheckId::Post(PostCheck::SuccessRate),
        title: "Success rate is high (>95%)",
        threshold: 0.95,
        window: secs(300),
        meaning: "minimum 2xx ratio of production (exclusive)",
    },
    CheckDef {
        id: CheckId::Final(FinalCheck::VersionFile),
        title: "VERSION file updated (removed -canary suffix)",
        threshold: 1.0,
        window: secs(0),
        meaning: "VERSION contains the stable version",
    },
    CheckDef {
        id: CheckId::Final(FinalCheck::Commit),
        title: "VERSION change committed",
        threshold: 1.0,
        window: secs(0),
        meaning: "commit \"chore: release zai-proxy vX.Y.Z\" created",
    },
    CheckDef {
        id: CheckId::Final(FinalCheck::Tag),
        title: "Git tag created",
        threshold: 1.0,
        window: secs(0),
        meaning: "annotated tag vX.Y.Z created",
    },
    CheckDef {
        id: CheckId::Final(FinalCheck::Push),
        title: "Tag pushed to remote",
        threshold: 1.0,
        window: secs(0),
        meaning: "tag pushed (only with --push)",
    },
    CheckDef {
        id: CheckId::Cleanup(CleanupCheck::CanaryScaledDown),
        title: "Canary deployment scaled down (if no longer needed)",
        threshold: 0.0,
        window: secs(0),
        meaning: "canary replicas after cleanup",
    },
];

/// The rollback triggers, evaluated on every tick of phases 3 and 4 (and by `watch`).
pub const TRIGGERS: &[TriggerDef] = &[
    TriggerDef {
        id: TriggerId::ErrorRate,
        title: "Error rate exceeds 10% for more than 2 minutes",
        threshold: 0.10,
        hold_for: secs(120),
        window: secs(60),
        floor: 0.0,
        meaning: "production 5xx ratio above this (exclusive)",
    },
    TriggerDef {
        id: TriggerId::P95Latency,
        title: "P95 latency increases by >100% for more than 2 minutes",
        threshold: 1.0,
        hold_for: secs(120),
        window: secs(60),
        floor: 0.1,
        meaning: "relative p95 increase over the pre-rollout baseline above this (exclusive)",
    },
    TriggerDef {
        id: TriggerId::PodsNotReady,
        title: "More than 50% of pods are NotReady",
        threshold: 0.5,
        hold_for: secs(60),
        window: secs(0),
        floor: 0.0,
        meaning: "fraction of production pods NotReady above this (exclusive)",
    },
    TriggerDef {
        id: TriggerId::CrashLoop,
        title: "Pods are crash looping",
        threshold: 2.0,
        hold_for: secs(0),
        window: secs(0),
        floor: 0.0,
        meaning: "a pod in CrashLoopBackOff, or a pod restarted at least this many times since the rollout began",
    },
    TriggerDef {
        id: TriggerId::TokenCountingStopped,
        title: "Token counting stops working",
        threshold: 0.0,
        hold_for: secs(120),
        window: secs(120),
        floor: 0.0,
        meaning: "tokens counted in the window at or below this while production served at least min_requests 2xx",
    },
    TriggerDef {
        id: TriggerId::WorkerFailures,
        title: "Workers cannot connect or experience high failure rates",
        threshold: 0.25,
        hold_for: secs(120),
        window: secs(60),
        floor: 0.0,
        meaning: "failed share of worker requests to production above this (exclusive)",
    },
];

/// The check definition for an id.
pub fn check(id: CheckId) -> Option<&'static CheckDef> {
    CHECKS.iter().find(|c| c.id == id)
}

/// The trigger definition for an id.
pub fn trigger(id: TriggerId) -> Option<&'static TriggerDef> {
    TRIGGERS.iter().find(|t| t.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_lists_every_id_once_in_phase_order() {
        let listed: Vec<CheckId> = CHECKS.iter().map(|c| c.id).collect();
        let mut expected: Vec<CheckId> = CheckId::all().collect();
        // The catalog's order is the checklist's; within a phase it may differ from the enum's.
        let mut sorted = listed.clone();
        sorted.sort();
        expected.sort();
        assert_eq!(sorted, expected, "every CheckId has exactly one CheckDef");
        let phases: Vec<Phase> = listed.iter().map(|c| c.phase()).collect();
        assert!(phases.windows(2).all(|w| w[0] <= w[1]), "{phases:?}");
        let triggers: Vec<TriggerId> = TRIGGERS.iter().map(|t| t.id).collect();
        assert_eq!(
            triggers,
            TriggerId::ALL,
            "every TriggerId has exactly one TriggerDef"
        );
        for id in CheckId::all() {
            assert!(check(id).is_some(), "{id}");
        }
    }
}
