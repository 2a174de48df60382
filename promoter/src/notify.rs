//! Notifications: every phase change, action and the final decision POSTed as JSON to each
//! `--notify` receiver, in the background.
//!
//! Two shapes: a generic one (`{"event": …, "run": …, "at": …, "text": …, …}`) and a
//! Slack-compatible one (`text` + `blocks`, for an incoming webhook). A receiver is Slack when
//! its URL is a Slack webhook (`hooks.slack.com`) or is written `slack+https://…`.
//!
//! Deliveries never hold the promotion up: each is a spawned task with its own timeout,
//! retried a few times with a short back-off, one receiver's messages in order. At the end
//! [`Notifier::finish`] waits a bounded time for what is still in flight and returns one
//! line per receiver for the report.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::driver::Event;

/// Attempts per message (first try included).
pub const ATTEMPTS: u32 = 3;

/// The payload shape a receiver gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `{"event", "run", "at", "text", …}`.
    Generic,
    /// Slack incoming webhook: `text` + `blocks`.
    Slack,
}

/// One receiver, parsed from `--notify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiver {
    /// Where to POST.
    pub url: String,
    /// Which shape.
    pub shape: Shape,
}

impl Receiver {
    /// `https://…` (generic, or Slack for `hooks.slack.com`), `slack+https://…` (Slack).
    pub fn parse(text: &str) -> Result<Receiver, String> {
        let (url, forced_slack) = match text.strip_prefix("slack+") {
            Some(rest) => (rest, true),
            None => (text, false),
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("--notify {text}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("--notify {text}: only http(s) URLs"));
        }
        let slack = forced_slack || parsed.host_str() == Some("hooks.slack.com");
        Ok(Receiver {
            url: url.to_owned(),
            shape: if slack { Shape::Slack } else { Shape::Generic },
        })
    }

    /// The URL without its path and query (webhook URLs carry their secret in the path).
    pub fn display(&self) -> String {
        match reqwest::Url::parse(&self.url) {
            Ok(u) => format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("?")),
            Err(_) => "?".into(),
        }
    }
}

/// A notification, before it is shaped for a receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `phase`, `action`, `finished`.
    pub event: &'static str,
    /// One line for humans.
    pub text: String,
    /// Extra fields of the generic shape.
    pub fields: Value,
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
}

/// The message for a promoter event; ticks give none.
pub fn message(e: &Event) -> Option<Message> {
    match e {
        Event::Phase { phase, at } => Some(Message {
            event: "phase",
            text: phase.title().to_owned(),
            fields: json!({ "phase": phase.key(), "title": phase.title() }),
            at: *at,
        }),
        Event::Run { run_id, at, note } => Some(Message {
            event: "run",
            text: note.clone(),
            fields: json!({ "run_id": run_id }),
            at: *at,
        }),
        Event::Action { at, message } => Some(Message {
            event: "action",
            text: message.clone(),
            fields: json!({}),
            at: *at,
        }),
        Event::Finished { outcome, verdict } => Some(Message {
            event: "finished",
            text: format!("{}: {verdict}", outcome.as_str()),
            fields: json!({ "outcome": outcome.as_str(), "verdict": verdict }),
            at: chrono::Utc::now(),
        }),
        Event::Tick { .. } => None,
    }
}

/// The JSON body for one receiver shape.
pub fn body(m: &Message, shape: Shape, run: &str) -> Value {
    match shape {
        Shape::Generic => {
            let mut v = json!({
                "source": "zai-promoter",
                "run": run,
                "event": m.event,
                "at": m.at.to_rfc3339(),
                "text": m.text,
            });
            if let (Some(obj), Some(extra)) = (v.as_object_mut(), m.fields.as_object()) {
                obj.extend(extra.clone());
            }
            v
        }
        Shape::Slack => {
            let icon = match m.fields.get("outcome").and_then(Value::as_str) {
                Some("promoted" | "passed") => ":white_check_mark: ",
                Some("rolled_back") => ":rotating_light: ",
                Some(_) => ":warning: ",
                None => "",
            };
            let text = format!("{icon}zai-promoter: {}", m.text);
            json!({
                "text": text,
                "blocks": [
                    { "type": "section", "text": { "type": "mrkdwn", "text": text } },
                    { "type": "context", "elements": [
                        { "type": "mrkdwn", "text": format!("run `{run}` · {} · {}", m.event, m.at.to_rfc3339()) }
                    ] }
                ]
            })
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Tally {
    delivered: u64,
    retried: u64,
    failed: u64,
    last_error: Option<String>,
}

struct Lane {
    receiver: Receiver,
    tx: mpsc::UnboundedSender<Message>,
    tally: Arc<Mutex<Tally>>,
    task: tokio::task::JoinHandle<()>,
}

/// Sends notifications to every receiver in the background.
pub struct Notifier {
    lanes: Vec<Lane>,
    run: Arc<Mutex<String>>,
}

impl Notifier {
    /// One background lane per receiver; each POST times out after `timeout`.
    pub fn new(receivers: Vec<Receiver>, timeout: Duration) -> Result<Notifier, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        let run = Arc::new(Mutex::new(String::new()));
        let lanes = receivers
            .into_iter()
            .map(|receiver| {
                let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
                let tally = Arc::new(Mutex::new(Tally::default()));
                let (client, r, t, run) =
                    (client.clone(), receiver.clone(), tally.clone(), run.clone());
                let task = tokio::spawn(async move {
                    while let Some(m) = rx.recv().await {
                        let run_id = run.lock().map(|r| r.clone()).unwrap_or_default();
                        deliver(&client, &r, &body(&m, r.shape, &run_id), &t).await;
                    }
                });
                Lane {
                    receiver,
                    tx,
                    tally,
                    task,
                }
            })
            .collect();
        Ok(Notifier { lanes, run })
    }

    /// Queues the event's message for every receiver (never blocks); a `Run` event names the
    /// run in the messages after it.
    pub fn send(&self, e: &Event) {
        if let Event::Run { run_id, .. } = e
            && let Ok(mut r) = self.run.lock()
        {
            *r = run_id.clone();
        }
        if let Some(m) = message(e) {
            for lane in &self.lanes {
                let _ = lane.tx.send(m.clone());
            }
        }
    }

    /// Waits up to `grace` for queued messages, then returns one line per receiver.
    pub async fn finish(self, grace: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        for lane in self.lanes {
            drop(lane.tx);
            let mut task = lane.task;
            let done = tokio::time::timeout(grace, &mut task).await.is_ok();
            if !done {
                task.abort();
            }
            let t = lane.tally.lock().map(|t| t.clone()).unwrap_or_default();
            lines.push(format!(
                "notify {}: {} delivered, {} retried, {} failed{}{}",
                lane.receiver.display(),
                t.delivered,
                t.retried,
                t.failed,
                t.last_error
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default(),
                if done {
                    ""
                } else {
                    "; gave up on what was still queued"
                }
            ));
        }
        lines
    }
}

async fn deliver(client: &reqwest::Client, r: &Receiver, body: &Value, tally: &Mutex<Tally>) {
    for attempt in 1..=ATTEMPTS {
        let result = client.post(&r.url).json(body).send().await;
        let error = match result {
            Ok(resp) if resp.status().is_success() => {
                if let Ok(mut t) = tally.lock() {
                    t.delivered += 1;
                }
                return;
            }
            Ok(resp) => format!("HTTP {}", resp.status().as_u16()),
            // Without the URL: webhook URLs carry their secret.
            Err(e) => {
                if e.is_timeout() {
                    "timeout".to_owned()
                } else {
                    "connection failed".to_owned()
                }
            }
        };
        if let Ok(mut t) = tally.lock() {
            t.last_error = Some(error);
            if attempt < ATTEMPTS {
                t.retried += 1;
            } else {
                t.failed += 1;
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_are_parsed_and_slack_is_recognised() {
        let g = Receiver::parse("http://127.0.0.1:9/hook").unwrap();
        assert_eq!(g.shape, Shape::Generic);
        let s = Receiver::parse("https://hooks.slack.com/services/T/B/secret").unwrap();
        assert_eq!(s.shape, Shape::Slack);
        assert!(!s.display().contains("secret"));
        let f = Receiver::parse("slack+http://127.0.0.1:9/x").unwrap();
        assert_eq!(
            (f.shape, f.url.as_str()),
            (Shape::Slack, "http://127.0.0.1:9/x")
        );
        assert!(Receiver::parse("ftp://x").is_err());
        assert!(Receiver::parse("not a url").is_err());
    }

    #[test]
    fn shapes_carry_the_decision() {
        let m = message(&Event::Finished {
            outcome: crate::Outcome::RolledBack,
            verdict: "rolled back".into(),
        })
        .unwrap();
        let g = body(&m, Shape::Generic, "run-1");
        assert_eq!(g["event"], "finished");
        assert_eq!(g["outcome"], "rolled_back");
        assert_eq!(g["run"], "run-1");
        let s = body(&m, Shape::Slack, "run-1");
        assert!(
            s["text"]
                .as_str()
                .unwrap()
                .contains("rolled_back: rolled back")
        );
        assert_eq!(s["blocks"][0]["type"], "section");
    }
}
