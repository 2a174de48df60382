//! The real zai-proxy binary in front of the fake, for what streams, models and the upstream
//! credential look like on `/metrics`:
//!
//! * a stream that upstream cuts after its first chunk (fake `truncate_rate`) is counted
//!   `zai_proxy_streams_total{outcome="upstream_cut"}` in both wire formats, a whole one
//!   `complete`, and the time to first token is observed once per stream, labelled with its
//!   model and wire format;
//! * GLM-5 requests get their own `model` label and, with `TOKENIZER_ENCODING=auto`, are
//!   counted with the glm5 vocabulary: counts equal the `tiktoken` crate's reference encoder;
//! * an upstream that refuses the proxy's key is counted `error_type="auth"` and logged once,
//!   never with the key.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test on purpose")]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use zai_e2e::fake::{FakeConfig, FakeZai, Faults};

const UPSTREAM_KEY: &str = "zk-streams-test-81f3c2aa-SECRET";
const VARIANT: &str = "streams-test";

/// The zai-proxy binary with captured output; killed on drop.
struct Proxy {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    fn spawn(fake: &FakeZai, key: &str, env: &[(&str, &str)]) -> Proxy {
        let bin = zai_e2e::proxy_binary(false).unwrap_or_else(|error| panic!("{error}"));
        let mut command = Command::new(bin);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("ZAI_TARGET_URL", fake.url())
            .env("ZAI_API_KEY", key)
            .env("RATE_LIMIT_STATE_FILE", "")
            .env("MAX_RETRIES", "0")
            .env("DEPLOYMENT_VARIANT", VARIANT);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let outputs: [Option<Box<dyn std::io::Read + Send>>; 2] = [
            child.stdout.take().map(|s| Box::new(s) as _),
            child.stderr.take().map(|s| Box::new(s) as _),
        ];
        for stream in outputs.into_iter().flatten() {
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

    /// The proxy's URL once it is ready (`/readyz` 200: the tokenizers are loaded).
    async fn ready_url(&self) -> String {
        for _ in 0..1200 {
            let found = self.lines.lock().unwrap().iter().find_map(|line| {
                let at = line.find("listening on ")? + "listening on ".len();
                let addr: String = line[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | ':'))
                    .collect();
                addr.parse::<SocketAddr>().ok()
            });
            if let Some(addr) = found {
                let url = format!("http://{addr}");
                if let Ok(r) = client().get(format!("{url}/readyz")).send().await
                    && r.status() == 200
                {
                    return url;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("zai-proxy never became ready:\n{}", self.output());
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

const ANTHROPIC: &str = "/api/anthropic/v1/messages";
const OPENAI: &str = "/api/paas/v4/chat/completions";

fn body(model: &str, stream: bool, text: &str) -> Value {
    json!({
        "model": model,
        "max_tokens": 256,
        "stream": stream,
        "messages": [{"role": "user", "content": text}]
    })
}

async fn post(base: &str, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{base}{path}"))
        .header("x-api-key", "client-key")
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn metrics(base: &str) -> String {
    client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the series `name{labels…}` (every given label must match; others are free),
/// summed over the series that match; 0 when none does.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (label_part, number) = match rest.strip_prefix('{') {
                Some(inner) => {
                    let end = inner.find('}')?;
                    (&inner[..end], inner[end + 1..].trim())
                }
                None if rest.starts_with(' ') => ("", rest.trim()),
                None => return None,
            };
            let matches = labels.iter().all(|(k, v)| {
                label_part
                    .split(',')
                    .any(|pair| pair == format!("{k}=\"{v}\""))
            });
            matches.then(|| number.parse::<f64>().ok()).flatten()
        })
        .sum()
}

fn streams(text: &str, outcome: &str) -> f64 {
    value(
        text,
        "zai_proxy_streams_total",
        &[("variant", VARIANT), ("outcome", outcome)],
    )
}

fn ttft_count(text: &str, labels: &[(&str, &str)]) -> f64 {
    value(text, "zai_proxy_time_to_first_token_seconds_count", labels)
}

#[tokio::test]
async fn cut_and_complete_streams_are_counted_in_both_formats() {
    let fake = FakeZai::start(FakeConfig {
        faults: Faults {
            truncate_rate: 1.0,
            ..Faults::default()
        },
        ..FakeConfig::with_key(UPSTREAM_KEY)
    })
    .await
    .unwrap();
    let proxy = Proxy::spawn(&fake, UPSTREAM_KEY, &[]);
    let url = proxy.ready_url().await;
    let text = "Summarise the relay path in one sentence.";

    let m = metrics(&url).await;
    for outcome in [
        "complete",
        "upstream_cut",
        "client_gone",
        "upstream_error_event",
    ] {
        assert_eq!(streams(&m, outcome), 0.0, "{outcome} starts at zero");
        assert!(
            m.contains(&format!("outcome=\"{outcome}\"")),
            "{outcome} is visible before any stream"
        );
    }

    // Cut after the first chunk: the client gets 200 and a truncated answer.
    for path in [ANTHROPIC, OPENAI] {
        let response = post(&url, path, &body("glm-4.6", true, text)).await;
        assert_eq!(response.status(), 200, "{path}");
        let relayed = response.text().await.unwrap_or_default();
        assert!(!relayed.contains("message_stop") && !relayed.contains("[DONE]"));
    }
    let m = metrics(&url).await;
    assert_eq!(streams(&m, "upstream_cut"), 2.0, "{m}");
    assert_eq!(streams(&m, "complete"), 0.0);
    // The first chunk carried content: its time to first token was observed, once.
    for api in ["anthropic", "openai"] {
        assert_eq!(
            ttft_count(
                &m,
                &[("model", "glm-4.6"), ("api", api), ("variant", VARIANT)]
            ),
            1.0,
            "{api}: {m}"
        );
    }

    // Whole streams, in both formats, and GLM-5 models with their own label.
    fake.set_faults(Faults::default()).unwrap();
    for path in [ANTHROPIC, OPENAI] {
        for model in ["glm-4.6", "glm-5.1"] {
            let response = post(&url, path, &body(model, true, text)).await;
            assert_eq!(response.status(), 200);
            let relayed = response.text().await.unwrap();
            assert!(relayed.contains("message_stop") || relayed.contains("[DONE]"));
        }
    }
    // A non-streaming answer is not a stream.
    let response = post(&url, OPENAI, &body("glm-5.1", false, text)).await;
    assert_eq!(response.status(), 200);
    let m = metrics(&url).await;
    assert_eq!(streams(&m, "complete"), 4.0, "{m}");
    assert_eq!(streams(&m, "upstream_cut"), 2.0);
    assert_eq!(
        streams(&m, "client_gone") + streams(&m, "upstream_error_event"),
        0.0
    );
    for api in ["anthropic", "openai"] {
        assert_eq!(
            ttft_count(&m, &[("model", "glm-4.6"), ("api", api)]),
            2.0,
            "{api}: one cut, one whole: {m}"
        );
        assert_eq!(ttft_count(&m, &[("model", "glm-5.1"), ("api", api)]), 1.0);
        // The output rate: complete streams only (the fake reports usage).
        assert_eq!(
            value(
                &m,
                "zai_proxy_output_tokens_per_second_count",
                &[("model", "glm-5.1"), ("api", api)]
            ),
            1.0
        );
        assert_eq!(
            value(
                &m,
                "zai_proxy_output_tokens_per_second_count",
                &[("model", "glm-4.6"), ("api", api)]
            ),
            1.0,
            "cut streams have no rate"
        );
    }
    assert_eq!(ttft_count(&m, &[]), 6.0, "once per stream, never for JSON");
    assert!(
        value(
            &m,
            "zai_proxy_tokens_total",
            &[("model", "glm-5.1"), ("direction", "output")]
        ) > 0.0,
        "GLM-5 has its own model label"
    );
    assert_eq!(
        value(&m, "zai_proxy_tokens_total", &[("model", "other")]),
        0.0
    );
}

/// The `tiktoken` crate's own count, the reference the proxy's engine must equal.
fn reference(encoding: &str, text: &str) -> u64 {
    tiktoken::get_encoding(encoding).unwrap().encode(text).len() as u64
}

#[tokio::test]
async fn auto_counts_each_model_with_its_vocabulary() {
    let fake = FakeZai::start(FakeConfig::with_key(UPSTREAM_KEY))
        .await
        .unwrap();
    let proxy = Proxy::spawn(&fake, UPSTREAM_KEY, &[("TOKENIZER_ENCODING", "auto")]);
    let url = proxy.ready_url().await;
    assert!(
        proxy.output().contains("auto: glm4, glm5, cl100k_base"),
        "{}",
        proxy.output()
    );
    let text = "GLM-5 的词表和 GLM-4 不同：同一句话，token 数不一样。Tokenizers differ between generations; \
                count_tokens must answer with the model's own vocabulary. 你好，世界！🌍 aaaaaaaaaaaaaaaaaaaaaaaa";
    let cases = [
        ("glm-5.1", "glm5"),
        ("glm-5-turbo", "glm5"),
        ("glm-4.6", "glm4"),
        ("claude-sonnet-4-5", "cl100k_base"),
    ];
    let mut distinct = std::collections::BTreeSet::new();
    for (model, encoding) in cases {
        let want = reference(encoding, text);
        distinct.insert(want);
        let response = post(
            &url,
            "/api/anthropic/v1/messages/count_tokens",
            &body(model, false, text),
        )
        .await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(
            answer["input_tokens"], want,
            "{model} counted with {encoding}"
        );
        // The same count in X-Token-Input of a forwarded request.
        let response = post(&url, OPENAI, &body(model, false, text)).await;
        assert_eq!(
            response.headers()["x-token-input"].to_str().unwrap(),
            want.to_string(),
            "{model}"
        );
    }
    assert_eq!(
        distinct.len(),
        3,
        "the three vocabularies count this text differently"
    );
}

#[tokio::test]
async fn a_refused_key_is_counted_as_auth_and_logged_once() {
    let fake = FakeZai::start(FakeConfig::with_key(UPSTREAM_KEY))
        .await
        .unwrap();
    let wrong = "zk-wrong-key-0c7d19-SECRET";
    let proxy = Proxy::spawn(&fake, wrong, &[]);
    let url = proxy.ready_url().await;
    let before = metrics(&url).await;
    assert!(before.contains("error_type=\"auth\""), "visible at zero");
    for path in [ANTHROPIC, OPENAI, ANTHROPIC] {
        let response = post(&url, path, &body("glm-4.6", true, "hi")).await;
        assert_eq!(response.status(), 401, "upstream's answer is relayed");
    }
    let m = metrics(&url).await;
    assert_eq!(
        value(
            &m,
            "zai_proxy_upstream_errors_total",
            &[("error_type", "auth"), ("variant", VARIANT)]
        ),
        3.0,
        "{m}"
    );
    assert_eq!(
        streams(&m, "complete") + streams(&m, "upstream_cut"),
        0.0,
        "a 401 is no stream"
    );
    // Let the log lines arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let output = proxy.output();
    assert_eq!(
        output
            .matches("Upstream rejected the proxy's credential")
            .count(),
        1,
        "{output}"
    );
    assert!(
        !output.contains(wrong) && !m.contains(wrong),
        "the key never shows"
    );
}
