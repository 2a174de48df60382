//! The workers' status endpoint (`zai-workers --status-listen ADDR`), for a caller that cannot
//! share the process's memory — the kind rehearsal reads it through the API server's pod
//! proxy while the workers run inside the cluster:
//!
//! * `GET /report` → `{"finished": bool, "report": Report}` — the live counts while running
//!   (the same numbers [`LiveStats`] gives in process), the final report once the run ended;
//! * `POST /stop` → stops sending new requests (requests in flight finish), as SIGINT does.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{LiveStats, Report};
use crate::Error;
use crate::fake::state::lock;

/// What `GET /report` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The run has ended (stopped, or its duration/count reached); `report` is final.
    pub finished: bool,
    /// The counts so far (final when `finished`).
    pub report: Report,
}

struct Shared {
    live: Arc<LiveStats>,
    seed: u64,
    started: Instant,
    stop: CancellationToken,
    last: Mutex<Option<Report>>,
}

/// A running status endpoint.
pub struct StatusServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl StatusServer {
    /// Serves the status of `live` on `addr` (loopback only unless `pod_network`); `POST
    /// /stop` cancels `stop`.
    pub async fn start(
        addr: SocketAddr,
        pod_network: bool,
        live: Arc<LiveStats>,
        seed: u64,
        stop: CancellationToken,
    ) -> Result<StatusServer, Error> {
        if !addr.ip().is_loopback() && !pod_network {
            return Err(Error::NotLoopback(addr));
        }
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            live,
            seed,
            started: Instant::now(),
            stop,
            last: Mutex::new(None),
        });
        let app = Router::new()
            .route("/report", get(report))
            .route("/stop", post(stop_run))
            .with_state(Arc::clone(&shared));
        let shutdown = CancellationToken::new();
        let done = shutdown.clone();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(done.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "workers status endpoint failed");
            }
        });
        Ok(StatusServer {
            shared,
            addr,
            shutdown,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The run ended with `report`: `GET /report` answers it with `finished: true` from now on.
    pub fn finish(&self, report: Report) {
        *lock(&self.shared.last) = Some(report);
    }

    /// Stops serving.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn report(State(shared): State<Arc<Shared>>) -> axum::Json<StatusReport> {
    let last = lock(&shared.last).clone();
    axum::Json(match last {
        Some(report) => StatusReport {
            finished: true,
            report,
        },
        None => StatusReport {
            finished: false,
            report: Report::from_live(&shared.live, shared.seed, shared.started.elapsed()),
        },
    })
}

async fn stop_run(State(shared): State<Arc<Shared>>) -> &'static str {
    shared.stop.cancel();
    "stopping\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_live_counts_then_the_final_report_and_stops_on_request() {
        let live = Arc::new(LiveStats::new(["split".to_owned()]));
        live.started(0);
        live.ended(
            0,
            super::super::Outcome::Ok,
            std::time::Duration::from_millis(5),
            None,
        );
        let stop = CancellationToken::new();
        let server = StatusServer::start(
            "127.0.0.1:0".parse().expect("addr"),
            false,
            Arc::clone(&live),
            7,
            stop.clone(),
        )
        .await
        .expect("starts");
        let base = format!("http://{}", server.addr());
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let status: StatusReport = client
            .get(format!("{base}/report"))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert!(!status.finished);
        assert_eq!((status.report.sent, status.report.ok), (1, 1));
        assert_eq!(status.report.targets["split"].ok, 1);
        assert_eq!(status.report.seed, 7);

        assert!(!stop.is_cancelled());
        let answer = client
            .post(format!("{base}/stop"))
            .send()
            .await
            .expect("post");
        assert!(answer.status().is_success());
        assert!(stop.is_cancelled());

        let mut last = status.report.clone();
        last.sent = 99;
        server.finish(last);
        let status: StatusReport = client
            .get(format!("{base}/report"))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert!(status.finished);
        assert_eq!(status.report.sent, 99);
    }

    #[tokio::test]
    async fn a_non_loopback_address_needs_pod_network() {
        let live = Arc::new(LiveStats::new(Vec::<String>::new()));
        let refused = StatusServer::start(
            "0.0.0.0:0".parse().expect("addr"),
            false,
            live,
            1,
            CancellationToken::new(),
        )
        .await;
        assert!(matches!(refused, Err(Error::NotLoopback(_))));
    }
}
