//! Shutdown signals. The drain sequence itself lives in [`crate::server::run`]:
//! readiness 503 at once → keep serving `SHUTDOWN_READINESS_DELAY` → stop accepting →
//! in-flight requests and streams finish (at most `SHUTDOWN_GRACE_PERIOD`) → exit 0.

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C elsewhere).
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("Received SIGTERM"),
                    _ = int.recv() => tracing::info!("Received SIGINT"),
                }
            }
            _ => {
                tracing::warn!("could not install signal handlers; waiting for Ctrl-C");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Received Ctrl-C");
    }
}
