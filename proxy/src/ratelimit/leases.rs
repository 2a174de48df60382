//! Upstream concurrency leases of this process: one per upstream attempt, held from
//! admission until the attempt's response is finished (a stream for its whole life) or
//! dropped, then given back.
//!
//! The book counts every lease this process holds, whoever granted it: the local cap
//! (`MAX_UPSTREAM_CONCURRENCY` without Redis, this replica's share while Redis is down) or
//! the shared budget in Redis. With Redis, the book also remembers the ids it holds (the
//! heartbeat renews their deadlines, and re-registers them after an outage) and queues every
//! release for the background task that removes it from Redis. Dropping a [`Lease`] never
//! blocks and never does IO.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::Gauge;
use tokio::sync::{Notify, mpsc};

/// Identifies one lease of this process (unique per process; Redis members prefix it with
/// the replica id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub u64);

/// No local cap.
pub const UNCAPPED: u32 = u32::MAX;

/// What the book tracks for Redis.
#[derive(Debug)]
struct Tracked {
    held: Mutex<HashSet<LeaseId>>,
    releases: mpsc::UnboundedSender<LeaseId>,
}

/// The leases of this process.
#[derive(Debug)]
pub struct LeaseBook {
    cap: AtomicU32,
    in_flight: AtomicU32,
    released: Notify,
    next_id: AtomicU64,
    tracked: Option<Tracked>,
    gauge: Gauge,
}

/// One upstream attempt's lease; given back on drop.
#[derive(Debug)]
pub struct Lease {
    book: Arc<LeaseBook>,
    id: LeaseId,
}

impl Lease {
    /// The lease's id.
    pub fn id(&self) -> LeaseId {
        self.id
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.book.give_back(self.id);
    }
}

/// A lease asked of Redis whose answer has not arrived: if it is dropped (the client went
/// away mid-call), the id is queued for release so that a grant Redis made anyway does not
/// linger until its deadline.
#[derive(Debug)]
pub struct Pending {
    book: Arc<LeaseBook>,
    id: LeaseId,
    armed: bool,
}

impl Pending {
    /// The id asked for.
    pub fn id(&self) -> LeaseId {
        self.id
    }

    /// Redis granted it: the lease, counted in flight whatever the local cap says.
    pub fn granted(mut self) -> Lease {
        self.armed = false;
        self.book.count_in(self.id);
        Lease {
            book: Arc::clone(&self.book),
            id: self.id,
        }
    }

    /// Redis refused it: nothing to give back.
    pub fn refused(mut self) {
        self.armed = false;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.armed
            && let Some(tracked) = &self.book.tracked
        {
            let _ = tracked.releases.send(self.id);
        }
    }
}

impl LeaseBook {
    /// A book with a local `cap` ([`UNCAPPED`] for none). With `releases`, ids are tracked
    /// for Redis and every release is sent there.
    pub fn new(cap: u32, releases: Option<mpsc::UnboundedSender<LeaseId>>, gauge: Gauge) -> Self {
        gauge.set(0.0);
        LeaseBook {
            cap: AtomicU32::new(cap),
            in_flight: AtomicU32::new(0),
            released: Notify::new(),
            next_id: AtomicU64::new(1),
            tracked: releases.map(|releases| Tracked {
                held: Mutex::new(HashSet::new()),
                releases,
            }),
            gauge,
        }
    }

    /// Leases held now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The local cap in force.
    pub fn cap(&self) -> u32 {
        self.cap.load(Ordering::Acquire)
    }

    /// Changes the local cap; waiters re-check at once.
    pub fn set_cap(&self, cap: u32) {
        self.cap.store(cap, Ordering::Release);
        self.released.notify_waiters();
    }

    /// Stops local leases (cap 0) atomically with respect to [`LeaseBook::try_take`]: once
    /// this returns, [`LeaseBook::held`] lists every lease taken locally. Waiters stay
    /// queued until the next [`LeaseBook::set_cap`].
    pub fn close_local(&self) {
        match &self.tracked {
            Some(t) => {
                let _held = t.held.lock().unwrap_or_else(PoisonError::into_inner);
                self.cap.store(0, Ordering::Release);
            }
            None => self.cap.store(0, Ordering::Release),
        }
    }

    /// The ids held now (for the heartbeat).
    pub fn held(&self) -> Vec<LeaseId> {
        self.tracked.as_ref().map_or_else(Vec::new, |t| {
            let mut ids: Vec<_> = t
                .held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .copied()
                .collect();
            ids.sort_unstable();
            ids
        })
    }

    /// A fresh id for a lease asked of Redis.
    pub fn ask(self: &Arc<Self>) -> Pending {
        Pending {
            book: Arc::clone(self),
            id: LeaseId(self.next_id.fetch_add(1, Ordering::Relaxed)),
            armed: true,
        }
    }

    /// A lease under the local cap, or `None` when the cap is reached. With tracking, the
    /// cap is read and the id recorded under the lock of the held ids, so that after
    /// [`LeaseBook::close_local`] returns no local lease can appear that [`LeaseBook::held`]
    /// does not list.
    pub fn try_take(self: &Arc<Self>) -> Option<Lease> {
        let mut held = self
            .tracked
            .as_ref()
            .map(|t| t.held.lock().unwrap_or_else(PoisonError::into_inner));
        let cap = self.cap();
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            });
        if taken.is_err() {
            return None;
        }
        let id = LeaseId(self.next_id.fetch_add(1, Ordering::Relaxed));
        if let Some(held) = held.as_mut() {
            held.insert(id);
        }
        drop(held);
        self.publish();
        Some(Lease {
            book: Arc::clone(self),
            id,
        })
    }

    /// Waits for a lease under the local cap. Cancel-safe.
    pub async fn take(self: &Arc<Self>) -> Lease {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(lease) = self.try_take() {
                return lease;
            }
            released.await;
        }
    }

    /// Waits for a lease under the local cap while `keep_waiting()` holds (checked again
    /// on every release and cap change); `None` once it no longer does. Cancel-safe.
    pub async fn take_while(self: &Arc<Self>, keep_waiting: impl Fn() -> bool) -> Option<Lease> {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !keep_waiting() {
                return None;
            }
            if let Some(lease) = self.try_take() {
                return Some(lease);
            }
            released.await;
        }
    }

    /// Waits until a lease of this process is given back (or the cap changes), at most
    /// `limit`.
    pub async fn wait_release(&self, limit: std::time::Duration) {
        let _ = tokio::time::timeout(limit, self.released.notified()).await;
    }

    fn count_in(&self, id: LeaseId) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.track(id);
        self.publish();
    }

    fn track(&self, id: LeaseId) {
        if let Some(t) = &self.tracked {
            t.held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id);
        }
    }

    fn give_back(&self, id: LeaseId) {
        if let Some(t) = &self.tracked {
            t.held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            let _ = t.releases.send(id);
        }
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.publish();
        self.released.notify_waiters();
    }

    fn publish(&self) {
        self.gauge.set(f64::from(self.in_flight()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn gauge() -> Gauge {
        Gauge::new("leases_test", "test").expect("gauge")
    }

    #[test]
    fn cap_bounds_and_drop_gives_back() {
        let book = Arc::new(LeaseBook::new(2, None, gauge()));
        let a = book.try_take().expect("first");
        let b = book.try_take().expect("second");
        assert!(book.try_take().is_none());
        assert_ne!(a.id(), b.id());
        drop(a);
        assert_eq!(book.in_flight(), 1);
        assert!(book.try_take().is_some());
        assert_eq!(book.in_flight(), 1, "the temporary lease was given back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_is_woken_by_a_release_and_by_a_larger_cap() {
        let book = Arc::new(LeaseBook::new(1, None, gauge()));
        let held = book.try_take().expect("first");
        let waiter = tokio::spawn({
            let book = Arc::clone(&book);
            async move { book.take().await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished());
        drop(held);
        let lease = waiter.await.expect("no panic");
        let waiter = tokio::spawn({
            let book = Arc::clone(&book);
            async move { book.take().await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished());
        book.set_cap(2);
        let second = waiter.await.expect("no panic");
        assert_eq!(book.in_flight(), 2);
        drop((lease, second));
        assert_eq!(book.in_flight(), 0);
    }

    #[test]
    fn tracked_ids_are_renewed_and_released_through_the_queue() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let book = Arc::new(LeaseBook::new(UNCAPPED, Some(tx), gauge()));
        let local = book.try_take().expect("uncapped");
        let granted = book.ask().granted();
        assert_eq!(book.held(), vec![local.id(), granted.id()]);
        assert_eq!(book.in_flight(), 2);
        let refused = book.ask();
        let refused_id = refused.id();
        refused.refused();
        let abandoned = book.ask();
        let abandoned_id = abandoned.id();
        drop(abandoned);
        drop(local);
        let mut released = Vec::new();
        while let Ok(id) = rx.try_recv() {
            released.push(id);
        }
        assert!(
            released.contains(&abandoned_id),
            "an abandoned ask is released"
        );
        assert!(!released.contains(&refused_id));
        assert_eq!(book.held(), vec![granted.id()]);
        assert_eq!(book.in_flight(), 1);
    }
}
