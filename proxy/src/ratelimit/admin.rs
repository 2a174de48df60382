//! `POST /admin/reset-rate-limit` (reference §3.6), behind the admin bearer-token guard.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::state::AppState;

/// The reset answer: `{"current_rate":<rate>,"status":"reset"}`.
#[derive(Debug, Serialize)]
pub struct ResetBody {
    /// The rate after the reset (`RATE_LIMIT_INITIAL`).
    pub current_rate: f64,
    /// Always `reset`.
    pub status: &'static str,
}

/// Resets the limiter to `RATE_LIMIT_INITIAL` (rate and ceiling), wakes every waiter and
/// deletes the ceiling state file.
pub async fn reset_rate_limit(State(state): State<Arc<AppState>>) -> Response {
    let current_rate = state.limiter.reset();
    Json(ResetBody {
        current_rate,
        status: "reset",
    })
    .into_response()
}
