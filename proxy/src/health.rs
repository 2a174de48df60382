//! `/health` (liveness, never calls upstream) and `/readyz` (readiness; the state it reports
//! is [`crate::state::Readiness`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;

use crate::quota::QuotaSnapshot;
use crate::ratelimit::RateLimitSnapshot;
use crate::state::{AppState, ReadinessPhase};

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
    let (status, text) = match state.readiness.phase() {
        ReadinessPhase::Ready => (StatusCode::OK, "ready"),
        ReadinessPhase::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
        ReadinessPhase::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
    };
    (status, Json(ReadyBody { status: text })).into_response()
}
