//! What a streamed answer looked like on its way through: time to the first token, output
//! rate, and how it ended.
//!
//! * [`watch`]: reads the SSE events of one stream (a copy of each chunk's bytes is never
//!   kept: the events are parsed in place) and remembers the few facts the metrics need —
//!   when the first content-bearing event passed, whether a terminal event or an error event
//!   was seen, and the output tokens upstream reported. Pure: no clock, no metrics.
//! * [`outcome`]: the pure decision of how a stream ended ([`StreamOutcome`]) from those
//!   facts and how the relay ended.
//! * [`series`]: the stream series, resolved once (held by the state as [`StreamHot`]).
//!
//! The relay tap that feeds [`watch`] and, at the end, writes
//! `zai_proxy_time_to_first_token_seconds`, `zai_proxy_output_tokens_per_second` and
//! `zai_proxy_streams_total` through [`series`] is `forward::stream_tap` (it needs the
//! proxy's state, which sits above this module).
//!
//! A stream is a 2xx answer to a chat route (either wire format) that is server-sent events.
//! This works whether token counting is on or off.

pub mod outcome;
pub mod series;
pub mod watch;

pub use outcome::StreamOutcome;
pub use series::{StreamHot, StreamSeries};
pub use watch::StreamWatch;
