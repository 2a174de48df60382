//! Worker statistics: what the clients of the proxy saw, per variant.
//!
//! Used by `pre.worker_used_canary`, `post.workers_requests` and `trigger.worker_failures`. A
//! rehearsal feeds real client outcomes through [`SharedWorkerStats`]; without a feed (kube /
//! CLI use) the engine falls back on the proxy's own `zai_proxy_requests_total` by variant,
//! which cannot see connection failures (documented in docs/PROMOTER.md).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::platform::Variant;

/// Cumulative client-side counters for one variant.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// Requests the workers sent.
    pub sent: u64,
    /// Requests that got a successful answer.
    pub ok: u64,
    /// Requests that failed in any way: connection refused/reset, timeout, 5xx. (e2e's
    /// workers call the subset whose answer never arrived whole — transport errors and cut
    /// streams — "lost".)
    pub failed: u64,
}

impl WorkerStats {
    /// Counter differences `self - earlier` (saturating, so a reset reads as zero).
    pub fn since(self, earlier: WorkerStats) -> WorkerStats {
        WorkerStats {
            sent: self.sent.saturating_sub(earlier.sent),
            ok: self.ok.saturating_sub(earlier.ok),
            failed: self.failed.saturating_sub(earlier.failed),
        }
    }
}

/// A feed of worker statistics.
pub trait WorkerSignals: Send + Sync {
    /// Cumulative counters for `variant` since the feed started.
    fn stats(&self, variant: Variant) -> WorkerStats;
}

/// Lock-free counters a load generator increments and the engine reads.
#[derive(Debug, Default)]
pub struct SharedWorkerStats {
    counters: [[AtomicU64; 3]; 2],
}

impl SharedWorkerStats {
    /// Records one request to `variant` and whether it succeeded.
    pub fn record(&self, variant: Variant, ok: bool) {
        let c = &self.counters[index(variant)];
        c[0].fetch_add(1, Ordering::Relaxed);
        c[if ok { 1 } else { 2 }].fetch_add(1, Ordering::Relaxed);
    }
}

impl WorkerSignals for SharedWorkerStats {
    fn stats(&self, variant: Variant) -> WorkerStats {
        let c = &self.counters[index(variant)];
        WorkerStats {
            sent: c[0].load(Ordering::Relaxed),
            ok: c[1].load(Ordering::Relaxed),
            failed: c[2].load(Ordering::Relaxed),
        }
    }
}

fn index(variant: Variant) -> usize {
    match variant {
        Variant::Production => 0,
        Variant::Test => 1,
    }
}
