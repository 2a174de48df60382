//! Admissions granted by Redis ahead of use ("prefetched"): with the shared budget, an
//! admission call may also ask for up to [`PREFETCH_MAX`] more, each a slot of the shared
//! rate and (with a concurrency budget) a lease counted in Redis. The next requests of this
//! replica take them without a round trip; a background refill asks for more once half are
//! used. Redis grants them only while the fleet has headroom (at most half the concurrency
//! budget in use with them, at least half the rate bucket's tolerance free:
//! [`super::shared::scripts::ADMIT`]), so under load every admission is one call as before.
//!
//! What that costs, and why it stays bounded:
//! * concurrency: a prefetched lease is a lease in Redis from its grant, so the fleet never
//!   holds more than the budget; an unused one holds a slot for at most [`PREFETCH_TTL`]
//!   (plus the refill task's wake-up), and only one granted while half the budget was free;
//! * rate: a prefetched slot is a slot of the shared GCRA reserved at its grant and used
//!   within [`PREFETCH_TTL`] of it or never, so over any window W the fleet sends at most
//!   what the bucket allows over W + [`PREFETCH_TTL`] (rate × 50 ms more, at most);
//! * a change of the rate (a decrease, a probe, the fleet's rate adopted), a fallback to
//!   local admission and an admin reset drop every prefetched admission.
//!
//! A prefetched admission that is dropped unused gives its lease back to Redis through the
//! lease book's release queue (as a [`Pending`] lease does); it is never counted as an
//! upstream attempt of this replica (`zai_proxy_upstream_leases`) until it is used.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus::{Counter, Gauge};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::leases::{Lease, Pending};

/// Most admissions a replica holds granted ahead of use (and asks for in one call).
pub const PREFETCH_MAX: u32 = 8;
/// A prefetched admission not used within this time after its grant is dropped.
pub const PREFETCH_TTL: Duration = Duration::from_millis(50);

/// How many admissions to ask ahead with the next call: what keeps the pool at
/// [`PREFETCH_MAX`], counting those already asked in calls not answered yet.
pub fn prefetch_want(pooled: u32, asked: u32) -> u32 {
    PREFETCH_MAX.saturating_sub(pooled.saturating_add(asked))
}

/// Whether to refill after taking one: at most half of [`PREFETCH_MAX`] left or asked.
pub fn refill_due(pooled: u32, asked: u32) -> bool {
    pooled.saturating_add(asked) <= PREFETCH_MAX / 2
}

/// One admission granted ahead: its lease in Redis (none without a concurrency budget) and
/// the time it lapses.
#[derive(Debug)]
struct Ticket {
    lease: Option<Pending>,
    until: Instant,
}

/// The admissions this replica holds ahead of use.
#[derive(Debug)]
pub struct Prefetched {
    tickets: Mutex<VecDeque<Ticket>>,
    /// Asked in calls whose answers have not arrived.
    asked: AtomicU32,
    refill: Notify,
    /// Some were added (the refill task then knows when they lapse).
    added: Notify,
    /// `zai_proxy_shared_budget_prefetched{variant}`.
    held: Gauge,
    /// `zai_proxy_shared_budget_prefetched_admissions_total{variant}`.
    used: Counter,
}

/// Admissions asked ahead in one call; [`Prefetched::settle`] takes the answer.
#[derive(Debug)]
pub struct Asked {
    count: u32,
    leases: Vec<Pending>,
}

impl Asked {
    /// How many were asked.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The lease ids asked for (empty without a concurrency budget).
    pub fn lease_ids(&self) -> Vec<super::leases::LeaseId> {
        self.leases.iter().map(Pending::id).collect()
    }
}

impl Prefetched {
    /// An empty pool reporting to these series.
    pub fn new(held: Gauge, used: Counter) -> Self {
        held.set(0.0);
        Prefetched {
            tickets: Mutex::new(VecDeque::new()),
            asked: AtomicU32::new(0),
            refill: Notify::new(),
            added: Notify::new(),
            held,
            used,
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Ticket>> {
        self.tickets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admissions held now (lapsed ones included until the next take or purge).
    pub fn len(&self) -> u32 {
        u32::try_from(self.lock().len()).unwrap_or(u32::MAX)
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next admission held that has not lapsed: `Some(lease)` (`Some(None)` without a
    /// concurrency budget), counted in flight from now; lapsed ones are dropped (their leases
    /// given back). Wakes the refill when half are gone.
    pub fn take(&self) -> Option<Option<Lease>> {
        let now = Instant::now();
        let (ticket, left) = {
            let mut tickets = self.lock();
            let mut found = None;
            while let Some(ticket) = tickets.pop_front() {
                if ticket.until > now {
                    found = Some(ticket);
                    break;
                }
            }
            (found, tickets.len())
        };
        let left = u32::try_from(left).unwrap_or(u32::MAX);
        self.held.set(f64::from(left));
        let ticket = ticket?;
        self.used.inc();
        if refill_due(left, self.asked.load(Ordering::Acquire)) {
            self.refill.notify_one();
        }
        Some(ticket.lease.map(Pending::granted))
    }

    /// Reserves the admissions to ask ahead with the next call ([`prefetch_want`]); with
    /// `leases`, a pending lease for each from `ask_lease`.
    pub fn ask(&self, leases: bool, ask_lease: impl Fn() -> Pending) -> Asked {
        let pooled = self.len();
        let count = match self
            .asked
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |asked| {
                let want = prefetch_want(pooled, asked);
                (want > 0).then_some(asked + want)
            }) {
            Ok(before) => prefetch_want(pooled, before),
            Err(_) => 0,
        };
        let leases = if leases {
            (0..count).map(|_| ask_lease()).collect()
        } else {
            Vec::new()
        };
        Asked { count, leases }
    }

    /// The answer to `asked`: the first `granted` were granted (kept while `keep`, else
    /// given back), the others refused. `granted: None` (the call failed: unknown what Redis
    /// did) gives every asked lease back.
    pub fn settle(&self, asked: Asked, granted: Option<u32>, keep: bool) {
        let Asked { count, mut leases } = asked;
        self.asked.fetch_sub(count, Ordering::AcqRel);
        let Some(granted) = granted else {
            return; // Dropping the pending leases queues their release.
        };
        let granted = granted.min(count);
        let refused = leases.split_off(usize::try_from(granted).unwrap_or(0).min(leases.len()));
        refused.into_iter().for_each(Pending::refused);
        if !keep || granted == 0 {
            return;
        }
        let until = Instant::now() + PREFETCH_TTL;
        let mut leases = leases.into_iter();
        let len = {
            let mut tickets = self.lock();
            for _ in 0..granted {
                tickets.push_back(Ticket {
                    lease: leases.next(),
                    until,
                });
            }
            tickets.len()
        };
        self.held.set(len as f64);
        self.added.notify_one();
    }

    /// Drops every admission held (their leases are given back).
    pub fn clear(&self) {
        let dropped: Vec<Ticket> = self.lock().drain(..).collect();
        self.held.set(0.0);
        drop(dropped);
    }

    /// Drops the lapsed admissions; returns when the next one lapses.
    pub fn purge(&self) -> Option<Instant> {
        let now = Instant::now();
        let (lapsed, next, len) = {
            let mut tickets = self.lock();
            let keep = tickets
                .iter()
                .position(|t| t.until > now)
                .unwrap_or(tickets.len());
            let lapsed: Vec<Ticket> = tickets.drain(..keep).collect();
            (lapsed, tickets.front().map(|t| t.until), tickets.len())
        };
        self.held.set(len as f64);
        drop(lapsed);
        next
    }

    /// Resolves when a refill is due (after a take left half or fewer).
    pub async fn refill_wanted(&self) {
        self.refill.notified().await;
    }

    /// Resolves when admissions were added since the last call.
    pub async fn added(&self) {
        self.added.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::leases::LeaseBook;
    use std::sync::Arc;
    use tokio::sync::mpsc;

    fn pool() -> Prefetched {
        Prefetched::new(
            Gauge::new("held", "held").expect("valid"),
            Counter::new("used", "used").expect("valid"),
        )
    }

    fn book() -> (
        Arc<LeaseBook>,
        mpsc::UnboundedReceiver<super::super::leases::LeaseId>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let gauge = Gauge::new("leases", "leases").expect("valid");
        (Arc::new(LeaseBook::new(20, Some(tx), gauge)), rx)
    }

    #[test]
    fn asks_up_to_the_maximum_counting_calls_not_answered() {
        assert_eq!(prefetch_want(0, 0), PREFETCH_MAX);
        assert_eq!(prefetch_want(3, 2), PREFETCH_MAX - 5);
        assert_eq!(prefetch_want(PREFETCH_MAX, 0), 0);
        assert_eq!(prefetch_want(PREFETCH_MAX + 3, 1), 0);
        assert!(refill_due(PREFETCH_MAX / 2, 0));
        assert!(!refill_due(PREFETCH_MAX / 2, 1));
        assert!(!refill_due(PREFETCH_MAX, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn granted_admissions_are_taken_once_and_lapse() {
        let (book, mut releases) = book();
        let pool = pool();
        let asked = pool.ask(true, || book.ask());
        assert_eq!(asked.count(), PREFETCH_MAX);
        assert_eq!(
            pool.ask(true, || book.ask()).count(),
            0,
            "all asked already"
        );
        let ids = asked.lease_ids();
        pool.settle(asked, Some(3), true);
        assert_eq!(pool.len(), 3);
        // The five refused were never granted: nothing to give back.
        assert!(releases.try_recv().is_err());
        let lease = pool.take().expect("one held").expect("with a lease");
        assert_eq!(lease.id(), ids[0]);
        assert_eq!(book.in_flight(), 1, "counted in flight once used");
        drop(lease);
        assert_eq!(releases.try_recv().ok(), Some(ids[0]));
        tokio::time::advance(PREFETCH_TTL).await;
        assert!(pool.take().is_none(), "lapsed");
        let mut given_back: Vec<_> = std::iter::from_fn(|| releases.try_recv().ok()).collect();
        given_back.sort_unstable();
        assert_eq!(given_back, ids[1..3], "lapsed leases go back to Redis");
        assert_eq!(book.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_call_or_a_fallback_gives_every_lease_back() {
        let (book, mut releases) = book();
        let pool = pool();
        let asked = pool.ask(true, || book.ask());
        let ids = asked.lease_ids();
        pool.settle(asked, None, true);
        let mut back: Vec<_> = std::iter::from_fn(|| releases.try_recv().ok()).collect();
        back.sort_unstable();
        assert_eq!(back, ids, "unknown what Redis did: all released");
        let asked = pool.ask(true, || book.ask());
        let ids = asked.lease_ids();
        pool.settle(asked, Some(2), false);
        assert!(pool.is_empty(), "not kept");
        assert_eq!(
            std::iter::from_fn(|| releases.try_recv().ok()).count(),
            2,
            "granted but not kept: given back ({ids:?})"
        );
        let asked = pool.ask(true, || book.ask());
        pool.settle(asked, Some(4), true);
        pool.clear();
        assert!(pool.is_empty());
        assert_eq!(std::iter::from_fn(|| releases.try_recv().ok()).count(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn purge_drops_only_lapsed_ones_and_says_when_the_next_lapses() {
        let (book, _releases) = book();
        let pool = pool();
        let asked = pool.ask(false, || book.ask());
        assert!(asked.lease_ids().is_empty(), "slots only");
        pool.settle(asked, Some(2), true);
        tokio::time::advance(PREFETCH_TTL / 2).await;
        let asked = pool.ask(false, || book.ask());
        pool.settle(asked, Some(1), true);
        let first = pool.purge().expect("held");
        tokio::time::advance(PREFETCH_TTL / 2).await;
        let second = pool.purge().expect("one left");
        assert!(second > first);
        assert_eq!(pool.len(), 1);
        assert!(matches!(pool.take(), Some(None)), "a slot without a lease");
    }
}
