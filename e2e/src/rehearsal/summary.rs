//! The suite's outputs: the table printed at the end and `rehearsal.json`.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::driver::ScenarioResult;
use super::repeat::RepeatSummary;

/// `rehearsal.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// `local`, `docker` or `kind`.
    pub platform: String,
    /// The real cluster of a `kind` run: its kubeconfig and context, the kind cluster, and the
    /// label of the run's namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<super::kind::ClusterRecord>,
    /// `scrape` or `prometheus`.
    pub signals: String,
    /// Seconds per seed minute.
    pub time_scale: f64,
    /// Every scenario met its expectation.
    pub passed: bool,
    /// Wall time of the whole suite.
    pub suite_seconds: f64,
    /// The base seed (`--seed`); each result carries its run's and processes' seeds.
    #[serde(default)]
    pub seed: u64,
    /// Per scenario (with `--repeat N`: every run of every scenario, run by run).
    pub scenarios: Vec<ScenarioResult>,
    /// Pass rates per scenario, with `--repeat N` (N > 1) only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<RepeatSummary>,
    /// Commands replaying each failed run (empty when every run passed).
    #[serde(default)]
    pub replay: Vec<String>,
}

impl Summary {
    /// Writes `rehearsal.json` into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<std::path::PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("rehearsal.json");
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&path, json + "\n")?;
        Ok(path)
    }
}

/// The table: scenario, expected, outcome, time to decision, worker ok/failed/lost.
pub fn table(results: &[ScenarioResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<20} {:<12} {:>10} {:>8} {:>8} {:>6}  result",
        "scenario", "expected", "outcome", "decision", "ok", "failed", "lost"
    );
    for r in results {
        let _ = writeln!(
            out,
            "{:<20} {:<20} {:<12} {:>9.1}s {:>8} {:>8} {:>6}  {}",
            r.name,
            r.expected,
            r.outcome,
            r.decision_seconds,
            r.workers.ok,
            r.workers.failed,
            r.workers.lost,
            if r.passed { "PASS" } else { "FAIL" }
        );
        if !r.passed {
            let _ = writeln!(out, "    outcomes: {:?}", r.outcomes);
        }
        for p in &r.problems {
            let _ = writeln!(out, "    - {p}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rehearsal::kind::ClusterRecord;

    fn summary(cluster: Option<ClusterRecord>) -> Summary {
        Summary {
            platform: "kind".to_owned(),
            cluster,
            signals: "scrape".to_owned(),
            time_scale: 2.0,
            passed: true,
            suite_seconds: 1.0,
            seed: 1,
            scenarios: Vec::new(),
            repeat: None,
            replay: Vec::new(),
        }
    }

    #[test]
    fn a_kind_run_records_its_kubeconfig_and_the_others_record_no_cluster() {
        let record = ClusterRecord {
            kubeconfig: "/home/u/.kube/config".into(),
            context: "kind-zai-rehearsal".to_owned(),
            kind_cluster: "zai-rehearsal".to_owned(),
            created: true,
            namespaces: "zai-rehearse/session=a1b2c3".to_owned(),
        };
        let dir = tempfile::tempdir().expect("dir");
        let path = summary(Some(record.clone()))
            .write(dir.path())
            .expect("write");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        assert_eq!(json["cluster"]["kubeconfig"], "/home/u/.kube/config");
        assert_eq!(json["cluster"]["context"], "kind-zai-rehearsal");
        let back: Summary = serde_json::from_value(json).expect("parses");
        assert_eq!(back.cluster, Some(record));

        let local = serde_json::to_value(summary(None)).expect("json");
        assert!(local.get("cluster").is_none(), "{local}");
    }
}
