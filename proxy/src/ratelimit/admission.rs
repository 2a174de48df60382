//! Async fair admission: requests wait in the [`FairQueue`] until it is their turn, then the
//! head (only the head) waits for a token of the global bucket.
//!
//! Every queued request owns a [`Notify`]. When the head is admitted or leaves, the new head
//! is woken. Dropping an `admit` future (the client went away) removes its request from the
//! queue and, if it was the head, hands the turn on; nothing is left behind.
//!
//! A head may also end its turn early ([`Turn::Then`]): it has started what admits it (a
//! call already sent to Redis) and finishes it outside the queue while the next head takes
//! its turn.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::fair::{FairQueue, Ticket};

#[derive(Debug, Default)]
struct Waiters {
    queue: FairQueue,
    wakers: HashMap<Ticket, Arc<Notify>>,
}

impl Waiters {
    fn wake_head(&self) {
        if let Some(waker) = self.queue.head().and_then(|t| self.wakers.get(&t)) {
            waker.notify_one();
        }
    }
}

/// What the head got in its turn.
#[derive(Debug)]
pub enum Turn<T, F> {
    /// Admitted.
    Done(T),
    /// Started: the rest (`F`) runs after the turn has passed to the next head.
    Then(F),
}

/// The fair queue in front of the global bucket.
#[derive(Debug, Default)]
pub struct FairAdmission {
    waiters: Mutex<Waiters>,
}

/// Removes an abandoned request from the queue.
struct Leave<'a> {
    admission: &'a FairAdmission,
    ticket: Ticket,
    admitted: bool,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        if self.admitted {
            return;
        }
        let mut w = self.admission.lock();
        w.queue.remove(self.ticket);
        w.wakers.remove(&self.ticket);
        w.wake_head();
    }
}

impl FairAdmission {
    fn lock(&self) -> MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of requests currently queued (including the head).
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// Queues a request of source `bucket` and returns once it is admitted, with what
    /// `token` returned. `token` is called once, when the request is at the head, and must
    /// resolve when the request may go (a token of the global bucket, a concurrency lease);
    /// it must be cancel-safe.
    pub async fn admit<F, Fut, T>(&self, bucket: usize, token: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.admit_then(bucket, || async {
            Turn::<T, std::future::Pending<T>>::Done(token().await)
        })
        .await
    }

    /// As [`FairAdmission::admit`], where the head's `token` may end its turn before it is
    /// admitted ([`Turn::Then`]): the turn passes on at once and the rest is awaited after.
    pub async fn admit_then<F, Fut, G, T>(&self, bucket: usize, token: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Turn<T, G>>,
        G: Future<Output = T>,
    {
        let waker = Arc::new(Notify::new());
        let ticket = {
            let mut w = self.lock();
            let ticket = w.queue.push(bucket);
            w.wakers.insert(ticket, waker.clone());
            ticket
        };
        let mut leave = Leave {
            admission: self,
            ticket,
            admitted: false,
        };
        loop {
            if self.lock().queue.head() == Some(ticket) {
                break;
            }
            // notify_one stores a permit, so a wake between the check and here is not lost.
            waker.notified().await;
        }
        // Only the head reaches this point, and the head only changes when it is admitted or
        // leaves, so this request stays the head while it waits for the token.
        let granted = token().await;
        {
            let mut w = self.lock();
            let admitted = w.queue.admit_head();
            debug_assert_eq!(admitted, Some(ticket));
            w.wakers.remove(&ticket);
            w.wake_head();
        }
        leave.admitted = true;
        match granted {
            Turn::Done(granted) => granted,
            Turn::Then(rest) => rest.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::bucket::{Fill, SwappableBucket};
    use super::*;
    use std::time::Duration;
    use tokio::sync::mpsc;

    const A: usize = 7;
    const B: usize = 42;

    /// Starts `admit` for `bucket` on a task that reports `tag` when admitted, and lets it
    /// reach the queue.
    async fn spawn_admit(
        admission: &Arc<FairAdmission>,
        bucket_rate: &Arc<SwappableBucket>,
        source: usize,
        tag: &'static str,
        done: &mpsc::UnboundedSender<&'static str>,
    ) -> tokio::task::JoinHandle<()> {
        let (queue, bucket, done) = (admission.clone(), bucket_rate.clone(), done.clone());
        let queued_before = admission.queued();
        let handle = tokio::spawn(async move {
            queue.admit(source, || bucket.acquire()).await;
            let _ = done.send(tag);
        });
        while admission.queued() == queued_before {
            tokio::task::yield_now().await;
        }
        handle
    }

    #[tokio::test(start_paused = true)]
    async fn busy_source_cannot_starve_another() {
        let admission = Arc::new(FairAdmission::default());
        let bucket = Arc::new(SwappableBucket::new(5.0));
        bucket.set_rate(5.0, Fill::Empty);
        let (tx, mut rx) = mpsc::unbounded_channel();
        for _ in 0..50 {
            spawn_admit(&admission, &bucket, A, "a", &tx).await;
        }
        assert_eq!(admission.queued(), 50);
        spawn_admit(&admission, &bucket, B, "b", &tx).await;
        let first_two = [rx.recv().await, rx.recv().await];
        assert!(first_two.contains(&Some("b")), "{first_two:?}");
        for _ in 0..49 {
            assert_eq!(rx.recv().await, Some("a"));
        }
        assert_eq!(admission.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn sources_alternate_round_robin() {
        let admission = Arc::new(FairAdmission::default());
        let bucket = Arc::new(SwappableBucket::new(0.0));
        let (tx, mut rx) = mpsc::unbounded_channel();
        spawn_admit(&admission, &bucket, A, "first-a", &tx).await;
        spawn_admit(&admission, &bucket, A, "second-a", &tx).await;
        spawn_admit(&admission, &bucket, A, "third-a", &tx).await;
        spawn_admit(&admission, &bucket, B, "first-b", &tx).await;
        // Zero rate: the queue waits until a reset swaps in a bucket.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(admission.queued(), 4);
        bucket.set_rate(1.0, Fill::Empty);
        let order: Vec<_> = [
            rx.recv().await,
            rx.recv().await,
            rx.recv().await,
            rx.recv().await,
        ]
        .into_iter()
        .flatten()
        .collect();
        assert_eq!(order, ["first-a", "first-b", "second-a", "third-a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_waiters_leave_the_queue() {
        let admission = Arc::new(FairAdmission::default());
        let bucket = Arc::new(SwappableBucket::new(1.0));
        bucket.set_rate(1.0, Fill::Empty);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let head = spawn_admit(&admission, &bucket, A, "head", &tx).await;
        let middle = spawn_admit(&admission, &bucket, A, "middle", &tx).await;
        spawn_admit(&admission, &bucket, B, "last", &tx).await;
        assert_eq!(admission.queued(), 3);
        // The head gives up while waiting for its token, a queued one gives up too.
        head.abort();
        middle.abort();
        let _ = head.await;
        let _ = middle.await;
        assert_eq!(admission.queued(), 1);
        assert_eq!(rx.recv().await, Some("last"), "the turn passed on");
        assert_eq!(admission.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_ends_its_turn_early_lets_the_next_one_go_first() {
        let admission = Arc::new(FairAdmission::default());
        let (finish, finished) = tokio::sync::oneshot::channel::<&'static str>();
        let (started, mut turn_taken) = mpsc::unbounded_channel::<()>();
        let first = tokio::spawn({
            let admission = Arc::clone(&admission);
            async move {
                admission
                    .admit_then(A, || async move {
                        let _ = started.send(());
                        Turn::Then(async move { finished.await.unwrap_or("dropped") })
                    })
                    .await
            }
        });
        turn_taken.recv().await;
        // The first request is not admitted yet, but its turn is over.
        let second = admission.admit(B, || async { "second" });
        let second = tokio::time::timeout(Duration::from_secs(1), second).await;
        assert_eq!(second, Ok("second"), "the next head was held up");
        assert!(!first.is_finished());
        finish.send("first").unwrap();
        assert_eq!(first.await.unwrap(), "first");
        assert_eq!(admission.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn admissions_through_a_dropped_head_are_not_lost() {
        // Many waiters abandon at random points; everyone who stays is admitted.
        let admission = Arc::new(FairAdmission::default());
        let bucket = Arc::new(SwappableBucket::new(20.0));
        bucket.set_rate(20.0, Fill::Empty);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut handles = Vec::new();
        for i in 0..40 {
            handles.push(spawn_admit(&admission, &bucket, i % 3, "x", &tx).await);
        }
        for h in handles.iter().step_by(3) {
            h.abort();
        }
        drop(tx);
        let mut admitted = 0;
        while rx.recv().await.is_some() {
            admitted += 1;
        }
        assert_eq!(admitted, 40 - 14);
        assert_eq!(admission.queued(), 0);
    }
}
