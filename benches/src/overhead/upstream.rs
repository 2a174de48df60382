//! A minimal hyper upstream on loopback: answers `/v1/messages` and `/v1/chat/completions`
//! after a fixed delay with canned bodies, or with a paced SSE stream when the request asks
//! for one. It runs on its own thread and runtime so it is the same for direct and proxied
//! runs.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use super::canned::{self, Api};

/// How the mock answers.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamSettings {
    /// Wait before the response head (tokio timer: rounded up to whole milliseconds).
    pub delay: Duration,
    /// Text deltas per stream.
    pub stream_deltas: usize,
    /// Pause between two SSE events.
    pub chunk_interval: Duration,
    /// Text deltas of a long stream (requests with `x-bench-stream: long`).
    pub long_deltas: usize,
    /// Pause between two SSE events of a long stream.
    pub long_interval: Duration,
}

/// Request header that asks the mock for a long stream (the proxy forwards it unchanged).
pub const LONG_STREAM_HEADER: &str = "x-bench-stream";

/// Pre-built bodies, shared by every connection.
struct Canned {
    settings: UpstreamSettings,
    anthropic: Bytes,
    openai: Bytes,
    anthropic_stream: Arc<[Bytes]>,
    openai_stream: Arc<[Bytes]>,
    anthropic_long: Arc<[Bytes]>,
    openai_long: Arc<[Bytes]>,
}

/// A running mock upstream; stops when dropped.
#[derive(Debug)]
pub struct MockUpstream {
    /// Where it listens (127.0.0.1).
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockUpstream {
    /// Binds 127.0.0.1:0 and serves on a dedicated thread (single-threaded runtime).
    pub fn start(settings: UpstreamSettings) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let canned = Arc::new(Canned {
            settings,
            anthropic: canned::response_body(Api::Anthropic),
            openai: canned::response_body(Api::OpenAi),
            anthropic_stream: canned::stream_events(Api::Anthropic, settings.stream_deltas).into(),
            openai_stream: canned::stream_events(Api::OpenAi, settings.stream_deltas).into(),
            anthropic_long: canned::stream_events(Api::Anthropic, settings.long_deltas).into(),
            openai_long: canned::stream_events(Api::OpenAi, settings.long_deltas).into(),
        });
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("mock-upstream".into())
            .spawn(move || runtime.block_on(serve(listener, canned, stopped)))?;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: TcpListener, canned: Arc<Canned>, mut stopped: oneshot::Receiver<()>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stopped => return,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let _ = tcp.set_nodelay(true);
        let canned = Arc::clone(&canned);
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(Arc::clone(&canned), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

type MockBody = Either<Full<Bytes>, Paced>;

async fn answer(
    canned: Arc<Canned>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    let api = Api::from_path(req.uri().path());
    let long = req.headers().contains_key(LONG_STREAM_HEADER);
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let Some(api) = api else {
        let mut response = Response::new(Either::Left(Full::new(Bytes::from_static(
            br#"{"error":{"message":"not found"}}"#,
        ))));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return Ok(response);
    };
    tokio::time::sleep(canned.settings.delay).await;
    let (content_type, body) = if canned::wants_stream(&body) {
        let s = &canned.settings;
        let (events, interval) = match (api, long) {
            (Api::Anthropic, false) => (&canned.anthropic_stream, s.chunk_interval),
            (Api::OpenAi, false) => (&canned.openai_stream, s.chunk_interval),
            (Api::Anthropic, true) => (&canned.anthropic_long, s.long_interval),
            (Api::OpenAi, true) => (&canned.openai_long, s.long_interval),
        };
        (
            "text/event-stream",
            Either::Right(Paced::new(Arc::clone(events), interval)),
        )
    } else {
        let body = match api {
            Api::Anthropic => canned.anthropic.clone(),
            Api::OpenAi => canned.openai.clone(),
        };
        ("application/json", Either::Left(Full::new(body)))
    };
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

/// A body that yields its chunks one `interval` apart (the first one at once).
pub struct Paced {
    chunks: Arc<[Bytes]>,
    next: usize,
    interval: Duration,
    pause: Pin<Box<Sleep>>,
}

impl Paced {
    /// Paces `chunks` `interval` apart.
    pub fn new(chunks: Arc<[Bytes]>, interval: Duration) -> Self {
        Self {
            chunks,
            next: 0,
            interval,
            pause: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }
}

impl Body for Paced {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let Some(chunk) = this.chunks.get(this.next).cloned() else {
            return Poll::Ready(None);
        };
        if this.next > 0 && this.pause.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.next += 1;
        let deadline = Instant::now() + this.interval;
        this.pause.as_mut().reset(deadline);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.chunks.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn paced_body_yields_every_chunk_in_order_with_pauses() {
        let chunks: Arc<[Bytes]> = vec![
            Bytes::from_static(b"a"),
            Bytes::from_static(b"b"),
            Bytes::from_static(b"c"),
        ]
        .into();
        let started = std::time::Instant::now();
        let out = Paced::new(chunks, Duration::from_millis(5))
            .collect()
            .await
            .expect("infallible")
            .to_bytes();
        assert_eq!(&out[..], b"abc");
        assert!(started.elapsed() >= Duration::from_millis(10));
    }
}
