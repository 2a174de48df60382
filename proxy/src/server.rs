//! The router, the serving loop and the drain sequence.
//!
//! Routes: `/health`, `/readyz`, `/metrics`, `/admin/*` (404 unless `ADMIN_TOKEN` is set;
//! then `Authorization: Bearer <ADMIN_TOKEN>` is required; `POST /admin/reset-rate-limit`
//! is handled here), and everything else → the forward handler.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::serve::ListenerExt as _;
use axum::{Json, Router};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::ProxyError;
use crate::routes::WireFormat;
use crate::state::AppState;
use crate::{forward, health, wire};

/// The proxy's router over `state`.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", any(health::health))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics))
        .merge(admin_routes(Arc::clone(&state)))
        .fallback(forward::handle)
        .with_state(state)
}

/// `/admin/*` (`POST /admin/reset-rate-limit`); the token check wraps all of them.
fn admin_routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/reset-rate-limit", post(reset_rate_limit))
        .route("/admin", any(admin_not_found))
        .route("/admin/{*rest}", any(admin_not_found))
        .layer(middleware::from_fn_with_state(state, require_admin))
}

/// The reset answer: `{"current_rate":<rate>,"status":"reset"}`.
#[derive(Debug, Serialize)]
pub struct ResetBody {
    /// The rate after the reset (`RATE_LIMIT_INITIAL`).
    pub current_rate: f64,
    /// Always `reset`.
    pub status: &'static str,
}

/// `POST /admin/reset-rate-limit` (reference §3.6, behind the admin token): resets the
/// limiter to `RATE_LIMIT_INITIAL` (rate and ceiling), wakes every waiter and deletes the
/// ceiling state file.
pub async fn reset_rate_limit(State(state): State<Arc<AppState>>) -> Response {
    let current_rate = state.limiter.reset();
    Json(ResetBody {
        current_rate,
        status: "reset",
    })
    .into_response()
}

async fn admin_not_found() -> Response {
    wire::error_response(
        WireFormat::Other,
        StatusCode::NOT_FOUND,
        "not_found_error",
        "no such admin route",
    )
}

/// 404 for every admin route when `ADMIN_TOKEN` is unset; 401 without the right bearer token.
async fn require_admin(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &state.config.admin_token else {
        return admin_not_found().await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    match presented {
        Some(p) if constant_time_eq(p, token.expose().as_bytes()) => next.run(request).await,
        _ => {
            let mut response = wire::error_response(
                WireFormat::Other,
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "admin routes need Authorization: Bearer <ADMIN_TOKEN>",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// Compares without an early exit on the first different byte (`subtle`); only the length
/// shows in the timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// `GET /metrics`: Prometheus text exposition of every `zai_proxy_*` family.
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match state.metrics.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!("rendering metrics failed: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Start-up work that gates readiness: the tokenizer is loaded (on the blocking pool) and
/// stored in the state before readiness is marked.
async fn startup_work(state: &Arc<AppState>) {
    // The shared budget's first heartbeat (bounded) runs alongside the tokenizer load.
    tokio::join!(
        crate::tokens::hooks::load_counter(&state.config, &state.tokens),
        state.limiter.first_sync()
    );
    state.limiter.start(state.shutdown.clone());
}

/// Serves `state` on `listener` until `shutdown` resolves, then drains (see
/// [`crate::shutdown`]). Returns when every connection is closed or the grace period ended.
pub async fn run(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ProxyError> {
    let addr = listener.local_addr()?;
    state
        .quota
        .start(state.config.api_key.clone(), state.shutdown.clone());
    tracing::info!("Z.AI proxy listening on {addr}");
    tracing::info!("Metrics available at {addr}/metrics");

    let ready_state = Arc::clone(&state);
    let startup = tokio::spawn(async move {
        startup_work(&ready_state).await;
        ready_state.readiness.mark_ready();
        tracing::info!("Ready: start-up work done");
    });

    let stop_accepting = CancellationToken::new();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let service = app(Arc::clone(&state)).into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, service)
        .with_graceful_shutdown(stop_accepting.clone().cancelled_owned());
    let mut server = tokio::spawn(server.into_future());

    tokio::select! {
        result = &mut server => return finished(result),
        () = shutdown => {}
    }
    startup.abort();
    state.readiness.start_draining();
    let delay = state.config.shutdown_readiness_delay;
    tracing::info!(
        "Shutdown: readiness is now 503 (draining); still serving for {}",
        humantime::format_duration(delay)
    );
    tokio::select! {
        result = &mut server => return finished(result),
        () = tokio::time::sleep(delay) => {}
    }
    let grace = state.config.shutdown_grace_period;
    tracing::info!(
        "Shutdown: no longer accepting connections; waiting up to {} for {} in-flight request(s)",
        humantime::format_duration(grace),
        state.capacity.in_flight()
    );
    stop_accepting.cancel();
    state.shutdown.cancel();
    match tokio::time::timeout(grace, &mut server).await {
        Ok(result) => finished(result)?,
        Err(_) => {
            tracing::warn!(
                "Shutdown: grace period over; closing {} remaining request(s)",
                state.capacity.in_flight()
            );
            server.abort();
        }
    }
    tracing::info!("Shutdown complete");
    Ok(())
}

fn finished(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), ProxyError> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ProxyError::Io(e)),
        Err(e) => Err(ProxyError::Task(e.to_string())),
    }
}

/// Builds the state from `config` and serves on `listener` until `shutdown` resolves.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ProxyError> {
    let state = AppState::new(config)?;
    run(state, listener, shutdown).await
}

/// A proxy running in the background of the current runtime (tests, benches, harnesses).
#[derive(Debug)]
pub struct ProxyHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its shared state (metrics, readiness, capacity...).
    pub state: Arc<AppState>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ProxyError>>,
}

impl ProxyHandle {
    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts the drain sequence (as SIGTERM would).
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Starts the drain sequence and waits until it is done.
    pub async fn shutdown(self) -> Result<(), ProxyError> {
        self.shutdown.cancel();
        self.join().await
    }

    /// Waits until the proxy stopped.
    pub async fn join(self) -> Result<(), ProxyError> {
        self.task
            .await
            .map_err(|e| ProxyError::Task(e.to_string()))?
    }
}

/// Starts a proxy with `config` on `listener` in the background and returns once it
/// accepts connections (readiness follows when start-up work is done).
pub async fn start(config: Config, listener: TcpListener) -> Result<ProxyHandle, ProxyError> {
    let addr = listener.local_addr()?;
    let state = AppState::new(config)?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone().cancelled_owned();
    let task = tokio::spawn(run(Arc::clone(&state), listener, signal));
    Ok(ProxyHandle {
        addr,
        state,
        shutdown,
        task,
    })
}

/// Waits until `state` is ready (start-up work done), at most `limit`.
pub async fn wait_ready(state: &AppState, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !state.readiness.is_ready() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}
