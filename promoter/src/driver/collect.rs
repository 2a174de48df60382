//! IO: one snapshot per tick from the platform and the signal source.

use super::*;
use crate::catalog::{CheckId, PreCheck};

impl Promoter {
    pub(super) async fn collect(
        &mut self,
        phase: Option<Phase>,
        queries: &[SignalQuery],
    ) -> Snapshot {
        let now = self.clock.now();
        let mut snap = Snapshot {
            at: now,
            ..Snapshot::default()
        };
        let mut all_pods = Vec::new();
        for v in Variant::ALL {
            let pods = self.platform.list_pods(v).await.map_err(|e| e.to_string());
            if let Ok(p) = &pods {
                all_pods.extend(p.iter().cloned());
            }
            snap.pods.insert(v, pods);
            snap.images
                .insert(v, self.platform.image(v).await.map_err(|e| e.to_string()));
        }
        if matches!(phase, None | Some(Phase::Rollout) | Some(Phase::Post)) {
            snap.rollout = Some(
                self.platform
                    .rollout_status(Variant::Production)
                    .await
                    .map_err(|e| e.to_string()),
            );
        }
        if let Err(e) = self.signals.refresh(&all_pods, now).await {
            tracing::warn!(error = %e, "signal source refresh failed");
            let text = match &e {
                crate::Error::Signals(text) => text.clone(),
                other => other.to_string(),
            };
            crate::report::note_signal_gaps(&mut self.state.signal_gaps, now, &text);
        }
        for q in queries {
            let m = self.signals.measure(q, now).await;
            snap.measurements.insert(*q, m);
        }
        if phase == Some(Phase::Pre) {
            if self
                .config
                .check(CheckId::Pre(PreCheck::NoCanaryAlerts))
                .is_some_and(|c| c.enabled)
            {
                snap.alerts = Some(self.signals.alerts(now).await.map_err(|e| e.to_string()));
            }
            let window = self
                .config
                .check(CheckId::Pre(PreCheck::TokenUsageLogged))
                .map(|c| c.window)
                .unwrap_or(Duration::from_secs(600));
            let since = crate::duration_serde::minus(now, window);
            snap.logs.insert(
                Variant::Test,
                self.platform
                    .logs_since(Variant::Test, since)
                    .await
                    .map_err(|e| e.to_string()),
            );
            if let Some(Ok(pods)) = snap.pods.get(&Variant::Test) {
                for p in pods.clone() {
                    let r = match self
                        .platform
                        .pod_get(&p, "/health", self.config.http_timeout)
                        .await
                    {
                        Err(e @ crate::Error::PodUnreachable { .. }) => {
                            snap.health_unreachable = Some(e.to_string());
                            break;
                        }
                        r => r.map_err(|e| e.to_string()),
                    };
                    snap.health.insert(p.name.clone(), r);
                }
            }
        }
        if phase == Some(Phase::Post) {
            let since = self
                .state
                .ctx
                .rollout_started
                .unwrap_or(self.state.started_at);
            snap.logs.insert(
                Variant::Production,
                self.platform
                    .logs_since(Variant::Production, since)
                    .await
                    .map_err(|e| e.to_string()),
            );
        }
        if let Some(w) = &self.workers {
            snap.workers = Some(Variant::ALL.iter().map(|v| (*v, w.stats(*v))).collect());
        }
        snap
    }
}
