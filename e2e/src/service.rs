//! The front "services": what workers connect to, like the original's Kubernetes Services.
//!
//! - `split` (the original's `zai-proxy-canary`): every ready pod of both deployments, one
//!   request at a time in turn — so traffic follows the ready replica counts (9 + 1 → 90/10).
//! - `production` (`zai-proxy`) and `test` (`zai-proxy-test`): the ready pods of one variant.
//!
//! Endpoints are published by the platform's controller: a pod is listed once its readiness
//! probe passes and removed *before* it is sent SIGTERM, so a draining pod gets no new
//! requests. Routing is per request (HTTP/1.1 keep-alive towards the workers, pooled
//! connections towards the pods). A failure to reach the chosen pod, or no endpoint at all,
//! closes the worker's connection without an answer — what a refused/reset connection through
//! kube-proxy looks like to a client — so the workers count it as lost, never as a polite 5xx.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use zai_promoter::Variant;

/// Response header naming the pod that served a request (for tests and debugging).
pub const SERVED_BY: &str = "x-served-by";

/// One routable pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Pod name.
    pub pod: String,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The endpoints of both deployments, kept current by the platform.
#[derive(Debug, Default)]
pub struct Endpoints {
    by_variant: RwLock<BTreeMap<Variant, Vec<Endpoint>>>,
}

impl Endpoints {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Endpoints::default())
    }

    /// Replaces the endpoints of one variant.
    pub fn publish(&self, variant: Variant, endpoints: Vec<Endpoint>) {
        let mut map = self
            .by_variant
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        map.insert(variant, endpoints);
    }

    /// Removes one pod from its variant at once (before it is stopped).
    pub fn remove(&self, variant: Variant, pod: &str) {
        let mut map = self
            .by_variant
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = map.get_mut(&variant) {
            list.retain(|e| e.pod != pod);
        }
    }

    /// The endpoints a route may use.
    pub fn for_route(&self, route: Route) -> Vec<Endpoint> {
        let map = self
            .by_variant
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match route {
            Route::Split => map.values().flatten().cloned().collect(),
            Route::Variant(v) => map.get(&v).cloned().unwrap_or_default(),
        }
    }
}

/// Which service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// Both deployments, weighted by ready replicas.
    Split,
    /// One deployment.
    Variant(Variant),
}

impl Route {
    /// All three services.
    pub const ALL: [Route; 3] = [
        Route::Split,
        Route::Variant(Variant::Production),
        Route::Variant(Variant::Test),
    ];

    /// The original's Service name.
    pub fn service_name(self) -> &'static str {
        match self {
            Route::Split => "zai-proxy-canary",
            Route::Variant(Variant::Production) => "zai-proxy",
            Route::Variant(Variant::Test) => "zai-proxy-test",
        }
    }
}

/// The three running services.
pub struct FrontService {
    addrs: BTreeMap<&'static str, (Route, SocketAddr)>,
    stop: CancellationToken,
}

impl FrontService {
    /// Starts the three services on free loopback ports.
    pub async fn start(endpoints: Arc<Endpoints>) -> std::io::Result<Self> {
        let stop = CancellationToken::new();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(2))
            .build(connector);
        let mut addrs = BTreeMap::new();
        for route in Route::ALL {
            let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
            let addr = listener.local_addr()?;
            addrs.insert(route.service_name(), (route, addr));
            let router = Arc::new(Router {
                route,
                endpoints: Arc::clone(&endpoints),
                next: AtomicUsize::new(0),
                client: client.clone(),
            });
            tokio::spawn(accept_loop(listener, router, stop.clone()));
        }
        Ok(FrontService { addrs, stop })
    }

    /// Base URL of a service, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self, route: Route) -> String {
        match self.addrs.get(route.service_name()) {
            Some((_, addr)) => format!("http://{addr}"),
            None => String::new(),
        }
    }

    /// Stops accepting (open connections finish their current request).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for FrontService {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Router {
    route: Route,
    endpoints: Arc<Endpoints>,
    next: AtomicUsize,
    client: Client<HttpConnector, Incoming>,
}

/// Why a request could not be routed; hyper closes the connection on it.
#[derive(Debug, thiserror::Error)]
enum RouteError {
    #[error("no ready endpoints for {0}")]
    NoEndpoints(&'static str),
    #[error("bad request target: {0}")]
    Uri(#[from] http::uri::InvalidUri),
    #[error("pod {pod}: {source}")]
    Upstream {
        pod: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
}

impl Router {
    /// Picks the next ready endpoint in turn.
    fn pick(&self) -> Option<Endpoint> {
        let list = self.endpoints.for_route(self.route);
        if list.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % list.len();
        list.get(i).cloned()
    }

    async fn forward(
        &self,
        mut request: Request<Incoming>,
    ) -> Result<Response<Incoming>, RouteError> {
        let endpoint = self
            .pick()
            .ok_or(RouteError::NoEndpoints(self.route.service_name()))?;
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_owned();
        *request.uri_mut() = format!("http://{}{path}", endpoint.addr).parse::<Uri>()?;
        let mut response =
            self.client
                .request(request)
                .await
                .map_err(|source| RouteError::Upstream {
                    pod: endpoint.pod.clone(),
                    source,
                })?;
        if let Ok(value) = HeaderValue::from_str(&endpoint.pod) {
            response.headers_mut().insert(SERVED_BY, value);
        }
        Ok(response)
    }
}

async fn accept_loop(listener: TcpListener, router: Arc<Router>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "front service accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        let router = Arc::clone(&router);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let router = Arc::clone(&router);
                async move {
                    match router.forward(request).await {
                        Ok(response) => Ok::<_, RouteError>(response),
                        Err(e) => {
                            tracing::debug!(error = %e, "front service dropped a request");
                            Err(e)
                        }
                    }
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
