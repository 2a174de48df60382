//! Configuration: run settings and per-check overrides, from a TOML file (`--config`).
//!
//! Every key has a default (the seed checklist's numbers); docs/PROMOTER.md lists them all.
//! Unknown keys and unknown check ids are errors, so a typo never silently keeps a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::catalog::{self, CheckId, Phase, TriggerId};
use crate::error::{Error, Result};

/// What ends a run whose data never arrived once production has started changing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoDataPolicy {
    /// Roll production back (default: no evidence the new version is good).
    Rollback,
    /// Leave production on the new version and end as aborted.
    Keep,
}

/// Kubernetes names (used by the kube platform).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubeSettings {
    /// Namespace of both Deployments.
    pub namespace: String,
    /// Production Deployment.
    pub production: String,
    /// Canary Deployment.
    pub canary: String,
    /// Container name in both.
    pub container: String,
}

impl Default for KubeSettings {
    fn default() -> Self {
        KubeSettings {
            namespace: "mcp".into(),
            production: "zai-proxy".into(),
            canary: "zai-proxy-test".into(),
            container: "proxy".into(),
        }
    }
}

/// Prometheus signal source settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrometheusSettings {
    /// Base URL of the Prometheus HTTP API.
    pub url: String,
    /// Per-query timeout.
    #[serde(with = "crate::duration_serde")]
    pub timeout: Duration,
    /// Extra label matchers added to every query, e.g. `namespace="mcp"`.
    pub selector: String,
}

impl Default for PrometheusSettings {
    fn default() -> Self {
        PrometheusSettings {
            url: "http://127.0.0.1:9090".into(),
            timeout: Duration::from_secs(10),
            selector: String::new(),
        }
    }
}

/// Log-check settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Substrings of log lines that `post.no_error_logs` ignores (expected transient errors).
    pub error_ignore: Vec<String>,
}

/// Finalisation settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FinaliseSettings {
    /// The git work tree holding the VERSION file; no repo = phase 5 is skipped.
    pub repo: Option<PathBuf>,
    /// VERSION file, relative to the repo.
    pub version_file: PathBuf,
    /// Remote the tag is pushed to (only with --push).
    pub remote: String,
    /// The canary overlay's kustomization directory, relative to the repo: its image tag and
    /// `version` label are set to the next development version in the release commit.
    pub bump_canary: Option<PathBuf>,
}

impl Default for FinaliseSettings {
    fn default() -> Self {
        FinaliseSettings {
            repo: None,
            version_file: PathBuf::from("VERSION"),
            remote: "origin".into(),
            bump_canary: None,
        }
    }
}

/// A practical tolerance in the file: `{ relative = 0.5, absolute = 0.005 }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToleranceSettings {
    /// Relative margin over production (0.5 = 50 % more).
    pub relative: f64,
    /// Absolute margin in proportion points (0.005 = half a percentage point).
    pub absolute: f64,
}

impl From<ToleranceSettings> for crate::engine::judge::Tolerance {
    fn from(t: ToleranceSettings) -> Self {
        crate::engine::judge::Tolerance {
            relative: t.relative,
            absolute: t.absolute,
        }
    }
}

/// The judge: evidence-based comparisons of the canary with production (docs/DECISIONS.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JudgeSettings {
    /// Bound on the probability of a false verdict of the whole comparison of one run (false
    /// fail of a healthy canary, false pass of a bad one), split equally over the enabled
    /// judged checks; holds however often the checks are re-evaluated.
    pub alpha: f64,
    /// Data from before the run started that count (the comparison starts this long before
    /// the run; a scraping source only has what it scraped).
    #[serde(with = "crate::duration_serde")]
    pub lookback: Duration,
    /// A judged check still inconclusive this long after phase 1 began ends the run:
    /// "aborted: insufficient evidence".
    #[serde(with = "crate::duration_serde")]
    pub deadline: Duration,
    /// Tolerance of the 5xx-share comparison.
    pub errors: ToleranceSettings,
    /// Tolerance of the slow-request-share comparison.
    pub latency: ToleranceSettings,
    /// Tolerance of the cut-stream-share comparison.
    pub streams: ToleranceSettings,
    /// Latency boundary: the histogram bound whose share of slower production requests is
    /// nearest this (0.1: about production's p90), fixed once production has `min_requests`.
    pub latency_tail: f64,
}

impl Default for JudgeSettings {
    fn default() -> Self {
        JudgeSettings {
            alpha: 0.01,
            lookback: Duration::from_secs(600),
            deadline: Duration::from_secs(1800),
            errors: ToleranceSettings {
                relative: 0.5,
                absolute: 0.005,
            },
            latency: ToleranceSettings {
                relative: 0.5,
                absolute: 0.02,
            },
            streams: ToleranceSettings {
                relative: 0.5,
                absolute: 0.01,
            },
            latency_tail: 0.1,
        }
    }
}

/// The run record's lease (docs/PROMOTER.md, "Interruptions and concurrent runs").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSettings {
    /// A promoter that has not renewed its lease for this long counts as gone: the next run
    /// takes the promotion over. Renewed once a third of it passed (checked every tick), so
    /// at least 2 × interval.
    #[serde(with = "crate::duration_serde")]
    pub lease: Duration,
    /// How long a starting promoter waits for another one's lease to end before it gives up
    /// (exit 5). 0: give up at once.
    #[serde(with = "crate::duration_serde")]
    pub lease_wait: Duration,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            lease: Duration::from_secs(120),
            lease_wait: Duration::ZERO,
        }
    }
}

/// The checklist's first-hour monitoring after a promotion (`promote --watch`): its own
/// thresholds against the pre-rollout baseline; the other rollback triggers stay armed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FirstHourSettings {
    /// Error rate that must not be exceeded ("stays below 5%").
    pub error_rate: f64,
    /// Allowed p95 increase over the baseline ("doesn't increase by >20%").
    pub p95_increase: f64,
    /// Window of both rates.
    #[serde(with = "crate::duration_serde")]
    pub window: Duration,
    /// How long a breach must hold before it rolls back.
    #[serde(rename = "for", with = "crate::duration_serde")]
    pub hold_for: Duration,
}

impl Default for FirstHourSettings {
    fn default() -> Self {
        FirstHourSettings {
            error_rate: 0.05,
            p95_increase: 0.2,
            window: Duration::from_secs(300),
            hold_for: Duration::from_secs(120),
        }
    }
}

/// Override of one check's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckOverride {
    /// New threshold.
    pub threshold: Option<f64>,
    /// New window.
    #[serde(with = "crate::duration_serde::option")]
    pub window: Option<Duration>,
    /// `false` skips the check (reported as skipped).
    pub enabled: Option<bool>,
}

/// Override of one trigger's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TriggerOverride {
    /// New threshold.
    pub threshold: Option<f64>,
    /// How long the condition must hold.
    #[serde(rename = "for", with = "crate::duration_serde::option")]
    pub hold_for: Option<Duration>,
    /// Window of the underlying rate/quantile.
    #[serde(with = "crate::duration_serde::option")]
    pub window: Option<Duration>,
    /// Absolute floor (trigger.p95_latency: seconds the p95 must exceed as well).
    pub floor: Option<f64>,
    /// `false` disables the trigger.
    pub enabled: Option<bool>,
}

/// The file format, before resolution against the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    #[serde(with = "crate::duration_serde")]
    interval: Duration,
    min_requests: u64,
    #[serde(with = "crate::duration_serde")]
    no_data_deadline: Duration,
    no_data_after_rollout: NoDataPolicy,
    max_consecutive_errors: u32,
    #[serde(with = "crate::duration_serde")]
    rollout_deadline: Duration,
    #[serde(with = "crate::duration_serde")]
    post_min_duration: Duration,
    #[serde(with = "crate::duration_serde")]
    post_deadline: Duration,
    #[serde(with = "crate::duration_serde")]
    rollback_timeout: Duration,
    #[serde(with = "crate::duration_serde")]
    http_timeout: Duration,
    scale_down_canary: bool,
    scale_down_canary_on_rollback: bool,
    logs: LogSettings,
    finalise: FinaliseSettings,
    kube: KubeSettings,
    prometheus: PrometheusSettings,
    judge: JudgeSettings,
    run: RunSettings,
    first_hour: FirstHourSettings,
    checks: BTreeMap<String, CheckOverride>,
    triggers: BTreeMap<String, TriggerOverride>,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            interval: Duration::from_secs(30),
            min_requests: 50,
            no_data_deadline: Duration::from_secs(600),
            no_data_after_rollout: NoDataPolicy::Rollback,
            max_consecutive_errors: 4,
            rollout_deadline: Duration::from_secs(600),
            post_min_duration: Duration::from_secs(300),
            post_deadline: Duration::from_secs(900),
            rollback_timeout: Duration::from_secs(300),
            http_timeout: Duration::from_secs(5),
            scale_down_canary: true,
            scale_down_canary_on_rollback: true,
            logs: LogSettings::default(),
            finalise: FinaliseSettings::default(),
            kube: KubeSettings::default(),
            prometheus: PrometheusSettings::default(),
            judge: JudgeSettings::default(),
            run: RunSettings::default(),
            first_hour: FirstHourSettings::default(),
            checks: BTreeMap::new(),
            triggers: BTreeMap::new(),
        }
    }
}

/// A check with its effective settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckSpec {
    /// Stable id.
    pub id: CheckId,
    /// Phase.
    pub phase: Phase,
    /// Checklist wording.
    pub title: &'static str,
    /// Effective threshold.
    pub threshold: f64,
    /// Effective window.
    #[serde(with = "crate::duration_serde")]
    pub window: Duration,
    /// Evaluated at all.
    pub enabled: bool,
    /// What the threshold means.
    pub meaning: &'static str,
}

/// A rollback trigger with its effective settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TriggerSpec {
    /// Stable id.
    pub id: TriggerId,
    /// Checklist wording.
    pub title: &'static str,
    /// Effective threshold.
    pub threshold: f64,
    /// Required consecutive duration.
    #[serde(with = "crate::duration_serde")]
    pub hold_for: Duration,
    /// Window of the underlying quantity.
    #[serde(with = "crate::duration_serde")]
    pub window: Duration,
    /// Absolute floor (p95 trigger), 0 = none.
    pub floor: f64,
    /// Evaluated at all.
    pub enabled: bool,
    /// What the threshold means.
    pub meaning: &'static str,
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Tick interval in phases 3–4 (and the re-sampling interval of phase 1).
    #[serde(with = "crate::duration_serde")]
    pub interval: Duration,
    /// Below this many requests in a window, rate checks are `no_data`.
    pub min_requests: u64,
    /// A check `no_data` for this long ends the run.
    #[serde(with = "crate::duration_serde")]
    pub no_data_deadline: Duration,
    /// What the no-data deadline does once the rollout started.
    pub no_data_after_rollout: NoDataPolicy,
    /// Provider errors in a row on one check before the run ends.
    pub max_consecutive_errors: u32,
    /// Phase 3 must pass within this, else roll back.
    #[serde(with = "crate::duration_serde")]
    pub rollout_deadline: Duration,
    /// Phase 4 observes at least this long (triggers stay armed).
    #[serde(with = "crate::duration_serde")]
    pub post_min_duration: Duration,
    /// Phase 4 must pass within this, else roll back.
    #[serde(with = "crate::duration_serde")]
    pub post_deadline: Duration,
    /// How long a rollback may take to make production ready and healthy again.
    #[serde(with = "crate::duration_serde")]
    pub rollback_timeout: Duration,
    /// Timeout of `/health` and `/metrics` requests to pods.
    #[serde(with = "crate::duration_serde")]
    pub http_timeout: Duration,
    /// Scale the canary to 0 after a promotion.
    pub scale_down_canary: bool,
    /// Scale the canary to 0 after a rollback.
    pub scale_down_canary_on_rollback: bool,
    /// Log-check settings.
    pub logs: LogSettings,
    /// Finalisation settings.
    pub finalise: FinaliseSettings,
    /// Kubernetes names.
    pub kube: KubeSettings,
    /// Prometheus settings.
    pub prometheus: PrometheusSettings,
    /// The judge's settings.
    pub judge: JudgeSettings,
    /// The run record's lease.
    pub run: RunSettings,
    /// First-hour monitoring.
    pub first_hour: FirstHourSettings,
    /// Every check, in checklist order.
    pub checks: Vec<CheckSpec>,
    /// Every trigger.
    pub triggers: Vec<TriggerSpec>,
}

impl Default for Config {
    fn default() -> Self {
        resolve(FileConfig::default()).unwrap_or_else(|e| unreachable!("defaults are valid: {e}"))
    }
}

impl Config {
    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Config> {
        let file: FileConfig = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        resolve(file)
    }

    /// The configuration as a TOML file that [`Config::from_toml`] reads back to the same
    /// configuration (every check and trigger written out with its effective settings).
    pub fn to_toml(&self) -> Result<String> {
        let file = FileConfig {
            interval: self.interval,
            min_requests: self.min_requests,
            no_data_deadline: self.no_data_deadline,
            no_data_after_rollout: self.no_data_after_rollout,
            max_consecutive_errors: self.max_consecutive_errors,
            rollout_deadline: self.rollout_deadline,
            post_min_duration: self.post_min_duration,
            post_deadline: self.post_deadline,
            rollback_timeout: self.rollback_timeout,
            http_timeout: self.http_timeout,
            scale_down_canary: self.scale_down_canary,
            scale_down_canary_on_rollback: self.scale_down_canary_on_rollback,
            logs: self.logs.clone(),
            finalise: self.finalise.clone(),
            kube: self.kube.clone(),
            prometheus: self.prometheus.clone(),
            judge: self.judge.clone(),
            run: self.run,
            first_hour: self.first_hour,
            checks: self
                .checks
                .iter()
                .map(|c| {
                    let o = CheckOverride {
                        threshold: Some(c.threshold),
                        window: Some(c.window),
                        enabled: Some(c.enabled),
                    };
                    (c.id.to_string(), o)
                })
                .collect(),
            triggers: self
                .triggers
                .iter()
                .map(|t| {
                    let o = TriggerOverride {
                        threshold: Some(t.threshold),
                        hold_for: Some(t.hold_for),
                        window: Some(t.window),
                        floor: Some(t.floor),
                        enabled: Some(t.enabled),
                    };
                    (t.id.to_string(), o)
                })
                .collect(),
        };
        toml::to_string(&file).map_err(|e| Error::Config(e.to_string()))
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// The effective settings of a check.
    pub fn check(&self, id: impl Into<CheckId>) -> Option<&CheckSpec> {
        let id = id.into();
        self.checks.iter().find(|c| c.id == id)
    }

    /// The effective settings of a trigger.
    pub fn trigger(&self, id: TriggerId) -> Option<&TriggerSpec> {
        self.triggers.iter().find(|t| t.id == id)
    }

    /// The longest window any check or trigger uses: how much a scraping source must keep.
    pub fn longest_window(&self) -> Duration {
        let checks = self.checks.iter().map(|c| c.window);
        let triggers = self.triggers.iter().map(|t| t.window);
        checks
            .chain(triggers)
            .max()
            .unwrap_or(Duration::from_secs(600))
    }

    /// The triggers of the first-hour watch: the error-rate and p95 triggers with the
    /// `[first_hour]` thresholds, window and duration; the others as configured.
    pub fn first_hour_triggers(&self) -> Vec<TriggerSpec> {
        let fh = &self.first_hour;
        self.triggers
            .iter()
            .map(|t| {
                let mut t = t.clone();
                match t.id {
                    TriggerId::ErrorRate => {
                        t.title = "First hour: error rate stays below 5%";
                        t.threshold = fh.error_rate;
                    }
                    TriggerId::P95Latency => {
                        t.title = "First hour: P95 latency doesn't increase by >20%";
                        t.threshold = fh.p95_increase;
                    }
                    _ => return t,
                }
                t.window = fh.window;
                t.hold_for = fh.hold_for;
                t
            })
            .collect()
    }

    /// The enabled checks decided by the judge (they share `[judge] alpha`).
    pub fn judged_checks(&self) -> impl Iterator<Item = &CheckSpec> {
        self.checks
            .iter()
            .filter(|c| c.enabled && crate::engine::is_judged(c.id))
    }

    /// The false-verdict level of one judged check: `[judge] alpha` split equally.
    pub fn judge_alpha_per_check(&self) -> f64 {
        self.judge.alpha / self.judged_checks().count().max(1) as f64
    }

    /// How much a scraping source must keep: the longest window, or the judge's look-back plus
    /// its deadline, plus two intervals.
    pub fn scrape_retention(&self) -> Duration {
        let judge = self.judge.lookback + self.judge.deadline;
        self.longest_window().max(judge) + self.interval * 2
    }

    /// The checks of one phase, in order.
    pub fn phase_checks(&self, phase: Phase) -> impl Iterator<Item = &CheckSpec> {
        self.checks.iter().filter(move |c| c.phase == phase)
    }
}

fn resolve(file: FileConfig) -> Result<Config> {
    let mut problems = Vec::new();
    if file.interval.is_zero() {
        problems.push("interval must be > 0".to_owned());
    }
    if file.min_requests == 0 {
        problems.push("min_requests must be >= 1".to_owned());
    }
    for id in file.checks.keys() {
        if id.parse::<CheckId>().is_err() {
            problems.push(format!("unknown check id [checks.\"{id}\"]"));
        }
    }
    for id in file.triggers.keys() {
        if id.parse::<TriggerId>().is_err() {
            problems.push(format!("unknown trigger id [triggers.\"{id}\"]"));
        }
    }
    let limit = Duration::from_secs(366 * 24 * 3600);
    let mut durations: Vec<(String, Duration)> = vec![
        ("interval".into(), file.interval),
        ("no_data_deadline".into(), file.no_data_deadline),
        ("rollout_deadline".into(), file.rollout_deadline),
        ("post_min_duration".into(), file.post_min_duration),
        ("post_deadline".into(), file.post_deadline),
        ("rollback_timeout".into(), file.rollback_timeout),
        ("http_timeout".into(), file.http_timeout),
        ("prometheus.timeout".into(), file.prometheus.timeout),
        ("judge.lookback".into(), file.judge.lookback),
        ("judge.deadline".into(), file.judge.deadline),
    ];
    let j = &file.judge;
    if !(j.alpha > 0.0 && j.alpha < 0.5) {
        problems.push(format!("judge.alpha must be in (0, 0.5), got {}", j.alpha));
    }
    if !(j.latency_tail > 0.0 && j.latency_tail < 1.0) {
        problems.push(format!(
            "judge.latency_tail must be in (0, 1), got {}",
            j.latency_tail
        ));
    }
    for (name, t) in [
        ("judge.errors", j.errors),
        ("judge.latency", j.latency),
        ("judge.streams", j.streams),
    ] {
        if !(t.relative.is_finite() && t.relative >= 0.0) {
            problems.push(format!("{name}.relative must be >= 0"));
        }
        if !(t.absolute.is_finite() && (0.0..1.0).contains(&t.absolute)) {
            problems.push(format!("{name}.absolute must be in [0, 1)"));
        }
    }
    durations.push(("run.lease".into(), file.run.lease));
    durations.push(("first_hour.window".into(), file.first_hour.window));
    durations.push(("first_hour.for".into(), file.first_hour.hold_for));
    let fh = &file.first_hour;
    if !(fh.error_rate > 0.0 && fh.error_rate < 1.0) {
        problems.push(format!(
            "first_hour.error_rate must be in (0, 1), got {}",
            fh.error_rate
        ));
    }
    if !(fh.p95_increase.is_finite() && fh.p95_increase > 0.0) {
        problems.push(format!(
            "first_hour.p95_increase must be > 0, got {}",
            fh.p95_increase
        ));
    }
    if fh.window < file.interval.saturating_mul(2) {
        problems.push("first_hour.window must be at least 2 × interval".to_owned());
    }
    durations.push(("run.lease_wait".into(), file.run.lease_wait));
    if file.run.lease < file.interval.saturating_mul(2) {
        problems.push(
            "run.lease must be at least 2 × interval (it is renewed between ticks)".to_owned(),
        );
    }
    if j.deadline < file.interval.saturating_mul(2) {
        problems.push("judge.deadline must be at least 2 × interval".to_owned());
    }
    for (id, o) in &file.checks {
        durations.extend(o.window.map(|w| (format!("{id}.window"), w)));
    }
    for (id, o) in &file.triggers {
        durations.extend(o.window.map(|w| (format!("{id}.window"), w)));
        durations.extend(o.hold_for.map(|w| (format!("{id}.for"), w)));
    }
    for (name, d) in durations {
        if d > limit {
            problems.push(format!("{name} is longer than a year"));
        }
    }
    if !problems.is_empty() {
        return Err(Error::Config(problems.join("; ")));
    }
    let min_window = file.interval.saturating_mul(2);
    let checks: Vec<CheckSpec> = catalog::CHECKS
        .iter()
        .map(|def| {
            let o = file
                .checks
                .get(def.id.as_str())
                .cloned()
                .unwrap_or_default();
            let spec = CheckSpec {
                id: def.id,
                phase: def.id.phase(),
                title: def.title,
                threshold: o.threshold.unwrap_or(def.threshold),
                window: o.window.unwrap_or(def.window),
                enabled: o.enabled.unwrap_or(true),
                meaning: def.meaning,
            };
            if !spec.threshold.is_finite() {
                problems.push(format!("{}: threshold must be a finite number", def.id));
            }
            if !def.window.is_zero() && spec.window < min_window {
                problems.push(format!(
                    "{}: window {} is shorter than 2 × interval ({}); a rate needs two samples",
                    def.id,
                    crate::duration_serde::human(spec.window),
                    crate::duration_serde::human(min_window)
                ));
            }
            spec
        })
        .collect();
    let triggers: Vec<TriggerSpec> = catalog::TRIGGERS
        .iter()
        .map(|def| {
            let o = file
                .triggers
                .get(def.id.as_str())
                .cloned()
                .unwrap_or_default();
            let spec = TriggerSpec {
                id: def.id,
                title: def.title,
                threshold: o.threshold.unwrap_or(def.threshold),
                hold_for: o.hold_for.unwrap_or(def.hold_for),
                window: o.window.unwrap_or(def.window),
                floor: o.floor.unwrap_or(def.floor),
                enabled: o.enabled.unwrap_or(true),
                meaning: def.meaning,
            };
            if !spec.threshold.is_finite() || !spec.floor.is_finite() {
                problems.push(format!("{}: threshold and floor must be finite", def.id));
            }
            if !def.window.is_zero() && spec.window < min_window {
                problems.push(format!(
                    "{}: window {} is shorter than 2 × interval ({})",
                    def.id,
                    crate::duration_serde::human(spec.window),
                    crate::duration_serde::human(min_window)
                ));
            }
            spec
        })
        .collect();
    if !problems.is_empty() {
        return Err(Error::Config(problems.join("; ")));
    }
    Ok(Config {
        interval: file.interval,
        min_requests: file.min_requests,
        no_data_deadline: file.no_data_deadline,
        no_data_after_rollout: file.no_data_after_rollout,
        max_consecutive_errors: file.max_consecutive_errors,
        rollout_deadline: file.rollout_deadline,
        post_min_duration: file.post_min_duration,
        post_deadline: file.post_deadline,
        rollback_timeout: file.rollback_timeout,
        http_timeout: file.http_timeout,
        scale_down_canary: file.scale_down_canary,
        scale_down_canary_on_rollback: file.scale_down_canary_on_rollback,
        logs: file.logs,
        finalise: file.finalise,
        kube: file.kube,
        prometheus: file.prometheus,
        judge: file.judge,
        run: file.run,
        first_hour: file.first_hour,
        checks,
        triggers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::RolloutCheck;

    #[test]
    fn defaults_are_the_seed_numbers() {
        let c = Config::default();
        assert_eq!(c.interval, Duration::from_secs(30));
        assert_eq!(c.min_requests, 50);
        let e = c.check(CheckId::Rollout(RolloutCheck::ErrorRate)).unwrap();
        assert_eq!((e.threshold, e.window), (0.05, Duration::from_secs(300)));
        let t = c.trigger(TriggerId::ErrorRate).unwrap();
        assert_eq!((t.threshold, t.hold_for), (0.10, Duration::from_secs(120)));
        assert_eq!(c.checks.len(), catalog::CHECKS.len());
    }

    #[test]
    fn to_toml_reads_back_to_the_same_configuration() {
        let mut c = Config::from_toml(
            "interval = \"2s\"\n[run]\nlease = \"9s\"\n[checks.\"rollout.error_rate\"]\nthreshold = 0.03\nenabled = false\n",
        )
        .unwrap();
        c.judge.deadline = Duration::from_secs(77);
        c.triggers[0].floor = 0.25;
        let back = Config::from_toml(&c.to_toml().unwrap()).unwrap();
        assert_eq!(back, c);
        assert_eq!(
            Config::from_toml(&Config::default().to_toml().unwrap()).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn overrides_apply_and_unknown_ids_are_rejected() {
        let c = Config::from_toml(
            r#"
interval = "1s"
min_requests = 5
[checks."rollout.error_rate"]
threshold = 0.02
window = "5s"
[triggers."trigger.error_rate"]
for = "3s"
window = "2s"
"#,
        )
        .unwrap();
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(
            c.check(CheckId::Rollout(RolloutCheck::ErrorRate))
                .unwrap()
                .threshold,
            0.02
        );
        assert_eq!(
            c.trigger(TriggerId::ErrorRate).unwrap().hold_for,
            Duration::from_secs(3)
        );

        let err = Config::from_toml("[checks.\"rollout.eror_rate\"]\nthreshold = 1\n").unwrap_err();
        assert!(err.to_string().contains("unknown check id"), "{err}");
        let err = Config::from_toml("intervall = \"1s\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = Config::from_toml("interval = \"1m\"\n").unwrap_err();
        assert!(
            err.to_string().contains("shorter than 2 × interval"),
            "{err}"
        );
        let err = Config::from_toml("interval = \"500000000000y\"\n").unwrap_err();
        assert!(err.to_string().contains("longer than a year"), "{err}");
        let err = Config::from_toml("interval = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("invalid configuration"), "{err}");
    }

    #[test]
    fn every_key_and_id_is_documented() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROMOTER.md"))
                .expect("docs/PROMOTER.md");
        let value = toml::Value::try_from(FileConfig::default()).unwrap();
        for (key, v) in value.as_table().unwrap() {
            match v.as_table() {
                Some(t) if key == "checks" || key == "triggers" => assert!(t.is_empty()),
                Some(t) => {
                    for sub in t.keys() {
                        let k = format!("`[{key}] {sub}`");
                        assert!(doc.contains(&k), "{k} is not documented");
                    }
                }
                None => assert!(
                    doc.contains(&format!("| `{key}` |")),
                    "`{key}` is not documented"
                ),
            }
        }
        assert!(doc.contains("`[finalise] repo`"));
        for id in catalog::CHECKS
            .iter()
            .map(|c| c.id.as_str())
            .chain(catalog::TRIGGERS.iter().map(|t| t.id.as_str()))
        {
            assert!(doc.contains(&format!("`{id}`")), "{id} is not documented");
        }
    }
}
