//! The token-counting steps of the forward handler, kept here so the handler stays a list
//! of hook calls:
//!
//! 0. [`read_request`]: the body read once for `model`, `stream` and the input texts;
//! 1. [`start_input_estimate`] before the upstream call, concurrently with it (bodies above
//!    [`INLINE_INPUT_MAX_BYTES`] on a few dedicated counting threads), awaited with [`PendingInput::wait`]
//!    when the response head arrives; the result is the `X-Token-Input` response header
//!    ([`x_token_input`]);
//! 2. [`local_count_tokens`]: `count_tokens` answered without calling upstream;
//! 3. the usage tap that records usage when the response ends (`forward::usage_tap`, with
//!    the other relay taps);
//!
//! and, at start-up, [`load_counter`]. These take the pieces of the proxy's state they use
//! (the metrics, the configuration), not the state itself: `tokens` sits below `state`.

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;
use tokio::sync::oneshot;

use super::input::{InputTexts, RequestDoc};
use super::select::{Selection, Tokenizers};
use super::{InputEstimate, InputMethod, TokenCounter};
use crate::config::{Config, TokenizerEncoding};
use crate::metrics::Metrics;
use crate::routes::WireFormat;

/// Name of the response header carrying the local input estimate.
pub const X_TOKEN_INPUT: &str = "x-token-input";

/// Bodies up to this size are counted inline on the async worker; larger ones on the
/// counting threads. Measured on the project's 2-core machine: handing work to another
/// thread and back (tokio `spawn_blocking` round trip) takes ~40 µs (p50; ~65 µs when the
/// thread is parked), while the whole estimate (JSON parse + count) costs ~7 µs per KiB,
/// so below ~2 KiB a hand-off costs more than it saves. Either way the count runs
/// concurrently with the upstream call.
pub const INLINE_INPUT_MAX_BYTES: usize = 2 * 1024;

/// Bodies above this size are counted on a thread of their own (tokio's blocking pool)
/// instead of the shared counting threads: a multi-megabyte body can take a second to count
/// (`abab…`, long CJK text), and the ordinary requests queued behind it on the counting
/// threads would wait for it before their response head could leave (head-of-line blocking).
/// Such bodies are rare, so the thread-per-count cost that rules the blocking pool out for
/// ordinary traffic does not apply.
pub const OWN_THREAD_MIN_BYTES: usize = 1 << 20;

/// The local input estimate of a request, started before the upstream call and awaited
/// only where the number is needed ([`PendingInput::wait`]): when the upstream response
/// head arrives (`X-Token-Input`, the usage tap), or at once for a local `count_tokens`.
#[derive(Debug)]
pub struct PendingInput(Pending);

#[derive(Debug)]
enum Pending {
    Ready(InputEstimate),
    Counting {
        task: oneshot::Receiver<InputEstimate>,
        len: usize,
    },
}

impl PendingInput {
    /// An estimate that is already known.
    pub fn ready(estimate: InputEstimate) -> Self {
        Self(Pending::Ready(estimate))
    }

    /// The estimate, waiting for the count if it is still running.
    pub async fn wait(self) -> InputEstimate {
        match self.0 {
            Pending::Ready(estimate) => estimate,
            Pending::Counting { task, len } => match task.await {
                Ok(estimate) => estimate,
                Err(_) => {
                    tracing::warn!("Token counting task failed; estimating bytes/4");
                    InputEstimate {
                        tokens: (len / 4) as u64,
                        method: InputMethod::OverLimit,
                    }
                }
            },
        }
    }
}

/// Bodies up to this size are parsed once, on the async worker, into a borrowed tree that
/// gives `model`, `stream` and the input texts ([`RequestDoc`]); larger ones get the
/// allocation-free minimal parse there and their full parse runs with the count on the
/// counting threads, so a multi-megabyte body never holds an async worker for long.
pub const SINGLE_PARSE_MAX_BYTES: usize = super::BLOCKING_THRESHOLD_BYTES;

/// A request body read by the handler: `model` and `stream` for the request itself, and
/// what the input estimate will count ([`start_input_estimate`]).
#[derive(Debug)]
pub struct ReadRequest<'a> {
    /// The `model` field.
    pub model: Option<Cow<'a, str>>,
    /// `"stream": true`.
    pub stream: bool,
    /// For the input estimate.
    pub input: InputSource,
}

/// What the input estimate counts.
#[derive(Debug)]
pub enum InputSource {
    /// No estimate (counting off, or not an API route).
    NotCounted,
    /// The texts, already read from the one parse (`None`: the body is not a JSON object).
    Texts(Option<InputTexts>),
    /// The raw body: large (parsed with the count, off the async workers) or over
    /// `TOKEN_COUNT_MAX_BYTES` (bytes ÷ 4).
    Body,
}

/// Reads `body` once for the handler (see [`SINGLE_PARSE_MAX_BYTES`]). `counter`: counting
/// is on for this request.
pub fn read_request<'a>(
    format: WireFormat,
    body: &'a [u8],
    counter: Option<&TokenCounter>,
) -> ReadRequest<'a> {
    let single_parse = counter.is_some()
        && format != WireFormat::Other
        && !body.is_empty()
        && body.len() <= SINGLE_PARSE_MAX_BYTES
        && counter.is_some_and(|c| body.len() <= c.max_bytes());
    if single_parse {
        let doc = RequestDoc::parse(body);
        let texts = doc.input_texts();
        return ReadRequest {
            model: doc.model,
            stream: doc.stream,
            input: InputSource::Texts(texts),
        };
    }
    let (model, stream) = super::input::peek_request(format, body);
    let input = if counter.is_some() && format != WireFormat::Other {
        InputSource::Body
    } else {
        InputSource::NotCounted
    };
    ReadRequest {
        model,
        stream,
        input,
    }
}

/// Starts the local input estimate (`None` when not counted): inline when there is little
/// to count ([`INLINE_INPUT_MAX_BYTES`]) or nothing to count (not JSON, over
/// `TOKEN_COUNT_MAX_BYTES`: bytes ÷ 4), otherwise on the counting threads with the texts (or a
/// `Bytes` clone of a large body, never a copy) so the async workers never tokenize. The
/// counting-time metrics are observed where the count runs. Call it before the upstream
/// call and [`PendingInput::wait`] after it. Same numbers as [`TokenCounter::input_tokens`].
pub fn start_input_estimate(
    metrics: &Arc<Metrics>,
    counter: &Arc<TokenCounter>,
    body: &Bytes,
    input: InputSource,
) -> Option<PendingInput> {
    let len = body.len();
    let inline = len <= INLINE_INPUT_MAX_BYTES;
    let pending = match input {
        InputSource::NotCounted => return None,
        InputSource::Texts(None) => PendingInput::ready(InputEstimate {
            tokens: 0,
            method: InputMethod::Unparseable,
        }),
        InputSource::Texts(Some(texts)) if inline => {
            PendingInput::ready(count_texts(metrics, counter, &texts))
        }
        InputSource::Texts(Some(texts)) => {
            let metrics = Arc::clone(metrics);
            let counter = Arc::clone(counter);
            let task = off_the_workers(len, move || count_texts(&metrics, &counter, &texts));
            PendingInput(Pending::Counting { task, len })
        }
        InputSource::Body if inline || len > counter.max_bytes() => {
            PendingInput::ready(estimate_now(metrics, counter, body))
        }
        InputSource::Body => {
            let metrics = Arc::clone(metrics);
            let counter = Arc::clone(counter);
            let body = body.clone();
            let task = off_the_workers(len, move || estimate_now(&metrics, &counter, &body));
            PendingInput(Pending::Counting { task, len })
        }
    };
    Some(pending)
}

/// The local input estimate of `body` (either wire format), counted off the async workers
/// when large; the same number the forward handler puts in `X-Token-Input`.
pub async fn estimate_input(
    metrics: &Arc<Metrics>,
    counter: &Arc<TokenCounter>,
    format: WireFormat,
    body: &Bytes,
) -> Option<InputEstimate> {
    let input = read_request(format, body, Some(counter)).input;
    Some(
        start_input_estimate(metrics, counter, body, input)?
            .wait()
            .await,
    )
}

type CountJob = Box<dyn FnOnce() + Send>;

/// Runs `count` on the counting threads (see [`counting_threads`]), or on tokio's blocking
/// pool for a body of more than [`OWN_THREAD_MIN_BYTES`] (or if the counting threads could
/// not be started).
fn off_the_workers<F>(len: usize, count: F) -> oneshot::Receiver<InputEstimate>
where
    F: FnOnce() -> InputEstimate + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let job: CountJob = Box::new(move || {
        let _ = tx.send(count());
    });
    match counting_threads().filter(|_| len <= OWN_THREAD_MIN_BYTES) {
        Some(queue) => {
            if let Err(mpsc::SendError(job)) = queue.send(job) {
                tokio::task::spawn_blocking(job);
            }
        }
        None => {
            tokio::task::spawn_blocking(job);
        }
    }
    rx
}

/// The threads that count input tokens: a fixed few (half the CPUs, at least one) taking
/// jobs in arrival order, shared by every proxy in the process. Not tokio's blocking pool:
/// it starts a thread per concurrent count, and measured at 1000–2000 req/s of 40 KB
/// bodies on 2 cores those threads starved the async workers that relay responses (added
/// p99 +18 ms at 1000 req/s, sustained rate halved). Here counting gets at most its share
/// of the cores and waits in the queue under overload.
fn counting_threads() -> Option<&'static mpsc::Sender<CountJob>> {
    static QUEUE: OnceLock<Option<mpsc::Sender<CountJob>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let threads = std::thread::available_parallelism()
                .map_or(1, |n| n.get().div_ceil(2))
                .max(1);
            let (tx, rx) = mpsc::channel::<CountJob>();
            let rx = Arc::new(Mutex::new(rx));
            let mut started = 0;
            for i in 0..threads {
                let rx = Arc::clone(&rx);
                let spawned = std::thread::Builder::new()
                    .name(format!("zai-token-count-{i}"))
                    .spawn(move || count_worker(&rx));
                match spawned {
                    Ok(_) => started += 1,
                    Err(e) => tracing::warn!("Cannot start a token counting thread: {e}"),
                }
            }
            (started > 0).then_some(tx)
        })
        .as_ref()
}

fn count_worker(jobs: &Mutex<mpsc::Receiver<CountJob>>) {
    loop {
        let job = match jobs.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return;
        };
        // A panicking count drops its result sender: the request falls back to bytes ÷ 4
        // (`PendingInput::wait`) and the thread stays.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

/// Parses and counts now, on the calling thread ([`TokenCounter::input_tokens`]), and
/// observes the counting-time metrics.
fn estimate_now(metrics: &Metrics, counter: &TokenCounter, body: &[u8]) -> InputEstimate {
    let started = Instant::now();
    let estimate = counter.input_tokens(body);
    if estimate.method == InputMethod::Counted {
        observe_input_count(metrics, estimate.tokens, started.elapsed());
    }
    estimate
}

/// Counts texts read by the one parse, on the calling thread, and observes the
/// counting-time metrics.
fn count_texts(metrics: &Metrics, counter: &TokenCounter, texts: &InputTexts) -> InputEstimate {
    let started = Instant::now();
    let tokens = texts.iter().map(|t| counter.count_input(t) as u64).sum();
    observe_input_count(metrics, tokens, started.elapsed());
    InputEstimate {
        tokens,
        method: InputMethod::Counted,
    }
}

/// What [`super::record::observe_count`] does for `direction="input"`, through the series handles
/// resolved once ([`crate::metrics::HotSeries`]): the same series and values.
fn observe_input_count(metrics: &Metrics, tokens: u64, elapsed: Duration) {
    let hot = metrics.hot();
    let seconds = elapsed.as_secs_f64();
    hot.token_count_duration(metrics).observe(seconds);
    if tokens > 0 && seconds > 0.0 {
        let (rate_seconds, rate) = hot.input_rates(metrics);
        // Token counts fit f64 exactly up to 2^53.
        #[allow(clippy::cast_precision_loss)]
        let tokens = tokens as f64;
        rate_seconds.observe(seconds / tokens);
        rate.observe(tokens / seconds);
    }
}

/// The `X-Token-Input` header value.
pub fn x_token_input(estimate: InputEstimate) -> HeaderValue {
    HeaderValue::from(estimate.tokens)
}

/// The body of a local `count_tokens` answer, or `None` when the request should go upstream
/// (the body is not a JSON object: upstream gives the client its usual error).
pub fn local_count_tokens(estimate: InputEstimate) -> Option<Bytes> {
    match estimate.method {
        InputMethod::Counted | InputMethod::OverLimit => {
            Some(Bytes::from(TokenCounter::count_tokens_body(estimate)))
        }
        InputMethod::Unparseable => None,
    }
}

impl From<TokenizerEncoding> for Selection {
    fn from(e: TokenizerEncoding) -> Self {
        use super::Encoding as E;
        use Selection as S;
        use TokenizerEncoding as T;
        match e {
            T::Cl100kBase => S::Fixed(E::Cl100kBase),
            T::O200kBase => S::Fixed(E::O200kBase),
            T::Glm4 => S::Fixed(E::Glm4),
            T::Glm5 => S::Fixed(E::Glm5),
            T::Auto => S::ByModel,
        }
    }
}

/// Start-up: loads the tokenizer(s) on the blocking pool (before readiness is marked) and
/// logs `Token counting enabled (<encoding>, engine <name>, model: <TOKENIZER_MODEL>)`
/// (`auto`: `auto: glm4, glm5, cl100k_base`), or the "disabled" line. A vocabulary that
/// fails its checks leaves counting off (logged). The counters are stored in `loaded`
/// (`AppState::tokens`).
pub async fn load_counter(config: &Config, loaded: &OnceLock<Tokenizers>) {
    let settings = &config.tokens;
    if !settings.enabled {
        tracing::info!("Token counting disabled (TOKEN_COUNTING_ENABLED=false)");
        return;
    }
    let selection = Selection::from(settings.encoding);
    let (max_bytes, cache_bytes) = (settings.max_bytes, settings.cache_bytes);
    let default_model = config.tokenizer_model.clone();
    let started = Instant::now();
    let load = move || Tokenizers::load(selection, max_bytes, cache_bytes, &default_model);
    match tokio::task::spawn_blocking(load).await {
        Ok(Ok(tokenizers)) => {
            let names: Vec<&str> = tokenizers
                .counters()
                .iter()
                .map(|c| c.encoding().name())
                .collect();
            let vocabularies = match selection {
                Selection::Fixed(e) => e.name().to_owned(),
                Selection::ByModel => format!("auto: {}", names.join(", ")),
            };
            tracing::info!(
                "Token counting enabled ({vocabularies}, engine {}, model: {})",
                tokenizers.any().engine().name(),
                config.tokenizer_model
            );
            tracing::info!("Tokenizer loaded in {} ms", started.elapsed().as_millis());
            let _ = loaded.set(tokenizers);
        }
        Ok(Err(problem)) => {
            tracing::error!("Token counting unavailable: {problem}; continuing without it");
        }
        Err(e) => {
            tracing::error!("Token counting unavailable: loading failed: {e}");
        }
    }
}
