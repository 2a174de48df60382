//! Rolling production back: undo (or, resuming a rollback whose undo landed, only the wait), the scale fallback, waiting until production is ready and healthy.

use super::*;

impl Promoter {
    pub(super) async fn run_rollback(&mut self, reason: String) -> End {
        if let Err(e) = self.resolve_versions().await {
            return End::new(Outcome::Error, "could not read the deployments", Some(e));
        }
        self.roll_back(reason).await
    }

    pub(super) async fn roll_back(&mut self, reason: String) -> End {
        self.roll_back_with(reason, true).await
    }

    /// Rolls back; `undo` false when production already runs its previous image (a resumed
    /// rollback whose undo had been applied) and only readiness is awaited.
    pub(super) async fn roll_back_with(&mut self, reason: String, undo: bool) -> End {
        let started = self.clock.now();
        if self.dry_run {
            let verdict = format!(
                "would roll back at T+{} because {reason}",
                human(self.elapsed())
            );
            self.action(format!("dry run: {verdict}"));
            return End::new(Outcome::DryRun, verdict, Some(reason));
        }
        let mut steps = Vec::new();
        self.set_stage(Stage::RollingBack, format!("rolling back: {reason}"))
            .await;
        self.action(format!("roll back production: {reason}"));
        let mut ready = false;
        let undone = if undo {
            self.platform.undo(Variant::Production).await
        } else {
            steps.push("production already runs its previous image (undo applied earlier)".into());
            Ok(())
        };
        match undone {
            Err(e) => steps.push(format!("undo failed: {e}")),
            Ok(()) => {
                if undo {
                    steps.push("undo production to the previous revision".into());
                }
                ready = self.wait_production_ready(&mut steps).await;
            }
        }
        if !ready {
            // The seed's fallback: scale to 0 and back up.
            let replicas = self
                .platform
                .replicas(Variant::Production)
                .await
                .unwrap_or(1)
                .max(1);
            self.action(format!(
                "rollback fallback: scale production to 0 and back to {replicas}"
            ));
            let r = async {
                self.platform.scale(Variant::Production, 0).await?;
                self.platform.scale(Variant::Production, replicas).await
            }
            .await;
            match r {
                Ok(()) => {
                    steps.push(format!("scaled production to 0 and back to {replicas}"));
                    ready = self.wait_production_ready(&mut steps).await;
                }
                Err(e) => steps.push(format!("scale fallback failed: {e}")),
            }
        }
        let mut canary_down = false;
        if self.config.scale_down_canary_on_rollback {
            self.action("scale the canary to 0".into());
            match self.platform.scale(Variant::Test, 0).await {
                Ok(()) => {
                    canary_down = true;
                    steps.push("scaled the canary to 0".into());
                }
                Err(e) => steps.push(format!("scaling the canary down failed: {e}")),
            }
        }
        let production_image = self.platform.image(Variant::Production).await.ok();
        self.state.rollback = Some(RollbackReport {
            reason: reason.clone(),
            started_at: started,
            finished_at: self.clock.now(),
            production_ready: ready,
            production_image,
            canary_scaled_down: canary_down,
            steps,
        });
        let verdict = if ready {
            "rolled back; production ready and healthy on the previous version".to_owned()
        } else {
            "rollback attempted but production is NOT ready — intervene by hand".to_owned()
        };
        End::new(Outcome::RolledBack, verdict, Some(reason))
    }

    /// Waits until the production rollout is complete, every pod Ready, and every reachable
    /// pod answers /health; false after `rollback_timeout`.
    pub(super) async fn wait_production_ready(&mut self, steps: &mut Vec<String>) -> bool {
        let start = self.clock.now();
        loop {
            let status = self.platform.rollout_status(Variant::Production).await;
            let pods = self.platform.list_pods(Variant::Production).await;
            let mut why = String::new();
            let mut ok = false;
            match (&status, &pods) {
                (Ok(s), Ok(pods))
                    if s.complete && !pods.is_empty() && pods.iter().all(|p| p.ready) =>
                {
                    ok = true;
                    for p in pods.iter().filter(|p| p.base_url.is_some()) {
                        match self
                            .platform
                            .pod_get(p, "/health", self.config.http_timeout)
                            .await
                        {
                            Ok(r) if r.status == 200 => {}
                            Ok(r) => {
                                ok = false;
                                why = format!("{} /health answered {}", p.name, r.status);
                            }
                            Err(e) => {
                                ok = false;
                                why = e.to_string();
                            }
                        }
                    }
                }
                (Ok(s), Ok(pods)) => {
                    why = format!(
                        "{}; {}/{} pods Ready",
                        s.message,
                        pods.iter().filter(|p| p.ready).count(),
                        pods.len()
                    )
                }
                (Err(e), _) | (_, Err(e)) => why = e.to_string(),
            }
            let waited = (self.clock.now() - start)
                .to_std()
                .unwrap_or(Duration::ZERO);
            self.emit(Event::Tick {
                phase: None,
                at: self.clock.now(),
                elapsed: self.elapsed(),
                checks: Vec::new(),
                triggers: Vec::new(),
                waiting: if ok {
                    Vec::new()
                } else {
                    vec![format!("rollback: {why}")]
                },
                time_left: Some(self.config.rollback_timeout.saturating_sub(waited)),
            });
            if ok {
                steps.push(format!(
                    "production ready and healthy after {}",
                    human(waited)
                ));
                return true;
            }
            if waited >= self.config.rollback_timeout {
                steps.push(format!(
                    "production not ready after {}: {why}",
                    human(self.config.rollback_timeout)
                ));
                return false;
            }
            // A rollback is not interrupted; the lease is still renewed.
            self.renew_if_due().await;
            self.clock.sleep(self.config.interval).await;
        }
    }
}
