//! Each fault is observable by a client exactly as configured; changes at run time take
//! effect on the next request.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test on purpose")]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zai_e2e::fake::{FakeConfig, FakeZai, Faults};

const KEY: &str = "fault-key";

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn fake(faults: Faults) -> FakeZai {
    FakeZai::start(FakeConfig {
        faults,
        ..FakeConfig::with_key(KEY)
    })
    .await
    .unwrap()
}

fn body(stream: bool) -> Value {
    json!({"model": "glm-4.6", "stream": stream, "messages": [{"role": "user", "content": "hello there"}]})
}

async fn anthropic(fake: &FakeZai, stream: bool) -> Result<reqwest::Response, reqwest::Error> {
    client()
        .post(format!("{}/api/anthropic/v1/messages", fake.url()))
        .header("x-api-key", KEY)
        .json(&body(stream))
        .send()
        .await
}

async fn openai(fake: &FakeZai, stream: bool) -> Result<reqwest::Response, reqwest::Error> {
    client()
        .post(format!("{}/api/paas/v4/chat/completions", fake.url()))
        .bearer_auth(KEY)
        .json(&body(stream))
        .send()
        .await
}

#[tokio::test]
async fn error_statuses_are_returned_as_configured() {
    let fake = fake(Faults::default()).await;
    for status in [500u16, 502, 503] {
        fake.set_faults(Faults {
            error_rate: 1.0,
            error_status: Some(status),
            ..Faults::default()
        })
        .unwrap();
        let response = openai(&fake, false).await.unwrap();
        assert_eq!(response.status().as_u16(), status);
        let text = response.text().await.unwrap();
        if status == 500 {
            let body: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(body["error"]["code"], "500");
        } else {
            assert!(text.contains(&status.to_string()), "{text}");
        }
        // Streams get the status too (before any event).
        assert_eq!(
            anthropic(&fake, true).await.unwrap().status().as_u16(),
            status
        );
    }
    assert_eq!(fake.stats().count("openai_chat", "status_503"), 1);
    assert_eq!(fake.stats().count("anthropic_messages", "status_502"), 1);
}

#[tokio::test]
async fn rate_limits_carry_each_business_code_and_reset_fields() {
    let fake = fake(Faults::default()).await;
    for code in [1302u32, 1303, 1305, 1308, 1310, 1312, 1113] {
        fake.set_faults(Faults {
            rate_429: 1.0,
            code_429: Some(code),
            retry_after_s: Some(5),
            reset_in_s: Some(3600),
            retry_after_header_s: Some(2),
            ..Faults::default()
        })
        .unwrap();
        let response = openai(&fake, false).await.unwrap();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "2");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code.to_string());
        assert_eq!(body["error"]["retry_after"], 5);
        let reset = body["error"]["reset_time"].as_str().unwrap();
        chrono::NaiveDateTime::parse_from_str(reset, "%Y-%m-%d %H:%M:%S").unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains(reset));

        let response = anthropic(&fake, true).await.unwrap();
        assert_eq!(response.status(), 429);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert_eq!(body["error"]["code"], code.to_string());
    }
    // Without the optional fields, none appear (real Z.AI sends no Retry-After).
    fake.set_faults(Faults {
        rate_429: 1.0,
        ..Faults::default()
    })
    .unwrap();
    let response = openai(&fake, false).await.unwrap();
    assert!(response.headers().get("retry-after").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "1302");
    assert!(
        body["error"].get("reset_time").is_none() && body["error"].get("retry_after").is_none()
    );
}

#[tokio::test]
async fn latency_delays_headers_and_chunk_delay_spaces_events() {
    let fake = fake(Faults {
        latency_ms: 300,
        ..Faults::default()
    })
    .await;
    for stream in [false, true] {
        let started = Instant::now();
        let response = openai(&fake, stream).await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "headers after the latency (stream={stream})"
        );
        assert_eq!(response.status(), 200);
    }
    let started = Instant::now();
    let models = client()
        .get(format!("{}/v1/models", fake.url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(models.status(), 200);

    fake.set_faults(Faults {
        chunk_delay_ms: 40,
        ..Faults::default()
    })
    .unwrap();
    let started = Instant::now();
    let mut response = anthropic(&fake, true).await.unwrap();
    let mut chunks = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        chunks.push((started.elapsed(), chunk));
    }
    let text: String = chunks
        .iter()
        .map(|(_, c)| String::from_utf8_lossy(c).into_owned())
        .collect();
    let events = text.matches("\n\n").count();
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
    // n events with 40 ms between them take at least (n-1)·40 ms.
    assert!(
        chunks.last().unwrap().0 >= Duration::from_millis(40 * (events as u64 - 1)),
        "{events} events in {:?}",
        chunks.last().unwrap().0
    );
    assert!(
        chunks.len() >= 3,
        "the stream arrives in pieces, not in one"
    );
    assert!(!String::from_utf8_lossy(&chunks[0].1).contains("message_stop"));
}

#[tokio::test]
async fn truncated_streams_stop_after_their_first_chunk_without_terminal_event() {
    let fake = fake(Faults {
        truncate_rate: 1.0,
        ..Faults::default()
    })
    .await;
    let anthropic_body = anthropic(&fake, true).await.unwrap().text().await.unwrap();
    assert!(!anthropic_body.contains("message_stop"));
    assert!(
        !anthropic_body.ends_with("\n\n"),
        "cut inside an event: {anthropic_body:?}"
    );
    // message_start, content_block_start, ping and ONE content_block_delta are whole; the
    // second delta is cut in half.
    assert_eq!(
        anthropic_body.matches("\n\n").count(),
        4,
        "{anthropic_body:?}"
    );
    assert_eq!(
        anthropic_body.matches("event: content_block_delta").count(),
        2,
        "{anthropic_body:?}"
    );
    let openai_body = openai(&fake, true).await.unwrap().text().await.unwrap();
    assert!(!openai_body.contains("[DONE]"));
    assert!(!openai_body.contains("finish_reason"));
    assert!(!openai_body.ends_with("\n\n"));
    // One whole chunk (with content), then half of the second.
    assert_eq!(openai_body.matches("\n\n").count(), 1, "{openai_body:?}");
    assert_eq!(openai_body.matches("data: ").count(), 2, "{openai_body:?}");
    // A JSON answer is cut half-way: it no longer parses.
    let json_body = openai(&fake, false).await.unwrap().bytes().await.unwrap();
    assert!(!json_body.is_empty());
    assert!(serde_json::from_slice::<Value>(&json_body).is_err());
    assert_eq!(fake.stats().outcome_total("truncated"), 3);
    assert_eq!(
        fake.stats().billed_output_tokens,
        0,
        "cut answers are not billed"
    );
}

#[tokio::test]
async fn resets_close_the_connection_before_any_byte() {
    let fake = fake(Faults {
        reset_rate: 1.0,
        ..Faults::default()
    })
    .await;
    for stream in [false, true] {
        let error = anthropic(&fake, stream)
            .await
            .expect_err("the connection is reset");
        assert!(!error.is_timeout() && !error.is_status(), "{error:?}");
    }
    // A raw socket sees ECONNRESET (RST), not an orderly close.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(fake.addr()).await.unwrap();
    socket
        .write_all(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer fault-key\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 64];
    let read = socket.read(&mut buffer).await;
    assert_eq!(
        read.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset)
    );
    assert_eq!(fake.stats().outcome_total("reset"), 3);
}

#[tokio::test]
async fn empty_bodies_and_omitted_usage() {
    let fake = fake(Faults {
        empty_rate: 1.0,
        ..Faults::default()
    })
    .await;
    for stream in [false, true] {
        let response = openai(&fake, stream).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.bytes().await.unwrap().is_empty());
    }
    fake.set_faults(serde_json::from_str(r#"{"omit_usage": true}"#).unwrap())
        .unwrap();
    let json: Value = openai(&fake, false).await.unwrap().json().await.unwrap();
    assert!(json.get("usage").is_none() && json["choices"][0]["message"]["content"].is_string());
    let stream = anthropic(&fake, true).await.unwrap().text().await.unwrap();
    assert!(
        stream.contains("message_stop") && !stream.contains("usage"),
        "{stream}"
    );
    let stream = openai(&fake, true).await.unwrap().text().await.unwrap();
    assert!(stream.contains("[DONE]") && !stream.contains("usage"));
    assert!(
        fake.stats().billed_output_tokens > 0,
        "the bill exists even when usage is not reported"
    );
}

#[tokio::test]
async fn runtime_changes_apply_to_the_next_request_and_routes_filter() {
    let fake = fake(Faults::default()).await;
    let control = format!("{}/__fake/faults", fake.url());
    assert_eq!(openai(&fake, false).await.unwrap().status(), 200);
    let set = client()
        .post(&control)
        .json(&json!({"error_rate": 1.0, "error_status": 503, "routes": ["/api/anthropic"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(anthropic(&fake, false).await.unwrap().status(), 503);
    assert_eq!(
        openai(&fake, false).await.unwrap().status(),
        200,
        "route filter spares other paths"
    );
    let active: Faults = client()
        .get(&control)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(active.error_status, Some(503));
    // `{}` clears every fault.
    assert_eq!(
        client()
            .post(&control)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(anthropic(&fake, false).await.unwrap().status(), 200);
    // Bad input is refused with a clear message and changes nothing.
    for bad in [
        json!({"error_rate": 2}),
        json!({"eror_rate": 1}),
        json!({"error_rate": 0.6, "rate_429": 0.6}),
    ] {
        let response = client().post(&control).json(&bad).send().await.unwrap();
        assert_eq!(response.status(), 400);
        let message: Value = response.json().await.unwrap();
        assert!(message["error"].as_str().unwrap().len() > 10);
    }
    assert_eq!(fake.faults(), Faults::default());
    let stats: Value = client()
        .get(format!("{}/__fake/stats", fake.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["routes"]["anthropic_messages"]["status_503"], 1);
    assert_eq!(stats["routes"]["openai_chat"]["ok"], 2);
    assert_eq!(stats["total"], 4);
}

#[tokio::test]
async fn fractions_split_requests() {
    let fake = fake(Faults {
        error_rate: 0.5,
        ..Faults::default()
    })
    .await;
    let mut errors = 0;
    for _ in 0..200 {
        if openai(&fake, false).await.unwrap().status() == 500 {
            errors += 1;
        }
    }
    assert!(
        (60..=140).contains(&errors),
        "about half of 200 requests fail, got {errors}"
    );
    assert_eq!(fake.stats().count("openai_chat", "status_500"), errors);
}

/// What a client sees of `n` sequential requests to a fake seeded with `seed`: status and
/// whether the body was empty (the exclusive faults), in order.
async fn sequence(seed: u64, n: usize) -> (Vec<(u16, bool)>, Value) {
    let fake = FakeZai::start(FakeConfig {
        seed,
        faults: Faults {
            error_rate: 0.2,
            rate_429: 0.15,
            empty_rate: 0.1,
            ..Faults::default()
        },
        ..FakeConfig::with_key(KEY)
    })
    .await
    .unwrap();
    let mut seen = Vec::new();
    for _ in 0..n {
        let response = openai(&fake, false).await.unwrap();
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap();
        seen.push((status, body.is_empty()));
    }
    let stats: Value = client()
        .get(format!("{}/__fake/stats", fake.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (seen, stats)
}

#[tokio::test]
async fn the_same_seed_replays_the_same_faults_and_another_seed_does_not() {
    let (first, stats) = sequence(5, 80).await;
    let (again, _) = sequence(5, 80).await;
    let (other, other_stats) = sequence(6, 80).await;
    assert_eq!(first, again, "same seed, same requests: same answers");
    assert_ne!(first, other, "another seed draws other faults");
    // The sequence is not degenerate: every configured outcome occurs.
    for expected in [(200, false), (200, true), (500, false), (429, false)] {
        assert!(first.contains(&expected), "{expected:?} in {first:?}");
    }
    assert_eq!(stats["seed"], 5, "{stats}");
    assert_eq!(other_stats["seed"], 6);
}

#[tokio::test]
async fn clearing_stats_keeps_the_seed() {
    let fake = FakeZai::start(FakeConfig {
        seed: 77,
        ..FakeConfig::with_key(KEY)
    })
    .await
    .unwrap();
    openai(&fake, false).await.unwrap();
    let cleared: Value = client()
        .delete(format!("{}/__fake/stats", fake.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["total"], 0);
    assert_eq!(cleared["seed"], 77);
    fake.reset_stats();
    assert_eq!(fake.stats().seed, 77);
    assert_eq!(fake.seed(), 77);
}

/// The key's limits (issue 19) over HTTP, with a seeded fake: beyond `max_concurrency`
/// 429 code 1302, beyond `max_rps` the frequency code; both counted in `/__fake/stats`,
/// whose reset keeps the seed; limits set at run time through `/__fake/faults`.
#[tokio::test]
async fn per_key_limits_reject_beyond_them_and_show_in_stats() {
    let fake = FakeZai::start(FakeConfig {
        faults: Faults {
            max_concurrency: Some(2),
            latency_ms: 1000,
            ..Faults::default()
        },
        seed: 7,
        ..FakeConfig::with_key(KEY)
    })
    .await
    .unwrap();
    let answers = futures::future::join_all((0..5).map(|_| openai(&fake, false))).await;
    let mut statuses = Vec::new();
    for answer in answers {
        let answer = answer.unwrap();
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap();
        if status == 429 {
            assert!(text.contains("1302"), "{text}");
        }
        statuses.push(status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 429, 429, 429]);
    let stats: Value = client()
        .get(format!("{}/__fake/stats", fake.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["seed"], 7);
    assert_eq!(stats["limits"]["peak_concurrency"], 2, "{stats}");
    assert_eq!(stats["limits"]["rejected_concurrency"], 3, "{stats}");
    assert_eq!(stats["limits"]["admitted"], 2, "{stats}");
    let reset: Value = client()
        .delete(format!("{}/__fake/stats", fake.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reset["seed"], 7, "{reset}");
    assert_eq!(reset["limits"]["rejected_concurrency"], 0, "{reset}");

    let set = client()
        .post(format!("{}/__fake/faults", fake.url()))
        .json(&json!({"max_rps": 1, "rps_burst": 1, "rps_code": 1305}))
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success());
    let first = openai(&fake, false).await.unwrap();
    assert_eq!(first.status().as_u16(), 200);
    let second = openai(&fake, false).await.unwrap();
    assert_eq!(second.status().as_u16(), 429);
    assert!(second.text().await.unwrap().contains("1305"));
    assert_eq!(fake.stats().limits.rejected_rps, 1);
    let bad = client()
        .post(format!("{}/__fake/faults", fake.url()))
        .json(&json!({"max_concurrency": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400, "bad limits are refused");
}
