//! Observe-only Z.AI quota polling (issue 4).
//!
//! PLACEHOLDER written by CORE with the final API; POLICIES replaces the inside (client,
//! schema, poller task). Until then the status is always `{"enabled":false,"fresh":false}`.

use std::sync::Arc;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{ApiKey, QuotaSettings};
use crate::metrics::Metrics;

/// The `/health` `quota` block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuotaSnapshot {
    /// Polling is on.
    pub enabled: bool,
    /// A sample exists and is younger than `QUOTA_STALE_AFTER`.
    pub fresh: bool,
}

/// Last known quota state, shared between the poller and `/health`.
#[derive(Debug)]
pub struct QuotaStatus {
    settings: QuotaSettings,
}

impl QuotaStatus {
    /// A status for these settings (polling not started yet).
    pub fn new(settings: &QuotaSettings, _metrics: Arc<Metrics>, _variant: &str) -> Self {
        Self {
            settings: settings.clone(),
        }
    }

    /// Starts the background poller when enabled; it stops when `shutdown` is cancelled.
    /// (Placeholder: logs that polling is disabled.)
    pub fn start(self: &Arc<Self>, _api_key: ApiKey, _shutdown: CancellationToken) {
        if self.settings.enabled {
            tracing::warn!("Quota polling disabled: not implemented in this build");
        } else {
            tracing::info!("Quota polling disabled (QUOTA_POLL_ENABLED is not true)");
        }
    }

    /// Values for `/health`.
    pub fn snapshot(&self) -> QuotaSnapshot {
        QuotaSnapshot {
            enabled: false,
            fresh: false,
        }
    }
}
