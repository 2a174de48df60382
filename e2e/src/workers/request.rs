//! One simulated request: build it, send it, read the answer, classify the outcome.

use std::time::{Duration, Instant};

use rand::Rng;

use super::Target;
use super::bodies;
use super::outcome::{ApiKind, Outcome, TerminalWatch, json_complete};

/// What one request will be.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Index of the target in the config.
    pub target: usize,
    /// Request format.
    pub api: ApiKind,
    /// Whether it asks for a stream.
    pub stream: bool,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// Picks target, format, streaming and body for request number `index`: a pure function of
/// `(seed, index)` and the settings, so a seed replays the same requests in the same order
/// of issue (which of them finishes first still depends on the system under test).
pub fn plan(
    seed: u64,
    index: u64,
    weights: &[f64],
    stream_fraction: f64,
    openai_fraction: f64,
) -> Plan {
    let mut rng = crate::seed::rng(seed, "workers/request", index);
    let total: f64 = weights.iter().sum();
    let mut pick = rng.random::<f64>() * total;
    let mut target = weights.len().saturating_sub(1);
    for (index, weight) in weights.iter().enumerate() {
        if pick < *weight {
            target = index;
            break;
        }
        pick -= weight;
    }
    let api = if rng.random::<f64>() < openai_fraction {
        ApiKind::OpenAi
    } else {
        ApiKind::Anthropic
    };
    let stream = rng.random::<f64>() < stream_fraction;
    let body = match api {
        ApiKind::Anthropic => bodies::anthropic(&mut rng, stream),
        ApiKind::OpenAi => bodies::openai(&mut rng, stream),
    };
    Plan {
        target,
        api,
        stream,
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

/// Result of one request.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    /// How it ended.
    pub outcome: Outcome,
    /// Start to end.
    pub latency: Duration,
    /// Start to first body byte, if one came.
    pub ttfb: Option<Duration>,
}

fn transport(error: &reqwest::Error) -> Outcome {
    if error.is_timeout() {
        Outcome::Timeout
    } else {
        Outcome::TransportError
    }
}

/// Sends `plan` to `target` and classifies the answer; `timeout` bounds the whole request.
pub async fn execute(
    client: &reqwest::Client,
    target: &Target,
    api_key: &str,
    plan: Plan,
    timeout: Duration,
) -> Done {
    let started = Instant::now();
    let mut ttfb = None;
    let outcome = match tokio::time::timeout(
        timeout,
        exchange(client, target, api_key, plan, started, &mut ttfb),
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(_elapsed) => Outcome::Timeout,
    };
    Done {
        outcome,
        latency: started.elapsed(),
        ttfb,
    }
}

async fn exchange(
    client: &reqwest::Client,
    target: &Target,
    api_key: &str,
    plan: Plan,
    started: Instant,
    ttfb: &mut Option<Duration>,
) -> Outcome {
    let request = match plan.api {
        ApiKind::Anthropic => client
            .post(&target.anthropic_url)
            .header("x-api-key", api_key)
            .header("anthropic-version", "2023-06-01")
            .header(
                "anthropic-beta",
                "claude-code-20250219,interleaved-thinking-2025-05-14",
            )
            .header("x-app", "cli"),
        ApiKind::OpenAi => client.post(&target.openai_url).bearer_auth(api_key),
    };
    let accept = if plan.stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    let response = match request
        .header("content-type", "application/json")
        .header("accept", accept)
        .header(
            "user-agent",
            "claude-cli/2.0.14 (external, cli) zai-workers",
        )
        .body(plan.body)
        .send()
        .await
    {
        Ok(response) => response,
        Err(error) => return transport(&error),
    };
    let status = response.status();
    let mut response = response;
    if !status.is_success() {
        // Drain so the connection can be reused; the outcome is the status either way.
        while let Ok(Some(_)) = response.chunk().await {}
        return Outcome::HttpError {
            status: status.as_u16(),
        };
    }
    let mut watch = TerminalWatch::new(plan.api);
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if ttfb.is_none() {
                    *ttfb = Some(started.elapsed());
                }
                if plan.stream {
                    watch.feed(&chunk);
                } else {
                    body.extend_from_slice(&chunk);
                }
            }
            Ok(None) => break,
            Err(error) => return transport(&error),
        }
    }
    let complete = if plan.stream {
        watch.finished()
    } else {
        json_complete(plan.api, &body)
    };
    if complete {
        Outcome::Ok
    } else {
        Outcome::Truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_fractions_and_weights() {
        let plans: Vec<Plan> = (0..2000)
            .map(|i| plan(3, i, &[1.0, 3.0], 0.25, 0.5))
            .collect();
        let streams = plans.iter().filter(|p| p.stream).count();
        let openai = plans.iter().filter(|p| p.api == ApiKind::OpenAi).count();
        let second = plans.iter().filter(|p| p.target == 1).count();
        assert!((400..600).contains(&streams), "{streams}");
        assert!((900..1100).contains(&openai), "{openai}");
        assert!((1400..1600).contains(&second), "{second}");
        // A seed replays the same requests; another seed sends other ones.
        let bodies = |seed| -> Vec<Vec<u8>> {
            (0..50)
                .map(|i| plan(seed, i, &[1.0, 3.0], 0.25, 0.5).body)
                .collect()
        };
        assert_eq!(bodies(3), bodies(3));
        let (three, four) = (bodies(3), bodies(4));
        assert!(three.iter().zip(&four).all(|(a, b)| a != b));
        let all_stream = plan(3, 1, &[1.0], 1.0, 0.0);
        assert!(all_stream.stream && all_stream.api == ApiKind::Anthropic);
    }
}
