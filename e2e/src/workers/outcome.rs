//! How a simulated request ended, and the pure checks that classify a response body.

use serde::{Deserialize, Serialize};

/// The one outcome every request ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// 2xx with a complete body (stream with its terminal event, or a complete JSON answer).
    Ok,
    /// A non-2xx status.
    HttpError {
        /// The status.
        status: u16,
    },
    /// Connecting, sending or reading failed (refused, reset, broken body).
    TransportError,
    /// 2xx whose body ended cleanly but incomplete: a stream without `message_stop` /
    /// `data: [DONE]`, or a JSON answer that does not parse (including an empty body).
    Truncated,
    /// The request did not finish within the request timeout.
    Timeout,
}

impl Outcome {
    /// "Lost" outcomes: transport errors and truncations.
    pub fn is_lost(self) -> bool {
        matches!(self, Outcome::TransportError | Outcome::Truncated)
    }

    /// Label used in reports: `ok`, `http_<status>`, `transport_error`, `truncated`, `timeout`.
    pub fn label(self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::HttpError { status } => format!("http_{status}"),
            Outcome::TransportError => "transport_error".into(),
            Outcome::Truncated => "truncated".into(),
            Outcome::Timeout => "timeout".into(),
        }
    }
}

/// Request format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKind {
    /// Anthropic Messages.
    Anthropic,
    /// OpenAI chat completions.
    OpenAi,
}

/// Watches a stream's bytes, line by line, for its terminal event: Anthropic
/// `event: message_stop` (or a `data:` line of type `message_stop`), OpenAI `data: [DONE]`.
#[derive(Debug)]
pub struct TerminalWatch {
    api: ApiKind,
    partial: Vec<u8>,
    done: bool,
}

/// Longest partial line kept between chunks (longer lines cannot be a terminal line).
const MAX_PARTIAL_LINE: usize = 64 * 1024;

impl TerminalWatch {
    /// A watcher for `api`'s stream format.
    pub fn new(api: ApiKind) -> Self {
        TerminalWatch {
            api,
            partial: Vec::new(),
            done: false,
        }
    }

    /// Feeds the next bytes of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while let Some(newline) = bytes.iter().position(|b| *b == b'\n') {
            if self.partial.is_empty() {
                self.line(&bytes[..newline]);
            } else {
                self.partial.extend_from_slice(&bytes[..newline]);
                let line = std::mem::take(&mut self.partial);
                self.line(&line);
            }
            bytes = &bytes[newline + 1..];
        }
        if self.partial.len() + bytes.len() <= MAX_PARTIAL_LINE {
            self.partial.extend_from_slice(bytes);
        } else {
            self.partial.clear();
        }
    }

    fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let terminal = match self.api {
            ApiKind::OpenAi => line == b"data: [DONE]" || line == b"data:[DONE]",
            ApiKind::Anthropic => {
                line == b"event: message_stop"
                    || line == b"event:message_stop"
                    || (line.starts_with(b"data:")
                        && serde_json::from_slice::<serde_json::Value>(line[5..].trim_ascii())
                            .ok()
                            .and_then(|v| {
                                v.get("type")
                                    .and_then(|t| t.as_str())
                                    .map(|t| t == "message_stop")
                            })
                            .unwrap_or(false))
            }
        };
        if terminal {
            self.done = true;
        }
    }

    /// Whether the terminal event has been seen (a final line without `\n` counts too).
    pub fn finished(&mut self) -> bool {
        if !self.done && !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line);
        }
        self.done
    }
}

/// Whether a non-streaming 2xx body is a complete answer in `api`'s format.
pub fn json_complete(api: ApiKind, body: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    match api {
        ApiKind::Anthropic => value
            .get("content")
            .is_some_and(serde_json::Value::is_array),
        ApiKind::OpenAi => value
            .get("choices")
            .is_some_and(serde_json::Value::is_array),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_done_split_across_chunks() {
        let mut watch = TerminalWatch::new(ApiKind::OpenAi);
        watch.feed(b"data: {\"x\":1}\n\ndata: [DO");
        assert!(!watch.finished_peek());
        watch.feed(b"NE]\n\n");
        assert!(watch.finished());
    }

    #[test]
    fn anthropic_needs_message_stop() {
        let mut watch = TerminalWatch::new(ApiKind::Anthropic);
        watch
            .feed(b"event: message_delta\ndata: {\"type\":\"message_delta\"}\n\nevent: message_st");
        assert!(!watch.finished());
        let mut watch = TerminalWatch::new(ApiKind::Anthropic);
        watch.feed(b"event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n");
        assert!(watch.finished());
    }

    #[test]
    fn json_completeness() {
        assert!(json_complete(ApiKind::OpenAi, br#"{"choices":[]}"#));
        assert!(!json_complete(ApiKind::OpenAi, br#"{"choices":["#));
        assert!(!json_complete(ApiKind::Anthropic, b""));
        assert!(json_complete(ApiKind::Anthropic, br#"{"content":[]}"#));
    }

    impl TerminalWatch {
        fn finished_peek(&self) -> bool {
            self.done
        }
    }
}
