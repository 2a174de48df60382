//! Observe-only Z.AI quota polling (reference §6).
//!
//! When `QUOTA_POLL_ENABLED`, a background task polls the account's Coding Plan quota
//! windows and publishes them on `/health` and the `zai_proxy_quota_*` gauges. It shares
//! nothing with the request path and never affects admission. Failures keep the last known
//! good sample; freshness is judged against `QUOTA_STALE_AFTER`.

pub mod freshness;
pub mod normalize;
pub mod poller;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{ApiKey, QuotaSettings};
use crate::metrics::Metrics;
use freshness::{PollOutcome, QuotaState, go_duration};
use normalize::{QuotaSample, label_value};
use poller::PollFailure;

/// One window on `/health`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuotaWindowView {
    /// `five_hour` or `weekly`.
    pub window: &'static str,
    /// `TOKENS_LIMIT` or `CREDIT_LIMIT`.
    pub limit_type: &'static str,
    /// Used share, 0..=1.
    pub used_fraction: f64,
    /// When the window resets, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_at: Option<DateTime<Utc>>,
}

/// The `/health` `quota` block; only `enabled` and `fresh` when polling is off.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuotaSnapshot {
    /// Polling is on.
    pub enabled: bool,
    /// A sample exists and is younger than `QUOTA_STALE_AFTER`.
    pub fresh: bool,
    /// `QUOTA_POLL_INTERVAL` as Go prints durations (`1m0s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// `QUOTA_STALE_AFTER` as Go prints durations (`15m0s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_after: Option<String>,
    /// When the last good sample was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<DateTime<Utc>>,
    /// Age of the last good sample, seconds (omitted when none or zero).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_age_seconds: Option<f64>,
    /// `success`, `error` or `malformed` (omitted before the first poll).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_outcome: Option<&'static str>,
    /// The provider's plan level (`lite`, `pro`, `max`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_tier: Option<String>,
    /// The windows of the last good sample.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<Vec<QuotaWindowView>>,
}

/// Last known quota state, shared between the poller and `/health`.
#[derive(Debug)]
pub struct QuotaStatus {
    settings: QuotaSettings,
    metrics: Arc<Metrics>,
    variant: String,
    state: Mutex<QuotaState>,
}

impl QuotaStatus {
    /// A status for these settings (polling not started yet).
    pub fn new(settings: &QuotaSettings, metrics: Arc<Metrics>, variant: &str) -> Self {
        Self {
            settings: settings.clone(),
            metrics,
            variant: variant.to_owned(),
            state: Mutex::new(QuotaState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QuotaState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the background poller when enabled (first poll at once, then every
    /// `QUOTA_POLL_INTERVAL`); it stops when `shutdown` is cancelled.
    pub fn start(self: &Arc<Self>, api_key: ApiKey, shutdown: CancellationToken) {
        if !self.settings.enabled {
            tracing::info!("Quota polling disabled (QUOTA_POLL_ENABLED is not true)");
            return;
        }
        let client = match crate::client::build_client() {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!("Quota polling disabled: {e}");
                return;
            }
        };
        tracing::info!(
            "Quota polling enabled: {}{} every {}, stale after {}",
            self.settings.base_url,
            poller::QUOTA_PATH,
            humantime::format_duration(self.settings.interval),
            humantime::format_duration(self.settings.stale_after)
        );
        let status = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = poller::ticker(status.settings.interval);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => {
                        tracing::info!("Quota polling stopped: shutting down");
                        return;
                    }
                    _ = ticker.tick() => {}
                }
                let result = tokio::select! {
                    () = shutdown.cancelled() => {
                        tracing::info!("Quota polling stopped: shutting down");
                        return;
                    }
                    result = poller::poll_once(&client, &status.settings, &api_key) => result,
                };
                status.record_poll(result, Utc::now());
            }
        });
    }

    /// Applies one poll result: state, log line, metrics.
    pub fn record_poll(&self, result: Result<QuotaSample, PollFailure>, now: DateTime<Utc>) {
        match &result {
            Ok(sample) => tracing::info!("quota poll ok: windows={}", sample.windows.len()),
            Err(PollFailure::Provider(Some(code))) => {
                tracing::warn!("quota poll rejected: provider code {code}");
            }
            Err(e) => tracing::warn!("quota poll failed: {e}"),
        }
        let published = result.as_ref().ok().cloned();
        let result = result.map_err(|e| match e {
            PollFailure::Malformed(_) => PollOutcome::Malformed,
            _ => PollOutcome::Error,
        });
        let (counts, age) = {
            let mut state = self.lock();
            let counts = state.on_poll(result, now, self.settings.stale_after);
            (counts, state.sample_age(now))
        };
        let m = &self.metrics;
        let v = self.variant.as_str();
        m.quota_poll_total
            .with_label_values(&[counts.result.as_str(), v])
            .inc();
        if counts.became_stale {
            m.quota_poll_total.with_label_values(&["stale", v]).inc();
        }
        if let Some(sample) = published {
            for w in &sample.windows {
                let window = label_value(w.window);
                let limit_type = label_value(w.limit_type);
                let labels = [window.as_str(), limit_type.as_str(), v];
                m.quota_usage_ratio
                    .with_label_values(&labels)
                    .set(w.used_fraction);
                m.quota_remaining_ratio
                    .with_label_values(&labels)
                    .set(1.0 - w.used_fraction);
                if let Some(reset) = w.reset_at {
                    m.quota_reset_time_seconds
                        .with_label_values(&labels)
                        .set(reset.timestamp_millis() as f64 / 1000.0);
                }
            }
        }
        if let Some(age) = age {
            m.quota_sample_age_seconds
                .with_label_values(&[v])
                .set(age.as_secs_f64());
        }
    }

    /// Values for `/health`.
    pub fn snapshot(&self) -> QuotaSnapshot {
        self.snapshot_at(Utc::now())
    }

    /// Values for `/health` at `now`.
    pub fn snapshot_at(&self, now: DateTime<Utc>) -> QuotaSnapshot {
        if !self.settings.enabled {
            return QuotaSnapshot {
                enabled: false,
                fresh: false,
                interval: None,
                stale_after: None,
                last_success_at: None,
                sample_age_seconds: None,
                last_outcome: None,
                plan_tier: None,
                windows: None,
            };
        }
        let state = self.lock();
        let sample = state.sample.as_ref();
        QuotaSnapshot {
            enabled: true,
            fresh: state.is_fresh(now, self.settings.stale_after),
            interval: Some(go_duration(self.settings.interval)),
            stale_after: Some(go_duration(self.settings.stale_after)),
            last_success_at: state.last_success_at,
            sample_age_seconds: state
                .sample_age(now)
                .map(|a| a.as_secs_f64())
                .filter(|a| *a > 0.0),
            last_outcome: state.last_outcome.map(PollOutcome::as_str),
            plan_tier: sample.and_then(|s| s.plan_tier.clone()),
            windows: sample.map(|s| {
                s.windows
                    .iter()
                    .map(|w| QuotaWindowView {
                        window: w.window,
                        limit_type: w.limit_type,
                        used_fraction: w.used_fraction,
                        reset_at: w.reset_at,
                    })
                    .collect()
            }),
        }
    }
}
