//! Adaptive rate limiting (reference §3) and the upstream concurrency budget: one admission
//! limiter per process, optionally sharing the key's budget with the other replicas.
//!
//! * [`controller`]: the pure EWMA-ceiling state machine that picks the rate;
//! * [`bucket`]: the governor token bucket at that rate, swapped whole on every change;
//! * [`fair`] + [`admission`]: round-robin over 64 source buckets in front of the bucket;
//!   a request whose client goes away leaves the queue;
//! * [`leases`]: one concurrency lease per upstream attempt (`MAX_UPSTREAM_CONCURRENCY`);
//! * [`shared`]: with `RATE_LIMIT_REDIS_URL`, the leases, the admission bucket and the
//!   learned ceiling live in Redis for the whole fleet; when Redis is down or slow, this
//!   replica falls back to its share (budget and rate divided by the replicas last seen);
//! * [`prefetch`]: through Redis, admissions granted ahead of use while the fleet has
//!   headroom, so most requests of a lightly loaded fleet need no round trip;
//! * [`state`]: the learned ceiling persisted across restarts.
//!
//! `POST /admin/reset-rate-limit` ([`Limiter::reset`]) is routed in `crate::server`.
//!
//! Fairness and queueing are always local: the head of this process's fair queue is the
//! only request that waits for the bucket and for a lease. (Through Redis, while its last
//! answer left room, the head hands its turn on once its call is sent, so up to
//! [`shared::MAX_OVERLAPPING_CALLS`] calls overlap instead of queueing for each other's
//! round trips; when requests have to wait it is one call at a time again.) Without Redis
//! every limit is per process: N replicas admit N times the rate and N times the
//! concurrency budget.

pub mod admission;
pub mod bucket;
pub mod controller;
pub mod fair;
pub mod leases;
pub mod prefetch;
pub mod shared;
pub mod state;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::Poll;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::RateLimitSettings;
use crate::metrics::{Metrics, SOURCE_BUCKETS, source_label};

/// One of 64 source buckets, derived from the direct TCP peer (FNV-1a 32-bit of the IP text,
/// mod 64). `X-Forwarded-For` is deliberately ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceBucket(u8);

impl SourceBucket {
    /// The bucket of a peer address (its textual form, as Go's `RemoteAddr` host).
    pub fn from_ip(ip: IpAddr) -> Self {
        use std::io::Write as _;
        let mut buf = [0u8; 64];
        let len = {
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            // 64 bytes hold any IPv4/IPv6 text form; on the impossible overflow we hash the prefix.
            let _ = write!(cursor, "{ip}");
            usize::try_from(cursor.position()).unwrap_or(0)
        };
        Self::from_host(&buf[..len])
    }

    /// The bucket of a host string; empty hashes as `unknown`, as in the original.
    pub fn from_host(host: &[u8]) -> Self {
        let host: &[u8] = if host.is_empty() { b"unknown" } else { host };
        let mut hash: u32 = 0x811c_9dc5;
        for byte in host {
            hash ^= u32::from(*byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        // SOURCE_BUCKETS is 64, so the remainder fits a u8.
        Self((hash % SOURCE_BUCKETS as u32) as u8)
    }

    /// Bucket index, 0..64.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The `client` label (`source-00` … `source-63`).
    pub fn label(self) -> &'static str {
        source_label(self.index())
    }
}

/// What an admission cost, and the concurrency lease of the attempt it admits (when a
/// budget is set): keep it for as long as the upstream attempt lasts.
#[derive(Debug)]
pub struct Admission {
    /// Time spent queued for a token (and a lease).
    pub waited: Duration,
    /// The attempt's lease; dropping it gives it back.
    pub lease: Option<leases::Lease>,
}

/// The `/health` `rate_limit` block (field order as the original).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimitSnapshot {
    /// Live limiter rate, req/s.
    pub current_rate: f64,
    /// EWMA ceiling estimate, req/s.
    pub ceiling: f64,
    /// clamp(ceiling × (1 − hold_margin), min, max).
    pub hold: f64,
    /// When the ceiling was last learned or restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceiling_updated_at: Option<DateTime<Utc>>,
    /// The ceiling state file, if persistence is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_file: Option<String>,
    /// Whether the ceiling came from the state file at start-up.
    pub restored_from_state: bool,
}

use std::sync::{Mutex, MutexGuard, PoisonError};

use bucket::{Fill, SwappableBucket};
use controller::{Controller, ControllerParams, Decision, Feedback, Step};
use leases::{LeaseBook, LeaseId, UNCAPPED};
use shared::{Admit, Beat, SharedBudget, SharedMetrics};
use state::{CeilingState, Restore};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{ApiKey, BudgetSettings};
use crate::error::ProxyError;

/// What the head of the fair queue got: its lease (if any), or the rest of an admission
/// whose call to Redis it has sent.
type Turn<'a> = admission::Turn<
    Option<leases::Lease>,
    Pin<Box<dyn Future<Output = Option<leases::Lease>> + Send + 'a>>,
>;

/// What an answer of Redis leads to.
enum Answered {
    /// Admitted (the slot waited for): go.
    Go(Option<leases::Lease>),
    /// Not admitted: try again.
    Again,
}

/// One admission call waiting for its answer outside the fair queue; frees its place on
/// drop.
struct OverlapSlot<'a>(&'a AtomicU32);

impl Drop for OverlapSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The process-wide adaptive limiter.
#[derive(Debug)]
pub struct Limiter {
    settings: RateLimitSettings,
    metrics: Arc<Metrics>,
    variant: String,
    control: Mutex<Control>,
    bucket: SwappableBucket,
    admission: admission::FairAdmission,
    leases: Arc<LeaseBook>,
    /// Whether attempts take a lease (a concurrency budget is set).
    lease_wanted: bool,
    budget: Option<u32>,
    shared: Option<Arc<SharedBudget>>,
    shared_metrics: SharedMetrics,
    releases: Mutex<Option<mpsc::UnboundedReceiver<LeaseId>>>,
    /// A rate change that could not be published to Redis yet.
    unpublished: Arc<std::sync::atomic::AtomicBool>,
    /// When heartbeats started succeeding again after an outage (see
    /// [`shared::RECOVERY_GRACE`]).
    recovering_since: Mutex<Option<tokio::time::Instant>>,
    /// `RATE_LIMIT_REDIS_FALLBACK_HOLD` (see [`shared::policy::fallback_cap`]).
    fallback_hold: Duration,
    /// The current fallback to local admission, if admission is local after an outage.
    fallback: Mutex<Option<Fallback>>,
    /// Whether the last answer of Redis left room for overlapping admission calls.
    overlap: AtomicBool,
    /// Admission calls waiting for their answers outside the fair queue.
    overlapping: AtomicU32,
    /// Admissions granted by Redis ahead of use.
    prefetched: prefetch::Prefetched,
}

/// A fallback to local admission: what [`shared::policy::fallback_cap`] needs.
#[derive(Debug, Clone, Copy)]
struct Fallback {
    since: tokio::time::Instant,
    share: u32,
    held: u32,
}

/// Controller plus the bookkeeping shown on `/health`.
#[derive(Debug)]
struct Control {
    controller: Controller,
    ceiling_updated_at: Option<DateTime<Utc>>,
    restored_from_state: bool,
}

/// Monotonic now from tokio's clock (pausable in tests).
fn mono_now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Limiter {
    /// Builds the limiter at `RATE_LIMIT_INITIAL`, or at the persisted ceiling when a usable
    /// state file exists (reference §3.5).
    pub fn new(settings: &RateLimitSettings, metrics: Arc<Metrics>, variant: &str) -> Self {
        Self::with_window(settings, metrics, variant, settings.window)
    }

    /// The limiter with the key's budget: `MAX_UPSTREAM_CONCURRENCY` leases per attempt,
    /// shared with the other replicas through Redis when `RATE_LIMIT_REDIS_URL` is set
    /// (not connected yet: [`Limiter::first_sync`] and [`Limiter::start`] do that).
    pub fn with_budget(
        settings: &RateLimitSettings,
        budget: &BudgetSettings,
        api_key: &ApiKey,
        metrics: Arc<Metrics>,
        variant: &str,
    ) -> Result<Self, ProxyError> {
        let mut limiter = Self::with_window(settings, metrics, variant, settings.window);
        limiter.budget = budget.max_upstream_concurrency;
        limiter.lease_wanted = limiter.budget.is_some();
        limiter.fallback_hold = budget.fallback_hold;
        let gauge = limiter.shared_metrics.leases.clone();
        if let Some(url) = &budget.redis_url {
            let shared =
                SharedBudget::new(url, api_key, limiter.budget, limiter.shared_metrics.clone())?;
            let (tx, rx) = mpsc::unbounded_channel();
            // Until Redis answered once, assume this replica is alone.
            limiter.leases = Arc::new(LeaseBook::new(
                limiter.budget.unwrap_or(UNCAPPED),
                Some(tx),
                gauge,
            ));
            limiter.releases = Mutex::new(Some(rx));
            limiter.shared = Some(Arc::new(shared));
            tracing::info!(
                "Shared budget: replicas share {} and the admission rate through Redis (replica {})",
                limiter
                    .budget
                    .map_or("no concurrency budget".to_owned(), |b| format!(
                        "{b} concurrent upstream attempts"
                    )),
                limiter.shared.as_ref().map_or("", |s| s.replica())
            );
        } else {
            limiter.leases = Arc::new(LeaseBook::new(
                limiter.budget.unwrap_or(UNCAPPED),
                None,
                gauge,
            ));
            if let Some(b) = limiter.budget {
                tracing::info!(
                    "Upstream concurrency budget: {b} attempts (per process: RATE_LIMIT_REDIS_URL is not set)"
                );
            }
        }
        limiter.shared_metrics.set_budget(limiter.budget);
        Ok(limiter)
    }

    /// As [`Limiter::new`] with a different controller window (tests only use this; the
    /// binary runs with `RATE_LIMIT_WINDOW`).
    pub fn with_window(
        settings: &RateLimitSettings,
        metrics: Arc<Metrics>,
        variant: &str,
        window: Duration,
    ) -> Self {
        let params = ControllerParams {
            initial: settings.initial,
            min: settings.min,
            max: settings.max,
            alpha: settings.ceiling_alpha,
            hold_margin: settings.hold_margin,
            probe_interval: settings.probe_interval,
            window,
            sample: settings.ceiling_sample,
        };
        let mut control = Control {
            controller: Controller::new(params, mono_now()),
            ceiling_updated_at: None,
            restored_from_state: false,
        };
        if let Some(path) = &settings.state_file {
            restore(&mut control, path, settings.state_max_age);
        }
        let c = &control.controller;
        let rate = c.current_rate();
        tracing::info!(
            "Rate limiter: rate={rate:.2} req/s (initial {:.2}, min {:.2}, max {:.2}), ceiling={:.2} req/s, alpha={}, hold margin={}, probe every {} windows",
            settings.initial,
            settings.min,
            settings.max,
            c.ceiling(),
            settings.ceiling_alpha,
            settings.hold_margin,
            settings.probe_interval
        );
        metrics
            .rate_limit_requests_per_second
            .with_label_values(&[variant])
            .set(rate);
        let shared_metrics = SharedMetrics::register(&metrics, variant);
        shared_metrics.set_up(false);
        let prefetched = prefetch::Prefetched::new(
            shared_metrics.prefetched.clone(),
            shared_metrics.prefetched_admissions.clone(),
        );
        Self {
            settings: settings.clone(),
            leases: Arc::new(LeaseBook::new(
                UNCAPPED,
                None,
                shared_metrics.leases.clone(),
            )),
            lease_wanted: false,
            budget: None,
            shared: None,
            shared_metrics,
            releases: Mutex::new(None),
            unpublished: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            recovering_since: Mutex::new(None),
            fallback_hold: Duration::ZERO,
            fallback: Mutex::new(None),
            overlap: AtomicBool::new(false),
            overlapping: AtomicU32::new(0),
            prefetched,
            metrics,
            variant: variant.to_owned(),
            control: Mutex::new(control),
            bucket: SwappableBucket::new(rate),
            admission: admission::FairAdmission::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the request may go upstream; never rejects. Requests queue fairly per
    /// source bucket; dropping the future (client gone) takes the request out of the queue.
    pub async fn admit(&self, source: SourceBucket) -> Admission {
        let started = tokio::time::Instant::now();
        let lease = self
            .admission
            .admit_then(source.index(), || self.take_turn())
            .await;
        let waited = started.elapsed();
        self.metrics
            .rate_limit_wait_seconds
            .with_label_values(&[&self.variant, source.label()])
            .observe(waited.as_secs_f64());
        Admission { waited, lease }
    }

    /// The head's turn: a slot of the bucket and, with a budget, a lease. Through Redis
    /// while it answers; else locally (this replica's share of the rate and the budget).
    /// While the last answer of Redis left room ([`shared::policy::room_to_overlap`]), the
    /// head hands its turn on as soon as its call is sent ([`admission::Turn::Then`]), so
    /// the next request does not wait for that round trip. Cancel-safe.
    async fn take_turn(&self) -> Turn<'_> {
        if let Some(lease) = self.take_prefetched() {
            return admission::Turn::Done(lease);
        }
        if let Some(shared) = self.shared.as_deref().filter(|s| s.is_up())
            && let Some(slot) = self.overlap_slot()
        {
            let (pending, asked, call) = self.ask(shared);
            let mut call = Box::pin(call);
            // Sent now, under the turn, so that calls leave in the queue's order.
            match std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
                Poll::Pending => {
                    return admission::Turn::Then(Box::pin(
                        self.finish_overlapped(shared, call, slot, pending, asked),
                    ));
                }
                Poll::Ready(answer) => {
                    drop(slot);
                    if let Answered::Go(lease) = self.answered(shared, answer, pending, asked).await
                    {
                        return admission::Turn::Done(lease);
                    }
                }
            }
        }
        admission::Turn::Done(self.take_turn_alone().await)
    }

    /// The rest of an admission whose call was sent under the turn, once the turn has
    /// passed on: its answer and, when that was "full" or an error, more tries as a head
    /// makes them (one call at a time, or locally).
    async fn finish_overlapped(
        &self,
        shared: &SharedBudget,
        call: impl Future<Output = Result<Admit, ProxyError>>,
        slot: OverlapSlot<'_>,
        pending: Option<leases::Pending>,
        asked: prefetch::Asked<'_>,
    ) -> Option<leases::Lease> {
        let answer = call.await;
        drop(slot);
        match self.answered(shared, answer, pending, asked).await {
            Answered::Go(lease) => lease,
            Answered::Again => self.take_turn_alone().await,
        }
    }

    /// Admission one call at a time (or locally), until admitted.
    async fn take_turn_alone(&self) -> Option<leases::Lease> {
        loop {
            if let Some(lease) = self.take_turn_once().await {
                return lease;
            }
        }
    }

    /// One admission call to Redis at the current rate, with a lease asked for when this
    /// replica has a budget, and admissions asked ahead ([`prefetch`]): the pending lease,
    /// those asked ahead, and the call (not yet sent).
    fn ask<'s>(
        &self,
        shared: &'s SharedBudget,
    ) -> (
        Option<leases::Pending>,
        prefetch::Asked<'_>,
        impl Future<Output = Result<Admit, ProxyError>> + Send + 's,
    ) {
        let pending = self.lease_wanted.then(|| self.leases.ask());
        let asked = self.prefetched.ask(self.lease_wanted, || self.leases.ask());
        let rate = self.lock().controller.current_rate();
        let id = pending.as_ref().map(leases::Pending::id);
        let (count, ids) = (asked.count(), asked.lease_ids());
        let lease_wanted = self.lease_wanted;
        let call = async move {
            let ahead = shared::Ahead::asked(lease_wanted, &ids, count);
            shared.admit_ahead(id, ahead, rate).await
        };
        (pending, asked, call)
    }

    /// An admission granted ahead of use, while admission goes through Redis.
    fn take_prefetched(&self) -> Option<Option<leases::Lease>> {
        if !self.shared.as_deref().is_some_and(SharedBudget::is_up) {
            return None;
        }
        self.prefetched.take()
    }

    /// Asks Redis for admissions ahead of use until the pool is full again or Redis grants
    /// none (each time a take leaves half or fewer), and drops the ones that lapse.
    async fn prefetch_loop(&self, shared: &SharedBudget, cancel: CancellationToken) {
        let mut next_lapse: Option<tokio::time::Instant> = None;
        loop {
            let lapse = async {
                match next_lapse {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = self.prefetched.refill_wanted() => self.refill(shared).await,
                () = self.prefetched.added() => {}
                () = lapse => {}
            }
            next_lapse = self.prefetched.purge();
        }
        self.prefetched.clear();
    }

    /// One refill call of [`Self::prefetch_loop`]: asks ahead what keeps the pool full, while
    /// admission goes through Redis; a failed call falls back as an admission call would.
    async fn refill(&self, shared: &SharedBudget) {
        if !shared.is_up() {
            return;
        }
        let asked = self.prefetched.ask(self.lease_wanted, || self.leases.ask());
        if asked.count() == 0 {
            return;
        }
        let rate = self.lock().controller.current_rate();
        let ids = asked.lease_ids();
        let ahead = shared::Ahead::asked(self.lease_wanted, &ids, asked.count());
        match shared.prefetch(ahead, rate).await {
            Ok(granted) => self.prefetched.settle(asked, Some(granted), shared.is_up()),
            Err(e) => {
                self.prefetched.settle(asked, None, false);
                self.fall_back(shared, &e);
            }
        }
    }

    /// A place for one more overlapping admission call, if the last answer left room.
    fn overlap_slot(&self) -> Option<OverlapSlot<'_>> {
        if !self.overlap.load(Ordering::Acquire) {
            return None;
        }
        self.overlapping
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < shared::MAX_OVERLAPPING_CALLS).then_some(n + 1)
            })
            .ok()?;
        Some(OverlapSlot(&self.overlapping))
    }

    /// Acts on Redis's answer to an admission call: granted (after waiting for its slot of
    /// the rate), or ask again (after a release of this replica or [`shared::FULL_POLL`]
    /// when the budget is full; at once, locally, after an error).
    async fn answered(
        &self,
        shared: &SharedBudget,
        answer: Result<Admit, ProxyError>,
        pending: Option<leases::Pending>,
        asked: prefetch::Asked<'_>,
    ) -> Answered {
        self.overlap.store(
            answer
                .as_ref()
                .is_ok_and(|a| shared::policy::room_to_overlap(a, self.budget)),
            Ordering::Release,
        );
        let ahead = match &answer {
            Ok(Admit::Granted { ahead, .. }) => Some(*ahead),
            Ok(Admit::Full { .. }) => Some(0),
            Err(_) => None,
        };
        self.prefetched.settle(asked, ahead, shared.is_up());
        match answer {
            Ok(Admit::Granted { wait, .. }) => {
                let lease = pending.map(leases::Pending::granted);
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Answered::Go(lease)
            }
            Ok(Admit::Full { .. }) => {
                if let Some(pending) = pending {
                    pending.refused();
                }
                self.leases.wait_release(shared::FULL_POLL).await;
                Answered::Again
            }
            Err(e) => {
                // The pending lease (if Redis granted it after all) is released.
                drop(pending);
                self.fall_back(shared, &e);
                Answered::Again
            }
        }
    }

    /// One try: `None` when Redis came back while waiting locally (ask it instead).
    async fn take_turn_once(&self) -> Option<Option<leases::Lease>> {
        if let Some(shared) = &self.shared {
            while shared.is_up() {
                if let Some(lease) = self.take_prefetched() {
                    return Some(lease);
                }
                let (pending, asked, call) = self.ask(shared);
                let answer = call.await;
                if let Answered::Go(lease) = self.answered(shared, answer, pending, asked).await {
                    return Some(lease);
                }
            }
        }
        self.bucket.acquire().await;
        if !self.lease_wanted {
            return Some(None);
        }
        match &self.shared {
            // A lease granted locally once Redis is back would not be counted there.
            Some(shared) => self.leases.take_while(|| !shared.is_up()).await.map(Some),
            None => Some(Some(self.leases.take().await)),
        }
    }

    /// Upstream attempts of this process holding a lease now.
    pub fn leases_in_flight(&self) -> u32 {
        self.leases.in_flight()
    }

    /// Whether admission goes through Redis now (`None` without `RATE_LIMIT_REDIS_URL`).
    pub fn shared_up(&self) -> Option<bool> {
        self.shared.as_ref().map(|s| s.is_up())
    }

    /// The bucket rate this process uses locally for a fleet rate: all of it without Redis,
    /// its share with Redis (used while Redis is unavailable).
    fn local_rate(&self, rate: f64) -> f64 {
        match &self.shared {
            Some(shared) => shared::policy::rate_share(rate, shared.alive()),
            None => rate,
        }
    }

    /// Redis failed: admit with this replica's share until a heartbeat succeeds again.
    fn fall_back(&self, shared: &SharedBudget, error: &ProxyError) {
        self.overlap.store(false, Ordering::Release);
        self.prefetched.clear();
        *self
            .recovering_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        if !shared.set_up(false) {
            return;
        }
        let alive = shared.alive();
        let mut hold = String::new();
        let cap = match self.budget {
            None => UNCAPPED,
            Some(b) => {
                let fallback = Fallback {
                    since: tokio::time::Instant::now(),
                    share: shared::policy::share(b, alive),
                    held: self.leases.in_flight(),
                };
                *self.fallback.lock().unwrap_or_else(PoisonError::into_inner) = Some(fallback);
                let cap = shared::policy::fallback_cap(
                    fallback.share,
                    fallback.held,
                    Duration::ZERO,
                    self.fallback_hold,
                );
                if cap < fallback.share {
                    hold = format!(
                        " (held {} at the failure: at most that for the fallback hold of {} ms, then {})",
                        fallback.held,
                        self.fallback_hold.as_millis(),
                        fallback.share
                    );
                }
                cap
            }
        };
        self.leases.set_cap(cap);
        self.shared_metrics.set_budget(self.budget.map(|_| cap));
        self.shared_metrics.fallbacks.inc();
        let rate = self.lock().controller.current_rate();
        let local = self.local_rate(rate);
        self.bucket.set_rate(local, Fill::Empty);
        tracing::warn!(
            "Shared budget: Redis unavailable ({error}); falling back to this replica's share ({alive} replicas last seen alive): {} upstream attempts{hold}, {local:.2} of {rate:.2} req/s",
            self.budget
                .map_or("no budget".to_owned(), |b| format!("{cap} of {b}"))
        );
    }

    /// Redis still down: once the fallback hold is over, this replica's whole share. Not
    /// after a heartbeat succeeded again: the cap reserved in Redis then stays until the
    /// switch back.
    fn end_fallback_hold(&self, shared: &SharedBudget) {
        if shared.is_up()
            || self
                .recovering_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some()
        {
            return;
        }
        let Some(fallback) = *self.fallback.lock().unwrap_or_else(PoisonError::into_inner) else {
            return;
        };
        let cap = shared::policy::fallback_cap(
            fallback.share,
            fallback.held,
            fallback.since.elapsed(),
            self.fallback_hold,
        );
        if cap != self.leases.cap() {
            self.leases.set_cap(cap);
            self.shared_metrics.set_budget(Some(cap));
            tracing::info!(
                "Shared budget: fallback hold over ({} ms); Redis still unavailable: this replica's share, {cap} upstream attempts",
                self.fallback_hold.as_millis()
            );
        }
    }

    /// Connects to Redis and sends the first heartbeat (bounded: at most a few hundred ms);
    /// call before the proxy reports ready. Without Redis this returns at once.
    pub async fn first_sync(&self) {
        let Some(shared) = &self.shared else {
            return;
        };
        let mut nothing = Vec::new();
        self.beat(shared, &mut nothing).await;
        if !shared.is_up() {
            tracing::warn!(
                "Shared budget: Redis not reachable at start-up; admitting alone with the whole budget until it answers"
            );
        }
    }

    /// Starts the background task of the shared budget (heartbeat, lease renewal and
    /// release, recovery, adopting the fleet's ceiling); stops with `cancel`.
    pub fn start(self: &Arc<Self>, cancel: CancellationToken) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Some(releases) = self
            .releases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let limiter = Arc::clone(self);
        let (prefetching, for_prefetch, prefetch_cancel) =
            (Arc::clone(self), Arc::clone(&shared), cancel.clone());
        tokio::spawn(async move { limiter.sync_loop(&shared, releases, cancel).await });
        tokio::spawn(async move {
            prefetching
                .prefetch_loop(&for_prefetch, prefetch_cancel)
                .await;
        });
    }

    async fn sync_loop(
        &self,
        shared: &SharedBudget,
        mut releases: mpsc::UnboundedReceiver<LeaseId>,
        cancel: CancellationToken,
    ) {
        /// Releases remembered while Redis is down (older ones have expired there anyway).
        const MAX_PENDING: usize = 10_000;
        let mut ticker = tokio::time::interval(shared::HEARTBEAT);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending: Vec<LeaseId> = Vec::new();
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                received = releases.recv() => {
                    let Some(id) = received else { break };
                    pending.push(id);
                    while let Ok(id) = releases.try_recv() {
                        pending.push(id);
                    }
                    if shared.is_up() {
                        match shared.release(&pending).await {
                            Ok(()) => pending.clear(),
                            Err(e) => self.fall_back(shared, &e),
                        }
                    }
                    if pending.len() > MAX_PENDING {
                        pending.drain(..pending.len() - MAX_PENDING);
                    }
                }
                _ = ticker.tick() => self.beat(shared, &mut pending).await,
            }
        }
    }

    /// One heartbeat; on success after an outage, flushes the releases made meanwhile and
    /// returns to the shared budget; adopts the fleet's rate and ceiling when they changed.
    ///
    /// While admission is local, each successful heartbeat reserves this replica's whole
    /// local share in Redis (placeholders up to the cap, besides the leases held), so the
    /// replicas already back on Redis never count on slots this one may still take
    /// locally. The switch back closes local admission first, then registers every lease
    /// held and drops the placeholders in one call, and only then asks Redis.
    async fn beat(&self, shared: &SharedBudget, pending: &mut Vec<LeaseId>) {
        let (rate, ceiling) = {
            let control = self.lock();
            (
                control.controller.current_rate(),
                control.controller.ceiling(),
            )
        };
        let held = self.leases.held();
        let first = shared.version() < 0;
        let reserve = if self.lease_wanted {
            shared::policy::reservation(!shared.is_up(), first, self.leases.cap(), held.len())
        } else {
            0
        };
        let beat = match shared.heartbeat(&held, reserve, rate, ceiling).await {
            Ok(beat) => beat,
            Err(e) => {
                self.fall_back(shared, &e);
                self.end_fallback_hold(shared);
                return;
            }
        };
        if !shared.is_up() {
            if let Err(e) = shared.release(pending).await {
                self.fall_back(shared, &e);
                return;
            }
            pending.clear();
            if !first && !self.recovery_grace_over(beat.alive, shared.alive()) {
                // Admission stays local for the grace; the fleet's values are adopted now.
                self.adopt(shared, &beat);
                return;
            }
            // No local lease from here on; every lease held is registered and the
            // placeholders dropped in one call before anything asks Redis.
            let local_cap = self.leases.cap();
            if self.lease_wanted {
                self.leases.close_local();
            }
            if let Err(e) = shared
                .heartbeat(&self.leases.held(), 0, rate, ceiling)
                .await
            {
                self.leases.set_cap(local_cap);
                self.fall_back(shared, &e);
                return;
            }
            shared.set_up(true);
            *self.fallback.lock().unwrap_or_else(PoisonError::into_inner) = None;
            self.shared_metrics.set_budget(self.budget);
            if first {
                tracing::info!(
                    "Shared budget: Redis answers; admission uses the shared budget ({} replicas alive)",
                    beat.alive
                );
            } else {
                self.shared_metrics.recoveries.inc();
                tracing::info!(
                    "Shared budget: Redis answers again; back to the shared budget ({} replicas alive)",
                    beat.alive
                );
            }
        }
        // While shared, keep the local cap and bucket at this replica's share, ready for
        // the next fallback (and for waiters still queued locally from the last one).
        if let Some(b) = self.budget {
            self.leases.set_cap(shared::policy::share(b, beat.alive));
        }
        self.adopt(shared, &beat);
        if self
            .unpublished
            .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            self.publish();
        }
    }

    /// Whether the grace after an outage is over (starting it on the first call).
    /// `alive`: replicas in Redis now; `expected`: replicas seen alive before the outage.
    fn recovery_grace_over(&self, alive: u32, expected: u32) -> bool {
        let mut since = self
            .recovering_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = tokio::time::Instant::now();
        match *since {
            None => {
                *since = Some(now);
                tracing::info!(
                    "Shared budget: Redis answers again; leases and this replica's share reserved there, back to the shared budget in {} ms once the {expected} replicas last seen have reserved theirs ({alive} so far)",
                    shared::RECOVERY_GRACE.as_millis()
                );
                false
            }
            Some(start) => {
                let over = shared::policy::grace_over(now.duration_since(start), alive, expected);
                if over {
                    *since = None;
                }
                over
            }
        }
    }

    /// Applies the fleet's rate and ceiling when another replica changed them.
    fn adopt(&self, shared: &SharedBudget, beat: &Beat) {
        if beat.version <= shared.version() {
            return;
        }
        shared.set_version(beat.version);
        if beat.origin == shared.replica() {
            return;
        }
        let rate = {
            let mut control = self.lock();
            let before = (
                control.controller.current_rate(),
                control.controller.ceiling(),
            );
            control
                .controller
                .adopt(beat.ceiling, beat.rate, mono_now());
            let after = (
                control.controller.current_rate(),
                control.controller.ceiling(),
            );
            if before == after {
                return;
            }
            if after.1 < before.1 {
                control.ceiling_updated_at = Some(Utc::now());
            }
            let rate = after.0;
            self.bucket.set_rate(self.local_rate(rate), Fill::Empty);
            self.prefetched.clear();
            tracing::info!(
                "Rate limit: adopted the fleet's rate {rate:.2} req/s and ceiling {:.2} req/s (published by replica {})",
                after.1,
                if beat.origin.is_empty() {
                    "-"
                } else {
                    &beat.origin
                }
            );
            rate
        };
        self.metrics
            .rate_limit_requests_per_second
            .with_label_values(&[&self.variant])
            .set(rate);
    }

    /// Publishes this replica's rate and ceiling to the fleet (in the background, bounded).
    fn publish(&self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let (rate, ceiling) = {
            let control = self.lock();
            (
                control.controller.current_rate(),
                control.controller.ceiling(),
            )
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.unpublished
                .store(true, std::sync::atomic::Ordering::Release);
            return;
        };
        let unpublished = Arc::clone(&self.unpublished);
        runtime.spawn(async move {
            if let Err(e) = shared.publish(rate, ceiling).await {
                unpublished.store(true, std::sync::atomic::Ordering::Release);
                tracing::warn!(
                    "Rate limit: could not publish the rate to the fleet ({e}); will retry"
                );
            }
        });
    }

    /// Requests currently queued for admission.
    pub fn queued(&self) -> usize {
        self.admission.queued()
    }

    /// Values for `/health`.
    pub fn snapshot(&self) -> RateLimitSnapshot {
        let control = self.lock();
        let c = &control.controller;
        RateLimitSnapshot {
            current_rate: c.current_rate(),
            ceiling: c.ceiling(),
            hold: c.hold(),
            ceiling_updated_at: control.ceiling_updated_at,
            state_file: self
                .settings
                .state_file
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            restored_from_state: control.restored_from_state,
        }
    }

    /// A request's final upstream status was 2xx.
    pub fn record_success(&self) {
        self.record(Feedback::Success);
    }

    /// The upstream answered 429 of a class that feeds the controller.
    pub fn record_429(&self) {
        self.record(Feedback::TooManyRequests);
    }

    fn record(&self, feedback: Feedback) {
        let mut publish = false;
        let persist = {
            let mut control = self.lock();
            let Some(step) = control.controller.record(feedback, mono_now()) else {
                return;
            };
            if matches!(step.decision, Decision::Decrease { .. }) {
                control.ceiling_updated_at = Some(Utc::now());
            }
            // Swap under the lock so two adjustments can never apply out of order.
            self.apply(&step, &control.controller);
            if step.rate_changed || matches!(step.decision, Decision::Decrease { .. }) {
                publish = true;
            }
            match step.decision {
                Decision::Decrease {
                    new_ceiling, rate, ..
                } => Some(CeilingState {
                    ceiling: new_ceiling,
                    hold: rate,
                    ts: control.ceiling_updated_at,
                }),
                _ => None,
            }
        };
        if publish {
            self.publish();
        }
        if let (Some(snapshot), Some(path)) = (persist, &self.settings.state_file) {
            // Best effort, outside the lock; at most once per window.
            match state::save(path, &snapshot) {
                Ok(()) => tracing::info!(
                    "Rate limit: persisted ceiling {:.2} req/s (hold {:.2}) to {}",
                    snapshot.ceiling,
                    snapshot.hold,
                    path.display()
                ),
                Err(e) => tracing::warn!(
                    "Rate limit: failed to persist ceiling state to {}: {e}",
                    path.display()
                ),
            }
        }
    }

    fn apply(&self, step: &Step, controller: &Controller) {
        match &step.decision {
            Decision::Decrease {
                old_ceiling,
                new_ceiling,
                rate,
                error_ratio,
            } => tracing::warn!(
                "Rate limit: Ceiling updated {old_ceiling:.2} → {new_ceiling:.2} req/s, holding at {rate:.2} req/s (429 rate: {:.2}%)",
                error_ratio * 100.0
            ),
            Decision::Probe {
                rate,
                ceiling,
                clean_windows,
            } => tracing::info!(
                "Rate limit: Probing ceiling at {rate:.2} req/s (estimated ceiling: {ceiling:.2}, clean windows: {clean_windows})"
            ),
            Decision::Converge {
                rate,
                target,
                ceiling,
            } => tracing::info!(
                "Rate limit: Converging to {rate:.2} req/s (target: {target:.2}, ceiling: {ceiling:.2})"
            ),
            Decision::Unchanged => {}
        }
        if let Some(direction) = step.decision.direction() {
            self.metrics
                .rate_limit_adjustments_total
                .with_label_values(&[direction, &self.variant])
                .inc();
        }
        if step.rate_changed {
            let rate = controller.current_rate();
            self.bucket.set_rate(self.local_rate(rate), Fill::Empty);
            self.prefetched.clear();
            self.metrics
                .rate_limit_requests_per_second
                .with_label_values(&[&self.variant])
                .set(rate);
        }
    }

    /// Admin reset (reference §3.6): rate and ceiling to `RATE_LIMIT_INITIAL`, a fresh full
    /// bucket (waiters re-check at once), the state file deleted. Returns the new rate.
    pub fn reset(&self) -> f64 {
        let (rate, ceiling) = {
            let mut control = self.lock();
            control.controller.reset(mono_now());
            control.ceiling_updated_at = None;
            control.restored_from_state = false;
            let rate = control.controller.current_rate();
            self.bucket.set_rate(self.local_rate(rate), Fill::Full);
            self.prefetched.clear();
            (rate, control.controller.ceiling())
        };
        self.publish();
        self.metrics
            .rate_limit_requests_per_second
            .with_label_values(&[&self.variant])
            .set(rate);
        tracing::info!("Rate limiter reset: rate={rate:.1}, ceiling={ceiling:.1}");
        if let Some(path) = &self.settings.state_file
            && let Err(e) = state::remove(path)
        {
            tracing::warn!(
                "Rate limit: failed to delete ceiling state {}: {e}",
                path.display()
            );
        }
        rate
    }
}

fn restore(control: &mut Control, path: &std::path::Path, max_age: Duration) {
    match state::load(path, max_age, Utc::now()) {
        Restore::Missing => tracing::info!(
            "Rate limit: no ceiling state at {}, starting from RATE_LIMIT_MAX",
            path.display()
        ),
        Restore::Ignored(why) => tracing::warn!(
            "Rate limit: ignoring ceiling state {} ({why}), starting from RATE_LIMIT_MAX",
            path.display()
        ),
        Restore::Restored { state, learned_at } => {
            control
                .controller
                .restore(state.ceiling, state.hold, mono_now());
            control.ceiling_updated_at = learned_at;
            control.restored_from_state = true;
            tracing::info!(
                "Rate limit: restored ceiling {:.2} req/s (hold {:.2}) from {}",
                control.controller.ceiling(),
                control.controller.current_rate(),
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests;
