//! `/health` (liveness, never calls upstream) and `/readyz` (readiness).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;

use crate::quota::QuotaSnapshot;
use crate::ratelimit::RateLimitSnapshot;
use crate::state::AppState;

const STARTING: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;

/// Readiness: starting → ready (start-up work done) → draining (after SIGTERM).
#[derive(Debug, Default)]
pub struct Readiness(AtomicU8);

impl Readiness {
    /// Start-up work is done (tokenizer loaded, state restored). No effect once draining.
    pub fn mark_ready(&self) {
        let _ = self
            .0
            .compare_exchange(STARTING, READY, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Shutdown began: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.0.store(DRAINING, Ordering::Release);
    }

    /// Ready and not draining.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire) == READY
    }

    /// Shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Acquire) == DRAINING
    }
}

/// The `/health` body (always 200).
#[derive(Debug, Serialize)]
pub struct HealthBody {
    /// Always `ok`.
    pub status: &'static str,
    /// Limiter state.
    pub rate_limit: RateLimitSnapshot,
    /// Quota state.
    pub quota: QuotaSnapshot,
}

/// `GET /health` (any method): 200 while the process serves.
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    let body = HealthBody {
        status: "ok",
        rate_limit: state.limiter.snapshot(),
        quota: state.quota.snapshot(),
    };
    Json(body).into_response()
}

#[derive(Serialize)]
struct ReadyBody {
    status: &'static str,
}

/// `GET /readyz`: 200 `ready`, 503 `starting` or `draining`.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let (status, text) = match state.readiness.0.load(Ordering::Acquire) {
        READY => (StatusCode::OK, "ready"),
        DRAINING => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
    };
    (status, Json(ReadyBody { status: text })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_moves_forward_only() {
        let r = Readiness::default();
        assert!(!r.is_ready());
        r.mark_ready();
        assert!(r.is_ready());
        r.start_draining();
        r.mark_ready();
        assert!(r.is_draining() && !r.is_ready());
    }
}
