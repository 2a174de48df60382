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
//!   (plus the refill task's wake-up, and a refill call in flight: at most the 250 ms call
//!   timeout), and only one granted while half the budget was free;
//! * rate: a prefetched slot is a slot of the shared GCRA reserved at its grant and used
//!   within [`PREFETCH_TTL`] of it or never, so over any window W the fleet sends at most
//!   what the bucket allows over W + [`PREFETCH_TTL`] (rate × 50 ms more, at most);
//! * a change of the rate (a decrease, a probe, the fleet's rate adopted), a fallback to
//!   local admission and an admin reset drop every prefetched admission, and any granted
//!   to a call still out when they happen ([`Prefetched::clear`] bumps a generation);
//! * a request cancelled mid-call drops its [`Asked`], which gives back its place in the
//!   count of those asked, so prefetching never stalls on cancelled calls.
//!
//! A prefetched admission that is dropped unused gives its lease back to Redis through the
//! lease book's release queue (as a [`Pending`] lease does); it is never counted as an
//! upstream attempt of this replica (`zai_proxy_upstream_leases`) until it is used.

use std::collections::VecDeque;
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
    pool: Mutex<Pool>,
    refill: Notify,
    /// Some were added (the refill task then knows when they lapse).
    added: Notify,
    /// `zai_proxy_shared_budget_prefetched{variant}`.
    held: Gauge,
    /// `zai_proxy_shared_budget_prefetched_admissions_total{variant}`.
    used: Counter,
}

/// What one lock guards, so that "held", "asked" and "cleared since" are read together.
#[derive(Debug, Default)]
struct Pool {
    tickets: VecDeque<Ticket>,
    /// Asked in calls whose answers have not arrived (or been given up on).
    asked: u32,
    /// Bumped by every [`Prefetched::clear`]: an answer to a call asked before it is not kept.
    generation: u64,
}

impl Pool {
    /// Admissions held (lapsed ones included).
    fn held(&self) -> u32 {
        u32::try_from(self.tickets.len()).unwrap_or(u32::MAX)
    }
}

/// Admissions asked ahead in one call; [`Prefetched::settle`] takes the answer. Dropped
/// without an answer (the request was cancelled mid-call), it gives back what it reserved:
/// its place in the count of those asked, and its pending leases (queued for release, in
/// case Redis granted them).
#[derive(Debug)]
pub struct Asked<'a> {
    pool: &'a Prefetched,
    count: u32,
    leases: Vec<Pending>,
    generation: u64,
}

impl Asked<'_> {
    /// How many were asked.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The lease ids asked for (empty without a concurrency budget).
    pub fn lease_ids(&self) -> Vec<super::leases::LeaseId> {
        self.leases.iter().map(Pending::id).collect()
    }
}

impl Drop for Asked<'_> {
    fn drop(&mut self) {
        if self.count > 0 {
            let mut pool = self.pool.lock();
            pool.asked = pool.asked.saturating_sub(self.count);
        }
    }
}

impl Prefetched {
    /// An empty pool reporting to these series.
    pub fn new(held: Gauge, used: Counter) -> Self {
        held.set(0.0);
        Prefetched {
            pool: Mutex::new(Pool::default()),
            refill: Notify::new(),
            added: Notify::new(),
            held,
            used,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admissions held now (lapsed ones included until the next take or purge).
    pub fn len(&self) -> u32 {
        self.lock().held()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Admissions asked in calls not answered yet.
    pub fn asked(&self) -> u32 {
        self.lock().asked
    }

    /// The next admission held that has not lapsed: `Some(lease)` (`Some(None)` without a
    /// concurrency budget), counted in flight from now; lapsed ones are dropped (their leases
    /// given back). Wakes the refill when half are gone.
    pub fn take(&self) -> Option<Option<Lease>> {
        let now = Instant::now();
        let mut lapsed = Vec::new();
        let (ticket, left, due) = {
            let mut pool = self.lock();
            let mut found = None;
            while let Some(ticket) = pool.tickets.pop_front() {
                if ticket.until > now {
                    found = Some(ticket);
                    break;
                }
                lapsed.push(ticket);
            }
            let left = pool.held();
            (found, left, refill_due(left, pool.asked))
        };
        drop(lapsed);
        self.held.set(f64::from(left));
        let ticket = ticket?;
        self.used.inc();
        if due {
            self.refill.notify_one();
        }
        Some(ticket.lease.map(Pending::granted))
    }

    /// Reserves the admissions to ask ahead with the next call ([`prefetch_want`], read and
    /// reserved under one lock, so that the pool never holds more than [`PREFETCH_MAX`]
    /// with those asked); with `leases`, a pending lease for each from `ask_lease`.
    pub fn ask(&self, leases: bool, ask_lease: impl Fn() -> Pending) -> Asked<'_> {
        let (count, generation) = {
            let mut pool = self.lock();
            let count = prefetch_want(pool.held(), pool.asked);
            pool.asked += count;
            (count, pool.generation)
        };
        let leases = if leases {
            (0..count).map(|_| ask_lease()).collect()
        } else {
            Vec::new()
        };
        Asked {
            pool: self,
            count,
            leases,
            generation,
        }
    }

    /// The answer to `asked`: the first `granted` were granted, the others refused. The
    /// granted ones are kept while `keep` and when nothing was cleared since the call was
    /// asked, else given back. `granted: None` (the call failed: unknown what Redis did)
    /// gives every asked lease back.
    pub fn settle(&self, mut asked: Asked<'_>, granted: Option<u32>, keep: bool) {
        let count = std::mem::take(&mut asked.count);
        let mut leases = std::mem::take(&mut asked.leases);
        let generation = asked.generation;
        drop(asked);
        // After a failed call every asked lease is dropped below, which queues its release.
        let granted = match granted {
            Some(granted) => {
                let granted = granted.min(count);
                // Never granted: nothing to give back.
                let at = usize::try_from(granted).unwrap_or(0).min(leases.len());
                leases.split_off(at).into_iter().for_each(Pending::refused);
                granted
            }
            None => 0,
        };
        let (kept, len) = {
            let mut pool = self.lock();
            pool.asked = pool.asked.saturating_sub(count);
            let kept = keep && granted > 0 && pool.generation == generation;
            if kept {
                let until = Instant::now() + PREFETCH_TTL;
                let mut leases = leases.drain(..);
                for _ in 0..granted {
                    pool.tickets.push_back(Ticket {
                        lease: leases.next(),
                        until,
                    });
                }
            }
            (kept, pool.tickets.len())
        };
        // Leases not kept (not wanted any more, or cleared meanwhile) go back on drop.
        drop(leases);
        self.held.set(len as f64);
        if kept {
            self.added.notify_one();
        }
    }

    /// Drops every admission held (their leases are given back), and any granted to a call
    /// asked before now whose answer has not arrived.
    pub fn clear(&self) {
        let dropped: Vec<Ticket> = {
            let mut pool = self.lock();
            pool.generation += 1;
            pool.tickets.drain(..).collect()
        };
        self.held.set(0.0);
        drop(dropped);
    }

    /// Drops the lapsed admissions; returns when the next one lapses.
    pub fn purge(&self) -> Option<Instant> {
        let now = Instant::now();
        let (lapsed, next, len) = {
            let mut pool = self.lock();
            let keep = pool
                .tickets
                .iter()
                .position(|t| t.until > now)
                .unwrap_or(pool.tickets.len());
            let lapsed: Vec<Ticket> = pool.tickets.drain(..keep).collect();
            (
                lapsed,
                pool.tickets.front().map(|t| t.until),
                pool.tickets.len(),
            )
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
    use crate::ratelimit::leases::{LeaseBook, LeaseId};
    use std::sync::Arc;
    use tokio::sync::mpsc;

    fn pool() -> Prefetched {
        Prefetched::new(
            Gauge::new("held", "held").expect("valid"),
            Counter::new("used", "used").expect("valid"),
        )
    }

    fn book() -> (Arc<LeaseBook>, mpsc::UnboundedReceiver<LeaseId>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let gauge = Gauge::new("leases", "leases").expect("valid");
        (Arc::new(LeaseBook::new(20, Some(tx), gauge)), rx)
    }

    /// The lease ids queued for release so far, sorted.
    fn released(releases: &mut mpsc::UnboundedReceiver<LeaseId>) -> Vec<LeaseId> {
        let mut ids: Vec<_> = std::iter::from_fn(|| releases.try_recv().ok()).collect();
        ids.sort_unstable();
        ids
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
        assert_eq!(
            released(&mut releases),
            ids[1..3],
            "lapsed leases go back to Redis"
        );
        assert_eq!(book.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_call_or_a_fallback_gives_every_lease_back() {
        let (book, mut releases) = book();
        let pool = pool();
        let asked = pool.ask(true, || book.ask());
        let ids = asked.lease_ids();
        pool.settle(asked, None, true);
        assert_eq!(
            released(&mut releases),
            ids,
            "unknown what Redis did: all released"
        );
        let asked = pool.ask(true, || book.ask());
        let ids = asked.lease_ids();
        pool.settle(asked, Some(2), false);
        assert!(pool.is_empty(), "not kept");
        assert_eq!(
            released(&mut releases),
            ids[..2],
            "granted but not kept: given back"
        );
        let asked = pool.ask(true, || book.ask());
        pool.settle(asked, Some(4), true);
        pool.clear();
        assert!(pool.is_empty());
        assert_eq!(released(&mut releases).len(), 4);
    }

    #[test]
    fn a_call_cancelled_before_its_answer_gives_its_place_back() {
        let (book, mut releases) = book();
        let pool = pool();
        let asked = pool.ask(true, || book.ask());
        let ids = asked.lease_ids();
        assert_eq!(pool.asked(), PREFETCH_MAX);
        // The request's future is dropped mid-call: no answer will ever come.
        drop(asked);
        assert_eq!(
            pool.asked(),
            0,
            "prefetching does not stall on a cancelled call"
        );
        assert_eq!(
            released(&mut releases),
            ids,
            "Redis may have granted them: released"
        );
        assert_eq!(pool.ask(true, || book.ask()).count(), PREFETCH_MAX);
    }

    #[test]
    fn an_answer_to_a_call_asked_before_a_clear_is_not_kept() {
        let (book, mut releases) = book();
        let pool = pool();
        let asked = pool.ask(true, || book.ask());
        let ids = asked.lease_ids();
        // A rate change (or a fallback) while the call is out.
        pool.clear();
        pool.settle(asked, Some(3), true);
        assert!(pool.is_empty(), "granted at the old rate: not kept");
        assert_eq!(
            released(&mut releases),
            ids[..3],
            "the three granted go back; the refused need not"
        );
        let asked = pool.ask(true, || book.ask());
        pool.settle(asked, Some(2), true);
        assert_eq!(pool.len(), 2, "a call asked after the clear is kept");
    }

    #[test]
    fn the_pool_and_the_calls_out_never_hold_more_than_the_maximum() {
        let (book, _releases) = book();
        let pool = pool();
        let first = pool.ask(true, || book.ask());
        let second = pool.ask(true, || book.ask());
        assert_eq!((first.count(), second.count()), (PREFETCH_MAX, 0));
        pool.settle(first, Some(PREFETCH_MAX), true);
        assert_eq!(pool.ask(true, || book.ask()).count(), 0, "the pool is full");
        pool.settle(second, Some(0), true);
        assert_eq!(pool.len(), PREFETCH_MAX);
        assert_eq!(pool.asked(), 0);
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
