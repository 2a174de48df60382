//! A minimal loopback HTTP server answering every request with the current body.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves `body()` (re-read per request) on 127.0.0.1; returns the base URL.
pub async fn serve(body: Arc<Mutex<String>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                loop {
                    let Ok(n) = sock.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let text = body.lock().unwrap().clone();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

/// Per-scrape increments of a simulated proxy's counters.
#[derive(Debug, Clone, Copy)]
pub struct Traffic {
    pub ok: f64,
    pub errors: f64,
    pub tokens: f64,
}

/// Cumulative counters of a simulated proxy; each scrape first adds one `Traffic` step.
#[derive(Debug)]
pub struct Counters {
    pub variant: &'static str,
    pub step: Traffic,
    ok: f64,
    errors: f64,
    tokens: f64,
}

impl Counters {
    pub fn new(variant: &'static str, step: Traffic) -> Self {
        Counters {
            variant,
            step,
            ok: 0.0,
            errors: 0.0,
            tokens: 0.0,
        }
    }

    /// Advances one step and renders the exposition text.
    pub fn scrape(&mut self) -> String {
        self.ok += self.step.ok;
        self.errors += self.step.errors;
        self.tokens += self.step.tokens;
        let v = self.variant;
        let n = self.ok + self.errors;
        let mut s = String::from("# TYPE zai_proxy_requests_total counter\n");
        s.push_str(&format!("zai_proxy_requests_total{{method=\"POST\",path=\"/v1/messages\",status_code=\"200\",variant=\"{v}\"}} {}\n", self.ok));
        s.push_str(&format!("zai_proxy_requests_total{{method=\"POST\",path=\"/v1/messages\",status_code=\"502\",variant=\"{v}\"}} {}\n", self.errors));
        s.push_str("# TYPE zai_proxy_request_duration_seconds histogram\n");
        for (le, f) in [("0.1", 0.5), ("0.25", 0.9), ("0.5", 1.0), ("+Inf", 1.0)] {
            s.push_str(&format!(
                "zai_proxy_request_duration_seconds_bucket{{variant=\"{v}\",le=\"{le}\"}} {}\n",
                n * f
            ));
        }
        s.push_str("# TYPE zai_proxy_token_count_duration_seconds histogram\n");
        for (le, f) in [("0.001", 0.9), ("0.01", 1.0), ("+Inf", 1.0)] {
            s.push_str(&format!(
                "zai_proxy_token_count_duration_seconds_bucket{{variant=\"{v}\",le=\"{le}\"}} {}\n",
                n * f
            ));
        }
        if self.tokens > 0.0 {
            s.push_str("# TYPE zai_proxy_tokens_total counter\n");
            s.push_str(&format!("zai_proxy_tokens_total{{direction=\"input\",model=\"glm-4.7\",pricing_tier=\"off_peak\",variant=\"{v}\"}} {}\n", self.tokens));
        }
        s
    }
}

/// Serves a simulated proxy's /metrics on 127.0.0.1; returns the base URL.
pub async fn serve_counters(counters: Arc<Mutex<Counters>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let counters = counters.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                loop {
                    let Ok(n) = sock.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let text = counters.lock().unwrap().scrape();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

/// Accepts connections and never answers (for timeouts); returns the base URL.
pub async fn serve_silent() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    format!("http://{addr}")
}

/// Answers every request with `status` and `body`; returns the base URL.
pub async fn serve_status(status: u16, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = sock.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}
