//! Byte-for-byte relay of the upstream response body, chunk by chunk, through taps.
//!
//! [`RelayBody`] wraps the upstream body. Every data chunk is shown to each [`ResponseTap`]
//! (by reference: no copy) and then handed to the client unchanged, as soon as it arrives —
//! nothing is buffered or re-serialised. When the body ends, each tap's
//! [`ResponseTap::on_end`] is called exactly once with how it ended. Dropping the relay before
//! the end (the client went away) drops the upstream body too, which closes the upstream
//! connection and so cancels the upstream request.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::error::ProxyError;

/// How a relayed body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// Every byte reached the client's connection.
    Complete,
    /// The client disconnected (or the response was dropped) before the end.
    ClientGone,
    /// The upstream body failed or stayed silent longer than `UPSTREAM_TIMEOUT`.
    UpstreamError,
}

/// Observes a response body as it streams through. Implementations must be cheap: they run
/// on the relay path for every chunk.
pub trait ResponseTap: Send + 'static {
    /// Sees each data chunk, in order, before it is sent to the client.
    fn on_chunk(&mut self, chunk: &Bytes);
    /// Called once when the body is finished, however it finished.
    fn on_end(self: Box<Self>, end: RelayEnd);
}

/// The upstream body, relayed to the client through taps.
pub struct RelayBody<B: Body> {
    inner: B,
    taps: Vec<Box<dyn ResponseTap>>,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    ended: bool,
}

impl<B: Body> RelayBody<B> {
    /// Relays `inner`; fails the body if it is silent for `idle_timeout`.
    pub fn new(inner: B, taps: Vec<Box<dyn ResponseTap>>, idle_timeout: Duration) -> Self {
        Self {
            inner,
            taps,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            ended: false,
        }
    }

    fn finish(&mut self, end: RelayEnd) {
        if self.ended {
            return;
        }
        self.ended = true;
        for tap in self.taps.drain(..) {
            tap.on_end(end);
        }
    }
}

impl<B> Body for RelayBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    /// Surfaced to the server: [`ProxyError::RelayIdle`] or [`ProxyError::RelayUpstream`].
    type Error = ProxyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ProxyError>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(chunk) = frame.data_ref() {
                    for tap in &mut this.taps {
                        tap.on_chunk(chunk);
                    }
                }
                let deadline = Instant::now() + this.idle_timeout;
                this.idle.as_mut().reset(deadline);
                // A server stops polling once `is_end_stream` says so; end here, not in Drop.
                if this.inner.is_end_stream() {
                    this.finish(RelayEnd::Complete);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(RelayEnd::UpstreamError);
                Poll::Ready(Some(Err(ProxyError::RelayUpstream(e.into()))))
            }
            Poll::Ready(None) => {
                this.finish(RelayEnd::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.idle.as_mut().poll(cx).is_ready() {
                    this.finish(RelayEnd::UpstreamError);
                    return Poll::Ready(Some(Err(ProxyError::RelayIdle(this.idle_timeout))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> Drop for RelayBody<B> {
    fn drop(&mut self) {
        // Servers drop bodies they need not send (HEAD, 204, 304) without polling them.
        let end = if self.inner.is_end_stream() {
            RelayEnd::Complete
        } else {
            RelayEnd::ClientGone
        };
        self.finish(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Seen {
        chunks: Vec<Bytes>,
        ends: Vec<RelayEnd>,
    }

    struct Recorder(Arc<Mutex<Seen>>);

    impl ResponseTap for Recorder {
        fn on_chunk(&mut self, chunk: &Bytes) {
            self.0.lock().expect("lock").chunks.push(chunk.clone());
        }
        fn on_end(self: Box<Self>, end: RelayEnd) {
            self.0.lock().expect("lock").ends.push(end);
        }
    }

    type Chunk = Result<Frame<Bytes>, std::io::Error>;

    fn stream(chunks: Vec<Chunk>) -> StreamBody<futures::stream::Iter<std::vec::IntoIter<Chunk>>> {
        StreamBody::new(futures::stream::iter(chunks))
    }

    #[tokio::test]
    async fn chunks_pass_unchanged_and_end_once() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let body = stream(vec![
            Ok(Frame::data(Bytes::from_static(b"event: a\n"))),
            Ok(Frame::data(Bytes::from_static(b"data: {}\n\n"))),
        ]);
        let relay = RelayBody::new(
            body,
            vec![Box::new(Recorder(Arc::clone(&seen)))],
            Duration::from_secs(5),
        );
        let out = relay.collect().await.expect("body").to_bytes();
        assert_eq!(&out[..], b"event: a\ndata: {}\n\n");
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.chunks.len(), 2);
        assert_eq!(seen.ends, [RelayEnd::Complete]);
    }

    #[tokio::test]
    async fn dropping_early_reports_client_gone() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let body = stream(vec![
            Ok(Frame::data(Bytes::from_static(b"one"))),
            Ok(Frame::data(Bytes::from_static(b"two"))),
        ]);
        let mut relay = RelayBody::new(
            body,
            vec![Box::new(Recorder(Arc::clone(&seen)))],
            Duration::from_secs(5),
        );
        let first = relay.frame().await.expect("frame").expect("ok");
        assert_eq!(first.data_ref().map(|b| &b[..]), Some(&b"one"[..]));
        drop(relay);
        assert_eq!(seen.lock().expect("lock").ends, [RelayEnd::ClientGone]);
    }

    #[tokio::test]
    async fn an_empty_body_dropped_unpolled_is_complete() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let relay = RelayBody::new(
            http_body_util::Empty::<Bytes>::new(),
            vec![Box::new(Recorder(Arc::clone(&seen)))],
            Duration::from_secs(5),
        );
        drop(relay);
        assert_eq!(seen.lock().expect("lock").ends, [RelayEnd::Complete]);
    }

    #[tokio::test]
    async fn upstream_failure_is_reported() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let body = stream(vec![
            Ok(Frame::data(Bytes::from_static(b"one"))),
            Err(std::io::Error::other("reset")),
        ]);
        let relay = RelayBody::new(
            body,
            vec![Box::new(Recorder(Arc::clone(&seen)))],
            Duration::from_secs(5),
        );
        assert!(relay.collect().await.is_err());
        assert_eq!(seen.lock().expect("lock").ends, [RelayEnd::UpstreamError]);
    }

    #[tokio::test]
    async fn silence_longer_than_the_idle_timeout_fails() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let body = StreamBody::new(futures::stream::pending::<Chunk>());
        let relay = RelayBody::new(
            body,
            vec![Box::new(Recorder(Arc::clone(&seen)))],
            Duration::from_millis(20),
        );
        let err = relay.collect().await.expect_err("idle");
        assert!(matches!(err, ProxyError::RelayIdle(_)));
        assert_eq!(seen.lock().expect("lock").ends, [RelayEnd::UpstreamError]);
    }
}
