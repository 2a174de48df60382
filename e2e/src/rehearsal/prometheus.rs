//! `--signals prometheus`: a real Prometheus binary on loopback scraping every pod (file
//! service discovery kept current from the platform), evaluating deploy/prometheus's alert
//! rules with their durations compressed like every other window of the rehearsal.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::timing::TimeScale;
use crate::Error;
use crate::platform::Cluster;
use crate::platform::ports::free_port;

/// The `namespace` label every scraped series gets (the rules aggregate by namespace).
pub const NAMESPACE: &str = "rehearsal";

/// Is a `prometheus` binary on PATH?
pub fn prometheus_available() -> Result<(), String> {
    match std::process::Command::new("prometheus")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("prometheus --version failed ({s})")),
        Err(e) => Err(format!("no prometheus binary on PATH: {e}")),
    }
}

/// A running Prometheus.
pub struct PrometheusServer {
    url: String,
    _child: Child,
    _dir: tempfile::TempDir,
    stop: CancellationToken,
}

impl PrometheusServer {
    /// Starts Prometheus for `cluster`'s pods and waits until it is ready.
    pub async fn start(cluster: Arc<Cluster>, time: TimeScale) -> Result<Self, Error> {
        let setup = |e: std::io::Error| Error::Setup(format!("prometheus: {e}"));
        let dir = tempfile::Builder::new()
            .prefix("zai-rehearsal-prometheus-")
            .tempdir()
            .map_err(setup)?;
        std::fs::write(
            dir.path().join("rules.yml"),
            compress_durations(RULES, time),
        )
        .map_err(setup)?;
        write_targets(&dir.path().join("targets.json"), &[]).map_err(setup)?;
        let config = "global:\n  scrape_interval: 500ms\n  evaluation_interval: 500ms\n\
             rule_files: [rules.yml]\n\
             scrape_configs:\n  - job_name: zai-proxy\n    scrape_timeout: 400ms\n    \
             file_sd_configs:\n      - files: [targets.json]\n        refresh_interval: 1s\n";
        std::fs::write(dir.path().join("prometheus.yml"), config).map_err(setup)?;
        let port = free_port()?;
        let child = Command::new("prometheus")
            .current_dir(dir.path())
            .arg("--config.file=prometheus.yml")
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(setup)?;
        let url = format!("http://127.0.0.1:{port}");
        let stop = CancellationToken::new();
        tokio::spawn(keep_targets(
            cluster,
            dir.path().join("targets.json"),
            stop.clone(),
        ));
        let server = PrometheusServer {
            url,
            _child: child,
            _dir: dir,
            stop,
        };
        server.wait_ready(Duration::from_secs(30)).await?;
        Ok(server)
    }

    /// Base URL of the HTTP API.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<(), Error> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| Error::Setup(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{}/-/ready", self.url)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(Error::Setup(format!(
            "prometheus at {} not ready after {timeout:?}",
            self.url
        )))
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// deploy/'s alerting rules, compiled in (`zai-rehearse` runs without a source tree in the CI
/// image).
const RULES: &str = include_str!("../../../deploy/prometheus/zai-proxy-rules.yml");

/// Rewrites the pod list for file service discovery every 500 ms.
async fn keep_targets(cluster: Arc<Cluster>, path: PathBuf, stop: CancellationToken) {
    let mut last = Vec::new();
    loop {
        // Pod discovery, as Prometheus' Kubernetes discovery would find them (each simulated
        // pod has its own loopback port).
        let mut targets = cluster.pod_addresses();
        targets.sort();
        if targets != last {
            if let Err(e) = write_targets(&path, &targets) {
                tracing::warn!(error = %e, "cannot write prometheus targets");
            }
            last = targets;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            () = stop.cancelled() => return,
        }
    }
}

fn write_targets(path: &Path, targets: &[(String, String)]) -> std::io::Result<()> {
    let groups: Vec<serde_json::Value> = targets
        .iter()
        .map(|(pod, addr)| {
            serde_json::json!({
                "targets": [addr],
                "labels": {"namespace": NAMESPACE, "pod": pod},
            })
        })
        .collect();
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(&groups).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

/// Compresses `for: 5m`, range selectors `[5m]` and `offset 1h` by the time scale.
pub fn compress_durations(text: &str, time: TimeScale) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let next = ["for: ", "[", "offset "]
            .iter()
            .filter_map(|p| rest.find(p).map(|i| (i, p.len())))
            .min();
        let Some((at, len)) = next else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..at + len]);
        rest = &rest[at + len..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        let unit = rest[digits..].chars().next();
        let seconds = match unit {
            Some('s') => Some(1),
            Some('m') => Some(60),
            Some('h') => Some(3600),
            _ => None,
        };
        if let (true, Some(mult), Ok(n)) = (digits > 0, seconds, rest[..digits].parse::<u64>()) {
            // `5m` must not swallow `5ms`.
            if !(unit == Some('m') && rest[digits + 1..].starts_with('s')) {
                let scaled = time.scale(Duration::from_secs(n * mult));
                out.push_str(&format!("{}s", scaled.as_secs()));
                rest = &rest[digits + 1..];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_compressed() {
        let t = TimeScale::new(2.0).expect("valid");
        let text =
            "for: 5m\nexpr: rate(x[5m]) > rate(x[1h] offset 1h) and y[10s]\nfor: 0s\nvalue: [abc]";
        let got = compress_durations(text, t);
        assert_eq!(
            got,
            "for: 10s\nexpr: rate(x[10s]) > rate(x[120s] offset 120s) and y[1s]\nfor: 0s\nvalue: [abc]"
        );
    }
}
