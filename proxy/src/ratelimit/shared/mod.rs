//! The budget shared by every replica that uses the same API key, kept in Redis
//! (`RATE_LIMIT_REDIS_URL`): concurrency leases for upstream attempts, one GCRA admission
//! bucket, and the learned ceiling. This module is the IO edge: it runs the scripts of
//! [`scripts`] with a bounded timeout each and reports what Redis said; what to do about
//! it (fall back, recover, adopt a ceiling) is decided by the limiter and [`policy`].
//!
//! Nothing here ever waits on Redis longer than [`OP_TIMEOUT`]; a failed or slow call is an
//! error the caller turns into a fallback, never a failed request.

pub mod metrics;
pub mod policy;
pub mod scripts;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};

use super::leases::LeaseId;
use crate::config::ApiKey;
use crate::error::ProxyError;
pub use metrics::SharedMetrics;
pub use policy::Keys;

/// Longest wait for one Redis call on the request path or in the heartbeat.
pub const OP_TIMEOUT: Duration = Duration::from_millis(250);
/// Heartbeat period: liveness, lease renewal, the shared limit read back, recovery probe.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// A replica without a heartbeat for this long is no longer counted alive.
pub const REPLICA_TTL: Duration = Duration::from_secs(3);
/// A lease not renewed for this long expires (a crashed replica's leases go away).
pub const LEASE_TTL: Duration = Duration::from_secs(5);
/// After an outage, how long a replica keeps admitting with its share while its heartbeats
/// already succeed: every replica's next heartbeat re-registers the leases it took locally,
/// so none can fill the shared budget while another's local leases are not counted yet.
pub const RECOVERY_GRACE: Duration = Duration::from_millis(1500);
/// How often the head of a queue asks again when the concurrency budget is full and no
/// lease of its own replica came back meanwhile.
pub const FULL_POLL: Duration = Duration::from_millis(4);

/// At most this many admission calls of a replica wait for their answers outside its fair
/// queue, each sent while the one before it was unanswered (see [`policy::room_to_overlap`]):
/// a request that arrives while the head's call is out does not wait for that round trip.
pub const MAX_OVERLAPPING_CALLS: u32 = 4;

/// What an admission call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Granted: go upstream after this wait (the GCRA slot); the lease, if asked, is held.
    Granted {
        /// Time until the reserved slot.
        wait: Duration,
        /// Leases in use fleet-wide with this one (0 when no lease was asked).
        in_use: u32,
        /// Admissions granted ahead of use with this one, each usable at once.
        ahead: u32,
    },
    /// The concurrency budget is full (this many leases in use); nothing was taken.
    Full {
        /// Leases in use fleet-wide.
        in_use: u32,
    },
}

/// Admissions asked ahead of use with an admission call (see [`super::prefetch`]).
#[derive(Debug, Clone, Copy)]
pub enum Ahead<'a> {
    /// None.
    Nothing,
    /// This many slots of the rate, without leases (no concurrency budget).
    Slots(u32),
    /// A slot and a lease for each of these ids (with a concurrency budget).
    Leases(&'a [LeaseId]),
}

impl<'a> Ahead<'a> {
    /// What to ask ahead: a lease and a slot for each of `ids` when attempts take a lease,
    /// else `count` slots.
    pub fn asked(leases: bool, ids: &'a [LeaseId], count: u32) -> Self {
        if leases {
            Ahead::Leases(ids)
        } else {
            Ahead::Slots(count)
        }
    }
}

/// What a heartbeat read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Beat {
    /// Replicas with a heartbeat in the last [`REPLICA_TTL`] (this one included).
    pub alive: u32,
    /// The fleet's admission rate, req/s.
    pub rate: f64,
    /// The learned ceiling, req/s.
    pub ceiling: f64,
    /// Bumped on every published change.
    pub version: i64,
    /// Who published the last change (empty when seeded).
    pub origin: String,
}

/// The Redis side of the shared budget.
pub struct SharedBudget {
    client: Client,
    connection: OnceLock<ConnectionManager>,
    keys: Keys,
    replica: String,
    budget: Option<u32>,
    admit: Script,
    heartbeat: Script,
    publish: Script,
    up: AtomicBool,
    alive: AtomicU32,
    /// Placeholder leases this replica may still hold in Redis (see
    /// [`scripts::HEARTBEAT`]).
    reserved: AtomicU32,
    version: AtomicI64,
    /// Its metrics.
    pub metrics: SharedMetrics,
}

impl std::fmt::Debug for SharedBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBudget")
            .field("replica", &self.replica)
            .field("budget", &self.budget)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

fn redis_error(e: &redis::RedisError) -> ProxyError {
    // RedisError's text names the server address at most, never the URL's password.
    ProxyError::Redis(e.to_string())
}

impl SharedBudget {
    /// A client for `url` (not connected yet: the heartbeat task connects). `api_key` only
    /// names the keys (a fingerprint, never the key itself).
    pub fn new(
        url: &ApiKey,
        api_key: &ApiKey,
        budget: Option<u32>,
        metrics: SharedMetrics,
    ) -> Result<Self, ProxyError> {
        let client = Client::open(url.expose())
            .map_err(|_| ProxyError::Redis("RATE_LIMIT_REDIS_URL is not usable".into()))?;
        let replica = format!("{}-{:08x}", std::process::id(), rand::random::<u32>());
        metrics.set_budget(budget);
        Ok(SharedBudget {
            client,
            connection: OnceLock::new(),
            keys: Keys::for_key(api_key),
            replica,
            budget,
            admit: Script::new(scripts::ADMIT),
            heartbeat: Script::new(scripts::HEARTBEAT),
            publish: Script::new(scripts::PUBLISH),
            up: AtomicBool::new(false),
            alive: AtomicU32::new(1),
            reserved: AtomicU32::new(0),
            version: AtomicI64::new(-1),
            metrics,
        })
    }

    /// This replica's id in Redis.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The key's concurrency budget (`MAX_UPSTREAM_CONCURRENCY`), if any.
    pub fn budget(&self) -> Option<u32> {
        self.budget
    }

    /// Whether admission goes through Redis now (false: this replica's share, locally).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Marks Redis usable or not; returns whether that changed anything.
    pub fn set_up(&self, up: bool) -> bool {
        let was = self.up.swap(up, Ordering::AcqRel);
        self.metrics.set_up(up);
        was != up
    }

    /// Replicas last seen alive (1 before the first heartbeat).
    pub fn alive(&self) -> u32 {
        self.alive.load(Ordering::Acquire).max(1)
    }

    /// The last shared-limit version this replica applied or published.
    pub fn version(&self) -> i64 {
        self.version.load(Ordering::Acquire)
    }

    /// Remembers a version as applied.
    pub fn set_version(&self, version: i64) {
        self.version.fetch_max(version, Ordering::AcqRel);
    }

    fn member(&self, id: LeaseId) -> String {
        format!("{}:{}", self.replica, id.0)
    }

    /// The connection, creating the manager on first use (lazily connected: never blocks).
    fn connection(&self) -> Result<ConnectionManager, ProxyError> {
        if let Some(c) = self.connection.get() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .map_err(|e| redis_error(&e))?;
        Ok(self.connection.get_or_init(|| manager).clone())
    }

    async fn bounded<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, ProxyError> {
        let result = match tokio::time::timeout(OP_TIMEOUT, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(redis_error(&e)),
            Err(_) => Err(ProxyError::Redis(format!(
                "no answer within {} ms",
                OP_TIMEOUT.as_millis()
            ))),
        };
        if result.is_err() {
            self.metrics.count_error(op);
        }
        result
    }

    /// One admission: a lease `id` when `lease` is given and a budget is set, and a slot of
    /// the shared bucket (at `rate` until the fleet has published one). Nothing is asked
    /// ahead (see [`SharedBudget::admit_ahead`]).
    pub async fn admit(&self, lease: Option<LeaseId>, rate: f64) -> Result<Admit, ProxyError> {
        self.call_admit(true, lease, Ahead::Nothing, rate).await
    }

    /// As [`SharedBudget::admit`], asking for `ahead` more admissions granted ahead of use
    /// in the same call, which Redis grants only while the fleet has headroom
    /// ([`scripts::ADMIT`]); [`Admit::Granted::ahead`] says how many (the first of the
    /// lease ids given, when leases are asked).
    pub async fn admit_ahead(
        &self,
        lease: Option<LeaseId>,
        ahead: Ahead<'_>,
        rate: f64,
    ) -> Result<Admit, ProxyError> {
        self.call_admit(true, lease, ahead, rate).await
    }

    /// Only admissions ahead of use (the refill of [`super::prefetch`]): how many Redis
    /// granted (possibly none).
    pub async fn prefetch(&self, ahead: Ahead<'_>, rate: f64) -> Result<u32, ProxyError> {
        match self.call_admit(false, None, ahead, rate).await? {
            Admit::Granted { ahead, .. } => Ok(ahead),
            Admit::Full { .. } => Ok(0),
        }
    }

    async fn call_admit(
        &self,
        required: bool,
        lease: Option<LeaseId>,
        ahead: Ahead<'_>,
        rate: f64,
    ) -> Result<Admit, ProxyError> {
        let mut connection = self.connection()?;
        let leases_asked = match ahead {
            Ahead::Leases(_) => true,
            Ahead::Nothing | Ahead::Slots(_) => lease.is_some(),
        };
        let limit = match (leases_asked, self.budget) {
            (true, Some(budget)) => budget,
            _ => 0,
        };
        let member = lease.map_or_else(String::new, |id| self.member(id));
        let mut invocation = self.admit.prepare_invoke();
        invocation
            .key(&self.keys.leases)
            .key(&self.keys.tat)
            .key(&self.keys.limit)
            .arg(member)
            .arg(duration_ms(LEASE_TTL))
            .arg(limit)
            .arg(rate)
            .arg(u8::from(required));
        match ahead {
            Ahead::Nothing => {
                invocation.arg(0);
            }
            Ahead::Slots(n) => {
                invocation.arg(if limit > 0 { 0 } else { n });
            }
            Ahead::Leases(ids) => {
                if limit > 0 {
                    invocation.arg(ids.len());
                    for id in ids {
                        invocation.arg(self.member(*id));
                    }
                } else {
                    invocation.arg(0);
                }
            }
        }
        let (granted, wait, in_use, ahead): (i64, i64, i64, i64) = self
            .bounded("admit", invocation.invoke_async(&mut connection))
            .await?;
        Ok(policy::admit_reply(granted, wait, in_use, ahead))
    }

    /// Removes released leases from Redis.
    pub async fn release(&self, ids: &[LeaseId]) -> Result<(), ProxyError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection()?;
        let members: Vec<String> = ids.iter().map(|id| self.member(*id)).collect();
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(&self.keys.leases).arg(members);
        self.bounded("release", cmd.query_async::<i64>(&mut connection))
            .await
            .map(|_| ())
    }

    /// One heartbeat (see [`scripts::HEARTBEAT`]): every lease in `held` is registered
    /// with a fresh deadline, and `reserve` placeholder leases are held for this replica
    /// (0 drops the ones a previous heartbeat reserved).
    ///
    /// While admission is local (not [`SharedBudget::is_up`]) the count of replicas alive
    /// only grows: a Redis that restarted empty sees the replicas again one heartbeat at a
    /// time, and a share computed from that partial count would be too large.
    pub async fn heartbeat(
        &self,
        held: &[LeaseId],
        reserve: u32,
        seed_rate: f64,
        seed_ceiling: f64,
    ) -> Result<Beat, ProxyError> {
        let drop_up_to = self.reserved.load(Ordering::Acquire).max(reserve);
        let mut connection = self.connection()?;
        let mut invocation = self.heartbeat.prepare_invoke();
        invocation
            .key(&self.keys.replicas)
            .key(&self.keys.leases)
            .key(&self.keys.limit)
            .arg(&self.replica)
            .arg(duration_ms(REPLICA_TTL))
            .arg(duration_ms(LEASE_TTL))
            .arg(seed_rate)
            .arg(seed_ceiling)
            .arg(reserve)
            .arg(drop_up_to);
        for id in held {
            invocation.arg(self.member(*id));
        }
        let reply = self
            .bounded("heartbeat", invocation.invoke_async(&mut connection))
            .await;
        // Unknown whether a failed call took effect: drop up to the larger count next time.
        self.reserved.store(
            if reply.is_ok() { reserve } else { drop_up_to },
            Ordering::Release,
        );
        let reply: (i64, String, String, String, String) = reply?;
        let beat = policy::beat_reply(reply)?;
        if self.is_up() {
            self.alive.store(beat.alive, Ordering::Release);
        } else {
            self.alive.fetch_max(beat.alive, Ordering::AcqRel);
        }
        self.metrics.set_replicas(self.alive());
        Ok(beat)
    }

    /// Publishes a new rate and ceiling; returns the new version.
    pub async fn publish(&self, rate: f64, ceiling: f64) -> Result<i64, ProxyError> {
        let mut connection = self.connection()?;
        let mut invocation = self.publish.prepare_invoke();
        invocation
            .key(&self.keys.limit)
            .arg(rate)
            .arg(ceiling)
            .arg(&self.replica);
        let version: i64 = self
            .bounded("publish", invocation.invoke_async(&mut connection))
            .await?;
        self.set_version(version);
        Ok(version)
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A shared handle.
pub type Shared = Arc<SharedBudget>;
