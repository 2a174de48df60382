//! The real zai-proxy binary in front of the fake: every fake surface is relayed — bodies
//! byte for byte (the fake's content is deterministic, so the answer through the proxy
//! equals the answer straight from the fake), streams to their terminal event, the
//! proxy's credential replacing the client's.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test on purpose")]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use zai_e2e::fake::{FakeConfig, FakeZai, Faults};

const UPSTREAM_KEY: &str = "zk-relay-test-5d2c9b7e-SECRET";

/// The zai-proxy binary with captured output; killed on drop.
struct Proxy {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    fn spawn(fake: &FakeZai) -> Proxy {
        let bin = zai_e2e::proxy_binary(false).unwrap_or_else(|error| panic!("{error}"));
        let mut child = Command::new(bin)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("ZAI_TARGET_URL", fake.url())
            .env("ZAI_API_KEY", UPSTREAM_KEY)
            .env("RATE_LIMIT_STATE_FILE", "")
            .env("MAX_RETRIES", "0")
            .env("DEPLOYMENT_VARIANT", "relay-test")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Proxy { child, lines }
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The address from the proxy's "listening on <addr>" log line.
    async fn address(&self) -> SocketAddr {
        for _ in 0..600 {
            let found = self.lines.lock().unwrap().iter().find_map(|line| {
                let at = line.find("listening on ")? + "listening on ".len();
                let addr: String = line[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | ':'))
                    .collect();
                addr.parse().ok()
            });
            if let Some(addr) = found {
                return addr;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("zai-proxy never logged its address:\n{}", self.output());
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn anthropic_body(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "stream": stream,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Summarise the relay path. 请用一句话。"}]
    })
}

fn openai_body(stream: bool) -> Value {
    json!({
        "model": "glm-4.6",
        "stream": stream,
        "messages": [{"role": "user", "content": "Summarise the relay path. 请用一句话。"}]
    })
}

/// POSTs `body` to `base + path` with a client credential the proxy must replace.
async fn post(
    base: &str,
    path: &str,
    body: &Value,
    fake_key: Option<&str>,
) -> (u16, String, String) {
    let mut request = client().post(format!("{base}{path}")).json(body);
    if let Some(key) = fake_key {
        request = request.header("x-api-key", key).bearer_auth(key);
    } else {
        request = request.header("x-api-key", "client-key-not-upstream");
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

async fn get(base: &str, path: &str, key: Option<&str>) -> (u16, String) {
    let mut request = client().get(format!("{base}{path}"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn proxy_relays_every_fake_surface() {
    let fake = FakeZai::start(FakeConfig {
        record: 64,
        ..FakeConfig::with_key(UPSTREAM_KEY)
    })
    .await
    .unwrap();
    let proxy = Proxy::spawn(&fake);
    let proxy_url = format!("http://{}", proxy.address().await);
    let direct = fake.url();

    // Model routes, JSON and SSE: through the proxy = straight from the fake (same seed,
    // same body → same content), with the client's credential replaced by the proxy's.
    let cases = [
        ("/api/anthropic/v1/messages", anthropic_body(false)),
        ("/api/anthropic/v1/messages", anthropic_body(true)),
        ("/api/paas/v4/chat/completions", openai_body(false)),
        ("/api/paas/v4/chat/completions", openai_body(true)),
        ("/v1/chat/completions", openai_body(true)),
        (
            "/api/anthropic/v1/messages/count_tokens",
            anthropic_body(false),
        ),
    ];
    for (path, body) in &cases {
        let (status, content_type, relayed) = post(&proxy_url, path, body, None).await;
        assert_eq!(status, 200, "{path}: {relayed}\n{}", proxy.output());
        let (_, direct_type, expected) = post(&direct, path, body, Some(UPSTREAM_KEY)).await;
        assert_eq!(content_type, direct_type, "{path}: content type kept");
        if body["stream"] == true {
            assert_eq!(
                sse_payloads(&relayed),
                sse_payloads(&expected),
                "{path}: every event relayed"
            );
            let terminal = if path.contains("anthropic") {
                "event: message_stop"
            } else {
                "data: [DONE]"
            };
            assert!(relayed.contains(terminal), "{path}: terminal event relayed");
        } else {
            let relayed: Value = serde_json::from_str(&relayed).unwrap();
            let expected: Value = serde_json::from_str(&expected).unwrap();
            assert_eq!(strip_ids(relayed), strip_ids(expected), "{path}");
        }
    }

    // Models and quota (the quota poller's raw Authorization form is what the fake accepts
    // from the proxy too).
    for path in [
        "/v1/models",
        "/api/paas/v4/models",
        "/api/monitor/usage/quota/limit",
    ] {
        let (status, relayed) = get(&proxy_url, path, None).await;
        assert_eq!(status, 200, "{path}: {relayed}");
        let relayed: Value = serde_json::from_str(&relayed).unwrap();
        let (_, expected) = get(&direct, path, Some(UPSTREAM_KEY)).await;
        let expected: Value = serde_json::from_str(&expected).unwrap();
        if path.contains("quota") {
            assert_eq!(
                relayed["data"]["limits"][0]["type"],
                expected["data"]["limits"][0]["type"]
            );
            assert_eq!(relayed["success"], true);
        } else {
            assert_eq!(relayed, expected, "{path}");
        }
    }

    // The fake saw the proxy's key, never the client's.
    let recorded = fake.recorded();
    assert!(recorded.iter().all(|r| {
        r.headers
            .iter()
            .all(|(_, v)| !v.contains("client-key-not-upstream"))
    }));

    // Errors are relayed with the fake's status and Z.AI body (no retries: MAX_RETRIES=0).
    fake.set_faults(Faults {
        error_rate: 1.0,
        error_status: Some(500),
        ..Faults::default()
    })
    .unwrap();
    let (status, _, body) = post(
        &proxy_url,
        "/api/paas/v4/chat/completions",
        &openai_body(false),
        None,
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        "500"
    );
    fake.set_faults(Faults {
        rate_429: 1.0,
        code_429: Some(1308),
        reset_in_s: Some(600),
        ..Faults::default()
    })
    .unwrap();
    let (status, _, body) = post(
        &proxy_url,
        "/api/anthropic/v1/messages",
        &anthropic_body(false),
        None,
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        "1308"
    );

    // The upstream key never shows in the proxy's output.
    assert!(
        !proxy.output().contains(UPSTREAM_KEY),
        "key leaked into logs"
    );
}

/// SSE `data:` payloads with their ids removed (ids differ per response).
fn sse_payloads(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| {
            if data == "[DONE]" {
                json!("[DONE]")
            } else {
                strip_ids(serde_json::from_str(data).unwrap())
            }
        })
        .collect()
}

fn strip_ids(mut value: Value) -> Value {
    for pointer in ["/id", "/request_id", "/created", "/message/id"] {
        if let Some(field) = value.pointer_mut(pointer) {
            *field = Value::Null;
        }
    }
    value
}
