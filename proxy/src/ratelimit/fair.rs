//! Fair admission order across source buckets (reference §3.3).
//!
//! Requests queue FIFO per source bucket; the buckets that have queued requests are served
//! round-robin, one admission per bucket per turn. The head of the queue (the front request
//! of the bucket at the front of the rotation) is the only request waiting on the global
//! token bucket; it stays the head until it is admitted or leaves. This module is the pure
//! data structure; the async waiting lives in the limiter.

use std::collections::VecDeque;

/// Number of source buckets.
pub const BUCKETS: usize = 64;

/// A queued request: its bucket and a process-unique sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket {
    bucket: usize,
    seq: u64,
}

impl Ticket {
    /// The source bucket this ticket queues in.
    pub fn bucket(&self) -> usize {
        self.bucket
    }
}

/// Per-bucket FIFO queues plus the round-robin rotation of non-empty buckets.
#[derive(Debug)]
pub struct FairQueue {
    buckets: Vec<VecDeque<u64>>,
    rotation: VecDeque<usize>,
    next_seq: u64,
    len: usize,
}

impl Default for FairQueue {
    fn default() -> Self {
        FairQueue {
            buckets: (0..BUCKETS).map(|_| VecDeque::new()).collect(),
            rotation: VecDeque::new(),
            next_seq: 0,
            len: 0,
        }
    }
}

impl FairQueue {
    /// Queues a request of `bucket` (taken modulo [`BUCKETS`]) at the back of its bucket.
    pub fn push(&mut self, bucket: usize) -> Ticket {
        let bucket = bucket % BUCKETS;
        let seq = self.next_seq;
        self.next_seq += 1;
        let queue = &mut self.buckets[bucket];
        if queue.is_empty() {
            self.rotation.push_back(bucket);
        }
        queue.push_back(seq);
        self.len += 1;
        Ticket { bucket, seq }
    }

    /// The request whose turn it is, if any.
    pub fn head(&self) -> Option<Ticket> {
        let bucket = *self.rotation.front()?;
        let seq = *self.buckets[bucket].front()?;
        Some(Ticket { bucket, seq })
    }

    /// Admits the head: removes it and moves its bucket to the back of the rotation (or out
    /// of it when empty). Returns the admitted ticket.
    pub fn admit_head(&mut self) -> Option<Ticket> {
        let bucket = self.rotation.pop_front()?;
        let seq = self.buckets[bucket].pop_front()?;
        self.len -= 1;
        if !self.buckets[bucket].is_empty() {
            self.rotation.push_back(bucket);
        }
        Some(Ticket { bucket, seq })
    }

    /// Removes a request that gave up waiting (its client went away). The rotation order of
    /// the other buckets is unchanged. Returns whether the ticket was still queued.
    pub fn remove(&mut self, ticket: Ticket) -> bool {
        let queue = &mut self.buckets[ticket.bucket];
        let Some(pos) = queue.iter().position(|&s| s == ticket.seq) else {
            return false;
        };
        queue.remove(pos);
        self.len -= 1;
        if queue.is_empty() {
            self.rotation.retain(|&b| b != ticket.bucket);
        }
        true
    }

    /// Number of queued requests.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut FairQueue) -> Vec<usize> {
        std::iter::from_fn(|| q.admit_head().map(|t| t.bucket())).collect()
    }

    #[test]
    fn one_bucket_is_fifo() {
        let mut q = FairQueue::default();
        let a = q.push(3);
        let b = q.push(3);
        assert_eq!(q.head(), Some(a));
        assert_eq!(q.admit_head(), Some(a));
        assert_eq!(q.admit_head(), Some(b));
        assert!(q.is_empty());
        assert_eq!(q.admit_head(), None);
    }

    #[test]
    fn busy_source_cannot_starve_a_quiet_one() {
        let mut q = FairQueue::default();
        let a: Vec<_> = (0..50).map(|_| q.push(1)).collect();
        let b = q.push(2);
        // A's head was already waiting for a token; B is admitted right after it.
        assert_eq!(q.admit_head(), Some(a[0]));
        assert_eq!(q.admit_head(), Some(b));
        assert_eq!(q.len(), 49);
        assert!(drain(&mut q).iter().all(|&bucket| bucket == 1));
    }

    #[test]
    fn active_buckets_alternate() {
        let mut q = FairQueue::default();
        for _ in 0..3 {
            q.push(0);
        }
        q.push(5);
        q.push(9);
        q.push(5);
        assert_eq!(drain(&mut q), vec![0, 5, 9, 0, 5, 0]);
    }

    #[test]
    fn newcomers_of_a_served_bucket_queue_behind_other_buckets() {
        let mut q = FairQueue::default();
        q.push(0);
        q.push(1);
        assert_eq!(q.admit_head().map(|t| t.bucket()), Some(0));
        q.push(0);
        assert_eq!(drain(&mut q), vec![1, 0]);
    }

    #[test]
    fn removing_tickets_keeps_order_and_rotation_consistent() {
        let mut q = FairQueue::default();
        let a1 = q.push(0);
        let a2 = q.push(0);
        let b1 = q.push(1);
        let c1 = q.push(2);
        assert!(q.remove(a1), "the head can leave");
        assert_eq!(q.head(), Some(a2));
        assert!(q.remove(b1));
        assert!(!q.remove(b1), "second removal is a no-op");
        assert_eq!(q.len(), 2);
        assert_eq!(q.admit_head(), Some(a2));
        assert_eq!(q.admit_head(), Some(c1));
        assert!(q.is_empty());
        assert_eq!(q.head(), None);
    }

    #[test]
    fn bucket_index_wraps() {
        let mut q = FairQueue::default();
        assert_eq!(q.push(BUCKETS + 3).bucket(), 3);
    }
}
