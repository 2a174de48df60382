//! Shared helpers for zai-proxy's integration tests: a proxy started in-process on a
//! loopback port, a tiny recording upstream on loopback, streaming bodies that report when
//! they are dropped, and the real binary with captured logs.
//!
//! Everything listens on 127.0.0.1 only. Other test files may add helpers at the end.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use bytes::Bytes;
use http::{HeaderMap, Method, Uri};
use http_body_util::BodyExt as _;
use tokio::net::TcpListener;
use zai_proxy::{Config, ProxyHandle};

/// A recognisable fake upstream key; tests grep logs and bodies for it.
pub const FAKE_KEY: &str = "zk-test-8c1f0e6d9a4b47f2-SECRET";

/// Defaults for tests: upstream at `upstream_url`, [`FAKE_KEY`], no state file, short
/// shutdown delays, quick upstream timeout.
pub fn test_config(upstream_url: &str) -> Config {
    let mut config = Config::with_defaults(upstream_url, FAKE_KEY);
    config.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.rate_limit.state_file = None;
    config.shutdown_readiness_delay = Duration::from_millis(200);
    config.shutdown_grace_period = Duration::from_secs(5);
    config.upstream_timeout = Duration::from_secs(10);
    // Retries keep their real count but back off in milliseconds, not seconds.
    config.retry.base_delay = Duration::from_millis(10);
    config
}

/// Starts a proxy in-process on 127.0.0.1:0 and waits until it is ready.
pub async fn start_proxy(config: Config) -> ProxyHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let proxy = zai_proxy::start(config, listener)
        .await
        .expect("start proxy");
    assert!(
        zai_proxy::wait_ready(&proxy.state, Duration::from_secs(30)).await,
        "proxy never became ready"
    );
    proxy
}

/// An HTTP client for loopback (no system proxy).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: Method,
    /// Path and query as received.
    pub uri: Uri,
    /// Headers as received.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// A loopback upstream serving `router`, recording every request.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().expect("recorded lock").clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts `router` on 127.0.0.1:0 with a recording layer in front.
pub async fn start_upstream(router: Router) -> Upstream {
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&recorded);
    let router = router.layer(middleware::from_fn(move |req: Request, next: Next| {
        let sink = Arc::clone(&sink);
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            sink.lock().expect("recorded lock").push(Recorded {
                method: parts.method.clone(),
                uri: parts.uri.clone(),
                headers: parts.headers.clone(),
                body: body.clone(),
            });
            next.run(Request::from_parts(parts, Body::from(body))).await
        }
    }));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Upstream {
        addr,
        recorded,
        task,
    }
}

/// A loopback address where nothing listens (bound, then released).
pub async fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

/// Set when a streaming body is dropped (the connection carrying it went away).
#[derive(Clone, Default)]
pub struct DropFlag(Arc<AtomicBool>);

impl DropFlag {
    /// Whether the body was dropped.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Waits until set, at most `limit`.
    pub async fn wait(&self, limit: Duration) -> bool {
        eventually(limit, || self.is_set()).await
    }
}

struct SetOnDrop(DropFlag);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        (self.0).0.store(true, Ordering::SeqCst);
    }
}

/// A streaming body: `chunks` one after another with `interval` between them, then
/// `forever` (if true) keeps sending `ping` events every `interval`. `dropped` is set when
/// the body is dropped.
pub fn paced_body(
    chunks: Vec<Bytes>,
    interval: Duration,
    forever: bool,
    dropped: DropFlag,
) -> Body {
    let guard = SetOnDrop(dropped);
    let stream = async_stream(chunks, interval, forever, guard);
    Body::from_stream(stream)
}

fn async_stream(
    chunks: Vec<Bytes>,
    interval: Duration,
    forever: bool,
    guard: SetOnDrop,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::unfold(
        (chunks.into_iter(), guard, true),
        move |(mut it, guard, first)| async move {
            if !first {
                tokio::time::sleep(interval).await;
            }
            match it.next() {
                Some(chunk) => Some((Ok(chunk), (it, guard, false))),
                None if forever => Some((
                    Ok(Bytes::from_static(
                        b"event: ping\ndata: {\"type\": \"ping\"}\n\n",
                    )),
                    (it, guard, false),
                )),
                None => None,
            }
        },
    )
}

/// Polls `check` every 10 ms until it holds, at most `limit`.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Text of the proxy's `/metrics`.
pub async fn metrics_text(proxy_url: &str) -> String {
    client()
        .get(format!("{proxy_url}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body")
}

/// The value of the sample line starting with `series` (exact name and labels), if any.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

// --- The real binary --------------------------------------------------------------------

/// The `zai-proxy` binary, started with a clean environment plus `env`, with stdout and
/// stderr captured line by line.
pub struct BinaryProxy {
    child: Child,
    /// Every line printed so far (stdout and stderr).
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl BinaryProxy {
    /// Starts the binary (`LISTEN_ADDR` defaults to 127.0.0.1:0 unless given).
    pub fn spawn(env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zai-proxy"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("RATE_LIMIT_STATE_FILE", "")
            .env("RETRY_BASE_DELAY", "10ms")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn zai-proxy");
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            capture(out, Arc::clone(&lines));
        }
        if let Some(err) = child.stderr.take() {
            capture(err, Arc::clone(&lines));
        }
        Self { child, lines }
    }

    /// A copy of every line printed so far.
    pub fn output(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }

    /// Waits for the "listening on <addr>" line and returns the address.
    pub async fn wait_listening(&self, limit: Duration) -> SocketAddr {
        let mut found = None;
        let ok = eventually(limit, || {
            found = self.output().iter().find_map(|l| {
                let at = l.find("listening on ")? + "listening on ".len();
                let addr: String = l[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
                    .collect();
                addr.parse().ok()
            });
            found.is_some()
        })
        .await;
        assert!(
            ok,
            "binary never logged its address:\n{}",
            self.output().join("\n")
        );
        found.expect("address")
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill -TERM");
    }

    /// Waits for the process to exit (at most `limit`) and returns its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for BinaryProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn capture(stream: impl std::io::Read + Send + 'static, lines: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            lines.lock().expect("lines lock").push(line);
        }
    });
}

/// Runs the binary to completion with `env` (no listener expected) and returns
/// (exit code, stdout + stderr).
pub fn run_binary_to_exit(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zai-proxy"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LISTEN_ADDR", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run zai-proxy");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}
