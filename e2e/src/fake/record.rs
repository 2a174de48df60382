//! Optional request recording: the last N requests, for tests that inspect headers.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Bodies longer than this are cut in the recording.
pub const MAX_RECORDED_BODY: usize = 64 * 1024;

/// One recorded request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// Raw query, if any.
    pub query: Option<String>,
    /// Headers in arrival order (names lower-case).
    pub headers: Vec<(String, String)>,
    /// Body as UTF-8 (lossy), cut at [`MAX_RECORDED_BODY`] bytes.
    pub body: String,
}

impl RecordedRequest {
    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A bounded ring of recorded requests (capacity 0 keeps nothing).
#[derive(Debug, Default)]
pub struct Recorder {
    capacity: usize,
    requests: VecDeque<RecordedRequest>,
}

impl Recorder {
    /// A recorder keeping the last `capacity` requests.
    pub fn new(capacity: usize) -> Self {
        Recorder {
            capacity,
            requests: VecDeque::with_capacity(capacity.min(1024)),
        }
    }

    /// Whether recording is on.
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// Keeps `request`, dropping the oldest when full.
    pub fn push(&mut self, request: RecordedRequest) {
        if self.capacity == 0 {
            return;
        }
        if self.requests.len() == self.capacity {
            self.requests.pop_front();
        }
        self.requests.push_back(request);
    }

    /// The recorded requests, oldest first.
    pub fn list(&self) -> Vec<RecordedRequest> {
        self.requests.iter().cloned().collect()
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.requests.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str) -> RecordedRequest {
        RecordedRequest {
            method: "GET".into(),
            path: path.into(),
            query: None,
            headers: vec![("x-api-key".into(), "k".into())],
            body: String::new(),
        }
    }

    #[test]
    fn keeps_the_last_n() {
        let mut recorder = Recorder::new(2);
        for path in ["/a", "/b", "/c"] {
            recorder.push(request(path));
        }
        let paths: Vec<_> = recorder.list().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["/b", "/c"]);
        assert_eq!(recorder.list()[0].header("X-API-KEY"), Some("k"));
        let mut off = Recorder::new(0);
        off.push(request("/a"));
        assert!(off.list().is_empty());
    }
}
