//! Scenarios: a promotion from 1.2.0 to 1.2.1 with one realistic defect (or none), and what
//! the promoter is expected to decide.
//!
//! Defects come only from configuration, capacity, start-up failures or the fake upstream the
//! new version is wired to — never from a switch inside the proxy. Each version has its own
//! fake Z.AI instance (`old` for 1.2.0, `new` for 1.2.1[-canary]) whose faults are set per
//! phase: `canary` (before production's image changes) and `rollout` (from then on).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::interrupt::{InterruptPlan, KillSignal};

use crate::fake::Faults;

/// The versions every scenario promotes between.
pub const OLD_VERSION: &str = "1.2.0";
/// The canary's tag.
pub const CANARY_VERSION: &str = "1.2.1-canary";
/// The promoted tag.
pub const NEW_VERSION: &str = "1.2.1";

/// What the promoter should decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedOutcome {
    /// Promoted, finalised (VERSION, commit, tag), no worker request lost.
    Promoted,
    /// Aborted before production changed.
    Aborted,
    /// Production rolled back.
    RolledBack,
    /// Either aborted or rolled back.
    AbortedOrRolledBack,
}

impl ExpectedOutcome {
    /// Short text for tables.
    pub fn label(self) -> &'static str {
        match self {
            ExpectedOutcome::Promoted => "promoted",
            ExpectedOutcome::Aborted => "aborted",
            ExpectedOutcome::RolledBack => "rolled_back",
            ExpectedOutcome::AbortedOrRolledBack => "aborted|rolled_back",
        }
    }

    /// Whether a promoter outcome matches.
    pub fn matches(self, outcome: zai_promoter::report::Outcome) -> bool {
        use zai_promoter::report::Outcome;
        match self {
            ExpectedOutcome::Promoted => outcome == Outcome::Promoted,
            ExpectedOutcome::Aborted => outcome == Outcome::Aborted,
            ExpectedOutcome::RolledBack => outcome == Outcome::RolledBack,
            ExpectedOutcome::AbortedOrRolledBack => {
                matches!(outcome, Outcome::Aborted | Outcome::RolledBack)
            }
        }
    }
}

/// The expectation of a scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// The outcome.
    pub outcome: ExpectedOutcome,
    /// Check/trigger ids of which at least one must have decided (failed / fired); a trailing
    /// `*` matches a prefix (`pre.token_*`). Empty = any.
    #[serde(default)]
    pub by: Vec<String>,
    /// The decision must not have come from a deadline (crash loops are seen in restarts).
    #[serde(default)]
    pub not_by_deadline: bool,
}

/// Faults of one fake upstream per phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhaseFaults {
    /// Before production's image changes.
    pub canary: Faults,
    /// From production's image change on.
    pub rollout: Faults,
}

/// Faults of both fakes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultPlan {
    /// The fake behind 1.2.0.
    pub old: PhaseFaults,
    /// The fake behind 1.2.1 and 1.2.1-canary.
    pub new: PhaseFaults,
}

/// Worker load: an open-loop rate spread over the three services by weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Load {
    /// Requests per second, all services together.
    pub rate: f64,
    /// Bound on requests in flight.
    pub max_in_flight: usize,
    /// Weight of the split service (`zai-proxy-canary`).
    pub split: f64,
    /// Weight of the production service (`zai-proxy`).
    pub production: f64,
    /// Weight of the canary service (`zai-proxy-test`).
    pub test: f64,
    /// Fraction of streaming requests.
    pub stream_fraction: f64,
}

impl Default for Load {
    fn default() -> Self {
        Load {
            rate: 200.0,
            max_in_flight: 128,
            split: 2.0,
            production: 1.0,
            test: 1.0,
            stream_fraction: 0.5,
        }
    }
}

/// One rehearsal scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Name (`--scenario NAME`).
    pub name: String,
    /// One line on the defect.
    pub description: String,
    /// Expected decision.
    pub expect: Expectation,
    /// Production replicas.
    pub production_replicas: u32,
    /// Canary replicas.
    pub canary_replicas: u32,
    /// Environment of every proxy (all versions).
    pub env: BTreeMap<String, String>,
    /// Extra environment of the canary's version only (1.2.1-canary).
    pub canary_env: BTreeMap<String, String>,
    /// Extra environment of the new version (1.2.1-canary and 1.2.1).
    pub new_env: BTreeMap<String, String>,
    /// The new production revision's readiness probe names a port the proxy does not
    /// listen on.
    pub new_probe_port_mismatch: bool,
    /// Fake-upstream faults per version and phase.
    pub faults: FaultPlan,
    /// Worker load.
    pub load: Load,
    /// Promoter checks/triggers disabled (inversion runs).
    pub disable: Vec<String>,
    /// The promoter's `[judge] deadline` in seconds (default: the rehearsal's, 90 s). A
    /// verdict needs requests, not minutes: scenarios whose canary needs more requests to be
    /// vouched for (shared noise) get longer.
    pub judge_deadline_secs: Option<u64>,
    /// Run the `zai-promoter` binary and interrupt it during the rollout (then run it again
    /// as a retried CI job would); `None`: the promoter runs in the rehearsal's process.
    pub interrupt: Option<InterruptPlan>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: String::new(),
            description: String::new(),
            expect: Expectation {
                outcome: ExpectedOutcome::Promoted,
                by: Vec::new(),
                not_by_deadline: false,
            },
            production_replicas: 2,
            canary_replicas: 1,
            env: BTreeMap::new(),
            canary_env: BTreeMap::new(),
            new_env: BTreeMap::new(),
            new_probe_port_mismatch: false,
            faults: FaultPlan::default(),
            load: Load::default(),
            disable: Vec::new(),
            judge_deadline_secs: None,
            interrupt: None,
        }
    }
}

/// A scenario file: `[[scenario]]` tables.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// The scenarios.
    #[serde(default)]
    pub scenario: Vec<Scenario>,
}

/// Parses a scenario file; every scenario needs a name.
pub fn parse_scenario_file(text: &str) -> Result<Vec<Scenario>, String> {
    let file: ScenarioFile = toml::from_str(text).map_err(|e| e.to_string())?;
    if file.scenario.is_empty() {
        return Err("no [[scenario]] table".to_owned());
    }
    for s in &file.scenario {
        if s.name.trim().is_empty() {
            return Err("every [[scenario]] needs a name".to_owned());
        }
        for faults in [
            &s.faults.old.canary,
            &s.faults.old.rollout,
            &s.faults.new.canary,
            &s.faults.new.rollout,
        ] {
            faults
                .validate()
                .map_err(|e| format!("scenario {}: {e}", s.name))?;
        }
        if !(s.load.rate.is_finite() && s.load.rate > 0.0) {
            return Err(format!("scenario {}: load.rate must be > 0", s.name));
        }
        if s.production_replicas == 0 || s.canary_replicas == 0 {
            return Err(format!("scenario {}: replicas must be >= 1", s.name));
        }
    }
    Ok(file.scenario)
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn latency(ms: u64, jitter: u64) -> Faults {
    Faults {
        latency_ms: ms,
        latency_jitter_ms: jitter,
        ..Faults::default()
    }
}

fn expect(outcome: ExpectedOutcome, by: &[&str]) -> Expectation {
    Expectation {
        outcome,
        by: by.iter().map(|s| (*s).to_owned()).collect(),
        not_by_deadline: false,
    }
}

/// Both fakes answer with the same base latency in both phases.
fn steady(ms: u64, jitter: u64) -> FaultPlan {
    let phase = PhaseFaults {
        canary: latency(ms, jitter),
        rollout: latency(ms, jitter),
    };
    FaultPlan {
        old: phase.clone(),
        new: phase,
    }
}

/// The interruption scenarios (`zai-rehearse --scenario interruptions`): a healthy canary,
/// the promoter binary stopped or killed at a seeded point of the rollout and run again.
/// Not part of `all` (each runs the promoter twice).
pub fn interruptions() -> Vec<Scenario> {
    let base = Scenario {
        faults: steady(80, 20),
        ..Scenario::default()
    };
    vec![
        Scenario {
            name: "interrupted-kill".into(),
            description: "two promoters start together (one must refuse); the acting one is killed with SIGKILL during the rollout and a retried job takes the run over once its lease expired".into(),
            expect: expect(ExpectedOutcome::Promoted, &[]),
            interrupt: Some(InterruptPlan {
                signal: KillSignal::Kill,
                leave: false,
                concurrent: true,
            }),
            ..base.clone()
        },
        Scenario {
            name: "interrupted-leave".into(),
            description: "SIGTERM during the rollout with --on-interrupt leave (exit 4); `resume` carries the run on".into(),
            expect: expect(ExpectedOutcome::Promoted, &[]),
            interrupt: Some(InterruptPlan {
                signal: KillSignal::Term,
                leave: true,
                concurrent: false,
            }),
            ..base.clone()
        },
        Scenario {
            name: "interrupted-term".into(),
            description: "SIGTERM during the rollout with the default --on-interrupt rollback: rolled back (exit 3)".into(),
            expect: expect(ExpectedOutcome::RolledBack, &[]),
            interrupt: Some(InterruptPlan {
                signal: KillSignal::Term,
                leave: false,
                concurrent: false,
            }),
            ..base
        },
    ]
}

/// The built-in scenarios `zai-rehearse` runs when no `--scenario` is given (`--scenario
/// quick`): every outcome (promoted, aborted, rolled back) and each way the checklist catches a
/// bad version — phase-1 errors, the judge on a subtle regression and on cut streams, a crash
/// at start-up, readiness and latency during the rollout, token counting, a wrong key — in a
/// few minutes. The three that wait minutes for evidence or for a trigger's `for`
/// (`healthy-noisy`, `low-traffic`, `load-only-defect`) run with `--scenario all`, and every
/// built-in scenario runs in the test suite (`e2e/tests/rehearsal_local.rs`).
pub const QUICK: [&str; 9] = [
    "healthy",
    "canary-errors",
    "latency-regression",
    "crash-loop",
    "not-ready",
    "token-counting-off",
    "subtle-regression",
    "fast-cut",
    "wrong-key",
];

/// The [`QUICK`] scenarios, in the built-in order.
pub fn quick() -> Vec<Scenario> {
    builtin()
        .into_iter()
        .filter(|s| QUICK.contains(&s.name.as_str()))
        .collect()
}

/// The built-in scenarios, in the order they run.
pub fn builtin() -> Vec<Scenario> {
    let base = Scenario {
        faults: steady(80, 20),
        ..Scenario::default()
    };
    let mut out = Vec::new();

    out.push(Scenario {
        name: "healthy".into(),
        description: "no defect".into(),
        expect: expect(ExpectedOutcome::Promoted, &[]),
        ..base.clone()
    });

    let mut canary_errors = Scenario {
        name: "canary-errors".into(),
        description: "the new version's upstream path fails ~30% with 5xx".into(),
        expect: expect(ExpectedOutcome::Aborted, &["pre.*"]),
        ..base.clone()
    };
    let failing = Faults {
        error_rate: 0.3,
        error_status: Some(500),
        ..latency(80, 20)
    };
    canary_errors.faults.new = PhaseFaults {
        canary: failing.clone(),
        rollout: failing,
    };
    out.push(canary_errors);

    let mut latency_regression = Scenario {
        name: "latency-regression".into(),
        description: "the new version's upstream gets 4x slower once the rollout starts".into(),
        expect: expect(ExpectedOutcome::RolledBack, &["trigger.p95_latency"]),
        ..base.clone()
    };
    latency_regression.faults.new.rollout = latency(320, 60);
    out.push(latency_regression);

    out.push(Scenario {
        name: "crash-loop".into(),
        description: "the new version's config fails start-up validation (MAX_WORKERS=0)".into(),
        expect: Expectation {
            not_by_deadline: true,
            ..expect(
                ExpectedOutcome::Aborted,
                &["pre.canary_pods_ready", "pre.no_canary_alerts"],
            )
        },
        new_env: env(&[("MAX_WORKERS", "0")]),
        ..base.clone()
    });

    out.push(Scenario {
        name: "not-ready".into(),
        description: "the new production revision's readiness probe targets the wrong port".into(),
        expect: expect(ExpectedOutcome::RolledBack, &["trigger.pods_not_ready"]),
        new_probe_port_mismatch: true,
        ..base.clone()
    });

    out.push(Scenario {
        name: "token-counting-off".into(),
        description: "TOKEN_COUNTING_ENABLED=false in the new version".into(),
        expect: expect(
            ExpectedOutcome::AbortedOrRolledBack,
            &[
                "pre.token_*",
                "pre.worker_token_counting",
                "trigger.token_counting_stopped",
                "rollout.token_*",
                "post.token_*",
                "post.startup_config",
            ],
        ),
        new_env: env(&[("TOKEN_COUNTING_ENABLED", "false")]),
        ..base.clone()
    });

    // Both versions' upstreams fail the same 1 % with 500s, with wide latency jitter: a
    // healthy canary in a noisy environment. Its verdict needs more requests than a clean one
    // (about 8 000 canary requests at 1 %), hence the higher rate.
    let noisy = Faults {
        error_rate: 0.01,
        error_status: Some(500),
        ..latency(80, 60)
    };
    let noisy_plan = FaultPlan {
        old: PhaseFaults {
            canary: noisy.clone(),
            rollout: noisy.clone(),
        },
        new: PhaseFaults {
            canary: noisy.clone(),
            rollout: noisy.clone(),
        },
    };
    let busy = Load {
        rate: 300.0,
        ..Load::default()
    };
    out.push(Scenario {
        name: "healthy-noisy".into(),
        description: "no defect; both upstreams fail 1 % with 500s, latency 80 ms ± 60 ms".into(),
        expect: expect(ExpectedOutcome::Promoted, &[]),
        faults: noisy_plan.clone(),
        load: busy.clone(),
        // About 18 000 canary requests at 1 % on both sides: ~140 s at this rate.
        judge_deadline_secs: Some(240),
        ..base.clone()
    });

    let mut subtle = Scenario {
        name: "subtle-regression".into(),
        description: "the new version's upstream fails 4 % where the old one fails 1 %".into(),
        // Caught by the judge — or, in some seeds, first by the absolute 5 % canary alert: the
        // compressed 10 s window holds ~1 000 canary requests, so a 4 % canary's window ratio
        // (σ ≈ 0.6 points) can stay above 5 % for the whole compressed `for`. Aborting on a
        // firing canary alert is what the checklist asks; a real 5-minute window at this
        // traffic holds ~30 000 requests and would not cross it.
        expect: expect(
            ExpectedOutcome::Aborted,
            &["pre.canary_error_rate", "pre.no_canary_alerts"],
        ),
        faults: noisy_plan,
        load: busy,
        ..base.clone()
    };
    let worse = Faults {
        error_rate: 0.04,
        ..noisy
    };
    subtle.faults.new = PhaseFaults {
        canary: worse.clone(),
        rollout: worse,
    };
    out.push(subtle);

    // Cut answers that come fast: neither a 5xx nor a slow upstream; the stream comparison
    // is what is meant to see them (issue 17: a cut that also looked slow was caught by
    // latency alone).
    let mut fast_cut = Scenario {
        name: "fast-cut".into(),
        description: "the new version's upstream cuts 10 % of streams right after their first content (no terminal event), at full speed".into(),
        expect: expect(ExpectedOutcome::Aborted, &["pre.canary_stream_cuts"]),
        // The cuts are caught in seconds. The longer deadline is for slow machines.
        judge_deadline_secs: Some(180),
        ..base.clone()
    };
    // Streams only: a half JSON answer is a different defect, which the proxy retries (as
    // the original does) — the retries' backoff lands in the latency tail and, when all four
    // attempts are cut (10^-4), a 502 follows after seconds; both would be second and third
    // gates on a defect this scenario means to be fast and 5xx-free.
    let cutting = Faults {
        truncate_rate: 0.1,
        truncate_streams_only: true,
        ..latency(80, 20)
    };
    fast_cut.faults.new = PhaseFaults {
        canary: cutting.clone(),
        rollout: cutting,
    };
    out.push(fast_cut);

    out.push(Scenario {
        name: "low-traffic".into(),
        description: "the canary sees ~8 requests per second: too few to vouch for it".into(),
        expect: Expectation {
            not_by_deadline: false,
            ..expect(
                ExpectedOutcome::Aborted,
                &["pre.canary_error_rate", "pre.canary_latency"],
            )
        },
        load: Load {
            rate: 24.0,
            split: 0.0,
            production: 2.0,
            test: 1.0,
            ..Load::default()
        },
        ..base.clone()
    });

    out.push(Scenario {
        name: "wrong-key".into(),
        description: "the new version is deployed with a wrong ZAI_API_KEY: upstream answers 401"
            .into(),
        // The auth check names the cause; with `--signals prometheus` the first tick can
        // come before Prometheus has scraped the canary's auth series, and the workers' own
        // feed (every canary request failed) decides first (2026-12-07, run seed 1:
        // `pre.worker_used_canary` alone, 0 of 275 ok).
        expect: Expectation {
            not_by_deadline: true,
            ..expect(
                ExpectedOutcome::Aborted,
                &["pre.no_upstream_auth_failures", "pre.worker_used_canary"],
            )
        },
        new_env: env(&[("ZAI_API_KEY", "zk-rotated-away-0000-WRONG")]),
        ..base.clone()
    });

    out.push(Scenario {
        name: "load-only-defect".into(),
        description:
            "MAX_WORKERS=14 on the new version: fine at canary traffic, 503s at production traffic"
                .into(),
        // The new pod's 503s against the old pod's none, if both serve long enough for a
        // verdict, or the error triggers once the new version takes all the traffic (with
        // `--signals prometheus` the workers' own feed can fire first: 2026-12-07, run seed 1,
        // 49 of 115 worker requests failed; the inversion disables it for the same reason).
        expect: expect(
            ExpectedOutcome::RolledBack,
            &[
                "trigger.error_rate",
                "trigger.worker_failures",
                "rollout.new_version_errors",
            ],
        ),
        // 14, not 10: at ~14 canary req/s and 250 ms the canary has ~3.5 requests in flight
        // on average, and with 10 its bursts reached the limit about once in 10 000 canary
        // requests (`--scenario all --repeat 5`, 2026-12-07, run seed 3730784839350985186:
        // one 503 in 2 499, so the judge could not vouch for the canary before its
        // deadline, ≈55 requests short) — a defect that is not load-only. The production pod
        // (~18 in flight) is far over either.
        new_env: env(&[("MAX_WORKERS", "14")]),
        production_replicas: 1,
        faults: steady(250, 50),
        load: Load {
            rate: 76.0,
            split: 6.0,
            production: 60.0,
            test: 10.0,
            ..Load::default()
        },
        // ~14 canary req/s (well within MAX_WORKERS=14 at 250 ms): the judge needs ~1 900
        // error-free canary requests to vouch for it.
        judge_deadline_secs: Some(180),
        ..base
    });
    out
}

/// The ids an inversion run disables: every gate that measures the scenario's defect. With
/// them off the promoter must promote — so it was these gates, not luck, that caught it.
pub fn inversion_disables(name: &str) -> Option<Vec<&'static str>> {
    let ids: &[&str] = match name {
        "canary-errors" => &[
            "pre.no_canary_alerts",
            "pre.canary_error_rate",
            "rollout.error_rate",
            "rollout.new_version_errors",
            "post.success_rate",
            "post.no_error_logs",
            "trigger.error_rate",
            "trigger.worker_failures",
        ],
        "latency-regression" => &["trigger.p95_latency", "rollout.p95_latency"],
        // Only the streams are cut (`truncate_streams_only`): no retry, no 5xx, no slow
        // tail. Cutting JSON answers too made the proxy retry them, which failed this
        // inversion through `trigger.p95_latency` (2026-12-07 CI: production p95 1.18 s, the
        // retries' backoff) and once through a 502 (all four attempts cut).
        "fast-cut" => &["pre.canary_stream_cuts"],
        "crash-loop" => return None,
        // No inversion: with the auth check off the other phase-1 gates (no successful
        // worker request, no tokens) still stop it, and production would roll back too.
        "wrong-key" => return None,
        "not-ready" => &["trigger.pods_not_ready", "rollout.pods_ready"],
        "token-counting-off" => &[
            "pre.token_usage_logged",
            "pre.token_metrics_exported",
            "pre.worker_token_counting",
            "rollout.token_metrics",
            "rollout.token_count_p99",
            "post.token_counting_incrementing",
            "post.startup_config",
            "trigger.token_counting_stopped",
        ],
        "load-only-defect" => &[
            "trigger.error_rate",
            "trigger.worker_failures",
            "rollout.error_rate",
            "rollout.new_version_errors",
            "post.success_rate",
            "post.no_error_logs",
        ],
        _ => return None,
    };
    Some(ids.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_have_unique_names_and_valid_faults() {
        let all = builtin();
        let mut names: Vec<_> = all.iter().map(|s| s.name.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 12);
        for s in &all {
            for f in [
                &s.faults.old.canary,
                &s.faults.old.rollout,
                &s.faults.new.canary,
                &s.faults.new.rollout,
            ] {
                f.validate().expect("valid faults");
            }
        }
    }

    #[test]
    fn the_quick_set_names_built_in_scenarios_and_covers_every_outcome() {
        let quick = quick();
        assert_eq!(quick.len(), QUICK.len(), "a QUICK name is not built in");
        for outcome in [
            ExpectedOutcome::Promoted,
            ExpectedOutcome::Aborted,
            ExpectedOutcome::RolledBack,
        ] {
            assert!(
                quick.iter().any(|s| s.expect.outcome == outcome),
                "no quick scenario expects {outcome:?}"
            );
        }
        assert!(quick.len() < builtin().len(), "quick is not a subset");
    }

    #[test]
    fn scenario_file_parses_and_rejects_bad_input() {
        let text = r#"
            [[scenario]]
            name = "slow-canary"
            expect = { outcome = "aborted", by = ["pre.*"] }
            canary_env = { MAX_WORKERS = "1" }
            [scenario.faults.new.canary]
            latency_ms = 500
            [scenario.load]
            rate = 10.0
        "#;
        let parsed = parse_scenario_file(text).expect("parses");
        assert_eq!(parsed[0].name, "slow-canary");
        assert_eq!(parsed[0].faults.new.canary.latency_ms, 500);
        assert_eq!(parsed[0].canary_env["MAX_WORKERS"], "1");
        assert_eq!(parsed[0].expect.outcome, ExpectedOutcome::Aborted);

        assert!(parse_scenario_file("[[scenario]]\nname = \"x\"\nbogus = 1").is_err());
        assert!(parse_scenario_file("[[scenario]]\nname = \"\"").is_err());
        let bad_rate = "[[scenario]]\nname = \"x\"\n[scenario.faults.new.canary]\nerror_rate = 2.0";
        assert!(parse_scenario_file(bad_rate).is_err());
    }

    #[test]
    fn expectations_match_outcomes() {
        assert!(
            ExpectedOutcome::AbortedOrRolledBack.matches(zai_promoter::report::Outcome::Aborted)
        );
        assert!(
            ExpectedOutcome::AbortedOrRolledBack.matches(zai_promoter::report::Outcome::RolledBack)
        );
        assert!(!ExpectedOutcome::Aborted.matches(zai_promoter::report::Outcome::Promoted));
    }
}
