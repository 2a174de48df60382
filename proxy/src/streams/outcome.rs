//! How a stream ended: a pure function of what the relay saw.

use crate::relay::RelayEnd;

/// `outcome` label of `zai_proxy_streams_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamOutcome {
    /// A terminal event arrived (Anthropic `message_stop`; OpenAI/Z.AI `[DONE]` or a
    /// non-error `finish_reason`).
    Complete,
    /// The upstream body ended (or failed, or went silent past `UPSTREAM_TIMEOUT`) without a
    /// terminal event: the client got a truncated answer.
    UpstreamCut,
    /// The client went away before the terminal event.
    ClientGone,
    /// Upstream said the generation failed: an `error` event, or an error `finish_reason`
    /// (Z.AI's `network_error`).
    UpstreamErrorEvent,
}

impl StreamOutcome {
    /// Every outcome, in label order (zero series are pre-created for each).
    pub const ALL: [StreamOutcome; 4] = [
        StreamOutcome::Complete,
        StreamOutcome::UpstreamCut,
        StreamOutcome::ClientGone,
        StreamOutcome::UpstreamErrorEvent,
    ];

    /// The label value ([`crate::metrics::STREAM_OUTCOMES`]).
    pub fn as_str(self) -> &'static str {
        crate::metrics::STREAM_OUTCOMES[self.index()]
    }

    /// Index into [`StreamOutcome::ALL`].
    pub fn index(self) -> usize {
        match self {
            StreamOutcome::Complete => 0,
            StreamOutcome::UpstreamCut => 1,
            StreamOutcome::ClientGone => 2,
            StreamOutcome::UpstreamErrorEvent => 3,
        }
    }

    /// Decides the outcome. An error event wins over everything (upstream said why it
    /// stopped); a terminal event makes the stream complete even if the connection then
    /// failed or the client left during the last bytes; without one, a client that left is
    /// `client_gone` and anything else is `upstream_cut`.
    pub fn decide(end: RelayEnd, terminal: bool, error_event: bool) -> Self {
        if error_event {
            return StreamOutcome::UpstreamErrorEvent;
        }
        if terminal {
            return StreamOutcome::Complete;
        }
        match end {
            RelayEnd::ClientGone => StreamOutcome::ClientGone,
            RelayEnd::Complete | RelayEnd::UpstreamError => StreamOutcome::UpstreamCut,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        use RelayEnd::*;
        use StreamOutcome as O;
        let cases = [
            (Complete, true, false, O::Complete),
            (Complete, false, false, O::UpstreamCut),
            (UpstreamError, false, false, O::UpstreamCut),
            (UpstreamError, true, false, O::Complete),
            (ClientGone, false, false, O::ClientGone),
            (ClientGone, true, false, O::Complete),
            (Complete, true, true, O::UpstreamErrorEvent),
            (ClientGone, false, true, O::UpstreamErrorEvent),
        ];
        for (end, terminal, error, want) in cases {
            assert_eq!(
                O::decide(end, terminal, error),
                want,
                "{end:?} {terminal} {error}"
            );
        }
        for (i, o) in O::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
        assert_eq!(O::UpstreamCut.as_str(), "upstream_cut");
        assert_eq!(O::UpstreamErrorEvent.as_str(), "upstream_error_event");
    }
}
