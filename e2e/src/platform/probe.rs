//! The kubelet's HTTP readiness probe: `GET http://127.0.0.1:PORT/PATH`, 200–399 is ready.

use std::time::Duration;

/// Probes one endpoint; any transport error or status outside 200–399 is "not ready".
pub async fn http_ready(
    client: &reqwest::Client,
    port: u16,
    path: &str,
    timeout: Duration,
) -> bool {
    let url = format!("http://127.0.0.1:{port}{path}");
    match client.get(&url).timeout(timeout).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (200..400).contains(&status)
        }
        Err(_) => false,
    }
}

/// A client for probes: no proxy, no pooling (each probe is a fresh connection, like kubelet).
pub fn probe_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}
