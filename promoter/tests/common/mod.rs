//! Test doubles: an in-memory platform, a scripted signal source, snapshot builders.
#![allow(dead_code, clippy::unwrap_used)]

pub mod http;

pub type Hook = Box<dyn Fn() + Send>;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use zai_promoter::engine::Snapshot;
use zai_promoter::platform::{
    HttpReply, LogLine, PodInfo, RecordSlot, RecordWrite, RolloutStatus, Variant,
};
use zai_promoter::signals::{Alert, Measurement, Reading, Signal, SignalQuery, SignalSource};
use zai_promoter::{Error, Platform, Result};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 8, 20, 12, 0, 0).unwrap()
}

pub fn at(secs: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(secs)
}

pub fn pod(name: &str, variant: Variant, ready: bool, restarts: u32, version: &str) -> PodInfo {
    PodInfo {
        name: name.into(),
        variant,
        phase: "Running".into(),
        ready,
        restarts,
        waiting_reason: None,
        version: Some(version.into()),
        image: format!("ronaldraygun/zai-proxy:{version}"),
        base_url: None,
        started_at: Some(t0() - chrono::Duration::hours(1)),
    }
}

/// A snapshot at `secs` with the given pods and measurements.
pub fn snapshot(secs: i64) -> Snapshot {
    Snapshot {
        at: at(secs),
        ..Snapshot::default()
    }
}

pub fn measure(s: &mut Snapshot, signal: Signal, variant: Variant, window: Duration, r: Reading) {
    s.measurements.insert(
        SignalQuery::new(signal, variant, window),
        Measurement {
            reading: r,
            source: format!("test {signal} {variant}"),
        },
    );
}

// === scripted signal source ===

/// Readings by (signal, variant), ignoring the window; default no data.
#[derive(Clone, Default)]
pub struct Script {
    pub readings: Arc<Mutex<HashMap<(Signal, Variant), Reading>>>,
    pub alerts: Arc<Mutex<Vec<Alert>>>,
}

impl Script {
    pub fn set(&self, signal: Signal, variant: Variant, r: Reading) {
        self.readings.lock().unwrap().insert((signal, variant), r);
    }

    /// Healthy traffic for a variant: many requests, low errors, fast, tokens counted.
    pub fn healthy(&self, variant: Variant, p95: f64) {
        // Enough requests for the judge to vouch for a canary without errors.
        self.set(Signal::RequestCount, variant, Reading::Value(5000.0));
        self.set(Signal::ErrorCount, variant, Reading::Value(0.0));
        self.set(
            Signal::LatencyBuckets,
            variant,
            Reading::Buckets(vec![
                (p95 / 2.0, 2500.0),
                (p95, 4750.0),
                (f64::INFINITY, 5000.0),
            ]),
        );
        self.set(Signal::RequestRate, variant, Reading::Value(3.3));
        self.set(Signal::ErrorRatio, variant, Reading::Value(0.0));
        self.set(Signal::SuccessRatio, variant, Reading::Value(1.0));
        self.set(
            Signal::LatencyQuantile { permille: 950 },
            variant,
            Reading::Value(p95),
        );
        self.set(
            Signal::TokenCountQuantile { permille: 990 },
            variant,
            Reading::Value(0.002),
        );
        self.set(Signal::TokensIncrease, variant, Reading::Value(50_000.0));
        self.set(Signal::TokenSeries, variant, Reading::Value(4.0));
        self.set(Signal::UpstreamAuthFailures, variant, Reading::Value(0.0));
    }
}

pub struct ScriptedSignals(pub Script);

#[async_trait]
impl SignalSource for ScriptedSignals {
    fn name(&self) -> &str {
        "scripted"
    }
    async fn refresh(&mut self, _pods: &[PodInfo], _now: DateTime<Utc>) -> Result<()> {
        Ok(())
    }
    fn set_new_version(&mut self, _version: &str) {}
    async fn measure(&mut self, q: &SignalQuery, _now: DateTime<Utc>) -> Measurement {
        // Scripted readings are per variant; one version's pods are not scripted.
        let r = if q.cohort.is_all() {
            self.0
                .readings
                .lock()
                .unwrap()
                .get(&(q.signal, q.variant))
                .cloned()
                .unwrap_or(Reading::NoData("not scripted".into()))
        } else {
            Reading::NoData(format!("{} not scripted", q.cohort.label()))
        };
        Measurement {
            reading: r,
            source: format!("scripted {} {}", q.signal, q.variant),
        }
    }
    async fn alerts(&mut self, _now: DateTime<Utc>) -> Result<Vec<Alert>> {
        Ok(self.0.alerts.lock().unwrap().clone())
    }
}

// === in-memory platform ===

#[derive(Debug, Clone)]
pub struct Deployment {
    pub image: String,
    pub version: String,
    pub replicas: u32,
    pub history: Vec<(String, String)>,
    /// Pods of the current template are Ready.
    pub healthy: bool,
    /// Pods of the current template crash-loop.
    pub crash: bool,
    pub restarts: u32,
    pub logs: Vec<String>,
}

#[derive(Clone)]
pub struct FakePlatform {
    pub state: Arc<Mutex<BTreeMap<Variant, Deployment>>>,
    pub calls: Arc<Mutex<Vec<String>>>,
    /// Image version → (healthy, crash) applied when set_image rolls it out.
    pub behaviour: Arc<Mutex<HashMap<String, (bool, bool)>>>,
    pub started: DateTime<Utc>,
    /// Called after every set_image (e.g. to change what the signals say).
    pub on_set_image: Arc<Mutex<Option<Hook>>>,
    /// Where each variant's pods serve /metrics (pods then carry it as `base_url`).
    pub metrics_urls: Arc<Mutex<HashMap<Variant, String>>>,
    /// `scale` answers Ok but changes nothing (a controller that ignores it).
    pub scale_ignored: Arc<Mutex<bool>>,
    /// The run record and its version (bumped by every write, as a resourceVersion).
    pub record: Arc<Mutex<(Option<String>, u64)>>,
    /// Another writer's record, stored right after the next read returned (a lost race).
    pub record_race: Arc<Mutex<Option<String>>>,
}

impl FakePlatform {
    pub fn new(prod_version: &str, canary_version: &str) -> Self {
        let d = |v: &str, replicas| Deployment {
            image: format!("ronaldraygun/zai-proxy:{v}"),
            version: v.into(),
            replicas,
            history: Vec::new(),
            healthy: true,
            crash: false,
            restarts: 0,
            logs: vec![
                format!("Build info: version={v}"),
                "Token counting enabled (tiktoken cl100k_base encoding, model: glm-4)".into(),
                "DEPLOYMENT_VARIANT=production".into(),
                "Token usage (API): input=10 output=20 cache_read=0 cache_write=0".into(),
            ],
        };
        let mut m = BTreeMap::new();
        m.insert(Variant::Production, d(prod_version, 2));
        m.insert(Variant::Test, d(canary_version, 1));
        FakePlatform {
            state: Arc::new(Mutex::new(m)),
            calls: Arc::new(Mutex::new(Vec::new())),
            behaviour: Arc::new(Mutex::new(HashMap::new())),
            started: t0(),
            on_set_image: Arc::new(Mutex::new(None)),
            metrics_urls: Arc::new(Mutex::new(HashMap::new())),
            scale_ignored: Arc::new(Mutex::new(false)),
            record: Arc::new(Mutex::new((None, 1))),
            record_race: Arc::new(Mutex::new(None)),
        }
    }

    /// The stored run record, parsed.
    pub fn run_record(&self) -> Option<zai_promoter::runstate::RunRecord> {
        let text = self.record.lock().unwrap().0.clone()?;
        Some(zai_promoter::runstate::RunRecord::parse(&text).expect("stored record parses"))
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    pub fn get(&self, v: Variant) -> Deployment {
        self.state.lock().unwrap()[&v].clone()
    }
}

#[async_trait]
impl Platform for FakePlatform {
    fn name(&self) -> &str {
        "fake"
    }

    async fn list_pods(&self, variant: Variant) -> Result<Vec<PodInfo>> {
        let url = self.metrics_urls.lock().unwrap().get(&variant).cloned();
        let s = self.state.lock().unwrap();
        let d = &s[&variant];
        Ok((0..d.replicas)
            .map(|i| {
                let mut p = pod(
                    &format!("{}-{}-{i}", variant.label(), d.version),
                    variant,
                    d.healthy && !d.crash,
                    d.restarts,
                    &d.version,
                );
                p.image = d.image.clone();
                if d.crash {
                    p.waiting_reason = Some("CrashLoopBackOff".into());
                }
                p.base_url = url.clone();
                p
            })
            .collect())
    }

    async fn image(&self, variant: Variant) -> Result<String> {
        Ok(self.state.lock().unwrap()[&variant].image.clone())
    }

    async fn set_image(&self, variant: Variant, image: &str, version: &str) -> Result<()> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("set_image {variant} {image}"));
        let (healthy, crash) = self
            .behaviour
            .lock()
            .unwrap()
            .get(version)
            .copied()
            .unwrap_or((true, false));
        let mut s = self.state.lock().unwrap();
        let d = s.get_mut(&variant).unwrap();
        d.history.push((d.image.clone(), d.version.clone()));
        d.image = image.into();
        d.version = version.into();
        d.healthy = healthy;
        d.crash = crash;
        d.restarts = if crash { 3 } else { 0 };
        drop(s);
        if let Some(f) = self.on_set_image.lock().unwrap().as_ref() {
            f();
        }
        Ok(())
    }

    async fn rollout_status(&self, variant: Variant) -> Result<RolloutStatus> {
        let d = self.state.lock().unwrap()[&variant].clone();
        let ready = if d.healthy && !d.crash { d.replicas } else { 0 };
        Ok(RolloutStatus {
            desired: d.replicas,
            updated: d.replicas,
            ready,
            available: ready,
            total: d.replicas,
            observed: true,
            complete: ready == d.replicas,
            failure: None,
            message: format!("{ready}/{} ready", d.replicas),
        })
    }

    async fn undo(&self, variant: Variant) -> Result<()> {
        self.calls.lock().unwrap().push(format!("undo {variant}"));
        let mut s = self.state.lock().unwrap();
        let d = s.get_mut(&variant).unwrap();
        let Some((image, version)) = d.history.pop() else {
            return Err(Error::platform("fake", "undo", "no previous revision"));
        };
        d.image = image;
        d.version = version;
        d.healthy = true;
        d.crash = false;
        d.restarts = 0;
        Ok(())
    }

    async fn scale(&self, variant: Variant, replicas: u32) -> Result<()> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("scale {variant} {replicas}"));
        if *self.scale_ignored.lock().unwrap() {
            return Ok(());
        }
        self.state
            .lock()
            .unwrap()
            .get_mut(&variant)
            .unwrap()
            .replicas = replicas;
        Ok(())
    }

    async fn replicas(&self, variant: Variant) -> Result<u32> {
        Ok(self.state.lock().unwrap()[&variant].replicas)
    }

    async fn read_record(&self) -> Result<RecordSlot> {
        let mut r = self.record.lock().unwrap();
        let slot = RecordSlot {
            text: r.0.clone(),
            version: r.1.to_string(),
        };
        if let Some(other) = self.record_race.lock().unwrap().take() {
            r.0 = Some(other);
            r.1 += 1;
        }
        Ok(slot)
    }

    async fn write_record(&self, text: Option<&str>, version: &str) -> Result<RecordWrite> {
        let mut r = self.record.lock().unwrap();
        if r.1.to_string() != version {
            return Ok(RecordWrite::Conflict);
        }
        r.0 = text.map(str::to_owned);
        r.1 += 1;
        Ok(RecordWrite::Written(r.1.to_string()))
    }

    async fn logs_since(&self, variant: Variant, _since: DateTime<Utc>) -> Result<Vec<LogLine>> {
        let pods = self.list_pods(variant).await?;
        let d = self.get(variant);
        Ok(pods
            .iter()
            .flat_map(|p| {
                d.logs.iter().map(|l| LogLine {
                    pod: p.name.clone(),
                    timestamp: None,
                    line: l.clone(),
                })
            })
            .collect())
    }

    async fn pod_get(&self, pod: &PodInfo, path: &str, _t: Duration) -> Result<HttpReply> {
        if path == "/metrics" {
            let url = format!("{}/metrics", pod.base_url.clone().unwrap_or_default());
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            let r = client
                .get(&url)
                .send()
                .await
                .map_err(|e| Error::platform("fake", "GET /metrics", e))?;
            let status = r.status().as_u16();
            let body = r
                .text()
                .await
                .map_err(|e| Error::platform("fake", "GET /metrics", e))?;
            return Ok(HttpReply { status, body });
        }
        if path == "/health" && pod.ready {
            Ok(HttpReply {
                status: 200,
                body: r#"{"status":"ok"}"#.into(),
            })
        } else {
            Ok(HttpReply {
                status: 503,
                body: r#"{"status":"unavailable"}"#.into(),
            })
        }
    }
}
