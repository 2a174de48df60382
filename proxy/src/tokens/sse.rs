//! An incremental Server-Sent Events reader that only collects `data` fields.
//!
//! Bytes arrive in arbitrary chunks (an event, a line, even a CRLF pair or a UTF-8 character
//! can be split anywhere); [`SseParser::feed`] keeps only the unfinished line and the
//! unfinished event's data, both capped, so memory per stream stays bounded however long the
//! stream runs. Lines end with LF, CRLF or CR (the SSE specification); a blank line ends an
//! event. `event:`, `id:`, `retry:` and comment lines are ignored — the JSON payload says
//! what it is.

/// Default cap on one event's data (bytes). Longer events are skipped, not buffered.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// Incremental SSE reader. See the module documentation.
#[derive(Debug)]
pub struct SseParser {
    /// The unfinished line (only when a line spans chunks).
    line: Vec<u8>,
    /// The current event's data lines, joined by `\n`.
    data: Vec<u8>,
    has_data: bool,
    /// The current line is over the cap: drop it up to its end.
    line_overflow: bool,
    /// The current event is over the cap: drop it up to the blank line.
    event_overflow: bool,
    /// The previous chunk ended in CR: a leading LF belongs to it.
    after_cr: bool,
    max_event_bytes: usize,
    skipped_events: u64,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// A reader that skips events whose data exceeds `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            line_overflow: false,
            event_overflow: false,
            after_cr: false,
            max_event_bytes: max_event_bytes.max(1),
            skipped_events: 0,
        }
    }

    /// Events dropped because they were larger than the cap.
    pub fn skipped_events(&self) -> u64 {
        self.skipped_events
    }

    /// Bytes currently held (bounded by about twice the cap).
    pub fn buffered_bytes(&self) -> usize {
        self.line.len() + self.data.len()
    }

    /// Feeds the next chunk; `on_event` gets the data of every event completed by it.
    pub fn feed(&mut self, mut chunk: &[u8], on_event: &mut dyn FnMut(&[u8])) {
        if chunk.is_empty() {
            // An empty body frame must not forget a CR that ended the previous chunk: the
            // LF of its CRLF may still come.
            return;
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while !chunk.is_empty() {
            match memchr::memchr2(b'\n', b'\r', chunk) {
                None => {
                    self.push_partial(chunk);
                    return;
                }
                Some(pos) => {
                    let (head, rest) = chunk.split_at(pos);
                    let mut consumed = 1;
                    if rest[0] == b'\r' {
                        match rest.get(1) {
                            Some(b'\n') => consumed = 2,
                            Some(_) => {}
                            None => self.after_cr = true,
                        }
                    }
                    if self.line.is_empty() && !self.line_overflow {
                        self.end_line(head, on_event);
                    } else {
                        self.push_partial(head);
                        let line = std::mem::take(&mut self.line);
                        if !self.line_overflow {
                            self.end_line(&line, on_event);
                        }
                        self.line = line;
                        self.line.clear();
                        self.line_overflow = false;
                    }
                    chunk = &rest[consumed..];
                }
            }
        }
    }

    /// The stream ended: a final event without its blank line is still delivered.
    pub fn finish(&mut self, on_event: &mut dyn FnMut(&[u8])) {
        if !self.line.is_empty() && !self.line_overflow {
            let line = std::mem::take(&mut self.line);
            self.end_line(&line, on_event);
        }
        self.line.clear();
        self.line_overflow = false;
        self.end_line(b"", on_event);
    }

    fn push_partial(&mut self, part: &[u8]) {
        if self.line_overflow {
            return;
        }
        if self.line.len() + part.len() > self.max_event_bytes + 16 {
            // Only a `data` line makes the event too large; another field or a comment this
            // long is dropped alone, as it is when the whole line arrives in one chunk.
            let mut start = self.line.iter().chain(part).take(5);
            if start.by_ref().take(4).eq(b"data".iter()) && start.next() == Some(&b':') {
                self.event_overflow = true;
            }
            self.line.clear();
            self.line_overflow = true;
            return;
        }
        self.line.extend_from_slice(part);
    }

    fn end_line(&mut self, line: &[u8], on_event: &mut dyn FnMut(&[u8])) {
        if line.is_empty() {
            if self.event_overflow {
                self.skipped_events += 1;
            } else if self.has_data {
                on_event(&self.data);
            }
            self.data.clear();
            self.has_data = false;
            self.event_overflow = false;
            return;
        }
        let Some(value) = line.strip_prefix(b"data") else {
            return;
        };
        let value = match value {
            [] => value,
            [b':', b' ', rest @ ..] => rest,
            [b':', rest @ ..] => rest,
            // `dataX:` is another field name.
            _ => return,
        };
        if self.event_overflow {
            return;
        }
        if self.data.len() + value.len() + 1 > self.max_event_bytes {
            self.data.clear();
            self.event_overflow = true;
            return;
        }
        if self.has_data {
            self.data.push(b'\n');
        }
        self.data.extend_from_slice(value);
        self.has_data = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<String> {
        let mut p = SseParser::new(64);
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut |d| {
                out.push(String::from_utf8_lossy(d).into_owned())
            });
        }
        p.finish(&mut |d| out.push(String::from_utf8_lossy(d).into_owned()));
        out
    }

    #[test]
    fn events_with_every_line_ending() {
        let text = b"event: a\ndata: one\n\ndata:two\r\n\r\ndata: three\r\rdata: x\ndata: y\n\n: comment\n\n";
        assert_eq!(events(&[text]), vec!["one", "two", "three", "x\ny"]);
    }

    #[test]
    fn split_at_every_byte_gives_the_same_events() {
        let text: &[u8] = b"data: {\"a\":1}\r\n\r\nevent: e\ndata: b\r\rdata: c\n\ndata: last";
        let whole = events(&[text]);
        assert_eq!(whole, vec!["{\"a\":1}", "b", "c", "last"]);
        for i in 0..=text.len() {
            for j in i..=text.len() {
                assert_eq!(
                    events(&[&text[..i], &text[i..j], &text[j..]]),
                    whole,
                    "{i} {j}"
                );
            }
        }
    }

    #[test]
    fn oversized_events_are_skipped_and_memory_stays_bounded() {
        let mut p = SseParser::new(64);
        let mut out = Vec::new();
        let big = vec![b'x'; 1000];
        p.feed(b"data: ", &mut |d| out.push(d.to_vec()));
        for _ in 0..100 {
            p.feed(&big, &mut |d| out.push(d.to_vec()));
            assert!(p.buffered_bytes() <= 2 * 64 + 32);
        }
        p.feed(b"\n\ndata: ok\n\n", &mut |d| out.push(d.to_vec()));
        assert_eq!(out, vec![b"ok".to_vec()]);
        assert_eq!(p.skipped_events(), 1);
    }

    /// Fuzz finding (sse_usage): a comment or other field longer than the cap, split across
    /// chunks, made the reader skip the event it was in; whole it was ignored.
    #[test]
    fn a_long_comment_split_across_chunks_does_not_drop_the_event() {
        let mut text = b"data: kept\n: ".to_vec();
        text.extend(std::iter::repeat_n(b'x', 200));
        text.extend_from_slice(b"\nid: 1\n\ndata: next\n\n");
        let whole = events(&[&text]);
        assert_eq!(whole, vec!["kept", "next"]);
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(events(&bytes), whole);
        let (a, b) = text.split_at(40);
        assert_eq!(events(&[a, b]), whole);
        // A data line that long still makes its event too large, however it is cut.
        let mut p = SseParser::new(64);
        let mut out = Vec::new();
        for c in b"data: "
            .iter()
            .chain(&[b'y'; 100])
            .chain(b"\n\ndata: ok\n\n")
        {
            p.feed(std::slice::from_ref(c), &mut |d| out.push(d.to_vec()));
        }
        assert_eq!((out, p.skipped_events()), (vec![b"ok".to_vec()], 1));
    }

    /// Found while writing the sse_usage fuzz target (whose chunker makes empty chunks): an
    /// empty chunk between the CR and the LF of a CRLF made the LF a second line end, i.e. a
    /// blank line that ended the event early.
    #[test]
    fn an_empty_chunk_inside_a_crlf_changes_nothing() {
        let chunks: [&[u8]; 3] = [b"data: a\r", b"", b"\ndata: b\r\n\r\n"];
        assert_eq!(events(&chunks), vec!["a\nb"]);
        assert_eq!(events(&[&chunks.concat()]), vec!["a\nb"]);
    }

    #[test]
    fn other_fields_are_ignored() {
        assert_eq!(events(&[b"datax: no\nid: 1\nretry: 5\ndata\n\n"]), vec![""]);
    }
}
