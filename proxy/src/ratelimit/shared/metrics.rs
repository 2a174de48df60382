//! The shared budget's metric families. They are registered on the proxy's own registry
//! next to the families of [`crate::metrics`] and pre-created with the `variant` label, so
//! they are visible from start-up (with or without Redis).

use prometheus::{Counter, CounterVec, Gauge, GaugeVec, Opts, Registry};

use crate::error::ProxyError;
use crate::metrics::Metrics;

/// `op` values of `zai_proxy_shared_budget_redis_errors_total`.
pub const REDIS_OPS: &[&str] = &["admit", "heartbeat", "release", "publish"];

/// Families and the series of this process's variant.
#[derive(Debug, Clone)]
pub struct SharedMetrics {
    /// `zai_proxy_upstream_concurrency_budget{variant}`: leases this replica may hold at
    /// most now (the key's budget; this replica's share while Redis is down, or less during
    /// a fallback hold; 0 = no budget).
    pub budget: Gauge,
    /// `zai_proxy_upstream_leases{variant}`: upstream attempts of this replica holding a lease.
    pub leases: Gauge,
    /// `zai_proxy_shared_budget_up{variant}`: 1 while admission goes through Redis.
    pub up: Gauge,
    /// `zai_proxy_shared_budget_replicas{variant}`: replicas last seen alive in Redis.
    pub replicas: Gauge,
    /// `zai_proxy_shared_budget_prefetched{variant}`: admissions granted by Redis ahead of
    /// use that this replica holds now (see `ratelimit::prefetch`).
    pub prefetched: Gauge,
    /// `zai_proxy_shared_budget_prefetched_admissions_total{variant}`: admissions that went
    /// without a call to Redis, on a grant taken ahead.
    pub prefetched_admissions: Counter,
    /// `zai_proxy_shared_budget_fallbacks_total{variant}`: switches to the local share.
    pub fallbacks: Counter,
    /// `zai_proxy_shared_budget_recoveries_total{variant}`: switches back to Redis.
    pub recoveries: Counter,
    errors: CounterVec,
    variant: String,
}

impl SharedMetrics {
    /// Registers the families on `metrics`' registry. A second limiter on the same
    /// registry (only tests build one) keeps series of its own that `/metrics` does not show.
    pub fn register(metrics: &Metrics, variant: &str) -> Self {
        match Self::try_register(metrics.registry(), variant) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("shared budget metrics not registered: {e}");
                Self::try_register(&Registry::new(), variant)
                    .expect("static, valid metric names register on a fresh registry")
            }
        }
    }

    fn try_register(registry: &Registry, variant: &str) -> Result<Self, ProxyError> {
        let gauge = |name: &str, help: &str| -> Result<GaugeVec, ProxyError> {
            let vec = GaugeVec::new(Opts::new(name, help), &["variant"])?;
            registry.register(Box::new(vec.clone()))?;
            Ok(vec)
        };
        let counter = |name: &str, help: &str, labels: &[&str]| -> Result<CounterVec, ProxyError> {
            let vec = CounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(vec.clone()))?;
            Ok(vec)
        };
        let v = [variant];
        let errors = counter(
            "zai_proxy_shared_budget_redis_errors_total",
            "Redis calls of the shared budget that failed or timed out, by operation",
            &["op", "variant"],
        )?;
        for op in REDIS_OPS {
            errors.with_label_values(&[op, variant]);
        }
        Ok(SharedMetrics {
            budget: gauge(
                "zai_proxy_upstream_concurrency_budget",
                "Upstream attempts this replica may have in flight at most now (0 = no budget)",
            )?
            .with_label_values(&v),
            leases: gauge(
                "zai_proxy_upstream_leases",
                "Upstream attempts of this replica holding a concurrency lease",
            )?
            .with_label_values(&v),
            up: gauge(
                "zai_proxy_shared_budget_up",
                "1 while admission uses the budget shared in Redis, 0 otherwise",
            )?
            .with_label_values(&v),
            replicas: gauge(
                "zai_proxy_shared_budget_replicas",
                "Replicas last seen alive in Redis",
            )?
            .with_label_values(&v),
            prefetched: gauge(
                "zai_proxy_shared_budget_prefetched",
                "Admissions granted by Redis ahead of use that this replica holds now",
            )?
            .with_label_values(&v),
            prefetched_admissions: counter(
                "zai_proxy_shared_budget_prefetched_admissions_total",
                "Admissions that used a grant taken ahead from Redis instead of a call of their own",
                &["variant"],
            )?
            .with_label_values(&v),
            fallbacks: counter(
                "zai_proxy_shared_budget_fallbacks_total",
                "Switches from the shared budget to this replica's share (Redis unavailable)",
                &["variant"],
            )?
            .with_label_values(&v),
            recoveries: counter(
                "zai_proxy_shared_budget_recoveries_total",
                "Switches back to the shared budget once Redis answered again",
                &["variant"],
            )?
            .with_label_values(&v),
            errors,
            variant: variant.to_owned(),
        })
    }

    /// The key's budget (shown while admission is shared or local without Redis).
    pub fn set_budget(&self, budget: Option<u32>) {
        self.budget.set(f64::from(budget.unwrap_or(0)));
    }

    /// Records whether Redis is in use.
    pub fn set_up(&self, up: bool) {
        self.up.set(if up { 1.0 } else { 0.0 });
    }

    /// Records the replicas seen alive.
    pub fn set_replicas(&self, alive: u32) {
        self.replicas.set(f64::from(alive));
    }

    /// One failed Redis call.
    pub fn count_error(&self, op: &'static str) {
        self.errors.with_label_values(&[op, &self.variant]).inc();
    }
}
